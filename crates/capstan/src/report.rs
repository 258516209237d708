//! The read-only CLI commands: tables on stdout, and the HTML run comparison.

use crate::platform::{Error, Platform};
use base::{ArtifactPath, ExperimentId, RunId};
use std::fmt::Write as _;
use std::path::Path;
use tracking::{ArtifactIndex, Run, Scope, TokenStore, ViewType};

/// Prints rows as an aligned table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

pub async fn experiments(p: &Platform, all: bool) -> Result<(), Error> {
    let view = if all {
        ViewType::All
    } else {
        ViewType::ActiveOnly
    };
    let page = p
        .tracking
        .search_experiments(view, "", &["experiment_id ASC".into()], 50_000, 0)
        .await?;
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.name.clone(),
                e.lifecycle.as_str().into(),
                e.artifact_location.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["id", "name", "stage", "artifact location"], &rows)
    );
    Ok(())
}

async fn resolve_experiment(p: &Platform, name_or_id: &str) -> Result<ExperimentId, Error> {
    if let Ok(id) = ExperimentId::parse(name_or_id)
        && p.tracking.get_experiment(id).await.is_ok()
    {
        return Ok(id);
    }
    Ok(p.tracking.get_experiment_by_name(name_or_id).await?.id)
}

pub async fn list_runs(
    p: &Platform,
    experiment: &str,
    filter: &str,
    order_by: &[String],
    max: u32,
) -> Result<(), Error> {
    let exp = resolve_experiment(p, experiment).await?;
    let runs = p
        .tracking
        .search_runs(vec![exp], filter, order_by, ViewType::ActiveOnly, max, 0)
        .await?
        .items;
    let mut metric_keys: Vec<String> = runs
        .iter()
        .flat_map(|r| r.metrics.iter().map(|m| m.key.clone()))
        .collect();
    metric_keys.sort();
    metric_keys.dedup();
    metric_keys.truncate(6);
    let mut header = vec!["run_id", "name", "status"];
    header.extend(metric_keys.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut row = vec![
                r.info.run_id.to_string(),
                r.info.run_name.clone(),
                r.info.status.as_str().into(),
            ];
            for k in &metric_keys {
                row.push(
                    r.metrics
                        .iter()
                        .find(|m| &m.key == k)
                        .map(|m| fmt_num(m.value))
                        .unwrap_or_default(),
                );
            }
            row
        })
        .collect();
    print!("{}", table(&header, &rows));
    Ok(())
}

async fn load_run(p: &Platform, id: &str) -> Result<Run, Error> {
    let id = RunId::parse(id).map_err(tracking::Error::from)?;
    Ok(p.tracking.get_run(&id).await?)
}

/// The artifact directory of a run inside the artifact index (`<exp>/<run>/artifacts`).
fn artifact_dir(run: &Run) -> Option<ArtifactPath> {
    let rest = run.info.artifact_uri.strip_prefix("mlflow-artifacts:")?;
    ArtifactPath::parse(rest.trim_start_matches('/')).ok()
}

pub async fn show_run(p: &Platform, id: &str) -> Result<(), Error> {
    let r = load_run(p, id).await?;
    let i = &r.info;
    println!("run {}  ({})", i.run_id, i.run_name);
    println!(
        "  experiment  {}\n  status      {}\n  start       {}\n  end         {}\n  artifacts   {}",
        i.experiment_id,
        i.status.as_str(),
        i.start_time,
        i.end_time.map(|t| t.to_string()).unwrap_or("-".into()),
        i.artifact_uri
    );
    let rows = |kv: &[tracking::Tag]| {
        kv.iter()
            .map(|t| vec![t.key.clone(), t.value.clone()])
            .collect::<Vec<_>>()
    };
    println!("\nparams\n{}", table(&["key", "value"], &rows(&r.params)));
    let m: Vec<Vec<String>> = r
        .metrics
        .iter()
        .map(|m| vec![m.key.clone(), fmt_num(m.value), m.step.to_string()])
        .collect();
    println!("metrics (latest)\n{}", table(&["key", "value", "step"], &m));
    println!("tags\n{}", table(&["key", "value"], &rows(&r.tags)));
    if !r.inputs.is_empty() {
        let d: Vec<Vec<String>> = r
            .inputs
            .iter()
            .map(|d| {
                vec![
                    d.dataset.name.clone(),
                    d.dataset.digest.clone(),
                    d.dataset.source.clone(),
                ]
            })
            .collect();
        println!("inputs\n{}", table(&["dataset", "digest", "source"], &d));
    }
    if let Some(dir) = artifact_dir(&r) {
        let files = p.db.list_artifacts(&dir).await?;
        let skip = dir.as_str().len() + 1;
        let a: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                vec![
                    f.path.as_str()[skip..].to_owned(),
                    f.size.to_string(),
                    f.hash.as_str()[..12].to_owned(),
                ]
            })
            .collect();
        println!("artifacts\n{}", table(&["path", "bytes", "sha256"], &a));
    }
    Ok(())
}

pub async fn compare_runs(p: &Platform, ids: &[String], html: Option<&Path>) -> Result<(), Error> {
    if ids.len() < 2 {
        return Err(Error::Other("compare needs at least two run ids".into()));
    }
    let mut runs = Vec::new();
    for id in ids {
        runs.push(load_run(p, id).await?);
    }
    let mut header = vec!["".to_owned()];
    header.extend(runs.iter().map(|r| r.info.run_name.clone()));
    let mut keys: Vec<(bool, String)> = runs
        .iter()
        .flat_map(|r| {
            r.params
                .iter()
                .map(|t| (false, t.key.clone()))
                .chain(r.metrics.iter().map(|m| (true, m.key.clone())))
        })
        .collect();
    keys.sort();
    keys.dedup();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|(is_metric, k)| {
            let mut row = vec![if *is_metric {
                format!("metrics.{k}")
            } else {
                format!("params.{k}")
            }];
            for r in &runs {
                row.push(if *is_metric {
                    r.metrics
                        .iter()
                        .find(|m| &m.key == k)
                        .map(|m| fmt_num(m.value))
                        .unwrap_or_default()
                } else {
                    r.params
                        .iter()
                        .find(|t| &t.key == k)
                        .map(|t| t.value.clone())
                        .unwrap_or_default()
                });
            }
            row
        })
        .collect();
    print!(
        "{}",
        table(
            &header.iter().map(String::as_str).collect::<Vec<_>>(),
            &rows
        )
    );
    if let Some(path) = html {
        let mut histories = Vec::new();
        for (_, k) in keys.iter().filter(|(m, _)| *m) {
            let mut series = Vec::new();
            for r in &runs {
                let h = p
                    .tracking
                    .metric_history(&r.info.run_id, k, None, 0)
                    .await?
                    .items;
                series.push((
                    r.info.run_name.clone(),
                    h.iter()
                        .map(|m| (m.step as f64, m.value))
                        .collect::<Vec<_>>(),
                ));
            }
            histories.push((k.clone(), series));
        }
        std::fs::write(path, compare_html(&header, &rows, &histories))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

type Series = (String, Vec<(f64, f64)>);

const COLORS: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One SVG line chart of a metric over steps, one line per run.
fn svg_chart(title: &str, series: &[Series]) -> String {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|p| p.1.is_finite())
        .collect();
    let (w, h, pad) = (560.0, 260.0, 40.0);
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">",
        escape(title)
    );
    if pts.is_empty() {
        return svg + "</svg></figure>";
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let sx = |x: f64| pad + (x - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y - y0) / (y1 - y0).max(1e-12) * (h - 2.0 * pad);
    let _ = write!(
        svg,
        "<rect x=\"{pad}\" y=\"{pad}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#ccc\"/>",
        w - 2.0 * pad,
        h - 2.0 * pad
    );
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\" font-size=\"10\">{}</text><text x=\"4\" y=\"{}\" font-size=\"10\">{}</text>",
        pad,
        fmt_num(y1),
        h - pad,
        fmt_num(y0)
    );
    for (i, (name, s)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = s
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{c}\">{}</text>",
            pad + 8.0,
            pad + 14.0 * (i as f64 + 1.0),
            escape(name)
        );
    }
    svg + "</svg></figure>"
}

fn compare_html(
    header: &[String],
    rows: &[Vec<String>],
    histories: &[(String, Vec<Series>)],
) -> String {
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Capstan run comparison</title><style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f5f5f5}figure{display:inline-block;margin:1em}</style></head><body><h1>Run comparison</h1><table><tr>",
    );
    for h in header {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", escape(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table><h2>Metrics over steps</h2>");
    for (k, series) in histories {
        s.push_str(&svg_chart(k, series));
    }
    s + "</body></html>"
}

pub async fn create_token(p: &Platform, name: &str, scope: &str) -> Result<(), Error> {
    let scope =
        Scope::parse(scope).ok_or_else(|| Error::Other(format!("unknown scope '{scope}'")))?;
    let token = server::new_token();
    let info =
        p.db.create_token(name, &server::hash_token(&token), scope)
            .await?;
    eprintln!(
        "token {} '{}' with scope {} created; it is shown only once:",
        info.id,
        info.name,
        scope.as_str()
    );
    println!("{token}");
    Ok(())
}

pub async fn list_tokens(p: &Platform) -> Result<(), Error> {
    let rows: Vec<Vec<String>> =
        p.db.list_tokens()
            .await?
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.name.clone(),
                    t.scope.as_str().into(),
                    t.created.to_string(),
                ]
            })
            .collect();
    print!("{}", table(&["id", "name", "scope", "created (ms)"], &rows));
    Ok(())
}

pub async fn revoke_token(p: &Platform, id: i64) -> Result<(), Error> {
    p.db.revoke_token(id).await?;
    println!("token {id} revoked");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let t = super::table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y\n");
        assert_eq!(super::fmt_num(0.5), "0.5");
        assert_eq!(super::fmt_num(3.0), "3");
        let svg = super::svg_chart("loss", &[("r1".into(), vec![(0.0, 1.0), (1.0, 0.5)])]);
        assert!(svg.contains("<polyline") && svg.contains("r1"));
    }
}

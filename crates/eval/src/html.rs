//! A self-contained HTML report of one evaluation run, or of two side by side: a bar chart of
//! each evaluator's mean (inline SVG, no scripts from anywhere), the counts of unscorable and
//! failed cases, and the per-case table — with the cases where the runs disagree first.

use crate::Score;
use crate::run::{EvalResult, compare};
use std::fmt::Write;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 2] = ["#4c78a8", "#f58518"];

fn chart(runs: &[(&str, &EvalResult)]) -> String {
    let metrics: Vec<&String> = runs
        .iter()
        .flat_map(|(_, r)| r.summary.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (row_h, label_w, bar_w) = (22 * runs.len() + 10, 170, 420);
    let h = metrics.len() * row_h + 30;
    let mut s = format!(
        r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="mean score per evaluator">"#,
        w = label_w + bar_w + 80
    );
    for (i, m) in metrics.iter().enumerate() {
        let y0 = i * row_h + 10;
        let _ = write!(
            s,
            r#"<text x="0" y="{}" font-size="13">{}</text>"#,
            y0 + 14,
            escape(m)
        );
        for (j, (_, r)) in runs.iter().enumerate() {
            let mean = r.summary.get(*m).and_then(|x| x.mean);
            // BLEU is 0–100, the others 0–1.
            let scale = if m.as_str() == "bleu" { 100.0 } else { 1.0 };
            let frac = mean.map_or(0.0, |v| (v / scale).clamp(0.0, 1.0));
            let y = y0 + j * 22;
            let _ = write!(
                s,
                r#"<rect x="{label_w}" y="{y}" width="{:.1}" height="18" fill="{}"/><text x="{:.1}" y="{}" font-size="12">{}</text>"#,
                frac * bar_w as f64,
                COLORS[j % 2],
                label_w as f64 + frac * bar_w as f64 + 6.0,
                y + 14,
                mean.map_or("—".into(), |v| format!("{v:.3}"))
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn cell(s: Option<&Score>) -> String {
    match s {
        Some(Score::Scored { value }) => format!("{value:.3}"),
        Some(Score::Unscorable { reason }) => {
            format!(
                r#"<span class="muted" title="{}">unscorable</span>"#,
                escape(reason)
            )
        }
        Some(Score::Error { message }) => {
            format!(
                r#"<span class="err" title="{}">error</span>"#,
                escape(message)
            )
        }
        None => "—".into(),
    }
}

/// One run (`b` = None) or two compared case by case.
pub fn render(title: &str, a: (&str, &EvalResult), b: Option<(&str, &EvalResult)>) -> String {
    let mut runs = vec![a];
    runs.extend(b);
    let mut h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:12px 0}}\
         td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}th{{background:#f4f4f4}}\
         .muted{{color:#888}}.err{{color:#b00}}.up{{background:#e6f4ea}}.down{{background:#fce8e6}}\
         .key span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}}</style></head><body><h1>{t}</h1>",
        t = escape(title)
    );
    h.push_str("<p class=\"key\">");
    for (j, (name, r)) in runs.iter().enumerate() {
        let _ = write!(
            h,
            r#"<span style="background:{}"></span>{} ({} cases)"#,
            COLORS[j % 2],
            escape(name),
            r.cases.len()
        );
    }
    h.push_str("</p>");
    h.push_str(&chart(&runs));
    h.push_str("<h2>Summary</h2><table><tr><th>evaluator</th>");
    for (name, _) in &runs {
        let _ = write!(
            h,
            "<th>{} mean</th><th>scored / unscorable / errors</th>",
            escape(name)
        );
    }
    h.push_str("</tr>");
    let metrics: std::collections::BTreeSet<&String> =
        runs.iter().flat_map(|(_, r)| r.summary.keys()).collect();
    for m in &metrics {
        let _ = write!(h, "<tr><td>{}</td>", escape(m));
        for (_, r) in &runs {
            match r.summary.get(*m) {
                Some(s) => {
                    let _ = write!(
                        h,
                        "<td>{}</td><td>{} / {} / {}</td>",
                        s.mean.map_or("—".into(), |v| format!("{v:.4}")),
                        s.scored,
                        s.unscorable,
                        s.errors
                    );
                }
                None => h.push_str("<td>—</td><td></td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    let order: Vec<usize> = match b {
        Some((_, rb)) => {
            let cmp = compare(a.1, rb);
            let _ = write!(
                h,
                "<h2>Case by case</h2><table><tr><th>evaluator</th><th>B better</th><th>A better</th><th>same</th></tr>"
            );
            for (m, (up, down, same)) in &cmp.metrics {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{up}</td><td>{down}</td><td>{same}</td></tr>",
                    escape(m)
                );
            }
            h.push_str("</table>");
            // Cases whose scores differ first.
            let differs: std::collections::HashSet<&str> =
                cmp.changed.iter().map(|d| d.id.as_str()).collect();
            let mut idx: Vec<usize> = (0..a.1.cases.len()).collect();
            idx.sort_by_key(|&i| !differs.contains(a.1.cases[i].id.as_str()));
            idx
        }
        None => (0..a.1.cases.len()).collect(),
    };
    h.push_str("<h2>Cases</h2><table><tr><th>case</th>");
    for (name, _) in &runs {
        let _ = write!(h, "<th>{} answer</th>", escape(name));
        for m in &metrics {
            let _ = write!(h, "<th>{}</th>", escape(m));
        }
    }
    h.push_str("</tr>");
    for i in order {
        let ca = &a.1.cases[i];
        let cb = b.and_then(|(_, rb)| rb.cases.iter().find(|c| c.id == ca.id));
        let _ = write!(h, "<tr><td>{}</td>", escape(&ca.id));
        for (j, c) in std::iter::once(Some(ca)).chain(b.map(|_| cb)).enumerate() {
            let answer = c.map_or(String::new(), |c| match (&c.output, &c.error) {
                (Some(o), _) => escape(&o.text),
                (None, Some(e)) => format!(r#"<span class="err">{}</span>"#, escape(e)),
                _ => String::new(),
            });
            let _ = write!(h, "<td>{answer}</td>");
            for m in &metrics {
                let s = c.and_then(|c| c.scores.get(*m));
                let class = if j == 1 {
                    let va = ca.scores.get(*m).and_then(Score::value);
                    let vb = s.and_then(Score::value);
                    match (va, vb) {
                        (Some(x), Some(y)) if y > x + 1e-12 => " class=\"up\"",
                        (Some(x), Some(y)) if x > y + 1e-12 => " class=\"down\"",
                        _ => "",
                    }
                } else {
                    ""
                };
                let _ = write!(h, "<td{class}>{}</td>", cell(s));
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></body></html>");
    h
}

//! A self-contained HTML drift report: the verdict, a table of every column's test, score and
//! threshold, and per column a bar chart of reference against current shares (inline SVG, no
//! scripts, no network), so a person sees the drift rather than reads it.

use crate::drift::{ColumnDrift, DriftReport};
use std::fmt::Write;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn score_text(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if x != 0.0 && x.abs() < 1e-4 => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
    }
}

const REF: &str = "#4c78a8";
const CUR: &str = "#f58518";

/// Reference (blue) and current (orange) shares side by side per bin or value.
fn chart(c: &ColumnDrift) -> String {
    let Some(d) = &c.distribution else {
        return String::new();
    };
    let n = d.labels.len().max(1);
    let (w, h, pad_l, pad_b) = (640.0, 200.0, 40.0, 46.0);
    let plot_w = w - pad_l - 10.0;
    let plot_h = h - pad_b - 10.0;
    let max = d
        .reference
        .iter()
        .chain(&d.current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let slot = plot_w / n as f64;
    let bar = (slot * 0.42).max(1.0);
    let mut s = format!(
        r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="distribution of {}">"#,
        escape(&c.column)
    );
    let _ = write!(
        s,
        r##"<line x1="{pad_l}" y1="{y}" x2="{x2}" y2="{y}" stroke="#999"/>"##,
        y = 10.0 + plot_h,
        x2 = w - 10.0
    );
    let _ = write!(
        s,
        r##"<text x="2" y="16" font-size="10" fill="#555">{:.0}%</text>"##,
        max * 100.0
    );
    for i in 0..n {
        let x = pad_l + i as f64 * slot + slot * 0.08;
        for (k, (v, color)) in [(d.reference.get(i), REF), (d.current.get(i), CUR)]
            .into_iter()
            .enumerate()
        {
            let v = v.copied().unwrap_or(0.0);
            let bh = v / max * plot_h;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{color}"><title>{} {}: {:.2}%</title></rect>"#,
                x + k as f64 * bar,
                10.0 + plot_h - bh,
                if k == 0 { "reference" } else { "current" },
                escape(&d.labels[i]),
                v * 100.0
            );
        }
        let every = n.div_ceil(12);
        if i % every == 0 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#333" transform="rotate(35 {:.1} {:.1})">{}</text>"##,
                x,
                h - pad_b + 22.0,
                x,
                h - pad_b + 22.0,
                escape(&d.labels[i])
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The whole report as one HTML page.
pub fn render(report: &DriftReport, title: &str) -> String {
    let mut s = String::new();
    let verdict = if report.dataset_drift {
        r#"<span class="bad">Dataset drift detected</span>"#
    } else {
        r#"<span class="ok">No dataset drift</span>"#
    };
    let _ = write!(
        s,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{t}</title><style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}}
td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}} .bad{{color:#b00020;font-weight:600}}
.ok{{color:#1b7f3b;font-weight:600}} .muted{{color:#777}} section{{margin:18px 0}}
.key span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}
</style></head><body><h1>{t}</h1>
<p id="verdict">{verdict}: {d} of {n} columns drifted ({share:.0}%, threshold {ds:.0}%). Reference {rr} rows, current {cr} rows.</p>
<p class="key"><span style="background:{REF}"></span>reference<span style="background:{CUR}"></span>current</p>
<table id="columns"><tr><th>column</th><th>type</th><th>test</th><th>score</th><th>threshold</th><th>drift</th><th>PSI</th><th>KL</th><th>Hellinger</th></tr>"#,
        t = escape(title),
        d = report.number_of_drifted_columns,
        n = report.number_of_columns,
        share = report.share_of_drifted_columns * 100.0,
        ds = report.drift_share * 100.0,
        rr = report.reference_rows,
        cr = report.current_rows,
    );
    for c in &report.columns {
        let status = match (&c.not_testable, c.drifted) {
            (Some(why), _) => format!(
                r#"<span class="muted">not testable: {}</span>"#,
                escape(why)
            ),
            (None, true) => r#"<span class="bad">drift</span>"#.into(),
            (None, false) => r#"<span class="ok">no drift</span>"#.into(),
        };
        let _ = write!(
            s,
            r##"<tr><td><a href="#col-{id}">{name}</a></td><td>{kind}</td><td>{test}</td><td>{score}</td><td>{thr}</td><td>{status}</td><td>{psi}</td><td>{kl}</td><td>{hel}</td></tr>"##,
            id = escape(&c.column),
            name = escape(&c.column),
            kind = c
                .kind
                .map(|k| format!("{k:?}").to_lowercase())
                .unwrap_or_default(),
            test = c.method.map(|m| m.name()).unwrap_or("—"),
            score = score_text(c.score),
            thr = score_text(c.threshold),
            psi = score_text(c.psi),
            kl = score_text(c.kl_div),
            hel = score_text(c.hellinger),
        );
    }
    s.push_str("</table>");
    for c in &report.columns {
        if c.distribution.is_none() {
            continue;
        }
        let _ = write!(
            s,
            r#"<section id="col-{id}"><h3>{name} <small class="{cls}">{verdict}</small></h3>{chart}</section>"#,
            id = escape(&c.column),
            name = escape(&c.column),
            cls = if c.drifted { "bad" } else { "ok" },
            verdict = if c.drifted { "drift" } else { "no drift" },
            chart = chart(c),
        );
    }
    s.push_str("</body></html>\n");
    s
}

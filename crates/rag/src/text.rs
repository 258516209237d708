//! Text out of documents: HTML (the content of `<main>`/`<article>` when there is one, without
//! scripts, styles and navigation; headings kept as structure; entities decoded; `<pre>` kept
//! verbatim), Markdown (ATX headings), and plain text — all into sections that each carry their
//! heading path — and a sentence splitter that knows abbreviations and decimals.

/// A run of text under one heading path (e.g. `["Ownership", "The Stack and the Heap"]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub headings: Vec<String>,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub title: String,
    pub sections: Vec<Section>,
}

impl Document {
    pub fn full_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&s.text);
        }
        out
    }
}

/// What kind of file a path is, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Text,
}

impl Format {
    pub fn of(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "html" | "htm" | "xhtml" => Some(Format::Html),
            "md" | "markdown" | "mdx" => Some(Format::Markdown),
            "txt" | "text" | "rst" | "adoc" => Some(Format::Text),
            _ => None,
        }
    }
}

pub fn parse(format: Format, content: &str) -> Document {
    match format {
        Format::Html => html(content),
        Format::Markdown => markdown(content),
        Format::Text => Document {
            title: String::new(),
            sections: vec![Section {
                headings: vec![],
                text: normalize_paragraphs(content),
            }]
            .into_iter()
            .filter(|s| !s.text.is_empty())
            .collect(),
        },
    }
}

/// Collapses runs of spaces inside lines and keeps paragraph breaks (blank lines).
fn normalize_paragraphs(text: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(&line);
    }
    out
}

pub fn markdown(content: &str) -> Document {
    let mut doc = Document {
        title: String::new(),
        sections: Vec::new(),
    };
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut in_fence = false;
    let flush = |doc: &mut Document, path: &[(usize, String)], current: &mut String| {
        let text = normalize_paragraphs(current);
        if !text.is_empty() {
            doc.sections.push(Section {
                headings: path.iter().map(|(_, h)| h.clone()).collect(),
                text,
            });
        }
        current.clear();
    };
    for line in content.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            current.push_str(line);
            current.push('\n');
            continue;
        }
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        if !in_fence && (1..=6).contains(&level) && trimmed[level..].starts_with(' ') {
            flush(&mut doc, &path, &mut current);
            let heading = trimmed[level..]
                .trim()
                .trim_end_matches('#')
                .trim()
                .to_owned();
            if doc.title.is_empty() && level == 1 {
                doc.title = heading.clone();
            }
            path.retain(|(l, _)| *l < level);
            path.push((level, heading));
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut doc, &path, &mut current);
    doc
}

const SKIP: &[&str] = &[
    "script", "style", "nav", "head", "noscript", "svg", "button", "template", "iframe", "form",
    "select", "footer",
];
const BLOCK: &[&str] = &[
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "blockquote",
    "br",
    "dt",
    "dd",
    "dl",
    "header",
    "aside",
    "figure",
    "figcaption",
    "details",
    "summary",
    "hr",
    "td",
    "th",
];

/// The content of the first `<tag ...>...</tag>` (not nested-aware beyond counting the same tag).
fn inner_of<'a>(html: &'a str, lower: &str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}");
    let mut start = lower.find(&open)?;
    // Make sure it is the tag and not a longer name (`<mainly>`).
    while !lower[start + open.len()..].starts_with(['>', ' ', '\n', '\t', '\r']) {
        start = start + open.len() + lower[start + open.len()..].find(&open)?;
    }
    let body = start + lower[start..].find('>')? + 1;
    let close = format!("</{tag}>");
    let mut depth = 1;
    let mut at = body;
    while depth > 0 {
        let next_close = lower[at..].find(&close)? + at;
        let next_open = lower[at..next_close].find(&open).map(|i| i + at);
        match next_open {
            Some(o) => {
                depth += 1;
                at = o + open.len();
            }
            None => {
                depth -= 1;
                if depth == 0 {
                    return Some(&html[body..next_close]);
                }
                at = next_close + close.len();
            }
        }
    }
    None
}

pub fn html(content: &str) -> Document {
    let lower = content.to_ascii_lowercase();
    let title = inner_of(content, &lower, "title")
        .map(|t| {
            decode_entities(t)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let body = inner_of(content, &lower, "main")
        .or_else(|| inner_of(content, &lower, "article"))
        .or_else(|| inner_of(content, &lower, "body"))
        .unwrap_or(content);
    let mut doc = Document {
        title,
        sections: Vec::new(),
    };
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut text = String::new();
    let mut heading: Option<(usize, String)> = None;
    let mut skip_depth: Vec<String> = Vec::new();
    let mut pre = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    let flush = |doc: &mut Document, path: &[(usize, String)], text: &mut String| {
        let t = text
            .split("\n\n")
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        if !t.is_empty() {
            doc.sections.push(Section {
                headings: path.iter().map(|(_, h)| h.clone()).collect(),
                text: t,
            });
        }
        text.clear();
    };
    while i < bytes.len() {
        if bytes[i] == b'<' {
            // Comments.
            if body[i..].starts_with("<!--") {
                i = body[i..].find("-->").map_or(bytes.len(), |e| i + e + 3);
                continue;
            }
            let end = match body[i..].find('>') {
                Some(e) => i + e,
                None => break,
            };
            let tag = &body[i + 1..end];
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            i = end + 1;
            if let Some(top) = skip_depth.last() {
                if closing && *top == name {
                    skip_depth.pop();
                } else if !closing && SKIP.contains(&name.as_str()) && !tag.ends_with('/') {
                    skip_depth.push(name);
                }
                continue;
            }
            if !closing && SKIP.contains(&name.as_str()) && !tag.ends_with('/') {
                skip_depth.push(name);
                continue;
            }
            let level = match name.as_bytes() {
                [b'h', d] if (b'1'..=b'6').contains(d) => Some((d - b'0') as usize),
                _ => None,
            };
            if let Some(level) = level {
                if closing {
                    if let Some((l, h)) = heading.take() {
                        let h = h.split_whitespace().collect::<Vec<_>>().join(" ");
                        if !h.is_empty() {
                            path.retain(|(pl, _)| *pl < l);
                            path.push((l, h));
                        }
                    }
                } else {
                    flush(&mut doc, &path, &mut text);
                    heading = Some((level, String::new()));
                }
                continue;
            }
            if name == "pre" {
                if closing {
                    pre = pre.saturating_sub(1);
                } else {
                    pre += 1;
                }
                text.push_str("\n\n");
                continue;
            }
            if BLOCK.contains(&name.as_str()) {
                if name == "br" || name == "li" || name == "tr" {
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                } else {
                    text.push_str("\n\n");
                }
            } else if name == "td" || name == "th" {
                text.push(' ');
            }
            continue;
        }
        let next = body[i..].find('<').map_or(bytes.len(), |n| i + n);
        let raw = decode_entities(&body[i..next]);
        i = next;
        if skip_depth.is_empty() {
            let piece = if pre > 0 {
                raw
            } else {
                let mut s = String::with_capacity(raw.len());
                let mut space = false;
                for c in raw.chars() {
                    if c.is_whitespace() {
                        space = true;
                    } else {
                        if space {
                            s.push(' ');
                        }
                        space = false;
                        s.push(c);
                    }
                }
                if space {
                    s.push(' ');
                }
                s
            };
            match heading.as_mut() {
                Some((_, h)) => h.push_str(&piece),
                None => text.push_str(&piece),
            }
        }
    }
    flush(&mut doc, &path, &mut text);
    // Tidy: lines trimmed, no run of more than one blank line.
    for s in &mut doc.sections {
        s.text = s
            .text
            .split("\n\n")
            .map(|p| {
                p.lines()
                    .map(str::trim_end)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .trim()
                    .to_owned()
            })
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    doc.sections.retain(|s| !s.text.is_empty());
    if doc.title.is_empty()
        && let Some(first) = doc.sections.iter().find_map(|s| s.headings.first())
    {
        doc.title = first.clone();
    }
    doc
}

pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.bytes().take(12).position(|b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            "mdash" => Some('—'),
            "ndash" => Some('–'),
            "hellip" => Some('…'),
            "rsquo" | "lsquo" => Some('\''),
            "rdquo" | "ldquo" => Some('"'),
            "copy" => Some('©'),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "no", "fig",
    "cf", "al", "approx", "inc", "ltd", "co", "u.s", "a.m", "p.m", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
];

/// Splits text into sentences: at `.`, `!` or `?` (plus closing quotes/brackets) followed by
/// whitespace and a capital letter, digit or opening quote — unless the word before is a known
/// abbreviation or a single initial — and at paragraph breaks. Offsets are byte ranges.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (at, c) = chars[k];
        let paragraph = c == '\n' && chars.get(k + 1).is_some_and(|(_, n)| *n == '\n');
        if paragraph {
            push_span(text, start, at, &mut spans);
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            start = chars.get(k).map_or(text.len(), |(i, _)| *i);
            continue;
        }
        if matches!(c, '.' | '!' | '?') {
            let mut j = k + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '"' | '\'' | ')' | ']' | '”' | '’' | '.' | '!' | '?'
                )
            {
                j += 1;
            }
            let boundary = j < chars.len()
                && chars[j].1.is_whitespace()
                && chars[j..]
                    .iter()
                    .find(|(_, n)| !n.is_whitespace())
                    .is_some_and(|(_, n)| {
                        n.is_uppercase()
                            || n.is_ascii_digit()
                            || matches!(n, '"' | '“' | '(' | '\'')
                    });
            if boundary && !(c == '.' && is_abbreviation(text, start, at)) {
                let end = chars[j - 1].0 + chars[j - 1].1.len_utf8();
                push_span(text, start, end, &mut spans);
                k = j;
                while k < chars.len() && chars[k].1.is_whitespace() {
                    k += 1;
                }
                start = chars.get(k).map_or(text.len(), |(i, _)| *i);
                continue;
            }
        }
        k += 1;
    }
    push_span(text, start, text.len(), &mut spans);
    spans
}

fn push_span(text: &str, start: usize, end: usize, spans: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if !trimmed.is_empty() {
        spans.push((start + lead, start + lead + trimmed.len()));
    }
}

fn is_abbreviation(text: &str, start: usize, dot: usize) -> bool {
    let word = text[start..dot]
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let lower = word.to_lowercase();
    (word.chars().count() == 1 && word.chars().all(|c| c.is_alphabetic()))
        || ABBREVIATIONS.contains(&lower.as_str())
}

pub fn sentences(text: &str) -> Vec<&str> {
    sentence_spans(text)
        .into_iter()
        .map(|(a, b)| &text[a..b])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_respect_abbreviations_decimals_and_paragraphs() {
        let t = "Dr. Smith paid 3.50 dollars, e.g. for tea. Then he left! Did he? Yes.\n\nNew paragraph without a stop\nSame paragraph. J. R. R. Tolkien wrote books.";
        assert_eq!(
            sentences(t),
            vec![
                "Dr. Smith paid 3.50 dollars, e.g. for tea.",
                "Then he left!",
                "Did he?",
                "Yes.",
                "New paragraph without a stop\nSame paragraph.",
                "J. R. R. Tolkien wrote books.",
            ]
        );
        assert_eq!(
            sentences("He said \"Stop.\" Then went."),
            vec!["He said \"Stop.\"", "Then went."]
        );
    }

    #[test]
    fn html_keeps_main_content_headings_and_code() {
        let page = r#"<html><head><title>Ownership &amp; Borrowing</title><style>p{}</style></head>
        <body><nav><a>Chapter 1</a></nav><div id="sidebar">menu</div>
        <main><h1 id="x">What Is <em>Ownership</em>?</h1>
        <p>Ownership is a set of rules.&nbsp;Memory is managed through it.</p>
        <script>var x = "<p>no</p>";</script>
        <h2>The Stack</h2><p>Values are pushed &lt;in order&gt;.</p>
        <pre><code>let s = String::from("hello");
println!("{s}");</code></pre>
        <!-- a comment <p>hidden</p> -->
        <h3>Details</h3><ul><li>one</li><li>two</li></ul></main></body></html>"#;
        let doc = html(page);
        assert_eq!(doc.title, "Ownership & Borrowing");
        assert_eq!(doc.sections.len(), 3, "{doc:#?}");
        assert_eq!(doc.sections[0].headings, vec!["What Is Ownership?"]);
        assert_eq!(
            doc.sections[0].text,
            "Ownership is a set of rules. Memory is managed through it."
        );
        assert_eq!(
            doc.sections[1].headings,
            vec!["What Is Ownership?", "The Stack"]
        );
        assert!(
            doc.sections[1]
                .text
                .contains("Values are pushed <in order>.")
        );
        assert!(
            doc.sections[1]
                .text
                .contains("let s = String::from(\"hello\");\nprintln!(\"{s}\");")
        );
        assert_eq!(
            doc.sections[2].headings,
            vec!["What Is Ownership?", "The Stack", "Details"]
        );
        assert_eq!(doc.sections[2].text, "one\ntwo");
        assert!(!doc.full_text().contains("menu") || !doc.full_text().contains("Chapter 1"));
        assert!(!doc.full_text().contains("var x"));
        assert!(!doc.full_text().contains("hidden"));
    }

    #[test]
    fn markdown_sections_follow_heading_levels() {
        let md = "# Title\nIntro text.\n\n## A\nAlpha.\n```\n# not a heading\n```\n### A.1\nDeep.\n## B\nBeta.";
        let doc = markdown(md);
        assert_eq!(doc.title, "Title");
        let heads: Vec<Vec<String>> = doc.sections.iter().map(|s| s.headings.clone()).collect();
        assert_eq!(
            heads,
            vec![
                vec!["Title".to_owned()],
                vec!["Title".into(), "A".into()],
                vec!["Title".into(), "A".into(), "A.1".into()],
                vec!["Title".into(), "B".into()],
            ]
        );
        assert!(doc.sections[1].text.contains("# not a heading"));
    }

    #[test]
    fn entities_decode_and_broken_ones_stay() {
        assert_eq!(
            decode_entities("a &amp; b &#65;&#x42; &bogus; & c"),
            "a & b AB &bogus; & c"
        );
    }
}

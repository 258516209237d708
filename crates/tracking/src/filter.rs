//! MLflow's search grammar for runs: `metrics.rmse < 0.8 and params.solver = 'lbfgs'`, and the
//! `order_by` clauses. Parsing only: the store turns a parsed [`Filter`] into bound SQL.

use crate::{Error, Result};

/// Attributes of a run that can be filtered or ordered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    RunId,
    RunName,
    Status,
    UserId,
    ArtifactUri,
    StartTime,
    EndTime,
}

impl Attr {
    fn parse(key: &str) -> Option<Attr> {
        Some(match key {
            "run_id" => Attr::RunId,
            "run_name" | "run name" | "Run name" | "Run Name" => Attr::RunName,
            "status" => Attr::Status,
            "user_id" => Attr::UserId,
            "artifact_uri" => Attr::ArtifactUri,
            "start_time" | "created" | "Created" => Attr::StartTime,
            "end_time" => Attr::EndTime,
            _ => return None,
        })
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Attr::StartTime | Attr::EndTime)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetField {
    Name,
    Digest,
    Context,
}

/// What a clause compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Metric(String),
    Param(String),
    Tag(String),
    Attr(Attr),
    Dataset(DatasetField),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl NumOp {
    pub fn sql(self) -> &'static str {
        match self {
            NumOp::Eq => "=",
            NumOp::Ne => "<>",
            NumOp::Lt => "<",
            NumOp::Le => "<=",
            NumOp::Gt => ">",
            NumOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Eq,
    Ne,
    Like,
    ILike,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    Num(NumOp, f64),
    Str(StrOp, String),
    In { negated: bool, values: Vec<String> },
    Null { negated: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub subject: Subject,
    pub cmp: Comparison,
}

/// A conjunction of clauses (MLflow has no `OR`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub subject: Subject,
    pub ascending: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Ident(String),
    Num(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '\'' | '"' | '`' => {
                let mut j = i + 1;
                let mut text = String::new();
                loop {
                    match cs.get(j) {
                        None => {
                            return Err(Error::invalid(format!(
                                "Invalid filter '{s}': unterminated quote"
                            )));
                        }
                        // A doubled quote inside a quoted string is an escaped quote.
                        Some(&q) if q == c && cs.get(j + 1) == Some(&c) && c == '\'' => {
                            text.push(c);
                            j += 2;
                        }
                        Some(&q) if q == c => break,
                        Some(&q) => {
                            text.push(q);
                            j += 1;
                        }
                    }
                }
                out.push(if c == '`' {
                    Tok::Ident(text)
                } else {
                    Tok::Quoted(text)
                });
                i = j + 1;
            }
            '<' | '>' | '=' | '!' => {
                let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
                let op = match two.as_str() {
                    "<=" => "<=",
                    ">=" => ">=",
                    "!=" => "!=",
                    "<>" => "!=",
                    "==" => "=",
                    _ => "",
                };
                if !op.is_empty() {
                    out.push(Tok::Op(op));
                    i += 2;
                } else {
                    let op = match c {
                        '<' => "<",
                        '>' => ">",
                        '=' => "=",
                        _ => {
                            return Err(Error::invalid(format!(
                                "Invalid filter '{s}': unexpected '!'"
                            )));
                        }
                    };
                    out.push(Tok::Op(op));
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && cs
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_digit() || *n == '.')) =>
            {
                let mut j = i + 1;
                while j < cs.len()
                    && (cs[j].is_ascii_alphanumeric()
                        || cs[j] == '.'
                        || ((cs[j] == '-' || cs[j] == '+') && matches!(cs[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                out.push(Tok::Num(cs[i..j].iter().collect()));
                i = j;
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut j = i + 1;
                while j < cs.len()
                    && (cs[j].is_alphanumeric() || matches!(cs[j], '_' | '.' | '-' | ':' | '/'))
                {
                    j += 1;
                }
                out.push(Tok::Word(cs[i..j].iter().collect()));
                i = j;
            }
            other => {
                return Err(Error::invalid(format!(
                    "Invalid filter '{s}': unexpected character '{other}'"
                )));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn err(&self, what: &str) -> Error {
        Error::invalid(format!("Invalid filter '{}': {what}", self.src))
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if let Some(Tok::Word(w)) = self.peek()
            && w.eq_ignore_ascii_case(kw)
        {
            self.pos += 1;
            return true;
        }
        false
    }

    /// `entity.key`, `entity.`+quoted key, or a bare attribute name.
    fn subject(&mut self) -> Result<Subject> {
        match self.next() {
            Some(Tok::Word(w)) => {
                if let Some(entity) = w.strip_suffix('.') {
                    // `metrics.` followed by a quoted key.
                    match self.next() {
                        Some(Tok::Ident(k) | Tok::Quoted(k)) => {
                            make_subject(entity, &k).map_err(|e| self.err(&e))
                        }
                        _ => Err(self.err(&format!("expected a quoted key after '{w}'"))),
                    }
                } else if let Some((entity, key)) = w.split_once('.') {
                    make_subject(entity, key).map_err(|e| self.err(&e))
                } else {
                    make_subject("attributes", &w).map_err(|e| self.err(&e))
                }
            }
            Some(Tok::Ident(k)) => make_subject("attributes", &k).map_err(|e| self.err(&e)),
            other => Err(self.err(&format!("expected an identifier, found {other:?}"))),
        }
    }

    fn string_value(&mut self) -> Result<String> {
        match self.next() {
            Some(Tok::Quoted(v)) => Ok(v),
            other => Err(self.err(&format!("expected a quoted string value, found {other:?}"))),
        }
    }

    fn clause(&mut self) -> Result<Clause> {
        let subject = self.subject()?;
        // Operator: symbol, LIKE, ILIKE, IN, NOT IN, IS [NOT] NULL.
        let cmp = if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.pos += 1;
            match &subject {
                Subject::Metric(_) | Subject::Attr(Attr::StartTime | Attr::EndTime) => {
                    let v = match self.next() {
                        Some(Tok::Num(n)) => n
                            .parse::<f64>()
                            .map_err(|_| self.err(&format!("'{n}' is not a number")))?,
                        other => {
                            return Err(self.err(&format!("expected a number, found {other:?}")));
                        }
                    };
                    let op = match op {
                        "=" => NumOp::Eq,
                        "!=" => NumOp::Ne,
                        "<" => NumOp::Lt,
                        "<=" => NumOp::Le,
                        ">" => NumOp::Gt,
                        _ => NumOp::Ge,
                    };
                    Comparison::Num(op, v)
                }
                _ => {
                    let op = match op {
                        "=" => StrOp::Eq,
                        "!=" => StrOp::Ne,
                        other => {
                            return Err(self.err(&format!("comparator '{other}' is not allowed on strings; use =, !=, LIKE or ILIKE")));
                        }
                    };
                    Comparison::Str(op, self.string_value()?)
                }
            }
        } else if self.keyword("like") {
            self.string_cmp(&subject, StrOp::Like)?
        } else if self.keyword("ilike") {
            self.string_cmp(&subject, StrOp::ILike)?
        } else if self.keyword("is") {
            let negated = self.keyword("not");
            if !self.keyword("null") {
                return Err(self.err("expected NULL after IS"));
            }
            if !matches!(subject, Subject::Param(_) | Subject::Tag(_)) {
                return Err(self.err("IS NULL is only supported on params and tags"));
            }
            Comparison::Null { negated }
        } else {
            let negated = self.keyword("not");
            if !self.keyword("in") {
                return Err(self.err("expected a comparator"));
            }
            if !matches!(subject, Subject::Attr(Attr::RunId) | Subject::Dataset(_)) {
                return Err(self.err("IN is only supported on attributes.run_id and datasets"));
            }
            if self.next() != Some(Tok::LParen) {
                return Err(self.err("expected '(' after IN"));
            }
            let mut values = vec![self.string_value()?];
            loop {
                match self.next() {
                    Some(Tok::Comma) => values.push(self.string_value()?),
                    Some(Tok::RParen) => break,
                    _ => return Err(self.err("expected ',' or ')' in IN list")),
                }
            }
            Comparison::In { negated, values }
        };
        Ok(Clause { subject, cmp })
    }

    fn string_cmp(&mut self, subject: &Subject, op: StrOp) -> Result<Comparison> {
        if matches!(
            subject,
            Subject::Metric(_) | Subject::Attr(Attr::StartTime | Attr::EndTime)
        ) {
            return Err(self.err("LIKE/ILIKE is not allowed on numeric values"));
        }
        Ok(Comparison::Str(op, self.string_value()?))
    }
}

fn make_subject(entity: &str, key: &str) -> std::result::Result<Subject, String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    Ok(match entity.to_ascii_lowercase().as_str() {
        "metrics" | "metric" => Subject::Metric(key.to_owned()),
        "params" | "param" | "parameter" | "parameters" => Subject::Param(key.to_owned()),
        "tags" | "tag" => Subject::Tag(key.to_owned()),
        "attributes" | "attribute" | "attr" | "run" => {
            Subject::Attr(Attr::parse(key).ok_or_else(|| format!("invalid attribute key '{key}'"))?)
        }
        "datasets" | "dataset" => Subject::Dataset(match key {
            "name" => DatasetField::Name,
            "digest" => DatasetField::Digest,
            "context" => DatasetField::Context,
            _ => return Err(format!("invalid dataset key '{key}'")),
        }),
        other => return Err(format!("invalid entity type '{other}'")),
    })
}

/// Parses a run filter; an empty or blank string is the empty filter.
pub fn parse_filter(src: &str) -> Result<Filter> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0, src };
    let mut clauses = Vec::new();
    if p.peek().is_none() {
        return Ok(Filter { clauses });
    }
    loop {
        clauses.push(p.clause()?);
        if p.peek().is_none() {
            break;
        }
        if p.keyword("or") {
            return Err(p.err("OR is not supported; combine clauses with AND"));
        }
        if !p.keyword("and") {
            return Err(p.err("expected AND between clauses"));
        }
    }
    Ok(Filter { clauses })
}

/// Parses `order_by` items like `metrics.rmse DESC`; duplicate keys are an error.
pub fn parse_order_by(items: &[String]) -> Result<Vec<OrderBy>> {
    let mut out: Vec<OrderBy> = Vec::new();
    for item in items {
        let toks = tokenize(item)?;
        let mut p = Parser {
            toks,
            pos: 0,
            src: item,
        };
        let subject = p.subject()?;
        let ascending = if p.keyword("desc") {
            false
        } else {
            p.keyword("asc");
            true
        };
        if p.peek().is_some() {
            return Err(Error::invalid(format!("Invalid order_by clause '{item}'")));
        }
        if out.iter().any(|o| o.subject == subject) {
            return Err(Error::invalid(format!(
                "`order_by` contains duplicate fields: {item}"
            )));
        }
        out.push(OrderBy { subject, ascending });
    }
    Ok(out)
}

impl Filter {
    /// Evaluates the filter against one run in memory (promotion gates, checks on a single run);
    /// the same semantics as the store's SQL: metrics compare their latest value, NaN matches no
    /// numeric comparison, LIKE is case-sensitive.
    pub fn matches(&self, run: &crate::Run) -> bool {
        self.clauses.iter().all(|c| clause_matches(c, run))
    }
}

fn num_cmp(op: NumOp, v: f64, x: f64) -> bool {
    match op {
        NumOp::Eq => v == x,
        NumOp::Ne => v != x,
        NumOp::Lt => v < x,
        NumOp::Le => v <= x,
        NumOp::Gt => v > x,
        NumOp::Ge => v >= x,
    }
}

fn str_cmp(op: StrOp, v: &str, pattern: &str) -> bool {
    match op {
        StrOp::Eq => v == pattern,
        StrOp::Ne => v != pattern,
        StrOp::Like => like_matches(pattern, v, false),
        StrOp::ILike => like_matches(pattern, v, true),
    }
}

fn clause_matches(c: &Clause, run: &crate::Run) -> bool {
    let kv =
        |list: &[crate::Tag], k: &str| list.iter().find(|t| t.key == k).map(|t| t.value.clone());
    let info = &run.info;
    match (&c.subject, &c.cmp) {
        (Subject::Metric(k), Comparison::Num(op, x)) => run
            .metrics
            .iter()
            .any(|m| &m.key == k && !m.value.is_nan() && num_cmp(*op, m.value, *x)),
        (Subject::Param(k), Comparison::Null { negated }) => {
            kv(&run.params, k).is_some() == *negated
        }
        (Subject::Tag(k), Comparison::Null { negated }) => kv(&run.tags, k).is_some() == *negated,
        (Subject::Param(k), Comparison::Str(op, p)) => {
            kv(&run.params, k).is_some_and(|v| str_cmp(*op, &v, p))
        }
        (Subject::Tag(k), Comparison::Str(op, p)) => {
            kv(&run.tags, k).is_some_and(|v| str_cmp(*op, &v, p))
        }
        (Subject::Attr(Attr::StartTime), Comparison::Num(op, x)) => {
            num_cmp(*op, info.start_time as f64, *x)
        }
        (Subject::Attr(Attr::EndTime), Comparison::Num(op, x)) => {
            info.end_time.is_some_and(|t| num_cmp(*op, t as f64, *x))
        }
        (Subject::Attr(a), Comparison::Str(op, p)) => {
            let v = match a {
                Attr::RunId => info.run_id.to_string(),
                Attr::RunName => info.run_name.clone(),
                Attr::Status => info.status.as_str().to_owned(),
                Attr::UserId => info.user_id.clone(),
                Attr::ArtifactUri => info.artifact_uri.clone(),
                Attr::StartTime | Attr::EndTime => return false,
            };
            str_cmp(*op, &v, p)
        }
        (Subject::Attr(Attr::RunId), Comparison::In { negated, values }) => {
            values.iter().any(|v| v == info.run_id.as_str()) != *negated
        }
        (Subject::Dataset(f), cmp) => run.inputs.iter().any(|i| {
            let v = match f {
                DatasetField::Name => Some(i.dataset.name.clone()),
                DatasetField::Digest => Some(i.dataset.digest.clone()),
                DatasetField::Context => kv(&i.tags, "mlflow.data.context"),
            };
            match (v, cmp) {
                (Some(v), Comparison::Str(op, p)) => str_cmp(*op, &v, p),
                (Some(v), Comparison::In { negated, values }) => values.contains(&v) != *negated,
                _ => false,
            }
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str, expected: &[Clause]) {
        let f = parse_filter(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(f.clauses, expected, "{src}");
    }

    fn refused(src: &str, needle: &str) {
        match parse_filter(src) {
            Ok(f) => panic!("{src} parsed as {f:?}"),
            Err(e) => assert!(e.to_string().contains(needle), "{src}: {e}"),
        }
    }

    fn c(subject: Subject, cmp: Comparison) -> Clause {
        Clause { subject, cmp }
    }

    #[test]
    fn parses_the_grammar() {
        check("", &[]);
        check(
            "metrics.rmse < 0.8 and params.solver = 'lbfgs'",
            &[
                c(
                    Subject::Metric("rmse".into()),
                    Comparison::Num(NumOp::Lt, 0.8),
                ),
                c(
                    Subject::Param("solver".into()),
                    Comparison::Str(StrOp::Eq, "lbfgs".into()),
                ),
            ],
        );
        check(
            "metric.`my key` >= -1e-3",
            &[c(
                Subject::Metric("my key".into()),
                Comparison::Num(NumOp::Ge, -1e-3),
            )],
        );
        check(
            "metrics.\"a.b\" != 2",
            &[c(
                Subject::Metric("a.b".into()),
                Comparison::Num(NumOp::Ne, 2.0),
            )],
        );
        check(
            "tags.env LIKE 'pro%' AND tag.x ILIKE '%A'",
            &[
                c(
                    Subject::Tag("env".into()),
                    Comparison::Str(StrOp::Like, "pro%".into()),
                ),
                c(
                    Subject::Tag("x".into()),
                    Comparison::Str(StrOp::ILike, "%A".into()),
                ),
            ],
        );
        check(
            "attributes.status = 'FINISHED'",
            &[c(
                Subject::Attr(Attr::Status),
                Comparison::Str(StrOp::Eq, "FINISHED".into()),
            )],
        );
        check(
            "run_name = 'x'",
            &[c(
                Subject::Attr(Attr::RunName),
                Comparison::Str(StrOp::Eq, "x".into()),
            )],
        );
        check(
            "attributes.start_time > 1700000000000",
            &[c(
                Subject::Attr(Attr::StartTime),
                Comparison::Num(NumOp::Gt, 1.7e12),
            )],
        );
        check(
            "attributes.run_id IN ('a', 'b')",
            &[c(
                Subject::Attr(Attr::RunId),
                Comparison::In {
                    negated: false,
                    values: vec!["a".into(), "b".into()],
                },
            )],
        );
        check(
            "params.p IS NOT NULL",
            &[c(
                Subject::Param("p".into()),
                Comparison::Null { negated: true },
            )],
        );
        check(
            "params.p = 'it''s'",
            &[c(
                Subject::Param("p".into()),
                Comparison::Str(StrOp::Eq, "it's".into()),
            )],
        );
        check(
            "datasets.digest = 'abc'",
            &[c(
                Subject::Dataset(DatasetField::Digest),
                Comparison::Str(StrOp::Eq, "abc".into()),
            )],
        );
    }

    #[test]
    fn refuses_malformed_filters() {
        refused(
            "metrics.rmse < 0.8 or params.a = 'b'",
            "OR is not supported",
        );
        refused("metrics.rmse <", "expected a number");
        refused("metrics.rmse LIKE 'x'", "LIKE/ILIKE");
        refused("params.a < 'b'", "not allowed on strings");
        refused("foo.bar = 'x'", "invalid entity");
        refused("attributes.nope = 'x'", "invalid attribute");
        refused("params.a = 'unterminated", "unterminated");
        refused("metrics.a = 1 metrics.b = 2", "expected AND");
        refused("params.a = b", "quoted string");
        refused("(metrics.a = 1)", "identifier");
    }

    #[test]
    fn parses_order_by() {
        let o = parse_order_by(&[
            "metrics.rmse DESC".into(),
            "params.alpha".into(),
            "attributes.start_time ASC".into(),
        ]);
        let o = o.unwrap_or_default();
        assert_eq!(o.len(), 3);
        assert_eq!(
            o[0],
            OrderBy {
                subject: Subject::Metric("rmse".into()),
                ascending: false
            }
        );
        assert!(o[1].ascending && o[2].ascending);
        assert!(parse_order_by(&["metrics.a".into(), "metrics.a DESC".into()]).is_err());
        assert!(parse_order_by(&["metrics.a sideways".into()]).is_err());
    }
}

/// The attributes an experiment search may name (besides `tags.<key>`).
pub const EXPERIMENT_ATTRS: &[&str] = &["name", "creation_time", "last_update_time"];

/// The operand of a [`SimpleClause`].
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    List(Vec<String>),
}

/// A clause of the registry's searches: `name LIKE 'x%'`, `run_id = '…'`, ``tags.`k` != 'v'``,
/// `version_number > 2`, `run_id IN ('a', 'b')`. `attr` is the bare attribute name, or `None`
/// with `tag` set for tag clauses.
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleClause {
    pub attr: Option<String>,
    pub tag: Option<String>,
    /// One of `=`, `!=`, `<`, `<=`, `>`, `>=`, `LIKE`, `ILIKE`, `IN`, `NOT IN`.
    pub op: String,
    pub value: Literal,
}

impl SimpleClause {
    /// Whether `value` (absent: the attribute or tag is missing) satisfies the clause. A missing
    /// tag satisfies only `!=` and `NOT IN`, as MLflow's prompt-excluding filter needs.
    pub fn accepts(&self, value: Option<&str>) -> bool {
        let Some(v) = value else {
            return matches!(self.op.as_str(), "!=" | "NOT IN");
        };
        match (&self.value, self.op.as_str()) {
            (Literal::Str(p), "=") => v == p,
            (Literal::Str(p), "!=") => v != p,
            (Literal::Str(p), "LIKE") => like_matches(p, v, false),
            (Literal::Str(p), "ILIKE") => like_matches(p, v, true),
            (Literal::List(l), "IN") => l.iter().any(|x| x == v),
            (Literal::List(l), "NOT IN") => !l.iter().any(|x| x == v),
            (Literal::Num(x), op) => match v.parse::<f64>() {
                Ok(n) => match op {
                    "=" => n == *x,
                    "!=" => n != *x,
                    "<" => n < *x,
                    "<=" => n <= *x,
                    ">" => n > *x,
                    ">=" => n >= *x,
                    _ => false,
                },
                Err(_) => false,
            },
            _ => false,
        }
    }
}

/// Parses an AND-joined filter over attributes and tags, refusing attributes outside `attrs`.
pub fn parse_simple_filter(src: &str, attrs: &[&str]) -> Result<Vec<SimpleClause>> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0, src };
    let mut out = Vec::new();
    if p.peek().is_none() {
        return Ok(out);
    }
    loop {
        let (entity, key) = match p.next() {
            Some(Tok::Word(w)) => match w.split_once('.') {
                Some((e, "")) => match p.next() {
                    Some(Tok::Ident(k) | Tok::Quoted(k)) => (e.to_ascii_lowercase(), k),
                    _ => return Err(p.err("expected a quoted key")),
                },
                Some((e, k)) => (e.to_ascii_lowercase(), k.to_owned()),
                None => ("attributes".to_owned(), w),
            },
            Some(Tok::Ident(k)) => ("attributes".to_owned(), k),
            _ => return Err(p.err("expected an identifier")),
        };
        let (attr, tag) = match entity.as_str() {
            "tags" | "tag" => (None, Some(key)),
            "attributes" | "attribute" | "attr" if attrs.contains(&key.as_str()) => {
                (Some(key), None)
            }
            _ => {
                return Err(p.err(&format!(
                    "invalid search key '{key}'; expected one of {attrs:?} or tags.<key>"
                )));
            }
        };
        let op = match p.next() {
            Some(Tok::Op(op)) => op.to_owned(),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => "LIKE".into(),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("ilike") => "ILIKE".into(),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => "IN".into(),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") && p.keyword("in") => {
                "NOT IN".into()
            }
            _ => return Err(p.err("expected a comparator")),
        };
        let value = if op.ends_with("IN") {
            if p.next() != Some(Tok::LParen) {
                return Err(p.err("expected '(' after IN"));
            }
            let mut values = vec![p.string_value()?];
            loop {
                match p.next() {
                    Some(Tok::Comma) => values.push(p.string_value()?),
                    Some(Tok::RParen) => break,
                    _ => return Err(p.err("expected ',' or ')' in IN list")),
                }
            }
            Literal::List(values)
        } else {
            match p.next() {
                Some(Tok::Quoted(v)) => Literal::Str(v),
                Some(Tok::Num(n)) => Literal::Num(
                    n.parse::<f64>()
                        .map_err(|_| p.err(&format!("'{n}' is not a number")))?,
                ),
                _ => return Err(p.err("expected a quoted string or a number")),
            }
        };
        if matches!(value, Literal::Num(_))
            && !matches!(op.as_str(), "=" | "!=" | "<" | "<=" | ">" | ">=")
        {
            return Err(p.err(&format!("comparator '{op}' is not allowed on numbers")));
        }
        if matches!(value, Literal::Str(_)) && !matches!(op.as_str(), "=" | "!=" | "LIKE" | "ILIKE")
        {
            return Err(p.err(&format!("comparator '{op}' is not allowed on strings")));
        }
        out.push(SimpleClause {
            attr,
            tag,
            op,
            value,
        });
        if p.peek().is_none() {
            return Ok(out);
        }
        if !p.keyword("and") {
            return Err(p.err("expected AND between clauses"));
        }
    }
}

/// SQL LIKE semantics (`%`, `_`), optionally ignoring case; used where filtering happens in memory.
pub fn like_matches(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative wildcard match with backtracking to the last '%'.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

#[cfg(test)]
mod experiment_filter_tests {
    use super::*;

    #[test]
    fn parses_experiment_filters() {
        let f = parse_simple_filter(
            "name LIKE 'exp%' and tags.team = 'ml' and creation_time > 5",
            EXPERIMENT_ATTRS,
        )
        .unwrap_or_default();
        let shape: Vec<(Option<&str>, Option<&str>, &str, Literal)> = f
            .iter()
            .map(|c| {
                (
                    c.attr.as_deref(),
                    c.tag.as_deref(),
                    c.op.as_str(),
                    c.value.clone(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (Some("name"), None, "LIKE", Literal::Str("exp%".into())),
                (None, Some("team"), "=", Literal::Str("ml".into())),
                (Some("creation_time"), None, ">", Literal::Num(5.0)),
            ]
        );
        assert!(parse_simple_filter("metrics.x > 1", EXPERIMENT_ATTRS).is_err());
        assert!(parse_simple_filter("creation_time LIKE 5", EXPERIMENT_ATTRS).is_err());
        assert!(like_matches("exp%", "experiment", false));
        assert!(!like_matches("EXP%", "experiment", false));
        assert!(like_matches("EXP%", "experiment", true));
        assert!(like_matches("a_c%", "abcdef", false));
        let f = parse_simple_filter(
            "name = 'm' AND tag.`mlflow.prompt.is_prompt` != 'true' and version_number >= 2",
            &["name", "version_number"],
        );
        let f = f.unwrap_or_default();
        assert_eq!(f.len(), 3);
        assert!(f[0].accepts(Some("m")) && !f[0].accepts(Some("n")));
        assert!(f[1].accepts(None), "a missing tag satisfies !=");
        assert!(f[2].accepts(Some("2")) && !f[2].accepts(Some("1")));
        assert!(parse_simple_filter("bogus = 'x'", &["name"]).is_err());
        let ins = parse_simple_filter("run_id IN ('a', 'b')", &["run_id"]).unwrap_or_default();
        assert!(ins[0].accepts(Some("b")) && !ins[0].accepts(Some("c")));
        assert!(!like_matches("a_c", "abcd", false));
    }
}

//! OTLP/HTTP trace export: `ExportTraceServiceRequest` read from protobuf or from OTLP's JSON
//! mapping (hex ids, 64-bit integers as strings or numbers, lowerCamelCase keys — snake_case
//! accepted too), and the answers written back in the request's encoding.
//!
//! A body that does not decode is refused whole ([`Error::Protobuf`] / [`Error::Json`]); a span
//! that decodes but breaks OTLP's rules (ids of the wrong length or all zeros, an end before its
//! start) is rejected alone and counted in the answer's `partial_success`, as OTLP prescribes.

use crate::wire::{FIXED32, FIXED64, LEN, Reader, VARINT, Writer};
use crate::{Error, Result, Span, SpanEvent, SpanLink, Status};
use serde_json::{Map, Number, Value};

/// Nested attribute values deeper than this are refused (a stack is not a resource to give away).
const MAX_DEPTH: usize = 16;

/// What one export request carried.
#[derive(Debug, Default)]
pub struct Export {
    pub spans: Vec<Span>,
    /// One reason per rejected span.
    pub rejected: Vec<String>,
}

impl Export {
    /// The `error_message` of a partial success: the first reasons, and how many there were.
    pub fn rejection_message(&self) -> String {
        let mut m: Vec<&str> = self.rejected.iter().take(3).map(String::as_str).collect();
        m.dedup();
        let more = self.rejected.len().saturating_sub(3);
        let mut s = m.join("; ");
        if more > 0 {
            s.push_str(&format!(" (and {more} more)"));
        }
        s
    }
}

/// Checks a span against OTLP's rules; the reason when it breaks one.
fn check(span: &Span) -> Option<String> {
    let ok_id = |s: &str, n: usize| s.len() == n && s.bytes().any(|b| b != b'0');
    if !ok_id(&span.trace_id, 32) {
        return Some(format!(
            "span '{}': trace_id must be 16 bytes, not all zero",
            span.name
        ));
    }
    if !ok_id(&span.span_id, 16) {
        return Some(format!(
            "span '{}': span_id must be 8 bytes, not all zero",
            span.name
        ));
    }
    if !span.parent_span_id.is_empty() && !ok_id(&span.parent_span_id, 16) {
        return Some(format!(
            "span '{}': parent_span_id must be 8 bytes",
            span.name
        ));
    }
    if span.start_ns <= 0 {
        return Some(format!(
            "span '{}': start_time_unix_nano is missing",
            span.name
        ));
    }
    if span.end_ns < span.start_ns {
        return Some(format!("span '{}': ends before it starts", span.name));
    }
    None
}

fn push(export: &mut Export, span: Span) {
    match check(&span) {
        None => export.spans.push(span),
        Some(reason) => export.rejected.push(reason),
    }
}

fn nanos(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// protobuf

/// Decodes a protobuf `ExportTraceServiceRequest`. `experiment_id` (MLflow's header) is set on
/// every span.
pub fn decode_protobuf(body: &[u8], experiment_id: &str) -> Result<Export> {
    let mut export = Export::default();
    let mut r = Reader::new(body);
    while !r.done() {
        let (field, wire) = r.key()?;
        if field == 1 {
            r.want(field, wire, LEN)?;
            resource_spans(r.bytes()?, experiment_id, &mut export)?;
        } else {
            r.skip(wire)?;
        }
    }
    Ok(export)
}

fn resource_spans(buf: &[u8], experiment_id: &str, export: &mut Export) -> Result<()> {
    let mut resource = Map::new();
    let mut scopes: Vec<&[u8]> = Vec::new();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.want(field, wire, LEN)?;
                let mut rr = Reader::new(r.bytes()?);
                while !rr.done() {
                    let (f, w) = rr.key()?;
                    if f == 1 {
                        rr.want(f, w, LEN)?;
                        key_value(rr.bytes()?, &mut resource, 0)?;
                    } else {
                        rr.skip(w)?;
                    }
                }
            }
            2 => {
                r.want(field, wire, LEN)?;
                scopes.push(r.bytes()?);
            }
            _ => r.skip(wire)?,
        }
    }
    let service = match resource.get("service.name") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    for scope in scopes {
        let mut scope_name = String::new();
        let mut spans: Vec<&[u8]> = Vec::new();
        let mut r = Reader::new(scope);
        while !r.done() {
            let (field, wire) = r.key()?;
            match field {
                1 => {
                    r.want(field, wire, LEN)?;
                    let mut sr = Reader::new(r.bytes()?);
                    while !sr.done() {
                        let (f, w) = sr.key()?;
                        if f == 1 {
                            sr.want(f, w, LEN)?;
                            scope_name = sr.string()?;
                        } else {
                            sr.skip(w)?;
                        }
                    }
                }
                2 => {
                    r.want(field, wire, LEN)?;
                    spans.push(r.bytes()?);
                }
                _ => r.skip(wire)?,
            }
        }
        for s in spans {
            let mut span = span(s)?;
            span.service = service.clone();
            span.scope = scope_name.clone();
            span.experiment_id = experiment_id.to_owned();
            span.resource = resource.clone();
            push(export, span);
        }
    }
    Ok(())
}

fn span(buf: &[u8]) -> Result<Span> {
    let mut s = Span::default();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 | 2 | 4 => {
                r.want(field, wire, LEN)?;
                let hex = base::to_hex(r.bytes()?);
                match field {
                    1 => s.trace_id = hex,
                    2 => s.span_id = hex,
                    _ => s.parent_span_id = hex,
                }
            }
            5 => {
                r.want(field, wire, LEN)?;
                s.name = r.string()?;
            }
            6 => {
                r.want(field, wire, VARINT)?;
                s.kind = r.varint()? as i64;
            }
            7 | 8 => {
                r.want(field, wire, FIXED64)?;
                let t = nanos(r.fixed64()?);
                if field == 7 {
                    s.start_ns = t;
                } else {
                    s.end_ns = t;
                }
            }
            9 => {
                r.want(field, wire, LEN)?;
                key_value(r.bytes()?, &mut s.attributes, 0)?;
            }
            11 => {
                r.want(field, wire, LEN)?;
                s.events.push(event(r.bytes()?)?);
            }
            13 => {
                r.want(field, wire, LEN)?;
                s.links.push(link(r.bytes()?)?);
            }
            15 => {
                r.want(field, wire, LEN)?;
                let mut sr = Reader::new(r.bytes()?);
                while !sr.done() {
                    let (f, w) = sr.key()?;
                    match f {
                        2 => {
                            sr.want(f, w, LEN)?;
                            s.status_message = sr.string()?;
                        }
                        3 => {
                            sr.want(f, w, VARINT)?;
                            s.status = Status::from_code(sr.varint()? as i64);
                        }
                        _ => sr.skip(w)?,
                    }
                }
            }
            16 => {
                r.want(field, wire, FIXED32)?;
                r.fixed32()?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(s)
}

fn event(buf: &[u8]) -> Result<SpanEvent> {
    let mut e = SpanEvent {
        time_ns: 0,
        name: String::new(),
        attributes: Map::new(),
    };
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.want(field, wire, FIXED64)?;
                e.time_ns = nanos(r.fixed64()?);
            }
            2 => {
                r.want(field, wire, LEN)?;
                e.name = r.string()?;
            }
            3 => {
                r.want(field, wire, LEN)?;
                key_value(r.bytes()?, &mut e.attributes, 0)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(e)
}

fn link(buf: &[u8]) -> Result<SpanLink> {
    let mut l = SpanLink {
        trace_id: String::new(),
        span_id: String::new(),
    };
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 | 2 => {
                r.want(field, wire, LEN)?;
                let hex = base::to_hex(r.bytes()?);
                if field == 1 {
                    l.trace_id = hex;
                } else {
                    l.span_id = hex;
                }
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(l)
}

fn key_value(buf: &[u8], into: &mut Map<String, Value>, depth: usize) -> Result<()> {
    let mut key = String::new();
    let mut value = Value::Null;
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.want(field, wire, LEN)?;
                key = r.string()?;
            }
            2 => {
                r.want(field, wire, LEN)?;
                value = any_value(r.bytes()?, depth + 1)?;
            }
            _ => r.skip(wire)?,
        }
    }
    into.insert(key, value);
    Ok(())
}

fn any_value(buf: &[u8], depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(Error::Protobuf(format!(
            "attribute values nested deeper than {MAX_DEPTH}"
        )));
    }
    let mut value = Value::Null;
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wire) = r.key()?;
        value = match field {
            1 => {
                r.want(field, wire, LEN)?;
                Value::String(r.string()?)
            }
            2 => {
                r.want(field, wire, VARINT)?;
                Value::Bool(r.varint()? != 0)
            }
            3 => {
                r.want(field, wire, VARINT)?;
                Value::from(r.varint()? as i64)
            }
            4 => {
                r.want(field, wire, FIXED64)?;
                Number::from_f64(f64::from_bits(r.fixed64()?)).map_or(Value::Null, Value::Number)
            }
            5 => {
                r.want(field, wire, LEN)?;
                let mut items = Vec::new();
                let mut ar = Reader::new(r.bytes()?);
                while !ar.done() {
                    let (f, w) = ar.key()?;
                    if f == 1 {
                        ar.want(f, w, LEN)?;
                        items.push(any_value(ar.bytes()?, depth + 1)?);
                    } else {
                        ar.skip(w)?;
                    }
                }
                Value::Array(items)
            }
            6 => {
                r.want(field, wire, LEN)?;
                let mut m = Map::new();
                let mut kr = Reader::new(r.bytes()?);
                while !kr.done() {
                    let (f, w) = kr.key()?;
                    if f == 1 {
                        kr.want(f, w, LEN)?;
                        key_value(kr.bytes()?, &mut m, depth + 1)?;
                    } else {
                        kr.skip(w)?;
                    }
                }
                Value::Object(m)
            }
            7 => {
                r.want(field, wire, LEN)?;
                Value::String(base::to_hex(r.bytes()?))
            }
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
    }
    Ok(value)
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn write_value(w: &mut Writer, v: &Value) {
    match v {
        Value::String(s) => w.bytes_always(1, s.as_bytes()),
        Value::Bool(b) => {
            w.varint((2 << 3) | u64::from(VARINT));
            w.varint(u64::from(*b));
        }
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                w.varint((3 << 3) | u64::from(VARINT));
                w.varint(i as u64);
            }
            None => w.double(4, n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(items) => w.message(5, |a| {
            for item in items {
                a.message(1, |x| write_value(x, item));
            }
        }),
        Value::Object(m) => w.message(6, |kv| write_attributes(kv, 1, m)),
        Value::Null => {}
    }
}

fn write_attributes(w: &mut Writer, field: u32, attrs: &Map<String, Value>) {
    for (k, v) in attrs {
        w.message(field, |kv| {
            kv.string(1, k);
            kv.message(2, |x| write_value(x, v));
        });
    }
}

/// Encodes spans as a protobuf `ExportTraceServiceRequest`, one `ResourceSpans` per run of
/// spans with the same service (what an SDK's exporter sends; used by tests and the benchmark).
pub fn encode_protobuf(spans: &[Span]) -> Vec<u8> {
    let mut w = Writer::default();
    let mut i = 0;
    while i < spans.len() {
        let j = spans[i..]
            .iter()
            .position(|s| s.service != spans[i].service || s.scope != spans[i].scope)
            .map_or(spans.len(), |n| i + n);
        let group = &spans[i..j];
        w.message(1, |rs| {
            rs.message(1, |res| {
                let mut attrs = group[0].resource.clone();
                attrs.insert(
                    "service.name".into(),
                    Value::String(group[0].service.clone()),
                );
                write_attributes(res, 1, &attrs);
            });
            rs.message(2, |ss| {
                ss.message(1, |sc| sc.string(1, &group[0].scope));
                for s in group {
                    ss.message(2, |sp| {
                        sp.bytes(1, &hex_bytes(&s.trace_id));
                        sp.bytes(2, &hex_bytes(&s.span_id));
                        sp.bytes(4, &hex_bytes(&s.parent_span_id));
                        sp.string(5, &s.name);
                        sp.uint(6, s.kind as u64);
                        sp.fixed64(7, s.start_ns as u64);
                        sp.fixed64(8, s.end_ns as u64);
                        write_attributes(sp, 9, &s.attributes);
                        for e in &s.events {
                            sp.message(11, |ev| {
                                ev.fixed64(1, e.time_ns as u64);
                                ev.string(2, &e.name);
                                write_attributes(ev, 3, &e.attributes);
                            });
                        }
                        for l in &s.links {
                            sp.message(13, |lk| {
                                lk.bytes(1, &hex_bytes(&l.trace_id));
                                lk.bytes(2, &hex_bytes(&l.span_id));
                            });
                        }
                        if s.status != Status::Unset || !s.status_message.is_empty() {
                            sp.message(15, |st| {
                                st.string(2, &s.status_message);
                                st.uint(3, s.status.code() as u64);
                            });
                        }
                    });
                }
            });
        });
        i = j;
    }
    w.buf
}

/// A protobuf `ExportTraceServiceResponse`; `partial_success` only when spans were rejected.
pub fn encode_response(rejected: usize, message: &str) -> Vec<u8> {
    let mut w = Writer::default();
    if rejected > 0 {
        w.message(1, |ps| {
            ps.int64(1, rejected as i64);
            ps.string(2, message);
        });
    }
    w.buf
}

/// A protobuf `google.rpc.Status`, the body of an OTLP error answer.
pub fn encode_status(code: i32, message: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.int64(1, i64::from(code));
    w.string(2, message);
    w.buf
}

// ---------------------------------------------------------------------------------------------
// JSON

fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> &'a Value {
    match v.get(camel) {
        Some(x) if !x.is_null() => x,
        _ => v.get(snake).unwrap_or(&Value::Null),
    }
}

fn jerr(what: impl Into<String>) -> Error {
    Error::Json(what.into())
}

fn list<'a>(v: &'a Value, camel: &str, snake: &str) -> Result<&'a [Value]> {
    match field(v, camel, snake) {
        Value::Null => Ok(&[]),
        Value::Array(a) => Ok(a),
        _ => Err(jerr(format!("'{camel}' must be an array"))),
    }
}

fn json_u64(v: &Value, name: &str) -> Result<u64> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| jerr(format!("'{name}' must be a non-negative integer"))),
        Value::String(s) => s
            .parse()
            .map_err(|_| jerr(format!("'{name}' must be an integer, got \"{s}\""))),
        _ => Err(jerr(format!("'{name}' must be an integer"))),
    }
}

fn json_hex(v: &Value, name: &str) -> Result<String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => {
            if s.len() % 2 == 1 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Err(jerr(format!("'{name}' must be hex, got \"{s}\"")))
            } else {
                Ok(s.to_ascii_lowercase())
            }
        }
        _ => Err(jerr(format!("'{name}' must be a hex string"))),
    }
}

fn json_attrs(v: &Value, into: &mut Map<String, Value>, depth: usize) -> Result<()> {
    let items = match v {
        Value::Null => return Ok(()),
        Value::Array(a) => a,
        _ => return Err(jerr("'attributes' must be an array of {key, value}")),
    };
    for kv in items {
        let key = kv
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| jerr("an attribute has no string 'key'"))?;
        let value = json_any(kv.get("value").unwrap_or(&Value::Null), depth + 1)?;
        into.insert(key.to_owned(), value);
    }
    Ok(())
}

fn json_any(v: &Value, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(jerr(format!(
            "attribute values nested deeper than {MAX_DEPTH}"
        )));
    }
    let Some(obj) = v.as_object() else {
        return if v.is_null() {
            Ok(Value::Null)
        } else {
            Err(jerr("an attribute value must be an AnyValue object"))
        };
    };
    let Some((kind, inner)) = obj.iter().next() else {
        return Ok(Value::Null);
    };
    Ok(match kind.as_str() {
        "stringValue" | "string_value" => Value::String(
            inner
                .as_str()
                .ok_or_else(|| jerr("stringValue must be a string"))?
                .to_owned(),
        ),
        "boolValue" | "bool_value" => Value::Bool(
            inner
                .as_bool()
                .ok_or_else(|| jerr("boolValue must be a boolean"))?,
        ),
        "intValue" | "int_value" => match inner {
            Value::Number(n) if n.is_i64() => inner.clone(),
            Value::String(s) => Value::from(
                s.parse::<i64>()
                    .map_err(|_| jerr(format!("intValue \"{s}\" is not an integer")))?,
            ),
            _ => return Err(jerr("intValue must be an integer")),
        },
        "doubleValue" | "double_value" => match inner {
            Value::Number(_) => inner.clone(),
            // OTLP JSON writes NaN and infinities as strings; they are stored as null.
            Value::String(_) => Value::Null,
            _ => return Err(jerr("doubleValue must be a number")),
        },
        "arrayValue" | "array_value" => Value::Array(
            list(inner, "values", "values")?
                .iter()
                .map(|x| json_any(x, depth + 1))
                .collect::<Result<_>>()?,
        ),
        "kvlistValue" | "kvlist_value" => {
            let mut m = Map::new();
            json_attrs(field(inner, "values", "values"), &mut m, depth + 1)?;
            Value::Object(m)
        }
        // bytesValue is base64 in OTLP JSON; kept as given.
        "bytesValue" | "bytes_value" => inner.clone(),
        other => return Err(jerr(format!("unknown AnyValue kind '{other}'"))),
    })
}

fn json_kind(v: &Value) -> Result<i64> {
    Ok(match v {
        Value::Null => 0,
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| jerr("'kind' must be an integer"))?,
        Value::String(s) => match s.as_str() {
            "SPAN_KIND_UNSPECIFIED" => 0,
            "SPAN_KIND_INTERNAL" => 1,
            "SPAN_KIND_SERVER" => 2,
            "SPAN_KIND_CLIENT" => 3,
            "SPAN_KIND_PRODUCER" => 4,
            "SPAN_KIND_CONSUMER" => 5,
            _ => return Err(jerr(format!("unknown span kind \"{s}\""))),
        },
        _ => return Err(jerr("'kind' must be an integer")),
    })
}

fn json_status(v: &Value) -> Result<(Status, String)> {
    if v.is_null() {
        return Ok((Status::Unset, String::new()));
    }
    let code = match &v["code"] {
        Value::Null => 0,
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.as_str() {
            "STATUS_CODE_OK" => 1,
            "STATUS_CODE_ERROR" => 2,
            _ => 0,
        },
        _ => return Err(jerr("'status.code' must be an integer")),
    };
    let message = v["message"].as_str().unwrap_or_default().to_owned();
    Ok((Status::from_code(code), message))
}

/// Decodes OTLP's JSON encoding of `ExportTraceServiceRequest`.
pub fn decode_json(body: &[u8], experiment_id: &str) -> Result<Export> {
    let root: Value = serde_json::from_slice(body).map_err(|e| jerr(format!("not JSON: {e}")))?;
    if !root.is_object() {
        return Err(jerr("the body must be an ExportTraceServiceRequest object"));
    }
    let mut export = Export::default();
    for rs in list(&root, "resourceSpans", "resource_spans")? {
        let mut resource = Map::new();
        json_attrs(
            field(
                field(rs, "resource", "resource"),
                "attributes",
                "attributes",
            ),
            &mut resource,
            0,
        )?;
        let service = resource
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for ss in list(rs, "scopeSpans", "scope_spans")? {
            let scope = field(field(ss, "scope", "scope"), "name", "name")
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for sp in list(ss, "spans", "spans")? {
                let mut attributes = Map::new();
                json_attrs(field(sp, "attributes", "attributes"), &mut attributes, 0)?;
                let mut events = Vec::new();
                for e in list(sp, "events", "events")? {
                    let mut a = Map::new();
                    json_attrs(field(e, "attributes", "attributes"), &mut a, 0)?;
                    events.push(SpanEvent {
                        time_ns: nanos(json_u64(
                            field(e, "timeUnixNano", "time_unix_nano"),
                            "timeUnixNano",
                        )?),
                        name: field(e, "name", "name")
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        attributes: a,
                    });
                }
                let mut links = Vec::new();
                for l in list(sp, "links", "links")? {
                    links.push(SpanLink {
                        trace_id: json_hex(field(l, "traceId", "trace_id"), "links.traceId")?,
                        span_id: json_hex(field(l, "spanId", "span_id"), "links.spanId")?,
                    });
                }
                let (status, status_message) = json_status(field(sp, "status", "status"))?;
                let name = match field(sp, "name", "name") {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    _ => return Err(jerr("a span's 'name' must be a string")),
                };
                push(
                    &mut export,
                    Span {
                        trace_id: json_hex(field(sp, "traceId", "trace_id"), "traceId")?,
                        span_id: json_hex(field(sp, "spanId", "span_id"), "spanId")?,
                        parent_span_id: json_hex(
                            field(sp, "parentSpanId", "parent_span_id"),
                            "parentSpanId",
                        )?,
                        name,
                        kind: json_kind(field(sp, "kind", "kind"))?,
                        start_ns: nanos(json_u64(
                            field(sp, "startTimeUnixNano", "start_time_unix_nano"),
                            "startTimeUnixNano",
                        )?),
                        end_ns: nanos(json_u64(
                            field(sp, "endTimeUnixNano", "end_time_unix_nano"),
                            "endTimeUnixNano",
                        )?),
                        status,
                        status_message,
                        service: service.clone(),
                        scope: scope.clone(),
                        experiment_id: experiment_id.to_owned(),
                        attributes,
                        resource: resource.clone(),
                        events,
                        links,
                    },
                );
            }
        }
    }
    Ok(export)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample() -> Span {
        let attrs = json!({
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "smollm2",
            "gen_ai.usage.input_tokens": 31, "temperature": 0.25, "stream": false,
            "tags": ["a", "b"], "nested": {"k": "v"}
        });
        Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: "1111111111111111".into(),
            name: "chat smollm2".into(),
            kind: 3,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_250_000_000,
            status: Status::Error,
            status_message: "upstream timed out".into(),
            service: "rag-app".into(),
            scope: "capstan".into(),
            experiment_id: String::new(),
            attributes: attrs.as_object().unwrap().clone(),
            resource: json!({"service.name": "rag-app", "host.name": "h1"})
                .as_object()
                .unwrap()
                .clone(),
            events: vec![SpanEvent {
                time_ns: 1_700_000_000_100_000_000,
                name: "first_token".into(),
                attributes: Map::new(),
            }],
            links: vec![SpanLink {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "b7ad6b7169203331".into(),
            }],
        }
    }

    #[test]
    fn protobuf_round_trips_every_field() {
        let s = sample();
        let body = encode_protobuf(std::slice::from_ref(&s));
        let e = decode_protobuf(&body, "7").unwrap();
        assert!(e.rejected.is_empty(), "{:?}", e.rejected);
        let mut want = s;
        want.experiment_id = "7".into();
        assert_eq!(e.spans, vec![want]);
    }

    #[test]
    fn truncated_protobuf_is_refused_whole() {
        let body = encode_protobuf(&[sample(), sample()]);
        for cut in [1, body.len() / 2, body.len() - 1] {
            assert!(
                matches!(decode_protobuf(&body[..cut], ""), Err(Error::Protobuf(_))),
                "cut at {cut}"
            );
        }
        // A field with the wrong wire type.
        assert!(decode_protobuf(&[0x0d, 0, 0, 0, 0], "").is_err());
    }

    #[test]
    fn bad_spans_are_rejected_alone() {
        let mut zero = sample();
        zero.trace_id = "0".repeat(32);
        let mut backwards = sample();
        backwards.span_id = "2222222222222222".into();
        backwards.end_ns = backwards.start_ns - 1;
        let body = encode_protobuf(&[sample(), zero, backwards]);
        let e = decode_protobuf(&body, "").unwrap();
        assert_eq!(e.spans.len(), 1);
        assert_eq!(e.rejected.len(), 2);
        assert!(
            e.rejection_message().contains("trace_id"),
            "{}",
            e.rejection_message()
        );
        assert!(
            e.rejection_message().contains("ends before"),
            "{}",
            e.rejection_message()
        );
    }

    #[test]
    fn json_encoding_as_the_specification_writes_it() {
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeSpans": [{"scope": {"name": "my.lib"}, "spans": [{
                "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
                "parentSpanId": "EEE19B7EC3C1B173", "name": "I'm a server span",
                "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": 1544712661000000000u64,
                "kind": 2,
                "attributes": [
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "42"}},
                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                    {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"boolValue": true}]}}}
                ],
                "status": {"code": 2, "message": "boom"}
            }]}]
        }]});
        let e = decode_json(body.to_string().as_bytes(), "").unwrap();
        assert!(e.rejected.is_empty());
        let s = &e.spans[0];
        assert_eq!(s.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(s.service, "svc");
        assert_eq!(s.scope, "my.lib");
        assert_eq!(s.kind, 2);
        assert_eq!(s.duration_ms(), 1000.0);
        assert_eq!(s.status, Status::Error);
        assert_eq!(s.genai().output_tokens, Some(42));
        assert_eq!(s.attributes["list"], json!(["x", true]));
    }

    #[test]
    fn malformed_json_names_what_is_wrong() {
        let cases = [
            (&b"{not json"[..], "not JSON"),
            (br#"{"resourceSpans": 3}"#, "must be an array"),
            (br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}"#, "hex"),
            (br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}"#, "integer"),
        ];
        for (body, want) in cases {
            match decode_json(body, "") {
                Err(Error::Json(m)) => assert!(m.contains(want), "{m} lacks {want}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn responses_encode_partial_success() {
        assert!(encode_response(0, "").is_empty());
        let b = encode_response(2, "bad ids");
        let mut r = Reader::new(&b);
        let (f, _) = r.key().unwrap();
        assert_eq!(f, 1);
        let mut inner = Reader::new(r.bytes().unwrap());
        assert_eq!(inner.key().unwrap(), (1, VARINT));
        assert_eq!(inner.varint().unwrap(), 2);
        assert_eq!(inner.key().unwrap(), (2, LEN));
        assert_eq!(inner.string().unwrap(), "bad ids");
    }
}

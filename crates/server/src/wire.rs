//! Lenient JSON and query-string readers matching what MLflow's protobuf-JSON parser accepts:
//! int64 as number or string, doubles as number or "NaN"/"Infinity", empty bodies as `{}`.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A JSON body; any failure to read or parse is an MLflow `INVALID_PARAMETER_VALUE`.
pub struct MlJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MlJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError {
                status: e.status(),
                ..ApiError::invalid(format!(
                    "Could not read the request body: {}",
                    e.body_text()
                ))
            })?;
        let bytes: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(MlJson)
            .map_err(|e| ApiError::invalid(format!("Invalid request body: {e}")))
    }
}

/// Query parameters as pairs, keeping repeated keys (MLflow sends lists that way).
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_pairs(q).map(QueryPairs)
    }
}

fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |s: &str| -> Result<String, ApiError> {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => {
                        return Err(ApiError::invalid(
                            "Malformed percent-encoding in the query string",
                        ));
                    }
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8(out).map_err(|_| ApiError::invalid("Query string is not UTF-8"))
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

impl QueryPairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key).ok_or_else(|| {
            ApiError::invalid(format!("Missing value for required parameter '{key}'"))
        })
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn u32(&self, key: &str) -> Result<Option<u32>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    ApiError::invalid(format!("Invalid value '{v}' for parameter '{key}'"))
                })
            })
            .transpose()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    I(i64),
    F(f64),
    S(String),
}

pub fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::I(i)) => Ok(Some(i)),
        Some(NumOrStr::F(f)) if f.fract() == 0.0 && f.is_finite() => Ok(Some(f as i64)),
        Some(NumOrStr::F(f)) => Err(serde::de::Error::custom(format!(
            "expected an integer, got {f}"
        ))),
        Some(NumOrStr::S(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got '{s}'"))),
    }
}

pub fn de_opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::I(i)) => Ok(Some(i as f64)),
        Some(NumOrStr::F(f)) => Ok(Some(f)),
        Some(NumOrStr::S(s)) => match s.trim() {
            "NaN" | "nan" => Ok(Some(f64::NAN)),
            "Infinity" | "inf" => Ok(Some(f64::INFINITY)),
            "-Infinity" | "-inf" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .parse::<f64>()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("expected a number, got '{s}'"))),
        },
    }
}

/// Strings that MLflow also accepts as other JSON scalars (`"value": 5` for a param).
pub fn de_opt_stringish<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            Ok(Some(v.to_string()))
        }
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}

/// A double as MLflow writes it: non-finite values as strings.
pub fn double(v: f64) -> serde_json::Value {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Infinity".into()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        v.into()
    }
}

/// Opaque page tokens: base64 of `{"offset": N}`, like MLflow's.
pub fn encode_page_token(offset: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

pub fn decode_page_token(token: Option<&str>) -> Result<u64, ApiError> {
    use base64::Engine;
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad = || ApiError::invalid(format!("Invalid page token '{t}'"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("offset").and_then(|o| o.as_u64()).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_roundtrip_and_refuse_garbage() {
        assert_eq!(
            decode_page_token(Some(&encode_page_token(1234))).ok(),
            Some(1234)
        );
        assert_eq!(decode_page_token(None).ok(), Some(0));
        assert!(decode_page_token(Some("!!!")).is_err());
    }

    #[test]
    fn query_strings_decode() {
        let q = serde_urlencoded_pairs("a=1&b=x%20y&b=z+w&path=1%2Fr").unwrap_or_default();
        assert_eq!(
            q,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("b".into(), "z w".into()),
                ("path".into(), "1/r".into())
            ]
        );
        assert!(serde_urlencoded_pairs("a=%zz").is_err());
    }
}

//! `headers`: plain values, and references to the secrets that hold the
//! others (read by [`crate::canary::secrets`], never kept in the
//! configuration).

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::ConfigError;
use crate::fields::show;

/// Where a header value is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// A Secrets Manager secret (name or ARN); its `SecretString` is the value.
    Secret(String),
    /// An SSM parameter (name or ARN), read with decryption (SecureString).
    Parameter(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Secret(id) => write!(f, "secret {id}"),
            SecretRef::Parameter(name) => write!(f, "SSM parameter {name}"),
        }
    }
}

/// The plain headers, and the secret ones by name (in name order).
pub type Headers = (HeaderMap, Vec<(HeaderName, SecretRef)>);

/// `headers`: names to a string, `{"secret": "<name or ARN>"}` (Secrets
/// Manager) or `{"ssm": "<parameter name or ARN>"}` (an SSM SecureString).
pub fn parse_headers(location: &str, value: &Value) -> Result<Headers, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError::new(
            location,
            format!(
                "expected an object of header names and values, got {}",
                show(value)
            ),
        ));
    };
    let mut headers = HeaderMap::new();
    let mut secret = Vec::new();
    for (name, value) in map {
        let at = format!("{location}.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(&at, "is not a valid header name"))?;
        match value {
            Value::String(text) => {
                let header_value = HeaderValue::from_str(text).map_err(|_| {
                    ConfigError::new(&at, "is not a valid header value (control characters?)")
                })?;
                headers.append(header, header_value);
            }
            Value::Object(source) if source.len() == 1 => {
                let (kind, id) = source
                    .iter()
                    .next()
                    .map(|(k, v)| (k.as_str(), v))
                    .unwrap_or(("", value));
                let id = match id {
                    Value::String(id) if !id.trim().is_empty() => id.trim().to_owned(),
                    other => {
                        return Err(ConfigError::new(
                            format!("{at}.{kind}"),
                            format!("expected a name or ARN, got {}", show(other)),
                        ));
                    }
                };
                let reference = match kind {
                    "secret" => SecretRef::Secret(id),
                    "ssm" => SecretRef::Parameter(id),
                    other => {
                        return Err(ConfigError::new(
                            format!("{at}.{other}"),
                            "is not a value source: use {\"secret\": \"<Secrets Manager name or ARN>\"} or {\"ssm\": \"<SSM parameter name>\"}",
                        ));
                    }
                };
                secret.push((header, reference));
            }
            other => {
                return Err(ConfigError::new(
                    &at,
                    format!(
                        "expected a string, {{\"secret\": \"<name or ARN>\"}} or {{\"ssm\": \"<parameter name>\"}}, got {}",
                        show(other)
                    ),
                ));
            }
        }
    }
    // By name: the same order whatever the JSON map's order (serde_json's
    // `preserve_order` may be on or off, depending on the build).
    secret.sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
    Ok((headers, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_values_and_secret_references() {
        let (plain, secret) = parse_headers(
            "H",
            &json!({
                "x-api-key": {"secret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:api-AbCdEf"},
                "authorization": {"ssm": " /tether/token "},
                "Accept": "application/json",
            }),
        )
        .unwrap();
        assert_eq!(plain.len(), 1);
        assert_eq!(plain["accept"], "application/json");
        assert_eq!(
            secret,
            vec![
                (
                    HeaderName::from_static("authorization"),
                    SecretRef::Parameter("/tether/token".into())
                ),
                (
                    HeaderName::from_static("x-api-key"),
                    SecretRef::Secret(
                        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:api-AbCdEf".into()
                    )
                ),
            ]
        );
        assert_eq!(secret[0].1.to_string(), "SSM parameter /tether/token");
    }

    #[test]
    fn bad_headers_name_the_header_and_the_value() {
        let cases = [
            (json!([1]), "H", "expected an object"),
            (json!({"bad name": "x"}), "H.bad name", "header name"),
            (json!({"x": 1}), "H.x", "got 1"),
            (json!({"x": "a\nb"}), "H.x", "header value"),
            (
                json!({"x-key": {"vault": "k"}}),
                "H.x-key.vault",
                "value source",
            ),
            (
                json!({"x-key": {"secret": ""}}),
                "H.x-key.secret",
                "name or ARN",
            ),
            (
                json!({"x-key": {"secret": "a", "ssm": "b"}}),
                "H.x-key",
                "{\"secret\"",
            ),
        ];
        for (value, location, needle) in cases {
            let err = parse_headers("H", &value).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
    }
}

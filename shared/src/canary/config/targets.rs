//! Where the endpoints come from: `CANARY_TARGETS` (a JSON array), or the
//! S3 object `CANARY_TARGETS_S3_URI` names (for lists beyond Lambda's 4 KB
//! environment), and the array itself: its size and its distinct names.

use super::Endpoint;
use super::names::first_repeat;
use crate::config::{ConfigError, Vars, validate_bucket};
use crate::fields::{json_array, shorten};

/// The variable holding the endpoints.
pub const TARGETS_VAR: &str = "CANARY_TARGETS";
/// The variable naming an S3 object that holds `CANARY_TARGETS`.
pub const TARGETS_URI: &str = "CANARY_TARGETS_S3_URI";
/// Endpoints per function: every round's metrics go out in one call.
pub const MAX_ENDPOINTS: usize = 150;

/// Where `CANARY_TARGETS` is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The variable itself.
    Variable,
    /// An S3 object, read once at cold start.
    Object(S3Uri),
}

/// `CANARY_TARGETS_S3_URI` when set (and `CANARY_TARGETS` then unset).
pub fn source<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Source, ConfigError> {
    let Some(uri) = vars.get(TARGETS_URI) else {
        return Ok(Source::Variable);
    };
    if vars.get(TARGETS_VAR).is_some() {
        return Err(ConfigError::new(
            TARGETS_URI,
            "is set together with CANARY_TARGETS: use one or the other",
        ));
    }
    Ok(Source::Object(S3Uri::parse(&uri)?))
}

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    pub fn parse(text: &str) -> Result<S3Uri, ConfigError> {
        let bad = || {
            ConfigError::new(
                TARGETS_URI,
                format!("\"{}\" is not s3://<bucket>/<key>", shorten(text)),
            )
        };
        let rest = text.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
        if key.is_empty() || validate_bucket(bucket).is_err() {
            return Err(bad());
        }
        Ok(S3Uri {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl std::fmt::Display for S3Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The endpoints of `CANARY_TARGETS`: at most [`MAX_ENDPOINTS`], each
/// valid, their names distinct.
pub fn parse_targets(json: &str) -> Result<Vec<Endpoint>, ConfigError> {
    let items = json_array(TARGETS_VAR, json, "endpoints")?;
    if items.len() > MAX_ENDPOINTS {
        return Err(ConfigError::new(
            TARGETS_VAR,
            format!(
                "has {} endpoints; one function probes at most {MAX_ENDPOINTS} (use a second function)",
                items.len()
            ),
        ));
    }
    let endpoints = items
        .iter()
        .enumerate()
        .map(|(i, item)| Endpoint::from_json(&format!("{TARGETS_VAR}[{i}]"), item))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((first, i)) = first_repeat(endpoints.iter().map(|e| e.name.as_str())) {
        return Err(ConfigError::new(
            format!("{TARGETS_VAR}[{i}].name"),
            format!(
                "\"{}\" is already the name of {TARGETS_VAR}[{first}]: names are the metric dimension and must be unique",
                shorten(&endpoints[i].name)
            ),
        ));
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The endpoint ceiling has one source, this constant: the pages that
    /// give it say the same.
    #[test]
    fn the_docs_give_this_endpoint_ceiling() {
        let configuration = include_str!("../../../../docs/configuration.md");
        let operations = include_str!("../../../../docs/operations.md");
        assert!(configuration.contains(&format!("1 to {MAX_ENDPOINTS} endpoints")));
        assert!(configuration.contains(&format!("one function probes at most {MAX_ENDPOINTS}")));
        assert!(operations.contains(&format!("any number up to {MAX_ENDPOINTS}")));
    }

    #[test]
    fn the_targets_object_is_an_s3_uri() {
        let uri = S3Uri::parse("s3://tether-config/canary/targets.json").unwrap();
        assert_eq!(
            (uri.bucket.as_str(), uri.key.as_str()),
            ("tether-config", "canary/targets.json")
        );
        assert_eq!(uri.to_string(), "s3://tether-config/canary/targets.json");
        for bad in [
            "tether-config/x",
            "s3://tether-config",
            "s3://tether-config/",
            "s3://Bad_B/x",
        ] {
            let err = S3Uri::parse(bad).unwrap_err();
            assert_eq!(err.location, TARGETS_URI);
            assert!(err.problem.contains(bad), "{err}");
        }
    }

    #[test]
    fn one_source_at_a_time() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            Vars(move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        assert_eq!(source(&vars(&[(TARGETS_VAR, "[]")])), Ok(Source::Variable));
        assert_eq!(
            source(&vars(&[(TARGETS_URI, "s3://b-1/k")])),
            Ok(Source::Object(S3Uri::parse("s3://b-1/k").unwrap()))
        );
        let both = source(&vars(&[(TARGETS_URI, "s3://b-1/k"), (TARGETS_VAR, "[]")]));
        assert!(both.unwrap_err().problem.contains("one or the other"));
    }

    #[test]
    fn the_array_its_size_and_distinct_names() {
        let ok = json!([
            {"name": "orders-api", "url": "http://a/"},
            {"name": "orders_api", "url": "http://b/"},
            {"name": "Orders-API", "url": "http://c/"},
        ]);
        assert_eq!(parse_targets(&ok.to_string()).unwrap().len(), 3);
        let too_many: Vec<_> = (0..=MAX_ENDPOINTS)
            .map(|i| json!({"name": format!("e{i}"), "url": "http://a/"}))
            .collect();
        let cases = [
            ("[{".to_owned(), TARGETS_VAR, "not valid JSON"),
            ("{}".to_owned(), TARGETS_VAR, "array"),
            ("[]".to_owned(), TARGETS_VAR, "empty"),
            ("[1]".to_owned(), "CANARY_TARGETS[0]", "object"),
            (
                json!(too_many).to_string(),
                TARGETS_VAR,
                "has 151 endpoints",
            ),
            (
                json!([{"name": "a", "url": "http://a/"}, {"name": "b", "url": "http://b/"}, {"name": "a", "url": "http://c/"}])
                    .to_string(),
                "CANARY_TARGETS[2].name",
                "\"a\" is already the name of CANARY_TARGETS[0]",
            ),
        ];
        for (json, location, needle) in cases {
            let err = parse_targets(&json).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }
}

//! health-canary configuration from the environment, validated at cold start.
//!
//! - [`targets`]: where the endpoints come from (`CANARY_TARGETS`, or the S3
//!   object of `CANARY_TARGETS_S3_URI`), their number and distinct names;
//! - [`endpoint`]: one endpoint's fields, and the limits derived from them;
//! - [`status`]: `expect_status`; [`headers`]: header values and the
//!   secrets they name; [`names`]: the one rule for endpoint names;
//! - [`record`]: the failover record an endpoint must not resolve.
//!
//! This file reads the rest: `PROBES_PER_INVOCATION` and `PROBE_INTERVAL_MS`
//! space the rounds of one invocation, `SECRETS_TTL_SECONDS` bounds how long
//! a secret header value is sent before it is read again, and `DNS_SERVERS`,
//! `DNS_TIMEOUT_MS` and `METRICS_NAMESPACE` are read as for target-sync.

pub mod endpoint;
pub mod headers;
pub mod names;
pub mod record;
pub mod status;
pub mod targets;

use std::time::Duration;

use crate::config::{ConfigError, DnsSettings, Vars, dns_settings, namespace};
pub use endpoint::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, Endpoint, MAX_CONNECT_TO, MAX_REQUEST_BODY,
    Trust, dns_share, is_idempotent,
};
pub use headers::SecretRef;
pub use record::{FailoverRecord, RECORD_VAR};
pub use status::StatusSet;
pub use targets::{MAX_ENDPOINTS, S3Uri, Source, TARGETS_URI, TARGETS_VAR};

pub const DEFAULT_PROBES: u64 = 1;
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
/// The longest an invocation may plan to probe: the Lambda maximum is 15
/// minutes, and one minute is kept for the last round and publishing.
pub const MAX_PLANNED: Duration = Duration::from_secs(14 * 60);
/// `SECRETS_TTL_SECONDS`: how long a secret header value is sent before it
/// is read again. 300 s is what AWS's own cache for Lambda keeps a secret:
/// "By default, it caches secrets for 300 seconds (5 minutes)" (Lambda
/// Developer Guide, Use Secrets Manager secrets in Lambda functions,
/// <https://docs.aws.amazon.com/lambda/latest/dg/with-secrets-manager.html>).
pub const SECRETS_TTL_VAR: &str = "SECRETS_TTL_SECONDS";
pub const DEFAULT_SECRETS_TTL_SECONDS: u64 = 300;

/// The whole health-canary configuration.
#[derive(Debug, Clone)]
pub struct CanaryConfig {
    pub endpoints: Vec<Endpoint>,
    /// Probe rounds per invocation.
    pub probes_per_invocation: u32,
    /// From the start of one round to the start of the next.
    pub probe_interval: Duration,
    /// A secret header value older than this is read again.
    pub secrets_ttl: Duration,
    /// `FAILOVER_RECORD_NAME`, which no endpoint resolves.
    pub failover_record: Option<FailoverRecord>,
    pub dns: DnsSettings,
    pub namespace: String,
}

impl CanaryConfig {
    /// Reads the configuration from the process environment; the endpoints
    /// of `CANARY_TARGETS_S3_URI` are read through `fetch`, once, at cold
    /// start.
    pub async fn load<Fut>(fetch: impl FnOnce(S3Uri) -> Fut) -> Result<Self, ConfigError>
    where
        Fut: std::future::Future<Output = Result<String, String>>,
    {
        let env = Vars(|name: &str| std::env::var(name).ok());
        let uri = match targets::source(&env)? {
            Source::Variable => return Self::from_vars(&env),
            Source::Object(uri) => uri,
        };
        let text = fetch(uri.clone())
            .await
            .map_err(|e| ConfigError::new(TARGETS_URI, format!("reading {uri}: {e}")))?;
        Self::from_vars(&Vars(|name: &str| match name {
            TARGETS_VAR => Some(text.clone()),
            other => std::env::var(other).ok(),
        }))
        .map_err(|e| ConfigError::new(format!("{} (from {uri})", e.location), e.problem))
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars(|name: &str| std::env::var(name).ok()))
    }

    /// Reads the configuration through `vars` (tests pass a map).
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let json = vars.get(TARGETS_VAR).ok_or_else(|| {
            ConfigError::new(
                TARGETS_VAR,
                "is not set: give a JSON array of endpoints such as [{\"name\": \"api\", \"url\": \"https://api.example.com/health\"}]",
            )
        })?;
        let mut endpoints = targets::parse_targets(&json)?;
        let failover_record = match vars.get(RECORD_VAR) {
            None => None,
            Some(name) => Some(FailoverRecord::parse(&name)?),
        };
        if let Some(record) = &failover_record {
            record::refuse_self_probe(record, &endpoints)?;
        }
        let probes = vars
            .number("PROBES_PER_INVOCATION", 1..=900)?
            .unwrap_or(DEFAULT_PROBES);
        let interval_ms = vars
            .number("PROBE_INTERVAL_MS", 1000..=840_000)?
            .unwrap_or(DEFAULT_INTERVAL_MS);
        let planned = Duration::from_millis(probes * interval_ms);
        if probes > 1 && planned > MAX_PLANNED {
            return Err(ConfigError::new(
                "PROBES_PER_INVOCATION",
                format!(
                    "{probes} probes every {interval_ms} ms plan {} s of probing, more than the {} s an invocation may plan (Lambda runs at most 15 minutes)",
                    planned.as_secs(),
                    MAX_PLANNED.as_secs()
                ),
            ));
        }
        if probes > 1 {
            let interval = Duration::from_millis(interval_ms);
            if let Some((i, e)) = endpoints
                .iter()
                .enumerate()
                .find(|(_, e)| e.timeout > interval)
            {
                return Err(ConfigError::new(
                    "PROBE_INTERVAL_MS",
                    format!(
                        "{interval_ms} ms is shorter than CANARY_TARGETS[{i}].timeout_ms ({} ms): a round must fit in the interval",
                        e.timeout.as_millis()
                    ),
                ));
            }
        }
        let secrets_ttl = vars
            .number(SECRETS_TTL_VAR, 1..=86_400)?
            .unwrap_or(DEFAULT_SECRETS_TTL_SECONDS);
        let dns = dns_settings(vars)?;
        for e in &mut endpoints {
            e.dns_timeout = dns_share(e.timeout, dns.timeout);
        }
        Ok(CanaryConfig {
            endpoints,
            probes_per_invocation: probes as u32,
            probe_interval: Duration::from_millis(interval_ms),
            secrets_ttl: Duration::from_secs(secrets_ttl),
            failover_record,
            dns,
            namespace: namespace(vars)?,
        })
    }

    /// The longest probe timeout of any endpoint.
    pub fn longest_timeout(&self) -> Duration {
        self.endpoints
            .iter()
            .map(|e| e.timeout)
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<CanaryConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CanaryConfig::from_vars(&Vars(|name: &str| map.get(name).cloned()))
    }

    /// `CANARY_TARGETS` with one endpoint: `api` with `extra` fields.
    fn one(extra: Value) -> String {
        let mut item = json!({"name": "api", "url": "https://api.example.com/"});
        if let (Value::Object(m), Value::Object(e)) = (&mut item, extra) {
            m.extend(e);
        }
        json!([item]).to_string()
    }

    #[test]
    fn defaults() {
        let c = config(&[("CANARY_TARGETS", &one(json!({})))]).unwrap();
        assert_eq!(c.probes_per_invocation, 1);
        assert_eq!(c.probe_interval, Duration::from_secs(10));
        assert_eq!(c.secrets_ttl, Duration::from_secs(300));
        assert_eq!(c.failover_record, None);
        assert_eq!(c.namespace, "Tether");
        assert_eq!(c.endpoints[0].dns_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn every_variable() {
        let t = json!([
            {"name": "a", "url": "https://a.example.com/", "timeout_ms": 1500},
            {"name": "b", "url": "http://10.0.0.1:8080/"},
        ]);
        let c = config(&[
            ("CANARY_TARGETS", &t.to_string()),
            ("PROBES_PER_INVOCATION", "6"),
            ("PROBE_INTERVAL_MS", "10000"),
            ("METRICS_NAMESPACE", "Platform/Canary"),
            ("SECRETS_TTL_SECONDS", "60"),
            ("FAILOVER_RECORD_NAME", "api.example.com"),
            ("DNS_TIMEOUT_MS", "400"),
        ])
        .unwrap();
        assert_eq!(c.probes_per_invocation, 6);
        assert_eq!(c.longest_timeout(), Duration::from_millis(3000));
        assert_eq!(c.secrets_ttl, Duration::from_secs(60));
        assert_eq!(c.failover_record.unwrap().name(), "api.example.com");
        assert_eq!(c.namespace, "Platform/Canary");
        // The DNS share: a third of the timeout, at most DNS_TIMEOUT_MS.
        assert_eq!(c.endpoints[0].dns_timeout, Duration::from_millis(400));
        let c = config(&[
            ("CANARY_TARGETS", &t.to_string()),
            ("DNS_TIMEOUT_MS", "5000"),
        ])
        .unwrap();
        assert_eq!(c.endpoints[0].dns_timeout, Duration::from_millis(500));
        assert_eq!(c.endpoints[1].dns_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn an_endpoint_resolving_the_failover_record_fails_the_cold_start() {
        let t = one(json!({"url": "https://API.example.com/health"}));
        let err = config(&[
            ("CANARY_TARGETS", &t),
            ("FAILOVER_RECORD_NAME", "api.example.com."),
        ])
        .unwrap_err();
        assert_eq!(err.location, "CANARY_TARGETS[0].url");
        assert!(err.problem.contains("FAILOVER_RECORD_NAME"), "{err}");
        // Unset or empty: no record, nothing refused.
        assert!(config(&[("CANARY_TARGETS", &t), ("FAILOVER_RECORD_NAME", " ")]).is_ok());
        assert!(config(&[("CANARY_TARGETS", &t)]).is_ok());
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (vec![], "CANARY_TARGETS", "not set"),
            (
                vec![("CANARY_TARGETS", one(json!({"url": "ftp://a/"})))],
                "CANARY_TARGETS[0].url",
                "ftp://a/",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("PROBES_PER_INVOCATION", "90".into()),
                    ("PROBE_INTERVAL_MS", "10000".into()),
                ],
                "PROBES_PER_INVOCATION",
                "900 s",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("PROBES_PER_INVOCATION", "0".into()),
                ],
                "PROBES_PER_INVOCATION",
                "\"0\"",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("PROBE_INTERVAL_MS", "fast".into()),
                ],
                "PROBE_INTERVAL_MS",
                "fast",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({"timeout_ms": 5000}))),
                    ("PROBES_PER_INVOCATION", "3".into()),
                    ("PROBE_INTERVAL_MS", "2000".into()),
                ],
                "PROBE_INTERVAL_MS",
                "timeout_ms",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("SECRETS_TTL_SECONDS", "0".into()),
                ],
                "SECRETS_TTL_SECONDS",
                "from 1 to 86400, got \"0\"",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("FAILOVER_RECORD_NAME", "10.0.0.1".into()),
                ],
                "FAILOVER_RECORD_NAME",
                "\"10.0.0.1\" is not a DNS name",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("METRICS_NAMESPACE", "AWS/X".into()),
                ],
                "METRICS_NAMESPACE",
                "AWS/X",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("DNS_SERVERS", "dns.google".into()),
                ],
                "DNS_SERVERS",
                "dns.google",
            ),
        ];
        for (vars, location, needle) in cases {
            let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let err = config(&pairs).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn one_probe_may_plan_beyond_the_interval_rule() {
        let t = one(json!({"timeout_ms": 60000}));
        let c = config(&[("CANARY_TARGETS", &t), ("PROBE_INTERVAL_MS", "1000")]).unwrap();
        assert_eq!(c.longest_timeout(), Duration::from_secs(60));
    }
}

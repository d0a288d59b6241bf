//! target-sync configuration from the environment, validated at cold start.
//!
//! Either `TARGETS` (a JSON array of mappings) or, for drop-in compatibility
//! with the AWS sample `populate_NLB_TG_with_ALB.py`, its variables
//! `ALB_DNS_NAME`, `ALB_LISTENER`, `NLB_TG_ARN`, `S3_BUCKET`,
//! `MAX_LOOKUP_PER_INVOCATION`, `INVOCATIONS_BEFORE_DEREGISTRATION` and
//! `CW_METRIC_FLAG_IP_COUNT`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use crate::fields::{FieldError, json_array, parse_bool, shorten, split_list};
use crate::mapping::{
    DEFAULT_DEREGISTER_AFTER, DEFAULT_MAX_DEREGISTER_PERCENT, DEFAULT_MAX_LOOKUPS, Mapping, Naming,
    Ownership, RecordKind, TargetGroupArn, validate_dns_name,
};

/// A configuration problem, naming the variable (and field) and the value.
pub type ConfigError = FieldError;

/// Where the sync keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLocation {
    pub bucket: String,
    /// Empty, or ends with `/`.
    pub prefix: String,
}

/// Settings of the DNS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Empty: the system configuration (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Bound on each query.
    pub timeout: Duration,
}

/// Metrics settings shared by the functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub namespace: String,
    pub enabled: bool,
}

/// The whole target-sync configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    pub mappings: Vec<Mapping>,
    pub state: StateLocation,
    pub dns: DnsSettings,
    pub metrics: MetricsSettings,
    pub dry_run: bool,
}

pub const DEFAULT_NAMESPACE: &str = "Tether";
pub const DEFAULT_STATE_PREFIX: &str = "target-sync/";
pub const DEFAULT_DNS_TIMEOUT_MS: u64 = 2000;

/// Reads variables; empty or blank values count as unset (templates often
/// pass `""` for an optional parameter).
pub struct Vars<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A whole number in `range`.
    pub fn number(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::new(
                name,
                format!(
                    "expected a whole number from {} to {}, got \"{}\"",
                    range.start(),
                    range.end(),
                    shorten(&text)
                ),
            )),
        }
    }

    /// `true` or `false`, in any case.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        parse_bool(&text).map(Some).ok_or_else(|| {
            ConfigError::new(
                name,
                format!("expected true or false, got \"{}\"", shorten(&text)),
            )
        })
    }

    fn required(&self, name: &str, why: &str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| ConfigError::new(name, format!("is not set ({why})")))
    }
}

impl SyncConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars(|name: &str| std::env::var(name).ok()))
    }

    /// Reads the configuration through `vars` (tests pass a map).
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let (mut mappings, metrics_flag) = match vars.get("TARGETS") {
            Some(json) => {
                for legacy in ["ALB_DNS_NAME", "ALB_LISTENER", "NLB_TG_ARN"] {
                    if vars.get(legacy).is_some() {
                        return Err(ConfigError::new(
                            legacy,
                            "is set together with TARGETS; use one or the other (TARGETS replaces the AWS sample's variables)",
                        ));
                    }
                }
                (
                    parse_targets(&json)?,
                    vars.boolean("CW_METRIC_FLAG_IP_COUNT")?,
                )
            }
            None => sample_mapping(vars)?,
        };
        assign_foreign_ports(&mut mappings)?;

        let bucket = match vars.get("STATE_BUCKET").or_else(|| vars.get("S3_BUCKET")) {
            Some(bucket) => validate_bucket(&bucket)?,
            None => {
                return Err(ConfigError::new(
                    "STATE_BUCKET",
                    "is not set (nor S3_BUCKET): name the S3 bucket that keeps the sync state",
                ));
            }
        };
        let prefix = match vars.get("STATE_PREFIX") {
            None => DEFAULT_STATE_PREFIX.to_owned(),
            Some(p) => normalize_prefix(&p)?,
        };

        Ok(SyncConfig {
            mappings,
            state: StateLocation { bucket, prefix },
            dns: dns_settings(vars)?,
            metrics: MetricsSettings {
                namespace: namespace(vars)?,
                enabled: metrics_flag.unwrap_or(true),
            },
            dry_run: vars.boolean("DRY_RUN")?.unwrap_or(false),
        })
    }
}

/// `DNS_SERVERS` and `DNS_TIMEOUT_MS`.
pub fn dns_settings<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<DnsSettings, ConfigError> {
    let servers = match vars.get("DNS_SERVERS") {
        None => Vec::new(),
        Some(list) => split_list(&list)
            .iter()
            .map(|item| parse_server(item).map_err(|e| ConfigError::new("DNS_SERVERS", e)))
            .collect::<Result<_, _>>()?,
    };
    let timeout_ms = vars
        .number("DNS_TIMEOUT_MS", 50..=30_000)?
        .unwrap_or(DEFAULT_DNS_TIMEOUT_MS);
    Ok(DnsSettings {
        servers,
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// `METRICS_NAMESPACE`, refusing the reserved `AWS/` prefix.
pub fn namespace<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<String, ConfigError> {
    let Some(ns) = vars.get("METRICS_NAMESPACE") else {
        return Ok(DEFAULT_NAMESPACE.to_owned());
    };
    if ns.to_ascii_uppercase().starts_with("AWS/") {
        return Err(ConfigError::new(
            "METRICS_NAMESPACE",
            format!("\"{ns}\" is reserved for AWS services (namespaces starting with AWS/)"),
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || ".-_/#:".contains(c);
    if ns.len() > 255 || !ns.chars().all(ok_char) {
        return Err(ConfigError::new(
            "METRICS_NAMESPACE",
            format!("\"{}\" is not a valid CloudWatch namespace", shorten(&ns)),
        ));
    }
    Ok(ns)
}

/// `ip` or `ip:port` (`[v6]:port`); port 53 by default.
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(format!(
            "\"{}\" is not an IP address or ip:port",
            shorten(text)
        )),
    }
}

/// `TARGETS` is a JSON array of mappings, or the compact form the template
/// passes: comma-separated `dns_name|target_group_arn|port` entries (every
/// other field at its default).
fn parse_targets(text: &str) -> Result<Vec<Mapping>, ConfigError> {
    if text.starts_with('[') || text.starts_with('{') {
        return parse_targets_json(text);
    }
    split_list(text)
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let location = format!("TARGETS[{i}]");
            let [dns_name, arn, port] = entry.split('|').map(str::trim).collect::<Vec<_>>()[..]
            else {
                return Err(ConfigError::new(
                    location,
                    format!(
                        "\"{}\" is not dns_name|target_group_arn|port (or use a JSON array)",
                        shorten(entry)
                    ),
                ));
            };
            let port: Value = port
                .parse::<u64>()
                .map_or_else(|_| Value::from(port), Value::from);
            let object =
                serde_json::json!({"dns_name": dns_name, "target_group_arn": arn, "port": port});
            Mapping::from_json(&location, &object, Naming::Snake)
        })
        .collect()
}

fn parse_targets_json(json: &str) -> Result<Vec<Mapping>, ConfigError> {
    json_array("TARGETS", json, "mappings")?
        .iter()
        .enumerate()
        .map(|(i, item)| Mapping::from_json(&format!("TARGETS[{i}]"), item, Naming::Snake))
        .collect()
}

/// The one mapping the AWS sample's variables describe.
fn sample_mapping<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<(Vec<Mapping>, Option<bool>), ConfigError> {
    let why =
        "set TARGETS, or the AWS sample's variables ALB_DNS_NAME, ALB_LISTENER and NLB_TG_ARN";
    let raw_name = vars.get("ALB_DNS_NAME").ok_or_else(|| {
        ConfigError::new("TARGETS", format!("is not set (nor ALB_DNS_NAME): {why}"))
    })?;
    let dns_name = validate_dns_name(&raw_name).map_err(|e| ConfigError::new("ALB_DNS_NAME", e))?;
    let port = vars
        .number("ALB_LISTENER", 1..=65535)?
        .ok_or_else(|| ConfigError::new("ALB_LISTENER", format!("is not set ({why})")))?
        as u16;
    let target_group_arn: TargetGroupArn = vars
        .required("NLB_TG_ARN", why)?
        .parse()
        .map_err(|e| ConfigError::new("NLB_TG_ARN", e))?;
    let max_lookups = vars
        .number("MAX_LOOKUP_PER_INVOCATION", 1..=100)?
        .map_or(DEFAULT_MAX_LOOKUPS, |n| n as u32);
    let deregister_after = vars
        .number("INVOCATIONS_BEFORE_DEREGISTRATION", 1..=10_000)?
        .map_or(DEFAULT_DEREGISTER_AFTER, |n| n as u32);
    let mapping = Mapping {
        dns_name,
        target_group_arn,
        port,
        record_types: vec![RecordKind::A],
        availability_zone: None,
        deregister_after,
        max_lookups,
        ownership: Ownership::Exclusive,
        max_deregister_percent: DEFAULT_MAX_DEREGISTER_PERCENT,
        foreign_ports: BTreeSet::new(),
    };
    Ok((vec![mapping], vars.boolean("CW_METRIC_FLAG_IP_COUNT")?))
}

/// Mappings that share a target group leave each other's ports alone. An
/// exclusive mapping would deregister the addresses of any other mapping on
/// its group and port, so it must be alone there.
fn assign_foreign_ports(mappings: &mut [Mapping]) -> Result<(), ConfigError> {
    let mut ports: BTreeMap<&TargetGroupArn, BTreeSet<u16>> = BTreeMap::new();
    let mut users: BTreeMap<(&TargetGroupArn, u16), Vec<usize>> = BTreeMap::new();
    let mut identities = BTreeMap::new();
    for (i, m) in mappings.iter().enumerate() {
        // The identity names the state object: two mappings must not share one.
        if let Some(first) = identities.insert((&m.dns_name, &m.target_group_arn, m.port), i) {
            return Err(ConfigError::new(
                format!("TARGETS[{i}]"),
                format!("repeats TARGETS[{first}] (same dns_name, target_group_arn and port)"),
            ));
        }
        ports.entry(&m.target_group_arn).or_default().insert(m.port);
        users
            .entry((&m.target_group_arn, m.port))
            .or_default()
            .push(i);
    }
    for ((arn, port), indexes) in &users {
        let exclusive = indexes
            .iter()
            .find(|i| mappings[**i].ownership == Ownership::Exclusive);
        if let (Some(i), true) = (exclusive, indexes.len() > 1) {
            let others: Vec<String> = indexes
                .iter()
                .filter(|j| *j != i)
                .map(|j| format!("TARGETS[{j}]"))
                .collect();
            return Err(ConfigError::new(
                format!("TARGETS[{i}]"),
                format!(
                    "is \"exclusive\" but shares target group {arn} and port {port} with {}: it would deregister their addresses; set \"ownership\": \"tracked\" on every mapping of that group and port",
                    others.join(", ")
                ),
            ));
        }
    }
    let foreign: Vec<BTreeSet<u16>> = mappings
        .iter()
        .map(|m| {
            let mut others = ports[&m.target_group_arn].clone();
            others.remove(&m.port);
            others
        })
        .collect();
    for (m, others) in mappings.iter_mut().zip(foreign) {
        m.foreign_ports = others;
    }
    Ok(())
}

pub fn validate_bucket(name: &str) -> Result<String, ConfigError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::new(
            "STATE_BUCKET",
            format!("\"{}\" is not a valid S3 bucket name", shorten(name)),
        ))
    }
}

pub fn normalize_prefix(prefix: &str) -> Result<String, ConfigError> {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.len() > 512 || trimmed.contains("//") {
        return Err(ConfigError::new(
            "STATE_PREFIX",
            format!("\"{}\" is not a usable key prefix", shorten(prefix)),
        ));
    }
    Ok(if trimmed.is_empty() || trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-a/50dc6c495c0c9188";
    const ARN2: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-b/60dc6c495c0c9188";

    fn config(pairs: &[(&str, &str)]) -> Result<SyncConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SyncConfig::from_vars(&Vars(|name: &str| map.get(name).cloned()))
    }

    #[test]
    fn targets_with_defaults() {
        let targets = format!(
            r#"[{{"dns_name":"alb.example.com","target_group_arn":"{ARN}","port":80}},
                {{"dns_name":"alb.example.com","target_group_arn":"{ARN2}","port":443,"record_types":["A","AAAA"]}}]"#
        );
        let c = config(&[("TARGETS", &targets), ("STATE_BUCKET", "state-bucket")]).unwrap();
        assert_eq!(c.mappings.len(), 2);
        assert_eq!(c.state.prefix, "target-sync/");
        assert_eq!(c.dns.servers, Vec::<SocketAddr>::new());
        assert_eq!(c.dns.timeout, Duration::from_millis(2000));
        assert_eq!(c.metrics.namespace, "Tether");
        assert!(c.metrics.enabled);
        assert!(!c.dry_run);
    }

    #[test]
    fn compact_targets_from_the_template() {
        let compact = format!("alb.example.com|{ARN}|80, alb.example.com|{ARN2}|443");
        let c = config(&[("TARGETS", &compact), ("STATE_BUCKET", "bkt")]).unwrap();
        assert_eq!(c.mappings.len(), 2);
        assert_eq!((c.mappings[0].port, c.mappings[1].port), (80, 443));
        assert_eq!(c.mappings[1].target_group_arn.as_str(), ARN2);
        for (bad, location, needle) in [
            (
                format!("alb.example.com|{ARN}"),
                "TARGETS[0]",
                "dns_name|target_group_arn|port",
            ),
            (
                format!("a.b|{ARN}|80,alb.example.com|{ARN2}|http"),
                "TARGETS[1].port",
                "\"http\"",
            ),
        ] {
            let err = config(&[("TARGETS", &bad), ("STATE_BUCKET", "bkt")]).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn aws_sample_variables_are_a_drop_in() {
        let c = config(&[
            (
                "ALB_DNS_NAME",
                "internal-my-alb-123.us-east-1.elb.amazonaws.com",
            ),
            ("ALB_LISTENER", "443"),
            ("NLB_TG_ARN", ARN),
            ("S3_BUCKET", "my-sample-bucket"),
            ("MAX_LOOKUP_PER_INVOCATION", "50"),
            ("INVOCATIONS_BEFORE_DEREGISTRATION", "3"),
            ("CW_METRIC_FLAG_IP_COUNT", "False"),
        ])
        .unwrap();
        let m = &c.mappings[0];
        assert_eq!(
            m.dns_name,
            "internal-my-alb-123.us-east-1.elb.amazonaws.com"
        );
        assert_eq!((m.port, m.max_lookups, m.deregister_after), (443, 50, 3));
        assert_eq!(m.ownership, Ownership::Exclusive);
        assert_eq!(c.state.bucket, "my-sample-bucket");
        assert!(!c.metrics.enabled);
    }

    #[test]
    fn shared_target_group_ports_are_foreign_to_each_other() {
        let targets = format!(
            r#"[{{"dns_name":"a.example.com","target_group_arn":"{ARN}","port":80}},
                {{"dns_name":"a.example.com","target_group_arn":"{ARN}","port":443}},
                {{"dns_name":"b.example.com","target_group_arn":"{ARN}","port":443,"ownership":"tracked"}}]"#
        );
        let err = config(&[("TARGETS", &targets), ("STATE_BUCKET", "bkt")]).unwrap_err();
        assert!(err.to_string().contains("tracked"), "{err}");

        let twice = format!(
            r#"[{{"dns_name":"a.example.com","target_group_arn":"{ARN}","port":80,"ownership":"tracked"}},
                {{"dns_name":"a.example.com","target_group_arn":"{ARN}","port":80,"ownership":"tracked"}}]"#
        );
        let err = config(&[("TARGETS", &twice), ("STATE_BUCKET", "bkt")]).unwrap_err();
        assert_eq!(err.location, "TARGETS[1]");
        assert!(err.problem.contains("repeats TARGETS[0]"), "{err}");

        let targets = targets.replacen(r#""port":443}"#, r#""port":443,"ownership":"tracked"}"#, 1);
        let c = config(&[("TARGETS", &targets), ("STATE_BUCKET", "bkt")]).unwrap();
        assert_eq!(c.mappings[0].foreign_ports, BTreeSet::from([443]));
        assert_eq!(c.mappings[1].foreign_ports, BTreeSet::from([80]));
    }

    #[test]
    fn dns_servers_and_other_settings() {
        let targets = format!(r#"[{{"dns_name":"a.b","target_group_arn":"{ARN}","port":80}}]"#);
        let c = config(&[
            ("TARGETS", &targets),
            ("STATE_BUCKET", "bkt"),
            ("STATE_PREFIX", "/sync/x"),
            ("DNS_SERVERS", "10.0.0.2, 127.0.0.1:5353,[::1]:53"),
            ("DNS_TIMEOUT_MS", "500"),
            ("METRICS_NAMESPACE", "Platform/Tether"),
            ("DRY_RUN", "TRUE"),
        ])
        .unwrap();
        assert_eq!(c.state.prefix, "sync/x/");
        assert_eq!(
            c.dns.servers,
            [
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(c.dns.timeout, Duration::from_millis(500));
        assert_eq!(c.metrics.namespace, "Platform/Tether");
        assert!(c.dry_run);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let ok = format!(r#"[{{"dns_name":"a.b","target_group_arn":"{ARN}","port":80}}]"#);
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![("TARGETS", "[{"), ("STATE_BUCKET", "b1b")],
                "TARGETS",
                "not valid JSON",
            ),
            (
                vec![("TARGETS", "{}"), ("STATE_BUCKET", "b1b")],
                "TARGETS",
                "array",
            ),
            (
                vec![("TARGETS", "[]"), ("STATE_BUCKET", "b1b")],
                "TARGETS",
                "empty",
            ),
            (vec![("TARGETS", &ok)], "STATE_BUCKET", "not set"),
            (
                vec![("TARGETS", &ok), ("STATE_BUCKET", "Bad_Bucket")],
                "STATE_BUCKET",
                "Bad_Bucket",
            ),
            (
                vec![
                    ("TARGETS", &ok),
                    ("S3_BUCKET", "b1b"),
                    ("DNS_SERVERS", "dns.google"),
                ],
                "DNS_SERVERS",
                "dns.google",
            ),
            (
                vec![
                    ("TARGETS", &ok),
                    ("S3_BUCKET", "b1b"),
                    ("DNS_TIMEOUT_MS", "-5"),
                ],
                "DNS_TIMEOUT_MS",
                "-5",
            ),
            (
                vec![
                    ("TARGETS", &ok),
                    ("S3_BUCKET", "b1b"),
                    ("METRICS_NAMESPACE", "AWS/ApplicationELB"),
                ],
                "METRICS_NAMESPACE",
                "AWS/ApplicationELB",
            ),
            (
                vec![("TARGETS", &ok), ("S3_BUCKET", "b1b"), ("DRY_RUN", "maybe")],
                "DRY_RUN",
                "maybe",
            ),
            (
                vec![
                    ("TARGETS", &ok),
                    ("S3_BUCKET", "b1b"),
                    ("ALB_DNS_NAME", "x.y"),
                ],
                "ALB_DNS_NAME",
                "TARGETS",
            ),
            (vec![("S3_BUCKET", "b1b")], "TARGETS", "ALB_DNS_NAME"),
            (
                vec![
                    ("ALB_DNS_NAME", "x.y"),
                    ("ALB_LISTENER", "0"),
                    ("NLB_TG_ARN", ARN),
                    ("S3_BUCKET", "b1b"),
                ],
                "ALB_LISTENER",
                "\"0\"",
            ),
            (
                vec![
                    ("ALB_DNS_NAME", "x.y"),
                    ("ALB_LISTENER", "80"),
                    ("NLB_TG_ARN", "tg"),
                    ("S3_BUCKET", "b1b"),
                ],
                "NLB_TG_ARN",
                "`tg`",
            ),
            (
                vec![
                    ("ALB_DNS_NAME", "x.y"),
                    ("ALB_LISTENER", "80"),
                    ("NLB_TG_ARN", ARN),
                    ("S3_BUCKET", "b1b"),
                    ("INVOCATIONS_BEFORE_DEREGISTRATION", "-1"),
                ],
                "INVOCATIONS_BEFORE_DEREGISTRATION",
                "-1",
            ),
        ];
        for (vars, location, needle) in cases {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let ok = format!(r#"[{{"dns_name":"a.b","target_group_arn":"{ARN}","port":80}}]"#);
        let c = config(&[
            ("TARGETS", &ok),
            ("STATE_BUCKET", "b1b"),
            ("DNS_SERVERS", " "),
            ("ALB_DNS_NAME", ""),
        ])
        .unwrap();
        assert!(c.dns.servers.is_empty());
    }
}

//! target-sync's configuration from the environment, validated at cold start.
//!
//! Mappings come from three places, any mix of which may be on:
//! - `TARGETS`: a JSON array of mappings;
//! - the AWS sample `populate_NLB_TG_with_ALB.py`'s variables, for a drop-in:
//!   `ALB_DNS_NAME`, `ALB_LISTENER`, `NLB_TG_ARN`, `S3_BUCKET`,
//!   `MAX_LOOKUP_PER_INVOCATION`, `INVOCATIONS_BEFORE_DEREGISTRATION`,
//!   `CW_METRIC_FLAG_IP_COUNT`;
//! - tags (`TAG_DISCOVERY`, `TAG_PREFIX`): read at every run, see [`super::tags`].
//!   On by default when neither of the others is set.
//!
//! At scale: `DESCRIBE_SHARE` (the percent of ELB's Describe rate a run
//! may use, default 50, at most 75 so that a quarter is always left to the
//! account's other users) and `DESCRIBE_EVERY` (K: past that budget, a
//! quiet group is described at least every K runs, default 15), see
//! [`super::rotation`]. `SCHEDULE` (the schedule expression, default
//! `rate(1 minute)`) gives the period in which a target's absence counts
//! once. Sources in other accounts: `SOURCE_ROLE_ARNS` (the role ARN
//! patterns a mapping may name, as in the template's policy) and
//! `SOURCE_ROLE_EXTERNAL_ID`.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{
    ConfigError, DEFAULT_STATE_PREFIX, DnsSettings, MetricsSettings, StateLocation, Vars,
    dns_settings, namespace, normalize_prefix, validate_bucket_in,
};
use crate::dns::{DEFAULT_MAX_LOOKUPS, validate_dns_name};
use crate::fields::{json_array, shorten, split_list};

use super::mapping::{
    DEFAULT_DEREGISTER_AFTER, Mapping, Ownership, RoleArn, Settings, Source, TargetGroupArn,
};

pub const DEFAULT_TAG_PREFIX: &str = "tether:";
pub const DEFAULT_DESCRIBE_SHARE: u64 = 50;
/// At most three quarters of ELB's Describe rate: a quarter stays with the
/// account's other users (their controllers, their consoles).
pub const MAX_DESCRIBE_SHARE: u64 = 75;
pub const DEFAULT_DESCRIBE_EVERY: u64 = 15;

/// Which roles a mapping may name to list a source in another account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceRoles {
    /// ARN patterns (`*` for any characters), as the template's policy
    /// allows `sts:AssumeRole` on them. Empty: none.
    pub allowed: Vec<String>,
    pub external_id: Option<String>,
}

impl SourceRoles {
    /// Whether a mapping may use `role`; the error says why not.
    pub fn check(&self, role: &RoleArn) -> Result<(), String> {
        if self.allowed.iter().any(|p| role.matches(p)) {
            return Ok(());
        }
        Err(if self.allowed.is_empty() {
            format!(
                "names the role {role}, but no source role is allowed: list its ARN (or a pattern) in SOURCE_ROLE_ARNS (the template's SourceRoleArns)"
            )
        } else {
            format!(
                "names the role {role}, which matches none of SOURCE_ROLE_ARNS ({}): the function may assume only those",
                self.allowed.join(", ")
            )
        })
    }
}

/// The whole target-sync configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// The mappings named in the environment.
    pub mappings: Vec<Mapping>,
    /// The tag prefix when target groups opt in by tag.
    pub tag_prefix: Option<String>,
    pub state: StateLocation,
    pub dns: DnsSettings,
    pub metrics: MetricsSettings,
    pub dry_run: bool,
    /// The `FunctionName` dimension of the per-run metrics.
    pub function_name: Option<String>,
    /// Whether runs count absences (and so may deregister). Always on for
    /// the function; the first sync at deploy time only registers.
    pub count_absences: bool,
    /// `MAPPING_METRICS`: every mapping publishes its own metrics besides
    /// the fleet totals (one mapping opts in with `metrics: detailed`). Off
    /// by default, so that the metrics bill does not grow with the fleet; on
    /// for the AWS sample's drop-in, whose one mapping published its count.
    pub mapping_metrics: bool,
    /// `DESCRIBE_SHARE`: the percent of ELB's Describe bucket a run may use.
    pub describe_share: u8,
    /// `DESCRIBE_EVERY`: past the budget, a quiet group is described at
    /// least every this many runs.
    pub describe_every: u64,
    /// The schedule's period, from `SCHEDULE`.
    pub schedule_period: std::time::Duration,
    pub source_roles: SourceRoles,
}

impl SyncConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars(|name: &str| std::env::var(name).ok()))
    }

    /// Reads the configuration through `vars` (tests and the custom
    /// resource pass a map).
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let sample_vars = ["ALB_DNS_NAME", "ALB_LISTENER", "NLB_TG_ARN"];
        let uses_sample = sample_vars.iter().any(|v| vars.get(v).is_some());
        let mut mappings = match vars.get("TARGETS") {
            Some(json) => {
                if let Some(legacy) = sample_vars.iter().find(|v| vars.get(v).is_some()) {
                    return Err(ConfigError::new(
                        *legacy,
                        "is set together with TARGETS; use one or the other (TARGETS replaces the AWS sample's variables)",
                    ));
                }
                parse_targets(&json)?
            }
            None if uses_sample => vec![sample_mapping(vars)?],
            None => Vec::new(),
        };
        assign_foreign_ports(&mut mappings)?;
        let discovery = vars
            .boolean("TAG_DISCOVERY")?
            .unwrap_or(mappings.is_empty());
        let tag_prefix = match vars.get("TAG_PREFIX") {
            Some(prefix) => Some(validate_tag_prefix(&prefix)?),
            None => None,
        };
        if !discovery && mappings.is_empty() {
            return Err(ConfigError::new(
                "TAG_DISCOVERY",
                "is false and no mapping is configured: set TARGETS (or the AWS sample's ALB_DNS_NAME, ALB_LISTENER and NLB_TG_ARN), or let target groups opt in by tag",
            ));
        }

        // The AWS sample's S3_BUCKET is read when STATE_BUCKET is not set,
        // and a bad value is told under the variable it came from.
        let given = match vars.get("STATE_BUCKET") {
            Some(bucket) => Some(("STATE_BUCKET", bucket)),
            None => vars.get("S3_BUCKET").map(|bucket| ("S3_BUCKET", bucket)),
        };
        let bucket = match given {
            Some((var, bucket)) => validate_bucket_in(var, &bucket)?,
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
        let source_roles = SourceRoles {
            allowed: match vars.get("SOURCE_ROLE_ARNS") {
                None => Vec::new(),
                Some(list) => split_list(&list)
                    .into_iter()
                    .map(|p| validate_role_pattern(&p))
                    .collect::<Result<_, _>>()?,
            },
            external_id: vars.get("SOURCE_ROLE_EXTERNAL_ID"),
        };
        // sts:AssumeRole's ExternalId: 2 to 1224 characters of [\w+=,.@:/-].
        if let Some(id) = &source_roles.external_id
            && (!(2..=1224).contains(&id.len())
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)))
        {
            return Err(ConfigError::new(
                "SOURCE_ROLE_EXTERNAL_ID",
                format!(
                    "\"{}\" must be 2 to 1224 characters of letters, digits and _+=,.@:/- (sts:AssumeRole ExternalId)",
                    shorten(id)
                ),
            ));
        }
        for (i, m) in mappings.iter().enumerate() {
            if let Some(role) = &m.source_role {
                source_roles
                    .check(role)
                    .map_err(|e| ConfigError::new(format!("TARGETS[{i}].source_role"), e))?;
            }
        }
        Ok(SyncConfig {
            mappings,
            tag_prefix: discovery
                .then(|| tag_prefix.unwrap_or_else(|| DEFAULT_TAG_PREFIX.to_owned())),
            state: StateLocation { bucket, prefix },
            dns: dns_settings(vars)?,
            metrics: MetricsSettings {
                namespace: namespace(vars)?,
                enabled: vars.boolean("CW_METRIC_FLAG_IP_COUNT")?.unwrap_or(true),
            },
            dry_run: vars.boolean("DRY_RUN")?.unwrap_or(false),
            function_name: vars.get("AWS_LAMBDA_FUNCTION_NAME"),
            count_absences: true,
            mapping_metrics: vars.boolean("MAPPING_METRICS")?.unwrap_or(uses_sample),
            describe_share: vars
                .number("DESCRIBE_SHARE", 1..=MAX_DESCRIBE_SHARE)?
                .unwrap_or(DEFAULT_DESCRIBE_SHARE) as u8,
            describe_every: vars
                .number("DESCRIBE_EVERY", 1..=1440)?
                .unwrap_or(DEFAULT_DESCRIBE_EVERY),
            schedule_period: match vars.get("SCHEDULE") {
                None => std::time::Duration::from_secs(60),
                Some(text) => schedule_period(&text)?,
            },
            source_roles,
        })
    }
}

/// A tag key prefix: what ELB allows in a key, short enough to leave room
/// for the longest setting name under the 128-character key limit.
pub fn validate_tag_prefix(prefix: &str) -> Result<String, ConfigError> {
    let ok = (1..=64).contains(&prefix.len())
        && !prefix.starts_with("aws:")
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c));
    if ok {
        Ok(prefix.to_owned())
    } else {
        Err(ConfigError::new(
            "TAG_PREFIX",
            format!(
                "\"{}\" is not a usable tag key prefix (1 to 64 characters: letters, digits, spaces and _.:/=+-@; \
                 not starting with \"aws:\", which AWS reserves)",
                shorten(prefix)
            ),
        ))
    }
}

/// A role ARN pattern of `SOURCE_ROLE_ARNS`: an IAM role ARN, `*` allowed.
fn validate_role_pattern(pattern: &str) -> Result<String, ConfigError> {
    let sample = pattern.replace('*', "000000000000");
    let account = sample.split(':').nth(4).unwrap_or_default();
    // The account part may be a wildcard or 12 digits.
    let fixed = sample.replacen(account, "000000000000", 1);
    match fixed.parse::<RoleArn>() {
        Ok(_) => Ok(pattern.to_owned()),
        Err(_) => Err(ConfigError::new(
            "SOURCE_ROLE_ARNS",
            format!(
                "\"{}\" is not an IAM role ARN pattern (arn:aws:iam::<account>:role/<name>, * allowed)",
                shorten(pattern)
            ),
        )),
    }
}

/// The period of an EventBridge Scheduler expression: `rate(N unit)`, or a
/// cron expression (counted as one minute, its finest period).
pub fn schedule_period(text: &str) -> Result<std::time::Duration, ConfigError> {
    let bad = || {
        ConfigError::new(
            "SCHEDULE",
            format!(
                "\"{}\" is not rate(<n> minute(s)|hour(s)|day(s)) or cron(...)",
                shorten(text)
            ),
        )
    };
    if text.starts_with("cron(") && text.ends_with(')') {
        return Ok(std::time::Duration::from_secs(60));
    }
    let inner = text
        .strip_prefix("rate(")
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(bad)?;
    let (n, unit) = inner.trim().split_once(' ').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    let unit_secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(n * unit_secs))
}

fn parse_targets(json: &str) -> Result<Vec<Mapping>, ConfigError> {
    json_array("TARGETS", json, "mappings")?
        .iter()
        .enumerate()
        .map(|(i, item)| Mapping::from_json(&format!("TARGETS[{i}]"), item))
        .collect()
}

/// The one mapping the AWS sample's variables describe.
fn sample_mapping<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Mapping, ConfigError> {
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
    let settings = Settings {
        deregister_after,
        max_lookups,
        ..Settings::default()
    };
    let mapping = Mapping::new(Source::Dns(dns_name), target_group_arn, port, settings);
    Ok(mapping)
}

/// Mappings that share a target group leave each other's ports alone. An
/// exclusive mapping would deregister the addresses of any other mapping on
/// its group and port, so it must be alone there.
pub fn assign_foreign_ports(mappings: &mut [Mapping]) -> Result<(), ConfigError> {
    let mut ports: BTreeMap<&TargetGroupArn, BTreeSet<u16>> = BTreeMap::new();
    let mut users: BTreeMap<(&TargetGroupArn, u16), Vec<usize>> = BTreeMap::new();
    let mut identities = BTreeMap::new();
    for (i, m) in mappings.iter().enumerate() {
        // The identity names the state object: two mappings must not share one.
        // An ALB given by name and by ARN is one source: compare as written
        // in the state key.
        let source = m.source.to_string();
        if let Some(first) = identities.insert((source, &m.target_group_arn, m.port), i) {
            return Err(ConfigError::new(
                format!("TARGETS[{i}]"),
                format!("repeats TARGETS[{first}] (same source, target_group_arn and port)"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::time::Duration;

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
        assert!(!c.mapping_metrics, "fleet totals only, by default");
        assert!(!c.dry_run);
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
            m.source,
            Source::Dns("internal-my-alb-123.us-east-1.elb.amazonaws.com".into())
        );
        assert_eq!(c.tag_prefix, None, "the drop-in needs no new permission");
        assert_eq!((m.port, m.max_lookups, m.deregister_after), (443, 50, 3));
        assert_eq!(m.ownership, Ownership::Exclusive);
        assert_eq!(c.state.bucket, "my-sample-bucket");
        assert!(!c.metrics.enabled);
        assert!(
            c.mapping_metrics,
            "the sample's one group keeps its metrics"
        );
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
                vec![("TARGETS", &ok), ("S3_BUCKET", "Bad_Sample_Bucket")],
                "S3_BUCKET",
                "Bad_Sample_Bucket",
            ),
            (
                vec![
                    ("TARGETS", &ok),
                    ("S3_BUCKET", "b1b"),
                    ("SOURCE_ROLE_EXTERNAL_ID", "tether external id"),
                ],
                "SOURCE_ROLE_EXTERNAL_ID",
                "tether external id",
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
            (
                vec![("S3_BUCKET", "b1b"), ("TAG_DISCOVERY", "false")],
                "TAG_DISCOVERY",
                "TARGETS",
            ),
            (
                vec![("S3_BUCKET", "b1b"), ("TAG_DISCOVERY", "yes")],
                "TAG_DISCOVERY",
                "yes",
            ),
            (
                vec![("S3_BUCKET", "b1b"), ("TAG_PREFIX", "a,b")],
                "TAG_PREFIX",
                "a,b",
            ),
            (
                vec![("S3_BUCKET", "b1b"), ("ALB_LISTENER", "80")],
                "TARGETS",
                "ALB_DNS_NAME",
            ),
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
    fn tags_are_on_by_default_only_without_configured_mappings() {
        let c = config(&[("STATE_BUCKET", "b1b"), ("AWS_LAMBDA_FUNCTION_NAME", "ts")]).unwrap();
        assert_eq!(c.tag_prefix.as_deref(), Some(DEFAULT_TAG_PREFIX));
        assert!(c.mappings.is_empty());
        assert_eq!(c.function_name.as_deref(), Some("ts"));
        let c = config(&[("STATE_BUCKET", "b1b"), ("TAG_PREFIX", "stg:")]).unwrap();
        assert_eq!(c.tag_prefix.as_deref(), Some("stg:"));
        let ok = format!(r#"[{{"load_balancer":"orders","target_group_arn":"{ARN}","port":80}}]"#);
        let c = config(&[("STATE_BUCKET", "b1b"), ("TARGETS", &ok)]).unwrap();
        assert_eq!(c.tag_prefix, None);
        let c = config(&[
            ("STATE_BUCKET", "b1b"),
            ("TARGETS", &ok),
            ("TAG_DISCOVERY", "true"),
        ])
        .unwrap();
        assert_eq!(c.tag_prefix.as_deref(), Some("tether:"));
        assert_eq!(c.mappings[0].source.to_string(), "alb:orders");
    }

    #[test]
    fn scale_settings_and_source_roles() {
        let c = config(&[("STATE_BUCKET", "b1b")]).unwrap();
        assert_eq!((c.describe_share, c.describe_every), (50, 15));
        assert_eq!(c.schedule_period, Duration::from_secs(60));
        assert_eq!(c.source_roles, SourceRoles::default());
        let c = config(&[
            ("STATE_BUCKET", "b1b"),
            ("DESCRIBE_SHARE", "75"),
            ("DESCRIBE_EVERY", "10"),
            ("SCHEDULE", "rate(5 minutes)"),
            (
                "SOURCE_ROLE_ARNS",
                "arn:aws:iam::222222222222:role/tether-*, arn:aws:iam::*:role/hub",
            ),
            ("SOURCE_ROLE_EXTERNAL_ID", "tether-prod"),
        ])
        .unwrap();
        assert_eq!((c.describe_share, c.describe_every), (75, 10));
        assert_eq!(c.schedule_period, Duration::from_secs(300));
        assert_eq!(c.source_roles.allowed.len(), 2);
        let role: RoleArn = "arn:aws:iam::333333333333:role/hub".parse().unwrap();
        assert!(c.source_roles.check(&role).is_ok());
        let other: RoleArn = "arn:aws:iam::333333333333:role/other".parse().unwrap();
        assert!(
            c.source_roles
                .check(&other)
                .unwrap_err()
                .contains("matches none")
        );
        for (name, value) in [
            ("DESCRIBE_SHARE", "80"),
            ("DESCRIBE_EVERY", "0"),
            ("SCHEDULE", "every minute"),
            ("SOURCE_ROLE_ARNS", "arn:aws:s3:::bucket"),
        ] {
            let err = config(&[("STATE_BUCKET", "b1b"), (name, value)]).unwrap_err();
            assert_eq!(err.location, name, "{err}");
        }
        let targets = format!(
            r#"[{{"load_balancer":"orders","target_group_arn":"{ARN}","port":80,"source_role":"arn:aws:iam::444444444444:role/x"}}]"#
        );
        let err = config(&[("STATE_BUCKET", "b1b"), ("TARGETS", &targets)]).unwrap_err();
        assert_eq!(err.location, "TARGETS[0].source_role");
        assert!(err.problem.contains("SOURCE_ROLE_ARNS"), "{err}");
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

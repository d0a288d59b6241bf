//! One target-sync mapping: a source of addresses kept in step with an NLB
//! target group, from `TARGETS` or from a target group's tags.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::dns::{DEFAULT_MAX_LOOKUPS, RecordKind, parse_record_types, validate_dns_name};
use crate::fields::{FieldError, Fields, one_of, shorten};

/// Where a mapping's addresses come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The addresses a DNS name resolves to (lowercase, no trailing dot).
    Dns(String),
    /// The node addresses of an Application Load Balancer, read from its
    /// network interfaces.
    Alb(AlbRef),
    /// The addresses of an interface VPC endpoint's network interfaces.
    Vpce(String),
}

/// An Application Load Balancer, by name or by ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlbRef {
    pub name: String,
    /// Set when the ARN was given; otherwise it is looked up by name.
    pub arn: Option<String>,
}

impl Source {
    /// `dns:<name>`, `alb:<name or ARN>` or `vpce:<id>`, as in the
    /// `tether:source` tag.
    pub fn parse(text: &str) -> Result<Source, String> {
        let (kind, value) = text.split_once(':').ok_or_else(|| {
            format!(
                "\"{}\" is not dns:<name>, alb:<name or ARN> or vpce:<endpoint id>",
                shorten(text)
            )
        })?;
        let value = value.trim();
        match kind.trim() {
            "dns" => validate_dns_name(value).map(Source::Dns),
            "alb" => AlbRef::parse(value).map(Source::Alb),
            "vpce" => validate_vpce_id(value).map(Source::Vpce),
            other => Err(format!(
                "\"{}\" is not a source kind (dns, alb or vpce) in \"{}\"",
                shorten(other),
                shorten(text)
            )),
        }
    }

    /// Whether the addresses are listed exactly (interfaces), not answered
    /// by DNS.
    pub fn is_exact(&self) -> bool {
        !matches!(self, Source::Dns(_))
    }
}

/// The form used in metrics (`Source` dimension), logs, reports and state keys.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dns(name) => write!(f, "dns:{name}"),
            Source::Alb(alb) => write!(f, "alb:{}", alb.name),
            Source::Vpce(id) => write!(f, "vpce:{id}"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl AlbRef {
    /// A load balancer name (1-32 letters, digits, hyphens), or an ARN
    /// `arn:<partition>:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>`.
    pub fn parse(text: &str) -> Result<AlbRef, String> {
        if text.starts_with("arn:") {
            let resource = text.splitn(6, ':').nth(5).unwrap_or_default();
            let parts: Vec<&str> = resource.split('/').collect();
            return match parts[..] {
                ["loadbalancer", "app", name, id]
                    if text.split(':').nth(2) == Some("elasticloadbalancing")
                        && valid_lb_name(name)
                        && !id.is_empty() =>
                {
                    Ok(AlbRef {
                        name: name.to_owned(),
                        arn: Some(text.to_owned()),
                    })
                }
                ["loadbalancer", "net", ..] => Err(format!(
                    "`{text}` is a Network Load Balancer; alb: takes an Application Load Balancer"
                )),
                _ => Err(format!(
                    "`{}` is not an Application Load Balancer ARN (…:loadbalancer/app/<name>/<id>)",
                    shorten(text)
                )),
            };
        }
        if valid_lb_name(text) {
            Ok(AlbRef {
                name: text.to_owned(),
                arn: None,
            })
        } else {
            Err(format!(
                "`{}` is not a load balancer name (1 to 32 letters, digits and hyphens) or ARN",
                shorten(text)
            ))
        }
    }
}

fn valid_lb_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `vpce-` and 8 to 17 lowercase hexadecimal digits.
pub fn validate_vpce_id(id: &str) -> Result<String, String> {
    let ok = id.strip_prefix("vpce-").is_some_and(|hex| {
        (8..=17).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "`{}` is not a VPC endpoint id (vpce- and 8 to 17 hexadecimal digits)",
            shorten(id)
        ))
    }
}

/// An IAM role in another account through which an `alb:` or `vpce:`
/// source is listed: `arn:<partition>:iam::<account>:role/<path/name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RoleArn(String);

impl RoleArn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The role's account.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }

    /// Whether the ARN matches `pattern`, in which `*` stands for any run
    /// of characters (as in an IAM policy's `Resource`).
    pub fn matches(&self, pattern: &str) -> bool {
        glob(pattern.as_bytes(), self.0.as_bytes())
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RoleArn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let ok = match parts[..] {
            ["arn", partition, "iam", "", account, resource] => {
                partition.starts_with("aws")
                    && account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && resource.strip_prefix("role/").is_some_and(|name| {
                        (1..=512).contains(&name.len())
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_/-".contains(&b))
                    })
            }
            _ => false,
        };
        if ok {
            Ok(RoleArn(s.to_owned()))
        } else {
            Err(format!(
                "`{}` is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
                shorten(s)
            ))
        }
    }
}

/// Which registered targets a mapping may deregister.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Every target in the group is managed (except those on ports that
    /// other mappings of the same group use).
    Exclusive,
    /// Only targets this mapping registered (or adopted, see the planner)
    /// are ever deregistered.
    Tracked,
}

impl FromStr for Ownership {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        one_of(
            s,
            &[
                ("exclusive", Ownership::Exclusive),
                ("tracked", Ownership::Tracked),
            ],
        )
    }
}

/// Which metrics a mapping publishes besides the function's fleet totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsDetail {
    /// None of its own: its group is in the fleet totals and in its log line.
    #[default]
    Fleet,
    /// Its own metrics too (dimensions `TargetGroup`, `Source`), at about
    /// 0.30 USD a month each.
    Detailed,
}

impl FromStr for MetricsDetail {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        one_of(
            s,
            &[
                ("fleet", MetricsDetail::Fleet),
                ("detailed", MetricsDetail::Detailed),
            ],
        )
    }
}

/// A validated `arn:<partition>:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TargetGroupArn(String);

impl TargetGroupArn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `targetgroup/<name>/<id>`: the `TargetGroup` dimension value that
    /// AWS/NetworkELB metrics use too.
    pub fn resource(&self) -> &str {
        // Validated in `from_str`: the resource is the sixth colon-separated part.
        self.0.splitn(6, ':').nth(5).unwrap_or(&self.0)
    }
}

impl fmt::Display for TargetGroupArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TargetGroupArn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("`{}` is not a target group ARN ({why})", shorten(s));
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(bad(
                "expected arn:<partition>:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>",
            ));
        };
        if arn != "arn" || !partition.starts_with("aws") {
            return Err(bad("must start with arn:aws"));
        }
        if service != "elasticloadbalancing" {
            return Err(bad("service must be elasticloadbalancing"));
        }
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("bad region"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("account must be 12 digits"));
        }
        let segments: Vec<&str> = resource.split('/').collect();
        let ["targetgroup", name, id] = segments[..] else {
            return Err(bad("resource must be targetgroup/<name>/<id>"));
        };
        if !valid_lb_name(name) {
            return Err(bad("bad target group name"));
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("bad target group id"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// One validated mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub source: Source,
    pub target_group_arn: TargetGroupArn,
    pub port: u16,
    /// The address families synced: `A` is IPv4, `AAAA` IPv6.
    pub record_types: Vec<RecordKind>,
    pub availability_zone: Option<String>,
    pub deregister_after: u32,
    /// DNS sources: queries per record type while answers come back full.
    pub max_lookups: u32,
    pub ownership: Ownership,
    pub max_deregister_percent: u8,
    pub metrics: MetricsDetail,
    /// The role through which an `alb:` or `vpce:` source in another
    /// account is listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_role: Option<RoleArn>,
    /// Ports that other mappings of the same target group manage; an
    /// exclusive mapping leaves targets on them alone. Filled in per run.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub foreign_ports: BTreeSet<u16>,
}

pub const DEFAULT_DEREGISTER_AFTER: u32 = 3;
pub const DEFAULT_MAX_DEREGISTER_PERCENT: u8 = 50;

/// The optional settings of a mapping, with their defaults: the same
/// meaning and checks in `TARGETS` fields and in tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub record_types: Vec<RecordKind>,
    pub availability_zone: Option<String>,
    pub deregister_after: u32,
    pub max_lookups: u32,
    pub ownership: Ownership,
    pub max_deregister_percent: u8,
    pub metrics: MetricsDetail,
    pub source_role: Option<RoleArn>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            record_types: vec![RecordKind::A],
            availability_zone: None,
            deregister_after: DEFAULT_DEREGISTER_AFTER,
            max_lookups: DEFAULT_MAX_LOOKUPS,
            ownership: Ownership::Exclusive,
            max_deregister_percent: DEFAULT_MAX_DEREGISTER_PERCENT,
            metrics: MetricsDetail::Fleet,
            source_role: None,
        }
    }
}

pub const DEREGISTER_AFTER_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;
pub const MAX_LOOKUPS_RANGE: std::ops::RangeInclusive<u64> = 1..=100;
pub const PERCENT_RANGE: std::ops::RangeInclusive<u64> = 0..=100;

/// An availability zone name, or `all` (targets outside the VPC).
pub fn validate_availability_zone(az: &str) -> Result<String, String> {
    let ok = !az.is_empty()
        && az.len() <= 64
        && az
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(az.to_owned())
    } else {
        Err(format!(
            "`{}` is not an availability zone name or \"all\"",
            shorten(az)
        ))
    }
}

impl Mapping {
    pub fn new(
        source: Source,
        target_group_arn: TargetGroupArn,
        port: u16,
        settings: Settings,
    ) -> Mapping {
        Mapping {
            source,
            target_group_arn,
            port,
            record_types: settings.record_types,
            availability_zone: settings.availability_zone,
            deregister_after: settings.deregister_after,
            max_lookups: settings.max_lookups,
            ownership: settings.ownership,
            max_deregister_percent: settings.max_deregister_percent,
            metrics: settings.metrics,
            source_role: settings.source_role,
            foreign_ports: BTreeSet::new(),
        }
    }

    /// Reads one `TARGETS` entry, rejecting unknown fields. It names its
    /// source with exactly one of `dns_name`, `load_balancer`, `vpc_endpoint`.
    pub fn from_json(location: &str, value: &Value) -> Result<Mapping, FieldError> {
        let mut f = Fields::new(location, value)?;
        let given: Vec<(&'static str, String)> = ["dns_name", "load_balancer", "vpc_endpoint"]
            .into_iter()
            .map(|name| Ok(f.string(name)?.map(|v| (name, v))))
            .collect::<Result<Vec<_>, FieldError>>()?
            .into_iter()
            .flatten()
            .collect();
        let source = match &given[..] {
            [(field, value)] => {
                let parsed = match *field {
                    "dns_name" => validate_dns_name(value).map(Source::Dns),
                    "load_balancer" => AlbRef::parse(value).map(Source::Alb),
                    _ => validate_vpce_id(value).map(Source::Vpce),
                };
                parsed.map_err(|e| FieldError::new(f.at(field), e))?
            }
            [] => {
                return Err(FieldError::new(
                    location,
                    "names no source: set one of dns_name, load_balancer (ALB name or ARN), vpc_endpoint",
                ));
            }
            several => {
                let names: Vec<&str> = several.iter().map(|(n, _)| *n).collect();
                return Err(FieldError::new(
                    location,
                    format!(
                        "sets {}: a mapping has exactly one source",
                        names.join(" and ")
                    ),
                ));
            }
        };
        let target_group_arn = f
            .required_string("target_group_arn")?
            .parse()
            .map_err(|e| FieldError::new(f.at("target_group_arn"), e))?;
        let port = f.required_number("port", 1..=65535)? as u16;

        let defaults = Settings::default();
        let record_types = match f.string_list("record_types")? {
            None => defaults.record_types,
            Some(list) => {
                parse_record_types(&list).map_err(|e| FieldError::new(f.at("record_types"), e))?
            }
        };
        let availability_zone = f
            .string("availability_zone")?
            .map(|az| validate_availability_zone(&az))
            .transpose()
            .map_err(|e| FieldError::new(f.at("availability_zone"), e))?;
        let ownership = f
            .string("ownership")?
            .map(|o| o.parse())
            .transpose()
            .map_err(|e| FieldError::new(f.at("ownership"), e))?
            .unwrap_or(defaults.ownership);
        let metrics = f
            .string("metrics")?
            .map(|o| o.parse())
            .transpose()
            .map_err(|e| FieldError::new(f.at("metrics"), e))?
            .unwrap_or(defaults.metrics);
        let source_role: Option<RoleArn> = f
            .string("source_role")?
            .map(|r| r.parse())
            .transpose()
            .map_err(|e| FieldError::new(f.at("source_role"), e))?;
        if source_role.is_some() && !source.is_exact() {
            return Err(FieldError::new(
                f.at("source_role"),
                "is set on a DNS source: a role lists an alb: or vpce: source in another account",
            ));
        }
        let settings = Settings {
            source_role,
            record_types,
            availability_zone,
            deregister_after: f
                .number("deregister_after", DEREGISTER_AFTER_RANGE)?
                .map_or(defaults.deregister_after, |v| v as u32),
            max_lookups: f
                .number("max_lookups", MAX_LOOKUPS_RANGE)?
                .map_or(defaults.max_lookups, |v| v as u32),
            ownership,
            max_deregister_percent: f
                .number("max_deregister_percent", PERCENT_RANGE)?
                .map_or(defaults.max_deregister_percent, |v| v as u8),
            metrics,
        };
        f.finish()?;
        Ok(Mapping::new(source, target_group_arn, port, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-tg/50dc6c495c0c9188";
    const ALB_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/orders/50dc6c495c0c9188";

    #[test]
    fn arn_is_validated_and_gives_the_dimension() {
        let arn: TargetGroupArn = ARN.parse().unwrap();
        assert_eq!(arn.resource(), "targetgroup/my-tg/50dc6c495c0c9188");
        for bad in [
            "",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/x/1",
            "arn:aws:s3:::bucket",
            "arn:aws:elasticloadbalancing:us-east-1:12345:targetgroup/my-tg/50dc",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-tg/zz",
        ] {
            let err = bad.parse::<TargetGroupArn>().unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn sources_parse_and_display_canonically() {
        let cases = [
            (
                "dns:Internal-ALB.example.com.",
                "dns:internal-alb.example.com",
            ),
            ("alb:orders", "alb:orders"),
            (&format!("alb:{ALB_ARN}"), "alb:orders"),
            ("vpce:vpce-0123456789abcdef0", "vpce:vpce-0123456789abcdef0"),
            (" dns: a.b ", "dns:a.b"),
        ];
        for (text, shown) in cases {
            assert_eq!(Source::parse(text).unwrap().to_string(), shown, "{text}");
        }
        let Source::Alb(alb) = Source::parse(&format!("alb:{ALB_ARN}")).unwrap() else {
            panic!("not an alb source")
        };
        assert_eq!(alb.arn.as_deref(), Some(ALB_ARN));
        for (bad, needle) in [
            ("internal.example.com", "is not dns:<name>"),
            ("nlb:x", "\"nlb\" is not a source kind"),
            ("dns:10.0.0.1", "IP address"),
            ("alb:-x", "`-x`"),
            (
                "alb:arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n/1",
                "Network Load Balancer",
            ),
            ("vpce:vpce-XYZ", "`vpce-XYZ`"),
        ] {
            let err = Source::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_apply() {
        let m = Mapping::from_json(
            "TARGETS[0]",
            &json!({"dns_name": "Internal-ALB.example.com.", "target_group_arn": ARN, "port": 443}),
        )
        .unwrap();
        assert_eq!(m.source, Source::Dns("internal-alb.example.com".into()));
        assert_eq!(m.record_types, [RecordKind::A]);
        assert_eq!(m.deregister_after, 3);
        assert_eq!(m.max_lookups, 8);
        assert_eq!(m.ownership, Ownership::Exclusive);
        assert_eq!(m.max_deregister_percent, 50);
        assert_eq!(m.availability_zone, None);
        assert_eq!(m.metrics, MetricsDetail::Fleet);
    }

    #[test]
    fn every_source_field_and_string_values() {
        let m = Mapping::from_json(
            "TARGETS[1]",
            &json!({"load_balancer": ALB_ARN, "target_group_arn": ARN, "port": "80",
                    "record_types": ["AAAA", "A"], "availability_zone": "all",
                    "deregister_after": "5", "ownership": "tracked", "metrics": "detailed"}),
        )
        .unwrap();
        assert_eq!(m.source.to_string(), "alb:orders");
        assert_eq!(m.port, 80);
        assert_eq!(m.record_types, [RecordKind::A, RecordKind::Aaaa]);
        assert_eq!(m.availability_zone.as_deref(), Some("all"));
        assert_eq!(m.deregister_after, 5);
        assert_eq!(m.ownership, Ownership::Tracked);
        assert_eq!(m.metrics, MetricsDetail::Detailed);
        let m = Mapping::from_json(
            "TARGETS[2]",
            &json!({"vpc_endpoint": "vpce-0123456789abcdef0", "target_group_arn": ARN, "port": 443}),
        )
        .unwrap();
        assert!(m.source.is_exact());
    }

    #[test]
    fn a_source_role_is_an_iam_role_arn_on_an_exact_source() {
        let role = "arn:aws:iam::222222222222:role/network/tether-source";
        let m = Mapping::from_json(
            "TARGETS[0]",
            &json!({"load_balancer": "orders", "target_group_arn": ARN, "port": 80, "source_role": role}),
        )
        .unwrap();
        let parsed = m.source_role.unwrap();
        assert_eq!((parsed.as_str(), parsed.account()), (role, "222222222222"));
        assert!(parsed.matches("arn:aws:iam::222222222222:role/network/*"));
        assert!(parsed.matches("arn:aws:iam::*:role/*"));
        assert!(!parsed.matches("arn:aws:iam::333333333333:role/*"));
        for (value, needle) in [
            (
                json!({"load_balancer": "orders", "target_group_arn": ARN, "port": 80, "source_role": "arn:aws:iam::1:role/x"}),
                "not an IAM role ARN",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "source_role": role}),
                "DNS source",
            ),
        ] {
            let err = Mapping::from_json("TARGETS[0]", &value).unwrap_err();
            assert_eq!(err.location, "TARGETS[0].source_role");
            assert!(err.problem.contains(needle), "{err}");
        }
    }

    #[test]
    fn bad_values_name_field_and_value() {
        let cases = [
            (
                json!({"dns_name": "10.0.0.1", "target_group_arn": ARN, "port": 80}),
                "TARGETS[0].dns_name",
                "10.0.0.1",
            ),
            (
                json!({"dns_name": "a.b", "load_balancer": "x", "target_group_arn": ARN, "port": 80}),
                "TARGETS[0]",
                "dns_name and load_balancer",
            ),
            (
                json!({"target_group_arn": ARN, "port": 80}),
                "TARGETS[0]",
                "names no source",
            ),
            (
                json!({"vpc_endpoint": "vpce-1", "target_group_arn": ARN, "port": 80}),
                "TARGETS[0].vpc_endpoint",
                "vpce-1",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": "nope", "port": 80}),
                "TARGETS[0].target_group_arn",
                "nope",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 0}),
                "TARGETS[0].port",
                "0",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "deregister_after": -1}),
                "TARGETS[0].deregister_after",
                "-1",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "record_types": ["MX"]}),
                "TARGETS[0].record_types",
                "MX",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "ownership": "mine"}),
                "TARGETS[0].ownership",
                "mine",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "metrics": "verbose"}),
                "TARGETS[0].metrics",
                "verbose",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "max_deregister_percent": 101}),
                "TARGETS[0].max_deregister_percent",
                "101",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "availability_zone": "US East"}),
                "TARGETS[0].availability_zone",
                "US East",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "prot": 1}),
                "TARGETS[0].prot",
                "unknown",
            ),
        ];
        for (value, location, needle) in cases {
            let err = Mapping::from_json("TARGETS[0]", &value).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
    }
}

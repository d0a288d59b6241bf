//! One target-sync mapping: a DNS name kept in step with an NLB target group.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::fields::{FieldError, Fields};

/// The DNS record types a mapping resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RecordKind {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
        }
    }

    /// Whether an address belongs to this record type.
    pub fn matches(self, ip: &IpAddr) -> bool {
        matches!(
            (self, ip),
            (RecordKind::A, IpAddr::V4(_)) | (RecordKind::Aaaa, IpAddr::V6(_))
        )
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which registered targets a mapping may deregister.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Every target in the group is managed (except those on ports that
    /// other mappings of the same group use).
    Exclusive,
    /// Only targets this function registered itself are ever deregistered.
    Tracked,
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
        let bad = |why: &str| format!("`{s}` is not a target group ARN ({why})");
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
        let name_ok = (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !name_ok {
            return Err(bad("bad target group name"));
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("bad target group id"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// Checks that `name` can be resolved: a host name, not an address.
pub fn validate_dns_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.parse::<IpAddr>().is_ok() {
        return Err(format!("`{name}` is an IP address, not a DNS name"));
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if trimmed.is_empty() || trimmed.len() > 253 || !trimmed.split('.').all(label_ok) {
        return Err(format!("`{name}` is not a valid DNS name"));
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// One validated mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub dns_name: String,
    pub target_group_arn: TargetGroupArn,
    pub port: u16,
    pub record_types: Vec<RecordKind>,
    pub availability_zone: Option<String>,
    pub deregister_after: u32,
    pub max_lookups: u32,
    pub ownership: Ownership,
    pub max_deregister_percent: u8,
    /// Ports that other mappings of the same target group manage; an
    /// exclusive mapping leaves targets on them alone. Filled by the config.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub foreign_ports: BTreeSet<u16>,
}

pub const DEFAULT_DEREGISTER_AFTER: u32 = 3;
pub const DEFAULT_MAX_LOOKUPS: u32 = 8;
pub const DEFAULT_MAX_DEREGISTER_PERCENT: u8 = 50;

/// How the fields of a mapping are spelled where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `TARGETS`: `dns_name`, `target_group_arn`, …
    Snake,
    /// CloudFormation properties: `DnsName`, `TargetGroupArn`, …
    Pascal,
}

impl Naming {
    fn pick(self, snake: &'static str, pascal: &'static str) -> &'static str {
        match self {
            Naming::Snake => snake,
            Naming::Pascal => pascal,
        }
    }
}

impl Mapping {
    /// Reads and validates a mapping's fields; `fields.finish()` is left to
    /// the caller, who may read more fields from the same object.
    pub fn read(fields: &mut Fields<'_>, naming: Naming) -> Result<Mapping, FieldError> {
        let n = |snake, pascal| naming.pick(snake, pascal);

        let name_field = n("dns_name", "DnsName");
        let raw_name = fields.required_string(name_field)?;
        let dns_name =
            validate_dns_name(&raw_name).map_err(|e| FieldError::new(fields.at(name_field), e))?;

        let arn_field = n("target_group_arn", "TargetGroupArn");
        let target_group_arn = fields
            .required_string(arn_field)?
            .parse()
            .map_err(|e| FieldError::new(fields.at(arn_field), e))?;

        let port = fields.required_number(n("port", "Port"), 1..=65535)? as u16;

        let types_field = n("record_types", "RecordTypes");
        let record_types = match fields.string_list(types_field)? {
            None => vec![RecordKind::A],
            Some(list) => {
                parse_record_types(&list).map_err(|e| FieldError::new(fields.at(types_field), e))?
            }
        };

        let az_field = n("availability_zone", "AvailabilityZone");
        let availability_zone = match fields.string(az_field)? {
            None => None,
            Some(az)
                if az.len() <= 64
                    && az
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                Some(az)
            }
            Some(az) => {
                return Err(FieldError::new(
                    fields.at(az_field),
                    format!("`{az}` is not an availability zone name or \"all\""),
                ));
            }
        };

        let deregister_after = fields
            .number(n("deregister_after", "DeregisterAfter"), 1..=10_000)?
            .map_or(DEFAULT_DEREGISTER_AFTER, |v| v as u32);
        let max_lookups = fields
            .number(n("max_lookups", "MaxLookups"), 1..=100)?
            .map_or(DEFAULT_MAX_LOOKUPS, |v| v as u32);

        let own_field = n("ownership", "Ownership");
        let ownership = match fields.string(own_field)?.as_deref() {
            None | Some("exclusive") => Ownership::Exclusive,
            Some("tracked") => Ownership::Tracked,
            Some(other) => {
                return Err(FieldError::new(
                    fields.at(own_field),
                    format!("expected \"exclusive\" or \"tracked\", got \"{other}\""),
                ));
            }
        };
        let max_deregister_percent = fields
            .number(n("max_deregister_percent", "MaxDeregisterPercent"), 0..=100)?
            .map_or(DEFAULT_MAX_DEREGISTER_PERCENT, |v| v as u8);

        Ok(Mapping {
            dns_name,
            target_group_arn,
            port,
            record_types,
            availability_zone,
            deregister_after,
            max_lookups,
            ownership,
            max_deregister_percent,
            foreign_ports: BTreeSet::new(),
        })
    }

    /// Reads a whole mapping object, rejecting unknown fields.
    pub fn from_json(location: &str, value: &Value, naming: Naming) -> Result<Mapping, FieldError> {
        let mut fields = Fields::new(location, value)?;
        let mapping = Mapping::read(&mut fields, naming)?;
        fields.finish()?;
        Ok(mapping)
    }
}

pub fn parse_record_types(list: &[String]) -> Result<Vec<RecordKind>, String> {
    let mut kinds = BTreeSet::new();
    for item in list {
        let kind = match item.to_ascii_uppercase().as_str() {
            "A" => RecordKind::A,
            "AAAA" => RecordKind::Aaaa,
            _ => {
                return Err(format!(
                    "`{item}` is not a supported record type (A or AAAA)"
                ));
            }
        };
        kinds.insert(kind);
    }
    Ok(kinds.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-tg/50dc6c495c0c9188";

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
    fn defaults_apply() {
        let m = Mapping::from_json(
            "TARGETS[0]",
            &json!({"dns_name": "Internal-ALB.example.com.", "target_group_arn": ARN, "port": 443}),
            Naming::Snake,
        )
        .unwrap();
        assert_eq!(m.dns_name, "internal-alb.example.com");
        assert_eq!(m.record_types, [RecordKind::A]);
        assert_eq!(m.deregister_after, 3);
        assert_eq!(m.max_lookups, 8);
        assert_eq!(m.ownership, Ownership::Exclusive);
        assert_eq!(m.max_deregister_percent, 50);
        assert_eq!(m.availability_zone, None);
    }

    #[test]
    fn cloudformation_spelling_and_string_values() {
        let m = Mapping::from_json(
            "ResourceProperties",
            &json!({"DnsName": "a.example.com", "TargetGroupArn": ARN, "Port": "80",
                    "RecordTypes": ["AAAA", "A"], "AvailabilityZone": "all",
                    "DeregisterAfter": "5", "Ownership": "tracked"}),
            Naming::Pascal,
        )
        .unwrap();
        assert_eq!(m.port, 80);
        assert_eq!(m.record_types, [RecordKind::A, RecordKind::Aaaa]);
        assert_eq!(m.availability_zone.as_deref(), Some("all"));
        assert_eq!(m.deregister_after, 5);
        assert_eq!(m.ownership, Ownership::Tracked);
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
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "max_deregister_percent": 101}),
                "TARGETS[0].max_deregister_percent",
                "101",
            ),
            (
                json!({"dns_name": "a.b", "target_group_arn": ARN, "port": 80, "prot": 1}),
                "TARGETS[0].prot",
                "unknown",
            ),
            (
                json!({"target_group_arn": ARN, "port": 80}),
                "TARGETS[0].dns_name",
                "required",
            ),
        ];
        for (value, location, needle) in cases {
            let err = Mapping::from_json("TARGETS[0]", &value, Naming::Snake).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
    }
}

//! Target groups that opt in by tag.
//!
//! A target group of type `ip` carrying `<prefix>source` is synced. Its
//! other `<prefix>` tags are the optional settings of a `TARGETS` entry, with
//! the same meanings and checks; the port defaults to the group's own, and
//! the record types to the group's address family (and must be it: an IPv4
//! group takes IPv4 targets only, an IPv6 group IPv6 ones).
//!
//! Discovery runs at every run, through the Resource Groups Tagging API
//! (`GetResources` filtered on the tag key and the target group type, 100
//! per page), so the number of calls grows with the groups that opt in,
//! not with every group of the account. Its tags are eventually
//! consistent: a group tagged (or untagged) a moment ago may be picked up
//! (or left alone) a run or two later.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::groups::{GroupInfo, TargetGroups};
use super::mapping::{Mapping, Source, TargetGroupArn};
use crate::aws::AwsError;
use crate::dns::RecordKind;
use crate::fields::{FieldError, shorten};

/// The settings a tag may carry: (tag name after the prefix, `TARGETS` field).
const SETTINGS: [(&str, &str); 9] = [
    ("port", "port"),
    ("record-types", "record_types"),
    ("availability-zone", "availability_zone"),
    ("deregister-after", "deregister_after"),
    ("ownership", "ownership"),
    ("max-deregister-percent", "max_deregister_percent"),
    ("max-lookups", "max_lookups"),
    ("metrics", "metrics"),
    ("source-role", "source_role"),
];

/// What one discovery found.
#[derive(Debug, Default)]
pub struct Discovered {
    pub mappings: Vec<Mapping>,
    /// Groups whose tags are unusable: each fails alone.
    pub errors: Vec<(TargetGroupArn, FieldError)>,
}

/// The groups tagged `<prefix>source`, with the facts ELB keeps of them.
/// Groups in `skip` (configured in `TARGETS`) are left to that
/// configuration; a group the tagging API still lists after it was deleted
/// is left out.
pub async fn discover<T: TargetGroups>(
    elb: &T,
    prefix: &str,
    skip: &BTreeSet<TargetGroupArn>,
) -> Result<Discovered, AwsError> {
    let tagged: Vec<_> = elb
        .tagged(&format!("{prefix}source"))
        .await?
        .into_iter()
        .filter(|(arn, _)| !skip.contains(arn))
        .collect();
    let arns: Vec<TargetGroupArn> = tagged.iter().map(|(arn, _)| arn.clone()).collect();
    let info = elb.info(&arns).await?;
    let mut found = Discovered::default();
    for (arn, tags) in tagged {
        let Some(group) = info.get(&arn) else {
            continue;
        };
        match mapping_from_tags(group, &tags, prefix) {
            Ok(Some(m)) => found.mappings.push(m),
            Ok(None) => {}
            Err(e) => found.errors.push((arn, e)),
        }
    }
    Ok(found)
}

/// The mapping a group's tags describe; `None` when it does not opt in.
pub fn mapping_from_tags(
    group: &GroupInfo,
    tags: &[(String, String)],
    prefix: &str,
) -> Result<Option<Mapping>, FieldError> {
    let ours: Vec<(&str, &str)> = tags
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, v.trim())))
        .collect();
    let Some((_, source)) = ours.iter().find(|(k, _)| *k == "source") else {
        return Ok(None);
    };
    let arn = &group.arn;
    let at = |tag: &str| format!("{arn} tag {prefix}{tag}");
    if !group.ip_targets {
        return Err(FieldError::new(
            at("source"),
            "is on a target group whose target type is not ip: target-sync registers IP addresses",
        ));
    }

    // The source tag, checked here so that the message names the tag.
    let parsed = Source::parse(source).map_err(|e| FieldError::new(at("source"), e))?;
    let (field, value) = match &parsed {
        Source::Dns(name) => ("dns_name", name.clone()),
        Source::Alb(alb) => ("load_balancer", alb.arn.clone().unwrap_or(alb.name.clone())),
        Source::Vpce(id) => ("vpc_endpoint", id.clone()),
    };
    let mut object = Map::new();
    object.insert(field.into(), value.into());
    object.insert("target_group_arn".into(), arn.as_str().into());
    if let Some(port) = group.port {
        object.insert("port".into(), port.into());
    }
    object.insert(
        "record_types".into(),
        Value::from(vec![if group.ipv6 { "AAAA" } else { "A" }]),
    );
    for (tag, value) in &ours {
        if *tag == "source" {
            continue;
        }
        let Some((_, field)) = SETTINGS.iter().find(|(name, _)| name == tag) else {
            let known: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
            return Err(FieldError::new(
                at(tag),
                format!(
                    "is not a setting of tether (\"{}\"); known: source, {}",
                    shorten(value),
                    known.join(", ")
                ),
            ));
        };
        let value = if *field == "record_types" {
            Value::from(
                value
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            )
        } else {
            Value::from(*value)
        };
        object.insert((*field).into(), value);
    }
    if !object.contains_key("port") {
        return Err(FieldError::new(
            at("port"),
            "is not set and the group has no port of its own",
        ));
    }
    // The same reader and checks as TARGETS; its locations become tag names.
    let location = arn.as_str();
    let m = Mapping::from_json(location, &Value::Object(object)).map_err(|e| {
        let tag = e
            .location
            .strip_prefix(location)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|field| SETTINGS.iter().find(|(_, f)| *f == field))
            .map_or("source", |(tag, _)| *tag);
        FieldError::new(at(tag), e.problem)
    })?;
    // The group's family: RegisterTargets refuses any other.
    let family = if group.ipv6 {
        RecordKind::Aaaa
    } else {
        RecordKind::A
    };
    if m.record_types != [family] {
        let given: Vec<&str> = m.record_types.iter().map(|k| k.as_str()).collect();
        return Err(FieldError::new(
            at("record-types"),
            format!(
                "\"{}\" does not fit the group, whose IP address type is {}: it takes {family} records only",
                given.join(" "),
                if group.ipv6 { "ipv6" } else { "ipv4" },
            ),
        ));
    }
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::mapping::{MetricsDetail, Ownership};

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/orders/50dc6c495c0c9188";

    fn group(port: Option<u16>, ipv6: bool) -> GroupInfo {
        GroupInfo {
            arn: ARN.parse().unwrap(),
            ip_targets: true,
            port,
            ipv6,
            vpc_id: Some("vpc-0123456789abcdef0".into()),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_group_without_the_source_tag_is_not_synced() {
        let t = tags(&[("Name", "orders"), ("tether:port", "80")]);
        assert_eq!(
            mapping_from_tags(&group(Some(80), false), &t, "tether:"),
            Ok(None)
        );
        let t = tags(&[("other:source", "dns:a.example.com")]);
        assert_eq!(
            mapping_from_tags(&group(Some(80), false), &t, "tether:"),
            Ok(None)
        );
    }

    #[test]
    fn defaults_come_from_the_group() {
        let t = tags(&[("tether:source", "dns:Orders.Example.com.")]);
        let m = mapping_from_tags(&group(Some(443), true), &t, "tether:")
            .unwrap()
            .unwrap();
        assert_eq!(m.source, Source::Dns("orders.example.com".into()));
        assert_eq!(m.port, 443);
        assert_eq!(m.record_types, [RecordKind::Aaaa]);
        assert_eq!(m.target_group_arn.as_str(), ARN);
    }

    #[test]
    fn every_setting_is_read_with_the_targets_checks() {
        let t = tags(&[
            ("stg:source", "alb:orders"),
            ("stg:port", "8443"),
            ("stg:record-types", "a"),
            ("stg:availability-zone", "all"),
            ("stg:deregister-after", "5"),
            ("stg:ownership", "tracked"),
            ("stg:max-deregister-percent", "25"),
            ("stg:max-lookups", "3"),
            ("stg:metrics", "detailed"),
        ]);
        let m = mapping_from_tags(&group(None, false), &t, "stg:")
            .unwrap()
            .unwrap();
        assert_eq!(m.source.to_string(), "alb:orders");
        assert_eq!(m.port, 8443);
        assert_eq!(m.record_types, [RecordKind::A]);
        assert_eq!(m.availability_zone.as_deref(), Some("all"));
        assert_eq!(
            (m.deregister_after, m.max_deregister_percent, m.max_lookups),
            (5, 25, 3)
        );
        assert_eq!(m.ownership, Ownership::Tracked);
        assert_eq!(m.metrics, MetricsDetail::Detailed);
    }

    #[test]
    fn a_bad_tag_names_the_group_the_tag_and_the_value() {
        for (key, value, needle) in [
            ("tether:source", "ftp:x", "ftp"),
            ("tether:source", "vpce:nope", "nope"),
            ("tether:port", "http", "http"),
            ("tether:port", "70000", "70000"),
            ("tether:record-types", "MX", "MX"),
            ("tether:deregister-after", "0", "0"),
            ("tether:ownership", "mine", "mine"),
            ("tether:max-deregister-percent", "101", "101"),
            ("tether:metrics", "Detailed", "Detailed"),
            ("tether:colour", "blue", "blue"),
            ("tether:source-role", "role/x", "role/x"),
        ] {
            let mut t = tags(&[("tether:source", "dns:a.example.com")]);
            t.retain(|(k, _)| k != key);
            t.push((key.to_owned(), value.to_owned()));
            let err = mapping_from_tags(&group(Some(80), false), &t, "tether:").unwrap_err();
            assert_eq!(err.location, format!("{ARN} tag {key}"), "{err}");
            assert!(err.problem.contains(needle), "{err} should quote {needle}");
        }
        let t = tags(&[("tether:source", "dns:a.example.com")]);
        let err = mapping_from_tags(&group(None, false), &t, "tether:").unwrap_err();
        assert_eq!(err.location, format!("{ARN} tag tether:port"));
    }
}

#[cfg(test)]
mod family {
    use super::*;

    /// Today an AAAA tag on an IPv4 group becomes a RegisterTargets error
    /// at every run; it is a bad tag, named, instead.
    #[test]
    fn record_types_must_be_the_groups_address_family() {
        let arn: TargetGroupArn =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/orders/50dc6c495c0c9188"
                .parse()
                .expect("arn");
        for (ipv6, value, fits) in [
            (false, "AAAA", false),
            (false, "A AAAA", false),
            (true, "A", false),
            (true, "AAAA", true),
            (false, "A", true),
        ] {
            let group = GroupInfo {
                arn: arn.clone(),
                ip_targets: true,
                port: Some(80),
                ipv6,
                vpc_id: None,
            };
            let tags = vec![
                ("tether:source".to_owned(), "dns:a.example.com".to_owned()),
                ("tether:record-types".to_owned(), value.to_owned()),
            ];
            let result = mapping_from_tags(&group, &tags, "tether:");
            match result {
                Ok(Some(_)) => assert!(fits, "{value} on ipv6={ipv6}"),
                Err(e) => {
                    assert!(!fits, "{e}");
                    assert_eq!(e.location, format!("{arn} tag tether:record-types"));
                    assert!(e.problem.contains(value), "{e}");
                }
                Ok(None) => panic!("opted in"),
            }
        }
        let instance = GroupInfo {
            arn: arn.clone(),
            ip_targets: false,
            port: Some(80),
            ipv6: false,
            vpc_id: None,
        };
        let tags = vec![("tether:source".to_owned(), "dns:a.example.com".to_owned())];
        let err = mapping_from_tags(&instance, &tags, "tether:").unwrap_err();
        assert!(err.problem.contains("not ip"), "{err}");
    }
}

//! `Custom::DnsAddresses`: the addresses a DNS name resolves to, as
//! attributes (`Addresses`, `Count`, `Address1`..`AddressN`).
//!
//! A new VPC endpoint's name can take a while to answer, so resolving is
//! repeated with backoff until `MinCount` addresses have been seen or the
//! deadline nears. Nothing is created, so Delete has nothing to do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::time::{Instant, sleep, timeout_at};

use super::dispatch::Failure;
use super::event::blank_as_absent;
use crate::config::parse_server;
use crate::dns::{DEFAULT_MAX_LOOKUPS, RecordKind, parse_record_types, validate_dns_name};
use crate::dns::{Lookup, resolve};
use crate::fields::{FieldError, Fields};

pub const TYPE: &str = "Custom::DnsAddresses";
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The resource's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    pub hostname: String,
    pub record_types: Vec<RecordKind>,
    /// Empty: the function's resolver.
    pub servers: Vec<SocketAddr>,
    pub min_count: usize,
}

impl Props {
    pub fn read(properties: &Value) -> Result<Props, FieldError> {
        let properties = &blank_as_absent(properties);
        let mut f = Fields::new("ResourceProperties", properties)?;
        f.string("ServiceToken")?;
        // CloudFormation passes the resource's own timeout along; not used here.
        f.number("ServiceTimeout", 1..=3600)?;
        let hostname = validate_dns_name(&f.required_string("Hostname")?)
            .map_err(|e| FieldError::new(f.at("Hostname"), e))?;
        let record_types = match f.string_list("RecordTypes")? {
            None => vec![RecordKind::A],
            Some(list) => {
                parse_record_types(&list).map_err(|e| FieldError::new(f.at("RecordTypes"), e))?
            }
        };
        let servers = read_servers(&mut f)?;
        let min_count = f.number("MinCount", 1..=1000)?.unwrap_or(1) as usize;
        let needs = data_bytes(min_count, &record_types);
        if needs > DATA_BUDGET {
            return Err(FieldError::new(
                f.at("MinCount"),
                format!(
                    "{min_count} addresses of type {} need up to {needs} bytes of attributes, more than the {DATA_BUDGET} a CloudFormation response leaves them (the whole response is limited to {} bytes)",
                    record_types
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    super::response::MAX_BODY
                ),
            ));
        }
        f.finish()?;
        Ok(Props {
            hostname,
            record_types,
            servers,
            min_count,
        })
    }

    /// Identity: the name and the record types. `MinCount` and `DnsServers`
    /// change how the answer is waited for, not what is asked.
    pub fn physical_id(&self) -> String {
        let types: Vec<&str> = self.record_types.iter().map(|k| k.as_str()).collect();
        format!("tether-dns:{}:{}", self.hostname, types.join("+"))
    }
}

/// `DnsServers`: a list of `ip` or `ip:port`.
pub fn read_servers(f: &mut Fields<'_>) -> Result<Vec<SocketAddr>, FieldError> {
    match f.string_list("DnsServers")? {
        None => Ok(Vec::new()),
        Some(list) => list
            .iter()
            .map(|s| parse_server(s).map_err(|e| FieldError::new(f.at("DnsServers"), e)))
            .collect(),
    }
}

/// Of CloudFormation's 4096-byte response, what the attributes may take:
/// the rest holds the ids (stack, request, logical and physical, up to about
/// 700 bytes) and the status.
pub const DATA_BUDGET: usize = 3072;

/// The largest `Data` that `count` addresses of these types serialize to.
pub fn data_bytes(count: usize, kinds: &[RecordKind]) -> usize {
    let longest = if kinds.contains(&RecordKind::Aaaa) {
        39 // 8 groups of 4 hex digits and 7 colons
    } else {
        15 // 255.255.255.255
    };
    let digits = count.to_string().len();
    // "Addresses":"a,b,…",  "Count":"n",  and one "AddressN":"a", per address.
    let list = 14 + count * (longest + 1);
    let each = 14 + digits + longest;
    list + 12 + digits + count * each
}

/// The attributes: `Addresses` (sorted, comma-separated), `Count`, `Address1`...
pub fn data(addrs: &BTreeSet<IpAddr>) -> BTreeMap<String, String> {
    let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    let mut data = BTreeMap::from([
        ("Addresses".to_owned(), list.join(",")),
        ("Count".to_owned(), list.len().to_string()),
    ]);
    for (i, addr) in list.into_iter().enumerate() {
        data.insert(format!("Address{}", i + 1), addr);
    }
    data
}

/// Resolves until `min_count` addresses are seen (the union of the answers),
/// or fails before `deadline`.
pub async fn resolve_at_least<L: Lookup>(
    dns: &L,
    props: &Props,
    deadline: Instant,
) -> Result<BTreeSet<IpAddr>, Failure> {
    let mut seen = BTreeSet::new();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let lookup = resolve(
            dns,
            &props.hostname,
            &props.record_types,
            DEFAULT_MAX_LOOKUPS,
        );
        let last_problem = match timeout_at(deadline, lookup).await {
            Ok(resolved) => {
                seen.extend(resolved.addrs.iter().copied());
                resolved.failure_message(&props.hostname)
            }
            Err(_) => Some("the last lookup did not finish".to_owned()),
        };
        if seen.len() >= props.min_count {
            return Ok(seen);
        }
        let retry_at = Instant::now() + backoff;
        if retry_at >= deadline {
            let list: Vec<String> = seen.iter().map(IpAddr::to_string).collect();
            return Err(Failure(format!(
                "Hostname {}: {} address(es) seen ({}) but MinCount is {}; gave up after {attempts} attempts as the Lambda deadline nears{}",
                props.hostname,
                seen.len(),
                if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                },
                props.min_count,
                last_problem
                    .map(|p| format!(" (last problem: {p})"))
                    .unwrap_or_default()
            )));
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_min_count_whose_attributes_cannot_fit_fails_naming_the_limit() {
        let read = |n: u32, types: &str| {
            Props::read(
                &json!({"Hostname": "vpce-1.example.com", "MinCount": n.to_string(), "RecordTypes": types}),
            )
        };
        assert!(read(40, "A").is_ok());
        let err = read(120, "A").unwrap_err();
        assert_eq!(err.location, "ResourceProperties.MinCount");
        assert!(
            err.problem.contains("120") && err.problem.contains("4096"),
            "{err}"
        );
        assert!(read(40, "A,AAAA").is_err(), "IPv6 addresses are longer");
        // The estimate is an upper bound of what `data` really serializes to.
        for n in [1usize, 9, 10, 40] {
            let addrs: BTreeSet<IpAddr> = (0..n)
                .map(|i| IpAddr::from([255, 255, 255, i as u8]))
                .collect();
            let real = serde_json::to_string(&data(&addrs)).unwrap().len();
            assert!(real <= data_bytes(n, &[RecordKind::A]), "{n}: {real}");
        }
    }
    use super::*;
    use crate::dns::DnsFailure;
    use serde_json::json;
    use std::sync::Mutex;

    #[test]
    fn properties_as_cloudformation_sends_them() {
        let p = Props::read(&json!({"ServiceToken": "arn:x", "Hostname": "Vpce-1.Example.com.",
            "RecordTypes": ["AAAA", "A"], "DnsServers": ["10.0.0.2", "127.0.0.1:5353"], "MinCount": "2"}))
        .unwrap();
        assert_eq!(p.hostname, "vpce-1.example.com");
        assert_eq!(p.record_types, [RecordKind::A, RecordKind::Aaaa]);
        assert_eq!(p.servers.len(), 2);
        assert_eq!(p.min_count, 2);
        assert_eq!(p.physical_id(), "tether-dns:vpce-1.example.com:A+AAAA");
        let d = Props::read(&json!({"Hostname": "a.example.com"})).unwrap();
        assert_eq!(
            (d.min_count, d.record_types.as_slice()),
            (1, [RecordKind::A].as_slice())
        );
    }

    #[test]
    fn identity_is_name_and_types_only() {
        let base = Props::read(&json!({"Hostname": "a.example.com"})).unwrap();
        let waited = Props::read(
            &json!({"Hostname": "A.example.com", "MinCount": 3, "DnsServers": "10.0.0.2"}),
        )
        .unwrap();
        assert_eq!(base.physical_id(), waited.physical_id());
        let other = Props::read(&json!({"Hostname": "b.example.com"})).unwrap();
        assert_ne!(base.physical_id(), other.physical_id());
        let v6 =
            Props::read(&json!({"Hostname": "a.example.com", "RecordTypes": "A,AAAA"})).unwrap();
        assert_ne!(base.physical_id(), v6.physical_id());
    }

    #[test]
    fn bad_properties_name_property_and_value() {
        for (props, location, needle) in [
            (json!({}), "ResourceProperties.Hostname", "required"),
            (
                json!({"Hostname": "10.0.0.1"}),
                "ResourceProperties.Hostname",
                "10.0.0.1",
            ),
            (
                json!({"Hostname": "a.b", "MinCount": "0"}),
                "ResourceProperties.MinCount",
                "\"0\"",
            ),
            (
                json!({"Hostname": "a.b", "RecordTypes": ["MX"]}),
                "ResourceProperties.RecordTypes",
                "MX",
            ),
            (
                json!({"Hostname": "a.b", "DnsServers": ["dns.google"]}),
                "ResourceProperties.DnsServers",
                "dns.google",
            ),
            (
                json!({"Hostname": "a.b", "Hostnme": "x"}),
                "ResourceProperties.Hostnme",
                "unknown",
            ),
        ] {
            let err = Props::read(&props).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn data_is_sorted_and_numbered() {
        let addrs: BTreeSet<IpAddr> = ["10.0.2.5", "10.0.10.1", "10.0.1.9"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let d = data(&addrs);
        assert_eq!(d["Addresses"], "10.0.1.9,10.0.2.5,10.0.10.1");
        assert_eq!(d["Count"], "3");
        assert_eq!(d["Address1"], "10.0.1.9");
        assert_eq!(d["Address3"], "10.0.10.1");
        assert_eq!(d.len(), 5);
    }

    struct Script(Mutex<Vec<Result<Vec<IpAddr>, DnsFailure>>>);
    impl Lookup for Script {
        async fn lookup(&self, _: &str, _: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
            let mut s = self.0.lock().unwrap();
            if s.len() > 1 {
                s.remove(0)
            } else {
                s[0].clone()
            }
        }
    }

    #[tokio::test]
    async fn waits_for_min_count_then_answers() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let dns = Script(Mutex::new(vec![
            Err(DnsFailure::NxDomain),
            Ok(vec![ip("10.0.1.1")]),
            Ok(vec![ip("10.0.1.1"), ip("10.0.2.2")]),
        ]));
        let props = Props::read(&json!({"Hostname": "a.example.com", "MinCount": 2})).unwrap();
        let got = resolve_at_least(&dns, &props, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn gives_up_before_the_deadline_saying_why() {
        let dns = Script(Mutex::new(vec![Ok(vec!["10.0.1.1".parse().unwrap()])]));
        let props = Props::read(&json!({"Hostname": "a.example.com", "MinCount": 3})).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let err = resolve_at_least(&dns, &props, deadline).await.unwrap_err();
        assert!(Instant::now() < deadline);
        assert!(
            err.0.contains("MinCount is 3")
                && err.0.contains("10.0.1.1")
                && err.0.contains("deadline"),
            "{err}"
        );
    }
}

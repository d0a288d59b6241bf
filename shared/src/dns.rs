//! The resolver every function shares: hickory-resolver, no cache.
//!
//! ELB names answer at most 8 addresses, a varying subset when there are more,
//! so [`resolve`] asks a name again while its answers come back full, and
//! unions the answers. Nothing is cached: every query reaches the server.
//!
//! An empty answer (NOERROR, no record of the type) is an answer: the name
//! has no address of that type, unless an earlier answer of the same run
//! was full: then it contradicts them, and it is doubt
//! ([`DnsFailure::EmptyAfterFull`]), not the end of the list. A dual-stack name asked for `A AAAA` that
//! has only IPv4 addresses resolves to those; only a name with no address
//! at all, or a query that fails (timeout, SERVFAIL, NXDOMAIN), is a failure.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use serde::Serialize;

use crate::config::DnsSettings;

/// An ELB DNS answer holds at most this many addresses.
pub const FULL_ANSWER: usize = 8;
/// Queries per record type while answers come back full.
pub const DEFAULT_MAX_LOOKUPS: u32 = 8;

/// The DNS record types a name is resolved for.
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

/// `A`, `AAAA` in any case, each at most once, in a stable order.
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

/// Checks that `name` can be resolved: a host name, not an address.
/// Returns it lowercased, without a trailing dot.
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

/// Why a query gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum DnsFailure {
    Timeout,
    ServFail,
    NxDomain,
    /// NOERROR with no address of the requested type.
    Empty,
    Refused,
    /// An empty answer after full ones in the same run: a resolver or
    /// server in trouble, not proof that the name has no more addresses.
    EmptyAfterFull,
    Other(String),
}

impl DnsFailure {
    /// A short, stable code for reports and retry decisions.
    pub fn code(&self) -> &'static str {
        match self {
            DnsFailure::Timeout => "Timeout",
            DnsFailure::ServFail => "SERVFAIL",
            DnsFailure::NxDomain => "NXDOMAIN",
            DnsFailure::Empty => "NODATA",
            DnsFailure::Refused => "REFUSED",
            DnsFailure::EmptyAfterFull => "EmptyAfterFull",
            DnsFailure::Other(_) => "DnsError",
        }
    }
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsFailure::Timeout => f.write_str("timed out"),
            DnsFailure::ServFail => f.write_str("SERVFAIL"),
            DnsFailure::NxDomain => f.write_str("NXDOMAIN (no such name)"),
            DnsFailure::Empty => f.write_str("empty answer"),
            DnsFailure::Refused => f.write_str("REFUSED"),
            DnsFailure::EmptyAfterFull => {
                f.write_str("an empty answer after full ones (doubt, not the end of the list)")
            }
            DnsFailure::Other(e) => write!(f, "{e}"),
        }
    }
}

/// One DNS query: the addresses of one type for one name.
pub trait Lookup: Send + Sync {
    fn lookup(
        &self,
        name: &str,
        kind: RecordKind,
    ) -> impl Future<Output = Result<Vec<IpAddr>, DnsFailure>> + Send;
}

/// The outcome of resolving one name, with what went wrong along the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every address seen, of every requested type.
    pub addrs: BTreeSet<IpAddr>,
    pub lookups: u32,
    pub failures: Vec<(RecordKind, DnsFailure)>,
    /// Every answer was full up to `max_lookups`: the name may have more
    /// addresses than were seen (an ELB with more than 8 nodes, or a
    /// resolver that cached one answer), so a missing address proves nothing.
    pub saturated: bool,
}

impl Resolved {
    /// A one-line description of the failures, if any.
    pub fn failure_message(&self, name: &str) -> Option<String> {
        if self.failures.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .failures
            .iter()
            .map(|(kind, failure)| format!("{kind} {failure}"))
            .collect();
        Some(format!("resolving {name}: {}", parts.join(", ")))
    }
}

/// Resolves every requested type of `name`, asking again while answers are
/// full, up to `max_lookups` queries per type.
pub async fn resolve<L: Lookup>(
    dns: &L,
    name: &str,
    kinds: &[RecordKind],
    max_lookups: u32,
) -> Resolved {
    let per_kind = kinds
        .iter()
        .map(|kind| resolve_kind(dns, name, *kind, max_lookups));
    let results = futures_util::future::join_all(per_kind).await;

    let mut addrs = BTreeSet::new();
    let mut lookups = 0;
    let mut failures = Vec::new();
    let mut saturated = false;
    for (kind, answer) in kinds.iter().zip(results) {
        lookups += answer.lookups;
        saturated |= answer.saturated;
        addrs.extend(answer.found);
        if let Some(failure) = answer.failure {
            failures.push((*kind, failure));
        }
    }
    Resolved {
        addrs,
        lookups,
        failures,
        saturated,
    }
}

/// What the lookups of one record type found.
struct KindAnswer {
    found: BTreeSet<IpAddr>,
    lookups: u32,
    failure: Option<DnsFailure>,
    saturated: bool,
}

/// Asks again, one query after the other, while answers come back full:
/// concurrent identical queries would be merged by the resolver into one.
async fn resolve_kind<L: Lookup>(
    dns: &L,
    name: &str,
    kind: RecordKind,
    max_lookups: u32,
) -> KindAnswer {
    let mut answer = KindAnswer {
        found: BTreeSet::new(),
        lookups: 0,
        failure: None,
        saturated: false,
    };
    while answer.lookups < max_lookups {
        answer.lookups += 1;
        let addrs: Vec<IpAddr> = match dns.lookup(name, kind).await {
            Ok(addrs) => addrs.into_iter().filter(|ip| kind.matches(ip)).collect(),
            Err(DnsFailure::Empty) => Vec::new(),
            Err(failure) => {
                answer.failure = Some(failure);
                return answer;
            }
        };
        if addrs.is_empty() {
            // NOERROR without a record of this type: an answer, unless it
            // contradicts the full answers before it.
            if !answer.found.is_empty() {
                answer.failure = Some(DnsFailure::EmptyAfterFull);
            }
            return answer;
        }
        let full = addrs.len() >= FULL_ANSWER;
        answer.found.extend(addrs);
        if !full {
            return answer;
        }
    }
    // Every answer was full: there may be addresses no answer showed.
    answer.saturated = true;
    answer
}

/// The production [`Lookup`]: hickory-resolver over UDP with TCP fallback,
/// no cache, no hosts file, names taken as fully qualified.
pub struct HickoryDns {
    resolver: TokioResolver,
    timeout: Duration,
}

impl HickoryDns {
    /// Uses `settings.servers`, or the system configuration when empty.
    pub fn new(settings: &DnsSettings) -> Result<Self, NetError> {
        let mut builder = if settings.servers.is_empty() {
            TokioResolver::builder(TokioRuntimeProvider::default())?
        } else {
            let servers = settings
                .servers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut server.connections {
                        connection.port = addr.port();
                    }
                    server
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = settings.timeout;
        opts.attempts = 0; // retries, not tries: one query, bounded by the timeout
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.try_tcp_on_error = true;
        Ok(Self {
            resolver: builder.build()?,
            timeout: settings.timeout,
        })
    }
}

impl Lookup for HickoryDns {
    async fn lookup(&self, name: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let record_type = match kind {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
        };
        // The resolver's own timeout covers one attempt; this bounds the
        // whole query, fallbacks included.
        let bound = self.timeout + Duration::from_millis(100);
        let answer = tokio::time::timeout(bound, self.resolver.lookup(fqdn, record_type))
            .await
            .map_err(|_| DnsFailure::Timeout)?
            .map_err(|e| classify(&e))?;
        Ok(answer
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect())
    }
}

/// Maps a resolver error to what it means for the sync.
pub fn classify(error: &NetError) -> DnsFailure {
    match error {
        NetError::Timeout => DnsFailure::Timeout,
        NetError::Dns(DnsError::NoRecordsFound(no)) => match no.response_code {
            ResponseCode::NXDomain => DnsFailure::NxDomain,
            ResponseCode::NoError => DnsFailure::Empty,
            ResponseCode::ServFail => DnsFailure::ServFail,
            ResponseCode::Refused => DnsFailure::Refused,
            code => DnsFailure::Other(format!("response code {code}")),
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => DnsFailure::ServFail,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => DnsFailure::Refused,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain)) => DnsFailure::NxDomain,
        other => DnsFailure::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers from a script, one entry per query.
    struct Script(Mutex<Vec<Result<Vec<IpAddr>, DnsFailure>>>);

    impl Lookup for Script {
        async fn lookup(&self, _: &str, _: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
            let mut answers = self.0.lock().unwrap();
            if answers.is_empty() {
                Err(DnsFailure::Other("script exhausted".into()))
            } else {
                answers.remove(0)
            }
        }
    }

    /// Answers by record type: IPv4 addresses for A, a fixed result for AAAA.
    struct ByKind(Vec<IpAddr>, Result<Vec<IpAddr>, DnsFailure>);

    impl Lookup for ByKind {
        async fn lookup(&self, _: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
            match kind {
                RecordKind::A => Ok(self.0.clone()),
                RecordKind::Aaaa => self.1.clone(),
            }
        }
    }

    fn ips(range: std::ops::Range<u8>) -> Vec<IpAddr> {
        range.map(|n| IpAddr::from([10, 0, 0, n])).collect()
    }

    fn set(range: std::ops::Range<u8>) -> BTreeSet<IpAddr> {
        ips(range).into_iter().collect()
    }

    #[tokio::test]
    async fn asks_again_while_answers_are_full_and_unions_them() {
        let dns = Script(Mutex::new(vec![
            Ok(ips(0..8)),
            Ok(ips(4..12)),
            Ok(ips(8..14)),
            Ok(ips(0..8)),
            Ok(ips(0..8)),
        ]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
        assert_eq!(r.addrs, set(0..14));
        assert_eq!(r.lookups, 3, "stops after the first short answer");
        assert!(!r.saturated);
    }

    #[tokio::test]
    async fn answers_full_up_to_max_lookups_are_saturated_but_not_a_failure() {
        let dns = Script(Mutex::new(vec![Ok(ips(0..8)); 10]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 4).await;
        assert_eq!(r.lookups, 4);
        assert!(r.saturated);
        assert_eq!(r.addrs, set(0..8));
        assert_eq!(r.failures, []);
        assert_eq!(r.failure_message("alb"), None);
    }

    /// Lookups 1 and 2 of a 12-node ALB hold 8 each, lookup 3 is empty:
    /// the 10 seen are not the whole name.
    #[tokio::test]
    async fn an_empty_answer_after_full_ones_is_doubt() {
        for empty in [Ok(vec![]), Err(DnsFailure::Empty)] {
            let dns = Script(Mutex::new(vec![Ok(ips(0..8)), Ok(ips(2..10)), empty]));
            let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
            assert_eq!(r.addrs, set(0..10));
            assert_eq!(r.failures, [(RecordKind::A, DnsFailure::EmptyAfterFull)]);
            assert!(!r.saturated);
        }
    }

    #[tokio::test]
    async fn a_short_first_answer_is_final() {
        let dns = Script(Mutex::new(vec![Ok(ips(0..3))]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 50).await;
        assert_eq!(r.lookups, 1);
        assert_eq!(r.addrs, set(0..3));
    }

    #[tokio::test]
    async fn a_failed_repeat_is_reported_with_what_was_seen() {
        let dns = Script(Mutex::new(vec![
            Ok(ips(0..8)),
            Ok(ips(0..8)),
            Err(DnsFailure::Timeout),
        ]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
        assert_eq!(r.addrs, set(0..8));
        assert_eq!(r.failures, [(RecordKind::A, DnsFailure::Timeout)]);
        assert_eq!(
            r.failure_message("alb").unwrap(),
            "resolving alb: A timed out"
        );
    }

    #[tokio::test]
    async fn failures_are_reported_and_an_empty_answer_is_no_failure() {
        for failure in [
            DnsFailure::ServFail,
            DnsFailure::NxDomain,
            DnsFailure::Timeout,
        ] {
            let dns = Script(Mutex::new(vec![Err(failure.clone())]));
            let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
            assert!(r.addrs.is_empty());
            assert_eq!(r.failures, [(RecordKind::A, failure)]);
        }
        for empty in [Ok(vec![]), Err(DnsFailure::Empty)] {
            let dns = Script(Mutex::new(vec![empty]));
            let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
            assert!(r.addrs.is_empty());
            assert_eq!(r.failures, []);
        }
    }

    #[tokio::test]
    async fn a_dual_stack_request_of_an_ipv4_only_name_gives_its_ipv4_addresses() {
        let kinds = [RecordKind::A, RecordKind::Aaaa];
        for no_aaaa in [Ok(vec![]), Err(DnsFailure::Empty)] {
            let r = resolve(&ByKind(ips(1..3), no_aaaa), "alb", &kinds, 8).await;
            assert_eq!(r.addrs, set(1..3));
            assert_eq!(r.failures, []);
        }
        // A failing AAAA query is a failure, though A answered.
        let r = resolve(
            &ByKind(ips(1..3), Err(DnsFailure::ServFail)),
            "alb",
            &kinds,
            8,
        )
        .await;
        assert_eq!(r.failures, [(RecordKind::Aaaa, DnsFailure::ServFail)]);
    }

    #[test]
    fn record_types_and_names_are_validated() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_record_types(&list(&["aaaa", "A", "A"])).unwrap(),
            [RecordKind::A, RecordKind::Aaaa]
        );
        assert!(
            parse_record_types(&list(&["MX"]))
                .unwrap_err()
                .contains("`MX`")
        );
        assert_eq!(
            validate_dns_name("Alb.Example.COM.").unwrap(),
            "alb.example.com"
        );
        assert!(
            validate_dns_name("10.0.0.1")
                .unwrap_err()
                .contains("IP address")
        );
        assert!(validate_dns_name("a..b").unwrap_err().contains("`a..b`"));
    }
}

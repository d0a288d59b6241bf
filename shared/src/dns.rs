//! Resolving the names behind mappings, with hickory-resolver.
//!
//! ELB names answer at most 8 addresses, a varying subset when there are more,
//! so a name is asked again while its answers come back full, and the answers
//! are unioned. Nothing is cached: every query reaches the server.

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
use crate::mapping::RecordKind;
use crate::plan::Resolution;

/// An ELB DNS answer holds at most this many addresses.
pub const FULL_ANSWER: usize = 8;

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
    Other(String),
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsFailure::Timeout => f.write_str("timed out"),
            DnsFailure::ServFail => f.write_str("SERVFAIL"),
            DnsFailure::NxDomain => f.write_str("NXDOMAIN (no such name)"),
            DnsFailure::Empty => f.write_str("empty answer"),
            DnsFailure::Refused => f.write_str("REFUSED"),
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
    pub resolution: Resolution,
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
    let resolution = match (addrs.is_empty(), failures.is_empty() && !saturated) {
        (true, _) => Resolution::Failed,
        (false, true) => Resolution::Complete(addrs),
        (false, false) => Resolution::Partial(addrs),
    };
    Resolved {
        resolution,
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
        match dns.lookup(name, kind).await {
            Ok(addrs) => {
                let addrs: Vec<IpAddr> = addrs.into_iter().filter(|ip| kind.matches(ip)).collect();
                if addrs.is_empty() {
                    answer.failure = Some(DnsFailure::Empty);
                    return answer;
                }
                let full = addrs.len() >= FULL_ANSWER;
                answer.found.extend(addrs);
                if !full {
                    return answer;
                }
            }
            Err(failure) => {
                answer.failure = Some(failure);
                return answer;
            }
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

    /// Answers from a script, one entry per query, and counts the queries.
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

    fn ips(range: std::ops::Range<u8>) -> Vec<IpAddr> {
        range.map(|n| IpAddr::from([10, 0, 0, n])).collect()
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
        assert_eq!(
            r.resolution,
            Resolution::Complete(ips(0..14).into_iter().collect())
        );
        assert_eq!(r.lookups, 3, "stops after the first short answer");
    }

    #[tokio::test]
    async fn answers_full_up_to_max_lookups_are_doubtful_but_not_a_failure() {
        let dns = Script(Mutex::new(vec![Ok(ips(0..8)); 10]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 4).await;
        assert_eq!(r.lookups, 4);
        assert!(r.saturated);
        assert_eq!(
            r.resolution,
            Resolution::Partial(ips(0..8).into_iter().collect())
        );
        assert_eq!(r.failures, []);
        assert_eq!(r.failure_message("alb"), None);
    }

    #[tokio::test]
    async fn a_short_first_answer_is_final() {
        let dns = Script(Mutex::new(vec![Ok(ips(0..3))]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 50).await;
        assert_eq!(r.lookups, 1);
        assert!(matches!(r.resolution, Resolution::Complete(s) if s.len() == 3));
    }

    #[tokio::test]
    async fn a_failed_repeat_makes_the_resolution_partial() {
        let dns = Script(Mutex::new(vec![
            Ok(ips(0..8)),
            Ok(ips(0..8)),
            Err(DnsFailure::Timeout),
        ]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
        assert!(matches!(&r.resolution, Resolution::Partial(s) if s.len() == 8));
        assert_eq!(r.failures, [(RecordKind::A, DnsFailure::Timeout)]);
        assert_eq!(
            r.failure_message("alb").unwrap(),
            "resolving alb: A timed out"
        );
    }

    #[tokio::test]
    async fn nothing_usable_is_failed() {
        for failure in [
            DnsFailure::ServFail,
            DnsFailure::NxDomain,
            DnsFailure::Timeout,
        ] {
            let dns = Script(Mutex::new(vec![Err(failure.clone())]));
            let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
            assert_eq!(r.resolution, Resolution::Failed);
            assert_eq!(r.failures, [(RecordKind::A, failure)]);
        }
        let dns = Script(Mutex::new(vec![Ok(vec![])]));
        let r = resolve(&dns, "alb", &[RecordKind::A], 8).await;
        assert_eq!(r.resolution, Resolution::Failed);
        assert_eq!(r.failures, [(RecordKind::A, DnsFailure::Empty)]);
    }
}

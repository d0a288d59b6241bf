//! One probe of one endpoint, from the name to the answer.
//!
//! This file holds the probe's course: name resolution within its share of
//! the budget, the addresses in turn (each bounded by
//! `connect_timeout_ms`), its own TCP connection, and one retry within the
//! timeout for an idempotent method. The parts are beside it: [`tls`] (what
//! is trusted, the verified chain's expiry), [`http`] (the request and the
//! answer), [`classify`] (failures sorted into classes), [`outcome`] (what
//! a probe found) and [`log`] (its log lines). Secret header values come
//! from [`Secrets`], which a denied probe asks to read them again.

pub mod classify;
pub mod http;
pub mod log;
pub mod outcome;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderName, HeaderValue};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;

use super::config::{Endpoint, is_idempotent};
use super::secrets::Secrets;
use crate::dns::{DnsFailure, Lookup, RecordKind};
pub use http::{BODY_LIMIT, SNIPPET_CHARS, snippet};
pub use log::log_probe;
pub use outcome::{Failure, FailureClass, ProbeResult, days_between};

/// The TLS trust of an endpoint could not be built (e.g. no system CA
/// certificates, and no `ca_bundle`).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the TLS verifier for {location}: {source}")]
pub struct BuildError {
    pub location: String,
    #[source]
    pub source: rustls::Error,
}

/// Everything probes need, built once at cold start: the resolver, the
/// trust anchors of each https endpoint, and the secret header values.
/// Connections and TLS sessions are never kept: every probe opens its own
/// (as a client arriving after a failover would).
pub struct Prober<L> {
    dns: Arc<L>,
    provider: Arc<CryptoProvider>,
    /// The trust anchors of each endpoint (https only).
    roots: Vec<Option<Arc<RootCertStore>>>,
    secrets: Secrets,
}

/// What an attempt found, kept even when it fails or times out.
#[derive(Default)]
pub struct Found {
    pub status: Option<u16>,
    /// The chain's expiry (epoch seconds), see [`tls`].
    pub expiry: Option<i64>,
    pub unreachable: Vec<String>,
    pub address: Option<SocketAddr>,
    pub protocol: Option<&'static str>,
}

impl<L: Lookup + 'static> Prober<L> {
    pub fn new(endpoints: &[Endpoint], dns: Arc<L>, secrets: Secrets) -> Result<Self, BuildError> {
        Ok(Self {
            dns,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            roots: tls::roots_of(endpoints)?,
            secrets,
        })
    }

    /// Probes endpoint `index` (of the slice given to [`Prober::new`]) in
    /// round `round` (which rotates the address tried first): one attempt,
    /// and, for an idempotent method, on failure a second one in what is
    /// left of the timeout. Secret values older than their TTL are read
    /// again while it runs; it sends the values it has.
    pub async fn probe(&self, index: usize, e: &Endpoint, round: u32) -> ProbeResult {
        let started = Instant::now();
        let deadline = started + e.timeout;
        let (result, ()) = futures_util::future::join(
            self.attempts(index, e, round, started, deadline),
            self.secrets.refresh_old(index, started, deadline),
        )
        .await;
        result
    }

    async fn attempts(
        &self,
        index: usize,
        e: &Endpoint,
        round: u32,
        started: Instant,
        deadline: Instant,
    ) -> ProbeResult {
        let mut first_failure = None;
        let mut earlier_expiry = None;
        let mut attempt: u8 = 0;
        loop {
            attempt += 1;
            let secret = self.secrets.headers(index);
            let mut found = Found::default();
            let begun = Instant::now();
            let first = round as usize + usize::from(attempt - 1);
            let exchange = self.attempt(index, e, &secret, first, deadline, &mut found);
            let outcome = match timeout_at(deadline, exchange).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::new(
                    FailureClass::Timeout,
                    format!(
                        "no complete answer within {} ms{}",
                        e.timeout.as_millis(),
                        match found.status {
                            Some(s) => format!(" (status {s} came, the body did not end)"),
                            None => String::new(),
                        }
                    ),
                )),
            };
            let answered_in = begun.elapsed();
            let outcome = outcome.and_then(|()| match e.max_latency {
                Some(max) if answered_in > max => Err(Failure::new(
                    FailureClass::Slow,
                    format!(
                        "answered in {} ms, more than max_latency_ms {}",
                        answered_in.as_millis(),
                        max.as_millis()
                    ),
                )),
                _ => Ok(()),
            });
            if let Err(failure) = &outcome
                && failure.is_denial(found.status)
                && self.secrets.has_any(index)
            {
                // A rotated secret: the retry (or the next probe) sends the new value.
                self.secrets
                    .refresh_denied(index, started, Instant::now(), deadline)
                    .await;
            }
            match outcome {
                Err(failure)
                    if attempt == 1 && is_idempotent(&e.method) && Instant::now() < deadline =>
                {
                    first_failure = Some(failure);
                    earlier_expiry = found.expiry;
                }
                outcome => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    let latency = match outcome {
                        Ok(()) => answered_in,
                        Err(_) => started.elapsed(),
                    };
                    return ProbeResult {
                        outcome,
                        status: found.status,
                        latency,
                        cert_expiry_days: found
                            .expiry
                            .or(earlier_expiry)
                            .map(|not_after| days_between(now, not_after)),
                        attempts: attempt,
                        first_failure,
                        unreachable: found.unreachable,
                        address: found.address,
                        protocol: found.protocol,
                    };
                }
            }
        }
    }

    /// One connection and one request; `found` is filled in as things are
    /// learnt, so that a timeout still reports them.
    async fn attempt(
        &self,
        index: usize,
        e: &Endpoint,
        secret: &[(HeaderName, HeaderValue)],
        first: usize,
        deadline: Instant,
        found: &mut Found,
    ) -> Result<(), Failure> {
        let host = e
            .url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']']);
        let port = e.url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = if !e.connect_to.is_empty() {
            e.connect_to.clone()
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            self.resolve(host, e.dns_timeout)
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        };
        let tcp = connect(&addrs, first, e.connect_timeout, &mut found.unreachable).await?;
        found.address = tcp.peer_addr().ok();
        let Some(roots) = &self.roots[index] else {
            found.protocol = Some("http/1.1");
            return http::exchange(tcp, false, e, secret, deadline, found).await;
        };
        let expiry: tls::Expiry = Arc::new(Mutex::new(None));
        let config = tls::client_config(&self.provider, roots, &expiry)?;
        let name = ServerName::try_from(host.to_owned()).map_err(|err| {
            Failure::new(FailureClass::Tls, format!("TLS: server name {host}: {err}"))
        })?;
        let handshake = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await;
        found.expiry = *expiry.lock().unwrap_or_else(|p| p.into_inner());
        let tls = handshake.map_err(|err| classify::classify_tls(&err))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        found.protocol = Some(if h2 { "h2" } else { "http/1.1" });
        http::exchange(tls, h2, e, secret, deadline, found).await
    }

    /// A first, AAAA when the name has no A record, both within `share`
    /// (the endpoint's DNS share of its timeout).
    async fn resolve(&self, name: &str, share: Duration) -> Result<Vec<IpAddr>, Failure> {
        let lookups = async {
            match self.dns.lookup(name, RecordKind::A).await {
                Ok(addrs) if !addrs.is_empty() => Ok(addrs),
                Ok(_) | Err(DnsFailure::Empty) => {
                    match self.dns.lookup(name, RecordKind::Aaaa).await {
                        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
                        Ok(_) | Err(DnsFailure::Empty) => Err(DnsFailure::Empty),
                        Err(failure) => Err(failure),
                    }
                }
                Err(failure) => Err(failure),
            }
        };
        let message =
            |what: String| Failure::new(FailureClass::Dns, format!("resolving {name}: {what}"));
        match timeout(share, lookups).await {
            Ok(Ok(addrs)) => Ok(addrs),
            Ok(Err(failure)) => Err(message(failure.to_string())),
            Err(_) => Err(message(format!(
                "no answer within {} ms (the DNS share: a third of timeout_ms, at most DNS_TIMEOUT_MS)",
                share.as_millis()
            ))),
        }
    }
}

/// Connects to `addrs` in turn, starting at `first` (modulo their number),
/// each bounded by `per_address`; notes those that did not connect.
async fn connect(
    addrs: &[SocketAddr],
    first: usize,
    per_address: Duration,
    unreachable: &mut Vec<String>,
) -> Result<TcpStream, Failure> {
    let n = addrs.len();
    for k in 0..n {
        let addr = addrs[(first + k) % n];
        match timeout(per_address, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(err)) => unreachable.push(format!("{addr}: {err}")),
            Err(_) => unreachable.push(format!(
                "{addr}: no TCP handshake within {} ms (connect_timeout_ms)",
                per_address.as_millis()
            )),
        }
    }
    Err(Failure::new(
        FailureClass::Connect,
        format!(
            "no address accepted a connection: {}",
            unreachable.join("; ")
        ),
    ))
}

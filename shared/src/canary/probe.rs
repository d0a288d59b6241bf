//! One probe: a fresh connection, one request, the status, at most 64 KiB of
//! body, and the server certificate's expiry; failures sorted into classes.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use reqwest::tls::TlsInfo;
use reqwest::{Certificate, Client};
use serde::Serialize;

use super::cert;
use super::config::Endpoint;
use crate::dns::RecordKind;
use crate::dns::{DnsFailure, Lookup};
use crate::fields::shorten;

/// The most body a probe reads.
pub const BODY_LIMIT: usize = 64 * 1024;
const USER_AGENT: &str = concat!("tether-health-canary/", env!("CARGO_PKG_VERSION"));

/// Why a probe failed; the names are what logs and reports show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The name did not resolve (NXDOMAIN, SERVFAIL, no address, DNS timeout).
    Dns,
    /// Connection refused, reset or closed before an answer.
    Connect,
    /// No complete answer within the endpoint's timeout.
    Timeout,
    /// The server certificate is not signed by a trusted CA.
    TlsUnknownCa,
    /// The server certificate has expired (or is not valid yet).
    TlsExpired,
    /// The server certificate is not valid for the URL's host.
    TlsWrongName,
    /// Any other TLS failure (handshake, alert, protocol version, ...).
    Tls,
    /// The answer is not HTTP.
    Http,
    /// A status outside `expect_status`.
    Status,
    /// `body_contains` is not in the body (its first 64 KiB).
    Body,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Dns => "dns",
            FailureClass::Connect => "connect",
            FailureClass::Timeout => "timeout",
            FailureClass::TlsUnknownCa => "tls_unknown_ca",
            FailureClass::TlsExpired => "tls_expired",
            FailureClass::TlsWrongName => "tls_wrong_name",
            FailureClass::Tls => "tls",
            FailureClass::Http => "http",
            FailureClass::Status => "status",
            FailureClass::Body => "body",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: its class and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
}

impl Failure {
    fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

/// What one probe of one endpoint found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub outcome: Result<(), Failure>,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// From the start of the probe to its end (body read, or failure).
    pub latency: Duration,
    /// Days until the server certificate expires (https, handshake done).
    pub cert_expiry_days: Option<f64>,
}

impl ProbeResult {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// `ok` or the failure class.
    pub fn outcome_name(&self) -> &'static str {
        match &self.outcome {
            Ok(()) => "ok",
            Err(f) => f.class.as_str(),
        }
    }
}

/// A client could not be built (e.g. no system CA certificates).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for {location}: {source}")]
pub struct BuildError {
    pub location: String,
    #[source]
    pub source: reqwest::Error,
}

/// A name that did not resolve; found again in the error chain of a request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("resolving {name}: {failure}")]
pub struct ResolveFailed {
    pub name: String,
    pub failure: DnsFailure,
}

/// reqwest's resolver, answered through [`Lookup`] (hickory-resolver in
/// production): A first, AAAA when the name has no A record.
struct ViaLookup<L>(Arc<L>);

impl<L: Lookup + 'static> Resolve for ViaLookup<L> {
    fn resolve(&self, name: Name) -> Resolving {
        let dns = Arc::clone(&self.0);
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = match dns.lookup(&name, RecordKind::A).await {
                Ok(addrs) if !addrs.is_empty() => Ok(addrs),
                Ok(_) | Err(DnsFailure::Empty) => match dns.lookup(&name, RecordKind::Aaaa).await {
                    Ok(addrs) if !addrs.is_empty() => Ok(addrs),
                    Ok(_) | Err(DnsFailure::Empty) => Err(DnsFailure::Empty),
                    Err(failure) => Err(failure),
                },
                Err(failure) => Err(failure),
            };
            match addrs {
                Ok(addrs) => {
                    let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                Err(failure) => Err(Box::new(ResolveFailed { name, failure }) as _),
            }
        })
    }
}

/// What makes clients differ: the extra CAs, and `connect_to` for a host.
type ClientKey<'a> = (Option<&'a str>, Option<(&'a str, SocketAddr)>);

/// The HTTP clients of all endpoints, built once at cold start.
///
/// Endpoints share a client when they trust the same CAs and have no
/// `connect_to`; connections are never reused, so every probe opens its own
/// (as a client arriving after a failover would).
pub struct Prober {
    clients: Vec<Client>,
    /// The client of each endpoint (index into `clients`).
    client_of: Vec<usize>,
}

impl Prober {
    pub fn new<L: Lookup + 'static>(
        endpoints: &[Endpoint],
        dns: Arc<L>,
    ) -> Result<Self, BuildError> {
        let resolver = Arc::new(ViaLookup(dns));
        let mut keys: HashMap<ClientKey<'_>, usize> = HashMap::new();
        let mut clients = Vec::new();
        let mut client_of = Vec::with_capacity(endpoints.len());
        for (i, e) in endpoints.iter().enumerate() {
            let host = e.url.host_str().unwrap_or_default();
            let key = (
                e.ca_bundle.as_deref(),
                e.connect_to.map(|addr| (host, addr)),
            );
            let index = match keys.get(&key) {
                Some(index) => *index,
                None => {
                    let client =
                        build_client(Arc::clone(&resolver), key.0, key.1).map_err(|source| {
                            BuildError {
                                location: format!("CANARY_TARGETS[{i}]"),
                                source,
                            }
                        })?;
                    clients.push(client);
                    keys.insert(key, clients.len() - 1);
                    clients.len() - 1
                }
            };
            client_of.push(index);
        }
        Ok(Self { clients, client_of })
    }

    /// Probes endpoint `index` (of the slice given to [`Prober::new`]).
    pub async fn probe(&self, index: usize, endpoint: &Endpoint) -> ProbeResult {
        let client = &self.clients[self.client_of[index]];
        let started = Instant::now();
        let mut status = None;
        let mut expiry = None;
        let exchange = exchange(client, endpoint, &mut status, &mut expiry);
        let outcome = match tokio::time::timeout(endpoint.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::new(
                FailureClass::Timeout,
                format!(
                    "no complete answer within {} ms{}",
                    endpoint.timeout.as_millis(),
                    match status {
                        Some(s) => format!(" (status {s} came, the body did not end)"),
                        None => String::new(),
                    }
                ),
            )),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        ProbeResult {
            outcome,
            status,
            latency: started.elapsed(),
            cert_expiry_days: expiry.map(|not_after| days_between(now, not_after)),
        }
    }
}

/// Days from `now` to `not_after` (epoch seconds), to the hundredth.
pub fn days_between(now: i64, not_after: i64) -> f64 {
    ((not_after - now) as f64 / 86_400.0 * 100.0).floor() / 100.0
}

fn build_client<L: Lookup + 'static>(
    resolver: Arc<ViaLookup<L>>,
    ca_bundle: Option<&str>,
    connect_to: Option<(&str, SocketAddr)>,
) -> Result<Client, reqwest::Error> {
    let mut builder = Client::builder()
        .dns_resolver(resolver)
        .redirect(Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .user_agent(USER_AGENT);
    if let Some(pem) = ca_bundle {
        builder = builder.tls_certs_merge(Certificate::from_pem_bundle(pem.as_bytes())?);
    }
    if let Some((host, addr)) = connect_to {
        builder = builder.resolve(host, addr);
    }
    builder.build()
}

/// The request and response of one probe; `status` and `expiry` are set as
/// soon as they are known, so that a timeout still reports them.
async fn exchange(
    client: &Client,
    e: &Endpoint,
    status: &mut Option<u16>,
    expiry: &mut Option<i64>,
) -> Result<(), Failure> {
    let mut response = client
        .request(e.method.clone(), e.url.clone())
        .headers(e.headers.clone())
        .send()
        .await
        .map_err(|err| classify(&err))?;
    let code = response.status().as_u16();
    *status = Some(code);
    if let Some(der) = response
        .extensions()
        .get::<TlsInfo>()
        .and_then(TlsInfo::peer_certificate)
    {
        match cert::not_after(der) {
            Ok(not_after) => *expiry = Some(not_after),
            Err(err) => {
                tracing::warn!(endpoint = %e.name, error = %err, "certificate expiry unknown")
            }
        }
    }
    if !e.expect_status.contains(code) {
        return Err(Failure::new(
            FailureClass::Status,
            format!("status {code}, expected {}", e.expect_status),
        ));
    }
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = BODY_LIMIT - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(err) => return Err(classify(&err)),
        }
    }
    if let Some(needle) = &e.body_contains
        && !contains(&body, needle.as_bytes())
    {
        return Err(Failure::new(
            FailureClass::Body,
            format!(
                "the body ({} bytes read) does not contain \"{}\"",
                body.len(),
                shorten(needle)
            ),
        ));
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every error in the chain, looking inside `io::Error`s (whose `source`
/// skips the error they wrap).
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// Sorts a failed request into a class, with the most specific message.
pub fn classify(err: &reqwest::Error) -> Failure {
    let errors = chain(err);
    for e in &errors {
        if let Some(dns) = e.downcast_ref::<ResolveFailed>() {
            return Failure::new(FailureClass::Dns, dns.to_string());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Failure::new(tls_class(tls), format!("TLS: {tls}"));
        }
    }
    let deepest = errors
        .last()
        .map_or_else(|| err.to_string(), |e| e.to_string());
    let io_connect = errors.iter().any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            )
        })
    });
    let closed_early = deepest.contains("connection closed before message completed");
    let class = if err.is_timeout() {
        FailureClass::Timeout
    } else if err.is_connect() || io_connect || closed_early {
        FailureClass::Connect
    } else {
        FailureClass::Http
    };
    Failure::new(class, deepest)
}

fn tls_class(err: &rustls::Error) -> FailureClass {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => FailureClass::TlsUnknownCa,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => FailureClass::TlsExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => FailureClass::TlsWrongName,
            _ => FailureClass::Tls,
        },
        _ => FailureClass::Tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;

    #[test]
    fn tls_errors_are_told_apart() {
        let class = |c| tls_class(&rustls::Error::InvalidCertificate(c));
        assert_eq!(class(C::UnknownIssuer), FailureClass::TlsUnknownCa);
        assert_eq!(class(C::Expired), FailureClass::TlsExpired);
        assert_eq!(class(C::NotValidForName), FailureClass::TlsWrongName);
        assert_eq!(class(C::BadSignature), FailureClass::Tls);
        assert_eq!(
            tls_class(&rustls::Error::HandshakeNotComplete),
            FailureClass::Tls
        );
    }

    #[test]
    fn the_chain_looks_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(C::UnknownIssuer);
        let io = io::Error::other(inner);
        let errors = chain(&io);
        assert_eq!(errors.len(), 2);
        assert!(errors[1].downcast_ref::<rustls::Error>().is_some());
    }

    #[test]
    fn expiry_days_are_floored_to_hundredths() {
        assert_eq!(days_between(0, 86_400 * 30), 30.0);
        assert_eq!(days_between(0, 86_400 * 30 + 43_200), 30.5);
        assert_eq!(days_between(86_400 * 2, 0), -2.0);
        assert_eq!(days_between(0, 86_399), 0.99);
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"status: ok", b"ok"));
        assert!(!contains(b"status: ko", b"ok"));
        assert!(!contains(b"o", b"ok"));
        assert!(contains(b"", b""));
    }

    #[test]
    fn class_names_are_stable() {
        let json = serde_json::to_value(FailureClass::TlsWrongName).unwrap();
        assert_eq!(json, "tls_wrong_name");
        assert_eq!(FailureClass::TlsWrongName.as_str(), "tls_wrong_name");
    }
}

//! One probe: its own TCP connection (the addresses in turn, each bounded by
//! `connect_timeout_ms`), a full TLS handshake (no session resumption, no
//! pooled connection: a replaced certificate is seen at once), HTTP/1.1 or
//! h2 as ALPN settles, the status, at most 64 KiB of body, and the earliest
//! expiry of the certificates the server sent; one retry within the
//! timeout; failures sorted into classes.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, USER_AGENT as USER_AGENT_HEADER};
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::Url;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;

use super::cert;
use super::config::Endpoint;
use crate::dns::{DnsFailure, Lookup, RecordKind};
use crate::fields::shorten;

/// The most body a probe reads.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The most characters of body a failure carries (and logs).
pub const SNIPPET_CHARS: usize = 160;
/// How long a failed status waits for the start of its body (the snippet).
const SNIPPET_WAIT: Duration = Duration::from_millis(250);
const USER_AGENT: &str = concat!("tether-health-canary/", env!("CARGO_PKG_VERSION"));

/// Why a probe failed; the names are what logs and reports show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The name did not resolve (NXDOMAIN, SERVFAIL, no address, DNS timeout).
    Dns,
    /// No address accepted a connection, or it was reset or closed before an answer.
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
    /// A good answer, slower than `max_latency_ms`.
    Slow,
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
            FailureClass::Slow => "slow",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: its class, what happened, and the start of the body
/// when one came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl Failure {
    fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            snippet: None,
        }
    }
}

/// What one probe of one endpoint found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub outcome: Result<(), Failure>,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Of the answering attempt when it succeeded; else from the start of
    /// the probe to its failure.
    pub latency: Duration,
    /// Days until the earliest expiry among the certificates the server
    /// sent (https, once they came, even when they were refused).
    pub cert_expiry_days: Option<f64>,
    /// 1, or 2 when the first attempt failed and was retried.
    pub attempts: u8,
    /// The first attempt's failure, when there was a retry.
    pub first_failure: Option<Failure>,
    /// Addresses that did not accept a connection in the last attempt
    /// before one did (or all of them, on a connect failure).
    pub unreachable: Vec<String>,
    /// `h2` or `http/1.1`, when a connection was made.
    pub protocol: Option<&'static str>,
}

impl ProbeResult {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// Healthy, but an address of the endpoint did not accept a connection.
    pub fn is_degraded(&self) -> bool {
        self.is_ok() && !self.unreachable.is_empty()
    }

    /// `ok` or the failure class.
    pub fn outcome_name(&self) -> &'static str {
        match &self.outcome {
            Ok(()) => "ok",
            Err(f) => f.class.as_str(),
        }
    }
}

/// The TLS verifier could not be built (e.g. no system CA certificates).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the TLS verifier for {location}: {source}")]
pub struct BuildError {
    pub location: String,
    #[source]
    pub source: rustls::Error,
}

/// Verifies as `inner` does, and first notes the earliest `notAfter` of the
/// certificates the server sent (leaf and intermediates), so that an
/// expired or refused chain still reports its expiry.
#[derive(Debug)]
struct Recording {
    inner: Arc<rustls_platform_verifier::Verifier>,
    earliest: Arc<Mutex<Option<i64>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain =
            std::iter::once(end_entity.as_ref()).chain(intermediates.iter().map(|c| c.as_ref()));
        let (earliest, unreadable) = cert::earliest_not_after(chain);
        if let Some(err) = unreadable {
            tracing::warn!(server = ?server_name, error = %err, "a certificate's expiry is unreadable");
        }
        *self.earliest.lock().unwrap_or_else(|p| p.into_inner()) = earliest;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Everything probes need, built once at cold start: the resolver and one
/// certificate verifier per distinct `ca_bundle`. Connections and TLS
/// sessions are never kept: every probe opens its own (as a client arriving
/// after a failover would).
pub struct Prober<L> {
    dns: Arc<L>,
    provider: Arc<CryptoProvider>,
    /// The verifier of each endpoint (https only).
    verifiers: Vec<Option<Arc<rustls_platform_verifier::Verifier>>>,
}

/// What an attempt found, kept even when it fails or times out.
#[derive(Default)]
struct Found {
    status: Option<u16>,
    expiry: Option<i64>,
    unreachable: Vec<String>,
    protocol: Option<&'static str>,
}

/// Aborts the connection task (closing the connection) when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<L: Lookup + 'static> Prober<L> {
    pub fn new(endpoints: &[Endpoint], dns: Arc<L>) -> Result<Self, BuildError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut built: Vec<(Option<&str>, Arc<rustls_platform_verifier::Verifier>)> = Vec::new();
        let mut verifiers = Vec::with_capacity(endpoints.len());
        for (i, e) in endpoints.iter().enumerate() {
            if e.url.scheme() != "https" {
                verifiers.push(None);
                continue;
            }
            let bundle = e.ca_bundle.as_deref();
            if let Some((_, v)) = built.iter().find(|(b, _)| *b == bundle) {
                verifiers.push(Some(Arc::clone(v)));
                continue;
            }
            let location = format!("CANARY_TARGETS[{i}]");
            let verifier = match bundle {
                None => rustls_platform_verifier::Verifier::new(Arc::clone(&provider)),
                Some(pem) => {
                    use rustls::pki_types::pem::PemObject;
                    let extra: Vec<CertificateDer<'static>> =
                        CertificateDer::pem_slice_iter(pem.as_bytes())
                            .collect::<Result<_, _>>()
                            .map_err(|e| BuildError {
                                location: format!("{location}.ca_bundle"),
                                source: rustls::Error::General(e.to_string()),
                            })?;
                    rustls_platform_verifier::Verifier::new_with_extra_roots(
                        extra,
                        Arc::clone(&provider),
                    )
                }
            }
            .map_err(|source| BuildError { location, source })?;
            let verifier = Arc::new(verifier);
            built.push((bundle, Arc::clone(&verifier)));
            verifiers.push(Some(verifier));
        }
        Ok(Self {
            dns,
            provider,
            verifiers,
        })
    }

    /// Probes endpoint `index` (of the slice given to [`Prober::new`]) in
    /// round `round` (which rotates the address tried first): one attempt,
    /// and on failure a second one in what is left of the timeout.
    pub async fn probe(&self, index: usize, e: &Endpoint, round: u32) -> ProbeResult {
        let started = Instant::now();
        let deadline = started + e.timeout;
        let mut first_failure = None;
        let mut earlier_expiry = None;
        let mut attempt: u8 = 0;
        loop {
            attempt += 1;
            let mut found = Found::default();
            let begun = Instant::now();
            let exchange = self.attempt(
                index,
                e,
                round as usize + usize::from(attempt - 1),
                deadline,
                &mut found,
            );
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
            match outcome {
                Err(failure) if attempt == 1 && Instant::now() < deadline => {
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
            self.resolve(host)
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        };
        let tcp = connect(&addrs, first, e.connect_timeout, &mut found.unreachable).await?;
        match &self.verifiers[index] {
            None => {
                found.protocol = Some("http/1.1");
                exchange(tcp, false, e, deadline, found).await
            }
            Some(verifier) => {
                let earliest = Arc::new(Mutex::new(None));
                let recording = Recording {
                    inner: Arc::clone(verifier),
                    earliest: Arc::clone(&earliest),
                };
                let mut config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
                    .with_safe_default_protocol_versions()
                    .map_err(|err| Failure::new(FailureClass::Tls, format!("TLS: {err}")))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(recording))
                    .with_no_client_auth();
                // Every probe verifies the whole chain: no tickets, no session IDs.
                config.resumption = Resumption::disabled();
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                let name = ServerName::try_from(host.to_owned()).map_err(|err| {
                    Failure::new(FailureClass::Tls, format!("TLS: server name {host}: {err}"))
                })?;
                let handshake = TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await;
                found.expiry = *earliest.lock().unwrap_or_else(|p| p.into_inner());
                let tls = handshake.map_err(|err| classify_tls(&err))?;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                found.protocol = Some(if h2 { "h2" } else { "http/1.1" });
                exchange(tls, h2, e, deadline, found).await
            }
        }
    }

    /// A first, AAAA when the name has no A record.
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Failure> {
        let addrs = match self.dns.lookup(name, RecordKind::A).await {
            Ok(addrs) if !addrs.is_empty() => Ok(addrs),
            Ok(_) | Err(DnsFailure::Empty) => match self.dns.lookup(name, RecordKind::Aaaa).await {
                Ok(addrs) if !addrs.is_empty() => Ok(addrs),
                Ok(_) | Err(DnsFailure::Empty) => Err(DnsFailure::Empty),
                Err(failure) => Err(failure),
            },
            Err(failure) => Err(failure),
        };
        addrs.map_err(|failure| {
            Failure::new(FailureClass::Dns, format!("resolving {name}: {failure}"))
        })
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

/// The request and response on an open connection.
async fn exchange<S>(
    io: S,
    h2: bool,
    e: &Endpoint,
    deadline: Instant,
    found: &mut Found,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = request(e, h2)?;
    let io = TokioIo::new(io);
    let (response, _connection) = if h2 {
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|err| classify_http(&err))?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        (sender.send_request(request).await, connection)
    } else {
        let (mut sender, conn) = http1::handshake(io)
            .await
            .map_err(|err| classify_http(&err))?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        (sender.send_request(request).await, connection)
    };
    let mut response: Response<Incoming> = response.map_err(|err| classify_http(&err))?;
    let code = response.status().as_u16();
    found.status = Some(code);
    if !e.expect_status.contains(code) {
        // The start of the body, if it comes soon: it often says why.
        let wait = (Instant::now() + SNIPPET_WAIT).min(deadline);
        let start = timeout_at(wait, read_body(response.body_mut(), SNIPPET_CHARS * 4))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut failure = Failure::new(
            FailureClass::Status,
            format!("status {code}, expected {}", e.expect_status),
        );
        failure.snippet = snippet(&start);
        return Err(failure);
    }
    let body = read_body(response.body_mut(), BODY_LIMIT)
        .await
        .map_err(|err| classify_http(&err))?;
    if let Some(needle) = &e.body_contains
        && !contains(&body, needle.as_bytes())
    {
        let mut failure = Failure::new(
            FailureClass::Body,
            format!(
                "the body ({} bytes read) does not contain \"{}\"",
                body.len(),
                shorten(needle)
            ),
        );
        failure.snippet = snippet(&body);
        return Err(failure);
    }
    Ok(())
}

/// The request of endpoint `e`: origin-form with a Host header for
/// HTTP/1.1, absolute (the `:authority`) for h2.
fn request(e: &Endpoint, h2: bool) -> Result<Request<Full<Bytes>>, Failure> {
    let bad = |err: String| {
        Failure::new(
            FailureClass::Http,
            format!("cannot build the request: {err}"),
        )
    };
    let url: &Url = &e.url;
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let target = if h2 {
        format!("{}://{authority}{path_and_query}", url.scheme())
    } else {
        path_and_query
    };
    let uri: Uri = target
        .parse()
        .map_err(|err: hyper::http::uri::InvalidUri| bad(err.to_string()))?;
    let body = e.body.clone().map(Bytes::from).unwrap_or_default();
    let mut request = Request::builder()
        .method(e.method.clone())
        .uri(uri)
        .body(Full::new(body))
        .map_err(|err| bad(err.to_string()))?;
    let headers = request.headers_mut();
    for (name, value) in &e.headers {
        headers.append(name.clone(), value.clone());
    }
    if !h2 && !headers.contains_key(HOST) {
        headers.insert(
            HOST,
            HeaderValue::from_str(&authority).map_err(|err| bad(err.to_string()))?,
        );
    }
    if !headers.contains_key(USER_AGENT_HEADER) {
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
    }
    if e.body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(request)
}

/// At most `limit` bytes of `body`; never reads past them.
async fn read_body(body: &mut Incoming, limit: usize) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(err)) => return Err(err),
            None => break,
        }
    }
    Ok(out)
}

/// The start of a body for a log line: at most [`SNIPPET_CHARS`]
/// characters, invalid UTF-8 replaced, whitespace runs and control
/// characters folded to one space; `None` when nothing is left.
pub fn snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_CHARS * 4)]);
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if count + usize::from(space) + 1 > SNIPPET_CHARS {
            out.push('…');
            return Some(out);
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// Days from `now` to `not_after` (epoch seconds), to the hundredth.
pub fn days_between(now: i64, not_after: i64) -> f64 {
    ((not_after - now) as f64 / 86_400.0 * 100.0).floor() / 100.0
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

/// A connection that broke (reset, closed, refused) rather than answered wrongly.
fn is_broken(errors: &[&(dyn StdError + 'static)]) -> bool {
    errors.iter().any(|e| {
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
    })
}

/// A failed TLS handshake: the rustls error's class, or `connect` when the
/// connection broke during it.
fn classify_tls(err: &io::Error) -> Failure {
    let errors = chain(err);
    if let Some(tls) = errors
        .iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
    {
        return Failure::new(tls_class(tls), format!("TLS: {tls}"));
    }
    let class = if is_broken(&errors) {
        FailureClass::Connect
    } else {
        FailureClass::Tls
    };
    Failure::new(class, format!("TLS handshake: {err}"))
}

/// A failed HTTP exchange: `connect` when the connection broke or closed
/// before the answer, else `http` (not HTTP, or a protocol error).
pub fn classify_http(err: &hyper::Error) -> Failure {
    let errors = chain(err);
    let deepest = errors
        .last()
        .map_or_else(|| err.to_string(), |e| e.to_string());
    let class = if err.is_incomplete_message()
        || err.is_canceled()
        || err.is_closed()
        || is_broken(&errors)
    {
        FailureClass::Connect
    } else {
        FailureClass::Http
    };
    let message = if err.is_incomplete_message() {
        "connection closed before message completed".to_owned()
    } else if deepest == err.to_string() {
        deepest
    } else {
        format!("{err}: {deepest}")
    };
    Failure::new(class, message)
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
    fn snippets_are_short_single_line_text() {
        assert_eq!(
            snippet(b"  {\"error\":\n\t\"down\"}\r\n"),
            Some("{\"error\": \"down\"}".into())
        );
        assert_eq!(snippet(b" \n "), None);
        assert_eq!(snippet(b"ok\xff\x00x"), Some("ok\u{fffd} x".into()));
        let long = snippet(&[b'a'; 10_000]).unwrap();
        assert_eq!(long.chars().count(), SNIPPET_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    proptest::proptest! {
        #[test]
        fn a_snippet_is_bounded_and_has_no_control_characters(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            if let Some(s) = snippet(&body) {
                proptest::prop_assert!(s.chars().count() <= SNIPPET_CHARS + 1);
                proptest::prop_assert!(!s.chars().any(char::is_control));
                proptest::prop_assert!(!s.starts_with(' ') && !s.ends_with(' '));
            }
        }
    }

    #[test]
    fn class_names_are_stable() {
        assert_eq!(FailureClass::Slow.as_str(), "slow");
        let json = serde_json::to_value(FailureClass::TlsWrongName).unwrap();
        assert_eq!(json, "tls_wrong_name");
        assert_eq!(FailureClass::TlsWrongName.as_str(), "tls_wrong_name");
    }
}

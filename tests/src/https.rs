//! HTTP and HTTPS test servers on loopback, and a test CA (rcgen) for their
//! certificates, as health-canary probes them.
//!
//! A [`TestServer`] listens on `127.0.0.1:0` and behaves as its
//! [`Behaviour`] says (answer, answer late, hang after accept, stream an
//! endless body, a sequence of statuses); a test changes the behaviour while
//! it runs and reads back what each request carried (method, path, Host,
//! SNI, headers, body, HTTP version, whether TLS was resumed), and can
//! require a header value (a credential a test rotates). HTTPS servers
//! offer h2 and http/1.1 by ALPN, issue session tickets (so a client that
//! resumed would skip certificate checks), and can swap their certificate
//! while they run ([`TestServer::set_cert`]) with the same server context.
//! Dropping the server closes the port, so connections are then refused.
//!
//! [`Unanswering`] is an address whose TCP handshake never completes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::HandshakeKind;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::RwLock;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::moto::BoxError;

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate authority made for one test run.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its own parameters and key (PKCS#8), to have it signed again by
    /// another CA ([`TestCa::cross_signed_by`]).
    params: CertificateParams,
    key: PrivatePkcs8KeyDer<'static>,
    pem: String,
    /// An intermediate CA's certificates up to (not including) the root,
    /// sent with every certificate it issues.
    chain: Vec<CertificateDer<'static>>,
}

/// A server certificate (chain and key) issued by a [`TestCa`].
#[derive(Debug)]
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServerCert {
    /// The leaf certificate (DER).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

/// Sets the validity of `params` (rcgen takes `time` dates: counted from the epoch).
fn set_validity(
    params: &mut CertificateParams,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(), BoxError> {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + not_before.duration_since(UNIX_EPOCH)?;
    params.not_after = epoch + not_after.duration_since(UNIX_EPOCH)?;
    Ok(())
}

/// The parameters of a CA certificate named `name`.
fn ca_params(
    name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, BoxError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, not_before, not_after)?;
    Ok(params)
}

impl TestCa {
    /// A self-signed CA named `name`.
    pub fn new(name: &str) -> Result<TestCa, BoxError> {
        let now = SystemTime::now();
        let params = ca_params(name, now - 2 * 365 * DAY, now + 10 * 365 * DAY)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            pem: cert.pem(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            issuer: Issuer::new(params.clone(), key),
            params,
            chain: Vec::new(),
        })
    }

    /// An intermediate CA named `name`, signed by this one, valid since
    /// yesterday for `days` more days; what it issues carries its chain.
    pub fn intermediate(&self, name: &str, days: u64) -> Result<TestCa, BoxError> {
        let now = SystemTime::now();
        let params = ca_params(name, now - DAY, now + Duration::from_secs(days * 86_400))?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(TestCa {
            pem: cert.pem(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            issuer: Issuer::new(params.clone(), key),
            params,
            chain,
        })
    }

    /// This CA's certificate (same name, same key) signed by `other`,
    /// valid from `not_before` to `not_after`: a cross-signed copy, as
    /// "ISRG Root X1 cross-signed by DST Root CA X3" was, which a server
    /// may send after its chain.
    pub fn cross_signed_by(
        &self,
        other: &TestCa,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertificateDer<'static>, BoxError> {
        let mut params = self.params.clone();
        set_validity(&mut params, not_before, not_after)?;
        let key = KeyPair::try_from(self.key.secret_pkcs8_der())?;
        Ok(params.signed_by(&key, &other.issuer)?.der().clone())
    }

    /// The CA certificate as PEM (what `ca_bundle` takes).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names`, valid from `not_before` to `not_after`.
    pub fn issue(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<ServerCert, BoxError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        set_validity(&mut params, not_before, not_after)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(ServerCert {
            chain,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// A server certificate for `names`, valid since yesterday for `days` more days.
    pub fn issue_valid(&self, names: &[&str], days: u64) -> Result<ServerCert, BoxError> {
        let now = SystemTime::now();
        self.issue(names, now - DAY, now + Duration::from_secs(days * 86_400))
    }

    /// A server certificate for `names` that expired yesterday.
    pub fn issue_expired(&self, names: &[&str]) -> Result<ServerCert, BoxError> {
        let now = SystemTime::now();
        self.issue(names, now - 30 * DAY, now - DAY)
    }
}

/// A response the server gives.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
    /// A `Location` header (for redirects).
    pub location: Option<String>,
}

/// How a [`TestServer`] treats connections.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer every request so.
    Reply(Reply),
    /// The n-th request (from 0) gets status `statuses[n % len]`, body `ok`.
    Statuses(Vec<u16>),
    /// Accept the TCP connection, then never read, handshake or answer.
    Hang,
    /// Status 200 and a body that never ends.
    Endless,
    /// 200 `healthy` when the request's header `name` is `value`, else 401
    /// with a body that echoes what came ("invalid <name>: <value>"), as
    /// some servers do: a credential check whose key a test rotates.
    RequireHeader { name: String, value: String },
}

impl Behaviour {
    /// 200 with body `healthy`.
    pub fn ok() -> Self {
        Self::status(200, "healthy")
    }

    pub fn status(status: u16, body: &str) -> Self {
        Behaviour::Reply(Reply {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
            location: None,
        })
    }

    /// 200 `healthy`, after `delay`.
    pub fn slow(delay: Duration) -> Self {
        Behaviour::Reply(Reply {
            status: 200,
            body: "healthy".to_owned(),
            delay,
            location: None,
        })
    }

    /// See [`Behaviour::RequireHeader`].
    pub fn require_header(name: &str, value: &str) -> Self {
        Behaviour::RequireHeader {
            name: name.to_ascii_lowercase(),
            value: value.to_owned(),
        }
    }

    /// A redirect (302) to `location`.
    pub fn redirect(location: &str) -> Self {
        Behaviour::Reply(Reply {
            status: 302,
            body: String::new(),
            delay: Duration::ZERO,
            location: Some(location.to_owned()),
        })
    }
}

/// What one request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// The query string, when the request target had one.
    pub query: Option<String>,
    pub host: Option<String>,
    /// The TLS server name the client sent (https only).
    pub sni: Option<String>,
    /// Lowercase names.
    pub headers: BTreeMap<String, String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The request body (lossy UTF-8).
    pub body: String,
    /// https: whether the TLS session was resumed (no certificate sent).
    pub resumed: Option<bool>,
}

/// The certificate an HTTPS server presents, replaceable while it runs.
#[derive(Debug)]
struct SwappableCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

fn certified_key(cert: &ServerCert) -> Result<Arc<CertifiedKey>, BoxError> {
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        cert.key.clone_key(),
    ))?;
    Ok(Arc::new(CertifiedKey::new(cert.chain.clone(), key)))
}

#[derive(Debug)]
struct ServerState {
    behaviour: Behaviour,
    requests: Vec<SeenRequest>,
    connections: usize,
}

/// An HTTP or HTTPS server on `127.0.0.1`; stops (port closed) when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    tasks: JoinSet<()>,
    cert: Option<Arc<SwappableCert>>,
}

fn lock(state: &Mutex<ServerState>) -> MutexGuard<'_, ServerState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl TestServer {
    /// A plain HTTP server.
    pub async fn http(behaviour: Behaviour) -> Result<TestServer, BoxError> {
        Self::start(behaviour, None).await
    }

    /// An HTTPS server presenting `cert`, offering h2 and http/1.1, with
    /// session tickets and a session cache (resumption on).
    pub async fn https(behaviour: Behaviour, cert: &ServerCert) -> Result<TestServer, BoxError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let swappable = Arc::new(SwappableCert(RwLock::new(certified_key(cert)?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&swappable) as Arc<dyn ResolvesServerCert>);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut server = Self::start(behaviour, Some(TlsAcceptor::from(Arc::new(config)))).await?;
        server.cert = Some(swappable);
        Ok(server)
    }

    async fn start(behaviour: Behaviour, tls: Option<TlsAcceptor>) -> Result<TestServer, BoxError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(ServerState {
            behaviour,
            requests: Vec::new(),
            connections: 0,
        }));
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, tls, Arc::clone(&state)));
        Ok(TestServer {
            addr,
            state,
            tasks,
            cert: None,
        })
    }

    /// Presents `cert` from the next handshake on; the TLS context (and so
    /// its session tickets) stays the same.
    pub fn set_cert(&self, cert: &ServerCert) -> Result<(), BoxError> {
        let swappable = self.cert.as_ref().ok_or("set_cert: not an HTTPS server")?;
        *swappable.0.write().unwrap_or_else(|p| p.into_inner()) = certified_key(cert)?;
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes the behaviour for the connections and requests from now on.
    pub fn set(&self, behaviour: Behaviour) {
        lock(&self.state).behaviour = behaviour;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.state).requests.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// Stops serving and closes the port and every open connection.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A loopback address whose TCP handshake never completes: a listener
/// with a backlog of 0 that never accepts, its accept queue filled by
/// connections held here, so that Linux drops every further SYN (as a
/// dead or blackholed node behaves). Created by hand: nothing else in the
/// tests blackholes an address. Dropping it closes the listener.
pub struct Unanswering {
    addr: SocketAddr,
    _listener: TcpListener,
    _held: Vec<TcpStream>,
}

impl Unanswering {
    /// On `addr` (a loopback IPv4 address; port 0 picks one).
    pub async fn start_on(addr: SocketAddr) -> Result<Unanswering, BoxError> {
        if !addr.ip().is_loopback() {
            return Err(format!("{addr} is not a loopback address").into());
        }
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(addr)?;
        let listener = socket.listen(0)?;
        let addr = listener.local_addr()?;
        let mut held = Vec::new();
        // Fill the accept queue: the first connection whose handshake does
        // not complete shows it is full (its SYN was dropped).
        for _ in 0..64 {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => held.push(stream),
                Ok(Err(e)) => return Err(format!("filling the backlog of {addr}: {e}").into()),
                Err(_) => {
                    return Ok(Unanswering {
                        addr,
                        _listener: listener,
                        _held: held,
                    });
                }
            }
        }
        Err(format!("the backlog of {addr} never filled after 64 connections").into())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A loopback address where nothing listens (connections are refused).
pub fn refused_addr() -> Result<SocketAddr, BoxError> {
    let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<Mutex<ServerState>>,
) {
    // Connection tasks live in this set: aborting the loop closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let hang = {
                    let mut s = lock(&state);
                    s.connections += 1;
                    matches!(s.behaviour, Behaviour::Hang)
                };
                connections.spawn(connection(stream, hang, tls.clone(), Arc::clone(&state)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(
    stream: TcpStream,
    hang: bool,
    tls: Option<TlsAcceptor>,
    state: Arc<Mutex<ServerState>>,
) {
    if hang {
        // Hold the connection open without a byte, until the server stops.
        let _held = stream;
        return std::future::pending::<()>().await;
    }
    match tls {
        None => serve(stream, None, state).await,
        Some(acceptor) => {
            // A failed handshake (the client rejected the certificate) ends here.
            if let Ok(tls_stream) = acceptor.accept(stream).await {
                let conn = tls_stream.get_ref().1;
                let tls = TlsSeen {
                    sni: conn.server_name().map(str::to_owned),
                    resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
                };
                serve(tls_stream, Some(tls), state).await;
            }
        }
    }
}

/// What the TLS handshake of a connection showed.
#[derive(Debug, Clone)]
struct TlsSeen {
    sni: Option<String>,
    resumed: bool,
}

async fn serve<S>(io: S, tls: Option<TlsSeen>, state: Arc<Mutex<ServerState>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let state = Arc::clone(&state);
        let tls = tls.clone();
        async move { Ok::<_, Infallible>(respond(request, tls, &state).await) }
    });
    // HTTP/1.1 or h2 (as ALPN settled, or by the preface on plain HTTP).
    // Errors are the client going away, which probes do on purpose.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

type Body = BoxBody<Bytes, Infallible>;

async fn respond(
    request: Request<Incoming>,
    tls: Option<TlsSeen>,
    state: &Mutex<ServerState>,
) -> Response<Body> {
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let version = format!("{:?}", request.version());
    // h2 carries the host as the :authority, HTTP/1.1 as the Host header.
    let host = headers
        .get("host")
        .cloned()
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let body = match http_body_util::Limited::new(request.into_body(), 1024 * 1024)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(e) => format!("(body not read: {e})"),
    };
    let seen = SeenRequest {
        method,
        path,
        query,
        host,
        sni: tls.as_ref().and_then(|t| t.sni.clone()),
        headers,
        version,
        body,
        resumed: tls.map(|t| t.resumed),
    };
    let behaviour = {
        let mut s = lock(state);
        let n = s.requests.len();
        let sent = |name: &str| seen.headers.get(name).cloned().unwrap_or_default();
        let behaviour = match &s.behaviour {
            Behaviour::Statuses(list) if !list.is_empty() => {
                Behaviour::status(list[n % list.len()], "ok")
            }
            Behaviour::RequireHeader { name, value } if sent(name) == *value => Behaviour::ok(),
            Behaviour::RequireHeader { name, .. } => {
                Behaviour::status(401, &format!("invalid {name}: {}", sent(name)))
            }
            other => other.clone(),
        };
        s.requests.push(seen);
        behaviour
    };
    match behaviour {
        Behaviour::Reply(reply) => {
            tokio::time::sleep(reply.delay).await;
            let mut response = Response::new(Full::new(Bytes::from(reply.body)).boxed());
            *response.status_mut() =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(location) = reply.location
                && let Ok(value) = location.parse()
            {
                response.headers_mut().insert("location", value);
            }
            response
        }
        Behaviour::Endless => {
            let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
            let body = StreamBody::new(stream::repeat_with(move || {
                Ok::<_, Infallible>(Frame::data(chunk.clone()))
            }));
            Response::new(body.boxed())
        }
        // Reached only when the behaviour changed after the connection was accepted.
        Behaviour::Hang | Behaviour::Statuses(_) | Behaviour::RequireHeader { .. } => {
            std::future::pending::<()>().await;
            Response::new(Full::new(Bytes::new()).boxed())
        }
    }
}

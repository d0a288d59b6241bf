//! HTTP and HTTPS test servers on loopback, and a test CA (rcgen) for their
//! certificates, as health-canary probes them.
//!
//! A [`TestServer`] listens on `127.0.0.1:0` and behaves as its
//! [`Behaviour`] says (answer, answer late, hang after accept, stream an
//! endless body, a sequence of statuses); a test changes the behaviour while
//! it runs and reads back what each request carried (method, path, Host,
//! SNI, headers). Dropping the server closes the port, so connections are
//! then refused.

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
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::moto::BoxError;

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate authority made for one test run.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
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

impl TestCa {
    /// A self-signed CA named `name`.
    pub fn new(name: &str) -> Result<TestCa, BoxError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        set_validity(&mut params, now - 2 * 365 * DAY, now + 10 * 365 * DAY)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
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
        Ok(ServerCert {
            chain: vec![cert.der().clone()],
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
    pub host: Option<String>,
    /// The TLS server name the client sent (https only).
    pub sni: Option<String>,
    /// Lowercase names.
    pub headers: BTreeMap<String, String>,
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
}

fn lock(state: &Mutex<ServerState>) -> MutexGuard<'_, ServerState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl TestServer {
    /// A plain HTTP server.
    pub async fn http(behaviour: Behaviour) -> Result<TestServer, BoxError> {
        Self::start(behaviour, None).await
    }

    /// An HTTPS server presenting `cert`.
    pub async fn https(behaviour: Behaviour, cert: &ServerCert) -> Result<TestServer, BoxError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                cert.chain.clone(),
                PrivateKeyDer::Pkcs8(cert.key.clone_key()),
            )?;
        Self::start(behaviour, Some(TlsAcceptor::from(Arc::new(config)))).await
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
        Ok(TestServer { addr, state, tasks })
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
                let sni = tls_stream.get_ref().1.server_name().map(str::to_owned);
                serve(tls_stream, sni, state).await;
            }
        }
    }
}

async fn serve<S>(io: S, sni: Option<String>, state: Arc<Mutex<ServerState>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let state = Arc::clone(&state);
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(respond(request, sni, &state).await) }
    });
    // Errors are the client going away, which probes do on purpose.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

type Body = BoxBody<Bytes, Infallible>;

async fn respond(
    request: Request<Incoming>,
    sni: Option<String>,
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
    let seen = SeenRequest {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        host: headers.get("host").cloned(),
        sni,
        headers,
    };
    let behaviour = {
        let mut s = lock(state);
        let n = s.requests.len();
        s.requests.push(seen);
        match &s.behaviour {
            Behaviour::Statuses(list) if !list.is_empty() => {
                Behaviour::status(list[n % list.len()], "ok")
            }
            other => other.clone(),
        }
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
        Behaviour::Hang | Behaviour::Statuses(_) => {
            std::future::pending::<()>().await;
            Response::new(Full::new(Bytes::new()).boxed())
        }
    }
}

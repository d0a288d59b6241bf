//! An authoritative DNS server on loopback (hickory-server) whose answers a test changes
//! while it runs.
//!
//! Every name the server knows is set with [`DnsServer::set`]; anything else gets NXDOMAIN.
//! Records have TTL 60, carry the query name, and only the requested type is answered.
//! The server counts the queries it receives per name and record type, so tests can check
//! that the code under test really asked (no caching) and how often.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

/// TTL of every record the server answers.
const TTL: u32 = 60;
/// How often [`DnsServer::start`] tries to find a port free for both UDP and TCP.
const BIND_ATTEMPTS: usize = 10;
/// An idle TCP connection is closed after this long.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 64;

/// What the server answers for one name.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Every address, every time (A queries get the IPv4 ones, AAAA queries the IPv6 ones).
    Addrs(Vec<IpAddr>),
    /// Like an ELB name with many nodes: each query answers at most `per_answer` addresses
    /// of the requested family, a different window each time (round robin through the list,
    /// advancing by `per_answer` per query of that name and type), so repeated queries see
    /// them all.
    Rotate {
        /// The addresses of both families, in rotation order.
        addrs: Vec<IpAddr>,
        /// The most addresses in one answer.
        per_answer: usize,
    },
    /// Response code SERVFAIL.
    ServFail,
    /// These IPv4 addresses to A queries, SERVFAIL to AAAA queries: a
    /// partial answer.
    V4ThenServFail(Vec<IpAddr>),
    /// Response code NXDOMAIN.
    NxDomain,
    /// NOERROR with an empty answer section.
    Empty,
    /// Never answer (the query is dropped, over UDP and TCP), so the client times out.
    Timeout,
}

/// A running DNS server on UDP and TCP of one address; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Server<Handler>,
}

impl DnsServer {
    /// Binds UDP and TCP on the same port of 127.0.0.1 (chosen by the OS) and serves until
    /// dropped.
    pub async fn start() -> io::Result<DnsServer> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds UDP and TCP on `addr` and serves until dropped. With port 0 the OS picks a port
    /// for UDP, and binding TCP on that port is retried with a new port a few times if taken.
    pub async fn start_on(addr: SocketAddr) -> io::Result<DnsServer> {
        let mut attempt = 1;
        loop {
            let udp = UdpSocket::bind(addr).await?;
            let local = udp.local_addr()?;
            match TcpListener::bind(local).await {
                Ok(tcp) => return Ok(Self::serve(local, udp, tcp)),
                Err(_) if addr.port() == 0 && attempt < BIND_ATTEMPTS => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    fn serve(addr: SocketAddr, udp: UdpSocket, tcp: TcpListener) -> DnsServer {
        let state = Arc::new(Mutex::new(State::default()));
        let mut server = Server::new(Handler {
            state: state.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        DnsServer {
            addr,
            state,
            server,
        }
    }

    /// The address (UDP and TCP) the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets or replaces the answer for a name (case-insensitive, with or without trailing
    /// dot). A `Rotate` starts again at the first address.
    pub fn set(&self, name: &str, answer: Answer) {
        let key = key(name);
        let mut state = lock(&self.state);
        state
            .cursors
            .retain(|(cursor_name, _), _| *cursor_name != key);
        state.answers.insert(key, answer);
    }

    /// Removes a name; from now on it gets NXDOMAIN.
    pub fn remove(&self, name: &str) {
        let key = key(name);
        let mut state = lock(&self.state);
        state
            .cursors
            .retain(|(cursor_name, _), _| *cursor_name != key);
        state.answers.remove(&key);
    }

    /// Number of queries received for this name (any type, UDP and TCP) since start.
    pub fn queries(&self, name: &str) -> usize {
        let key = key(name);
        let state = lock(&self.state);
        state
            .queries
            .iter()
            .filter(|((query_name, _), _)| *query_name == key)
            .map(|(_, count)| count)
            .sum()
    }

    /// Number of queries received for this name and record type (`"A"`, `"AAAA"`, ...).
    pub fn queries_of(&self, name: &str, record_type: &str) -> usize {
        let entry = (key(name), record_type.to_ascii_uppercase());
        lock(&self.state).queries.get(&entry).copied().unwrap_or(0)
    }

    /// Stops serving and waits until the sockets are closed, so the port no longer answers.
    pub async fn stop(mut self) {
        // Errors only report how the serving tasks ended; they are stopped either way.
        let _ = self.server.shutdown_gracefully().await;
    }
}

impl Drop for DnsServer {
    /// Cancels the serving tasks; dropping `server` then aborts them. Neither needs a runtime.
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

/// Names (lowercase, no trailing dot) with their answers, query counts and rotation cursors.
#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    queries: HashMap<(String, String), usize>,
    cursors: HashMap<(String, RecordType), usize>,
}

impl State {
    /// Counts a query and decides its reply.
    fn reply(&mut self, name: String, record_type: RecordType) -> Reply {
        *self
            .queries
            .entry((name.clone(), record_type.to_string()))
            .or_default() += 1;
        let family = |addrs: &[IpAddr]| -> Vec<IpAddr> {
            let wanted = |ip: &IpAddr| match record_type {
                RecordType::A => ip.is_ipv4(),
                RecordType::AAAA => ip.is_ipv6(),
                _ => false,
            };
            addrs.iter().copied().filter(wanted).collect()
        };
        match self.answers.get(&name) {
            None | Some(Answer::NxDomain) => Reply::Code(ResponseCode::NXDomain),
            Some(Answer::Addrs(addrs)) => Reply::Addrs(family(addrs)),
            Some(Answer::Rotate { addrs, per_answer }) => {
                let addrs = family(addrs);
                if addrs.is_empty() {
                    return Reply::Addrs(addrs);
                }
                let cursor = self.cursors.entry((name, record_type)).or_default();
                let start = *cursor % addrs.len();
                *cursor = (start + per_answer) % addrs.len();
                let window = addrs.iter().cycle().skip(start);
                Reply::Addrs(window.take(addrs.len().min(*per_answer)).copied().collect())
            }
            Some(Answer::ServFail) => Reply::Code(ResponseCode::ServFail),
            Some(Answer::V4ThenServFail(addrs)) => match record_type {
                RecordType::AAAA => Reply::Code(ResponseCode::ServFail),
                _ => Reply::Addrs(family(addrs)),
            },
            Some(Answer::Empty) => Reply::Addrs(Vec::new()),
            Some(Answer::Timeout) => Reply::Drop,
        }
    }
}

/// What to send back for one query.
enum Reply {
    /// NOERROR with these addresses (possibly none) as answers.
    Addrs(Vec<IpAddr>),
    /// This response code and no records.
    Code(ResponseCode),
    /// No response at all.
    Drop,
}

/// The hickory request handler: answers from the shared [`State`].
struct Handler {
    state: Arc<Mutex<State>>,
}

impl Handler {
    async fn handle<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let edns = request.edns.as_ref().map(|edns| {
            let mut reply = Edns::new();
            reply.set_max_payload(edns.max_payload().max(512));
            reply
        });
        let records = match request.request_info() {
            Err(_) => {
                metadata.response_code = ResponseCode::FormErr;
                Vec::new()
            }
            Ok(_) if request.metadata.op_code != OpCode::Query => {
                metadata.response_code = ResponseCode::NotImp;
                Vec::new()
            }
            Ok(info) => {
                let query = info.query;
                let name = key(&query.name().to_string());
                let reply = lock(&self.state).reply(name, query.query_type());
                match reply {
                    Reply::Drop => return unanswered(metadata),
                    Reply::Code(code) => {
                        metadata.response_code = code;
                        Vec::new()
                    }
                    Reply::Addrs(addrs) => {
                        let name = query.original().name();
                        let record = |ip| Record::from_rdata(name.clone(), TTL, RData::from(ip));
                        addrs.into_iter().map(record).collect()
                    }
                }
            }
        };
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            &records,
            [],
            [],
            [],
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => unanswered(metadata),
        }
    }
}

impl RequestHandler for Handler {
    // hickory declares this trait with `#[async_trait]`; this is that signature, written out
    // because this crate does not depend on `async-trait`.
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.handle(request, response_handle))
    }
}

/// The `ResponseInfo` hickory wants back for a query that got no response.
fn unanswered(metadata: Metadata) -> ResponseInfo {
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// The key a name is stored under: lowercase, without trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Locks the state; a panic elsewhere while holding the lock leaves it usable.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

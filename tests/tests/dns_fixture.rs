//! Self-test of the DNS fixture, with hickory-resolver as the client, configured as the code
//! under test uses it: only the fixture as name server, no cache, 300 ms timeout, one retry.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::{Resolver, TokioResolver};
use tether_tests::dns::{Answer, DnsServer};

const TIMEOUT: Duration = Duration::from_millis(300);

/// A resolver that asks only `server`, over the given connections (UDP and/or TCP).
fn resolver_with(server: &DnsServer, connections: Vec<ConnectionConfig>) -> TokioResolver {
    let mut name_server = NameServerConfig::new(server.addr().ip(), true, connections);
    for connection in &mut name_server.connections {
        connection.port = server.addr().port();
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.positive_max_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::ZERO);
    opts.timeout = TIMEOUT;
    opts.attempts = 1;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    let config = ResolverConfig::from_name_servers(vec![name_server]);
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("resolver")
}

/// A resolver over UDP with TCP fallback, like the code under test.
fn resolver(server: &DnsServer) -> TokioResolver {
    resolver_with(
        server,
        vec![ConnectionConfig::udp(), ConnectionConfig::tcp()],
    )
}

async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    record_type: RecordType,
) -> Result<Vec<IpAddr>, NetError> {
    let lookup = resolver.lookup(name, record_type).await?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|record| record.data.ip_addr())
        .collect())
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().expect("ip")).collect()
}

fn set_of(ips: &[IpAddr]) -> BTreeSet<IpAddr> {
    ips.iter().copied().collect()
}

/// The twelve addresses `10.0.0.1` .. `10.0.0.12`.
fn twelve() -> Vec<IpAddr> {
    (1..=12).map(|i| IpAddr::from([10, 0, 0, i])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addrs_answers_each_family_for_its_type() {
    let server = DnsServer::start().await.expect("start");
    let all = ips(&["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"]);
    server.set("Web.Example.Test.", Answer::Addrs(all.clone()));
    server.set("v6only.example.test", Answer::Addrs(ips(&["2001:db8::9"])));
    let resolver = resolver(&server);

    let v4 = lookup(&resolver, "web.example.test.", RecordType::A).await;
    assert_eq!(set_of(&v4.expect("A")), set_of(&all[..2]));
    let v6 = lookup(&resolver, "web.example.test", RecordType::AAAA).await;
    assert_eq!(set_of(&v6.expect("AAAA")), set_of(&all[2..]));
    assert_eq!(server.queries_of("web.example.test", "A"), 1);
    assert_eq!(server.queries_of("WEB.example.test.", "aaaa"), 1);
    assert_eq!(server.queries("web.example.test"), 2);

    // An A query for a name with only IPv6 addresses: NOERROR, no records.
    let error = lookup(&resolver, "v6only.example.test", RecordType::A).await;
    assert!(error.expect_err("no A records").is_no_records_found());
    let mx = lookup(&resolver, "web.example.test", RecordType::MX).await;
    assert!(mx.expect_err("no MX records").is_no_records_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_answers_a_window_and_covers_all_addresses() {
    let server = DnsServer::start().await.expect("start");
    server.set(
        "elb.example.test",
        Answer::Rotate {
            addrs: twelve(),
            per_answer: 8,
        },
    );
    let resolver = resolver(&server);

    let first = lookup(&resolver, "elb.example.test", RecordType::A).await;
    let second = lookup(&resolver, "elb.example.test", RecordType::A).await;
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert_eq!(first, twelve()[..8]);
    assert_eq!(second, [&twelve()[8..], &twelve()[..4]].concat());
    let seen: BTreeSet<IpAddr> = first.iter().chain(&second).copied().collect();
    assert_eq!(seen, set_of(&twelve()));
    assert_eq!(server.queries_of("elb.example.test", "A"), 2);
    assert_eq!(server.queries_of("elb.example.test", "AAAA"), 0);
}

/// hickory-resolver 0.26 shares an in-flight query among identical concurrent lookups
/// (`NameServerPool` keeps the active requests), even with the cache disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_lookups_share_in_flight_queries() {
    let server = DnsServer::start().await.expect("start");
    server.set("slow.example.test", Answer::Timeout);
    server.set(
        "elb.example.test",
        Answer::Rotate {
            addrs: twelve(),
            per_answer: 3,
        },
    );
    let resolver = resolver(&server);

    // While a query is in flight (here: until it times out), identical lookups wait for it.
    let slow = "slow.example.test";
    let slow_lookups = tokio::join!(
        lookup(&resolver, slow, RecordType::A),
        lookup(&resolver, slow, RecordType::A),
        lookup(&resolver, slow, RecordType::A),
        lookup(&resolver, slow, RecordType::A),
    );
    for result in <[_; 4]>::from(slow_lookups) {
        assert!(matches!(result, Err(NetError::Timeout)), "{result:?}");
    }
    // One shared query and one shared retry, where four separate lookups would send eight.
    assert_eq!(server.queries(slow), 2);

    // A quick answer is shared only by the lookups that started before it arrived: usually
    // all four, but that depends on scheduling. Each query answers a different window.
    let elb = "elb.example.test";
    let elb_lookups = tokio::join!(
        lookup(&resolver, elb, RecordType::A),
        lookup(&resolver, elb, RecordType::A),
        lookup(&resolver, elb, RecordType::A),
        lookup(&resolver, elb, RecordType::A),
    );
    let mut windows = BTreeSet::new();
    for result in <[_; 4]>::from(elb_lookups) {
        let window = result.expect("lookup");
        assert_eq!(window.len(), 3);
        windows.insert(window);
    }
    println!("4 concurrent lookups, {} queries", server.queries(elb));
    assert_eq!(server.queries_of(elb, "A"), windows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_map_to_resolver_errors() {
    let server = DnsServer::start().await.expect("start");
    server.set("servfail.example.test", Answer::ServFail);
    server.set("nxdomain.example.test", Answer::NxDomain);
    server.set("empty.example.test", Answer::Empty);
    let resolver = resolver(&server);

    // SERVFAIL is retried (`attempts` counts retries), negative answers are not.
    for (name, expected, queries) in [
        ("servfail.example.test", None, 2),
        ("nxdomain.example.test", Some(ResponseCode::NXDomain), 1),
        ("unknown.example.test", Some(ResponseCode::NXDomain), 1),
        ("empty.example.test", Some(ResponseCode::NoError), 1),
    ] {
        let error = lookup(&resolver, name, RecordType::A)
            .await
            .expect_err(name);
        println!("{name}: {error:?}");
        match (&error, expected) {
            (NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)), None) => {}
            (
                NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })),
                Some(expected),
            ) if *response_code == expected => {}
            _ => panic!("{name}: unexpected error {error:?}"),
        }
        assert_eq!(server.queries(name), queries, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_fails_quickly_and_other_names_still_answer() {
    let server = DnsServer::start().await.expect("start");
    server.set("slow.example.test", Answer::Timeout);
    server.set("fast.example.test", Answer::Addrs(ips(&["192.0.2.7"])));
    let resolver = resolver(&server);

    let started = Instant::now();
    let error = lookup(&resolver, "slow.example.test", RecordType::A).await;
    let elapsed = started.elapsed();
    let error = error.expect_err("timeout");
    println!("timeout after {elapsed:?}: {error:?}");
    assert!(matches!(error, NetError::Timeout), "{error:?}");
    // `attempts = 1` is one retry: two queries, each given `TIMEOUT`.
    assert!(elapsed >= 2 * TIMEOUT && elapsed < Duration::from_secs(1));
    assert_eq!(server.queries("slow.example.test"), 2);

    let (slow, fast) = tokio::join!(
        lookup(&resolver, "slow.example.test", RecordType::A),
        lookup(&resolver, "fast.example.test", RecordType::A),
    );
    assert!(matches!(slow, Err(NetError::Timeout)), "{slow:?}");
    assert_eq!(fast.expect("fast"), ips(&["192.0.2.7"]));

    // Over TCP a dropped query does not hold up the next one on the same connection.
    let tcp = resolver_with(&server, vec![ConnectionConfig::tcp()]);
    let (slow, fast) = tokio::join!(
        lookup(&tcp, "slow.example.test", RecordType::A),
        lookup(&tcp, "fast.example.test", RecordType::A),
    );
    assert!(matches!(slow, Err(NetError::Timeout)), "{slow:?}");
    assert_eq!(fast.expect("fast over TCP"), ips(&["192.0.2.7"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_query_is_answered() {
    let server = DnsServer::start().await.expect("start");
    server.set("tcp.example.test", Answer::Addrs(ips(&["192.0.2.8"])));
    let resolver = resolver_with(&server, vec![ConnectionConfig::tcp()]);

    let answer = lookup(&resolver, "tcp.example.test", RecordType::A).await;
    assert_eq!(answer.expect("A over TCP"), ips(&["192.0.2.8"]));
    assert_eq!(server.queries_of("tcp.example.test", "A"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_no_longer_answers() {
    let server = DnsServer::start().await.expect("start");
    server.set("gone.example.test", Answer::Addrs(ips(&["192.0.2.9"])));
    let udp_resolver = resolver(&server);
    let tcp_resolver = resolver_with(&server, vec![ConnectionConfig::tcp()]);
    let answer = lookup(&udp_resolver, "gone.example.test", RecordType::A).await;
    assert_eq!(answer.expect("before stop"), ips(&["192.0.2.9"]));

    let addr = server.addr();
    server.stop().await;
    let udp = lookup(&udp_resolver, "gone.example.test", RecordType::A).await;
    let udp = udp.expect_err("UDP after stop");
    println!("UDP after stop: {udp:?}");
    assert!(matches!(udp, NetError::Timeout), "{udp:?}");
    let tcp = lookup(&tcp_resolver, "gone.example.test", RecordType::A).await;
    let tcp = tcp.expect_err("TCP after stop");
    println!("TCP after stop: {tcp:?}");
    // The refused connection (`Io`) is reported as `NoConnections`: the name server pool keeps
    // its initial `NoConnections` over a later `Io` error (`most_specific`), and it is not retried.
    assert!(matches!(tcp, NetError::NoConnections), "{tcp:?}");

    // Both sockets are closed: the port can be bound again right away.
    let again = DnsServer::start_on(addr)
        .await
        .expect("bind the same port again");
    assert_eq!(again.addr(), addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_replaces_and_remove_deletes_an_answer() {
    let server = DnsServer::start().await.expect("start");
    server.set("swap.example.test", Answer::Addrs(ips(&["192.0.2.10"])));
    let resolver = resolver(&server);

    let before = lookup(&resolver, "swap.example.test", RecordType::A).await;
    assert_eq!(before.expect("before"), ips(&["192.0.2.10"]));
    server.set("SWAP.example.test.", Answer::Addrs(ips(&["192.0.2.11"])));
    let after = lookup(&resolver, "swap.example.test", RecordType::A).await;
    assert_eq!(after.expect("after"), ips(&["192.0.2.11"]));

    server.remove("swap.example.test");
    let removed = lookup(&resolver, "swap.example.test", RecordType::A).await;
    match removed.expect_err("removed") {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            assert_eq!(no_records.response_code, ResponseCode::NXDomain)
        }
        error => panic!("unexpected error {error:?}"),
    }
    assert_eq!(server.queries("swap.example.test"), 3);
}

/// Dropping the server inside or outside a runtime, even after the runtime is gone, does not
/// panic, and frees the port.
#[test]
fn drop_inside_and_outside_a_runtime() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let inside = runtime.block_on(DnsServer::start()).expect("start");
    let addr = inside.addr();
    runtime.block_on(async move { drop(inside) });
    let outside = runtime.block_on(DnsServer::start()).expect("start");
    drop(outside);
    let after_runtime = runtime.block_on(DnsServer::start()).expect("start");
    drop(runtime);
    drop(after_runtime);

    // The port of the first server is free again once its tasks have been aborted.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let rebound = runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        DnsServer::start_on(addr).await
    });
    assert_eq!(rebound.expect("rebind").addr(), addr);
}

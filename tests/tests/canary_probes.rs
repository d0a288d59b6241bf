//! How a probe behaves where a false failover would start: rotated
//! secrets, a self-probe, extra certificates, retries, a silent resolver,
//! what the logs show, and what `trust` trusts. The built binary under the
//! Runtime API emulator, moto (CloudWatch, Secrets Manager), the DNS server
//! fixture and HTTP(S) servers on loopback (`tether_tests::https`, whose
//! `RequireHeader` behaviour and cross-signed certificates are made for
//! these tests).

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::Statistic;
use serde_json::{Value, json};
use tether_tests::canary::{API, Setup, TIMEOUT, endpoint, https_url, ok_invoke, probe_lines};
use tether_tests::dns::Answer;
use tether_tests::https::{Behaviour, TestCa, TestServer};
use tether_tests::moto::BoxError;

type R = Result<(), BoxError>;

const DAY: Duration = Duration::from_secs(86_400);

async fn create_secret(s: &Setup, name: &str, value: &str) -> Result<(), BoxError> {
    aws_sdk_secretsmanager::Client::new(&s.moto.sdk_config().await)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await?;
    Ok(())
}

async fn put_secret(s: &Setup, name: &str, value: &str) -> Result<(), BoxError> {
    aws_sdk_secretsmanager::Client::new(&s.moto.sdk_config().await)
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await?;
    Ok(())
}

/// The values of header `name` the server saw, in order.
fn sent(server: &TestServer, name: &str) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| r.headers.get(name).cloned().unwrap_or_default())
        .collect()
}

/// The JSON log lines with this message.
fn lines_with(logs: &str, message: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

/// A secret is rotated (a new version in Secrets Manager) and the server
/// starts refusing the old value with 401: the GET probe reads the secret
/// again on that 401 and its retry succeeds with the new value; the POST
/// probe, which is never retried, fails once and succeeds at the next
/// invocation. No value is ever logged, nor the 401 page that echoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_read_again_on_the_first_401() -> R {
    let s = Setup::start().await?;
    let (old, new) = ("k-old-4711", "k-new-0815");
    create_secret(&s, "canary/api-key", old).await?;
    let ca = TestCa::new("tether test CA")?;
    let server = TestServer::https(
        Behaviour::require_header("x-api-key", old),
        &ca.issue_valid(&[API], 45)?,
    )
    .await?;
    let key = json!({"x-api-key": {"secret": "canary/api-key"}});
    let targets = json!([
        {"name": "get", "url": https_url(server.port()), "ca_bundle": ca.pem(), "headers": key},
        {"name": "post", "url": https_url(server.port()), "ca_bundle": ca.pem(), "headers": key, "method": "POST"},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    for name in ["get", "post"] {
        assert_eq!(endpoint(&out, name)?["outcomes"], json!(["ok"]), "{out}");
    }

    put_secret(&s, "canary/api-key", new).await?;
    server.set(Behaviour::require_header("x-api-key", new));
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let get = endpoint(&out, "get")?;
    assert_eq!(get["outcomes"], json!(["ok"]), "{out}\n{}", f.logs());
    assert_eq!(get["retried"], 1, "{out}");
    let post = endpoint(&out, "post")?;
    assert_eq!(post["outcomes"], json!(["status"]), "{out}");
    assert_eq!(post["last_status"], 401, "{out}");
    assert!(post.get("retried").is_none(), "POST is not retried: {out}");

    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    for name in ["get", "post"] {
        assert_eq!(endpoint(&out, name)?["outcomes"], json!(["ok"]), "{out}");
    }
    // Two probes per invocation; the second invocation's GET sent the old
    // value, then the new one; the shared secret was read again once.
    let seen = sent(&server, "x-api-key");
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen.iter().filter(|v| *v == old).count(), 4, "{seen:?}");
    assert_eq!(seen.iter().filter(|v| *v == new).count(), 3, "{seen:?}");
    assert_eq!(
        [&seen[..2], &seen[5..]],
        [[old, old], [new, new]],
        "{seen:?}"
    );
    let rereads = lines_with(&f.logs(), "secret header value read again");
    assert_eq!(rereads.len(), 1, "{}", f.logs());
    assert_eq!(rereads[0]["fields"]["reason"], "denied");
    assert_eq!(rereads[0]["fields"]["changed"], true);
    assert_eq!(rereads[0]["fields"]["secret"], "secret canary/api-key");
    let logs = f.logs();
    assert!(!logs.contains(old) && !logs.contains(new), "{logs}");
    assert!(!out.to_string().contains(old), "{out}");
    Ok(())
}

/// With `SECRETS_TTL_SECONDS=1`, a value older than a second is read again
/// without any 401 (the probe that finds it old sends the value it has, the
/// next one the new value); a read that fails (the secret was deleted)
/// keeps the last good value, says so, and the probe still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_secret_is_read_again_and_a_failed_read_keeps_the_last_good_value() -> R {
    let s = Setup::start().await?;
    create_secret(&s, "canary/ttl", "ttl-value-one").await?;
    let server = TestServer::http(Behaviour::ok()).await?;
    let targets = json!([{"name": "ttl", "url": format!("http://{API}:{}/", server.port()),
                          "headers": {"x-token": {"secret": "canary/ttl"}}}]);
    let f = s
        .spawn(&s.env(&targets, &[("SECRETS_TTL_SECONDS", "1")]))
        .await?;
    ok_invoke(&f, TIMEOUT).await?;
    put_secret(&s, "canary/ttl", "ttl-value-two").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ok_invoke(&f, TIMEOUT).await?;
    ok_invoke(&f, TIMEOUT).await?;
    let seen = sent(&server, "x-token");
    assert_eq!(
        seen.first().map(String::as_str),
        Some("ttl-value-one"),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("ttl-value-two"),
        "{seen:?}"
    );
    let rereads = lines_with(&f.logs(), "secret header value read again");
    assert!(
        rereads
            .iter()
            .any(|l| l["fields"]["reason"] == "ttl" && l["fields"]["changed"] == true),
        "{}",
        f.logs()
    );

    aws_sdk_secretsmanager::Client::new(&s.moto.sdk_config().await)
        .delete_secret()
        .secret_id("canary/ttl")
        .force_delete_without_recovery(true)
        .send()
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let (again, _) = ok_invoke(&f, TIMEOUT).await?;
    for out in [out, again] {
        assert_eq!(endpoint(&out, "ttl")?["outcomes"], json!(["ok"]), "{out}");
    }
    assert!(
        sent(&server, "x-token")
            .iter()
            .rev()
            .take(2)
            .all(|v| v == "ttl-value-two")
    );
    let kept = lines_with(
        &f.logs(),
        "secret header value not read again: keeping the last good value",
    );
    assert!(!kept.is_empty(), "{}", f.logs());
    assert_eq!(kept[0]["fields"]["reason"], "ttl");
    assert!(
        kept[0]["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ResourceNotFoundException")),
        "{}",
        f.logs()
    );
    assert!(!f.logs().contains("ttl-value-"), "{}", f.logs());
    Ok(())
}

/// An endpoint whose host is the failover record's name, resolved, would
/// probe whichever region the record answers: the cold start refuses it,
/// naming the field, the value and `FAILOVER_RECORD_NAME`, before any
/// network call. The same name with `connect_to` (the region's own
/// addresses) is no self-probe and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_resolving_the_failover_record_is_refused_at_cold_start() -> R {
    let s = Setup::start().await?;
    let server = TestServer::http(Behaviour::ok()).await?;
    let record = [("FAILOVER_RECORD_NAME", API)];
    let url = format!(
        "http://{}:{}/health?token=q-9",
        API.to_uppercase(),
        server.port()
    );
    let targets = json!([
        {"name": "regional", "url": format!("http://127.0.0.1:{}/", server.port())},
        {"name": "self", "url": url},
    ]);
    let mut f = s.spawn(&s.env(&targets, &record)).await?;
    let line = f.config_error().await?;
    assert!(
        line.contains("CANARY_TARGETS[1].url:")
            && line.contains("FAILOVER_RECORD_NAME")
            && line.contains("unpredictable")
            && !line.contains("q-9"),
        "{line}"
    );
    assert_eq!(server.connections(), 0);
    assert_eq!(s.dns.queries(API), 0);

    let pinned = json!([{"name": "pinned", "url": format!("http://{API}/health"),
                         "connect_to": format!("127.0.0.1:{}", server.port())}]);
    let f = s.spawn(&s.env(&pinned, &record)).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    assert_eq!(
        endpoint(&out, "pinned")?["outcomes"],
        json!(["ok"]),
        "{out}"
    );
    assert_eq!(
        s.dns.queries(API),
        0,
        "connect_to never resolves the record"
    );
    Ok(())
}

/// The server sends its chain and, after it, an expired copy of the root
/// cross-signed by an old root (as servers sent "ISRG Root X1 by DST Root
/// CA X3" after September 2021). The path that verifies is leaf ->
/// intermediate -> root: `CertificateExpiryDays` is the intermediate's 60
/// days, not the extra certificate's -30. A chain that does not verify
/// (the bundle is another CA's) reports its leaf's expiry (200 days), even
/// though webpki names the expired extra certificate as the reason (the
/// last candidate it tried on the way to a root it does not trust).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cross_signed_certificate_the_server_sends_does_not_count() -> R {
    let s = Setup::start().await?;
    let root = TestCa::new("tether test root CA")?;
    let old_root = TestCa::new("tether test old root CA")?;
    let other = TestCa::new("somebody else's CA")?;
    let intermediate = root.intermediate("tether test issuing CA", 60)?;
    let mut cert = intermediate.issue_valid(&[API], 200)?;
    let now = SystemTime::now();
    cert.chain
        .push(root.cross_signed_by(&old_root, now - 400 * DAY, now - 30 * DAY)?);
    assert_eq!(cert.chain.len(), 3);
    let server = TestServer::https(Behaviour::ok(), &cert).await?;
    let targets = json!([
        {"name": "cross", "url": https_url(server.port()), "ca_bundle": root.pem()},
        {"name": "refused", "url": https_url(server.port()), "ca_bundle": other.pem()},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let cross = endpoint(&out, "cross")?;
    assert_eq!(cross["outcomes"], json!(["ok"]), "{out}");
    let days = cross["cert_expiry_days"].as_f64().ok_or("no expiry")?;
    assert!((59.9..=60.0).contains(&days), "{days}");
    let published = s
        .stat("CertificateExpiryDays", "cross", Statistic::Minimum)
        .await?
        .ok_or("no CertificateExpiryDays")?;
    assert!((59.9..=60.0).contains(&published), "{published}");
    let refused = endpoint(&out, "refused")?;
    let class = &refused["outcomes"][0];
    assert!(class == "tls_expired" || class == "tls_unknown_ca", "{out}");
    let days = refused["cert_expiry_days"].as_f64().ok_or("no expiry")?;
    assert!((199.9..=200.0).contains(&days), "{days}");
    Ok(())
}

/// Each endpoint's server fails its first request (500) and answers the
/// next: GET, PUT and DELETE (idempotent, RFC 9110 section 9.2.2) are
/// retried and succeed; POST and PATCH are sent once and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_and_patch_are_never_retried() -> R {
    let s = Setup::start().await?;
    let mut servers = Vec::new();
    let mut targets = Vec::new();
    for method in ["GET", "PUT", "DELETE", "POST", "PATCH"] {
        let server = TestServer::http(Behaviour::Statuses(vec![500, 200])).await?;
        targets.push(json!({"name": method, "method": method,
                            "url": format!("http://{API}:{}/", server.port())}));
        servers.push((method, server));
    }
    let f = s.spawn(&s.env(&Value::Array(targets), &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    for (method, server) in &servers {
        let e = endpoint(&out, method)?;
        let retried = !matches!(*method, "POST" | "PATCH");
        assert_eq!(
            server.requests().len(),
            1 + usize::from(retried),
            "{method}"
        );
        assert!(server.requests().iter().all(|r| r.method == *method));
        match retried {
            true => {
                assert_eq!(e["outcomes"], json!(["ok"]), "{method}: {out}");
                assert_eq!(e["retried"], 1, "{method}: {out}");
            }
            false => {
                assert_eq!(e["outcomes"], json!(["status"]), "{method}: {out}");
                assert!(e.get("retried").is_none(), "{method}: {out}");
            }
        }
    }
    Ok(())
}

/// A resolver that never answers, with `DNS_TIMEOUT_MS` at 5 s: each
/// attempt gives the name up after its DNS share, a third of the 3 s
/// timeout, so the first attempt fails as `dns` after 1 s and leaves room
/// for a retry with its own share (a second `dns` failure at 2 s, and a
/// second left). Without the share the first lookup took the whole probe,
/// which failed as `timeout` with no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_resolver_costs_a_third_of_the_probe_and_leaves_room_for_the_retry() -> R {
    let s = Setup::start().await?;
    let server = TestServer::http(Behaviour::ok()).await?;
    let name = "silent.example.test";
    s.dns.set(name, Answer::Timeout);
    let targets = json!([{"name": "silent", "url": format!("http://{name}:{}/", server.port()),
                          "timeout_ms": 3000}]);
    let f = s
        .spawn(&s.env(&targets, &[("DNS_TIMEOUT_MS", "5000")]))
        .await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let e = endpoint(&out, "silent")?;
    assert_eq!(e["outcomes"], json!(["dns"]), "{out}");
    assert_eq!(e["retried"], 1, "{out}");
    let share = "no answer within 1000 ms (the DNS share";
    let message = e["last_failure"]["message"].as_str().unwrap_or("");
    assert!(message.contains(share), "{message}");
    let retry = lines_with(&f.logs(), "probe attempt failed, retrying");
    assert_eq!(retry.len(), 1, "{}", f.logs());
    assert_eq!(retry[0]["fields"]["class"], "dns");
    let first = retry[0]["fields"]["error"].as_str().unwrap_or("");
    assert!(first.contains(share), "{first}");
    assert!(s.dns.queries_of(name, "A") >= 2, "each attempt asked");
    assert_eq!(server.connections(), 0);
    Ok(())
}

/// The probe line names the address that answered: the live one of a
/// `connect_to` list whose first address refuses connections, and the
/// address a name resolved to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_that_answered_is_logged() -> R {
    let s = Setup::start().await?;
    let server = TestServer::http(Behaviour::ok()).await?;
    let port = server.port();
    let targets = json!([
        {"name": "pinned", "url": format!("http://{API}/"),
         "connect_to": [format!("127.0.0.2:{port}"), format!("127.0.0.1:{port}")]},
        {"name": "by-name", "url": format!("http://{API}:{port}/")},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    assert_eq!(endpoint(&out, "pinned")?["degraded"], 1, "{out}");
    let live = format!("127.0.0.1:{port}");
    for name in ["pinned", "by-name"] {
        let lines = probe_lines(&f.logs(), name);
        assert_eq!(lines.len(), 1, "{}", f.logs());
        assert_eq!(lines[0]["fields"]["address"], live.as_str(), "{name}");
    }
    let degraded = lines_with(
        &f.logs(),
        "probe degraded: an address did not accept a connection",
    );
    assert_eq!(degraded[0]["fields"]["address"], live.as_str());
    Ok(())
}

/// A URL's query (a token) reaches the server, never a log line or the
/// report; a failed status's body is logged for an endpoint without secret
/// headers, and withheld for one with them (this server echoes the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_echoed_secrets_never_reach_the_logs() -> R {
    let s = Setup::start().await?;
    let key = "e-s3cr3t-42";
    create_secret(&s, "canary/echo", key).await?;
    let failing = TestServer::http(Behaviour::status(500, "boom")).await?;
    let echo = TestServer::http(Behaviour::require_header("x-api-key", "another-key")).await?;
    let down = TestServer::http(Behaviour::status(503, "database down")).await?;
    let targets = json!([
        {"name": "query", "url": format!("http://{API}:{}/health?token=q-s3cr3t", failing.port())},
        {"name": "echo", "url": format!("http://{API}:{}/", echo.port()),
         "headers": {"x-api-key": {"secret": "canary/echo"}}},
        {"name": "down", "url": format!("http://{API}:{}/", down.port())},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let logs = f.logs();

    assert_eq!(
        failing.requests()[0].query.as_deref(),
        Some("token=q-s3cr3t")
    );
    let query = probe_lines(&logs, "query");
    assert_eq!(
        query[0]["fields"]["url"],
        format!("http://{API}:{}/health?…", failing.port())
    );
    assert!(
        !logs.contains("q-s3cr3t") && !out.to_string().contains("q-s3cr3t"),
        "{logs}"
    );

    let echoed = endpoint(&out, "echo")?;
    assert_eq!(echoed["last_status"], 401, "{out}");
    assert!(echoed["last_failure"].get("snippet").is_none(), "{out}");
    assert!(
        echoed["last_failure"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("body not shown")),
        "{out}"
    );
    assert!(
        !logs.contains(key) && !out.to_string().contains(key),
        "{logs}"
    );

    assert_eq!(
        endpoint(&out, "down")?["last_failure"]["snippet"],
        "database down"
    );
    assert_eq!(
        probe_lines(&logs, "down")[0]["fields"]["body"],
        "database down"
    );
    Ok(())
}

/// `trust`. The canary process is given a CA as its only system root
/// (`SSL_CERT_FILE`, which rustls-native-certs reads), standing for a
/// public CA, since a test server cannot have a publicly trusted
/// certificate. A server certified by that CA is trusted by default (the
/// public roots plus `ca_bundle`) and refused with `bundle-only` and a
/// bundle that does not hold it; a server certified by the bundle's CA is
/// trusted with `bundle-only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_only_trusts_the_bundle_alone() -> R {
    let s = Setup::start().await?;
    let public = TestCa::new("stands for a public CA")?;
    let private = TestCa::new("tether private CA")?;
    let roots = std::env::temp_dir().join(format!(
        "tether-canary-roots-{}-{}.pem",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::write(&roots, public.pem())?;
    let publicly = TestServer::https(Behaviour::ok(), &public.issue_valid(&[API], 90)?).await?;
    let privately = TestServer::https(Behaviour::ok(), &private.issue_valid(&[API], 90)?).await?;
    let bundle = private.pem();
    let targets = json!([
        {"name": "public-default", "url": https_url(publicly.port()), "ca_bundle": bundle},
        {"name": "public-bundle-only", "url": https_url(publicly.port()), "ca_bundle": bundle, "trust": "bundle-only"},
        {"name": "private-bundle-only", "url": https_url(privately.port()), "ca_bundle": bundle, "trust": "bundle-only"},
        {"name": "private-default", "url": https_url(privately.port()), "ca_bundle": bundle},
    ]);
    let roots_path = roots.to_string_lossy().into_owned();
    let f = s
        .spawn(&s.env(&targets, &[("SSL_CERT_FILE", roots_path.as_str())]))
        .await?;
    let outcome = ok_invoke(&f, TIMEOUT).await;
    let _ = std::fs::remove_file(&roots);
    let (out, _) = outcome?;
    for (name, expected) in [
        ("public-default", "ok"),
        ("public-bundle-only", "tls_unknown_ca"),
        ("private-bundle-only", "ok"),
        ("private-default", "ok"),
    ] {
        assert_eq!(
            endpoint(&out, name)?["outcomes"],
            json!([expected]),
            "{name}: {out}"
        );
    }
    Ok(())
}

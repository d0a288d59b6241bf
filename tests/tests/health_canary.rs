//! health-canary end to end: the built binary under the Runtime API emulator,
//! moto for CloudWatch, the DNS server fixture for names, and real HTTP and
//! HTTPS servers on loopback with certificates from a test CA.
//!
//! Each invocation covers one whole minute; here a minute is
//! `CANARY_MINUTE_MS` (10 s unless a test needs longer), so that an
//! invocation waits at most that long for its minute. The minute's own
//! behaviour is tested in `canary_minutes.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, Statistic};
use serde_json::{Value, json};
use tether_tests::canary::{
    API, MINUTE, NAMESPACE, Setup, TIMEOUT, endpoint, https_url, ok_invoke, probe_lines,
};
use tether_tests::dns::Answer;
use tether_tests::https::{Behaviour, TestCa, TestServer, Unanswering, refused_addr};
use tether_tests::moto::BoxError;
use tether_tests::world::{ips, scheduled_event};

type R = Result<(), BoxError>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_http_and_https_endpoints_publish_success_latency_and_certificate_expiry() -> R {
    let s = Setup::start().await?;
    let ca = TestCa::new("tether test CA")?;
    let tls = TestServer::https(Behaviour::ok(), &ca.issue_valid(&[API], 45)?).await?;
    let plain = TestServer::http(Behaviour::status(204, "")).await?;
    let targets = json!([
        {"name": "orders-https", "url": https_url(tls.port()), "ca_bundle": ca.pem(),
         "method": "GET", "headers": {"x-api-key": "k-123"}, "body_contains": "healthy"},
        {"name": "orders-http", "url": format!("http://{API}:{}/ping", plain.port()), "method": "POST"},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;

    assert_eq!(out["rounds"], 1);
    let https = endpoint(&out, "orders-https")?;
    assert_eq!(https["outcomes"], json!(["ok"]), "{out}");
    assert_eq!(https["last_status"], 200);
    let days = https["cert_expiry_days"].as_f64().ok_or("no expiry")?;
    assert!((44.9..=45.0).contains(&days), "{days}");
    let http = endpoint(&out, "orders-http")?;
    assert_eq!(http["outcomes"], json!(["ok"]), "{out}");
    assert_eq!(http["last_status"], 204);
    assert!(http.get("cert_expiry_days").is_none());

    // What the servers saw: the method, headers, and Host and SNI for the URL's name.
    let seen = tls.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/health");
    assert_eq!(seen[0].sni.as_deref(), Some(API));
    assert_eq!(seen[0].host, Some(format!("{API}:{}", tls.port())));
    assert_eq!(
        seen[0].headers.get("x-api-key").map(String::as_str),
        Some("k-123")
    );
    assert_eq!(plain.requests()[0].method, "POST");
    // Concurrent identical queries are merged by the resolver: at least one.
    assert!(
        s.dns.queries_of(API, "A") >= 1,
        "names are resolved through DNS_SERVERS"
    );

    // The metrics: namespace, the Endpoint dimension, values and counts.
    for name in ["orders-https", "orders-http"] {
        assert_eq!(
            s.stat("Success", name, Statistic::Average).await?,
            Some(1.0)
        );
        assert_eq!(
            s.stat("Success", name, Statistic::SampleCount).await?,
            Some(1.0)
        );
        let latency = s
            .stat("Latency", name, Statistic::Maximum)
            .await?
            .ok_or("no latency")?;
        assert!(latency > 0.0 && latency < 30_000.0, "{latency}");
    }
    let expiry = s
        .stat("CertificateExpiryDays", "orders-https", Statistic::Minimum)
        .await?
        .ok_or("no expiry metric")?;
    assert!((44.9..=45.0).contains(&expiry), "{expiry}");
    assert_eq!(
        s.stat("CertificateExpiryDays", "orders-http", Statistic::Minimum)
            .await?,
        None
    );

    // GetMetricData, as a dashboard reads it: the values and their count.
    let now = SystemTime::now();
    let stat = MetricStat::builder()
        .metric(
            Metric::builder()
                .namespace(NAMESPACE)
                .metric_name("Success")
                .dimensions(
                    Dimension::builder()
                        .name("Endpoint")
                        .value("orders-https")
                        .build(),
                )
                .build(),
        )
        .period(60)
        .stat("SampleCount")
        .build();
    let data = s
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("success")
                .metric_stat(stat)
                .build(),
        )
        .start_time((now - Duration::from_secs(600)).into())
        .end_time((now + Duration::from_secs(60)).into())
        .send()
        .await?;
    let values: Vec<f64> = data
        .metric_data_results()
        .iter()
        .flat_map(|r| r.values().to_vec())
        .collect();
    assert_eq!(values, [1.0]);

    let listed = s
        .cloudwatch
        .list_metrics()
        .namespace(NAMESPACE)
        .send()
        .await?;
    let mut metrics: Vec<String> = listed
        .metrics()
        .iter()
        .map(|m| {
            let dims: Vec<String> = m
                .dimensions()
                .iter()
                .map(|d| format!("{}={}", d.name().unwrap_or("?"), d.value().unwrap_or("?")))
                .collect();
            format!("{} {}", m.metric_name().unwrap_or("?"), dims.join(","))
        })
        .collect();
    metrics.sort();
    assert_eq!(
        metrics,
        [
            "CertificateExpiryDays Endpoint=orders-https",
            "DegradedEndpoints ",
            "Latency Endpoint=orders-http",
            "Latency Endpoint=orders-https",
            "RegionUnhealthy ",
            "SoonestCertificateExpiryDays ",
            "Success Endpoint=orders-http",
            "Success Endpoint=orders-https",
            "UnhealthyEndpoints FunctionName=health-canary",
        ]
    );

    // One structured log line per probe.
    let lines = probe_lines(&f.logs(), "orders-https");
    assert_eq!(lines.len(), 1, "{}", f.logs());
    assert_eq!(lines[0]["fields"]["outcome"], "ok");
    assert_eq!(lines[0]["fields"]["status"], 200);
    assert!(lines[0]["fields"]["latency_ms"].is_u64());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_failure_is_a_metric_with_its_class_not_an_invocation_error() -> R {
    let s = Setup::start().await?;
    let ca = TestCa::new("tether test CA")?;
    let other_ca = TestCa::new("somebody else's CA")?;
    let good = ca.issue_valid(&[API], 90)?;
    let healthy = TestServer::https(Behaviour::ok(), &good).await?;
    let error500 = TestServer::https(Behaviour::status(500, "boom"), &good).await?;
    let slow = TestServer::https(Behaviour::slow(Duration::from_secs(5)), &good).await?;
    let hang = TestServer::https(Behaviour::Hang, &good).await?;
    let unknown_ca = TestServer::https(Behaviour::ok(), &other_ca.issue_valid(&[API], 90)?).await?;
    let wrong_name = TestServer::https(
        Behaviour::ok(),
        &ca.issue_valid(&["other.example.test"], 90)?,
    )
    .await?;
    let expired = TestServer::https(Behaviour::ok(), &ca.issue_expired(&[API])?).await?;
    let body = TestServer::https(Behaviour::status(200, "degraded"), &good).await?;
    let trap = TestServer::http(Behaviour::ok()).await?;
    let redirect = TestServer::https(
        Behaviour::redirect(&format!("http://127.0.0.1:{}/", trap.port())),
        &good,
    )
    .await?;
    let plain_hang = TestServer::http(Behaviour::Hang).await?;
    let refused = refused_addr()?;

    let ep = |name: &str, port: u16| json!({"name": name, "url": https_url(port), "ca_bundle": ca.pem(), "timeout_ms": 1500});
    let mut targets = vec![
        ep("healthy", healthy.port()),
        ep("error-500", error500.port()),
        ep("slow", slow.port()),
        ep("hang-tls", hang.port()),
        ep("unknown-ca", unknown_ca.port()),
        ep("wrong-name", wrong_name.port()),
        ep("expired", expired.port()),
        ep("redirect", redirect.port()),
        ep("refused", refused.port()),
        json!({"name": "hang-http", "url": format!("http://{API}:{}/", plain_hang.port()), "timeout_ms": 1500}),
        json!({"name": "nxdomain", "url": "https://missing.example.test/health", "timeout_ms": 1500}),
    ];
    let mut with_body = ep("body", body.port());
    with_body["body_contains"] = json!("healthy");
    targets.push(with_body);
    let f = s.spawn(&s.env(&Value::Array(targets), &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;

    let expected = [
        ("healthy", "ok"),
        ("error-500", "status"),
        ("slow", "timeout"),
        ("hang-tls", "timeout"),
        ("unknown-ca", "tls_unknown_ca"),
        ("wrong-name", "tls_wrong_name"),
        ("expired", "tls_expired"),
        ("redirect", "status"),
        ("refused", "connect"),
        ("hang-http", "timeout"),
        ("nxdomain", "dns"),
        ("body", "body"),
    ];
    for (name, class) in expected {
        let e = endpoint(&out, name)?;
        assert_eq!(e["outcomes"], json!([class]), "{name}: {e}");
        let success = s.stat("Success", name, Statistic::Average).await?;
        assert_eq!(
            success,
            Some(if class == "ok" { 1.0 } else { 0.0 }),
            "{name}"
        );
        let latency = s.stat("Latency", name, Statistic::SampleCount).await?;
        assert_eq!(
            latency.is_some(),
            class == "ok",
            "{name}: latency only for successes"
        );
        let line = probe_lines(&f.logs(), name);
        assert_eq!(line.len(), 1, "{name}");
        if class != "ok" {
            assert_eq!(line[0]["fields"]["class"], class, "{name}");
            assert_eq!(line[0]["fields"]["outcome"], "fail", "{name}");
        }
    }
    assert_eq!(endpoint(&out, "error-500")?["last_status"], 500);
    assert_eq!(endpoint(&out, "redirect")?["last_status"], 302);
    assert!(trap.requests().is_empty(), "the redirect was followed");
    let message = endpoint(&out, "nxdomain")?["last_failure"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.contains("missing.example.test") && message.contains("NXDOMAIN"),
        "{message}"
    );
    // The certificate of an endpoint that answered with the wrong status still counts.
    assert!(
        endpoint(&out, "error-500")?["cert_expiry_days"]
            .as_f64()
            .is_some()
    );
    assert_eq!(
        hang.connections(),
        1,
        "the hanging server did accept the connection"
    );
    assert!(
        slow.requests().len() == 1,
        "the slow server got the request"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_keeps_the_url_host_for_sni_and_the_host_header() -> R {
    let s = Setup::start().await?;
    // The shared name resolves nowhere: only connect_to can reach the server.
    s.dns.remove(API);
    let ca = TestCa::new("tether test CA")?;
    let server = TestServer::https(Behaviour::ok(), &ca.issue_valid(&[API], 30)?).await?;
    let connect_to = format!("127.0.0.1:{}", server.port());
    let targets = json!([
        {"name": "primary", "url": https_url(server.port()), "connect_to": connect_to, "ca_bundle": ca.pem()},
        // No port in the URL: connect_to's port is used, the Host header stays the bare name.
        {"name": "primary-default-port", "url": format!("https://{API}/health"), "connect_to": connect_to, "ca_bundle": ca.pem()},
        {"name": "by-name", "url": https_url(server.port()), "ca_bundle": ca.pem()},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;

    assert_eq!(
        endpoint(&out, "primary")?["outcomes"],
        json!(["ok"]),
        "{out}"
    );
    assert_eq!(
        endpoint(&out, "primary-default-port")?["outcomes"],
        json!(["ok"]),
        "{out}"
    );
    assert_eq!(
        endpoint(&out, "by-name")?["outcomes"],
        json!(["dns"]),
        "{out}"
    );
    let mut seen: Vec<(Option<String>, Option<String>)> = server
        .requests()
        .into_iter()
        .map(|r| (r.sni, r.host))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (Some(API.to_owned()), Some(API.to_owned())),
            (
                Some(API.to_owned()),
                Some(format!("{API}:{}", server.port()))
            ),
        ]
    );
    Ok(())
}

/// A minute's rounds go out together once the last is in: the minute's
/// Average is the success ratio, a failed round is retried once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minutes_rounds_are_published_together_and_the_average_is_the_success_ratio() -> R {
    let s = Setup::start().await?;
    // Round 2 fails twice: its first attempt and the retry.
    let server = TestServer::http(Behaviour::Statuses(vec![200, 500, 500, 200])).await?;
    let targets = json!([{"name": "flaky", "url": format!("http://{API}:{}/", server.port()), "timeout_ms": 1000}]);
    let f = s
        .spawn(&s.env(
            &targets,
            &[
                ("PROBES_PER_INVOCATION", "3"),
                ("PROBE_INTERVAL_MS", "2500"),
            ],
        ))
        .await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    assert_eq!(out["rounds"], 3);
    let flaky = endpoint(&out, "flaky")?;
    assert_eq!(flaky["outcomes"], json!(["ok", "status", "ok"]));
    assert_eq!(
        (&flaky["successes"], &flaky["retried"]),
        (&json!(2), &json!(1))
    );
    // 2 of 3 with SUCCESS_THRESHOLD 0.5: healthy.
    assert_eq!(
        (&flaky["healthy"], &out["vote"]),
        (&json!(true), &json!("healthy"))
    );
    assert_eq!(server.requests().len(), 4);
    let retry_lines = f
        .logs()
        .lines()
        .filter(|l| {
            l.contains("probe attempt failed, retrying") && l.contains("\"class\":\"status\"")
        })
        .count();
    assert_eq!(retry_lines, 1, "{}", f.logs());
    assert_eq!(
        s.stat("Success", "flaky", Statistic::SampleCount).await?,
        Some(3.0)
    );
    assert_eq!(s.stat("Success", "flaky", Statistic::Sum).await?, Some(2.0));
    assert_eq!(
        s.stat("Latency", "flaky", Statistic::SampleCount).await?,
        Some(2.0)
    );
    let average = s.stat("Success", "flaky", Statistic::Average).await?;
    assert_eq!(average.map(|a| (a * 3.0).round()), Some(2.0), "{average:?}");
    Ok(())
}

/// An invocation covers a whole minute or none: with a function timeout too
/// short for the minute it would cover, no probe runs and it fails, naming
/// the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_too_short_for_a_whole_minute_fails_visibly_without_probing() -> R {
    let s = Setup::start().await?;
    let healthy = TestServer::http(Behaviour::ok()).await?;
    let targets = json!([{"name": "healthy", "url": format!("http://{API}:{}/", healthy.port()), "timeout_ms": 1000}]);
    let f = s
        .spawn(&s.env(
            &targets,
            &[
                ("PROBES_PER_INVOCATION", "10"),
                ("PROBE_INTERVAL_MS", "1500"),
                ("CANARY_MINUTE_MS", "20000"),
            ],
        ))
        .await?;
    // The minute's rounds take 15.5 s; the function may run 9 s.
    let inv = f.invoke(scheduled_event(), Duration::from_secs(12)).await?;
    let err = inv
        .result
        .err()
        .ok_or("a run without room for its minute should fail")?;
    assert_eq!(err["errorType"], "CanaryFailed");
    let message = err["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("raise the function timeout"), "{message}");
    assert!(
        inv.duration < Duration::from_secs(2),
        "answered after {:?}",
        inv.duration
    );
    assert_eq!(healthy.connections(), 0, "no partial minute was probed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_read_up_to_64_kib_and_never_to_its_end() -> R {
    let s = Setup::start().await?;
    let endless = TestServer::http(Behaviour::Endless).await?;
    let big = "x".repeat(70 * 1024) + "MARKER";
    let late_marker = TestServer::http(Behaviour::status(200, &big)).await?;
    let targets = json!([
        {"name": "endless", "url": format!("http://{API}:{}/", endless.port()), "timeout_ms": 5000},
        {"name": "endless-text", "url": format!("http://{API}:{}/", endless.port()), "body_contains": "xxxx", "timeout_ms": 5000},
        {"name": "late-marker", "url": format!("http://{API}:{}/", late_marker.port()), "body_contains": "MARKER"},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    assert_eq!(
        endpoint(&out, "endless")?["outcomes"],
        json!(["ok"]),
        "{out}"
    );
    assert_eq!(
        endpoint(&out, "endless-text")?["outcomes"],
        json!(["ok"]),
        "{out}"
    );
    let late = endpoint(&out, "late-marker")?;
    assert_eq!(late["outcomes"], json!(["body"]), "{out}");
    let message = late["last_failure"]["message"].as_str().unwrap_or("");
    assert!(message.contains("65536 bytes read"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_metrics_fail_the_invocation() -> R {
    let s = Setup::start().await?;
    let healthy = TestServer::http(Behaviour::ok()).await?;
    let targets = json!([{"name": "healthy", "url": format!("http://{API}:{}/", healthy.port())}]);
    let mut env = s.env(&targets, &[]);
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push((
        "AWS_ENDPOINT_URL".into(),
        format!("http://{}", refused_addr()?),
    ));
    let f = s.spawn(&env).await?;
    let err = f
        .invoke(scheduled_event(), TIMEOUT)
        .await?
        .result
        .err()
        .ok_or("the invocation should fail when CloudWatch is unreachable")?;
    assert_eq!(err["errorType"], "CanaryFailed");
    let message = err["errorMessage"].as_str().unwrap_or("");
    assert!(
        message.contains("metrics not published") && message.contains("cloudwatch:PutMetricData"),
        "{message}"
    );
    assert_eq!(healthy.requests().len(), 1, "the probe itself ran");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_fails_the_cold_start_without_any_network_call() -> R {
    let s = Setup::start().await?;
    // Every AWS call and every probe would land on one of these; none may.
    let aws_trap = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let probe_trap = TestServer::http(Behaviour::ok()).await?;
    let url = format!("http://{API}:{}/", probe_trap.port());
    let ok = |extra: Value| {
        let mut item = json!({"name": "api", "url": url});
        if let (Value::Object(m), Value::Object(e)) = (&mut item, extra) {
            m.extend(e);
        }
        Value::Array(vec![item]).to_string()
    };
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("CANARY_TARGETS", "[{\"name\": \"api\"".into())],
            "CANARY_TARGETS",
            "not valid JSON",
        ),
        (
            vec![(
                "CANARY_TARGETS",
                ok(json!({"url": "ftp://api.example.test/"})),
            )],
            "CANARY_TARGETS[0].url",
            "ftp://api.example.test/",
        ),
        (
            vec![("CANARY_TARGETS", ok(json!({"expect_status": "2xx"})))],
            "CANARY_TARGETS[0].expect_status",
            "2xx",
        ),
        (
            vec![(
                "CANARY_TARGETS",
                ok(json!({"connect_to": "nlb.example.test:443"})),
            )],
            "CANARY_TARGETS[0].connect_to",
            "nlb.example.test:443",
        ),
        (
            vec![(
                "CANARY_TARGETS",
                ok(json!({"ca_bundle": "not a certificate"})),
            )],
            "CANARY_TARGETS[0].ca_bundle",
            "no PEM certificate",
        ),
        (
            vec![("CANARY_TARGETS", ok(json!({"insecure": true})))],
            "CANARY_TARGETS[0].insecure",
            "unknown field",
        ),
        (
            vec![
                ("CANARY_TARGETS", ok(json!({}))),
                ("PROBES_PER_INVOCATION", "100".into()),
            ],
            "PROBES_PER_INVOCATION",
            "840 s",
        ),
        (
            vec![
                ("CANARY_TARGETS", ok(json!({}))),
                ("METRICS_NAMESPACE", "AWS/Lambda".into()),
            ],
            "METRICS_NAMESPACE",
            "reserved",
        ),
        (
            vec![("CANARY_TARGETS", String::new())],
            "CANARY_TARGETS",
            "not set",
        ),
        // Names CloudWatch would refuse, or a name given twice.
        (
            vec![("CANARY_TARGETS", ok(json!({"name": "caf\u{e9}-api"})))],
            "CANARY_TARGETS[0].name",
            "non-ASCII character",
        ),
        (
            vec![("CANARY_TARGETS", ok(json!({"name": "orders\u{7}"})))],
            "CANARY_TARGETS[0].name",
            "control character U+0007",
        ),
        (
            vec![(
                "CANARY_TARGETS",
                json!([{"name": "orders-api", "url": url}, {"name": "orders-api", "url": url}])
                    .to_string(),
            )],
            "CANARY_TARGETS[1].name",
            "already the name of CANARY_TARGETS[0]",
        ),
        (
            vec![("CANARY_TARGETS", ok(json!({"body": "{}"})))],
            "CANARY_TARGETS[0].body",
            "POST or PUT",
        ),
    ];
    for (vars, location, needle) in cases {
        let mut env = s.env(&json!([]), &[]);
        env.retain(|(k, _)| k != "CANARY_TARGETS" && k != "AWS_ENDPOINT_URL");
        env.push((
            "AWS_ENDPOINT_URL".into(),
            format!("http://{}", aws_trap.local_addr()?),
        ));
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let mut f = s.spawn(&env).await?;
        let line = f.config_error().await?;
        assert!(
            line.contains(&format!("{location}:")) && line.contains(needle),
            "{line}"
        );
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), aws_trap.accept()).await;
    assert!(
        accepted.is_err(),
        "an AWS call was made despite the bad configuration"
    );
    assert_eq!(
        probe_trap.connections(),
        0,
        "a probe ran despite the bad configuration"
    );
    assert_eq!(
        s.dns.queries(API),
        0,
        "a name was resolved despite the bad configuration"
    );
    Ok(())
}

/// The DER walk of `tether_shared::canary::cert` against certificates rcgen
/// made with known dates (UTCTime up to 2049, GeneralizedTime from 2050).
#[test]
fn certificate_expiry_is_read_from_real_certificates() -> R {
    use tether_shared::canary::cert::not_after;
    let ca = TestCa::new("dates CA")?;
    let at = |y: i32, m: u8, d: u8| -> Result<SystemTime, BoxError> {
        let days = (rcgen::date_time_ymd(y, m, d) - rcgen::date_time_ymd(1970, 1, 1)).whole_days();
        Ok(UNIX_EPOCH + Duration::from_secs(u64::try_from(days)? * 86_400))
    };
    for ((y, m, d), epoch) in [
        ((2030, 6, 15), 1_907_712_000),
        ((2049, 12, 31), 2_524_521_600),
        ((2050, 1, 1), 2_524_608_000),
        ((2100, 3, 1), 4_107_542_400),
    ] {
        let cert = ca.issue(&[API], at(2020, 1, 1)?, at(y, m, d)?)?;
        assert_eq!(not_after(cert.leaf()), Ok(epoch), "{y}-{m}-{d}");
    }
    // An expired one and a one-second precision check.
    let exact = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
    let cert = ca.issue(&[API], at(2020, 1, 1)?, exact)?;
    assert_eq!(not_after(cert.leaf()), Ok(1_700_000_123));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_can_come_from_an_s3_object_beyond_the_4_kb_environment() -> R {
    let s = Setup::start().await?;
    let healthy = TestServer::http(Behaviour::ok()).await?;
    let url = format!("http://{API}:{}/", healthy.port());
    // 60 endpoints: far more than Lambda's 4 KB environment holds.
    let targets: Vec<Value> = (0..60)
        .map(|i| json!({"name": format!("endpoint{i}"), "url": url, "timeout_ms": 2000}))
        .collect();
    let body = Value::Array(targets).to_string();
    assert!(body.len() > 4096);
    let s3 = s.moto.s3(&s.moto.sdk_config().await);
    tether_tests::aws::create_bucket(&s3, "tether-config").await?;
    s3.put_object()
        .bucket("tether-config")
        .key("canary/targets.json")
        .body(body.into_bytes().into())
        .send()
        .await?;
    let uri = "s3://tether-config/canary/targets.json";
    let mut env = s.env(&json!([]), &[("CANARY_TARGETS_S3_URI", uri)]);
    env.retain(|(k, _)| k != "CANARY_TARGETS");
    let f = s.spawn(&env).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    assert_eq!(out["endpoints"].as_array().map(Vec::len), Some(60), "{out}");
    assert_eq!(healthy.requests().len(), 60);

    // A missing object fails the cold start, naming the variable and the object.
    let mut env = s.env(
        &json!([]),
        &[("CANARY_TARGETS_S3_URI", "s3://tether-config/missing.json")],
    );
    env.retain(|(k, _)| k != "CANARY_TARGETS");
    let mut f = s.spawn(&env).await?;
    let line = f.config_error().await?;
    assert!(
        line.contains("CANARY_TARGETS_S3_URI") && line.contains("missing.json"),
        "{line}"
    );
    Ok(())
}

/// A replaced certificate is seen by the very next probe: the server keeps
/// one TLS context (its session tickets stay valid) while its certificate
/// changes between invocations of one canary process, so a client that
/// resumed sessions would keep reporting the old, good certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_checked_at_the_next_invocation_without_resumption() -> R {
    let s = Setup::start().await?;
    let ca = TestCa::new("tether test CA")?;
    let other_ca = TestCa::new("someone else's CA")?;
    let server = TestServer::https(Behaviour::ok(), &ca.issue_valid(&[API], 45)?).await?;
    let targets = json!([{"name": "swap", "url": https_url(server.port()), "ca_bundle": ca.pem()}]);
    let f = s.spawn(&s.env(&targets, &[])).await?;

    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let first = endpoint(&out, "swap")?;
    assert_eq!(first["outcomes"], json!(["ok"]), "{out}");
    assert_eq!(first["protocol"], "h2", "{out}");

    server.set_cert(&other_ca.issue_valid(&[API], 90)?)?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let second = endpoint(&out, "swap")?;
    assert_eq!(second["outcomes"], json!(["tls_unknown_ca"]), "{out}");
    // The refused chain still tells its expiry.
    let days = second["cert_expiry_days"].as_f64().ok_or("no expiry")?;
    assert!((89.0..=90.0).contains(&days), "{days}");

    server.set_cert(&ca.issue_expired(&[API])?)?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let third = endpoint(&out, "swap")?;
    assert_eq!(third["outcomes"], json!(["tls_expired"]), "{out}");
    let days = third["cert_expiry_days"].as_f64().ok_or("no expiry")?;
    assert!((-2.0..0.0).contains(&days), "{days}");
    let lowest = s
        .stat("CertificateExpiryDays", "swap", Statistic::Minimum)
        .await?
        .ok_or("no CertificateExpiryDays")?;
    assert!(lowest < 0.0, "{lowest}");

    // Only the first invocation got as far as a request; no handshake resumed.
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].resumed, Some(false));
    assert_eq!(requests[0].version, "HTTP/2.0");
    Ok(())
}

/// `CertificateExpiryDays` is the earliest expiry of the chain the server
/// sends: an intermediate CA that expires in 10 days, over a leaf valid for 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiry_is_the_earliest_of_the_chain() -> R {
    let s = Setup::start().await?;
    let root = TestCa::new("tether test root CA")?;
    let intermediate = root.intermediate("tether test issuing CA", 10)?;
    let cert = intermediate.issue_valid(&[API], 200)?;
    assert_eq!(cert.chain.len(), 2);
    let server = TestServer::https(Behaviour::ok(), &cert).await?;
    let targets =
        json!([{"name": "chain", "url": https_url(server.port()), "ca_bundle": root.pem()}]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let e = endpoint(&out, "chain")?;
    assert_eq!(e["outcomes"], json!(["ok"]), "{out}");
    let days = e["cert_expiry_days"].as_f64().ok_or("no expiry")?;
    assert!((9.9..=10.0).contains(&days), "{days}");
    let published = s
        .stat("CertificateExpiryDays", "chain", Statistic::Maximum)
        .await?
        .ok_or("no CertificateExpiryDays")?;
    assert!((9.9..=10.0).contains(&published), "{published}");
    Ok(())
}

/// Every datum carries its minute's start as timestamp, not the time it was
/// sent: with an endpoint that answers after 1.5 s, the datapoint moto keeps
/// is at least 1.5 s older than the end of the invocation, and it is the
/// minute the invocation reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_carry_the_start_of_their_minute() -> R {
    let s = Setup::start().await?;
    let late = TestServer::http(Behaviour::slow(Duration::from_millis(1500))).await?;
    let targets = json!([{"name": "late", "url": format!("http://{API}:{}/", late.port())}]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let before = SystemTime::now();
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    let after = SystemTime::now();
    assert_eq!(endpoint(&out, "late")?["outcomes"], json!(["ok"]), "{out}");
    let listed = s
        .cloudwatch
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("Success")
        .dimensions(Dimension::builder().name("Endpoint").value("late").build())
        // Periods of the canary's (10 s) minute, aligned as its minutes are.
        .start_time((tether_tests::world::minute_start(before, MINUTE) - MINUTE * 6).into())
        .end_time((after + MINUTE).into())
        .period(MINUTE.as_secs() as i32)
        .statistics(Statistic::SampleCount)
        .send()
        .await?;
    let points = listed.datapoints();
    assert_eq!(points.len(), 1, "{listed:?}");
    let stamp = points[0].timestamp().ok_or("no timestamp")?;
    let stamp = SystemTime::try_from(*stamp)?;
    assert!(
        stamp + MINUTE >= before,
        "{stamp:?} a minute before the invocation"
    );
    assert!(
        stamp + Duration::from_millis(1500) <= after,
        "{stamp:?} is when the datum was sent"
    );
    let minute = tether_shared::canary::rfc3339(stamp);
    assert_eq!(out["minute"].as_str(), Some(minute.as_str()), "{out}");
    Ok(())
}

/// The server of the test above does resume sessions: a client that keeps
/// them (one rustls config, resumption on) resumes its second handshake and
/// so accepts the replaced certificate unseen. The canary must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_server_lets_a_resuming_client_miss_a_replaced_certificate() -> R {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = TestCa::new("tether test CA")?;
    let other_ca = TestCa::new("someone else's CA")?;
    let server = TestServer::https(Behaviour::ok(), &ca.issue_valid(&[API], 45)?).await?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut kinds = Vec::new();
    for round in 0..2 {
        if round == 1 {
            server.set_cert(&other_ca.issue_valid(&[API], 90)?)?;
        }
        let tcp = tokio::net::TcpStream::connect(server.addr()).await?;
        let mut tls = connector
            .connect(rustls::pki_types::ServerName::try_from(API)?, tcp)
            .await?;
        kinds.push(tls.get_ref().1.handshake_kind());
        let request = format!("GET /health HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        // Reading to the end also takes in the session tickets.
        let _ = tls.read_to_end(&mut answer).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
    assert_eq!(
        server
            .requests()
            .iter()
            .map(|r| r.resumed)
            .collect::<Vec<_>>(),
        [Some(false), Some(true)]
    );
    Ok(())
}

/// One node of several that never completes a TCP handshake (a full
/// accept queue, made by hand in test support) costs its connect timeout,
/// not the probe: the next address answers within the timeout, and the
/// probe counts as degraded. Both a name with two addresses and a
/// `connect_to` list are tried in turn, the first address rotating by round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_never_completes_the_handshake_is_skipped_and_counted_degraded() -> R {
    let s = Setup::start().await?;
    let server = TestServer::http(Behaviour::ok()).await?;
    let port = server.port();
    let dead = Unanswering::start_on(format!("127.0.0.2:{port}").parse()?).await?;
    let live = format!("127.0.0.1:{port}");
    let two = "two.example.test";
    s.dns
        .set(two, Answer::Addrs(ips(&["127.0.0.2", "127.0.0.1"])));
    let targets = json!([
        {"name": "by-name", "url": format!("http://{two}:{port}/"), "timeout_ms": 3000, "connect_timeout_ms": 500},
        {"name": "by-list", "url": format!("http://{API}/"), "connect_to": [dead.addr().to_string(), live],
         "timeout_ms": 3000, "connect_timeout_ms": 500},
    ]);
    let env = s.env(
        &targets,
        &[
            ("PROBES_PER_INVOCATION", "2"),
            ("PROBE_INTERVAL_MS", "3000"),
            ("CANARY_MINUTE_MS", "10000"),
        ],
    );
    let f = s.spawn(&env).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    for name in ["by-name", "by-list"] {
        let e = endpoint(&out, name)?;
        assert_eq!(e["outcomes"], json!(["ok", "ok"]), "{out}");
        assert!(e.get("retried").is_none(), "{out}");
    }
    // connect_to is tried in order, starting one further each round: the
    // dead address comes first in round 1 only.
    assert_eq!(endpoint(&out, "by-list")?["degraded"], 1, "{out}");
    assert!(
        endpoint(&out, "by-name")?["degraded"].as_u64() >= Some(1),
        "{out}"
    );
    let dead_addr = dead.addr().to_string();
    let degraded_lines = f
        .logs()
        .lines()
        .filter(|l| {
            l.contains("probe degraded")
                && l.contains(&dead_addr)
                && l.contains("no TCP handshake within 500 ms")
        })
        .count();
    assert!(degraded_lines >= 2, "{}", f.logs());
    let now = SystemTime::now();
    let degraded = s
        .cloudwatch
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("DegradedEndpoints")
        .start_time((now - Duration::from_secs(600)).into())
        .end_time((now + Duration::from_secs(60)).into())
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await?;
    let sum: f64 = degraded.datapoints().iter().filter_map(|d| d.sum()).sum();
    assert!(sum >= 2.0, "{degraded:?}");
    assert_eq!(server.requests().len(), 4);
    Ok(())
}

/// Header values from Secrets Manager and an SSM SecureString (moto), read
/// once at cold start and never logged; a POST body; h2 by ALPN; the `slow`
/// class; and a failed status's body snippet in the log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_headers_post_bodies_slow_answers_and_body_snippets() -> R {
    let s = Setup::start().await?;
    let sdk = s.moto.sdk_config().await;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("canary/api-key")
        .secret_string("k-secret-4711")
        .send()
        .await?;
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name("/tether/token")
        .value("Bearer t-0815")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await?;
    let ca = TestCa::new("tether test CA")?;
    let api = TestServer::https(Behaviour::ok(), &ca.issue_valid(&[API], 45)?).await?;
    let slow = TestServer::http(Behaviour::slow(Duration::from_millis(400))).await?;
    let down = TestServer::http(Behaviour::status(
        503,
        "database\n connection pool exhausted",
    ))
    .await?;
    let targets = json!([
        {"name": "post", "url": https_url(api.port()), "method": "POST", "body": "{\"ping\": 1}", "ca_bundle": ca.pem(),
         "headers": {"x-api-key": {"secret": "canary/api-key"}, "authorization": {"ssm": "/tether/token"}}},
        {"name": "slow", "url": format!("http://{API}:{}/", slow.port()), "max_latency_ms": 100},
        {"name": "down", "url": format!("http://{API}:{}/", down.port())},
    ]);
    let f = s.spawn(&s.env(&targets, &[])).await?;
    let (out, _) = ok_invoke(&f, TIMEOUT).await?;
    assert_eq!(endpoint(&out, "post")?["outcomes"], json!(["ok"]), "{out}");
    let seen = api.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(
        (request.method.as_str(), request.body.as_str()),
        ("POST", "{\"ping\": 1}")
    );
    assert_eq!(request.version, "HTTP/2.0");
    assert_eq!(
        request.headers.get("x-api-key").map(String::as_str),
        Some("k-secret-4711")
    );
    assert_eq!(
        request.headers.get("authorization").map(String::as_str),
        Some("Bearer t-0815")
    );
    assert_eq!(
        request.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );

    let slow_report = endpoint(&out, "slow")?;
    assert_eq!(slow_report["outcomes"], json!(["slow"]), "{out}");
    assert_eq!(slow_report["retried"], 1, "{out}");
    assert!(
        slow_report["last_failure"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_latency_ms 100")),
        "{out}"
    );

    let down_report = endpoint(&out, "down")?;
    assert_eq!(down_report["outcomes"], json!(["status"]), "{out}");
    assert_eq!(
        down_report["last_failure"]["snippet"], "database connection pool exhausted",
        "{out}"
    );
    let lines = probe_lines(&f.logs(), "down");
    assert_eq!(
        lines[0]["fields"]["body"],
        "database connection pool exhausted",
        "{}",
        f.logs()
    );

    let logs = f.logs();
    assert!(
        !logs.contains("k-secret-4711") && !logs.contains("t-0815"),
        "{logs}"
    );

    // A plain String parameter, or a secret that does not exist, fails the
    // cold start naming the header and the source, not a value.
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name("/tether/plain")
        .value("visible-value")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await?;
    for (source, needle) in [
        (json!({"ssm": "/tether/plain"}), "not a SecureString"),
        (
            json!({"secret": "canary/missing"}),
            "ResourceNotFoundException",
        ),
    ] {
        let targets = json!([{"name": "api", "url": https_url(api.port()), "ca_bundle": ca.pem(), "headers": {"x-key": source}}]);
        let mut f = s.spawn(&s.env(&targets, &[])).await?;
        let line = f.config_error().await?;
        assert!(
            line.contains("CANARY_TARGETS[0].headers.x-key:")
                && line.contains(needle)
                && !line.contains("visible-value"),
            "{line}"
        );
    }
    Ok(())
}

//! The health-canary part of the demo: a private HTTPS endpoint (certificate
//! from a private CA) probed three times per invocation, healthy, then
//! failing, then taken down; per tick the probes and the success ratio the
//! alarm averages.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde_json::{Value, json};

use super::heading;
use crate::dns::{Answer, DnsServer};
use crate::https::{Behaviour, TestCa, TestServer};
use crate::lambda::{FunctionProcess, function_binary};
use crate::moto::{BoxError, Moto};
use crate::world::{ips, scheduled_event};

const NAME: &str = "orders.internal.example.test";
const NAMESPACE: &str = "Tether/Demo";
/// The endpoint's name: its metrics' `Endpoint` dimension.
pub const ENDPOINT: &str = "orders-api";

/// The demo's `CANARY_TARGETS`: one endpoint at `url`, trusting `ca_pem`
/// (`tests/tests/canary_names.rs` checks the canary accepts it).
pub fn targets(url: &str, ca_pem: &str) -> Value {
    json!([{
        "name": ENDPOINT, "url": url, "ca_bundle": ca_pem,
        "body_contains": "healthy", "timeout_ms": 1000,
    }])
}

pub async fn run() -> Result<(), BoxError> {
    heading("health-canary: a private endpoint probed every second, then taken down");
    let moto = Moto::start().await?;
    let dns = DnsServer::start().await?;
    dns.set(NAME, Answer::Addrs(ips(&["127.0.0.1"])));
    let ca = TestCa::new("Demo Private CA (as ACM Private CA would issue)")?;
    let server = TestServer::https(Behaviour::ok(), &ca.issue_valid(&[NAME], 60)?).await?;
    let url = format!("https://{NAME}:{}/health", server.port());
    println!(
        "emulator: moto at {}; DNS server at {}",
        moto.endpoint(),
        dns.addr()
    );
    println!("endpoint  {url} (certificate from a private CA, 60 days left)");
    println!(
        "canary    3 probes per invocation, 1 s apart, timeout 1 s, expects 2xx and \"healthy\"\n"
    );

    let targets = targets(&url, ca.pem());
    let mut env = moto.env();
    for (k, v) in [
        ("CANARY_TARGETS", targets.to_string()),
        ("PROBES_PER_INVOCATION", "3".into()),
        ("PROBE_INTERVAL_MS", "1000".into()),
        ("DNS_SERVERS", dns.addr().to_string()),
        ("METRICS_NAMESPACE", NAMESPACE.into()),
    ] {
        env.push((k.to_owned(), v));
    }
    let f = FunctionProcess::spawn(&function_binary("health-canary"), &env).await?;

    let mut server = Some(server);
    let steps: [(&str, Option<Behaviour>, bool); 5] = [
        ("the service is healthy", None, false),
        ("still healthy", None, false),
        (
            "the service answers 503",
            Some(Behaviour::status(503, "unavailable")),
            false,
        ),
        (
            "the service is taken down: nothing listens on the port",
            None,
            true,
        ),
        ("still down", None, false),
    ];
    for (n, (what, behaviour, take_down)) in steps.into_iter().enumerate() {
        if let (Some(b), Some(s)) = (behaviour, &server) {
            s.set(b);
        }
        if take_down && let Some(s) = server.take() {
            s.stop().await;
        }
        let inv = f.invoke(scheduled_event(), Duration::from_secs(30)).await?;
        println!("tick {}: {what}", n + 1);
        match &inv.result {
            Ok(out) => print_tick(&out["endpoints"][0]),
            Err(e) => println!("  the invocation FAILED: {}", e["errorMessage"]),
        }
    }

    let now = SystemTime::now();
    let stats = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await)
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("Success")
        .dimensions(
            Dimension::builder()
                .name("Endpoint")
                .value(ENDPOINT)
                .build(),
        )
        .start_time((now - Duration::from_secs(600)).into())
        .end_time((now + Duration::from_secs(60)).into())
        .period(60)
        .statistics(Statistic::Average)
        .statistics(Statistic::SampleCount)
        .send()
        .await?;
    println!(
        "\nCloudWatch {NAMESPACE} Success{{Endpoint={ENDPOINT}}}, per minute (what the alarm reads):"
    );
    for d in stats.datapoints() {
        println!(
            "  {} average {:.2} over {} probes",
            d.timestamp().map_or("?".into(), |t| t.to_string()),
            d.average().unwrap_or_default(),
            d.sample_count().unwrap_or_default()
        );
    }
    println!(
        "an alarm on Average below a threshold (say 0.5) for one 60 s period turns the Route 53 \
         CLOUDWATCH_METRIC health check unhealthy, and the failover record answers SECONDARY."
    );
    Ok(())
}

fn print_tick(e: &Value) {
    let outcomes: Vec<&str> = e["outcomes"]
        .as_array()
        .map(|o| o.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let successes = e["successes"].as_u64().unwrap_or_default();
    let ratio = successes as f64 / outcomes.len().max(1) as f64;
    println!("  probes        {}", outcomes.join(", "));
    println!(
        "  success ratio {successes}/{} = {ratio:.2}",
        outcomes.len()
    );
    if let Some(days) = e["cert_expiry_days"].as_f64() {
        println!("  certificate   expires in {days:.1} days (earliest in the verified chain)");
    }
    if let Some(protocol) = e["protocol"].as_str() {
        println!("  protocol      {protocol} (ALPN), a full TLS handshake every probe");
    }
    if let Some(retried) = e["retried"].as_u64() {
        println!("  retried       {retried} probe(s) once within the timeout");
    }
    if let Some(failure) = e.get("last_failure") {
        println!(
            "  last failure  {}: {}",
            failure["class"].as_str().unwrap_or("?"),
            failure["message"].as_str().unwrap_or("?")
        );
        if let Some(snippet) = failure["snippet"].as_str() {
            println!("  body          {snippet}");
        }
    }
    println!();
}

//! The health-canary part of the demo: a private HTTPS endpoint (certificate
//! from a private CA) probed three times per minute, healthy, then failing,
//! then taken down; per minute the probes, the decision and the vote the
//! region alarm sums. A "minute" here is 4 s (`CANARY_MINUTE_MS`), so that
//! the demo does not take five real minutes.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde_json::{Value, json};

use super::heading;
use crate::dns::{Answer, DnsServer};
use crate::https::{Behaviour, TestCa, TestServer};
use crate::lambda::{FunctionProcess, function_binary};
use crate::moto::{BoxError, Moto};
use crate::world::{due_event, ips, minute_start};

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

/// The demo's minute.
const MINUTE: Duration = Duration::from_secs(4);

/// Runs this part; returns its one-line summary.
pub async fn run() -> Result<String, BoxError> {
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
        "canary    3 probes per minute (a 4 s minute here), 1 s apart, timeout 1 s, expects 2xx and \"healthy\";\n          \
         an endpoint is unhealthy in a minute with fewer than 2 good probes, and the vote stays\n          \
         unhealthy until 3 good minutes in a row\n"
    );

    let targets = targets(&url, ca.pem());
    let mut env = moto.env();
    for (k, v) in [
        ("CANARY_TARGETS", targets.to_string()),
        ("PROBES_PER_INVOCATION", "3".into()),
        ("PROBE_INTERVAL_MS", "1000".into()),
        ("DNS_SERVERS", dns.addr().to_string()),
        ("METRICS_NAMESPACE", NAMESPACE.into()),
        ("CANARY_MINUTE_MS", MINUTE.as_millis().to_string()),
        ("STACK_NAME", "demo".into()),
    ] {
        env.push((k.to_owned(), v));
    }
    let f = FunctionProcess::spawn(&function_binary("health-canary"), &env).await?;

    let mut server = Some(server);
    // Each tick is due in one minute and covers the next, as the Scheduler's are.
    let first_due = minute_start(SystemTime::now(), MINUTE);
    let steps: [(&str, Option<Behaviour>, bool); 7] = [
        ("the service is healthy", None, false),
        ("still healthy", None, false),
        (
            "the service answers 503",
            Some(Behaviour::status(503, "unavailable")),
            false,
        ),
        ("the service is back", Some(Behaviour::ok()), false),
        ("still up", None, false),
        ("still up: the third good minute in a row", None, false),
        (
            "the service is taken down: nothing listens on the port",
            None,
            true,
        ),
    ];
    let mut votes = Vec::new();
    for (n, (what, behaviour, take_down)) in steps.into_iter().enumerate() {
        if let (Some(b), Some(s)) = (behaviour, &server) {
            s.set(b);
        }
        if take_down && let Some(s) = server.take() {
            s.stop().await;
        }
        let due = first_due + MINUTE * n as u32;
        let inv = f.invoke(due_event(due), Duration::from_secs(30)).await?;
        // The invocation due in one minute covers the next one.
        let covered = DateTime::from(due + MINUTE);
        println!(
            "minute {} ({}, {} s long here): {what}",
            n + 1,
            covered.fmt(DateTimeFormat::DateTime).unwrap_or_default(),
            MINUTE.as_secs()
        );
        match &inv.result {
            Ok(out) => {
                print_tick(&out["endpoints"][0]);
                let held = if out["held"] == true {
                    " (held: failback waits for 3 good minutes)"
                } else {
                    ""
                };
                let vote = out["vote"].as_str().unwrap_or("?");
                println!("  vote          {vote}{held}\n");
                votes.push(vote.to_owned());
            }
            Err(e) => {
                println!("  the invocation failed: {}", e["errorMessage"]);
                votes.push("none (failed)".to_owned());
            }
        }
    }

    let now = SystemTime::now();
    let stats = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await)
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("RegionUnhealthy")
        .dimensions(Dimension::builder().name("Stack").value("demo").build())
        .start_time((first_due - MINUTE).into())
        .end_time((now + MINUTE).into())
        .period(MINUTE.as_secs() as i32)
        .statistics(Statistic::Sum)
        .send()
        .await?;
    println!(
        "CloudWatch {NAMESPACE} RegionUnhealthy{{Stack=demo}}, Sum per minute (what Route 53 reads):"
    );
    let mut points = stats.datapoints().to_vec();
    points.sort_by_key(|d| d.timestamp().map(|t| t.secs()));
    let unhealthy_minutes = points
        .iter()
        .filter(|d| d.sum().unwrap_or_default() > 0.0)
        .count();
    let published = points.len();
    for d in points {
        let sum = d.sum().unwrap_or_default();
        println!(
            "  {} {sum:+.0}  {}",
            d.timestamp().map_or("?".into(), |t| t.to_string()),
            if sum > 0.0 {
                "unhealthy: Route 53 answers the other region"
            } else {
                "healthy"
            }
        );
    }
    println!(
        "one canary per availability zone adds its vote to the same Sum: above 0 (most zones \
         unhealthy) the region alarm breaches, and the CLOUDWATCH_METRIC health check behind the \
         failover record turns unhealthy."
    );
    Ok(format!(
        "health-canary: {} minutes, votes {}; RegionUnhealthy published for {published} minutes, {unhealthy_minutes} \
         of them unhealthy (what would fail the region over)",
        votes.len(),
        votes.join(", ")
    ))
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
            println!("  body          {snippet:?}");
        }
    }
    println!();
}

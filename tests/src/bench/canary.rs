//! The health-canary part of the bench: 50 endpoints in one minute (wall
//! time against the slowest probe), cold start, warm invocation and peak
//! memory of the release binary. An invocation first waits for the minute it
//! covers (a 5 s minute here, `CANARY_MINUTE_MS`): its report says how long
//! (`waited_ms`), and the times below leave that wait out.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::target_sync::{mib, zip_size};
use super::{Section, median_max, ms};
use crate::dns::{Answer, DnsServer};
use crate::https::{Behaviour, TestCa, TestServer};
use crate::lambda::{FunctionProcess, Invocation, function_binary};
use crate::moto::{BoxError, Moto};
use crate::world::{ips, scheduled_event};

const NAME: &str = "api.bench.example.test";
const ENDPOINTS: usize = 50;
/// Server delays: endpoint `i` is answered after `DELAYS[i % len]` ms.
const DELAYS: [u64; 5] = [0, 50, 100, 200, 300];
const COLD_RUNS: usize = 10;
const WARM_RUNS: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(60);
/// The bench's minute.
const MINUTE_MS: u64 = 5_000;

async fn invoke_ok(f: &FunctionProcess) -> Result<(Value, Invocation), BoxError> {
    let inv = f.invoke(scheduled_event(), TIMEOUT).await?;
    let out = inv
        .result
        .clone()
        .map_err(|e| format!("invocation failed: {e}\n{}", f.logs()))?;
    Ok((out, inv))
}

/// The invocation's duration without its wait for the minute.
fn working(out: &Value, inv: &Invocation) -> Duration {
    inv.duration.saturating_sub(Duration::from_millis(
        out["waited_ms"].as_u64().unwrap_or_default(),
    ))
}

fn kib_to_mb(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
}

pub async fn run() -> Result<Vec<Section>, BoxError> {
    let binary = function_binary("health-canary");
    let moto = Moto::start().await?;
    let dns = DnsServer::start().await?;
    dns.set(NAME, Answer::Addrs(ips(&["127.0.0.1"])));
    let ca = TestCa::new("bench CA")?;
    let cert = ca.issue_valid(&[NAME], 90)?;
    let mut servers = Vec::new();
    for delay in DELAYS {
        servers
            .push(TestServer::https(Behaviour::slow(Duration::from_millis(delay)), &cert).await?);
    }
    let endpoint = |i: usize| {
        let server = &servers[i % servers.len()];
        json!({"name": format!("svc-{i:02}"), "url": format!("https://{NAME}:{}/health", server.port()),
               "ca_bundle": ca.pem(), "timeout_ms": 2000})
    };
    let env_for = |targets: Value| {
        let mut env = moto.env();
        env.push(("CANARY_TARGETS".into(), targets.to_string()));
        env.push(("DNS_SERVERS".into(), dns.addr().to_string()));
        env.push(("METRICS_NAMESPACE".into(), "Tether/Bench".into()));
        env.push(("CANARY_MINUTE_MS".into(), MINUTE_MS.to_string()));
        env.push(("STACK_NAME".into(), "bench".into()));
        env
    };

    // One fast endpoint: cold start, warm invocations, memory.
    let one = env_for(json!([
        json!({"name": "one", "url": format!("https://{NAME}:{}/health", servers[0].port()), "ca_bundle": ca.pem()})
    ]));
    let mut cold = Vec::new();
    let mut init = Vec::new();
    let mut cold_rss = Vec::new();
    for _ in 0..COLD_RUNS {
        let start = Instant::now();
        let f = FunctionProcess::spawn(&binary, &one).await?;
        let (out, _) = invoke_ok(&f).await?;
        let waited = Duration::from_millis(out["waited_ms"].as_u64().unwrap_or_default());
        cold.push(start.elapsed().saturating_sub(waited));
        init.extend(f.init_duration());
        cold_rss.extend(f.peak_rss_kib());
    }
    let f = FunctionProcess::spawn(&binary, &one).await?;
    let mut warm = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..WARM_RUNS {
        let (out, inv) = invoke_ok(&f).await?;
        warm.push(working(&out, &inv));
        waits.push(inv.duration - working(&out, &inv));
    }
    let warm_rss = f.peak_rss_kib();
    drop(f);
    let (cold_med, cold_max) = median_max(cold);
    let (init_med, _) = median_max(init);
    let (warm_med, warm_max) = median_max(warm);
    let (wait_med, wait_max) = median_max(waits);
    let mut single = Section::new(
        "health-canary: one endpoint",
        &format!(
            "The release binary under the Runtime API emulator against moto (CloudWatch) and a DNS server on \
             loopback; one HTTPS endpoint on loopback with a certificate from a test CA (`ca_bundle`), one probe \
             per minute (a fresh connection and TLS handshake every time), the minute's read-back for the \
             failback hold (GetMetricData) and one PutMetricData call. Cold: a fresh process per run, \
             {COLD_RUNS} runs, from spawning the process to its first response. Warm: {WARM_RUNS} invocations \
             of one process. Both without the wait for the minute, which is idle (shown apart). For scale: the \
             CloudWatch Synthetics canary it replaces costs about 0.0012 USD per run and starts a browser runtime."
        ),
    );
    single.row(
        "cold start to first response (median)",
        ms(cold_med),
        &format!("max {}", ms(cold_max)),
    );
    single.row(
        "init (process start to first `next`, median)",
        ms(init_med),
        "config, SDK client, resolver, TLS roots",
    );
    single.row(
        "warm invocation (median)",
        ms(warm_med),
        &format!("max {}", ms(warm_max)),
    );
    single.row(
        "wait for the minute (median)",
        ms(wait_med),
        &format!(
            "max {}; a {MINUTE_MS} ms minute here, up to 60 s deployed",
            ms(wait_max)
        ),
    );
    single.row(
        "peak RSS, cold run",
        kib_to_mb(cold_rss.iter().max().copied()),
        "max over the cold runs",
    );
    single.row(
        "peak RSS after warm runs",
        kib_to_mb(warm_rss),
        &format!("after {WARM_RUNS} invocations"),
    );
    single.row(
        "release binary (x86_64, this machine)",
        mib(std::fs::metadata(&binary)?.len()),
        "stripped",
    );
    single.row("zip (deflate, as uploaded)", mib(zip_size(&binary)?), "");

    // 50 endpoints, answered after 0 to 300 ms.
    let many = env_for(Value::Array((0..ENDPOINTS).map(endpoint).collect()));
    let start = Instant::now();
    let f = FunctionProcess::spawn(&binary, &many).await?;
    let (first_out, first) = invoke_ok(&f).await?;
    let cold_total = start.elapsed();
    let first_work = working(&first_out, &first);
    let mut walls = Vec::new();
    let mut slowest = Vec::new();
    for _ in 0..WARM_RUNS {
        let (out, inv) = invoke_ok(&f).await?;
        let wall = working(&out, &inv);
        let endpoints = out["endpoints"].as_array().cloned().unwrap_or_default();
        let ok = endpoints
            .iter()
            .filter(|e| e["outcomes"] == json!(["ok"]))
            .count();
        if ok != ENDPOINTS {
            return Err(format!("only {ok} of {ENDPOINTS} endpoints were healthy: {out}").into());
        }
        let max = endpoints
            .iter()
            .filter_map(|e| e["last_latency_ms"].as_u64())
            .max()
            .unwrap_or_default();
        walls.push(wall);
        slowest.push(Duration::from_millis(max));
    }
    let rss = f.peak_rss_kib();
    let (wall_med, wall_max) = median_max(walls.clone());
    let (slow_med, _) = median_max(slowest.clone());
    let overheads: Vec<Duration> = walls
        .iter()
        .zip(&slowest)
        .map(|(w, s)| w.saturating_sub(*s))
        .collect();
    let (over_med, over_max) = median_max(overheads);
    let mut fifty = Section::new(
        "health-canary: 50 endpoints in one minute",
        &format!(
            "{ENDPOINTS} HTTPS endpoints (5 loopback servers answering after 0, 50, 100, 200 and 300 ms), probed \
             concurrently in one round by one process, then one PutMetricData call with the minute's 154 data \
             (Success, Latency, CertificateExpiryDays per endpoint; the vote, UnhealthyEndpoints, \
             DegradedEndpoints and SoonestCertificateExpiryDays). Every probe makes a full TLS \
             handshake (no resumption) and offers h2. {WARM_RUNS} warm invocations; the slowest probe is the \
             largest `last_latency_ms` of the invocation. The wall time should be close to the slowest probe: the \
             difference is 50 handshakes on 2 cores plus publishing."
        ),
    );
    fifty.row(
        "invocation wall time (median)",
        ms(wall_med),
        &format!("max {}", ms(wall_max)),
    );
    fifty.row(
        "slowest probe (median)",
        ms(slow_med),
        "server delay 300 ms + connect + TLS",
    );
    fifty.row(
        "wall time minus slowest probe (median)",
        ms(over_med),
        &format!("max {}", ms(over_max)),
    );
    fifty.row(
        "first invocation, cold process",
        ms(first_work),
        &format!(
            "spawn to response {}, both without the wait",
            ms(cold_total.saturating_sub(first.duration - first_work))
        ),
    );
    fifty.row(
        "peak RSS",
        kib_to_mb(rss),
        &format!("after {} invocations", WARM_RUNS + 1),
    );
    Ok(vec![single, fifty])
}

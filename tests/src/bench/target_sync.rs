//! The target-sync part of the bench: cold start, warm invocations, peak
//! memory and size of the release binary, and one run with 100 mappings.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tether_shared::aws::limits::ELB_DESCRIBE;
use tether_shared::sync::config::{DEFAULT_DESCRIBE_EVERY, DEFAULT_DESCRIBE_SHARE};

use super::{Section, median_max, ms};
use crate::aws::tag;
use crate::lambda::{FunctionProcess, Invocation, function_binary};
use crate::moto::BoxError;
use crate::throttle::{
    BUCKET_SIZE, Counts, EC2_BUCKET, REFILL_PER_SECOND, TAGGING_BUCKET, ThrottlingProxy,
};
use crate::world::{World, scheduled_event, scheduled_event_at};
use tether_shared::sync::GROUP_SYNCED;

const COLD_RUNS: usize = 10;
const WARM_RUNS: usize = 30;
const MAPPINGS: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(60);

async fn invoke_ok(f: &FunctionProcess) -> Result<Duration, BoxError> {
    let inv = f.invoke(scheduled_event(), TIMEOUT).await?;
    inv.result
        .map_err(|e| format!("invocation failed: {e}\n{}", f.logs()))?;
    Ok(inv.duration)
}

/// Zips `binary` as `bootstrap` (deflate), as Lambda receives it; returns the zip's size.
pub fn zip_size(binary: &Path) -> Result<u64, BoxError> {
    let dir = std::env::temp_dir().join(format!("tether-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let zip = dir.join("function.zip");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n    z.write(sys.argv[2], 'bootstrap')",
        ])
        .arg(&zip)
        .arg(binary)
        .status()?;
    if !status.success() {
        return Err(format!("zipping {} failed", binary.display()).into());
    }
    let size = std::fs::metadata(&zip)?.len();
    std::fs::remove_dir_all(&dir)?;
    Ok(size)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
}

pub async fn run() -> Result<Vec<Section>, BoxError> {
    let binary = function_binary("target-sync");
    let w = World::start().await?;
    let alb = "internal-bench-alb-1.us-east-1.elb.amazonaws.com";
    let tg = w.target_group("bench", 80).await?;
    w.answer(alb, &["10.0.1.10", "10.0.2.10", "10.0.1.11"]);
    let env = w.env(&[(
        "TARGETS",
        &json!([{"dns_name": alb, "target_group_arn": tg, "port": 80}]).to_string(),
    )]);

    // First run registers; the measured runs are the steady state of every minute.
    let first = w.spawn("target-sync", &env).await?;
    invoke_ok(&first).await?;
    drop(first);

    let mut cold = Vec::new();
    let mut init = Vec::new();
    let mut cold_rss = Vec::new();
    for _ in 0..COLD_RUNS {
        let start = Instant::now();
        let f = w.spawn("target-sync", &env).await?;
        invoke_ok(&f).await?;
        cold.push(start.elapsed());
        init.extend(f.init_duration());
        cold_rss.extend(f.peak_rss_kib());
    }
    let f = w.spawn("target-sync", &env).await?;
    invoke_ok(&f).await?;
    let mut warm = Vec::new();
    for _ in 0..WARM_RUNS {
        warm.push(invoke_ok(&f).await?);
    }
    let warm_rss = f.peak_rss_kib();
    drop(f);

    let (cold_med, cold_max) = median_max(cold);
    let (init_med, _) = median_max(init);
    let (warm_med, warm_max) = median_max(warm);
    let mut one = Section::new(
        "target-sync: one mapping",
        &format!(
            "The release binary under the Runtime API emulator against moto and a DNS server on loopback; \
             one mapping, 3 addresses, steady state (no change to apply). Cold: a fresh process per run, \
             {COLD_RUNS} runs, from spawning the process to receiving its first response. Warm: {WARM_RUNS} \
             invocations of one process. Peak RSS is the process's VmHWM. For scale: the AWS sample it \
             replaces (`populate_NLB_TG_with_ALB.py`, Python), run cold the same way, took about 550 ms and \
             89 MB when it was measured for this project (not re-run by `make bench`)."
        ),
    );
    one.row(
        "cold start to first response (median)",
        ms(cold_med),
        &format!("max {}", ms(cold_max)),
    );
    one.row(
        "init (process start to first `next`, median)",
        ms(init_med),
        "config, SDK clients, resolver",
    );
    one.row(
        "warm invocation (median)",
        ms(warm_med),
        &format!("max {}", ms(warm_max)),
    );
    one.row(
        "peak RSS, cold run",
        cold_rss
            .iter()
            .max()
            .map_or("n/a".into(), |k| format!("{:.1} MB", *k as f64 / 1024.0)),
        "max over the cold runs",
    );
    one.row(
        "peak RSS after warm runs",
        warm_rss.map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
        &format!("after {WARM_RUNS} invocations"),
    );
    let size = std::fs::metadata(&binary)?.len();
    one.row(
        "release binary (x86_64, this machine)",
        mib(size),
        "stripped; fat lto, codegen-units 1 (SDK crates 16), opt-level s",
    );
    one.row(
        "zip (deflate)",
        mib(zip_size(&binary)?),
        "the arm64 artifacts are measured in the last section",
    );

    Ok(vec![one, many(&w).await?, fleet().await?, quota().await?])
}

/// One invocation with 100 mappings (100 names, 100 target groups).
async fn many(w: &World) -> Result<Section, BoxError> {
    let mut mappings = Vec::new();
    for i in 0..MAPPINGS {
        let name = format!("internal-svc{i}-1.us-east-1.elb.amazonaws.com");
        let tg = w.target_group(&format!("svc-{i}"), 80).await?;
        answer_three(w, &name, i);
        mappings.push(json!({"dns_name": name, "target_group_arn": tg, "port": 80}));
    }
    let env = w.env(&[("TARGETS", &Value::Array(mappings).to_string())]);
    let start = Instant::now();
    let f = w.spawn("target-sync", &env).await?;
    let first = invoke_ok(&f).await?;
    let cold_total = start.elapsed();
    let steady = invoke_ok(&f).await?;
    let rss = f.peak_rss_kib();

    let mut s = Section::new(
        "target-sync: 100 mappings in one invocation",
        &format!(
            "100 DNS names (3 addresses each) into 100 target groups, one process, no proxy. The first \
             invocation registers all 300 targets and writes 100 state objects; the second is the steady state. \
             Every group is described each run while the budget allows, and the function paces its Describe \
             calls to its share of ELB's bucket ({}) even where nothing throttles it, so {MAPPINGS} groups take \
             at least {:.0} s: the pacing, not moto, sets these figures.",
            tether_share(),
            share_floor(MAPPINGS),
        ),
    );
    s.row(
        "first invocation (300 registrations)",
        ms(first),
        &format!("cold process, spawn to response {}", ms(cold_total)),
    );
    s.row(
        "steady-state invocation",
        ms(steady),
        "resolve, describe, read state; nothing to write",
    );
    s.row(
        "peak RSS",
        rss.map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
        "",
    );
    Ok(s)
}

const FLEET: usize = 300;

/// 300 target groups opted in by tag, in one invocation, through a proxy that
/// enforces ELB's Describe bucket (40, refilled at 10 per second).
async fn fleet() -> Result<Section, BoxError> {
    let w = World::start().await?;
    for i in 0..FLEET {
        let name = format!("internal-fleet{i}-1.us-east-1.elb.amazonaws.com");
        let tg = w.target_group(&format!("fleet-{i}"), 80).await?;
        tag(&w.elb, &tg, &[("tether:source", &format!("dns:{name}"))]).await?;
        answer_three(&w, &name, i);
    }
    let proxy = ThrottlingProxy::start(&w.moto.endpoint()).await?;
    let env = w.env(&[("AWS_ENDPOINT_URL", &proxy.endpoint())]);
    let f = w.spawn("target-sync", &env).await?;
    let timeout = TICK;
    let mut s = Section::new(
        &format!("target-sync: {FLEET} tagged target groups, ELB throttling enforced"),
        &format!(
            "{FLEET} target groups tagged `tether:source=dns:<name>` (3 addresses each), discovered and synced \
             in one invocation with Lambda's {} s deadline, as deployed. Every call goes through a proxy \
             (`tether_tests::throttle`) that enforces ELB's documented bucket for Describe calls ({}) and answers \
             `Throttling` beyond it. The floor is the time the bucket allows for the run's Describe calls: at \
             tether's share ({}), which the function paces itself to, and at ELB's whole rate. Goal: no failed \
             mapping, under 1.2 x the floor at tether's share; what does not fit the deadline is deferred to the \
             next run, not failed.",
            TICK.as_secs(),
            elb_bucket(),
            tether_share(),
        ),
    );
    for run in [
        "first invocation (registers 900 targets)",
        "steady-state invocation",
    ] {
        let (inv, counts) = invoke_counted(&f, &proxy, timeout).await?;
        let floor = share_floor(counts.describes);
        let took = inv.duration.as_secs_f64();
        s.row(
            run,
            ms(inv.duration),
            &format!(
                "{}; {:.2} x the floor at tether's share; {} groups read, {} deferred; {} PutMetricData calls \
                 carrying {} values",
                costs(&counts, &inv.result, FLEET),
                if floor > 0.0 { took / floor } else { 0.0 },
                described_groups(&inv.result),
                deferred_groups(&inv.result, FLEET),
                counts.metric_calls,
                counts.metric_values,
            ),
        );
    }
    s.row(
        "peak RSS",
        f.peak_rss_kib()
            .map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
        "",
    );
    let lines: Vec<usize> = f
        .logs()
        .lines()
        .filter(|l| l.contains(GROUP_SYNCED))
        .map(|l| l.len() + 1)
        .collect();
    s.row(
        "log line per group and run",
        format!(
            "{:.0} bytes",
            lines.iter().sum::<usize>() as f64 / lines.len().max(1) as f64
        ),
        &format!(
            "JSON, the per-group detail; {} lines over the two runs",
            lines.len()
        ),
    );
    // The same fleet with every group's own metrics (MAPPING_METRICS=true).
    let env = w.env(&[
        ("AWS_ENDPOINT_URL", &proxy.endpoint()),
        ("MAPPING_METRICS", "true"),
    ]);
    let detailed = w.spawn("target-sync", &env).await?;
    let (inv, counts) = invoke_counted(&detailed, &proxy, timeout).await?;
    s.row(
        "steady state, every group detailed (MAPPING_METRICS=true)",
        ms(inv.duration),
        &format!(
            "{} failed mappings; {} PutMetricData calls carrying {} values{}",
            failed_count(&inv.result, FLEET),
            counts.metric_calls,
            counts.metric_values,
            unpublished(&inv.result),
        ),
    );
    Ok(s)
}

/// One invocation, with what the proxy counted during it.
async fn invoke_counted(
    f: &FunctionProcess,
    proxy: &ThrottlingProxy,
    timeout: Duration,
) -> Result<(Invocation, Counts), BoxError> {
    proxy.reset();
    let inv = f.invoke(scheduled_event(), timeout).await?;
    Ok((inv, proxy.counts()))
}

/// Says so when the run's metrics were not published (a failed invocation's
/// message ends with the reason).
fn unpublished(result: &Result<Value, Value>) -> String {
    match result {
        Ok(_) => String::new(),
        Err(e) => e["errorMessage"]
            .as_str()
            .and_then(|m| m.split_once("metrics: "))
            .map(|(_, why)| format!("; metrics NOT published: {why}"))
            .unwrap_or_default(),
    }
}

/// Three addresses for the `i`th name, distinct across names.
fn answer_three(w: &World, name: &str, i: usize) {
    let (a, b) = (i / 250, i % 250);
    let addrs = [1, 2, 3].map(|n| format!("10.{n}.{a}.{b}"));
    w.answer(name, &addrs.each_ref().map(String::as_str));
}

/// ELB's default quota of target groups per account and region
/// (`TETHER_BENCH_GROUPS` measures another number, for a quick look).
fn quota_groups() -> usize {
    std::env::var("TETHER_BENCH_GROUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}
/// Lambda's timeout in the template: one tick.
const TICK: Duration = Duration::from_secs(60);
/// Runs after the first, at most, for a fleet with no state to be in sync.
const FILL_RUNS: usize = 30;

/// 3,000 tagged target groups (the ELB quota) in one account and region,
/// one function, one-minute ticks, through the proxy that enforces ELB's
/// Describe bucket (with other users taking a quarter of its rate), EC2's
/// and the tagging API's.
pub async fn quota() -> Result<Section, BoxError> {
    let quota = quota_groups();
    let w = World::start().await?;
    let started = Instant::now();
    let names: Vec<String> = (0..quota)
        .map(|i| format!("internal-q{i}-1.us-east-1.elb.amazonaws.com"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        answer_three(&w, name, i);
    }
    // Created with their tag, 16 at a time.
    let creates = futures_util::stream::iter(names.iter().enumerate().map(|(i, name)| {
        let (elb, vpc) = (w.elb.clone(), w.network.vpc_id.clone());
        async move {
            elb.create_target_group()
                .name(format!("q-{i}"))
                .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Tcp)
                .port(80)
                .vpc_id(vpc)
                .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
                .tags(
                    aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                        .key("tether:source")
                        .value(format!("dns:{name}"))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
        }
    }))
    .buffer_unordered(16);
    let created: Vec<_> = creates.collect().await;
    if let Some(Err(e)) = created.into_iter().find(Result::is_err) {
        return Err(format!("CreateTargetGroup: {e}").into());
    }
    let setup = started.elapsed();
    let proxy = ThrottlingProxy::start(&w.moto.endpoint()).await?;
    // The account's other ELB users: a quarter of the bucket's rate.
    proxy.other_users(REFILL_PER_SECOND / 4.0);
    let env = w.env(&[("AWS_ENDPOINT_URL", &proxy.endpoint())]);
    let f = w.spawn("target-sync", &env).await?;
    let mut minute = unix_now() - unix_now() % 60;
    let mut next = || {
        minute += 60;
        scheduled_event_at(minute)
    };

    let mut s = Section::new(
        &format!("target-sync: {quota} tagged target groups (the ELB quota), every limit enforced"),
        &format!(
            "{quota} target groups tagged `tether:source=dns:<name>` (3 addresses each), one function, one \
             invocation per one-minute tick with Lambda's {} s deadline, default settings (`DescribeShare` \
             {DEFAULT_DESCRIBE_SHARE}%, `DescribeEvery` {DEFAULT_DESCRIBE_EVERY}). Every call goes through the proxy \
             (`tether_tests::throttle`): ELB's documented Describe bucket ({}), from which simulated other users \
             of the account take a quarter of the rate ({} per second) all along; EC2's documented bucket per \
             Describe action ({}, {} per second); the tagging API's assumed bucket for GetResources ({}, {} per \
             second; moto pages GetResources by about 100 tags rather than 100 groups, so it takes a page or so more \
             than AWS would). The floor is the time the buckets allow for the run's ELB Describe calls: at tether's \
             share ({}), and at ELB's whole rate. Creating the groups in moto took {:.0} s (not part of any figure).",
            TICK.as_secs(),
            elb_bucket(),
            REFILL_PER_SECOND / 4.0,
            EC2_BUCKET.0,
            EC2_BUCKET.1,
            TAGGING_BUCKET.0,
            TAGGING_BUCKET.1,
            tether_share(),
            setup.as_secs_f64(),
        ),
    );
    // The first run: no state at all, so every group must be read.
    let (first, counts) = invoke_at(&f, &proxy, next(), TICK).await?;
    let deferred = deferred_groups(&first.result, quota);
    s.row(
        "first run (no state: every group to read)",
        ms(first.duration),
        &format!(
            "{}; {} groups read, {deferred} deferred to the next runs (not failed)",
            costs(&counts, &first.result, quota),
            described_groups(&first.result),
        ),
    );
    // The next runs read what the first could not.
    let fill_start = Instant::now();
    let mut fill_runs = 0;
    let mut left = deferred;
    while left > 0 && fill_runs < FILL_RUNS {
        let (inv, _) = invoke_at(&f, &proxy, next(), TICK).await?;
        left = deferred_groups(&inv.result, quota);
        fill_runs += 1;
    }
    s.row(
        "runs until every group is in sync",
        format!("{}", fill_runs + 1),
        &format!(
            "{} deferred after the last; the runs after the first took {:.0} s in all, each within the tick",
            left,
            fill_start.elapsed().as_secs_f64()
        ),
    );
    // Steady state: one warm run to settle, then the measured one.
    invoke_at(&f, &proxy, next(), TICK).await?;
    let (steady, counts) = invoke_at(&f, &proxy, next(), TICK).await?;
    s.row(
        "steady run (warm container, nothing changed)",
        ms(steady.duration),
        &format!(
            "{}; {:.3} Describe calls per quiet group (goal 1/K = {:.3}); {:.3} S3 calls per quiet group (goal 0)",
            costs(&counts, &steady.result, quota),
            counts.describes as f64 / quota as f64,
            1.0 / DEFAULT_DESCRIBE_EVERY as f64,
            (counts.s3_gets + counts.s3_puts) as f64 / quota as f64,
        ),
    );
    s.row(
        "peak RSS (warm container, after the runs above)",
        f.peak_rss_kib()
            .map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
        "goal: under 64 MB (the function has 128 MB)",
    );
    drop(f);
    // A new container: no cache; it reads every state once.
    let cold = w.spawn("target-sync", &env).await?;
    let (inv, counts) = invoke_at(&cold, &proxy, next(), TICK).await?;
    s.row(
        "steady run, cold container",
        ms(inv.duration),
        &format!(
            "{}; peak RSS {}",
            costs(&counts, &inv.result, quota),
            cold.peak_rss_kib()
                .map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
        ),
    );
    Ok(s)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One invocation of the tick at `event`, with what the proxy counted.
async fn invoke_at(
    f: &FunctionProcess,
    proxy: &ThrottlingProxy,
    event: Value,
    timeout: Duration,
) -> Result<(Invocation, Counts), BoxError> {
    let before = proxy.counts();
    let inv = f.invoke(event, timeout).await?;
    let after = proxy.counts();
    Ok((inv, since(before, after)))
}

/// What the proxy counted between two readings (the other users run on).
fn since(a: Counts, b: Counts) -> Counts {
    Counts {
        describes: b.describes - a.describes,
        throttled: b.throttled - a.throttled,
        others: b.others - a.others,
        others_throttled: b.others_throttled - a.others_throttled,
        ec2: b.ec2 - a.ec2,
        ec2_throttled: b.ec2_throttled - a.ec2_throttled,
        tagging: b.tagging - a.tagging,
        tagging_throttled: b.tagging_throttled - a.tagging_throttled,
        s3_gets: b.s3_gets - a.s3_gets,
        s3_puts: b.s3_puts - a.s3_puts,
        metric_calls: b.metric_calls - a.metric_calls,
        metric_values: b.metric_values - a.metric_values,
    }
}

/// Seconds that `describes` Describe calls take from a full bucket of
/// `size` tokens refilled at `refill` per second.
fn floor(describes: usize, size: f64, refill: f64) -> f64 {
    (describes as f64 - size).max(0.0) / refill
}

/// tether's default share of ELB's Describe bucket, which the function
/// paces itself to: (burst, refill per second).
fn share() -> (f64, f64) {
    let share = DEFAULT_DESCRIBE_SHARE as f64 / 100.0;
    (ELB_DESCRIBE.size * share, ELB_DESCRIBE.refill * share)
}

/// The floor at tether's default share.
fn share_floor(describes: usize) -> f64 {
    let (size, refill) = share();
    floor(describes, size, refill)
}

/// ELB's Describe bucket as the proxy enforces it, in words.
fn elb_bucket() -> String {
    format!("{BUCKET_SIZE}, refilled at {REFILL_PER_SECOND} per second")
}

/// tether's default share of it, in words.
fn tether_share() -> String {
    let (size, refill) = share();
    format!(
        "`DescribeShare` {DEFAULT_DESCRIBE_SHARE}%: a burst of {size}, then {refill} per second"
    )
}

/// A run's calls, its floor and its failures, in words.
fn costs(c: &Counts, result: &Result<Value, Value>, quota: usize) -> String {
    let share_floor = share_floor(c.describes);
    let elb_floor = floor(c.describes, BUCKET_SIZE, REFILL_PER_SECOND);
    format!(
        "{} ELB Describe calls ({} throttled), floor {share_floor:.1} s at tether's share, {elb_floor:.1} s at \
         ELB's whole rate; other users: {} calls, {} refused; {} GetResources ({} throttled); {} EC2 calls; \
         S3 {} reads, {} writes; {} failed mappings{}",
        c.describes,
        c.throttled,
        c.others,
        c.others_throttled,
        c.tagging,
        c.tagging_throttled,
        c.ec2,
        c.s3_gets,
        c.s3_puts,
        failed_count(result, quota),
        unpublished(result),
    )
}

fn failed_count(result: &Result<Value, Value>, quota: usize) -> usize {
    match result {
        Ok(out) => out["mappings"]
            .as_array()
            .map_or(0, |ms| ms.iter().filter(|m| !m["error"].is_null()).count()),
        Err(e) => e["errorMessage"]
            .as_str()
            .and_then(|m| m.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(quota),
    }
}

fn described_groups(result: &Result<Value, Value>) -> usize {
    let Ok(out) = result else {
        return 0;
    };
    out["mappings"]
        .as_array()
        .map_or(0, |ms| ms.iter().filter(|m| m["described"] == true).count())
}

fn deferred_groups(result: &Result<Value, Value>, quota: usize) -> usize {
    let Ok(out) = result else {
        return quota;
    };
    out["mappings"]
        .as_array()
        .map_or(0, |ms| ms.iter().filter(|m| m["deferred"] == true).count())
}

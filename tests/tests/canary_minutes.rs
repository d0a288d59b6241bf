//! health-canary's minutes, end to end: the built binary under the Runtime
//! API emulator, moto for CloudWatch, HTTP servers on loopback. A minute is
//! `CANARY_MINUTE_MS` long here (a few seconds, so the tests wait seconds,
//! not minutes), and every event names the minute it was due, as the
//! Scheduler's input does; the tests wait for events (data appearing, an
//! invocation answering), never for a wall-clock boundary of their own.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde_json::{Value, json};
use tether_tests::https::{Behaviour, TestServer, refused_addr};
use tether_tests::lambda::{FunctionProcess, function_binary};
use tether_tests::moto::{BoxError, Moto};
use tether_tests::world::{due_event, minute_start};

type R = Result<(), BoxError>;

const NAMESPACE: &str = "Tether/Minutes";
const STACK: &str = "tether-minutes";
const TIMEOUT: Duration = Duration::from_secs(30);

struct Setup {
    moto: Moto,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// The minute's length the canary is given.
    minute: Duration,
}

impl Setup {
    async fn start(minute: Duration) -> Result<Setup, BoxError> {
        let moto = Moto::start().await?;
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        Ok(Setup {
            moto,
            cloudwatch,
            minute,
        })
    }

    /// One endpoint per server (by its URL), `rounds` rounds `interval_ms`
    /// apart, as the function `function` of the stack.
    fn env(
        &self,
        targets: &Value,
        rounds: u32,
        interval_ms: u64,
        function: &str,
    ) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        env.extend(
            [
                ("CANARY_TARGETS", targets.to_string()),
                ("PROBES_PER_INVOCATION", rounds.to_string()),
                ("PROBE_INTERVAL_MS", interval_ms.to_string()),
                ("CANARY_MINUTE_MS", self.minute.as_millis().to_string()),
                ("METRICS_NAMESPACE", NAMESPACE.into()),
                ("STACK_NAME", STACK.into()),
                ("AWS_LAMBDA_FUNCTION_NAME", function.into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    }

    /// The function, started and waiting for its first event.
    async fn spawn(&self, env: &[(String, String)]) -> Result<FunctionProcess, BoxError> {
        let f = FunctionProcess::spawn(&function_binary("health-canary"), env).await?;
        f.ready(TIMEOUT).await?;
        Ok(f)
    }

    /// The minute that holds now.
    fn this_minute(&self) -> SystemTime {
        minute_start(SystemTime::now(), self.minute)
    }

    /// A region metric's statistic, per period of one test minute
    /// (timestamp -> value), over the last 10 minutes.
    async fn region(
        &self,
        metric: &str,
        stat: Statistic,
    ) -> Result<BTreeMap<SystemTime, f64>, BoxError> {
        self.series(metric, ("Stack", STACK), stat).await
    }

    async fn series(
        &self,
        metric: &str,
        (name, value): (&str, &str),
        stat: Statistic,
    ) -> Result<BTreeMap<SystemTime, f64>, BoxError> {
        let now = SystemTime::now();
        let out = self
            .cloudwatch
            .get_metric_statistics()
            .namespace(NAMESPACE)
            .metric_name(metric)
            .dimensions(Dimension::builder().name(name).value(value).build())
            .start_time((now - Duration::from_secs(600)).into())
            .end_time((now + Duration::from_secs(60)).into())
            .period(self.minute.as_secs() as i32)
            .statistics(stat.clone())
            .send()
            .await?;
        let mut series = BTreeMap::new();
        for d in out.datapoints() {
            let at = SystemTime::try_from(*d.timestamp().ok_or("no timestamp")?)?;
            let v = match stat {
                Statistic::Sum => d.sum(),
                Statistic::Maximum => d.maximum(),
                _ => d.sample_count(),
            };
            series.insert(at, v.ok_or("no value")?);
        }
        Ok(series)
    }
}

fn url(server: &TestServer) -> String {
    format!("http://127.0.0.1:{}/health", server.port())
}

async fn ok(f: &FunctionProcess, event: Value) -> Result<Value, BoxError> {
    f.invoke(event, TIMEOUT)
        .await?
        .result
        .map_err(|e| format!("invocation failed: {e}\n{}", f.logs()).into())
}

/// Issue 4: no minute is judged before its last probe lands. While the
/// invocation runs, the test watches CloudWatch: the first time anything of
/// the minute is there, the server has already answered all three probes,
/// and what is there is the whole minute, stamped with its start: the minute
/// after the one the schedule was due in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_is_published_only_once_its_last_probe_is_in() -> R {
    let s = Setup::start(Duration::from_secs(4)).await?;
    let server = TestServer::http(Behaviour::slow(Duration::from_millis(300))).await?;
    let targets = json!([{"name": "orders", "url": url(&server), "timeout_ms": 800}]);
    let f = s.spawn(&s.env(&targets, 3, 1000, "canary-a")).await?;
    let due = s.this_minute();
    let invocation = f.invoke(due_event(due), TIMEOUT);
    // Until the minute is visible (or long after it should be).
    let watch = async {
        for _ in 0..400 {
            let seen = s.region("RegionUnhealthy", Statistic::SampleCount).await?;
            let success = s
                .series("Success", ("Endpoint", "orders"), Statistic::SampleCount)
                .await?;
            if !seen.is_empty() || !success.is_empty() {
                let requests = server.requests().len();
                // One PutMetricData call carries the minute: read it whole
                // (the first look may have fallen between its two queries).
                let seen = s.region("RegionUnhealthy", Statistic::SampleCount).await?;
                let success = s
                    .series("Success", ("Endpoint", "orders"), Statistic::SampleCount)
                    .await?;
                return Ok::<_, BoxError>((requests, seen, success));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err("the minute never became visible".into())
    };
    let (done, first) = tokio::join!(invocation, watch);
    let (requests, votes, success) = first?;
    assert_eq!(
        requests, 3,
        "data were visible before the last probe was in"
    );
    let covered = due + s.minute;
    assert_eq!(votes, BTreeMap::from([(covered, 1.0)]));
    assert_eq!(
        success,
        BTreeMap::from([(covered, 3.0)]),
        "all of the minute at once"
    );
    let out = done?
        .result
        .map_err(|e| format!("invocation failed: {e}\n{}", f.logs()))?;
    assert_eq!(
        out["minute"].as_str(),
        Some(tether_shared::canary::rfc3339(covered).as_str())
    );
    assert_eq!(
        (&out["rounds"], &out["vote"]),
        (&json!(3), &json!("healthy"))
    );
    assert_eq!(
        s.region("RegionUnhealthy", Statistic::Sum).await?,
        BTreeMap::from([(covered, -1.0)])
    );
    let logs = f.logs();
    let minute_lines = logs
        .lines()
        .filter(|l| l.contains("canary minute done"))
        .count();
    assert_eq!(minute_lines, 1, "{logs}");
    Ok(())
}

/// A delivery later than its minute's first round can start covers nothing:
/// no probe, no vote, and a failed invocation that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_after_its_minute_began_covers_nothing_and_fails() -> R {
    let s = Setup::start(Duration::from_secs(3)).await?;
    let server = TestServer::http(Behaviour::ok()).await?;
    let targets = json!([{"name": "orders", "url": url(&server), "timeout_ms": 500}]);
    let f = s.spawn(&s.env(&targets, 1, 1000, "canary-a")).await?;
    // Due two minutes ago: its minute began one minute ago.
    let due = s.this_minute() - s.minute * 2;
    let err = f
        .invoke(due_event(due), TIMEOUT)
        .await?
        .result
        .err()
        .ok_or("a late delivery should fail")?;
    assert_eq!(err["errorType"], "CanaryFailed");
    let message = err["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("no vote in that minute"), "{message}");
    assert_eq!(server.connections(), 0);
    assert!(
        s.region("RegionUnhealthy", Statistic::SampleCount)
            .await?
            .is_empty()
    );
    Ok(())
}

/// Failback waits for FAILBACK_MINUTES good minutes, and the hold is read
/// back from CloudWatch: a fresh process (a cold start, or the second
/// execution environment that overlapping invocations use) still holds the
/// region unhealthy after the minute another process found it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failback_hold_survives_a_cold_start() -> R {
    let s = Setup::start(Duration::from_secs(3)).await?;
    let server = TestServer::http(Behaviour::status(503, "down")).await?;
    let targets = json!([{"name": "orders", "url": url(&server), "timeout_ms": 500}]);
    let env = s.env(&targets, 1, 1000, "canary-a");
    let due = s.this_minute();
    let first = s.spawn(&env).await?;
    let down = ok(&first, due_event(due)).await?;
    assert_eq!(
        (&down["vote"], &down["unhealthy"]),
        (&json!("unhealthy"), &json!(["orders"]))
    );
    drop(first);
    server.set(Behaviour::ok());
    let fresh = s.spawn(&env).await?;
    let mut votes = Vec::new();
    for k in 1..4u32 {
        let out = ok(&fresh, due_event(due + s.minute * k)).await?;
        assert!(out.get("history_error").is_none(), "{out}");
        votes.push((out["vote"].clone(), out["held"].clone()));
    }
    assert_eq!(
        votes,
        [
            (json!("unhealthy"), json!(true)),
            (json!("unhealthy"), json!(true)),
            (json!("healthy"), Value::Null)
        ]
    );
    let sums: Vec<f64> = s
        .region("RegionUnhealthy", Statistic::Sum)
        .await?
        .into_values()
        .collect();
    assert_eq!(sums, [1.0, 1.0, 1.0, -1.0]);
    // The detail counts each minute's own findings, not the hold.
    let detail: Vec<f64> = s
        .series(
            "UnhealthyEndpoints",
            ("FunctionName", "canary-a"),
            Statistic::Maximum,
        )
        .await?
        .into_values()
        .collect();
    assert_eq!(detail, [1.0, 0.0, 0.0, 0.0]);
    Ok(())
}

/// One function per zone, each voting in the same minute: the region
/// metric's Sum is the majority, so one zone that cannot reach the endpoint
/// does not fail the region over alone (two zones: a tie, healthy), and two
/// of three do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_vote_and_one_zone_alone_does_not_decide() -> R {
    let s = Setup::start(Duration::from_secs(3)).await?;
    let server = TestServer::http(Behaviour::ok()).await?;
    // A zone whose route to the endpoint is gone: its probes are refused.
    let reachable = json!([{"name": "orders", "url": url(&server), "timeout_ms": 500}]);
    let cut_off = json!([{"name": "orders", "url": "http://orders.zone.test/health",
                          "connect_to": refused_addr()?.to_string(), "timeout_ms": 500}]);
    let zones = [
        s.spawn(&s.env(&cut_off, 1, 1000, "canary-a")).await?,
        s.spawn(&s.env(&reachable, 1, 1000, "canary-b")).await?,
        s.spawn(&s.env(&cut_off, 1, 1000, "canary-c")).await?,
    ];
    let due = s.this_minute();
    // Minute 1: zones a and b (one of two cut off). Minute 2: all three (two of three cut off).
    let (a, b) = tokio::join!(ok(&zones[0], due_event(due)), ok(&zones[1], due_event(due)));
    let (a, b) = (a?, b?);
    assert_eq!(
        (&a["vote"], &b["vote"]),
        (&json!("unhealthy"), &json!("healthy"))
    );
    let next = due + s.minute;
    let (a, b, c) = tokio::join!(
        ok(&zones[0], due_event(next)),
        ok(&zones[1], due_event(next)),
        ok(&zones[2], due_event(next))
    );
    let votes: Vec<Value> = [a?, b?, c?].iter().map(|o| o["vote"].clone()).collect();
    assert_eq!(
        votes,
        [json!("unhealthy"), json!("healthy"), json!("unhealthy")]
    );
    // The region alarm: Sum > 0 is unhealthy.
    let sums = s.region("RegionUnhealthy", Statistic::Sum).await?;
    assert_eq!(
        sums,
        BTreeMap::from([(due + s.minute, 0.0), (next + s.minute, 1.0)])
    );
    Ok(())
}

//! The runtime on fakes of its three edges (probes, metrics, history) under
//! tokio's paused clock: when rounds run, when the minute is published and
//! what it carries, deterministically and without waiting.

use super::*;
use crate::aws::AwsError;
use crate::config::Vars;
use crate::metrics::Datum;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

const SECOND: Duration = Duration::from_secs(1);

/// A minute boundary `n` minutes into the test's epoch.
fn minute(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((28_333_334 + n) * 60)
}

fn result(ok: bool) -> ProbeResult {
    ProbeResult {
        outcome: if ok {
            Ok(())
        } else {
            Err(Failure {
                class: FailureClass::Connect,
                message: "refused".into(),
                snippet: None,
            })
        },
        status: ok.then_some(200),
        latency: Duration::from_millis(25),
        cert_expiry_days: Some(40.0),
        attempts: 1,
        first_failure: None,
        unreachable: Vec::new(),
        address: None,
        protocol: Some("h2"),
    }
}

type Outcome = Box<dyn Fn(usize, u32) -> bool + Send + Sync>;

/// Answers after `takes`; records when each probe started.
struct FakeProbe {
    ok: Mutex<Outcome>,
    takes: Duration,
    calls: Mutex<Vec<(Instant, usize, u32)>>,
}

impl Probe for FakeProbe {
    fn probe(
        &self,
        index: usize,
        _endpoint: &Endpoint,
        round: u32,
    ) -> impl Future<Output = ProbeResult> + Send {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), index, round));
        let ok = (self.ok.lock().unwrap())(index, round);
        let takes = self.takes;
        async move {
            tokio::time::sleep(takes).await;
            result(ok)
        }
    }
}

/// Records when each publication started and what it carried; takes `takes`.
#[derive(Default)]
struct FakeMetrics {
    takes: Duration,
    published: Mutex<Vec<(Instant, Vec<Datum>)>>,
}

impl Metrics for FakeMetrics {
    async fn publish(&self, _namespace: &str, data: &[Datum]) -> Result<(), AwsError> {
        self.published
            .lock()
            .unwrap()
            .push((Instant::now(), data.to_vec()));
        tokio::time::sleep(self.takes).await;
        Ok(())
    }
}

/// Gives `minutes`, or fails when `None`; records the ranges asked for.
struct FakeHistory {
    minutes: Option<Vec<SystemTime>>,
    asked: Mutex<Vec<(SystemTime, SystemTime)>>,
}

impl History for FakeHistory {
    async fn unhealthy_minutes(
        &self,
        _namespace: &str,
        function: &str,
        from: SystemTime,
        to: SystemTime,
        _minute: Duration,
    ) -> Result<Vec<SystemTime>, AwsError> {
        assert_eq!(function, "tether-canary-a");
        self.asked.lock().unwrap().push((from, to));
        self.minutes
            .clone()
            .ok_or_else(|| AwsError::new("cloudwatch:GetMetricData", function, "Throttling"))
    }
}

type TestCanary = Canary<FakeProbe, FakeMetrics, FakeHistory>;

/// Two endpoints, 6 rounds 10 s apart, the hold of 3 minutes.
fn canary(ok: Outcome, publish_takes: Duration, history: Option<Vec<SystemTime>>) -> TestCanary {
    let vars: HashMap<&str, &str> = [
        (
            "CANARY_TARGETS",
            r#"[{"name": "orders", "url": "https://orders.example/"}, {"name": "billing", "url": "https://billing.example/"}]"#,
        ),
        ("PROBES_PER_INVOCATION", "6"),
        ("PROBE_INTERVAL_MS", "10000"),
        ("STACK_NAME", "tether"),
        ("AWS_LAMBDA_FUNCTION_NAME", "tether-canary-a"),
    ]
    .into();
    let vars = Vars(|name: &str| vars.get(name).map(|v| v.to_string()));
    let config = CanaryConfig::from_vars(&vars).unwrap();
    let settings = Settings::from_vars(&vars, &config).unwrap();
    Canary::new(
        config,
        settings,
        FakeProbe {
            ok: Mutex::new(ok),
            takes: Duration::from_millis(2500),
            calls: Mutex::new(Vec::new()),
        },
        FakeMetrics {
            takes: publish_takes,
            ..FakeMetrics::default()
        },
        FakeHistory {
            minutes: history,
            asked: Mutex::new(Vec::new()),
        },
    )
}

fn all_ok() -> Outcome {
    Box::new(|_, _| true)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

/// Seconds from `origin` to each probe's start, per round.
fn round_starts(c: &TestCanary, origin: Instant) -> Vec<f64> {
    let calls = c.prober.calls.lock().unwrap();
    let mut starts: Vec<f64> = calls
        .iter()
        .filter(|(_, index, _)| *index == 0)
        .map(|(at, _, _)| (*at - origin).as_secs_f64())
        .collect();
    starts.dedup();
    starts
}

#[tokio::test(start_paused = true)]
async fn a_minute_is_published_once_after_its_last_round_with_every_datum_at_its_start() {
    // Publishing takes longer than a minute: the rounds were all done before
    // it began, at their places.
    let c = canary(all_ok(), Duration::from_secs(70), Some(Vec::new()));
    let origin = Instant::now();
    let report = c.run(minute(0) + 30 * SECOND, Some(minute(0)), far()).await;
    assert_eq!(report.minute.as_deref(), Some(rfc3339(minute(1)).as_str()));
    assert_eq!(
        round_starts(&c, origin),
        [30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    );
    let rounds: Vec<u32> = c.prober.calls.lock().unwrap().iter().map(|c| c.2).collect();
    assert_eq!(rounds, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    let published = c.metrics.published.lock().unwrap();
    assert_eq!(published.len(), 1, "one call per minute");
    let (at, data) = &published[0];
    assert_eq!(
        (*at - origin).as_secs_f64(),
        82.5,
        "published once the last round's probes (2.5 s) were in"
    );
    assert!(
        data.iter().all(|d| d.timestamp == Some(minute(1))),
        "{data:?}"
    );
    let region: Vec<&Datum> = data
        .iter()
        .filter(|d| d.name == "RegionUnhealthy")
        .collect();
    assert_eq!(region.len(), 1);
    assert_eq!(region[0].values, [(-1.0, 1.0)]);
    assert_eq!(region[0].dimensions, [("Stack", "tether".to_owned())]);
    assert_eq!((report.rounds, report.vote), (6, Some("healthy")));
    assert_eq!(
        report.waited_ms, 30_000,
        "from arrival to the minute's start"
    );
    assert!(report.failures().is_empty(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn an_invocation_late_in_its_minute_waits_and_covers_the_next_one_whole() {
    let c = canary(all_ok(), Duration::ZERO, Some(Vec::new()));
    let origin = Instant::now();
    let report = c
        .run(
            minute(4) + Duration::from_millis(59_900),
            Some(minute(4)),
            far(),
        )
        .await;
    assert_eq!(report.minute.as_deref(), Some(rfc3339(minute(5)).as_str()));
    let starts = round_starts(&c, origin);
    assert_eq!(starts.len(), 6);
    assert!((starts[0] - 0.1).abs() < 1e-9, "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_delivery_too_late_for_its_minute_covers_nothing_and_fails() {
    let c = canary(all_ok(), Duration::ZERO, Some(Vec::new()));
    let report = c.run(minute(1) + 8 * SECOND, Some(minute(0)), far()).await;
    assert_eq!(report.rounds, 0);
    assert!(c.prober.calls.lock().unwrap().is_empty());
    assert!(c.metrics.published.lock().unwrap().is_empty());
    let failures = report.failures();
    assert!(
        failures[0].contains("arrived 8000 ms after minute")
            && failures[0].contains("no vote in that minute"),
        "{failures:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_before_the_minute_ends_asks_for_a_longer_timeout() {
    let c = canary(all_ok(), Duration::ZERO, Some(Vec::new()));
    let deadline = Instant::now() + 100 * SECOND;
    let report = c
        .run(minute(0) + 10 * SECOND, Some(minute(0)), deadline)
        .await;
    assert_eq!(report.rounds, 0);
    assert!(report.failures()[0].contains("raise the function timeout"));
}

#[tokio::test(start_paused = true)]
async fn the_hold_comes_from_the_minutes_read_back_so_it_survives_a_cold_start() {
    // A fresh canary (no memory) whose function found an endpoint unhealthy
    // in the minute before: its healthy minute still votes unhealthy.
    let c = canary(all_ok(), Duration::ZERO, Some(vec![minute(2)]));
    let report = c.run(minute(2) + SECOND, Some(minute(2)), far()).await;
    assert_eq!((report.vote, report.held), (Some("unhealthy"), true));
    assert!(report.unhealthy.is_empty());
    assert_eq!(
        *c.history.asked.lock().unwrap(),
        [(minute(1), minute(3))],
        "the two minutes before minute 3"
    );
    let data = c.metrics.published.lock().unwrap()[0].1.clone();
    let value = |name: &str| {
        data.iter()
            .find(|d| d.name == name)
            .map(|d| d.values.clone())
    };
    assert_eq!(value("RegionUnhealthy"), Some(vec![(1.0, 1.0)]));
    // The detail counts this minute only: nothing was unhealthy in it.
    assert_eq!(value("UnhealthyEndpoints"), Some(vec![(0.0, 1.0)]));
}

#[tokio::test(start_paused = true)]
async fn without_the_history_the_hold_falls_back_to_this_environments_memory() {
    let c = canary(Box::new(|index, _| index == 1), Duration::ZERO, None);
    let first = c.run(minute(0) + SECOND, Some(minute(0)), far()).await;
    assert_eq!(first.unhealthy, ["orders"]);
    assert_eq!((first.vote, first.held), (Some("unhealthy"), false));
    assert!(
        first
            .history_error
            .as_deref()
            .is_some_and(|e| e.contains("Throttling"))
    );
    *c.prober.ok.lock().unwrap() = all_ok();
    let votes: Vec<(Option<&str>, bool)> = {
        let mut votes = Vec::new();
        for due in 1..4 {
            let r = c.run(minute(due) + SECOND, Some(minute(due)), far()).await;
            votes.push((r.vote, r.held));
        }
        votes
    };
    assert_eq!(
        votes,
        [
            (Some("unhealthy"), true),
            (Some("unhealthy"), true),
            (Some("healthy"), false)
        ]
    );
    // An unreadable history is not an invocation failure.
    assert!(first.failures().is_empty());
}

#[test]
fn the_due_time_comes_from_the_schedules_input() {
    use serde_json::json;
    let due = scheduled_time(&json!({"scheduled_time": "2026-11-24T12:00:00Z"})).unwrap();
    assert_eq!(due.map(rfc3339).as_deref(), Some("2026-11-24T12:00:00Z"));
    assert_eq!(
        scheduled_time(&json!({"detail-type": "Scheduled Event"})),
        Ok(None)
    );
    let err =
        scheduled_time(&json!({"scheduled_time": "<aws.scheduler.scheduled-time>"})).unwrap_err();
    assert!(err.contains("not an RFC 3339 time"), "{err}");
}

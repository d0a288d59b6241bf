//! health-canary: probes private HTTP(S) endpoints from inside the VPC and
//! publishes, once per wall-clock minute, the vote of its availability zone
//! that the region alarm sums and a Route 53 `CLOUDWATCH_METRIC` health
//! check reads.
//!
//! This module is the invocation's runtime. An invocation covers one whole
//! minute ([`minute`]): it waits for the minute, runs each round at its
//! place (every endpoint probed concurrently, each bounded by its own
//! timeout), and once the last round is in decides the minute
//! ([`decision`]) and publishes it in one call ([`publish`]). Publishing
//! comes after the rounds and never delays one: the next round belongs to
//! the next minute, which the next invocation covers on its own clock.
//! Beside the last round, the minutes before are read back from CloudWatch
//! for the failback hold, so that the hold survives a cold start and the
//! second execution environment that the overlapping invocations use.
//!
//! An unhealthy endpoint is a metric, not an error; the invocation fails
//! when the minute could not be published, or no minute could be covered,
//! so that a dead canary is visible in Lambda's `Errors`.

pub mod cert;
pub mod config;
pub mod decision;
pub mod failover;
pub mod load;
pub mod minute;
pub mod probe;
pub mod publish;
pub mod report;
pub mod secrets;
pub mod settings;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use futures_util::future::join_all;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tokio::time::{Instant, sleep_until, timeout_at};
use tracing::{error, info, warn};

use crate::deadline::{RESPONSE_MARGIN, lambda_deadline};
use crate::dns::{HickoryDns, Lookup};
use crate::metrics::{CloudWatch, Metrics};
pub use config::{CanaryConfig, Endpoint, StatusSet};
pub use decision::{Rule, Vote};
pub use load::{fetch_targets, read_secrets};
pub use minute::{Plan, Timing};
pub use probe::{BuildError, Failure, FailureClass, ProbeResult, Prober};
pub use publish::{CloudWatchHistory, History};
pub use report::{CanaryFailed, CanaryReport, EndpointReport};
pub use secrets::{AwsSecrets, SecretStore, Secrets};
pub use settings::{Identity, Settings};

/// How long reading back the earlier minutes may take; it runs beside the
/// last round, so that it delays nothing when it is quicker.
pub const HISTORY_TIMEOUT: Duration = Duration::from_secs(2);

/// The event field that carries the Scheduler's due time (the schedule's
/// input: `{"scheduled_time": "<aws.scheduler.scheduled-time>"}`).
pub const SCHEDULED_TIME: &str = "scheduled_time";

/// One probe of one endpoint, as the runtime calls it.
pub trait Probe: Send + Sync {
    /// Probes endpoint `index` (of the configuration) in round `round`.
    fn probe(
        &self,
        index: usize,
        endpoint: &Endpoint,
        round: u32,
    ) -> impl Future<Output = ProbeResult> + Send;
}

impl<L: Lookup + 'static> Probe for Prober<L> {
    fn probe(
        &self,
        index: usize,
        endpoint: &Endpoint,
        round: u32,
    ) -> impl Future<Output = ProbeResult> + Send {
        Prober::probe(self, index, endpoint, round)
    }
}

/// The canary with its clients, built once per cold start.
pub struct Canary<P, M, H> {
    pub config: CanaryConfig,
    pub settings: Settings,
    prober: P,
    pub metrics: M,
    history: H,
    /// Minutes in which this execution environment found an endpoint
    /// unhealthy (the hold's fallback when CloudWatch cannot be read).
    memory: Mutex<Vec<SystemTime>>,
}

pub type AwsCanary = Canary<Prober<HickoryDns>, CloudWatch, CloudWatchHistory>;

impl AwsCanary {
    /// hickory-resolver for names, CloudWatch for metrics and history.
    pub fn from_sdk(
        config: CanaryConfig,
        settings: Settings,
        secrets: Secrets,
        sdk: &SdkConfig,
    ) -> Result<Self, lambda_runtime::Error> {
        let dns = HickoryDns::new(&config.dns)?;
        let prober = Prober::new(&config.endpoints, Arc::new(dns), secrets)?;
        let client = aws_sdk_cloudwatch::Client::new(sdk);
        Ok(Canary::new(
            config,
            settings,
            prober,
            CloudWatch::new(client.clone()),
            CloudWatchHistory::new(client),
        ))
    }
}

/// The time the schedule was due, from the event; `Err` when the field is
/// there but is not an RFC 3339 time.
pub fn scheduled_time(event: &Value) -> Result<Option<SystemTime>, String> {
    let Some(field) = event.get(SCHEDULED_TIME) else {
        return Ok(None);
    };
    let text = field.as_str().unwrap_or_default();
    DateTime::from_str(text, DateTimeFormat::DateTime)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{SCHEDULED_TIME} {} is not an RFC 3339 time",
                crate::fields::show(field)
            )
        })
}

/// A time as RFC 3339 (`2026-11-24T12:01:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::from(t)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| format!("{} ms", minute::millis(t)))
}

impl<P: Probe, M: Metrics, H: History> Canary<P, M, H> {
    pub fn new(
        config: CanaryConfig,
        settings: Settings,
        prober: P,
        metrics: M,
        history: H,
    ) -> Self {
        Self {
            config,
            settings,
            prober,
            metrics,
            history,
            memory: Mutex::new(Vec::new()),
        }
    }

    /// The Lambda handler: the event's `scheduled_time` names the minute it
    /// was due in; any other event covers the first minute it can.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<CanaryReport, CanaryFailed> {
        let deadline = lambda_deadline(event.context.deadline, RESPONSE_MARGIN);
        let (scheduled, problem) = match scheduled_time(&event.payload) {
            Ok(t) => (t, None),
            Err(e) => {
                warn!(error = %e, "the event's due time is unreadable; covering the first minute that can be covered whole");
                (None, Some(e))
            }
        };
        let mut report = self
            .run(SystemTime::now(), scheduled, Instant::from_std(deadline))
            .await;
        if report.note.is_none() {
            report.note = problem;
        }
        if report.failures().is_empty() {
            Ok(report)
        } else {
            Err(CanaryFailed(report))
        }
    }

    /// Covers the minute an invocation arriving at `now` (the wall clock at
    /// the call, paired with the tokio clock's now) and due at `scheduled`
    /// covers, publishing before `deadline`.
    pub async fn run(
        &self,
        now: SystemTime,
        scheduled: Option<SystemTime>,
        deadline: Instant,
    ) -> CanaryReport {
        let origin = Instant::now();
        let instant = |t: SystemTime| origin + t.duration_since(now).unwrap_or_default();
        let timing = self.settings.timing;
        let endpoints = &self.config.endpoints;
        let mut report = CanaryReport {
            scheduled: scheduled.map(rfc3339),
            rounds_planned: timing.rounds,
            endpoints: endpoints
                .iter()
                .map(|e| EndpointReport::new(&e.name))
                .collect(),
            ..CanaryReport::default()
        };
        let plan = match timing.plan(now, scheduled) {
            Ok(plan) => plan,
            Err(late) => {
                let note = format!(
                    "arrived {} ms after minute {} began, later than the {} ms its first round may start late: this function has no vote in that minute",
                    late.late_by.as_millis(),
                    rfc3339(late.minute),
                    timing.grace().as_millis()
                );
                warn!(minute = %rfc3339(late.minute), "{note}");
                report.minute = Some(rfc3339(late.minute));
                report.note = Some(note);
                return report;
            }
        };
        report.minute = Some(rfc3339(plan.minute));
        report.waited_ms = plan.rounds[0]
            .duration_since(now)
            .unwrap_or_default()
            .as_millis() as u64;
        if instant(plan.publish_by) > deadline {
            let note = format!(
                "the Lambda deadline comes before minute {} can be covered and published (by {}): raise the function timeout (an invocation waits up to a minute for its minute, then probes it)",
                rfc3339(plan.minute),
                rfc3339(plan.publish_by)
            );
            warn!("{note}");
            report.note = Some(note);
            return report;
        }
        let last = plan.rounds.len() - 1;
        let mut history = None;
        for (k, start) in plan.rounds.iter().enumerate() {
            sleep_until(instant(*start)).await;
            let round = join_all(
                endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| self.probe_logged(k as u32, i, e)),
            );
            let results = if k == last {
                let (results, read) = tokio::join!(round, self.read_history(plan.minute, deadline));
                history = Some(read);
                results
            } else {
                round.await
            };
            report.rounds += 1;
            for (entry, result) in report.endpoints.iter_mut().zip(results) {
                entry.add(result);
            }
        }
        self.decide_and_publish(&plan, history, deadline, &mut report)
            .await;
        info!(
            minute = report.minute.as_deref(),
            waited_ms = report.waited_ms,
            vote = report.vote,
            held = report.held,
            rounds = report.rounds,
            endpoints = endpoints.len(),
            unhealthy = report.unhealthy.len(),
            degraded = report.endpoints.iter().filter(|e| e.degraded > 0).count(),
            "canary minute done"
        );
        report
    }

    /// The minute's decision, remembered, and its data published.
    async fn decide_and_publish(
        &self,
        plan: &Plan,
        history: Option<Result<Vec<SystemTime>, String>>,
        deadline: Instant,
        report: &mut CanaryReport,
    ) {
        let rule = &self.settings.rule;
        for e in &mut report.endpoints {
            e.healthy = rule.healthy(e.successes);
        }
        report.unhealthy = report
            .endpoints
            .iter()
            .filter(|e| !e.healthy)
            .map(|e| e.name.clone())
            .collect();
        let unhealthy_now = !report.unhealthy.is_empty();
        let mut known = self
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match history {
            Some(Ok(minutes)) => known.extend(minutes),
            Some(Err(e)) => {
                warn!(error = %e, "earlier minutes not read back; the hold uses this environment's memory");
                report.history_error = Some(e);
            }
            None => {}
        }
        let vote = decision::vote(
            rule,
            plan.minute,
            self.settings.timing.minute,
            unhealthy_now,
            &known,
        );
        self.remember(plan.minute, unhealthy_now);
        report.vote = Some(if vote.is_healthy() {
            "healthy"
        } else {
            "unhealthy"
        });
        report.held = vote == Vote::Unhealthy { held: true };
        let data = publish::minute_data(
            plan.minute,
            &report.endpoints,
            vote,
            &self.settings.identity,
        );
        let minute = rfc3339(plan.minute);
        match timeout_at(
            deadline,
            self.metrics.publish(&self.config.namespace, &data),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(minute, error = %e, "metrics not published");
                report.metrics_errors.push(format!("minute {minute}: {e}"));
            }
            Err(_) => {
                error!(minute, "metrics not published before the deadline");
                report.metrics_errors.push(format!(
                    "minute {minute}: PutMetricData did not finish before the Lambda deadline"
                ));
            }
        }
    }

    /// The minutes before `minute` that the hold looks at, in which this
    /// function found an endpoint unhealthy (none to read without a hold or
    /// a function name).
    async fn read_history(
        &self,
        minute: SystemTime,
        deadline: Instant,
    ) -> Result<Vec<SystemTime>, String> {
        let back = self.settings.rule.failback_minutes - 1;
        let Some(function) = &self.settings.identity.function else {
            return Ok(Vec::new());
        };
        if back == 0 {
            return Ok(Vec::new());
        }
        let len = self.settings.timing.minute;
        let read = self.history.unhealthy_minutes(
            &self.config.namespace,
            function,
            minute - len * back,
            minute,
            len,
        );
        let until = deadline.min(Instant::now() + HISTORY_TIMEOUT);
        match timeout_at(until, read).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "cloudwatch:GetMetricData did not answer within {} ms",
                HISTORY_TIMEOUT.as_millis()
            )),
        }
    }

    /// Keeps `minute` if it had an unhealthy endpoint, and forgets minutes
    /// older than the hold looks back.
    fn remember(&self, minute: SystemTime, unhealthy: bool) {
        let window = self.settings.timing.minute * self.settings.rule.failback_minutes;
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        memory.retain(|m| minute.duration_since(*m).is_ok_and(|ago| ago < window));
        if unhealthy {
            memory.push(minute);
        }
    }

    /// One probe, with its log lines.
    async fn probe_logged(&self, round: u32, index: usize, e: &Endpoint) -> ProbeResult {
        let result = self.prober.probe(index, e, round).await;
        probe::log_probe(round, e, &result);
        result
    }
}

#[cfg(test)]
mod tests;

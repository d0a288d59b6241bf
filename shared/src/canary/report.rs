//! What an invocation did: its response, and its error when it failed.

use lambda_runtime::Diagnostic;
use serde::Serialize;

use super::probe::{Failure, ProbeResult};

/// What one endpoint's probes of the minute found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointReport {
    pub name: String,
    /// Per round: `ok` or the failure class.
    pub outcomes: Vec<&'static str>,
    pub successes: u32,
    /// The minute's decision for this endpoint (set once the minute is in).
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Latency of the last probe, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// The lowest of the minute (the earliest expiry of the chains seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry_days: Option<f64>,
    /// Rounds that succeeded only after an address did not connect.
    #[serde(skip_serializing_if = "is_zero")]
    pub degraded: u32,
    /// Rounds whose first attempt failed and were retried.
    #[serde(skip_serializing_if = "is_zero")]
    pub retried: u32,
    /// `h2` or `http/1.1` (the last connection's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    /// Latencies of the successful probes, in ms (published as `Latency`).
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EndpointReport {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            outcomes: Vec::new(),
            successes: 0,
            healthy: false,
            last_status: None,
            last_latency_ms: None,
            last_failure: None,
            cert_expiry_days: None,
            degraded: 0,
            retried: 0,
            protocol: None,
            latencies_ms: Vec::new(),
        }
    }

    /// Takes in one round's probe.
    pub fn add(&mut self, result: ProbeResult) {
        self.outcomes.push(result.outcome_name());
        if result.is_ok() {
            self.successes += 1;
            self.latencies_ms
                .push((result.latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0);
        }
        self.last_status = result.status;
        self.last_latency_ms = Some(result.latency.as_millis() as u64);
        self.cert_expiry_days = match (self.cert_expiry_days, result.cert_expiry_days) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.degraded += u32::from(result.is_degraded());
        self.retried += u32::from(result.attempts > 1);
        self.protocol = result.protocol.or(self.protocol);
        self.last_failure = result.outcome.err();
    }
}

/// What the invocation did; its response.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct CanaryReport {
    /// The minute covered (its start, RFC 3339), once planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minute: Option<String>,
    /// When the schedule was due, from the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
    pub rounds_planned: u32,
    pub rounds: u32,
    /// From the invocation's arrival to its first round: the wait for its
    /// minute (billed, idle).
    pub waited_ms: u64,
    /// `healthy` or `unhealthy`: the vote published for the region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote: Option<&'static str>,
    /// Unhealthy only because an endpoint was unhealthy in the last
    /// `FAILBACK_MINUTES - 1` minutes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Endpoints unhealthy this minute.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<String>,
    pub endpoints: Vec<EndpointReport>,
    /// Why no minute, or something to know about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The earlier minutes could not be read back (the hold used this
    /// environment's memory only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics_errors: Vec<String>,
}

impl CanaryReport {
    /// What makes the invocation fail: unpublished metrics, or no minute.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .metrics_errors
            .iter()
            .map(|e| format!("metrics not published: {e}"))
            .collect();
        if self.rounds == 0 {
            out.push(
                self.note
                    .clone()
                    .unwrap_or_else(|| "no probe round ran".to_owned()),
            );
        }
        out
    }
}

/// The invocation failed; carries the report.
#[derive(thiserror::Error)]
#[error("{}", self.summary())]
pub struct CanaryFailed(pub CanaryReport);

impl CanaryFailed {
    fn summary(&self) -> String {
        format!(
            "health-canary failed after {} of {} rounds: {}",
            self.0.rounds,
            self.0.rounds_planned,
            self.0.failures().join("; ")
        )
    }
}

/// The runtime logs a failed invocation's error with `Debug`: make that the
/// readable summary.
impl std::fmt::Debug for CanaryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl From<CanaryFailed> for Diagnostic {
    fn from(e: CanaryFailed) -> Self {
        Diagnostic {
            error_type: "CanaryFailed".into(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_fails_only_on_metrics_or_no_round() {
        let mut r = CanaryReport {
            rounds_planned: 2,
            rounds: 2,
            ..CanaryReport::default()
        };
        assert!(r.failures().is_empty());
        r.metrics_errors.push("minute 12:01: denied".into());
        let failed = CanaryFailed(r.clone());
        assert_eq!(
            format!("{failed:?}"),
            "health-canary failed after 2 of 2 rounds: metrics not published: minute 12:01: denied"
        );
        r.metrics_errors.clear();
        r.rounds = 0;
        assert_eq!(r.failures().len(), 1);
    }
}

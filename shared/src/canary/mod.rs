//! health-canary: probes private HTTP(S) endpoints from inside the VPC and
//! publishes the metrics a CloudWatch alarm turns into a Route 53
//! `CLOUDWATCH_METRIC` health check.
//!
//! One invocation runs up to `PROBES_PER_INVOCATION` rounds, spaced by
//! `PROBE_INTERVAL_MS` from round start to round start. In a round every
//! endpoint is probed concurrently, each bounded by its own timeout; then the
//! round's metrics of all endpoints go out in one PutMetricData call, so that
//! an alarm sees a failure within seconds. No round is started that could
//! not finish (longest timeout plus publishing) before the Lambda deadline.
//!
//! A probe that needed a second address (one refused or never answered the
//! TCP handshake) is healthy but degraded: its log line names the address,
//! and the round's `DegradedEndpoints` (no dimension) counts such endpoints.
//!
//! An unhealthy endpoint is a metric (`Success` 0), not an error; the
//! invocation fails only when metrics could not be published (or no round
//! fitted before the deadline), so that a dead canary is visible.

pub mod cert;
pub mod config;
pub mod failover;
pub mod probe;
pub mod secrets;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use futures_util::future::join_all;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use tokio::time::{sleep_until, timeout_at};
use tracing::{error, info, warn};

use crate::deadline::{RESPONSE_MARGIN, lambda_deadline};
use crate::dns::{HickoryDns, Lookup};
use crate::metrics::{CloudWatch, Datum, Metrics, Unit};
pub use config::{CanaryConfig, Endpoint, StatusSet};
pub use probe::{BuildError, Failure, FailureClass, ProbeResult, Prober};
pub use secrets::{AwsSecrets, SecretStore, Secrets};

/// Time kept for publishing a round's metrics, on top of the margin
/// the deadline margin keeps for the response.
pub const PUBLISH_MARGIN: Duration = Duration::from_secs(1);

/// Metric names and the dimension, as the alarms use them.
pub const METRIC_SUCCESS: &str = "Success";
pub const METRIC_LATENCY: &str = "Latency";
pub const METRIC_CERT_EXPIRY: &str = "CertificateExpiryDays";
/// Per round, without dimension: endpoints that answered, but only after an
/// address did not accept a connection (one dead node of several).
pub const METRIC_DEGRADED: &str = "DegradedEndpoints";
pub const DIMENSION: &str = "Endpoint";

/// The round's metrics, all stamped with the round's start `at`: per
/// endpoint `Success` (1 or 0), `Latency` (ms, on success) and
/// `CertificateExpiryDays` (https, once the certificates came: the earliest
/// expiry of the chain); and `DegradedEndpoints` for the round.
pub fn round_data(round: &[(&Endpoint, &ProbeResult)], at: SystemTime) -> Vec<Datum> {
    let mut data = Vec::with_capacity(round.len() * 3 + 1);
    for (endpoint, result) in round {
        let dims = [(DIMENSION, endpoint.name.clone())];
        let ok = result.is_ok();
        data.push(Datum::new(
            METRIC_SUCCESS,
            &dims,
            Unit::Count,
            if ok { 1.0 } else { 0.0 },
        ));
        if ok {
            let ms = (result.latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
            data.push(Datum::new(METRIC_LATENCY, &dims, Unit::Milliseconds, ms));
        }
        if let Some(days) = result.cert_expiry_days {
            data.push(Datum::new(METRIC_CERT_EXPIRY, &dims, Unit::None, days));
        }
    }
    let degraded = round.iter().filter(|(_, r)| r.is_degraded()).count();
    data.push(Datum::count(METRIC_DEGRADED, &[], degraded));
    data.into_iter().map(|d| d.at(at)).collect()
}

/// What one endpoint's probes of this invocation found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointReport {
    pub name: String,
    /// Per round: `ok` or the failure class.
    pub outcomes: Vec<&'static str>,
    pub successes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Latency of the last probe, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
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
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the invocation did; its response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryReport {
    pub rounds_planned: u32,
    pub rounds: u32,
    pub endpoints: Vec<EndpointReport>,
    /// Why fewer rounds than planned ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics_errors: Vec<String>,
}

impl CanaryReport {
    /// What makes the invocation fail: unpublished metrics, or no round.
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

/// The canary with its clients, built once per cold start.
pub struct Canary<M, L> {
    pub config: CanaryConfig,
    prober: Prober<L>,
    pub metrics: M,
}

pub type AwsCanary = Canary<CloudWatch, HickoryDns>;

/// Reads `CANARY_TARGETS_S3_URI`'s object (at most 1 MiB) at cold start.
pub async fn fetch_targets(sdk: &SdkConfig, uri: config::S3Uri) -> Result<String, String> {
    const MAX: u64 = 1024 * 1024;
    let out = crate::aws::s3_client(sdk)
        .get_object()
        .bucket(&uri.bucket)
        .key(&uri.key)
        .send()
        .await
        .map_err(|e| {
            crate::aws::AwsError::from_sdk("s3:GetObject", uri.to_string(), &e).to_string()
        })?;
    let bytes = match crate::aws::read_bounded(out, MAX).await? {
        crate::aws::Bounded::Read(bytes) => bytes,
        crate::aws::Bounded::TooLarge(_) => {
            return Err(format!("the object is larger than {MAX} bytes"));
        }
    };
    String::from_utf8(bytes).map_err(|_| "the object is not UTF-8 text".to_owned())
}

/// Reads the secret header values (Secrets Manager, SSM), with clients
/// built only when some header needs them (and kept to read them again).
pub async fn read_secrets(
    config: &CanaryConfig,
    sdk: &SdkConfig,
) -> Result<Secrets, crate::config::ConfigError> {
    if config.endpoints.iter().all(|e| e.secret_headers.is_empty()) {
        return Ok(Secrets::none());
    }
    Secrets::read(config, AwsSecrets::new(sdk)).await
}

impl AwsCanary {
    /// hickory-resolver for names, CloudWatch for metrics.
    pub fn from_sdk(
        config: CanaryConfig,
        secrets: Secrets,
        sdk: &SdkConfig,
    ) -> Result<Self, lambda_runtime::Error> {
        let dns = HickoryDns::new(&config.dns)?;
        let metrics = CloudWatch::new(aws_sdk_cloudwatch::Client::new(sdk));
        Ok(Canary::new(config, secrets, dns, metrics)?)
    }
}

impl<M: Metrics, L: Lookup + 'static> Canary<M, L> {
    pub fn new(
        config: CanaryConfig,
        secrets: Secrets,
        dns: L,
        metrics: M,
    ) -> Result<Self, BuildError> {
        let prober = Prober::new(&config.endpoints, Arc::new(dns), secrets)?;
        Ok(Self {
            config,
            prober,
            metrics,
        })
    }

    /// The Lambda handler: any event (the schedule's) starts one run.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<CanaryReport, CanaryFailed> {
        let report = self
            .run(lambda_deadline(event.context.deadline, RESPONSE_MARGIN))
            .await;
        if report.failures().is_empty() {
            Ok(report)
        } else {
            Err(CanaryFailed(report))
        }
    }

    /// Runs the rounds that fit before `deadline` (by which the last
    /// metrics must be out).
    pub async fn run(&self, deadline: Instant) -> CanaryReport {
        let deadline = tokio::time::Instant::from_std(deadline);
        let endpoints = &self.config.endpoints;
        let planned = self.config.probes_per_invocation;
        let round_length = self.config.longest_timeout() + PUBLISH_MARGIN;
        let mut report = CanaryReport {
            rounds_planned: planned,
            rounds: 0,
            endpoints: endpoints
                .iter()
                .map(|e| EndpointReport {
                    name: e.name.clone(),
                    outcomes: Vec::new(),
                    successes: 0,
                    last_status: None,
                    last_latency_ms: None,
                    last_failure: None,
                    cert_expiry_days: None,
                    degraded: 0,
                    retried: 0,
                    protocol: None,
                })
                .collect(),
            note: None,
            metrics_errors: Vec::new(),
        };
        let start = tokio::time::Instant::now();
        for round in 0..planned {
            let scheduled = start + self.config.probe_interval * round;
            let begin = scheduled.max(tokio::time::Instant::now());
            if begin + round_length > deadline {
                let note = format!(
                    "stopped after {round} of {planned} rounds: the next round (up to {} ms with publishing) would not finish before the Lambda deadline",
                    round_length.as_millis()
                );
                warn!(rounds = round, planned, "{note}");
                report.note = Some(note);
                break;
            }
            sleep_until(begin).await;
            let started_at = SystemTime::now();
            let results = join_all(
                endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| self.probe_logged(round, i, e)),
            )
            .await;
            report.rounds += 1;
            let pairs: Vec<(&Endpoint, &ProbeResult)> = endpoints.iter().zip(&results).collect();
            let data = round_data(&pairs, started_at);
            let published = timeout_at(
                deadline,
                self.metrics.publish(&self.config.namespace, &data),
            );
            match published.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(round, error = %e, "metrics not published");
                    report
                        .metrics_errors
                        .push(format!("round {}: {e}", round + 1));
                }
                Err(_) => {
                    error!(round, "metrics not published before the deadline");
                    report.metrics_errors.push(format!(
                        "round {}: PutMetricData did not finish before the Lambda deadline",
                        round + 1
                    ));
                }
            }
            for (entry, result) in report.endpoints.iter_mut().zip(results) {
                entry.outcomes.push(result.outcome_name());
                entry.successes += u32::from(result.is_ok());
                entry.last_status = result.status;
                entry.last_latency_ms = Some(result.latency.as_millis() as u64);
                entry.cert_expiry_days = result.cert_expiry_days.or(entry.cert_expiry_days);
                entry.degraded += u32::from(result.is_degraded());
                entry.retried += u32::from(result.attempts > 1);
                entry.protocol = result.protocol.or(entry.protocol);
                entry.last_failure = result.outcome.err();
            }
        }
        if report.rounds == 0 && report.note.is_some() {
            report.note = Some(format!(
                "no round fits before the Lambda deadline: a round takes up to {} ms (longest timeout_ms plus publishing) and 3 s are kept for the response; raise the function timeout",
                round_length.as_millis()
            ));
        }
        info!(
            rounds = report.rounds,
            planned,
            endpoints = endpoints.len(),
            healthy = report
                .endpoints
                .iter()
                .filter(|e| e.outcomes.last() == Some(&"ok"))
                .count(),
            degraded = report.endpoints.iter().filter(|e| e.degraded > 0).count(),
            "canary run done"
        );
        report
    }

    /// One probe, with its log lines.
    async fn probe_logged(&self, round: u32, index: usize, e: &Endpoint) -> ProbeResult {
        let result = self.prober.probe(index, e, round).await;
        probe::log_probe(round, e, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(name: &str) -> Endpoint {
        Endpoint::from_json("T", &json!({"name": name, "url": "https://a.example/"})).unwrap()
    }

    fn result(ok: bool, expiry: Option<f64>) -> ProbeResult {
        ProbeResult {
            outcome: if ok {
                Ok(())
            } else {
                Err(Failure {
                    class: FailureClass::Status,
                    message: "status 500".into(),
                    snippet: None,
                })
            },
            status: Some(if ok { 200 } else { 500 }),
            latency: Duration::from_micros(12_345),
            cert_expiry_days: expiry,
            attempts: 1,
            first_failure: None,
            unreachable: Vec::new(),
            address: None,
            protocol: Some("h2"),
        }
    }

    #[test]
    fn round_data_has_success_for_all_latency_for_successes_and_expiry_when_known() {
        let (a, b, c) = (endpoint("a"), endpoint("b"), endpoint("c"));
        let (ra, rb, rc) = (
            result(true, Some(30.5)),
            result(false, Some(2.0)),
            result(false, None),
        );
        let mut rd = result(true, None);
        rd.unreachable = vec!["10.0.0.1:443: refused".into()];
        let d = endpoint("d");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut data = round_data(&[(&a, &ra), (&b, &rb), (&c, &rc), (&d, &rd)], at);
        assert!(data.iter().all(|d| d.timestamp == Some(at)), "{data:?}");
        let degraded = data.pop().unwrap();
        assert_eq!(
            (
                degraded.name,
                degraded.dimensions.len(),
                degraded.values.clone()
            ),
            ("DegradedEndpoints", 0, vec![(1.0, 1.0)])
        );
        data.retain(|x| x.dimensions[0].1 != "d");
        type Seen<'a> = (&'a str, &'a str, Vec<(f64, f64)>);
        let seen: Vec<Seen> = data
            .iter()
            .map(|d| (d.name, d.dimensions[0].1.as_str(), d.values.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                ("Success", "a", vec![(1.0, 1.0)]),
                ("Latency", "a", vec![(12.3, 1.0)]),
                ("CertificateExpiryDays", "a", vec![(30.5, 1.0)]),
                ("Success", "b", vec![(0.0, 1.0)]),
                ("CertificateExpiryDays", "b", vec![(2.0, 1.0)]),
                ("Success", "c", vec![(0.0, 1.0)]),
            ]
        );
        assert!(
            data.iter()
                .all(|d| d.dimensions.len() == 1 && d.dimensions[0].0 == "Endpoint")
        );
        assert_eq!(data[1].unit, Unit::Milliseconds);
    }

    #[test]
    fn a_report_fails_only_on_metrics_or_no_round() {
        let mut r = CanaryReport {
            rounds_planned: 2,
            rounds: 2,
            endpoints: vec![],
            note: None,
            metrics_errors: vec![],
        };
        assert!(r.failures().is_empty());
        r.metrics_errors.push("round 1: denied".into());
        let failed = CanaryFailed(r.clone());
        assert_eq!(
            format!("{failed:?}"),
            "health-canary failed after 2 of 2 rounds: metrics not published: round 1: denied"
        );
        r.metrics_errors.clear();
        r.rounds = 0;
        assert_eq!(r.failures().len(), 1);
    }
}

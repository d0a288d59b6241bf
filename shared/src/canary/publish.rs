//! What a minute publishes, in one `PutMetricData` call once its last round
//! is in, every datum stamped with the minute's start; and reading back the
//! minutes before it, for the failback hold.
//!
//! - `RegionUnhealthy` (dimension `Stack`): this function's vote, `+1` or
//!   `-1`. The region alarm sums the votes of all the zones' functions (and
//!   an operator's override) per minute; Route 53 reads that alarm.
//! - `UnhealthyEndpoints` (dimension `FunctionName`): how many endpoints
//!   this function found unhealthy this minute, before the hold: the
//!   per-zone detail, and what the hold reads back.
//! - `SoonestCertificateExpiryDays` and `DegradedEndpoints` (dimension
//!   `Stack`): the earliest certificate expiry of any https endpoint, and
//!   how many endpoints answered only after an address did not connect.
//! - Per endpoint (dimension `Endpoint`): `Success` (1 or 0 per probe, as
//!   values and counts: the minute's Average is the success ratio),
//!   `Latency` (ms, per successful probe) and `CertificateExpiryDays` (the
//!   minute's lowest): the detail the dashboard searches, never alarmed on.

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

use super::decision::Vote;
use super::report::EndpointReport;
use super::settings::Identity;
use crate::aws::AwsError;
use crate::metrics::{Datum, Unit};

pub const METRIC_REGION: &str = "RegionUnhealthy";
pub const METRIC_UNHEALTHY: &str = "UnhealthyEndpoints";
pub const METRIC_SOONEST_EXPIRY: &str = "SoonestCertificateExpiryDays";
pub const METRIC_DEGRADED: &str = "DegradedEndpoints";
pub const METRIC_SUCCESS: &str = "Success";
pub const METRIC_LATENCY: &str = "Latency";
pub const METRIC_CERT_EXPIRY: &str = "CertificateExpiryDays";
/// The per-endpoint dimension.
pub const DIMENSION: &str = "Endpoint";
pub const DIMENSION_STACK: &str = "Stack";
pub const DIMENSION_FUNCTION: &str = "FunctionName";

/// The minute's data: every endpoint's detail, this function's count and
/// vote, all at `minute`.
pub fn minute_data(
    minute: SystemTime,
    endpoints: &[EndpointReport],
    vote: Vote,
    identity: &Identity,
) -> Vec<Datum> {
    let mut data = Vec::with_capacity(endpoints.len() * 3 + 4);
    for e in endpoints {
        let dims = [(DIMENSION, e.name.clone())];
        let failures = e.outcomes.len() as u32 - e.successes;
        let values: Vec<(f64, f64)> = [(1.0, e.successes), (0.0, failures)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(v, n)| (v, f64::from(n)))
            .collect();
        if !values.is_empty() {
            data.push(Datum {
                values,
                ..Datum::new(METRIC_SUCCESS, &dims, Unit::Count, 0.0)
            });
        }
        if !e.latencies_ms.is_empty() {
            data.push(Datum {
                values: e.latencies_ms.iter().map(|ms| (*ms, 1.0)).collect(),
                ..Datum::new(METRIC_LATENCY, &dims, Unit::Milliseconds, 0.0)
            });
        }
        if let Some(days) = e.cert_expiry_days {
            data.push(Datum::new(METRIC_CERT_EXPIRY, &dims, Unit::None, days));
        }
    }
    let stack: Vec<(&'static str, String)> = identity
        .stack
        .iter()
        .map(|s| (DIMENSION_STACK, s.clone()))
        .collect();
    data.push(Datum::new(METRIC_REGION, &stack, Unit::Count, vote.value()));
    let degraded = endpoints.iter().filter(|e| e.degraded > 0).count();
    data.push(Datum::count(METRIC_DEGRADED, &stack, degraded));
    let soonest = endpoints
        .iter()
        .filter_map(|e| e.cert_expiry_days)
        .reduce(f64::min);
    if let Some(days) = soonest {
        data.push(Datum::new(METRIC_SOONEST_EXPIRY, &stack, Unit::None, days));
    }
    if let Some(function) = &identity.function {
        let unhealthy = endpoints.iter().filter(|e| !e.healthy).count();
        data.push(Datum::count(
            METRIC_UNHEALTHY,
            &[(DIMENSION_FUNCTION, function.clone())],
            unhealthy,
        ));
    }
    data.into_iter().map(|d| d.at(minute)).collect()
}

/// Reads back the minutes in which this function found an endpoint
/// unhealthy.
pub trait History: Send + Sync {
    /// Starts of the minutes in `[from, to)` (of length `minute`) whose
    /// `UnhealthyEndpoints` of `function` was above 0.
    fn unhealthy_minutes(
        &self,
        namespace: &str,
        function: &str,
        from: SystemTime,
        to: SystemTime,
        minute: Duration,
    ) -> impl Future<Output = Result<Vec<SystemTime>, AwsError>> + Send;
}

/// [`History`] through CloudWatch `GetMetricData` (one metric, one call).
pub struct CloudWatchHistory {
    client: Client,
}

impl CloudWatchHistory {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl History for CloudWatchHistory {
    async fn unhealthy_minutes(
        &self,
        namespace: &str,
        function: &str,
        from: SystemTime,
        to: SystemTime,
        minute: Duration,
    ) -> Result<Vec<SystemTime>, AwsError> {
        const OP: &str = "cloudwatch:GetMetricData";
        let metric = Metric::builder()
            .namespace(namespace)
            .metric_name(METRIC_UNHEALTHY)
            .dimensions(
                Dimension::builder()
                    .name(DIMENSION_FUNCTION)
                    .value(function)
                    .build(),
            )
            .build();
        let query = MetricDataQuery::builder()
            .id("unhealthy")
            .metric_stat(
                MetricStat::builder()
                    .metric(metric)
                    .period(minute.as_secs().max(1) as i32)
                    .stat("Maximum")
                    .build(),
            )
            .build();
        let out = self
            .client
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(from.into())
            .end_time(to.into())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, function, &e))?;
        let mut minutes = Vec::new();
        for result in out.metric_data_results() {
            for (t, v) in result.timestamps().iter().zip(result.values()) {
                let t = SystemTime::try_from(*t)
                    .map_err(|_| AwsError::new(OP, function, "a timestamp out of range"))?;
                if *v > 0.0 && t >= from && t < to {
                    minutes.push(t);
                }
            }
        }
        Ok(minutes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::probe::{Failure, FailureClass, ProbeResult};
    use std::time::UNIX_EPOCH;

    fn result(ok: bool, expiry: Option<f64>, degraded: bool) -> ProbeResult {
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
            unreachable: if degraded {
                vec!["10.0.0.1:443: refused".into()]
            } else {
                Vec::new()
            },
            address: None,
            protocol: Some("h2"),
        }
    }

    fn endpoint(name: &str, results: Vec<ProbeResult>, healthy: bool) -> EndpointReport {
        let mut e = EndpointReport::new(name);
        for r in results {
            e.add(r);
        }
        e.healthy = healthy;
        e
    }

    type Seen<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(f64, f64)>);

    fn seen(data: &[Datum]) -> Vec<Seen<'_>> {
        data.iter()
            .map(|d| {
                let dims = d.dimensions.iter().map(|(k, v)| (*k, v.as_str())).collect();
                (d.name, dims, d.values.clone())
            })
            .collect()
    }

    #[test]
    fn a_minute_publishes_the_detail_the_vote_and_the_soonest_expiry_at_its_start() {
        let minute = UNIX_EPOCH + Duration::from_secs(1_700_000_040);
        let endpoints = [
            endpoint(
                "a",
                // A failed probe is never degraded, whatever it could not reach.
                vec![
                    result(true, Some(30.5), false),
                    result(false, Some(30.4), true),
                ],
                true,
            ),
            endpoint("b", vec![result(false, None, false); 2], false),
            endpoint("c", vec![result(true, Some(2.0), true); 2], true),
        ];
        let identity = Identity {
            stack: Some("tether".into()),
            function: Some("tether-canary-1".into()),
        };
        let data = minute_data(
            minute,
            &endpoints,
            Vote::Unhealthy { held: false },
            &identity,
        );
        assert!(data.iter().all(|d| d.timestamp == Some(minute)), "{data:?}");
        let stack = vec![("Stack", "tether")];
        assert_eq!(
            seen(&data),
            [
                (
                    "Success",
                    vec![("Endpoint", "a")],
                    vec![(1.0, 1.0), (0.0, 1.0)]
                ),
                ("Latency", vec![("Endpoint", "a")], vec![(12.3, 1.0)]),
                (
                    "CertificateExpiryDays",
                    vec![("Endpoint", "a")],
                    vec![(30.4, 1.0)]
                ),
                ("Success", vec![("Endpoint", "b")], vec![(0.0, 2.0)]),
                ("Success", vec![("Endpoint", "c")], vec![(1.0, 2.0)]),
                (
                    "Latency",
                    vec![("Endpoint", "c")],
                    vec![(12.3, 1.0), (12.3, 1.0)]
                ),
                (
                    "CertificateExpiryDays",
                    vec![("Endpoint", "c")],
                    vec![(2.0, 1.0)]
                ),
                ("RegionUnhealthy", stack.clone(), vec![(1.0, 1.0)]),
                ("DegradedEndpoints", stack.clone(), vec![(1.0, 1.0)]),
                ("SoonestCertificateExpiryDays", stack, vec![(2.0, 1.0)]),
                (
                    "UnhealthyEndpoints",
                    vec![("FunctionName", "tether-canary-1")],
                    vec![(1.0, 1.0)]
                ),
            ]
        );
        // Without a stack or a function name: undimensioned region metrics
        // and no per-function detail.
        let plain = minute_data(
            minute,
            &endpoints[1..2],
            Vote::Healthy,
            &Identity::default(),
        );
        assert_eq!(
            seen(&plain),
            [
                ("Success", vec![("Endpoint", "b")], vec![(0.0, 2.0)]),
                ("RegionUnhealthy", vec![], vec![(-1.0, 1.0)]),
                ("DegradedEndpoints", vec![], vec![(0.0, 1.0)]),
            ]
        );
    }
}

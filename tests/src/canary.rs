//! health-canary under test: moto for CloudWatch (and Secrets Manager), the
//! DNS server fixture for names, the built binary under the Runtime API
//! emulator, and helpers that read its report, its log lines and its
//! metrics. `tests/tests/health_canary.rs` and `canary_probes.rs` share it.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde_json::Value;

use crate::dns::{Answer, DnsServer};
use crate::lambda::{FunctionProcess, Invocation, function_binary};
use crate::moto::{BoxError, Moto};
use crate::world::{ips, scheduled_event};

/// The name every HTTPS endpoint's certificate is for.
pub const API: &str = "api.example.test";
pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const NAMESPACE: &str = "Tether/Canary";
/// The canary's minute here (`CANARY_MINUTE_MS`): an invocation covers one
/// whole minute and waits at most that long for it.
pub const MINUTE: Duration = Duration::from_secs(10);

/// moto, the DNS server (API -> 127.0.0.1) and a CloudWatch client.
pub struct Setup {
    pub moto: Moto,
    pub dns: DnsServer,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Setup {
    pub async fn start() -> Result<Setup, BoxError> {
        let moto = Moto::start().await?;
        let dns = DnsServer::start().await?;
        dns.set(API, Answer::Addrs(ips(&["127.0.0.1"])));
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
        Ok(Setup {
            moto,
            dns,
            cloudwatch,
        })
    }

    pub fn env(&self, targets: &Value, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        let dns = self.dns.addr().to_string();
        let targets = targets.to_string();
        for (k, v) in [
            ("CANARY_TARGETS", targets.as_str()),
            ("DNS_SERVERS", dns.as_str()),
            ("DNS_TIMEOUT_MS", "500"),
            ("METRICS_NAMESPACE", NAMESPACE),
            ("CANARY_MINUTE_MS", "10000"),
        ]
        .iter()
        .chain(extra)
        {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    pub async fn spawn(&self, env: &[(String, String)]) -> Result<FunctionProcess, BoxError> {
        FunctionProcess::spawn(&function_binary("health-canary"), env).await
    }

    /// One statistic of a metric of one endpoint over the last 10 minutes,
    /// summed over periods (each test's data falls in one or two minutes).
    pub async fn stat(
        &self,
        metric: &str,
        endpoint: &str,
        stat: Statistic,
    ) -> Result<Option<f64>, BoxError> {
        let now = SystemTime::now();
        let out = self
            .cloudwatch
            .get_metric_statistics()
            .namespace(NAMESPACE)
            .metric_name(metric)
            .dimensions(
                Dimension::builder()
                    .name("Endpoint")
                    .value(endpoint)
                    .build(),
            )
            .start_time((now - Duration::from_secs(600)).into())
            .end_time((now + Duration::from_secs(60)).into())
            .period(60)
            .statistics(stat.clone())
            .send()
            .await?;
        let values: Vec<f64> = out
            .datapoints()
            .iter()
            .filter_map(|d| match stat {
                Statistic::Average => d.average(),
                Statistic::Maximum => d.maximum(),
                Statistic::Minimum => d.minimum(),
                Statistic::Sum => d.sum(),
                _ => d.sample_count(),
            })
            .collect();
        Ok(match (values.len(), stat) {
            (0, _) => None,
            (1, _) => Some(values[0]),
            (_, Statistic::Sum | Statistic::SampleCount) => Some(values.iter().sum()),
            (n, _) => return Err(format!("{metric}/{endpoint}: {n} periods, expected one").into()),
        })
    }
}

pub fn https_url(port: u16) -> String {
    format!("https://{API}:{port}/health")
}

pub async fn ok_invoke(
    f: &FunctionProcess,
    timeout: Duration,
) -> Result<(Value, Invocation), BoxError> {
    let inv = f.invoke(scheduled_event(), timeout).await?;
    let out = inv
        .result
        .clone()
        .map_err(|e| format!("invocation failed: {e}\nlogs:\n{}", f.logs()))?;
    Ok((out, inv))
}

pub fn endpoint<'a>(out: &'a Value, name: &str) -> Result<&'a Value, BoxError> {
    out["endpoints"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["name"] == name))
        .ok_or_else(|| format!("no endpoint {name} in {out}").into())
}

/// The JSON log lines of the probes of one endpoint.
pub fn probe_lines(logs: &str, name: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "probe" && l["fields"]["endpoint"] == name)
        .collect()
}

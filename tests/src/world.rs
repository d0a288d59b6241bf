//! A whole local world for target-sync: moto with a VPC and a state bucket,
//! and a DNS server, plus helpers to run the function against them.

use std::net::IpAddr;

use aws_config::SdkConfig;
use serde_json::{Value, json};

use crate::aws::{
    Network, create_bucket, create_nlb_target_group, create_vpc_with_subnets, registered_targets,
};
use crate::dns::{Answer, DnsServer};
use crate::lambda::{FunctionProcess, function_binary};
use crate::moto::{BoxError, Moto};

pub const BUCKET: &str = "tether-state";

pub struct World {
    pub moto: Moto,
    pub dns: DnsServer,
    pub sdk: SdkConfig,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub network: Network,
}

impl World {
    /// Starts moto and a DNS server, and creates a VPC and the state bucket.
    pub async fn start() -> Result<World, BoxError> {
        let moto = Moto::start().await?;
        let dns = DnsServer::start().await?;
        let sdk = moto.sdk_config().await;
        let s3 = moto.s3(&sdk);
        create_bucket(&s3, BUCKET).await?;
        let network = create_vpc_with_subnets(&moto).await?;
        Ok(World {
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            s3,
            sdk,
            network,
            dns,
            moto,
        })
    }

    /// A new IP target group (TCP) in the VPC; returns its ARN.
    pub async fn target_group(&self, name: &str, port: i32) -> Result<String, BoxError> {
        create_nlb_target_group(&self.elb, &self.network, name, port).await
    }

    /// Registers a target by hand, as someone other than tether would.
    pub async fn register(&self, tg_arn: &str, ip: &str, port: i32) -> Result<(), BoxError> {
        self.elb
            .register_targets()
            .target_group_arn(tg_arn)
            .targets(
                aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                    .id(ip)
                    .port(port)
                    .build(),
            )
            .send()
            .await?;
        Ok(())
    }

    /// The DNS server answers `addrs` for `name`.
    pub fn answer(&self, name: &str, addrs: &[&str]) {
        self.dns.set(name, Answer::Addrs(ips(addrs)));
    }

    /// Environment for target-sync: the emulator, the DNS server, the bucket,
    /// a short DNS timeout, then `extra`.
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        for (k, v) in [
            ("DNS_SERVERS", self.dns.addr().to_string().as_str()),
            ("DNS_TIMEOUT_MS", "400"),
            ("STATE_BUCKET", BUCKET),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// Starts a function binary (from the build of this test run) with `env`.
    pub async fn spawn(
        &self,
        binary: &str,
        env: &[(String, String)],
    ) -> Result<FunctionProcess, BoxError> {
        FunctionProcess::spawn(&function_binary(binary), env).await
    }

    /// The group's registered targets as sorted `ip:port` strings (draining ones included, marked).
    pub async fn targets(&self, tg_arn: &str) -> Result<Vec<String>, BoxError> {
        Ok(registered_targets(&self.elb, tg_arn)
            .await?
            .into_iter()
            .map(|(ip, port, state)| match state.as_str() {
                "draining" => format!("{ip}:{port} (draining)"),
                _ => format!("{ip}:{port}"),
            })
            .collect())
    }

    /// A state object as JSON, or `None` if there is none.
    pub async fn state(&self, key: &str) -> Result<Option<Value>, BoxError> {
        match self.s3.get_object().bucket(BUCKET).key(key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await?.into_bytes();
                Ok(Some(serde_json::from_slice(&bytes)?))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }

    /// The keys where unusable state objects were kept aside.
    pub async fn unusable_keys(&self) -> Result<Vec<String>, BoxError> {
        Ok(self
            .keys()
            .await?
            .into_iter()
            .filter(|k| k.contains(".unusable-"))
            .collect())
    }

    /// Every key in the state bucket.
    pub async fn keys(&self) -> Result<Vec<String>, BoxError> {
        let out = self.s3.list_objects_v2().bucket(BUCKET).send().await?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect())
    }
}

/// Parses addresses written as strings.
pub fn ips(addrs: &[&str]) -> Vec<IpAddr> {
    addrs.iter().filter_map(|a| a.parse().ok()).collect()
}

/// One `TARGETS` mapping as JSON.
pub fn mapping(dns_name: &str, tg_arn: &str, port: u16) -> Value {
    json!({"dns_name": dns_name, "target_group_arn": tg_arn, "port": port})
}

/// The key target-sync uses for a DNS mapping's state (default prefix).
pub fn state_key(tg_arn: &str, dns_name: &str, port: u16) -> String {
    let resource = tg_arn.splitn(6, ':').nth(5).unwrap_or(tg_arn);
    format!("target-sync/{resource}/{dns_name}/{port}.json")
}

/// One scheduled invocation: the function's response or its error body.
/// Each tick of a function process is a minute after its last (the event's
/// `time`, which is the run's schedule period), starting from now.
pub async fn tick(f: &FunctionProcess) -> Result<Result<Value, Value>, BoxError> {
    let minute = next_minute(f);
    Ok(f.invoke(scheduled_event_at(minute), TICK_TIMEOUT)
        .await?
        .result)
}

/// The next tick's time of this function process, in Unix seconds.
fn next_minute(f: &FunctionProcess) -> u64 {
    static TICKS: std::sync::Mutex<Vec<(usize, u64)>> = std::sync::Mutex::new(Vec::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let key = f as *const FunctionProcess as usize;
    let mut ticks = TICKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match ticks.iter_mut().find(|(k, _)| *k == key) {
        Some((_, last)) => {
            *last = (*last + 60).max(now - now % 60);
            *last
        }
        None => {
            ticks.push((key, now - now % 60));
            now - now % 60
        }
    }
}

/// A scheduled event for the tick at `unix` seconds, as the template's
/// schedule delivers it (EventBridge rule events carry the same `time`).
pub fn scheduled_event_at(unix: u64) -> Value {
    let mut event = scheduled_event();
    event["time"] = json!(rfc3339(unix));
    event
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One scheduled invocation that must succeed; the error carries the logs.
pub async fn ok_tick(f: &FunctionProcess) -> Result<Value, BoxError> {
    tick(f)
        .await?
        .map_err(|e| format!("invocation failed: {e}\nlogs:\n{}", f.logs()).into())
}

const TICK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A scheduled event as EventBridge delivers it.
pub fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-24T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/tether-target-sync"],
        "detail": {}
    })
}

/// The event the canary's schedule delivers: its input, with the time the
/// schedule was due (`<aws.scheduler.scheduled-time>`).
pub fn due_event(due: std::time::SystemTime) -> Value {
    json!({ "scheduled_time": tether_shared::canary::rfc3339(due) })
}

/// The start of the minute of length `minute` that holds `t`.
pub fn minute_start(
    t: std::time::SystemTime,
    minute: std::time::Duration,
) -> std::time::SystemTime {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let len = minute.as_millis() as u64;
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms - ms % len)
}

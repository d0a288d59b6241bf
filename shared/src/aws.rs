//! AWS clients, built once at cold start, and the error every adapter returns.
//!
//! Also what the adapters share about AWS's own limits: the batch sizes of
//! the APIs ([`limits`]) and a pacer that keeps a run within a share of an
//! API's token bucket ([`Pacer`]).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
use serde::Serialize;

/// Loads the shared SDK configuration (region, credentials, endpoint) with
/// bounded timeouts, so that a hung call fails well before the Lambda timeout.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(25))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// Attempts per ELB, EC2 or tagging call: throttling slows a run down
/// rather than failing it.
const API_ATTEMPTS: u32 = 8;

/// The clients of a sync, built for throttling (ELB allows 40 Describe
/// calls per account and region, refilled at 10 per second):
/// - adaptive retries: back off on `Throttling` and pace later calls;
/// - no retry quota: the SDK's default stops retrying after a few dozen
///   throttled calls, and a fleet makes hundreds; the run's deadline bounds
///   the retries instead;
/// - no whole-operation timeout (waiting for the rate limiter is part of an
///   operation); each attempt keeps its own.
///
/// S3 keeps the shared configuration's standard retries (3 attempts): a
/// conditional `PutObject` retried after its first attempt landed answers
/// 412, which the engine tells from another writer's change (see
/// `sync::engine`).
#[derive(Clone)]
pub struct SyncClients {
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub tagging: aws_sdk_resourcegroupstagging::Client,
}

impl SyncClients {
    pub fn new(sdk: &SdkConfig) -> Self {
        let retry = RetryConfig::adaptive()
            .with_max_attempts(API_ATTEMPTS)
            .with_max_backoff(Duration::from_secs(5));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(10))
            .disable_operation_timeout()
            .build();
        let partition = |name: &'static str| {
            RetryPartition::custom(name)
                .token_bucket(TokenBucket::unlimited())
                .build()
        };
        let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .retry_partition(partition("tether-elasticloadbalancing"))
            .build();
        let ec2 = aws_sdk_ec2::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .retry_partition(partition("tether-ec2"))
            .build();
        let tagging = aws_sdk_resourcegroupstagging::config::Builder::from(sdk)
            .retry_config(retry)
            .timeout_config(timeouts)
            .retry_partition(partition("tether-tagging"))
            .build();
        SyncClients {
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            tagging: aws_sdk_resourcegroupstagging::Client::from_conf(tagging),
        }
    }
}

/// The APIs' own limits, in one place: batch sizes, page sizes, and the
/// token buckets the pacing is planned against.
pub mod limits {
    /// Targets per RegisterTargets/DeregisterTargets call. The API takes a
    /// list; tether keeps each call small so that a failure half-way
    /// reports what was made.
    pub const TARGETS_PER_CALL: usize = 50;
    /// Target groups per DescribeTargetGroups page (the API's maximum,
    /// `PageSize` 1 to 400: ELB API reference, DescribeTargetGroups).
    pub const TARGET_GROUPS_PER_PAGE: i32 = 400;
    /// Resources per GetResources page (`ResourcesPerPage`, 1 to 100:
    /// Resource Groups Tagging API reference, GetResources).
    pub const TAGGED_PER_PAGE: i32 = 100;
    /// Values per EC2 filter in one DescribeNetworkInterfaces call. Several
    /// values of one filter are ORed (EC2 API reference, `Filter`: "If you
    /// specify multiple values for a filter, the values are joined with an
    /// OR"). The largest number allowed is not in the reference as found;
    /// 50 is an assumed, conservative bound.
    pub const FILTER_VALUES_PER_CALL: usize = 50;
    /// Network interfaces per DescribeNetworkInterfaces page by filter
    /// (`MaxResults` 5 to 1000).
    pub const INTERFACES_PER_PAGE: i32 = 1000;
    /// VPC endpoint ids per DescribeVpcEndpoints call (assumed bound).
    pub const VPC_ENDPOINTS_PER_CALL: usize = 50;
    /// Data points per PutMetricData call (the API takes up to 1000).
    pub const METRIC_DATA_PER_CALL: usize = 500;

    /// A token bucket: `size` tokens, refilled at `refill` per second.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Bucket {
        pub size: f64,
        pub refill: f64,
    }

    /// ELB v2's bucket for Describe calls, per account and region:
    /// documented ("the token bucket size for non-mutating API actions is
    /// 40 tokens ... a refill rate of 10 tokens per second": Elastic Load
    /// Balancing user guide, Request throttling for the ELB API).
    pub const ELB_DESCRIBE: Bucket = Bucket {
        size: 40.0,
        refill: 10.0,
    };
    /// EC2's bucket for a non-mutating action such as
    /// DescribeNetworkInterfaces, per API, account and region: documented
    /// (100 tokens, refilled at 20 per second: Amazon EC2 developer guide,
    /// Request throttling for the Amazon EC2 API).
    pub const EC2_NON_MUTATING: Bucket = Bucket {
        size: 100.0,
        refill: 20.0,
    };
    /// The Resource Groups Tagging API's bucket for GetResources: assumed
    /// (its documentation, as found, gives no figure): 10 tokens refilled
    /// at 5 per second.
    pub const TAGGING_GET_RESOURCES: Bucket = Bucket {
        size: 10.0,
        refill: 5.0,
    };
}

/// Keeps calls within a share of an API's token bucket: a local bucket of
/// `share * size` tokens refilled at `share * refill` per second. A call
/// waits for a token; nothing is refused. Account-wide buckets are shared
/// with every other user of the account, so the share is what this run
/// may take, not what it is guaranteed.
#[derive(Debug)]
pub struct Pacer {
    size: f64,
    refill: f64,
    state: Mutex<(f64, tokio::time::Instant)>,
}

impl Pacer {
    /// `share` of `bucket` (0 < share <= 1), starting full.
    pub fn new(bucket: limits::Bucket, share: f64) -> Self {
        let size = (bucket.size * share).max(1.0);
        Pacer {
            size,
            refill: bucket.refill * share,
            state: Mutex::new((size, tokio::time::Instant::now())),
        }
    }

    /// A pacer that never waits (tests, and the in-memory fakes).
    pub fn unlimited() -> Self {
        Pacer {
            size: f64::INFINITY,
            refill: f64::INFINITY,
            state: Mutex::new((f64::INFINITY, tokio::time::Instant::now())),
        }
    }

    /// Calls per second at most, after the first `burst`.
    pub fn rate(&self) -> f64 {
        self.refill
    }

    pub fn burst(&self) -> f64 {
        self.size
    }

    /// Calls that may be made within `window` from now: the tokens held and
    /// those the window refills.
    pub fn budget(&self, window: Duration) -> usize {
        if !self.refill.is_finite() {
            return usize::MAX;
        }
        let tokens = self.tokens_at(tokio::time::Instant::now());
        (tokens + self.refill * window.as_secs_f64())
            .max(0.0)
            .floor() as usize
    }

    fn tokens_at(&self, now: tokio::time::Instant) -> f64 {
        let (tokens, at) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (tokens + now.saturating_duration_since(at).as_secs_f64() * self.refill).min(self.size)
    }

    /// Takes a token at `now` if there is one; else how long until there is.
    fn try_take(&self, now: tokio::time::Instant) -> Result<(), Duration> {
        if !self.refill.is_finite() {
            return Ok(());
        }
        let tokens = self.tokens_at(now);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.refill))
        }
    }

    /// Waits until a call may be made, and takes its token.
    pub async fn take(&self) {
        while let Err(wait) = self.try_take(tokio::time::Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// An S3 client; path-style addressing when an endpoint override is set
/// (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`), so a local emulator works.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint =
        sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An S3 object's body, read in chunks and never past a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bounded {
    Read(Vec<u8>),
    /// More than the bound: its size as far as it was known or read.
    TooLarge(u64),
}

/// Reads a GetObject answer's body, at most `max` bytes: an object that
/// says it is larger is not read, and one that does not say is cut off.
pub async fn read_bounded(
    output: aws_sdk_s3::operation::get_object::GetObjectOutput,
    max: u64,
) -> Result<Bounded, String> {
    let size = output.content_length().unwrap_or(0).max(0) as u64;
    if size > max {
        return Ok(Bounded::TooLarge(size));
    }
    let mut body = output.body;
    let mut bytes = Vec::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(|e| format!("reading the body: {e}"))?);
        if bytes.len() as u64 > max {
            return Ok(Bounded::TooLarge(bytes.len() as u64));
        }
    }
    Ok(Bounded::Read(bytes))
}

/// A failed AWS call, naming the operation and the resource it was about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{operation} on {resource}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    /// e.g. `elasticloadbalancing:DescribeTargetHealth`.
    pub operation: &'static str,
    /// The ARN, bucket/key or namespace the call was about.
    pub resource: String,
    /// The service's error code (`AccessDenied`, `TargetGroupNotFound`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn new(
        operation: &'static str,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            resource: resource.into(),
            code: None,
            message: message.into(),
        }
    }

    /// From any SDK error, keeping the service's code and message.
    pub fn from_sdk<E, R>(
        operation: &'static str,
        resource: impl Into<String>,
        err: &SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (code, message) = match err {
            SdkError::ServiceError(service) => (
                service.err().code().map(str::to_owned),
                match service.err().message() {
                    Some(message) => message.to_owned(),
                    // No message from the service: say what came back, briefly.
                    None => format!("{:?}: {}", service.raw(), service.err()),
                },
            ),
            _ => (None, DisplayErrorContext(err).to_string()),
        };
        Self {
            operation,
            resource: resource.into(),
            code,
            message,
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_gives_its_burst_then_its_rate() {
        let pacer = Pacer::new(limits::ELB_DESCRIBE, 0.5);
        assert_eq!((pacer.burst(), pacer.rate()), (20.0, 5.0));
        let t0 = pacer.state.lock().unwrap().1;
        for _ in 0..20 {
            assert_eq!(pacer.try_take(t0), Ok(()), "the burst is free");
        }
        assert_eq!(pacer.try_take(t0), Err(Duration::from_millis(200)));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            (0..11).filter(|_| pacer.try_take(later).is_ok()).count(),
            10
        );
        assert_eq!(pacer.tokens_at(later), 0.0);
        let budget = |window| {
            let tokens = pacer.tokens_at(later);
            (tokens + pacer.rate() * f64::from(window)).floor() as usize
        };
        assert_eq!(budget(45), 225, "empty, then 45 s at 5 per second");
        assert_eq!(Pacer::unlimited().budget(Duration::ZERO), usize::MAX);
    }
}

//! AWS clients, built once at cold start, and the error every adapter returns.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
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

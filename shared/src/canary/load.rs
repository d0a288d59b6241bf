//! Cold start: the endpoints from S3 (`CANARY_TARGETS_S3_URI`) and the
//! secret header values.

use aws_config::SdkConfig;

use super::config::{self, CanaryConfig};
use super::secrets::{AwsSecrets, Secrets};

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

//! health-canary: probes private HTTP(S) endpoints and publishes the minute
//! votes that drive Route 53 failover. Configuration and behaviour: see the
//! docs/health-canary.md; the logic is in `tether_shared::canary`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use serde_json::Value;
use tether_shared::canary::{self, AwsCanary, CanaryConfig, Settings};
use tether_shared::{aws, startup};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let sdk = aws::sdk_config().await;
    // A bad value (or an unreadable CANARY_TARGETS_S3_URI) fails the cold start.
    let config = CanaryConfig::load(|uri| canary::fetch_targets(&sdk, uri))
        .await
        .unwrap_or_else(|e| startup::invalid_configuration(&e));
    let settings =
        Settings::from_env(&config).unwrap_or_else(|e| startup::invalid_configuration(&e));
    // Secret header values: read now and again later, never logged.
    let secrets = canary::read_secrets(&config, &sdk)
        .await
        .unwrap_or_else(|e| startup::invalid_configuration(&e));
    let canary = AwsCanary::from_sdk(config, settings, secrets, &sdk)
        .unwrap_or_else(|e| startup::abort("cannot start", &e));
    run(service_fn(|event: LambdaEvent<Value>| canary.handle(event))).await
}

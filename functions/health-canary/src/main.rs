//! health-canary: probes private HTTP(S) endpoints and publishes the minute
//! votes that drive Route 53 failover. Configuration and behaviour: see the
//! README; the logic is in `tether_shared::canary`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use serde_json::Value;
use tether_shared::aws;
use tether_shared::canary::{self, AwsCanary, CanaryConfig, Settings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let sdk = aws::sdk_config().await;
    // A bad value (or an unreadable CANARY_TARGETS_S3_URI) fails the cold start.
    let invalid = |e: &tether_shared::config::ConfigError| tracing::error!(error = %e, "invalid configuration");
    let mut config = CanaryConfig::load(|uri| canary::fetch_targets(&sdk, uri))
        .await
        .inspect_err(invalid)?;
    let settings = Settings::from_env(&config).inspect_err(invalid)?;
    // Secret header values: read once, never logged.
    canary::read_secrets(&mut config, &sdk)
        .await
        .inspect_err(invalid)?;
    let canary = AwsCanary::from_sdk(config, settings, &sdk)?;
    run(service_fn(|event: LambdaEvent<Value>| canary.handle(event))).await
}

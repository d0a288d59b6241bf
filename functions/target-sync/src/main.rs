//! target-sync: keeps NLB IP target groups equal to what DNS says.
//! Configuration and behaviour: see the README; the logic is in `tether_shared::sync`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use serde_json::Value;
use tether_shared::{aws, config::SyncConfig, sync::AwsEngine};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // Validate before any AWS client exists: a bad value fails the cold start.
    let config = SyncConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = aws::sdk_config().await;
    let engine = AwsEngine::from_sdk(config, &sdk)?;
    run(service_fn(|event: LambdaEvent<Value>| engine.handle(event))).await
}

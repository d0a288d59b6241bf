//! target-sync: keeps NLB IP target groups equal to their sources (DNS, ALB nodes, VPC endpoints).
//! Configuration and behaviour: see docs/target-sync.md; the logic is in `tether_shared::sync`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use serde_json::Value;
use tether_shared::sync::{AwsEngine, SyncConfig};
use tether_shared::{aws, startup};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // Validate before any AWS client exists: a bad value fails the cold
    // start with one line naming the variable and the value.
    let config = SyncConfig::from_env().unwrap_or_else(|e| startup::invalid_configuration(&e));
    let sdk = aws::sdk_config().await;
    let engine =
        AwsEngine::from_sdk(config, &sdk).unwrap_or_else(|e| startup::abort("cannot start", &e));
    run(service_fn(|event: LambdaEvent<Value>| engine.handle(event))).await
}

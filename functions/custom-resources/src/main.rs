//! custom-resources: CloudFormation custom resources (`Custom::DnsAddresses`,
//! `Custom::TargetSync`, `Custom::EmptyBucket`) that always answer.
//! The logic is in `tether_shared::cfn`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use serde_json::Value;
use tether_shared::aws;
use tether_shared::cfn::{AwsResources, Dispatcher, Responder, Settings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = aws::sdk_config().await;
    let resources = AwsResources::from_sdk(&sdk, &settings)?;
    let dispatcher = Dispatcher::new(resources, Responder::new()?, settings.allow_insecure);
    run(service_fn(|event: LambdaEvent<Value>| {
        dispatcher.handle(event)
    }))
    .await
}

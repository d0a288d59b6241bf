//! custom-resources: CloudFormation custom resources (`Custom::DnsAddresses`,
//! `Custom::TargetSync`, `Custom::EmptyBucket`) that always answer.
//! The logic is in `tether_shared::cfn`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use serde_json::Value;
use tether_shared::cfn::{Dispatcher, Responder, Service};
use tether_shared::{aws, startup};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let sdk = aws::sdk_config().await;
    // A bad configuration still answers every event (FAILED, with the reason).
    let (service, allow_insecure) = Service::from_env(&sdk);
    let responder = Responder::new().unwrap_or_else(|e| startup::abort("cannot start", &e));
    let dispatcher = Dispatcher::new(service, responder, allow_insecure);
    run(service_fn(|event: LambdaEvent<Value>| {
        dispatcher.handle(event)
    }))
    .await
}

//! The custom-resources part of the demo: CloudFormation events, as the
//! service sends them, against the real binary; each response is read back
//! from the pre-signed S3 URL it was PUT to, as CloudFormation reads it.

use std::time::Duration;

use serde_json::{Value, json};

use super::heading;
use crate::aws::tag;
use crate::cfn::{self, Responses};
use crate::lambda::FunctionProcess;
use crate::moto::BoxError;
use crate::world::{BUCKET, World};

const VPCE: &str = "vpce-0a1b2c3d4e5f6a7b8-1x2y3z4w.execute-api.us-east-1.vpce.amazonaws.com";
const ALB: &str = "internal-orders-alb-1234567890.us-east-1.elb.amazonaws.com";

/// Sends the event `make(url)` and returns the response CloudFormation reads.
/// Each response's status and resource type go into `answered`.
async fn send(
    f: &FunctionProcess,
    responses: &Responses,
    answered: &mut Vec<String>,
    make: impl FnOnce(&str) -> Value,
) -> Result<Value, BoxError> {
    let (key, url) = responses.url().await?;
    let event = make(&url);
    let kind = format!(
        "{} {}",
        event["RequestType"].as_str().unwrap_or("?"),
        event["ResourceType"].as_str().unwrap_or("?")
    );
    println!(
        "-> {} {} ({})",
        event["RequestType"].as_str().unwrap_or("?"),
        event["ResourceType"].as_str().unwrap_or("?"),
        event["LogicalResourceId"].as_str().unwrap_or("?")
    );
    let invocation = f.invoke(event, Duration::from_secs(30)).await?;
    let stored = responses
        .read(&key)
        .await?
        .ok_or_else(|| format!("no response arrived: {:?}\n{}", invocation.result, f.logs()))?;
    println!(
        "<- {} {} ({} bytes PUT to the pre-signed URL)",
        stored.body["Status"].as_str().unwrap_or("?"),
        stored.body["PhysicalResourceId"].as_str().unwrap_or("?"),
        stored.bytes.len()
    );
    if let Some(reason) = stored.body["Reason"].as_str() {
        println!("   Reason: {reason}");
    }
    answered.push(format!(
        "{kind} {}",
        stored.body["Status"].as_str().unwrap_or("?")
    ));
    Ok(stored.body)
}

/// Runs this part; returns its one-line summary.
pub async fn run() -> Result<String, BoxError> {
    heading(
        "custom-resources: CloudFormation custom resources, answered through a pre-signed S3 URL",
    );
    let w = World::start().await?;
    let responses = Responses::new(&w.s3).await?;
    let mut answered = Vec::new();
    let f = w
        .spawn(
            "custom-resources",
            &w.env(&[("ALLOW_INSECURE_RESPONSE_URL", "true")]),
        )
        .await?;

    println!("Custom::DnsAddresses: the private IPs of an execute-api VPC endpoint");
    w.answer(VPCE, &["10.0.2.41", "10.0.1.17"]);
    let props = json!({"Hostname": VPCE, "MinCount": "2"});
    let out = send(&f, &responses, &mut answered, |url| {
        cfn::create("Custom::DnsAddresses", "ApiEndpointIps", &props, url)
    })
    .await?;
    println!("   Data: {}", out["Data"]);
    println!(
        "   !Split [\",\", !GetAtt ApiEndpointIps.Addresses] -> {}\n",
        out["Data"]["Addresses"]
    );

    println!(
        "Custom::TargetSync: the first sync at deploy time, configured by the function's own environment"
    );
    let tg = w.target_group("orders-nlb-80", 80).await?;
    tag(&w.elb, &tg, &[("tether:source", &format!("dns:{ALB}"))]).await?;
    w.answer(ALB, &["10.0.1.10", "10.0.2.10", "10.0.1.11"]);
    println!(
        "   target group (tagged tether:source=dns:{ALB}) before: {:?}",
        w.targets(&tg).await?
    );
    // No configuration in the event: whoever can invoke the function can
    // only make it sync what the schedule would.
    let props = json!({"ServiceTimeout": "240"});
    let out = send(&f, &responses, &mut answered, |url| {
        cfn::create("Custom::TargetSync", "FirstSync", &props, url)
    })
    .await?;
    println!("   Data: {}", out["Data"]);
    println!("   target group after Create: {:?}", w.targets(&tg).await?);
    let id = out["PhysicalResourceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    send(&f, &responses, &mut answered, |url| {
        cfn::delete("Custom::TargetSync", "FirstSync", &id, &props, url)
    })
    .await?;
    println!(
        "   target group after Delete (a stack delete leaves serving targets alone): {:?}",
        w.targets(&tg).await?
    );
    println!("   state objects: {:?}\n", w.keys().await?);

    println!("A Create with a bad property, and the Delete CloudFormation sends after it");
    let bad = json!({"Environment": {"STATE_BUCKET": BUCKET, "TAG_PREFIX": "mine:"}});
    let out = send(&f, &responses, &mut answered, |url| {
        cfn::create("Custom::TargetSync", "SyncBad", &bad, url)
    })
    .await?;
    let id = out["PhysicalResourceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    send(&f, &responses, &mut answered, |url| {
        cfn::delete("Custom::TargetSync", "SyncBad", &id, &bad, url)
    })
    .await?;
    Ok(format!(
        "custom-resources: {} CloudFormation events, each answered once through its pre-signed URL: {}",
        answered.len(),
        answered.join(", ")
    ))
}

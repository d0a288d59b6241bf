//! custom-resources end to end: the built binary under the Runtime API
//! emulator, fed CloudFormation events whose `ResponseURL` is a pre-signed
//! PUT URL of moto's S3; each test reads the response object back and checks
//! it as CloudFormation would. moto for ELB/S3, a real DNS server on loopback.
//! The dispatcher's panic and hang handling is driven at the library level
//! with handlers that panic or hang (no test switches in production code).

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tether_shared::cfn::dispatch::{Applied, Failure, Handler};
use tether_shared::cfn::event::Request;
use tether_shared::cfn::{Dispatcher, Responder};
use tether_tests::aws::tag;
use tether_tests::cfn::{self, FlakyProxy, Responses, STACK_ID, Stored};
use tether_tests::dns::Answer;
use tether_tests::lambda::{FunctionProcess, Invocation};
use tether_tests::moto::BoxError;
use tether_tests::world::{BUCKET, World, ips};

const DNS: &str = "Custom::DnsAddresses";
const SYNC: &str = "Custom::TargetSync";
const EMPTY: &str = "Custom::EmptyBucket";
const VPCE: &str = "vpce-0a1b2c3d-4e5f6a7b.execute-api.us-east-1.vpce.amazonaws.com";
const ALB: &str = "internal-api-alb-1234567890.us-east-1.elb.amazonaws.com";
const TIMEOUT: Duration = Duration::from_secs(30);

type R = Result<(), BoxError>;

struct Setup {
    w: World,
    responses: Responses,
    f: FunctionProcess,
}

/// One answered event: what the invocation returned and what CloudFormation reads.
struct Reply {
    invocation: Invocation,
    stored: Stored,
}

impl Reply {
    fn body(&self) -> &Value {
        &self.stored.body
    }
    fn status(&self) -> &str {
        self.body()["Status"].as_str().unwrap_or("")
    }
    fn id(&self) -> &str {
        self.body()["PhysicalResourceId"].as_str().unwrap_or("")
    }
    fn reason(&self) -> &str {
        self.body()["Reason"].as_str().unwrap_or("")
    }
}

async fn setup_with(env: &[(&str, &str)]) -> Result<Setup, BoxError> {
    setup_in(World::start().await?, env).await
}

/// The function started in a world made beforehand (e.g. with target
/// groups that its environment names).
async fn setup_in(w: World, env: &[(&str, &str)]) -> Result<Setup, BoxError> {
    let responses = Responses::new(&w.s3).await?;
    let f = w.spawn("custom-resources", &w.env(env)).await?;
    Ok(Setup { w, responses, f })
}

async fn setup() -> Result<Setup, BoxError> {
    setup_with(&[("ALLOW_INSECURE_RESPONSE_URL", "true")]).await
}

impl Setup {
    /// Invokes with the event `make(url)` and reads the one response back,
    /// checking what every response must hold.
    async fn send_within(
        &self,
        timeout: Duration,
        make: impl FnOnce(&str) -> Value,
    ) -> Result<Reply, BoxError> {
        let (key, url) = self.responses.url().await?;
        let event = make(&url);
        let invocation = self.f.invoke(event.clone(), timeout).await?;
        let stored = self.responses.read(&key).await?.ok_or_else(|| {
            format!(
                "no response was PUT; invocation: {:?}\nlogs:\n{}",
                invocation.result,
                self.f.logs()
            )
        })?;
        let body = &stored.body;
        assert!(stored.bytes.len() <= 4096, "{} bytes", stored.bytes.len());
        assert_eq!(body["StackId"], STACK_ID);
        assert_eq!(body["RequestId"], event["RequestId"]);
        assert_eq!(body["LogicalResourceId"], event["LogicalResourceId"]);
        assert!(
            body["PhysicalResourceId"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{body}"
        );
        match body["Status"].as_str() {
            Some("SUCCESS") => {}
            Some("FAILED") => assert!(
                body["Reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{body}"
            ),
            _ => return Err(format!("bad status in {body}").into()),
        }
        if let Some(id) = event["PhysicalResourceId"].as_str()
            && event["RequestType"] == "Delete"
        {
            assert_eq!(
                body["PhysicalResourceId"], id,
                "a Delete answers with the id it was sent"
            );
        }
        // The invocation succeeded because the response was delivered.
        let result = invocation
            .result
            .as_ref()
            .map_err(|e| format!("invocation failed: {e}"))?;
        assert_eq!(result["status"], body["Status"]);
        Ok(Reply { invocation, stored })
    }

    async fn send(&self, make: impl FnOnce(&str) -> Value) -> Result<Reply, BoxError> {
        self.send_within(TIMEOUT, make).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_addresses_create_update_delete() -> R {
    let s = setup().await?;
    s.w.answer(VPCE, &["10.0.2.7", "10.0.1.5", "10.0.10.9"]);
    s.w.answer("other.example.com", &["10.0.3.3"]);
    let props = json!({"Hostname": VPCE, "MinCount": "3"});

    let created = s
        .send(|url| cfn::create(DNS, "EndpointIps", &props, url))
        .await?;
    assert_eq!(created.status(), "SUCCESS", "{}", created.body());
    let id = format!("tether-dns:{VPCE}:A");
    assert_eq!(created.id(), id);
    assert_eq!(
        created.body()["Data"],
        json!({"Addresses": "10.0.1.5,10.0.2.7,10.0.10.9", "Count": "3",
               "Address1": "10.0.1.5", "Address2": "10.0.2.7", "Address3": "10.0.10.9"})
    );

    // Waiting differently, same name: updated in place, same id.
    let dns_server = s.w.dns.addr().to_string();
    let waited = json!({"Hostname": VPCE, "MinCount": 1, "DnsServers": [dns_server]});
    let updated = s
        .send(|url| cfn::update(DNS, "EndpointIps", &id, &waited, &props, url))
        .await?;
    assert_eq!((updated.status(), updated.id()), ("SUCCESS", id.as_str()));
    assert_eq!(updated.body()["Data"]["Count"], "3");

    // Another name: a new id, so CloudFormation replaces the resource.
    let other = json!({"Hostname": "other.example.com"});
    let replaced = s
        .send(|url| cfn::update(DNS, "EndpointIps", &id, &other, &waited, url))
        .await?;
    assert_eq!(replaced.status(), "SUCCESS");
    assert_eq!(replaced.id(), "tether-dns:other.example.com:A");
    assert_eq!(replaced.body()["Data"]["Addresses"], "10.0.3.3");

    let deleted = s
        .send(|url| cfn::delete(DNS, "EndpointIps", &id, &waited, url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS");
    assert!(deleted.body().get("Data").is_none());
    // A Delete has nothing to delete: properties this version does not
    // accept (an older version's) do not fail it.
    let retired = json!({"Hostname": VPCE, "Retired": "x", "MinCount": "many"});
    let deleted = s
        .send(|url| cfn::delete(DNS, "EndpointIps", &id, &retired, url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS", "{}", deleted.body());

    // The log names the request and never shows the signature.
    let logs = s.f.logs();
    assert!(logs.contains("\"answered\""), "{logs}");
    assert!(logs.contains("Custom::DnsAddresses"), "{logs}");
    assert!(
        !logs.contains("X-Amz-Signature"),
        "the pre-signed URL leaked into the logs:\n{logs}"
    );
    Ok(())
}

/// The first sync's properties, as the template passes them: no
/// configuration (the function's environment, from `World::env`, holds
/// target-sync's variables: `STATE_BUCKET`, `DNS_SERVERS`, discovery by tag).
fn sync_props() -> Value {
    json!({"ServiceTimeout": "240"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_sync_first_sync_covers_every_tagged_group_and_delete_leaves_them() -> R {
    let s = setup().await?;
    let w = &s.w;
    let api = w.target_group("api-80", 80).await?;
    let other = w.target_group("untagged-80", 80).await?;
    tag(&w.elb, &api, &[("tether:source", &format!("dns:{ALB}"))]).await?;
    w.register(&other, "10.0.9.9", 80).await?;
    w.answer(ALB, &["10.0.1.10", "10.0.2.20"]);
    let props = sync_props();

    let created = s
        .send(|url| cfn::create(SYNC, "FirstSync", &props, url))
        .await?;
    assert_eq!(
        created.status(),
        "SUCCESS",
        "{}\n{}",
        created.body(),
        s.f.logs()
    );
    assert_eq!(
        created.id(),
        format!("tether-first-sync:{BUCKET}/target-sync/")
    );
    assert_eq!(
        created.body()["Data"],
        json!({"Synced": "1", "Registered": "2"})
    );
    assert_eq!(w.targets(&api).await?, ["10.0.1.10:80", "10.0.2.20:80"]);
    assert_eq!(
        w.targets(&other).await?,
        ["10.0.9.9:80"],
        "an untagged group is never touched"
    );

    // An Update syncs again at once: the new address is registered.
    w.answer(ALB, &["10.0.2.20", "10.0.1.30"]);
    let id = created.id().to_owned();
    let updated = s
        .send(|url| cfn::update(SYNC, "FirstSync", &id, &props, &props, url))
        .await?;
    assert_eq!(
        (updated.status(), updated.id()),
        ("SUCCESS", id.as_str()),
        "{}",
        updated.body()
    );
    assert_eq!(
        w.targets(&api).await?,
        ["10.0.1.10:80", "10.0.1.30:80", "10.0.2.20:80"]
    );

    // Delete leaves the groups as they are: deleting tether never empties an NLB.
    let deleted = s
        .send(|url| cfn::delete(SYNC, "FirstSync", &id, &props, url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS", "{}", deleted.body());
    assert!(
        deleted.reason().contains("left as they are"),
        "{}",
        deleted.body()
    );
    assert_eq!(
        w.targets(&api).await?,
        ["10.0.1.10:80", "10.0.1.30:80", "10.0.2.20:80"]
    );
    // Even with properties this version does not read.
    let odd = json!({"Mappings": "old|style|80"});
    let again = s
        .send(|url| cfn::delete(SYNC, "FirstSync", &id, &odd, url))
        .await?;
    assert_eq!(again.status(), "SUCCESS", "{}", again.body());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sync_is_configured_by_the_functions_environment_never_by_the_event() -> R {
    // The function's own TAG_PREFIX decides which groups are synced.
    let s = setup_with(&[
        ("ALLOW_INSECURE_RESPONSE_URL", "true"),
        ("TAG_PREFIX", "stg:"),
    ])
    .await?;
    let w = &s.w;
    let staging = w.target_group("staging-80", 80).await?;
    let production = w.target_group("production-80", 80).await?;
    tag(&w.elb, &staging, &[("stg:source", &format!("dns:{ALB}"))]).await?;
    tag(
        &w.elb,
        &production,
        &[("tether:source", &format!("dns:{ALB}"))],
    )
    .await?;
    w.answer(ALB, &["10.0.1.10"]);

    // An event that tries to bring its own configuration is refused whole.
    let own = json!({"Environment": {"STATE_BUCKET": BUCKET, "TAG_PREFIX": "tether:"}});
    let refused = s
        .send(|url| cfn::create(SYNC, "FirstSync", &own, url))
        .await?;
    assert_eq!(refused.status(), "FAILED", "{}", refused.body());
    assert!(
        refused
            .reason()
            .starts_with("ResourceProperties.Environment"),
        "{}",
        refused.reason()
    );
    assert!(w.targets(&production).await?.is_empty());
    assert!(w.targets(&staging).await?.is_empty());

    // Waiting for a group the function syncs: synced.
    let wait = json!({"ServiceTimeout": "240", "TargetGroupArns": [staging.clone()]});
    let created = s
        .send(|url| cfn::create(SYNC, "FirstSync", &wait, url))
        .await?;
    assert_eq!(created.status(), "SUCCESS", "{}", created.body());
    assert_eq!(w.targets(&staging).await?, ["10.0.1.10:80"]);
    assert!(
        w.targets(&production).await?.is_empty(),
        "another prefix's group is never touched"
    );

    // Waiting for a group it does not sync: FAILED, naming it, and the
    // Create leaves nothing behind.
    let other = json!({"TargetGroupArns": [production.clone(), staging.clone()]});
    let failed = s
        .send(|url| cfn::create(SYNC, "Other", &other, url))
        .await?;
    assert_eq!(failed.status(), "FAILED", "{}", failed.body());
    assert!(
        failed.reason().contains("TargetGroupArns")
            && failed.reason().contains(&production)
            && failed.reason().contains("not among"),
        "{}",
        failed.reason()
    );
    assert!(w.targets(&production).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_target_sync_variable_fails_only_the_first_sync_naming_it() -> R {
    let s = setup_with(&[
        ("ALLOW_INSECURE_RESPONSE_URL", "true"),
        ("TAG_PREFIX", "aws:reserved"),
    ])
    .await?;
    let sync = s
        .send(|url| cfn::create(SYNC, "FirstSync", &sync_props(), url))
        .await?;
    assert_eq!(sync.status(), "FAILED", "{}", sync.body());
    assert!(
        sync.reason().contains("TAG_PREFIX") && sync.reason().contains("aws:reserved"),
        "{}",
        sync.reason()
    );
    // The other resource types still work.
    s.w.answer(VPCE, &["10.0.1.5"]);
    let dns = s
        .send(|url| cfn::create(DNS, "Ips", &json!({"Hostname": VPCE}), url))
        .await?;
    assert_eq!(dns.status(), "SUCCESS", "{}", dns.body());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sync_fails_only_when_nothing_synced_and_then_leaves_nothing_behind() -> R {
    let s = setup().await?;
    let w = &s.w;
    let good = w.target_group("good-80", 80).await?;
    let bad = w.target_group("bad-80", 80).await?;
    tag(&w.elb, &good, &[("tether:source", &format!("dns:{ALB}"))]).await?;
    tag(&w.elb, &bad, &[("tether:source", "dns:broken.example.com")]).await?;
    w.register(&good, "10.0.9.9", 80).await?;
    w.answer(ALB, &["10.0.1.10"]);
    w.dns.set("broken.example.com", Answer::ServFail);

    // Another team's broken group does not make the stack undeployable.
    let created = s
        .send(|url| cfn::create(SYNC, "FirstSync", &sync_props(), url))
        .await?;
    assert_eq!(created.status(), "SUCCESS", "{}", created.body());
    assert!(
        created.reason().contains("1 of 2 mappings not synced")
            && created.reason().contains("SERVFAIL"),
        "{}",
        created.reason()
    );
    assert_eq!(w.targets(&good).await?, ["10.0.1.10:80", "10.0.9.9:80"]);

    // Nothing synced: FAILED, and what it registered on the way is removed.
    // A AAAA answer that fails makes the answer partial: its IPv4 addresses
    // are registered, and the mapping fails.
    // (A tag may not ask an IPv4 group for AAAA records: TARGETS, in the
    // function's environment, may.)
    let w = World::start().await?;
    let only = w.target_group("only-80", 80).await?;
    w.register(&only, "10.0.9.9", 80).await?;
    w.dns.set(ALB, Answer::V4ThenServFail(ips(&["10.0.1.10"])));
    let targets = json!([{"dns_name": ALB, "target_group_arn": only, "port": 80,
        "record_types": ["A", "AAAA"]}])
    .to_string();
    let s = setup_in(
        w,
        &[
            ("ALLOW_INSECURE_RESPONSE_URL", "true"),
            ("TAG_DISCOVERY", "false"),
            ("TARGETS", &targets),
        ],
    )
    .await?;
    let w = &s.w;
    let created = s
        .send(|url| cfn::create(SYNC, "FirstSync", &sync_props(), url))
        .await?;
    assert_eq!(created.status(), "FAILED", "{}", created.body());
    assert!(
        created.reason().contains("SERVFAIL"),
        "{}",
        created.reason()
    );
    assert!(
        created.reason().contains("deregistered the 1 targets"),
        "{}",
        created.reason()
    );
    assert_eq!(
        w.targets(&only).await?,
        ["10.0.9.9:80"],
        "what was there before stays"
    );
    Ok(())
}

async fn put(w: &World, bucket: &str, key: &str, body: &str) -> R {
    w.s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await?;
    Ok(())
}

async fn versions(w: &World, bucket: &str) -> Result<usize, BoxError> {
    let out = w.s3.list_object_versions().bucket(bucket).send().await?;
    Ok(out.versions().len() + out.delete_markers().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_bucket_removes_every_version_and_delete_marker() -> R {
    let s = setup().await?;
    let w = &s.w;
    let bucket = "tether-stack-state";
    tether_tests::aws::create_bucket(&w.s3, bucket).await?;
    w.s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    put(w, bucket, "target-sync/a.json", "1").await?;
    put(w, bucket, "target-sync/a.json", "2").await?;
    put(w, bucket, "target-sync/b.json", "1").await?;
    w.s3.delete_object()
        .bucket(bucket)
        .key("target-sync/b.json")
        .send()
        .await?;
    put(w, bucket, "gone.json", "1").await?;
    w.s3.delete_object()
        .bucket(bucket)
        .key("gone.json")
        .send()
        .await?;
    let listed = w.s3.list_object_versions().bucket(bucket).send().await?;
    assert_eq!(
        (listed.versions().len(), listed.delete_markers().len()),
        (4, 2)
    );

    let props = json!({"BucketName": bucket});
    let created = s
        .send(|url| cfn::create(EMPTY, "EmptyState", &props, url))
        .await?;
    assert_eq!(created.status(), "SUCCESS", "{}", created.body());
    let id = format!("tether-empty-bucket:{bucket}");
    assert_eq!(created.id(), id);
    assert_eq!(versions(w, bucket).await?, 6, "Create only validates");
    let updated = s
        .send(|url| cfn::update(EMPTY, "EmptyState", &id, &props, &props, url))
        .await?;
    assert_eq!((updated.status(), updated.id()), ("SUCCESS", id.as_str()));

    let deleted = s
        .send(|url| cfn::delete(EMPTY, "EmptyState", &id, &props, url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS", "{}", deleted.body());
    assert_eq!(versions(w, bucket).await?, 0);
    // Now CloudFormation can delete the bucket, and a repeated Delete is success.
    w.s3.delete_bucket().bucket(bucket).send().await?;
    let again = s
        .send(|url| cfn::delete(EMPTY, "EmptyState", &id, &props, url))
        .await?;
    assert_eq!(again.status(), "SUCCESS", "{}", again.body());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_bucket_empties_an_unversioned_bucket_of_more_than_one_batch() -> R {
    let s = setup().await?;
    let w = &s.w;
    let bucket = "plain-bucket";
    tether_tests::aws::create_bucket(&w.s3, bucket).await?;
    let puts = futures_util::stream::iter(0..1005)
        .map(|n| async move { put(w, bucket, &format!("k/{n:04}"), "x").await })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    puts.into_iter().collect::<Result<Vec<_>, _>>()?;
    let props = json!({"BucketName": bucket});
    let id = format!("tether-empty-bucket:{bucket}");
    let deleted = s
        .send(|url| cfn::delete(EMPTY, "Empty", &id, &props, url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS", "{}", deleted.body());
    assert!(
        deleted.reason().contains("deleted 1005"),
        "{}",
        deleted.body()
    );
    let left = w.s3.list_objects_v2().bucket(bucket).send().await?;
    assert_eq!(left.key_count(), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_answers_a_marker_whose_delete_touches_nothing() -> R {
    let s = setup().await?;
    let w = &s.w;
    // A TargetSync whose name does not resolve: FAILED, nothing registered.
    let tg = w.target_group("api-80", 80).await?;
    tag(&w.elb, &tg, &[("tether:source", &format!("dns:{ALB}"))]).await?;
    w.dns.set(ALB, Answer::ServFail);
    let props = sync_props();
    let created = s
        .send(|url| cfn::create(SYNC, "SyncApi80", &props, url))
        .await?;
    assert_eq!(created.status(), "FAILED");
    assert!(created.reason().contains("SERVFAIL"), "{}", created.body());
    let request_id = created.body()["RequestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(created.id(), format!("tether-failed-create-{request_id}"));

    // Meanwhile the group has a target and DNS works: a Delete that ran the
    // handler could deregister; with the marker it touches nothing.
    w.register(&tg, "10.0.1.10", 80).await?;
    w.answer(ALB, &["10.0.1.10"]);
    let marker = created.id().to_owned();
    let deleted = s
        .send(|url| cfn::delete(SYNC, "SyncApi80", &marker, &props, url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS", "{}", deleted.body());
    assert_eq!(w.targets(&tg).await?, ["10.0.1.10:80"]);

    // An EmptyBucket whose Create failed on its properties: the Delete with
    // the same properties would fail again if it reached the handler.
    let bad = json!({"BucketName": "Not_A_Bucket"});
    let created = s.send(|url| cfn::create(EMPTY, "Empty", &bad, url)).await?;
    assert_eq!(created.status(), "FAILED");
    let marker = created.id().to_owned();
    assert!(marker.starts_with("tether-failed-create-"), "{marker}");
    let deleted = s
        .send(|url| cfn::delete(EMPTY, "Empty", &marker, &bad, url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS", "{}", deleted.body());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_types_and_bad_properties_fail_naming_them() -> R {
    let s = setup().await?;
    let unknown = s
        .send(|url| cfn::create("Custom::Nope", "Thing", &json!({}), url))
        .await?;
    assert_eq!(unknown.status(), "FAILED");
    assert!(
        unknown.reason().contains("\"Custom::Nope\"")
            && unknown.reason().contains("Custom::TargetSync"),
        "{}",
        unknown.body()
    );
    assert!(unknown.id().starts_with("tether-failed-create-"));
    let marker = unknown.id().to_owned();
    let deleted = s
        .send(|url| cfn::delete("Custom::Nope", "Thing", &marker, &json!({}), url))
        .await?;
    assert_eq!(deleted.status(), "SUCCESS");

    let tg =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-80/50dc6c495c0c9188";
    let cases = [
        (
            DNS,
            json!({"Hostname": VPCE, "MinCount": "zero"}),
            "ResourceProperties.MinCount",
            "\"zero\"",
        ),
        (
            DNS,
            json!({"MinCount": "1"}),
            "ResourceProperties.Hostname",
            "required",
        ),
        (
            SYNC,
            json!({"Environment": {"STATE_BUCKET": BUCKET, "TARGETS": format!(
                "[{{\"dns_name\":\"{ALB}\",\"target_group_arn\":\"{tg}\",\"port\":80}}]")}}),
            "ResourceProperties.Environment",
            "own environment",
        ),
        (
            SYNC,
            json!({"TargetGroupArns": ["arn:aws:s3:::not-a-group"]}),
            "ResourceProperties.TargetGroupArns[0]",
            "not-a-group",
        ),
        (
            SYNC,
            json!({"DnsName": ALB}),
            "ResourceProperties.DnsName",
            "unknown",
        ),
        (
            EMPTY,
            json!({"BucketName": "b", "Versions": "all"}),
            "ResourceProperties.BucketName",
            "\"b\"",
        ),
        (
            EMPTY,
            json!({"BucketName": "bucket-1", "Versions": "all"}),
            "ResourceProperties.Versions",
            "unknown",
        ),
    ];
    for (rtype, props, location, needle) in cases {
        let a = s.send(|url| cfn::create(rtype, "Bad", &props, url)).await?;
        assert_eq!(a.status(), "FAILED", "{props}");
        assert!(
            a.reason().starts_with(location) && a.reason().contains(needle),
            "{props}: {}",
            a.reason()
        );
    }

    // A failed Update keeps the id it had.
    s.w.answer(VPCE, &["10.0.1.5"]);
    let good = json!({"Hostname": VPCE});
    let created = s.send(|url| cfn::create(DNS, "Ips", &good, url)).await?;
    let id = created.id().to_owned();
    let bad = json!({"Hostname": VPCE, "RecordTypes": "A,MX"});
    let updated = s
        .send(|url| cfn::update(DNS, "Ips", &id, &bad, &good, url))
        .await?;
    assert_eq!((updated.status(), updated.id()), ("FAILED", id.as_str()));
    assert!(
        updated.reason().contains("RecordTypes") && updated.reason().contains("MX"),
        "{}",
        updated.reason()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_about_to_pass_answers_failed_before_it() -> R {
    let s = setup().await?;
    s.w.answer(VPCE, &["10.0.1.5", "10.0.2.6"]);
    let props = json!({"Hostname": VPCE, "MinCount": "3"});
    let function_timeout = Duration::from_secs(8);
    let a = s
        .send_within(function_timeout, |url| cfn::create(DNS, "Ips", &props, url))
        .await?;
    assert_eq!(a.status(), "FAILED");
    assert!(
        a.reason().contains("MinCount is 3") && a.reason().contains("deadline"),
        "{}",
        a.reason()
    );
    assert!(a.reason().contains("10.0.1.5, 10.0.2.6"), "{}", a.reason());
    // Answered (and the invocation ended) before Lambda's deadline.
    assert!(
        a.invocation.duration < function_timeout,
        "{:?}",
        a.invocation.duration
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_url_that_fails_twice_is_retried_without_content_type() -> R {
    let s = setup().await?;
    s.w.answer(VPCE, &["10.0.1.5"]);
    let proxy = FlakyProxy::start(2, &s.w.moto.endpoint()).await?;
    let (key, url) = s.responses.url().await?;
    let event = cfn::create(
        DNS,
        "Ips",
        &json!({"Hostname": VPCE}),
        &proxy.url_for(&url)?,
    );
    let invocation = s.f.invoke(event, TIMEOUT).await?;
    let result = invocation
        .result
        .map_err(|e| format!("invocation failed: {e}\n{}", s.f.logs()))?;
    assert_eq!(result["attempts"], 3);
    let stored = s
        .responses
        .read(&key)
        .await?
        .ok_or("no response arrived through the proxy")?;
    assert_eq!(stored.body["Status"], "SUCCESS");
    let seen = proxy.seen();
    assert_eq!(
        seen.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    for request in &seen {
        assert_eq!(request.method, "PUT");
        assert_eq!(request.content_type, None, "no content type may be sent");
        assert_eq!(request.content_length, Some(stored.bytes.len().to_string()));
        assert_eq!(request.body_len, stored.bytes.len());
    }
    assert!(!s.f.logs().contains("X-Amz-Signature"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_data_is_dropped_with_an_explanation_and_the_body_fits() -> R {
    let s = setup().await?;
    let many: Vec<String> = (0..200)
        .map(|n| format!("10.0.{}.{}", n / 100, n % 100 + 1))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    s.w.dns.set(VPCE, Answer::Addrs(ips(&many)));
    // MinCount 200 fails validation (its attributes cannot fit); a name that
    // answers far more than MinCount still can overflow.
    let a = s
        .send(|url| cfn::create(DNS, "Ips", &json!({"Hostname": VPCE, "MinCount": 1}), url))
        .await?;
    assert_eq!(a.status(), "FAILED", "{}", a.body());
    assert!(a.body().get("Data").is_none());
    assert!(
        a.reason().contains("202 attributes") && a.reason().contains("4096"),
        "{}",
        a.reason()
    );
    assert!(a.stored.bytes.len() <= 4096);
    assert_eq!(
        a.invocation
            .result
            .as_ref()
            .map(|r| r["data_dropped"].clone())
            .ok(),
        Some(json!(true))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_response_urls_are_refused_without_the_flag() -> R {
    // No ALLOW_INSECURE_RESPONSE_URL: moto's http URL must not be used.
    let s = setup_with(&[]).await?;
    s.w.answer(VPCE, &["10.0.1.5"]);
    for flag_free in [true, false] {
        let (key, url) = s.responses.url().await?;
        let url = if flag_free {
            url
        } else {
            url.replacen("http://", "ftp://", 1)
        };
        let event = cfn::create(DNS, "Ips", &json!({"Hostname": VPCE}), &url);
        let invocation = s.f.invoke(event, TIMEOUT).await?;
        let error = invocation
            .result
            .err()
            .ok_or("the invocation should fail")?;
        assert_eq!(error["errorType"], "ResponseUrlRefused", "{error}");
        assert!(!error.to_string().contains("X-Amz-Signature"), "{error}");
        assert_eq!(s.responses.read(&key).await?.map(|r| r.body), None);
    }
    let logs = s.f.logs();
    assert!(logs.contains("response URL refused"), "{logs}");
    assert!(!logs.contains("X-Amz-Signature"), "{logs}");
    assert_eq!(s.responses.keys().await?, Vec::<String>::new());
    Ok(())
}

/// A handler that panics, and one that never finishes.
enum Misbehaving {
    Panics,
    Hangs,
}

impl Handler for Misbehaving {
    async fn apply(&self, _: &Request, _: tokio::time::Instant) -> Result<Applied, Failure> {
        match self {
            Misbehaving::Panics => panic!("index out of bounds: the len is 0 but the index is 0"),
            Misbehaving::Hangs => std::future::pending().await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_answers_when_the_handler_panics_or_hangs() -> R {
    let moto = tether_tests::moto::Moto::start().await?;
    let sdk = moto.sdk_config().await;
    let responses = Responses::new(&moto.s3(&sdk)).await?;

    let panics = Dispatcher::new(Misbehaving::Panics, Responder::new()?, true);
    let (key, url) = responses.url().await?;
    let event = cfn::create(DNS, "Ips", &json!({"Hostname": VPCE}), &url);
    let answered = panics
        .answer(&event, tokio::time::Instant::now() + TIMEOUT)
        .await?;
    let stored = responses
        .read(&key)
        .await?
        .ok_or("no response after a panic")?
        .body;
    assert_eq!(stored["Status"], "FAILED");
    assert_eq!(
        stored["PhysicalResourceId"],
        format!(
            "tether-failed-create-{}",
            event["RequestId"].as_str().unwrap_or("")
        )
    );
    let reason = stored["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("panicked") && reason.contains("index out of bounds"),
        "{reason}"
    );
    assert_eq!(answered.reason.as_deref(), Some(reason));

    // An Update that hangs: FAILED before the deadline, keeping its id.
    let hangs = Dispatcher::new(Misbehaving::Hangs, Responder::new()?, true);
    let (key, url) = responses.url().await?;
    let event = cfn::update(SYNC, "Sync", "tether-sync:x", &json!({}), &json!({}), &url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
    hangs.answer(&event, deadline).await?;
    assert!(
        tokio::time::Instant::now() < deadline,
        "answered after the deadline"
    );
    let stored = responses
        .read(&key)
        .await?
        .ok_or("no response after a hang")?
        .body;
    assert_eq!(stored["Status"], "FAILED");
    assert_eq!(stored["PhysicalResourceId"], "tether-sync:x");
    assert!(
        stored["Reason"]
            .as_str()
            .unwrap_or_default()
            .contains("deadline"),
        "{stored}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_function_configuration_still_answers_every_event() -> R {
    // A typo in the function's own environment must not leave a stack
    // waiting an hour for an answer that never comes.
    let s = setup_with(&[
        ("ALLOW_INSECURE_RESPONSE_URL", "true"),
        ("DNS_SERVERS", "10.0.0.256"),
    ])
    .await?;
    let props = json!({"Hostname": "vpce-1.example.com"});
    let reply = s.send(|url| cfn::create(DNS, "Ips", &props, url)).await?;
    assert_eq!(reply.status(), "FAILED");
    assert!(
        reply.reason().contains("misconfigured")
            && reply.reason().contains("DNS_SERVERS")
            && reply.reason().contains("10.0.0.256"),
        "{}",
        reply.reason()
    );
    assert!(s.f.logs().contains("every event will be answered FAILED"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_signed_url_never_reaches_the_logs_at_the_most_verbose_level() -> R {
    // DEBUG is the most verbose LogLevel the template allows (TRACE would
    // make lambda_runtime log raw events, response URL included).
    let s = setup_with(&[
        ("ALLOW_INSECURE_RESPONSE_URL", "true"),
        ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
    ])
    .await?;
    s.w.answer(VPCE, &["10.0.1.5"]);
    let props = json!({"Hostname": VPCE});
    let created = s.send(|url| cfn::create(DNS, "Ips", &props, url)).await?;
    assert_eq!(created.status(), "SUCCESS", "{}", created.body());
    let logs = s.f.logs();
    assert!(
        logs.contains("\"DEBUG\""),
        "DEBUG lines are logged:\n{logs}"
    );
    for secret in ["X-Amz-Signature", "X-Amz-Credential", "x-amz-signature"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    Ok(())
}

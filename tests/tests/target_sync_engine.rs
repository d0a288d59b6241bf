//! The sync engine with its real adapters, for what the binary tests cannot
//! stage: two runs racing on the state object (real S3 conditional writes in
//! moto), and a `draining` target (moto never reports IP targets as
//! draining, so that one ELB response comes from aws-smithy-mocks).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_smithy_mocks::{RuleMode, mock};
use serde_json::json;
use tether_shared::aws::{AwsError, SyncClients, s3_client};
use tether_shared::config::Vars;
use tether_shared::dns::HickoryDns;
use tether_shared::metrics::CloudWatch;
use tether_shared::sync::groups::Elb;
use tether_shared::sync::interfaces::Ec2Interfaces;
use tether_shared::sync::state::SyncState;
use tether_shared::sync::store::{Loaded, S3Store, SaveError, StateStore, Version};
use tether_shared::sync::{Engine, ErrorKind, SyncConfig, state_key};
use tether_tests::moto::BoxError;
use tether_tests::world::{BUCKET, World};

const ALB: &str = "internal-race-alb-1.us-east-1.elb.amazonaws.com";

fn config(w: &World, tg: &str) -> Result<SyncConfig, BoxError> {
    let targets = json!([{"dns_name": ALB, "target_group_arn": tg, "port": 80}]).to_string();
    let server = w.dns.addr().to_string();
    let vars = Vars(|name: &str| match name {
        "TARGETS" => Some(targets.clone()),
        "STATE_BUCKET" => Some(BUCKET.to_owned()),
        "DNS_SERVERS" => Some(server.clone()),
        "DNS_TIMEOUT_MS" => Some("500".to_owned()),
        _ => None,
    });
    Ok(SyncConfig::from_vars(&vars)?)
}

fn clients(w: &World) -> SyncClients {
    SyncClients::new(&w.sdk)
}

fn interfaces(w: &World) -> Ec2Interfaces {
    Ec2Interfaces::new(&clients(w), None)
}

/// Clients whose ELB answers come from `elb` (aws-smithy-mocks).
fn with_elb(w: &World, elb: elbv2::Client) -> SyncClients {
    SyncClients { elb, ..clients(w) }
}

/// The real S3 store, with another run's write landing between this run's
/// read and its conditional write (the first `races` times it writes).
struct Racing {
    inner: S3Store,
    s3: aws_sdk_s3::Client,
    races: usize,
    saves: AtomicUsize,
    competitor: SyncState,
}

impl StateStore for Racing {
    async fn load(&self, key: &str) -> Result<Loaded, AwsError> {
        self.inner.load(key).await
    }

    async fn save(
        &self,
        key: &str,
        state: &SyncState,
        version: &Version,
    ) -> Result<Version, SaveError> {
        let n = self.saves.fetch_add(1, Ordering::SeqCst);
        if n < self.races {
            // Each competing write differs (identical bytes would have the same ETag).
            let mut competitor = self.competitor.clone();
            competitor
                .seen
                .insert(std::net::IpAddr::from([10, 0, 3, n as u8]));
            let body = competitor
                .encode()
                .map_err(|e| AwsError::new("test:encode", key, e.to_string()))?;
            let put = self
                .s3
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.into())
                .send()
                .await;
            put.map_err(|e| AwsError::new("test:PutObject", key, e.to_string()))?;
        }
        self.inner.save(key, state, version).await
    }

    async fn preserve(&self, key: &str, etag: &str, bytes: &[u8]) -> Result<String, AwsError> {
        self.inner.preserve(key, etag, bytes).await
    }
}

/// Counts last counted a minute ago (the run under test counts again).
fn pending(entries: &[(&str, u32)]) -> SyncState {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SyncState {
        pending: entries
            .iter()
            .map(|(t, n)| (t.parse().unwrap_or_else(|e| panic!("{t}: {e}")), *n))
            .collect(),
        counted_at: Some(now - 60),
        ..SyncState::default()
    }
}

async fn racing_engine(
    w: &World,
    tg: &str,
    races: usize,
) -> Result<Engine<HickoryDns, Ec2Interfaces, Elb, Racing, CloudWatch>, BoxError> {
    let config = config(w, tg)?;
    let s3 = s3_client(&w.sdk);
    Ok(Engine {
        dns: HickoryDns::new(&config.dns)?,
        interfaces: interfaces(w),
        elb: Elb::new(&clients(w), 1.0),
        store: Racing {
            inner: S3Store::new(s3.clone(), BUCKET),
            s3,
            races,
            saves: AtomicUsize::new(0),
            competitor: pending(&[("10.0.1.9:80", 2)]),
        },
        metrics: CloudWatch::new(w.cloudwatch.clone()),
        config,
    })
}

async fn stale_target_counting_down(w: &World, name: &str) -> Result<(String, String), BoxError> {
    let tg = w.target_group(name, 80).await?;
    w.register(&tg, "10.0.1.9", 80).await?;
    w.answer(ALB, &["10.0.1.1"]);
    let mapping = &config(w, &tg)?.mappings[0];
    let key = state_key("target-sync/", mapping, false);
    let state = pending(&[("10.0.1.9:80", 1)]);
    w.s3.put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(state.encode()?.into())
        .send()
        .await?;
    Ok((tg, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_is_re_read_and_re_planned_so_no_update_is_lost() -> Result<(), BoxError>
{
    let w = World::start().await?;
    let (tg, key) = stale_target_counting_down(&w, "race-once").await?;
    let engine = racing_engine(&w, &tg, 1).await?;

    let report = engine.run(Instant::now() + Duration::from_secs(30)).await;
    let m = &report.mappings[0];
    assert_eq!(m.error, None);
    assert_eq!(
        engine.store.saves.load(Ordering::SeqCst),
        3,
        "a conflict, the intent, then the state without the deregistered target"
    );
    // This run counted .9 from 1 to 2; the other run had already counted to 2.
    // Re-planned on top of the other run's state, the count reaches 3: deregistered.
    assert_eq!(m.deregistered, ["10.0.1.9:80".parse()?]);
    assert_eq!(w.targets(&tg).await?, ["10.0.1.1:80"]);
    let state = w.state(&key).await?.ok_or("no state")?;
    assert_eq!(state["pending"], json!({}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_conflict_gives_up_the_mapping_without_overwriting_the_other_run()
-> Result<(), BoxError> {
    let w = World::start().await?;
    let (tg, key) = stale_target_counting_down(&w, "race-twice").await?;
    let engine = racing_engine(&w, &tg, usize::MAX).await?;

    let report = engine.run(Instant::now() + Duration::from_secs(30)).await;
    let error = report.mappings[0]
        .error
        .clone()
        .ok_or("the mapping should fail")?;
    assert_eq!(error.kind, ErrorKind::StateConflict);
    assert!(error.message.contains(&key), "{}", error.message);
    assert_eq!(
        engine.store.saves.load(Ordering::SeqCst),
        2,
        "re-planned once, then gave up"
    );
    let state = w.state(&key).await?.ok_or("no state")?;
    assert_eq!(
        state["pending"],
        json!({"10.0.1.9:80": 2}),
        "the other run's write survives"
    );
    // The state is written before the group is changed: giving up touched nothing.
    assert_eq!(w.targets(&tg).await?, ["10.0.1.9:80"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_target_back_in_dns_is_registered_again() -> Result<(), BoxError> {
    let w = World::start().await?;
    let tg =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/drain/0123456789abcdef";
    w.answer(ALB, &["10.0.1.1", "10.0.1.2"]);

    let target = |ip: &str, state| {
        elbv2::types::TargetHealthDescription::builder()
            .target(
                elbv2::types::TargetDescription::builder()
                    .id(ip)
                    .port(80)
                    .build(),
            )
            .target_health(elbv2::types::TargetHealth::builder().state(state).build())
            .build()
    };
    let describe = mock!(elbv2::Client::describe_target_health).then_output(move || {
        elbv2::operation::describe_target_health::DescribeTargetHealthOutput::builder()
            .target_health_descriptions(target(
                "10.0.1.1",
                elbv2::types::TargetHealthStateEnum::Draining,
            ))
            .target_health_descriptions(target(
                "10.0.1.2",
                elbv2::types::TargetHealthStateEnum::Healthy,
            ))
            .build()
    });
    let registered: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let seen = registered.clone();
    let register = mock!(elbv2::Client::register_targets)
        .match_requests(move |req| {
            let ids = req
                .targets()
                .iter()
                .filter_map(|t| t.id().map(|id| format!("{id}:{}", t.port().unwrap_or(0))));
            seen.lock().unwrap_or_else(|e| e.into_inner()).extend(ids);
            true
        })
        .then_output(|| {
            elbv2::operation::register_targets::RegisterTargetsOutput::builder().build()
        });
    let elb = mocked_elb(&[&describe, &register]);

    let config = config(&w, tg)?;
    let engine = Engine {
        dns: HickoryDns::new(&config.dns)?,
        interfaces: interfaces(&w),
        elb: Elb::unpaced(&with_elb(&w, elb)),
        store: S3Store::new(s3_client(&w.sdk), BUCKET),
        metrics: CloudWatch::new(w.cloudwatch.clone()),
        config,
    };
    let report = engine.run(Instant::now() + Duration::from_secs(30)).await;
    let m = &report.mappings[0];
    assert_eq!(m.error, None);
    assert_eq!(m.registered, ["10.0.1.1:80".parse()?]);
    assert_eq!(
        *registered.lock().unwrap_or_else(|e| e.into_inner()),
        ["10.0.1.1:80"]
    );
    assert_eq!(register.num_calls(), 1);
    assert_eq!(m.pending, BTreeMap::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_time_sync_waits_for_a_new_policy_to_take_effect() -> Result<(), BoxError> {
    // IAM applies a new policy a few seconds after CloudFormation attached
    // it: AccessDenied first, then the call goes through.
    let w = World::start().await?;
    let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/new/0123456789abcdef";
    w.answer(ALB, &["10.0.1.1"]);
    let denied = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform: elasticloadbalancing:DescribeTargetHealth</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
    let describe = mock!(elbv2::Client::describe_target_health)
        .sequence()
        .http_status(403, Some(denied.to_owned()))
        .output(|| {
            elbv2::operation::describe_target_health::DescribeTargetHealthOutput::builder().build()
        })
        .build();
    let register = mock!(elbv2::Client::register_targets).then_output(|| {
        elbv2::operation::register_targets::RegisterTargetsOutput::builder().build()
    });
    let elb = mocked_elb(&[&describe, &register]);

    let mut config = config(&w, tg)?;
    config.metrics.enabled = false;
    let engine = Engine {
        dns: HickoryDns::new(&config.dns)?,
        interfaces: interfaces(&w),
        elb: Elb::unpaced(&with_elb(&w, elb)),
        store: S3Store::new(s3_client(&w.sdk), BUCKET),
        metrics: tether_shared::cfn::target_sync::Unpublished,
        config,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (report, _) = tether_shared::cfn::target_sync::run_patiently(&engine, &[], deadline).await;
    assert_eq!(report.mappings[0].error, None);
    assert_eq!(describe.num_calls(), 2, "denied once, then allowed");
    assert_eq!(register.num_calls(), 1);
    assert_eq!(report.mappings[0].registered, ["10.0.1.1:80".parse()?]);
    Ok(())
}

/// An ELB client whose answers come from `rules` (aws-smithy-mocks).
fn mocked_elb(rules: &[&aws_smithy_mocks::Rule]) -> elbv2::Client {
    let mut interceptor =
        aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    elbv2::Client::from_conf(
        elbv2::Config::builder()
            .behavior_version(elbv2::config::BehaviorVersion::latest())
            .region(elbv2::config::Region::new("us-east-1"))
            .credentials_provider(elbv2::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build(),
    )
}

/// Fix 7: `TargetGroupNotFound` is told by the SDK's typed error, not by
/// matching text: a group the tagging API still lists after it was deleted
/// is `Gone` (and left), not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_group_is_told_by_the_typed_error() -> Result<(), BoxError> {
    use tether_shared::sync::groups::{Described, TargetGroups};
    let w = World::start().await?;
    let arn: tether_shared::sync::mapping::TargetGroupArn =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef"
            .parse()?;
    let not_found = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>TargetGroupNotFound</Code><Message>One or more target groups not found</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
    let denied = not_found
        .replace("<Code>TargetGroupNotFound", "<Code>AccessDenied")
        .replace("One or more target groups not found", "TargetGroupNotFound");
    let describe = mock!(elbv2::Client::describe_target_health)
        .sequence()
        .http_status(400, Some(not_found.to_owned()))
        .http_status(403, Some(denied))
        .build();
    let elb = Elb::unpaced(&with_elb(&w, mocked_elb(&[&describe])));
    assert_eq!(elb.describe(&arn).await, Ok(Described::Gone));
    // Another error whose message merely mentions the name is an error.
    let error = elb.describe(&arn).await.expect_err("denied");
    assert_eq!(error.code.as_deref(), Some("AccessDenied"));
    Ok(())
}

/// Fix 1, through the real S3 client: a conditional `PutObject` lands and
/// its answer is lost (a 500, or no answer until the attempt times out),
/// so the SDK retries it with the same `If-Match` and S3 (moto) answers
/// 412. The proxy in the test support loses the answers
/// (`ThrottlingProxy::lose_put_answers`). The absence counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_whose_first_attempt_landed_counts_an_absence_once() -> Result<(), BoxError>
{
    use tether_tests::throttle::{Lost, ThrottlingProxy};
    for lost in [Lost::ServerError, Lost::NoAnswer] {
        let w = World::start().await?;
        let (tg, key) = stale_target_counting_down(&w, "lost").await?;
        let proxy = ThrottlingProxy::start(&w.moto.endpoint()).await?;
        // The state's client goes through the proxy, with a short attempt
        // timeout so that a lost answer is retried soon.
        let sdk = w
            .sdk
            .to_builder()
            .endpoint_url(proxy.endpoint())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .build();
        let mut config = config(&w, &tg)?;
        config.mappings[0].deregister_after = 3;
        let engine = Engine {
            dns: HickoryDns::new(&config.dns)?,
            interfaces: interfaces(&w),
            elb: Elb::new(&clients(&w), 1.0),
            store: S3Store::new(s3_client(&sdk), BUCKET),
            metrics: CloudWatch::new(w.cloudwatch.clone()),
            config,
        };
        proxy.lose_put_answers(1, lost);
        let report = engine.run(Instant::now() + Duration::from_secs(30)).await;
        assert_eq!(report.mappings[0].error, None, "{lost:?}");
        assert!(proxy.counts().s3_puts >= 2, "retried: {:?}", proxy.counts());
        let state = w.state(&key).await?.ok_or("no state")?;
        assert_eq!(
            state["pending"],
            json!({"10.0.1.9:80": 2}),
            "{lost:?}: counted once"
        );
        assert!(w.targets(&tg).await?.contains(&"10.0.1.9:80".to_owned()));
    }
    Ok(())
}

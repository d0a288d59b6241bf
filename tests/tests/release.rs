//! The release, installed the way `docs/install.md` installs it without
//! Rust: its files copied to the bucket of the region, its `template.json`
//! deployed from S3 into the emulator's CloudFormation through the real SDK,
//! and the stack's three functions, taken from the stack (their environment,
//! handler and code, from the emulator's Lambda), run under the Runtime API
//! emulator for their first invocation against the same moto:
//!
//! - custom-resources answers the Create event of the stack's first sync
//!   (`FirstSync`), which fills the tagged target group; its answer goes to
//!   moto's own response endpoint and completes the stack;
//! - target-sync runs its first scheduled tick: the group is in sync;
//! - health-canary probes its endpoint and publishes its metrics.
//!
//! The release is packaged by the release's own code from this build's
//! binaries (x86_64, where `make release` ships arm64; see
//! `tether_tests::release`). What the emulator cannot do is said, not faked:
//! - moto 5.2's CloudFormation has no model for some resource types; it
//!   skips them and the test prints each one (and fails on one it did not
//!   expect);
//! - `release_stack.py plan` changes the template where moto cannot take it
//!   (a policy document given as JSON text, list items that are
//!   `AWS::NoValue`), and the test prints each change; the release's own
//!   `template.json` is what `tests/template/test_release.py` checks;
//! - moto's CloudFormation drops a function's `Architectures` (it reports
//!   x86_64): the template's arm64 is checked on the template;
//! - moto invokes a custom resource's function only through Docker, which
//!   this machine does not run: the test sends the function the Create event
//!   CloudFormation would send, built from the stack's own template,
//!   parameters and resources (`release_stack.py event`);
//! - a stack's function would get the state bucket from `GetAtt` of a custom
//!   resource that moto has not answered yet when it creates the function
//!   (it creates every resource at once): the stack is given its state bucket
//!   (`StateBucketName`) instead, one of the template's two ways.
//!
//! A second test installs the release into every account of an OU with a
//! service-managed StackSet, in two regions, as `docs/install.md` does, and
//! checks what each member account gets (moto 5.2 gives a stack instance
//! the instance's parameter overrides only, not the StackSet's parameters:
//! the test passes them both ways, and says so).
//!
//! Run with `--nocapture` to see those lists.

mod common;

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::{Parameter, StackStatus};
use serde_json::{Value, json};
use tether_tests::aws::{create_bucket, tag};
use tether_tests::https::{Behaviour, TestServer};
use tether_tests::lambda::FunctionProcess;
use tether_tests::moto::{BoxError, REGION};
use tether_tests::release::{
    Deployment, EventContext, FunctionCode, In, Release, custom_resource_event, function_names,
    moto_response_url, organization, plan,
};
use tether_tests::world::{BUCKET, World, scheduled_event};

type R = Result<(), BoxError>;

const STACK: &str = "tether";
/// The install guide's bucket naming: `<prefix>-<region>`.
const BUCKET_PREFIX: &str = "acme-tether";
const APP: &str = "app.release.test";
const APP_ADDRS: [&str; 2] = ["10.0.1.11", "10.0.2.12"];

/// Resource types moto 5.2's CloudFormation has no model for (it skips
/// them). A resource of any other type missing from the stack fails the test.
const EMULATOR_GAPS: [&str; 3] = [
    "AWS::CloudWatch::Alarm",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Scheduler::Schedule",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_deploys_from_s3_and_its_functions_run_from_the_stack() -> R {
    let w = World::start().await?;
    let scratch = tempdir("release")?;
    let release = Release::package(&scratch.join("dist"))?;
    println!(
        "release {} packaged from this build's {} binaries by the release's own packaging code",
        release.version, release.arch
    );

    // The install guide: one bucket per region, the release's files under
    // tether/<version>/, the template deployed from there.
    let bucket = format!("{BUCKET_PREFIX}-{REGION}");
    let prefix = format!("tether/{}", release.version);
    create_bucket(&w.s3, &bucket).await?;
    release.upload(&w.s3, &bucket, &prefix).await?;

    // What the stack works on: a tagged target group whose source is a DNS
    // name, an endpoint for the canary, a security group for the VPC.
    let group = w.target_group("release-app", 443).await?;
    tag(&w.elb, &group, &[("tether:source", &format!("dns:{APP}"))]).await?;
    w.answer(APP, &APP_ADDRS);
    let endpoint = TestServer::http(Behaviour::ok()).await?;
    let security_group = w
        .ec2
        .create_security_group()
        .group_name("tether")
        .description("tether functions")
        .vpc_id(&w.network.vpc_id)
        .send()
        .await?
        .group_id()
        .ok_or("CreateSecurityGroup: no id")?
        .to_owned();

    let plan = plan(&release, Deployment::Stack, &[
        ("ArtifactBucketPrefix", BUCKET_PREFIX.into()),
        ("StateBucketName", BUCKET.into()),
        ("DnsServers", w.dns.addr().to_string()),
        (
            "CanaryTargets",
            json!([{"name": "orders", "url": format!("http://127.0.0.1:{}/health", endpoint.port())}])
                .to_string(),
        ),
        ("SubnetIds", w.network.subnet_ids.join(",")),
        ("SecurityGroupIds", security_group),
    ])?;
    // One canary function per subnet (the world's VPC has two).
    assert_eq!(
        plan.functions,
        [
            "CustomResourcesFunction",
            "HealthCanaryFunction",
            "HealthCanaryFunction1",
            "TargetSyncFunction"
        ]
    );
    println!("changed for the emulator:");
    for change in &plan.changes {
        println!("  {change}");
    }
    // Deployed from S3, as the template is too large to pass inline.
    let key = format!("{prefix}/emulator/template.json");
    w.s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(plan.template.to_string().into_bytes().into())
        .send()
        .await?;
    let template_url = format!("https://{bucket}.s3.{REGION}.amazonaws.com/{key}");

    let cfn = aws_sdk_cloudformation::Client::new(&w.sdk);
    let stack_id = create_stack(&cfn, &template_url, &plan.parameters).await?;
    let physical = common::stack_resources(&cfn, STACK).await?;
    let missing: BTreeMap<&String, &String> = plan
        .resources
        .iter()
        .filter(|(logical, _)| !physical.contains_key(*logical))
        .collect();
    println!("not created by the emulator (moto 5.2 has no CloudFormation model for these types):");
    for (logical, kind) in &missing {
        println!("  {logical} ({kind})");
    }
    let unexpected: Vec<_> = missing
        .iter()
        .filter(|(_, kind)| !EMULATOR_GAPS.contains(&kind.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "missing from the stack: {unexpected:?}"
    );
    // The first sync has not answered: CloudFormation waits for it.
    assert_eq!(stack_status(&cfn).await?, StackStatus::CreateInProgress);

    // The functions as the stack created them, code from the release's zips.
    let mut functions = BTreeMap::new();
    for logical in &plan.functions {
        let name = physical
            .get(logical)
            .ok_or_else(|| format!("the stack has no {logical}"))?;
        let code = FunctionCode::fetch(
            &w.moto,
            In::DEFAULT,
            &w.s3,
            name,
            &bucket,
            &scratch.join(logical),
        )
        .await?;
        assert_eq!(
            (code.handler.as_str(), code.runtime.as_str()),
            ("bootstrap", "provided.al2023"),
            "{logical}"
        );
        functions.insert(logical.as_str(), code);
    }
    println!(
        "each function's code is the release's zip at s3://{bucket}/{prefix}/<function>.zip \
         (its CodeSha256); the template declares arm64 (moto reports {:?}), the binaries here are {}",
        functions["TargetSyncFunction"].architectures, release.arch
    );

    // custom-resources: the Create event of FirstSync, answered to moto.
    let custom = &functions["CustomResourcesFunction"];
    let event = custom_resource_event(
        &release,
        "FirstSync",
        &EventContext {
            parameters: &plan.parameters,
            attributes: BTreeMap::from([(
                "CustomResourcesFunction.Arn".into(),
                custom.arn.clone(),
            )]),
            stack_id: &stack_id,
            request_id: "5d2c3b1a-0000-4000-8000-000000000001".into(),
            response_url: moto_response_url(&w.moto, &stack_id),
        },
    )?;
    // The first sync's configuration is the function's own environment
    // (target-sync's variables), never the event's.
    assert!(
        event["ResourceProperties"].get("Environment").is_none(),
        "{event}"
    );
    assert_eq!(custom.environment["STATE_BUCKET"], BUCKET);
    let answered = first_invocation(
        custom,
        &w,
        event,
        &[("ALLOW_INSECURE_RESPONSE_URL", "true")],
    )
    .await?;
    println!("custom-resources answered FirstSync: {answered}");
    assert_eq!(stack_status(&cfn).await?, StackStatus::CreateComplete);
    let mut expected: Vec<String> = APP_ADDRS.iter().map(|a| format!("{a}:443")).collect();
    expected.sort();
    assert_eq!(
        w.targets(&group).await?,
        expected,
        "the first sync fills the group"
    );

    // target-sync: its first tick finds the group in sync.
    let sync =
        first_invocation(&functions["TargetSyncFunction"], &w, scheduled_event(), &[]).await?;
    assert_eq!(w.targets(&group).await?, expected);
    let registered: u64 = sync["mappings"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["registered"].as_u64()).sum())
        .unwrap_or_default();
    assert_eq!(registered, 0, "{sync}");
    assert!(
        !w.keys().await?.is_empty(),
        "target-sync keeps its state in the stack's bucket"
    );

    // health-canary: one round against its endpoint, metrics published.
    let canary = &functions["HealthCanaryFunction"];
    let round = first_invocation(
        canary,
        &w,
        scheduled_event(),
        &[("PROBES_PER_INVOCATION", "1")],
    )
    .await?;
    println!("health-canary: {round}");
    assert!(
        !endpoint.requests().is_empty(),
        "the canary probed its endpoint"
    );
    let namespace = &canary.environment["METRICS_NAMESPACE"];
    let metrics = w
        .cloudwatch
        .list_metrics()
        .namespace(namespace)
        .metric_name("Success")
        .send()
        .await?;
    assert!(
        metrics.metrics().iter().any(|m| m
            .dimensions()
            .iter()
            .any(|d| d.name() == Some("Endpoint") && d.value() == Some("orders"))),
        "Success for orders in {namespace}: {metrics:?}"
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// Starts the function's code with its environment (and the emulator's,
/// and `extra`) and returns the answer to its first invocation.
async fn first_invocation(
    code: &FunctionCode,
    w: &World,
    event: Value,
    extra: &[(&str, &str)],
) -> Result<Value, BoxError> {
    let f = FunctionProcess::spawn(&code.executable, &code.env(&w.moto, extra)).await?;
    let run = f.invoke(event, code.timeout).await?;
    run.result
        .map_err(|e| format!("{} failed: {e}\n{}", code.name, f.logs()).into())
}

async fn create_stack(
    cfn: &aws_sdk_cloudformation::Client,
    template_url: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<String, BoxError> {
    let mut request = cfn
        .create_stack()
        .stack_name(STACK)
        .template_url(template_url)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam);
    for (k, v) in parameters {
        request = request.parameters(
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build(),
        );
    }
    let out = request.send().await.map_err(|e| {
        format!(
            "CreateStack: {}",
            aws_sdk_cloudformation::error::DisplayErrorContext(&e)
        )
    })?;
    Ok(out.stack_id().ok_or("CreateStack: no stack id")?.to_owned())
}

async fn stack_status(cfn: &aws_sdk_cloudformation::Client) -> Result<StackStatus, BoxError> {
    let out = cfn.describe_stacks().stack_name(STACK).send().await?;
    let stack = out.stacks().first().ok_or("DescribeStacks: no stack")?;
    stack.stack_status().cloned().ok_or_else(|| {
        format!(
            "no status: {}",
            stack.stack_status_reason().unwrap_or_default()
        )
        .into()
    })
}

/// A fresh directory under the temp dir.
fn tempdir(name: &str) -> Result<std::path::PathBuf, BoxError> {
    let dir = std::env::temp_dir().join(format!("tether-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_managed_stack_set_installs_the_release_in_every_account_of_the_ou() -> R {
    use aws_sdk_cloudformation::types::{
        AutoDeployment, Capability, DeploymentTargets, PermissionModels,
    };

    let moto = tether_tests::moto::Moto::start().await?;
    let sdk = moto.sdk_config().await;
    let s3 = moto.s3(&sdk);
    let scratch = tempdir("stackset")?;
    let release = Release::package(&scratch.join("dist"))?;
    let prefix = format!("tether/{}", release.version);
    let regions = ["us-east-1", "us-west-2"];
    for region in regions {
        let bucket = format!("{BUCKET_PREFIX}-{region}");
        create_bucket(&s3, &bucket).await?;
        release.upload(&s3, &bucket, &prefix).await?;
    }
    // The template with what moto cannot take changed (see the first test).
    let plan = plan(
        &release,
        Deployment::StackSet,
        &[("ArtifactBucketPrefix", BUCKET_PREFIX.into())],
    )?;
    println!("changed for the emulator: {:#?}", plan.changes);
    let key = format!("{prefix}/emulator/template.json");
    s3.put_object()
        .bucket(format!("{BUCKET_PREFIX}-us-east-1"))
        .key(&key)
        .body(plan.template.to_string().into_bytes().into())
        .send()
        .await?;
    // The management account (moto's default) with an OU of two members.
    let org = organization(&moto, "platform", 2).await?;
    println!(
        "organization {}: OU {} holds {:?}",
        org.id, org.ou, org.members
    );

    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let bucket_prefix = Parameter::builder()
        .parameter_key("ArtifactBucketPrefix")
        .parameter_value(BUCKET_PREFIX)
        .build();
    cfn.create_stack_set()
        .stack_set_name(STACK)
        .template_url(format!(
            "https://{BUCKET_PREFIX}-us-east-1.s3.us-east-1.amazonaws.com/{key}"
        ))
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(
            AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .capabilities(Capability::CapabilityIam)
        .parameters(bucket_prefix.clone())
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateStackSet: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(&e)
            )
        })?;
    println!(
        "moto gives stack instances only their parameter overrides: ArtifactBucketPrefix is passed as one too"
    );
    cfn.create_stack_instances()
        .stack_set_name(STACK)
        .deployment_targets(
            DeploymentTargets::builder()
                .organizational_unit_ids(&org.ou)
                .build(),
        )
        .set_regions(Some(regions.map(String::from).to_vec()))
        .parameter_overrides(bucket_prefix)
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateStackInstances: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(&e)
            )
        })?;

    let instances = cfn
        .list_stack_instances()
        .stack_set_name(STACK)
        .send()
        .await?;
    let mut placed: Vec<(String, String)> = instances
        .summaries()
        .iter()
        .filter_map(|i| Some((i.account()?.to_owned(), i.region()?.to_owned())))
        .collect();
    placed.sort();
    let mut expected: Vec<(String, String)> = org
        .members
        .iter()
        .flat_map(|a| regions.map(|r| (a.clone(), r.to_owned())))
        .collect();
    expected.sort();
    assert_eq!(
        placed, expected,
        "one stack instance per member account and region"
    );

    // Each member account, in each region, has tether's three functions,
    // created from that region's bucket with the release's zips.
    for account in &org.members {
        for region in regions {
            let at = In {
                account: Some(account),
                region,
            };
            let names = function_names(&moto, at).await?;
            let mut kinds: Vec<&str> = names
                .iter()
                .filter_map(|n| {
                    [
                        "TargetSyncFunction",
                        "HealthCanaryFunction",
                        "CustomResourcesFunction",
                    ]
                    .into_iter()
                    .find(|logical| n.contains(logical))
                })
                .collect();
            kinds.sort();
            // No canary without CanaryTargets: the StackSet gives none.
            assert_eq!(
                kinds,
                ["CustomResourcesFunction", "TargetSyncFunction"],
                "{account} {region}: {names:?}"
            );
            for name in &names {
                let dir = scratch.join(account).join(region).join(name);
                let code = FunctionCode::fetch(
                    &moto,
                    at,
                    &s3,
                    name,
                    &format!("{BUCKET_PREFIX}-{region}"),
                    &dir,
                )
                .await?;
                if name.contains("TargetSyncFunction") {
                    assert_eq!(
                        code.environment.get("TAG_DISCOVERY").map(String::as_str),
                        Some("true")
                    );
                    assert_eq!(
                        code.environment.get("TAG_PREFIX").map(String::as_str),
                        Some("tether:")
                    );
                }
            }
        }
    }
    // StackSets never deploy to the management account itself.
    for region in regions {
        let mine = function_names(
            &moto,
            In {
                account: None,
                region,
            },
        )
        .await?;
        assert!(mine.is_empty(), "the management account got {mine:?}");
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

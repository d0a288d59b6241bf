//! Sources in another account: an ALB owned by account 222222222222 (a
//! hub-and-spoke network) feeds a target group of this account, through a
//! role there. The built binary under the Runtime API emulator, moto for
//! STS, ELB, EC2 and S3.
//!
//! moto's `AssumeRole` does not need the role to exist and does not check
//! the external ID; its credentials act in the role's account, whose
//! resources moto keeps apart (the ALB, its VPC and its node interfaces
//! are created there with those credentials). moto gives an ALB no network
//! interfaces, so its nodes' interfaces are created by hand
//! (`tether_tests::aws::create_alb_nodes`).

use aws_config::sts::AssumeRoleProvider;
use aws_sdk_ec2::config::SharedCredentialsProvider;
use tether_tests::aws::{
    LbKind, create_alb_nodes, create_load_balancer, create_vpc_in_account, tag,
};
use tether_tests::moto::BoxError;
use tether_tests::world::{World, ok_tick, tick};

const ROLE: &str = "arn:aws:iam::222222222222:role/tether-source";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alb_in_another_account_is_listed_through_its_role_and_only_a_listed_role()
-> Result<(), BoxError> {
    let w = World::start().await?;
    // The other account, as its own credentials see it.
    let provider = AssumeRoleProvider::builder(ROLE)
        .session_name("tether-test")
        .external_id("tether-test")
        .configure(&w.sdk)
        .build()
        .await;
    let other = w
        .sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build();
    let (ec2, elb) = (
        aws_sdk_ec2::Client::new(&other),
        aws_sdk_elasticloadbalancingv2::Client::new(&other),
    );
    let hub = create_vpc_in_account(&ec2, 50).await?;
    let alb = create_load_balancer(&elb, &hub, "shared-orders", LbKind::Application).await?;
    let nodes = ["10.50.1.10", "10.50.2.10", "10.50.1.11"];
    create_alb_nodes(&ec2, &hub, &alb.arn, &nodes).await?;
    // This account does not see it.
    let here = w
        .elb
        .describe_load_balancers()
        .send()
        .await?
        .load_balancers()
        .len();
    assert_eq!(here, 0, "the ALB is the other account's");

    let tg = w.target_group("spoke", 443).await?;
    tag(
        &w.elb,
        &tg,
        &[
            ("tether:source", "alb:shared-orders"),
            ("tether:source-role", ROLE),
            // The hub's VPC is not the group's: targets outside its VPC.
            ("tether:availability-zone", "all"),
        ],
    )
    .await?;
    let env = w.env(&[
        (
            "SOURCE_ROLE_ARNS",
            "arn:aws:iam::222222222222:role/tether-*",
        ),
        ("SOURCE_ROLE_EXTERNAL_ID", "tether-test"),
    ]);
    let f = w.spawn("target-sync", &env).await?;
    let out = ok_tick(&f).await?;
    assert_eq!(
        w.targets(&tg).await?,
        ["10.50.1.10:443", "10.50.1.11:443", "10.50.2.10:443"],
        "{out}"
    );

    // Without the zone all, the other VPC is named as the error.
    let strict = w.target_group("strict", 443).await?;
    tag(
        &w.elb,
        &strict,
        &[
            ("tether:source", "alb:shared-orders"),
            ("tether:source-role", ROLE),
        ],
    )
    .await?;
    // A role the function may not assume is a bad tag, naming the tag.
    let foreign = w.target_group("foreign", 443).await?;
    tag(
        &w.elb,
        &foreign,
        &[
            ("tether:source", "alb:shared-orders"),
            ("tether:source-role", "arn:aws:iam::333333333333:role/other"),
        ],
    )
    .await?;
    let error = tick(&f).await?.err().ok_or("two groups fail")?;
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(&hub.vpc_id) && message.contains(&w.network.vpc_id),
        "{message}"
    );
    assert!(
        message.contains(&format!("{foreign} tag tether:source-role")),
        "{message}"
    );
    assert!(w.targets(&strict).await?.is_empty());
    assert!(w.targets(&foreign).await?.is_empty());
    assert_eq!(
        w.targets(&tg).await?.len(),
        3,
        "the good group is untouched"
    );
    Ok(())
}

//! target-sync as a fleet tool, end to end: target groups opt in by tag, with
//! `dns:`, `alb:` and `vpce:` sources. The built binary under the Runtime API
//! emulator, moto for ELB/EC2/S3, a real DNS server on loopback.
//!
//! moto gives an ALB no network interfaces, so the ALB's node interfaces are
//! created by hand with the description AWS gives them
//! (`tether_tests::aws::create_alb_nodes`). moto's interface VPC endpoints do
//! have interfaces.

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::aws::{
    LbKind, create_alb_nodes, create_interface_endpoint, create_load_balancer, delete_interfaces,
    tag,
};
use tether_tests::moto::BoxError;
use tether_tests::world::{World, mapping, ok_tick, scheduled_event, tick};

const NAME: &str = "internal-orders-1234567890.us-east-1.elb.amazonaws.com";

type R = Result<(), BoxError>;

fn nodes(prefix: &str, n: u8) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn with_port(v: &[String], port: u16) -> Vec<String> {
    let mut all: Vec<String> = v.iter().map(|ip| format!("{ip}:{port}")).collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_groups_of_every_source_are_synced_and_untagged_ones_left_alone() -> R {
    let w = World::start().await?;
    // dns: a name behind a tag.
    let by_dns = w.target_group("by-dns", 80).await?;
    tag(
        &w.elb,
        &by_dns,
        &[("tether:source", &format!("dns:{NAME}"))],
    )
    .await?;
    w.answer(NAME, &["10.0.1.5", "10.0.2.5"]);
    // alb: ten nodes (more than a DNS answer holds), by name and by ARN.
    let alb = create_load_balancer(&w.elb, &w.network, "orders", LbKind::Application).await?;
    let ten = nodes("10.0.1.1", 9);
    let mut ten = ten;
    ten.push("10.0.2.100".into());
    let ids = create_alb_nodes(&w.ec2, &w.network, &alb.arn, &strs(&ten)).await?;
    let by_name = w.target_group("by-alb-name", 443).await?;
    tag(
        &w.elb,
        &by_name,
        &[
            ("tether:source", "alb:orders"),
            ("tether:deregister-after", "1"),
            ("tether:max-deregister-percent", "100"),
        ],
    )
    .await?;
    let by_arn = w.target_group("by-alb-arn", 8443).await?;
    tag(
        &w.elb,
        &by_arn,
        &[
            ("tether:source", &format!("alb:{}", alb.arn)),
            ("tether:port", "443"),
        ],
    )
    .await?;
    // vpce: an interface endpoint's addresses.
    let endpoint = create_interface_endpoint(&w.ec2, &w.network).await?;
    let by_vpce = w.target_group("by-vpce", 443).await?;
    tag(
        &w.elb,
        &by_vpce,
        &[("tether:source", &format!("vpce:{endpoint}"))],
    )
    .await?;
    // Untagged, with a target added by hand: never touched.
    let untagged = w.target_group("untagged", 80).await?;
    w.register(&untagged, "10.0.9.9", 80).await?;
    // Tagged for another stack's prefix: not ours.
    let staging = w.target_group("staging", 80).await?;
    tag(&w.elb, &staging, &[("stg:source", &format!("dns:{NAME}"))]).await?;

    let f = w.spawn("target-sync", &w.env(&[])).await?;
    let out = ok_tick(&f).await?;
    assert_eq!(out["mappings"].as_array().map(Vec::len), Some(4), "{out}");
    assert_eq!(w.targets(&by_dns).await?, ["10.0.1.5:80", "10.0.2.5:80"]);
    assert_eq!(w.targets(&by_name).await?, with_port(&ten, 443));
    assert_eq!(w.targets(&by_arn).await?, with_port(&ten, 443));
    let vpce_targets = w.targets(&by_vpce).await?;
    assert!(
        !vpce_targets.is_empty(),
        "the endpoint's interfaces are registered"
    );
    assert_eq!(w.targets(&untagged).await?, ["10.0.9.9:80"]);
    assert!(w.targets(&staging).await?.is_empty());

    // Two nodes go away: removed after one absence (deregister-after 1)
    // from the group that asks for it; the other counts down.
    delete_interfaces(&w.ec2, &ids[..2]).await?;
    let out = ok_tick(&f).await?;
    assert_eq!(
        w.targets(&by_name).await?,
        with_port(&ten[2..], 443),
        "{out}"
    );
    assert_eq!(w.targets(&by_arn).await?, with_port(&ten, 443));

    // A group tagged after the function started is picked up at the next run.
    let late = w.target_group("late", 80).await?;
    tag(&w.elb, &late, &[("tether:source", &format!("dns:{NAME}"))]).await?;
    ok_tick(&f).await?;
    assert_eq!(w.targets(&late).await?, ["10.0.1.5:80", "10.0.2.5:80"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tag_fails_its_group_only_and_the_invocation() -> R {
    let w = World::start().await?;
    let good = w.target_group("good", 80).await?;
    tag(&w.elb, &good, &[("tether:source", &format!("dns:{NAME}"))]).await?;
    let bad = w.target_group("bad", 80).await?;
    tag(
        &w.elb,
        &bad,
        &[
            ("tether:source", &format!("dns:{NAME}")),
            ("tether:ownership", "mine"),
        ],
    )
    .await?;
    w.answer(NAME, &["10.0.1.5"]);
    let f = w.spawn("target-sync", &w.env(&[])).await?;
    let error = tick(&f)
        .await?
        .err()
        .ok_or("a bad tag fails the invocation")?;
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{bad} tag tether:ownership")) && message.contains("mine"),
        "{message}"
    );
    assert_eq!(w.targets(&good).await?, ["10.0.1.5:80"]);
    assert!(w.targets(&bad).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_prefix_and_discovery_off_choose_what_is_synced() -> R {
    let w = World::start().await?;
    let production = w.target_group("production", 80).await?;
    tag(
        &w.elb,
        &production,
        &[("tether:source", &format!("dns:{NAME}"))],
    )
    .await?;
    let staging = w.target_group("staging", 80).await?;
    tag(&w.elb, &staging, &[("stg:source", &format!("dns:{NAME}"))]).await?;
    let listed = w.target_group("listed", 80).await?;
    w.answer(NAME, &["10.0.1.5"]);

    let f = w
        .spawn("target-sync", &w.env(&[("TAG_PREFIX", "stg:")]))
        .await?;
    ok_tick(&f).await?;
    assert_eq!(w.targets(&staging).await?, ["10.0.1.5:80"]);
    assert!(w.targets(&production).await?.is_empty());
    drop(f);

    // TARGETS set: discovery is off unless asked for; tagged groups wait.
    let targets = Value::Array(vec![mapping(NAME, &listed, 80)]).to_string();
    let f = w
        .spawn("target-sync", &w.env(&[("TARGETS", &targets)]))
        .await?;
    let out = ok_tick(&f).await?;
    assert_eq!(out["mappings"].as_array().map(Vec::len), Some(1));
    assert_eq!(w.targets(&listed).await?, ["10.0.1.5:80"]);
    assert!(w.targets(&production).await?.is_empty());
    drop(f);
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets), ("TAG_DISCOVERY", "true")]),
        )
        .await?;
    ok_tick(&f).await?;
    assert_eq!(w.targets(&production).await?, ["10.0.1.5:80"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mappings_on_one_group_share_its_guard() -> R {
    let w = World::start().await?;
    let tg = w.target_group("shared", 80).await?;
    let other = "internal-other-1.us-east-1.elb.amazonaws.com";
    w.answer(NAME, &["10.0.1.1", "10.0.1.2"]);
    w.answer(other, &["10.0.1.3", "10.0.1.4"]);
    let mut a = mapping(NAME, &tg, 80);
    let mut b = mapping(other, &tg, 80);
    for m in [&mut a, &mut b] {
        m["ownership"] = json!("tracked");
        m["deregister_after"] = json!(1);
        m["max_deregister_percent"] = json!(50);
    }
    let targets = Value::Array(vec![a, b]).to_string();
    let f = w
        .spawn("target-sync", &w.env(&[("TARGETS", &targets)]))
        .await?;
    ok_tick(&f).await?;
    assert_eq!(w.targets(&tg).await?.len(), 4);
    // Every address changes: four stale. Six after registering the two new
    // ones; 50% of the group is three, whatever each mapping would allow alone.
    w.answer(NAME, &["10.0.1.5"]);
    w.answer(other, &["10.0.1.6"]);
    let out = ok_tick(&f).await?;
    let count = |field: &str| -> usize {
        out["mappings"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| m[field].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0)
    };
    assert_eq!((count("deregistered"), count("held_back")), (3, 1), "{out}");
    assert_eq!(w.targets(&tg).await?.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_describe_calls_slow_a_run_down_but_fail_no_mapping() -> R {
    // moto never throttles: a proxy in the test support code enforces a
    // Describe bucket like ELB's, made small (10, refilled at 2 per second) so
    // that 45 Describe calls are throttled however fast the emulator is.
    let w = World::start().await?;
    let groups = 40;
    let mut arns = Vec::new();
    for i in 0..groups {
        let name = format!("internal-svc{i}-1.us-east-1.elb.amazonaws.com");
        let tg = w.target_group(&format!("svc-{i}"), 80).await?;
        tag(&w.elb, &tg, &[("tether:source", &format!("dns:{name}"))]).await?;
        w.answer(&name, &[&format!("10.1.0.{}", i + 1)]);
        arns.push(tg);
    }
    let proxy =
        tether_tests::throttle::ThrottlingProxy::start_with(&w.moto.endpoint(), 10.0, 2.0).await?;
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("AWS_ENDPOINT_URL", &proxy.endpoint())]),
        )
        .await?;
    let out = f
        .invoke(scheduled_event(), Duration::from_secs(120))
        .await?;
    let out = out.result.map_err(|e| format!("{e}\n{}", f.logs()))?;
    let counts = proxy.counts();
    assert!(counts.throttled > 0, "the bucket was exceeded: {counts:?}");
    let failed: Vec<&Value> = out["mappings"]
        .as_array()
        .map(|ms| ms.iter().filter(|m| !m["error"].is_null()).collect())
        .unwrap_or_default();
    assert!(failed.is_empty(), "{failed:?}");
    for (i, tg) in arns.iter().enumerate() {
        assert_eq!(w.targets(tg).await?, [format!("10.1.0.{}:80", i + 1)]);
    }
    Ok(())
}

//! target-sync end to end: the built binary under the Runtime API emulator,
//! moto for ELB/S3/CloudWatch, and a real DNS server on loopback whose
//! answers change between runs.

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::dns::Answer;
use tether_tests::moto::BoxError;
use tether_tests::world::{BUCKET, World, ips, mapping, ok_tick, state_key, tick};

const ALB: &str = "internal-app-alb-1234567890.us-east-1.elb.amazonaws.com";

type R = Result<(), BoxError>;

fn targets_env(mappings: &[Value]) -> String {
    Value::Array(mappings.to_vec()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_registers_every_address_and_writes_state() -> R {
    let w = World::start().await?;
    let tg = w.target_group("app-80", 80).await?;
    w.answer(ALB, &["10.0.1.10", "10.0.2.20", "10.0.1.30"]);
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)]))]),
        )
        .await?;

    let out = ok_tick(&f).await?;
    assert_eq!(
        w.targets(&tg).await?,
        ["10.0.1.10:80", "10.0.1.30:80", "10.0.2.20:80"]
    );
    let m = &out["mappings"][0];
    assert_eq!(
        m["registered"],
        json!(["10.0.1.10:80", "10.0.1.30:80", "10.0.2.20:80"])
    );
    assert_eq!(m["deregistered"], json!([]));
    assert_eq!(m["targets"], 3);
    assert!(m.get("error").is_none(), "{m}");

    let state = w
        .state(&state_key(&tg, ALB, 80))
        .await?
        .ok_or("no state object")?;
    assert_eq!(state["schema_version"], 2);
    assert_eq!(state["in_sync"], true, "left equal to its source");
    assert_eq!(
        state["seen"],
        json!(["10.0.1.10", "10.0.1.30", "10.0.2.20"])
    );
    assert_eq!(
        state["owned"],
        json!(["10.0.1.10:80", "10.0.1.30:80", "10.0.2.20:80"])
    );
    assert_eq!(state["pending"], json!({}));

    // The log is JSON lines (AWS_LAMBDA_LOG_FORMAT=JSON) with one line per
    // target group: the fields the Logs Insights query of docs/target-sync.md reads.
    let logs = f.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("target group synced"))
        .ok_or("no summary log line")?;
    let line: Value = serde_json::from_str(line)?;
    let fields = &line["fields"];
    assert_eq!(fields["message"], "target group synced");
    assert_eq!(fields["target_group"], tg.as_str());
    assert_eq!(fields["sources"], format!("dns:{ALB}:80"));
    assert_eq!(
        fields["registered"],
        "10.0.1.10:80 10.0.1.30:80 10.0.2.20:80"
    );
    assert_eq!(
        (&fields["targets"], &fields["pending"]),
        (&json!(3), &json!(0))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_deregisters_only_after_three_runs_without_the_address() -> R {
    let w = World::start().await?;
    let tg = w.target_group("rot", 443).await?;
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets_env(&[mapping(ALB, &tg, 443)]))]),
        )
        .await?;

    w.answer(ALB, &["10.0.1.1", "10.0.2.2"]);
    ok_tick(&f).await?;
    // The ALB replaces a node: .1 leaves DNS, .3 arrives.
    w.answer(ALB, &["10.0.2.2", "10.0.1.3"]);
    for run in 1..=2 {
        let out = ok_tick(&f).await?;
        assert_eq!(
            w.targets(&tg).await?,
            ["10.0.1.1:443", "10.0.1.3:443", "10.0.2.2:443"],
            "run {run}"
        );
        assert_eq!(out["mappings"][0]["pending"], json!({"10.0.1.1:443": run}));
    }
    let out = ok_tick(&f).await?;
    assert_eq!(out["mappings"][0]["deregistered"], json!(["10.0.1.1:443"]));
    assert_eq!(w.targets(&tg).await?, ["10.0.1.3:443", "10.0.2.2:443"]);
    let state = w
        .state(&state_key(&tg, ALB, 443))
        .await?
        .ok_or("no state")?;
    assert_eq!(state["pending"], json!({}));
    assert_eq!(state["owned"], json!(["10.0.1.3:443", "10.0.2.2:443"]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_back_in_dns_resets_its_countdown() -> R {
    let w = World::start().await?;
    let tg = w.target_group("back", 80).await?;
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)]))]),
        )
        .await?;
    w.answer(ALB, &["10.0.1.1", "10.0.1.2"]);
    ok_tick(&f).await?;
    w.answer(ALB, &["10.0.1.2"]);
    ok_tick(&f).await?;
    ok_tick(&f).await?;
    w.answer(ALB, &["10.0.1.1", "10.0.1.2"]);
    let out = ok_tick(&f).await?;
    assert_eq!(out["mappings"][0]["pending"], json!({}));
    w.answer(ALB, &["10.0.1.2"]);
    let out = ok_tick(&f).await?;
    assert_eq!(out["mappings"][0]["pending"], json!({"10.0.1.1:80": 1}));
    assert_eq!(w.targets(&tg).await?, ["10.0.1.1:80", "10.0.1.2:80"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_eight_addresses_answered_eight_at_a_time_are_all_registered() -> R {
    let w = World::start().await?;
    let tg = w.target_group("big", 80).await?;
    let all: Vec<String> = (1..=12)
        .map(|n| format!("10.0.{}.{n}", n % 2 + 1))
        .collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    w.dns.set(
        ALB,
        Answer::Rotate {
            addrs: ips(&refs),
            per_answer: 8,
        },
    );
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)]))]),
        )
        .await?;

    let out = ok_tick(&f).await?;
    assert_eq!(
        out["mappings"][0]["resolved"].as_array().map(Vec::len),
        Some(12)
    );
    assert_eq!(w.targets(&tg).await?.len(), 12);
    let queries = w.dns.queries_of(ALB, "A");
    assert!(
        (2..=8).contains(&queries),
        "asked {queries} times; full answers are asked again, at most max_lookups"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sample_variables_work_unchanged() -> R {
    let w = World::start().await?;
    let tg = w.target_group("sample", 80).await?;
    w.answer(ALB, &["10.0.1.5", "10.0.2.6"]);
    let mut env = w.env(&[
        ("ALB_DNS_NAME", ALB),
        ("ALB_LISTENER", "80"),
        ("NLB_TG_ARN", &tg),
        ("S3_BUCKET", BUCKET),
        ("MAX_LOOKUP_PER_INVOCATION", "50"),
        ("INVOCATIONS_BEFORE_DEREGISTRATION", "3"),
        ("CW_METRIC_FLAG_IP_COUNT", "True"),
    ]);
    env.retain(|(k, _)| k != "STATE_BUCKET");
    let f = w.spawn("target-sync", &env).await?;
    ok_tick(&f).await?;
    assert_eq!(w.targets(&tg).await?, ["10.0.1.5:80", "10.0.2.6:80"]);
    assert!(w.state(&state_key(&tg, ALB, 80)).await?.is_some());

    let metrics = w
        .cloudwatch
        .list_metrics()
        .namespace("Tether")
        .send()
        .await?;
    let names: Vec<&str> = metrics
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    assert!(
        names.contains(&"ResolvedAddresses") && names.contains(&"RegisteredTargets"),
        "{names:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_two_ports_in_one_function() -> R {
    // Seed 002 deploys two copies of the AWS sample for ports 80 and 443: one function does both.
    let w = World::start().await?;
    let tg80 = w.target_group("web-80", 80).await?;
    let tg443 = w.target_group("web-443", 443).await?;
    w.answer(ALB, &["10.0.1.7", "10.0.2.8"]);
    let targets = targets_env(&[mapping(ALB, &tg80, 80), mapping(ALB, &tg443, 443)]);
    let f = w
        .spawn("target-sync", &w.env(&[("TARGETS", &targets)]))
        .await?;
    ok_tick(&f).await?;
    assert_eq!(w.targets(&tg80).await?, ["10.0.1.7:80", "10.0.2.8:80"]);
    assert_eq!(w.targets(&tg443).await?, ["10.0.1.7:443", "10.0.2.8:443"]);
    assert_eq!(
        w.dns.queries_of(ALB, "A"),
        1,
        "a name shared by mappings is resolved once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_is_rebuilt_without_deregistering_and_kept_aside() -> R {
    let w = World::start().await?;
    let tg = w.target_group("corrupt", 80).await?;
    // A stale target that a valid state would eventually remove.
    w.register(&tg, "10.0.1.99", 80).await?;
    let key = state_key(&tg, ALB, 80);
    let garbage = b"{\"schema_version\": 1, \"pending\": {\"10.0.1.99:80\": 9";
    w.s3.put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(garbage.to_vec().into())
        .send()
        .await?;
    w.answer(ALB, &["10.0.1.1"]);
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)]))]),
        )
        .await?;

    let out = ok_tick(&f).await?;
    let m = &out["mappings"][0];
    assert!(
        m["note"].as_str().is_some_and(|n| n.contains("unusable")),
        "{m}"
    );
    assert_eq!(m["deregistered"], json!([]));
    assert_eq!(w.targets(&tg).await?, ["10.0.1.1:80", "10.0.1.99:80"]);
    let state = w.state(&key).await?.ok_or("no state")?;
    assert_eq!(
        state["pending"],
        json!({}),
        "the countdown starts over, it is not taken from garbage"
    );
    let aside = w.unusable_keys().await?;
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept =
        w.s3.get_object()
            .bucket(BUCKET)
            .key(&aside[0])
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
    assert_eq!(&kept[..], garbage);
    assert!(f.logs().contains("state object is unusable"));

    // The next run counts normally again.
    let out = ok_tick(&f).await?;
    assert_eq!(out["mappings"][0]["pending"], json!({"10.0.1.99:80": 1}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_doubtful_resolution_changes_nothing_and_fails_the_invocation() -> R {
    let w = World::start().await?;
    let tg = w.target_group("dnsfail", 80).await?;
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)]))]),
        )
        .await?;
    let key = state_key(&tg, ALB, 80);
    w.answer(ALB, &["10.0.1.1", "10.0.1.2"]);
    ok_tick(&f).await?;
    w.answer(ALB, &["10.0.1.2"]);
    ok_tick(&f).await?;
    let targets_before = w.targets(&tg).await?;
    let state_before = w.state(&key).await?;
    assert_eq!(
        state_before.as_ref().map(|s| s["pending"].clone()),
        Some(json!({"10.0.1.1:80": 1}))
    );

    for (answer, expect) in [
        (Answer::ServFail, "SERVFAIL"),
        (Answer::Timeout, "timed out"),
        (Answer::NxDomain, "NXDOMAIN"),
        (Answer::Empty, "no address of type A"),
    ] {
        w.dns.set(ALB, answer);
        let error = tick(&f)
            .await?
            .err()
            .ok_or(format!("{expect}: the invocation should fail"))?;
        assert_eq!(error["errorType"], "TargetSyncFailed");
        let message = error["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.contains(expect) && message.contains(ALB),
            "{message}"
        );
        assert_eq!(w.targets(&tg).await?, targets_before, "{expect}");
        assert_eq!(
            w.state(&key).await?,
            state_before,
            "{expect}: no countdown advanced"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_mapping_does_not_stop_the_others() -> R {
    let w = World::start().await?;
    let good = w.target_group("good", 80).await?;
    let missing =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef";
    w.answer(ALB, &["10.0.1.1"]);
    let targets = targets_env(&[mapping(ALB, missing, 80), mapping(ALB, &good, 80)]);
    let f = w
        .spawn("target-sync", &w.env(&[("TARGETS", &targets)]))
        .await?;
    let error = tick(&f).await?.err().ok_or("the invocation should fail")?;
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.starts_with("1 of 2 mappings failed"), "{message}");
    assert!(
        message.contains(missing) && message.contains("TargetGroupNotFound"),
        "{message}"
    );
    assert_eq!(w.targets(&good).await?, ["10.0.1.1:80"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_but_changes_nothing() -> R {
    let w = World::start().await?;
    let tg = w.target_group("dry", 80).await?;
    w.answer(ALB, &["10.0.1.1", "10.0.1.2"]);
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[
                ("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)])),
                ("DRY_RUN", "true"),
            ]),
        )
        .await?;
    let out = ok_tick(&f).await?;
    assert_eq!(out["dry_run"], true);
    assert_eq!(
        out["mappings"][0]["registered"],
        json!(["10.0.1.1:80", "10.0.1.2:80"])
    );
    assert_eq!(w.targets(&tg).await?, Vec::<String>::new());
    // Its countdowns live apart from the real state, which stays untouched.
    let keys = w.keys().await?;
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("target-sync/dry-run/")),
        "{keys:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_counts_with_target_group_and_source() -> R {
    let w = World::start().await?;
    let tg = w.target_group("metrics", 80).await?;
    w.answer(ALB, &["10.0.1.1", "10.0.1.2", "10.0.2.3"]);
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[
                ("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)])),
                ("METRICS_NAMESPACE", "Tether/Test"),
                ("MAPPING_METRICS", "true"),
            ]),
        )
        .await?;
    ok_tick(&f).await?;
    let resource = tg.splitn(6, ':').nth(5).ok_or("arn")?.to_owned();
    for (name, expected) in [
        ("ResolvedAddresses", 3.0),
        ("RegisteredTargets", 3.0),
        ("Registrations", 3.0),
        ("Errors", 0.0),
    ] {
        let now = std::time::SystemTime::now();
        let stats = w
            .cloudwatch
            .get_metric_statistics()
            .namespace("Tether/Test")
            .metric_name(name)
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name("TargetGroup")
                    .value(&resource)
                    .build(),
            )
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name("Source")
                    .value(format!("dns:{ALB}"))
                    .build(),
            )
            .start_time((now - Duration::from_secs(600)).into())
            .end_time((now + Duration::from_secs(60)).into())
            .period(60)
            .statistics(aws_sdk_cloudwatch::types::Statistic::Maximum)
            .send()
            .await?;
        let max: Vec<f64> = stats
            .datapoints()
            .iter()
            .filter_map(|d| d.maximum())
            .collect();
        assert_eq!(max, [expected], "{name}");
    }
    // A counter of changes is published only when something changed.
    let deregistrations = w
        .cloudwatch
        .list_metrics()
        .namespace("Tether/Test")
        .metric_name("Deregistrations")
        .send()
        .await?;
    assert_eq!(deregistrations.metrics(), [], "nothing was deregistered");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_ownership_leaves_hand_added_targets_alone() -> R {
    let w = World::start().await?;
    let tg = w.target_group("tracked", 80).await?;
    w.register(&tg, "10.0.2.200", 80).await?;
    let mut m = mapping(ALB, &tg, 80);
    m["ownership"] = json!("tracked");
    m["deregister_after"] = json!(1);
    let f = w
        .spawn("target-sync", &w.env(&[("TARGETS", &targets_env(&[m]))]))
        .await?;
    w.answer(ALB, &["10.0.1.1"]);
    ok_tick(&f).await?;
    w.answer(ALB, &["10.0.1.2"]);
    for _ in 0..3 {
        ok_tick(&f).await?;
    }
    assert_eq!(w.targets(&tg).await?, ["10.0.1.2:80", "10.0.2.200:80"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_fails_the_cold_start_naming_variable_field_and_value() -> R {
    let w = World::start().await?;
    // Every AWS call would land here; none may.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let trap_url = format!("http://{}", trap.local_addr()?);
    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/0123456789abcdef";
    let targets = |port: &str, extra: &str| {
        format!(
            r#"[{{"dns_name":"a.example.com","target_group_arn":"{arn}","port":{port}{extra}}}]"#
        )
    };
    let bucket = ("STATE_BUCKET", "b-1".to_owned());
    let cases = [
        (
            vec![
                ("TARGETS", "[{\"dns_name\": \"a.example.com\"".to_owned()),
                bucket.clone(),
            ],
            "TARGETS",
            "not valid JSON",
        ),
        (
            vec![("TARGETS", targets("0", "")), bucket.clone()],
            "TARGETS[0].port",
            "got 0",
        ),
        (
            vec![
                ("TARGETS", targets("80", "").replace(arn, "arn:aws:nope")),
                bucket.clone(),
            ],
            "TARGETS[0].target_group_arn",
            "arn:aws:nope",
        ),
        (
            vec![
                ("TARGETS", targets("80", r#","deregister_after":-2"#)),
                bucket.clone(),
            ],
            "TARGETS[0].deregister_after",
            "-2",
        ),
        (
            vec![
                ("TARGETS", targets("80", r#","colour":"red""#)),
                bucket.clone(),
            ],
            "TARGETS[0].colour",
            "unknown field",
        ),
        (
            vec![("TARGETS", targets("80", ""))],
            "STATE_BUCKET",
            "not set",
        ),
    ];
    for (vars, location, needle) in cases {
        let mut env: Vec<(String, String)> = w
            .env(&[])
            .into_iter()
            .filter(|(k, _)| k != "STATE_BUCKET")
            .collect();
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), trap_url.clone()));
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut f = w.spawn("target-sync", &env).await?;
        let line = f.config_error().await?;
        assert!(
            line.contains(&format!("{location}:")) && line.contains(needle),
            "{line}"
        );
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), trap.accept()).await;
    assert!(
        accepted.is_err(),
        "an AWS call was made despite the bad configuration"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_stay_full_never_count_a_target_down() -> R {
    // More than 8 nodes: every answer holds 8, so an address missing from
    // them may still be live. Only short answers show the whole name.
    let w = World::start().await?;
    let tg = w.target_group("full", 80).await?;
    w.register(&tg, "10.0.9.9", 80).await?;
    let twelve: Vec<String> = (1..=12).map(|n| format!("10.0.1.{n}")).collect();
    let twelve: Vec<&str> = twelve.iter().map(String::as_str).collect();
    w.dns.set(
        ALB,
        Answer::Rotate {
            addrs: ips(&twelve),
            per_answer: 8,
        },
    );
    let mut m = mapping(ALB, &tg, 80);
    m["max_lookups"] = json!(2);
    m["deregister_after"] = json!(1);
    m["max_deregister_percent"] = json!(100);
    let f = w
        .spawn("target-sync", &w.env(&[("TARGETS", &targets_env(&[m]))]))
        .await?;
    for _ in 0..3 {
        let out = ok_tick(&f).await?;
        let m = &out["mappings"][0];
        assert!(
            m["note"]
                .as_str()
                .is_some_and(|n| n.contains("held 8 addresses") && n.contains("alb:")),
            "{m}"
        );
        assert_eq!(m["deregistered"], json!([]));
        assert_eq!(m["pending"], json!({}));
        assert_eq!(m["saturated"], true);
    }
    assert!(w.targets(&tg).await?.contains(&"10.0.9.9:80".to_owned()));

    w.answer(ALB, &["10.0.1.1", "10.0.1.2", "10.0.1.3"]);
    let out = ok_tick(&f).await?;
    assert!(
        out["mappings"][0]["deregistered"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("10.0.9.9:80")))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_object_from_a_newer_tether_or_too_large_is_refused_and_kept() -> R {
    let w = World::start().await?;
    let tg = w.target_group("refused", 80).await?;
    w.register(&tg, "10.0.9.9", 80).await?;
    w.answer(ALB, &["10.0.1.1"]);
    let key = state_key(&tg, ALB, 80);
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TARGETS", &targets_env(&[mapping(ALB, &tg, 80)]))]),
        )
        .await?;
    let newer = br#"{"schema_version": 3, "targets": {"10.0.9.9:80": {"absent": 7}}}"#.to_vec();
    let big = vec![b' '; 1024 * 1024 + 1];
    for (body, expect) in [
        (newer, "newer tether"),
        (big, "more than a state object may hold"),
    ] {
        w.s3.put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(body.clone().into())
            .send()
            .await?;
        let error = tick(&f)
            .await?
            .err()
            .ok_or("a refused state fails the run")?;
        let message = error["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.contains(expect) && message.contains(&key),
            "{message}"
        );
        let kept = w.s3.get_object().bucket(BUCKET).key(&key).send().await?;
        assert_eq!(
            kept.body.collect().await?.into_bytes().to_vec(),
            body,
            "never overwritten"
        );
        assert_eq!(w.targets(&tg).await?, ["10.0.9.9:80"], "nothing changed");
    }
    Ok(())
}

//! What target-sync's metrics cost as the fleet grows, counted where the bill
//! counts them: distinct metrics (name and dimension set) in the emulator's
//! CloudWatch (moto `ListMetrics`), after runs of the built binary over
//! tagged target groups. Each scenario publishes into its own namespace.

use std::collections::BTreeSet;

use tether_tests::aws::tag;
use tether_tests::moto::BoxError;
use tether_tests::world::{World, ok_tick};

type R = Result<(), BoxError>;

const NAME: &str = "internal-orders-1234567890.us-east-1.elb.amazonaws.com";

/// A distinct metric: its name and its dimensions, sorted.
type Metric = (String, Vec<(String, String)>);

async fn distinct_metrics(w: &World, namespace: &str) -> Result<BTreeSet<Metric>, BoxError> {
    let mut metrics = BTreeSet::new();
    let mut pages = w
        .cloudwatch
        .list_metrics()
        .namespace(namespace)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for m in page?.metrics() {
            let mut dims: Vec<(String, String)> = m
                .dimensions()
                .iter()
                .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
                .collect();
            dims.sort();
            metrics.insert((m.metric_name().unwrap_or_default().to_owned(), dims));
        }
    }
    Ok(metrics)
}

/// `groups` tagged target groups (the first `detailed` ones tagged
/// `tether:metrics=detailed`), synced twice (a run with changes, then a
/// quiet one) at the default settings, publishing into `namespace`.
async fn fleet(
    w: &World,
    namespace: &str,
    groups: usize,
    detailed: usize,
) -> Result<Vec<String>, BoxError> {
    let mut arns = Vec::new();
    for i in 0..groups {
        let arn = w.target_group(&format!("{namespace}-{i}"), 80).await?;
        let source = format!("dns:{NAME}");
        let mut tags = vec![("tether:source", source.as_str())];
        if i < detailed {
            tags.push(("tether:metrics", "detailed"));
        }
        tag(&w.elb, &arn, &tags).await?;
        arns.push(arn);
    }
    let f = w
        .spawn("target-sync", &w.env(&[("METRICS_NAMESPACE", namespace)]))
        .await?;
    for _ in 0..2 {
        let out = ok_tick(&f).await?;
        assert_eq!(
            out["mappings"].as_array().map(Vec::len),
            Some(groups),
            "{out}"
        );
    }
    Ok(arns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_number_of_metrics_does_not_grow_with_the_fleet() -> R {
    let w = World::start().await?;
    w.answer(NAME, &["10.0.1.5", "10.0.2.5"]);

    fleet(&w, "One", 1, 0).await?;
    let one = distinct_metrics(&w, "One").await?;
    // Untag the first scenario's group, so the next runs see only their own.
    untag_all(&w).await?;
    fleet(&w, "Eight", 8, 0).await?;
    let eight = distinct_metrics(&w, "Eight").await?;
    assert_eq!(one, eight, "1 group and 8 groups publish the same metrics");
    assert!(
        one.iter()
            .all(|(_, dims)| dims.iter().all(|(k, _)| k == "FunctionName")),
        "fleet totals only: {one:?}"
    );
    assert!(
        one.iter().any(|(name, _)| name == "Registrations"),
        "{one:?}"
    );

    untag_all(&w).await?;
    let arns = fleet(&w, "Detailed", 8, 1).await?;
    let detailed = distinct_metrics(&w, "Detailed").await?;
    let added: Vec<&Metric> = detailed.difference(&one).collect();
    let resource = arns[0].splitn(6, ':').nth(5).ok_or("arn")?;
    assert!(!added.is_empty(), "the detailed group publishes its own");
    for (name, dims) in &added {
        assert!(
            dims.iter()
                .any(|(k, v)| k == "TargetGroup" && v == resource),
            "{name} {dims:?} is not the detailed group's"
        );
    }
    assert_eq!(detailed.len(), one.len() + added.len());
    Ok(())
}

/// Removes the `tether:source` tag from every target group.
async fn untag_all(w: &World) -> R {
    let groups = w.elb.describe_target_groups().send().await?;
    for g in groups.target_groups() {
        if let Some(arn) = g.target_group_arn() {
            w.elb
                .remove_tags()
                .resource_arns(arn)
                .tag_keys("tether:source")
                .send()
                .await?;
        }
    }
    Ok(())
}

//! The engine on the in-memory fakes of its small traits
//! ([`crate::sync::fakes`]): conflicts, the group-wide guard, exact sources,
//! tags, doubt, the deadline, rotation, the warm cache, and the defects of
//! issue 16, each with the run that showed it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{DnsSettings, MetricsSettings, StateLocation};
use crate::dns::DnsFailure;
use crate::sync::config::SourceRoles;
use crate::sync::fakes::{
    FakeDns as Dns, FakeGroups as Groups, FakeMetrics as Published, FakeNics as Nics,
    FakeStore as Store, aws_error,
};
use crate::sync::state::SyncState;

const TG: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/50dc6c495c0c9188";
const TG2: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg2/60dc6c495c0c9188";

/// The start of the `n`th one-minute period of the tests.
fn minute(n: u64) -> u64 {
    1_764_000_000 + n * 60
}

type Fake = Engine<Dns, Nics, Groups, Store, Published>;

/// Runs the engine in the `n`th period.
async fn tick(e: &Fake, n: u64) -> SyncReport {
    e.run_at(soon(), minute(n)).await
}

fn config(targets: Option<serde_json::Value>) -> SyncConfig {
    let mappings = targets
        .map(|t| {
            let text = t.to_string();
            let vars = Vars(move |n: &str| match n {
                "TARGETS" => Some(text.clone()),
                "STATE_BUCKET" => Some("b1b".into()),
                _ => None,
            });
            SyncConfig::from_vars(&vars).expect("test config").mappings
        })
        .unwrap_or_default();
    SyncConfig {
        tag_prefix: mappings.is_empty().then(|| "tether:".to_owned()),
        mappings,
        state: StateLocation {
            bucket: "b1b".into(),
            prefix: "target-sync/".into(),
        },
        dns: DnsSettings {
            servers: Vec::new(),
            timeout: Duration::from_millis(100),
        },
        metrics: MetricsSettings {
            namespace: "Tether".into(),
            enabled: true,
        },
        dry_run: false,
        function_name: Some("target-sync".into()),
        count_absences: true,
        mapping_metrics: true,
        describe_share: 50,
        describe_every: 15,
        schedule_period: Duration::from_secs(60),
        source_roles: SourceRoles::default(),
    }
}

use crate::config::Vars;

fn engine(config: SyncConfig, dns: Dns, nics: Nics, groups: Groups) -> Fake {
    Engine {
        config,
        dns,
        interfaces: nics,
        elb: groups,
        store: Store::default(),
        metrics: Published::default(),
    }
}

fn dns(pairs: &[(&str, &[&str])]) -> Dns {
    Dns::with(pairs)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn tags(groups: &mut Groups, arn: &str, pairs: &[(&str, &str)]) {
    groups.tag(arn, pairs);
}

#[tokio::test]
async fn a_tagged_group_is_synced_and_an_untagged_one_is_left_alone() {
    let mut groups = Groups::with(&[(TG, &["10.0.0.9:80"]), (TG2, &["10.0.0.8:80"])]);
    tags(
        &mut groups,
        TG,
        &[
            ("tether:source", "dns:a.example.com"),
            ("tether:deregister-after", "1"),
        ],
    );
    let e = engine(
        config(None),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        groups,
    );
    let report = tick(&e, 1).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80"]);
    assert_eq!(e.elb.now(TG2), ["10.0.0.8:80"]);
    assert_eq!(e.metrics.value("SyncedGroups"), [1.0]);
    assert_eq!(e.metrics.value("RegisteredTargets"), [1.0]);
}

#[tokio::test]
async fn by_default_only_fleet_totals_and_the_groups_tagged_detailed() {
    let mut groups = Groups::with(&[(TG, &[]), (TG2, &[])]);
    tags(&mut groups, TG, &[("tether:source", "dns:a.example.com")]);
    tags(
        &mut groups,
        TG2,
        &[
            ("tether:source", "dns:a.example.com"),
            ("tether:metrics", "detailed"),
        ],
    );
    let mut c = config(None);
    c.mapping_metrics = false;
    let e = engine(
        c,
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        groups,
    );
    tick(&e, 1).await;
    assert_eq!(e.metrics.value("SyncedGroups"), [2.0]);
    // Fleet total, then TG2's own.
    let mut registrations = e.metrics.value("Registrations");
    registrations.sort_by(f64::total_cmp);
    assert_eq!(registrations, [1.0, 2.0]);
    let tg2: TargetGroupArn = TG2.parse().expect("arn");
    assert_eq!(
        e.metrics.groups(),
        BTreeSet::from([tg2.resource().to_owned()]),
        "only the group tagged detailed has metrics of its own"
    );
}

#[tokio::test]
async fn counters_of_changes_are_published_only_when_something_changed() {
    let mut groups = Groups::with(&[(TG, &[])]);
    tags(&mut groups, TG, &[("tether:source", "dns:a.example.com")]);
    let e = engine(
        config(None),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        groups,
    );
    tick(&e, 1).await;
    assert_eq!(
        e.metrics.value("Registrations"),
        [1.0, 1.0],
        "group and fleet"
    );
    e.metrics.clear();
    tick(&e, 2).await;
    assert!(e.metrics.value("Registrations").is_empty());
    assert!(e.metrics.value("Deregistrations").is_empty());
    assert_eq!(e.metrics.value("RegisteredTargets"), [1.0], "gauges stay");
    assert_eq!(e.metrics.value("PendingDeregistrations"), [0.0, 0.0]);
}

#[tokio::test]
async fn a_bad_tag_fails_its_group_only() {
    let mut groups = Groups::with(&[(TG, &[]), (TG2, &[])]);
    tags(
        &mut groups,
        TG,
        &[
            ("tether:source", "dns:a.example.com"),
            ("tether:port", "http"),
        ],
    );
    tags(&mut groups, TG2, &[("tether:source", "dns:a.example.com")]);
    let e = engine(
        config(None),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        groups,
    );
    let report = tick(&e, 1).await;
    assert_eq!(e.elb.now(TG2), ["10.0.0.1:80"]);
    assert!(e.elb.now(TG).is_empty());
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains(&format!("{TG} tag tether:port")),
        "{failures:?}"
    );
    assert!(failures[0].contains("http"), "{failures:?}");
    assert_eq!(e.metrics.value("FailedMappings"), [1.0]);
}

#[tokio::test]
async fn an_exact_source_counts_down_and_a_failed_listing_changes_nothing() {
    let mut groups = Groups::with(&[(TG, &["10.0.0.1:80", "10.0.0.2:80"])]);
    tags(
        &mut groups,
        TG,
        &[
            ("tether:source", "alb:orders"),
            ("tether:deregister-after", "2"),
            ("tether:max-deregister-percent", "100"),
        ],
    );
    let nics = Nics::default();
    nics.alb("orders", &["10.0.0.1"], crate::sync::fakes::VPC);
    let e = engine(config(None), Dns::default(), nics, groups);
    tick(&e, 1).await;
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"], "one absence");
    // A failed listing: no countdown advances, nothing is removed, it fails.
    e.interfaces.alb_fails(
        "orders",
        aws_error("ec2:DescribeNetworkInterfaces", "Throttling"),
    );
    let report = tick(&e, 2).await;
    let error = report.mappings[0]
        .error
        .clone()
        .expect("failed listing fails the mapping");
    assert_eq!(error.code.as_deref(), Some("Throttling"));
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"]);
    // An empty listing is a failure too, not "every node is gone".
    e.interfaces.alb("orders", &[], crate::sync::fakes::VPC);
    assert!(tick(&e, 3).await.mappings[0].error.is_some());
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"]);
    e.interfaces
        .alb("orders", &["10.0.0.1"], crate::sync::fakes::VPC);
    tick(&e, 4).await;
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80"], "second absence");
}

#[tokio::test]
async fn two_mappings_on_one_group_read_it_once_and_share_the_guard() {
    let targets = serde_json::json!([
        {"dns_name": "a.example.com", "target_group_arn": TG, "port": 80, "ownership": "tracked",
         "deregister_after": 1, "max_deregister_percent": 50},
        {"dns_name": "b.example.com", "target_group_arn": TG, "port": 80, "ownership": "tracked",
         "deregister_after": 1, "max_deregister_percent": 50}
    ]);
    let groups = Groups::with(&[(TG, &[])]);
    let e = engine(
        config(Some(targets)),
        dns(&[
            ("a.example.com", &["10.0.0.1", "10.0.0.2"]),
            ("b.example.com", &["10.0.0.3", "10.0.0.4"]),
        ]),
        Nics::default(),
        groups,
    );
    tick(&e, 1).await;
    assert_eq!(e.elb.now(TG).len(), 4);
    // Both names lose both addresses: four stale, 50% of six after
    // registering two new ones is three, for the group as a whole.
    e.dns.answer("a.example.com", &["10.0.0.5"]);
    e.dns.answer("b.example.com", &["10.0.0.6"]);
    let report = tick(&e, 2).await;
    let deregistered: usize = report.mappings.iter().map(|m| m.deregistered.len()).sum();
    let held: usize = report.mappings.iter().map(|m| m.held_back.len()).sum();
    assert_eq!((deregistered, held), (3, 1), "{report:?}");
    assert_eq!(e.elb.now(TG).len(), 3);
    assert_eq!(e.metrics.value("HeldBackTargets").last(), Some(&1.0));
}

#[tokio::test]
async fn a_conflict_is_re_planned_once_then_the_mapping_gives_up() {
    let targets =
        serde_json::json!([{"dns_name": "a.example.com", "target_group_arn": TG, "port": 80}]);
    let e = engine(
        config(Some(targets.clone())),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &[])]),
    );
    e.store.races.store(1, Ordering::SeqCst);
    let report = tick(&e, 1).await;
    assert_eq!(report.mappings[0].error, None);
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80"]);
    let key = state_key("target-sync/", &e.config.mappings[0], false);
    let state = e.store.state(&key).expect("state written");
    assert!(
        state.seen.contains(&IpAddr::from([10, 9, 9, 9]))
            || state.seen.contains(&IpAddr::from([10, 0, 0, 1]))
    );

    let e = engine(
        config(Some(targets)),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &[])]),
    );
    e.store.races.store(usize::MAX, Ordering::SeqCst);
    let report = tick(&e, 2).await;
    let error = report.mappings[0].error.clone().expect("gave up");
    assert_eq!(error.kind, ErrorKind::StateConflict);
    assert!(e.elb.now(TG).is_empty(), "nothing changed after giving up");
}

#[tokio::test]
async fn a_failed_describe_still_keeps_the_countdown_resets() {
    let targets =
        serde_json::json!([{"dns_name": "a.example.com", "target_group_arn": TG, "port": 80}]);
    let groups = Groups::with(&[(TG, &["10.0.0.1:80"])]);
    groups.broken.lock().expect("lock").insert(TG.into());
    let e = engine(
        config(Some(targets)),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        groups,
    );
    let key = state_key("target-sync/", &e.config.mappings[0], false);
    let before = SyncState {
        pending: BTreeMap::from([("10.0.0.1:80".parse().expect("sa"), 2)]),
        ..SyncState::default()
    };
    e.store.put(&key, before.encode().expect("encode"));
    let report = tick(&e, 1).await;
    assert_eq!(
        report.mappings[0].error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Elb)
    );
    assert!(
        e.store.state(&key).expect("state").pending.is_empty(),
        "the listed address was reset"
    );
}

#[tokio::test]
async fn a_newer_state_object_is_refused_and_never_overwritten() {
    let targets =
        serde_json::json!([{"dns_name": "a.example.com", "target_group_arn": TG, "port": 80}]);
    let e = engine(
        config(Some(targets)),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.9:80"])]),
    );
    let key = state_key("target-sync/", &e.config.mappings[0], false);
    let newer = br#"{"schema_version":7,"future":true}"#.to_vec();
    e.store.put(&key, newer.clone());
    let report = tick(&e, 1).await;
    let error = report.mappings[0].error.clone().expect("refused");
    assert_eq!(error.kind, ErrorKind::State);
    assert!(error.message.contains("newer"), "{}", error.message);
    assert_eq!(e.store.objects.lock().expect("lock")[&key].0, newer);
    assert_eq!(e.elb.now(TG), ["10.0.0.9:80"]);
}

#[tokio::test]
async fn one_slow_name_fails_alone() {
    let targets = serde_json::json!([
        {"dns_name": "slow.example.com", "target_group_arn": TG, "port": 80},
        {"dns_name": "a.example.com", "target_group_arn": TG2, "port": 80}
    ]);
    let d = dns(&[("a.example.com", &["10.0.0.1"])]);
    d.hang
        .lock()
        .expect("lock")
        .insert("slow.example.com".into());
    let e = engine(
        config(Some(targets)),
        d,
        Nics::default(),
        Groups::with(&[(TG, &[]), (TG2, &[])]),
    );
    let report = e.run(Instant::now() + Duration::from_millis(400)).await;
    let slow = report
        .mappings
        .iter()
        .find(|m| m.target_group_arn.as_str() == TG)
        .expect("slow");
    assert_eq!(
        slow.error.as_ref().and_then(|e| e.code.as_deref()),
        Some("Timeout")
    );
    let fast = report
        .mappings
        .iter()
        .find(|m| m.target_group_arn.as_str() == TG2)
        .expect("fast");
    assert_eq!(fast.error, None);
    assert_eq!(e.elb.now(TG2), ["10.0.0.1:80"]);
}

#[tokio::test]
async fn a_dry_run_shows_what_a_run_would_do_and_claims_no_change() {
    let targets = serde_json::json!([{"dns_name": "a.example.com", "target_group_arn": TG, "port": 80,
        "deregister_after": 2, "max_deregister_percent": 100}]);
    let mut c = config(Some(targets));
    c.dry_run = true;
    let e = engine(
        c,
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.9:80"])]),
    );
    let first = tick(&e, 1).await;
    assert_eq!(
        first.mappings[0].registered,
        ["10.0.0.1:80".parse::<SocketAddr>().expect("sa")]
    );
    let second = tick(&e, 2).await;
    assert_eq!(
        second.mappings[0].deregistered,
        ["10.0.0.9:80".parse::<SocketAddr>().expect("sa")]
    );
    assert_eq!(e.elb.now(TG), ["10.0.0.9:80"], "a dry run changes nothing");
    assert!(e.metrics.value("Registrations").is_empty());
    assert!(e.metrics.value("Deregistrations").is_empty());
    let real = state_key("target-sync/", &e.config.mappings[0], false);
    assert!(
        e.store.state(&real).is_none(),
        "the real state is not written"
    );
}

#[tokio::test]
async fn a_re_plan_after_a_conflict_never_counts_an_absence_twice() {
    let targets = serde_json::json!([
        {"dns_name": "a.example.com", "target_group_arn": TG, "port": 80, "ownership": "tracked",
         "deregister_after": 3, "max_deregister_percent": 100},
        {"dns_name": "b.example.com", "target_group_arn": TG, "port": 80, "ownership": "tracked",
         "deregister_after": 3, "max_deregister_percent": 100}
    ]);
    let e = engine(
        config(Some(targets)),
        dns(&[
            ("a.example.com", &["10.0.0.1"]),
            ("b.example.com", &["10.0.0.2"]),
        ]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.9:80"])]),
    );
    let key_a = state_key("target-sync/", &e.config.mappings[0], false);
    let key_b = state_key("target-sync/", &e.config.mappings[1], false);
    let stale: SocketAddr = "10.0.0.9:80".parse().expect("sa");
    let before = SyncState {
        pending: BTreeMap::from([(stale, 1)]),
        owned: BTreeSet::from([stale]),
        counted_at: Some(minute(0)),
        ..SyncState::default()
    };
    e.store.put(&key_a, before.encode().expect("encode"));
    // b's intent conflicts once, after a's was written: the group is re-planned.
    *e.store.race_key.lock().expect("lock") = Some(key_b);
    e.store.races.store(1, Ordering::SeqCst);
    let report = tick(&e, 1).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    assert_eq!(
        e.store.state(&key_a).expect("state").pending[&stale],
        2,
        "one absence, counted once"
    );
    assert!(e.elb.now(TG).contains(&stale.to_string()));
}

#[tokio::test]
async fn a_group_cut_off_by_the_deadline_reports_what_it_registered() {
    let targets = serde_json::json!([{"dns_name": "a.example.com", "target_group_arn": TG, "port": 80,
        "deregister_after": 1, "max_deregister_percent": 100}]);
    let groups = Groups::with(&[(TG, &["10.0.0.9:80"])]);
    groups.hang_deregister.store(true, Ordering::SeqCst);
    let e = engine(
        config(Some(targets)),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        groups,
    );
    let report = e.sync(Instant::now() + Duration::from_millis(300)).await;
    let m = &report.mappings[0];
    assert_eq!(m.error.as_ref().map(|e| e.kind), Some(ErrorKind::Deadline));
    assert_eq!(
        m.registered,
        ["10.0.0.1:80".parse::<SocketAddr>().expect("sa")],
        "made, so reported"
    );
    assert!(m.deregistered.is_empty(), "not made, so not reported");
}

// ---------------------------------------------------------------- issue 16

fn one_mapping(extra: serde_json::Value) -> SyncConfig {
    let mut m = serde_json::json!({"dns_name": "a.example.com", "target_group_arn": TG, "port": 80,
        "deregister_after": 3, "max_deregister_percent": 100});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    config(Some(serde_json::json!([m])))
}

fn counting_down(e: &Fake, count: u32, counted_at: u64) -> String {
    let key = state_key("target-sync/", &e.config.mappings[0], false);
    let stale: SocketAddr = "10.0.0.9:80".parse().expect("sa");
    let before = SyncState {
        pending: BTreeMap::from([(stale, count)]),
        owned: BTreeSet::from([stale]),
        counted_at: Some(counted_at),
        ..SyncState::default()
    };
    e.store.put(&key, before.encode().expect("encode"));
    key
}

/// Fix 1: S3 answered a retried conditional write 412 because its first
/// attempt had landed. Today that is taken as another writer, the group is
/// re-planned from this run's own intent, and the absence counts twice.
#[tokio::test]
async fn a_write_that_landed_before_its_answer_was_lost_counts_once() {
    let e = engine(
        one_mapping(serde_json::json!({})),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.1:80", "10.0.0.9:80"])]),
    );
    let key = counting_down(&e, 1, minute(0));
    e.store.lost_answers.store(1, Ordering::SeqCst);
    let report = tick(&e, 1).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    let state = e.store.state(&key).expect("state");
    assert_eq!(state.pending[&"10.0.0.9:80".parse().expect("sa")], 2);
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.9:80"], "not removed");
    // The first write of a new object (If-None-Match: *) too.
    let e = engine(
        one_mapping(serde_json::json!({})),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.9:80"])]),
    );
    e.store.lost_answers.store(1, Ordering::SeqCst);
    let report = tick(&e, 1).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    let key = state_key("target-sync/", &e.config.mappings[0], false);
    let state = e.store.state(&key).expect("state");
    assert_eq!(state.pending[&"10.0.0.9:80".parse().expect("sa")], 1);
}

/// Fix 2: a countdown left for a week is not one observation from the end.
#[tokio::test]
async fn a_countdown_left_for_days_starts_over() {
    let e = engine(
        one_mapping(serde_json::json!({})),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.1:80", "10.0.0.9:80"])]),
    );
    let key = counting_down(&e, 2, minute(0));
    tick(&e, 7 * 24 * 60).await;
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.9:80"]);
    let state = e.store.state(&key).expect("state");
    assert_eq!(state.pending[&"10.0.0.9:80".parse().expect("sa")], 1);
}

/// Fix 4: the ALB's nodes in another VPC than the group's are not its
/// targets: a clear error naming both VPCs; with the zone `all` (a peered
/// VPC, by choice) they are registered.
#[tokio::test]
async fn an_alb_in_another_vpc_is_an_error_naming_both_vpcs() {
    let mut groups = Groups::with(&[(TG, &[])]);
    tags(&mut groups, TG, &[("tether:source", "alb:orders")]);
    let nics = Nics::default();
    nics.alb("orders", &["10.0.0.1"], "vpc-0aaaaaaaaaaaaaaaa");
    let e = engine(config(None), Dns::default(), nics, groups);
    let report = tick(&e, 1).await;
    let error = report.mappings[0].error.clone().expect("mismatch");
    assert_eq!(error.code.as_deref(), Some("VpcMismatch"));
    for vpc in ["vpc-0aaaaaaaaaaaaaaaa", crate::sync::fakes::VPC] {
        assert!(error.message.contains(vpc), "{}", error.message);
    }
    assert!(e.elb.now(TG).is_empty(), "nothing registered");
    e.elb.tag(
        TG,
        &[
            ("tether:source", "alb:orders"),
            ("tether:availability-zone", "all"),
        ],
    );
    let report = tick(&e, 2).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80"]);
}

/// Fix 4: a registration that fails does not keep the deregistrations
/// from running, and the report's group size is what the group holds.
#[tokio::test]
async fn a_failed_registration_stops_neither_deregistrations_nor_honest_counts() {
    let e = engine(
        one_mapping(serde_json::json!({"deregister_after": 1})),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.8:80", "10.0.0.9:80"])]),
    );
    e.elb.failing_registers.store(1, Ordering::SeqCst);
    let report = tick(&e, 1).await;
    let m = &report.mappings[0];
    assert!(m.error.is_some(), "the failed registration is reported");
    assert!(m.registered.is_empty());
    assert_eq!(m.deregistered.len(), 2, "{m:?}");
    assert!(e.elb.now(TG).is_empty());
    // Fix 7: RegisteredTargets is the group after what was made (0), not
    // the plan's 1.
    assert_eq!(m.targets, Some(0));
    let report = tick(&e, 2).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80"], "retried next run");
}

/// Fix 5: Lambda's retries of a failed asynchronous invocation (the
/// sample's rule keeps two) and overlapping runs are runs of the same
/// period: an absence counts once.
#[tokio::test]
async fn retried_invocations_in_one_period_count_an_absence_once() {
    let e = engine(
        one_mapping(serde_json::json!({})),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::with(&[(TG, &["10.0.0.1:80", "10.0.0.9:80"])]),
    );
    e.metrics.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let report = e.run_at(soon(), minute(1) + 5).await;
        assert!(report.metrics_error.is_some(), "the invocation fails");
    }
    let key = state_key("target-sync/", &e.config.mappings[0], false);
    let state = e.store.state(&key).expect("state");
    assert_eq!(state.pending[&"10.0.0.9:80".parse().expect("sa")], 1);
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.9:80"]);
}

/// Fix 6: a saturated name answers a different subset each run: the
/// record of what it said is no reason to write.
#[tokio::test]
async fn a_saturated_name_writes_no_new_state_each_run() {
    let e = engine(
        one_mapping(serde_json::json!({"max_lookups": 1})),
        Dns::default(),
        Nics::default(),
        Groups::with(&[(TG, &[])]),
    );
    let subset =
        |start: u8| -> Vec<String> { (start..start + 8).map(|i| format!("10.0.0.{i}")).collect() };
    let answer = |start: u8| {
        let addrs = subset(start);
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        e.dns.answer("a.example.com", &refs);
    };
    // Two subsets of ten addresses: both registered after two runs.
    answer(1);
    tick(&e, 1).await;
    answer(3);
    tick(&e, 2).await;
    assert_eq!(e.elb.now(TG).len(), 10);
    let saves = e.store.saves.load(Ordering::SeqCst);
    for n in 3..8 {
        answer(1 + (n % 2) as u8 * 2);
        let report = tick(&e, n).await;
        assert!(report.mappings[0].saturated);
    }
    assert_eq!(e.store.saves.load(Ordering::SeqCst), saves, "no write");
}

/// Fix 7: a read of the state that failed before a re-plan, and then
/// succeeded, leaves no error behind.
#[tokio::test]
async fn a_failed_read_retried_fine_is_not_reported() {
    let targets = serde_json::json!([
        {"dns_name": "a.example.com", "target_group_arn": TG, "port": 80, "ownership": "tracked"},
        {"dns_name": "b.example.com", "target_group_arn": TG, "port": 80, "ownership": "tracked"}
    ]);
    let e = engine(
        config(Some(targets)),
        dns(&[
            ("a.example.com", &["10.0.0.1"]),
            ("b.example.com", &["10.0.0.2"]),
        ]),
        Nics::default(),
        Groups::with(&[(TG, &[])]),
    );
    let key_a = state_key("target-sync/", &e.config.mappings[0], false);
    let key_b = state_key("target-sync/", &e.config.mappings[1], false);
    e.store.failing_loads.lock().expect("lock").insert(key_a, 1);
    *e.store.race_key.lock().expect("lock") = Some(key_b);
    e.store.races.store(1, Ordering::SeqCst);
    let report = tick(&e, 1).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"]);
}

/// Fix 7: a state that cannot be written whole is an error, not an
/// empty object.
#[tokio::test]
async fn a_state_too_large_to_read_back_fails_its_mapping_and_writes_nothing() {
    let many: Vec<String> = (0..40_000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a01_0000 + i).to_string())
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = engine(
        one_mapping(serde_json::json!({})),
        dns(&[("a.example.com", &refs)]),
        Nics::default(),
        Groups::with(&[(TG, &[])]),
    );
    let report = tick(&e, 1).await;
    let error = report.mappings[0].error.clone().expect("too large");
    assert_eq!(error.kind, ErrorKind::State);
    assert!(
        error.message.contains("cannot be written"),
        "{}",
        error.message
    );
    assert!(e.store.objects.lock().expect("lock").is_empty());
    assert!(e.elb.now(TG).is_empty(), "intent first: nothing changed");
}

/// Fix 7: a group deleted after the tagging API listed it is left, not
/// failed; a configured one that does not exist fails.
#[tokio::test]
async fn a_deleted_group_still_listed_by_tag_is_no_failure() {
    let groups = Groups::default();
    groups.tag(TG, &[("tether:source", "dns:a.example.com")]);
    let e = engine(
        config(None),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        groups,
    );
    let report = tick(&e, 1).await;
    // Not in DescribeTargetGroups: left out of discovery altogether.
    assert_eq!(report.failures(), Vec::<String>::new());
    let e = engine(
        one_mapping(serde_json::json!({})),
        dns(&[("a.example.com", &["10.0.0.1"])]),
        Nics::default(),
        Groups::default(),
    );
    let report = tick(&e, 1).await;
    let error = report.mappings[0].error.clone().expect("configured");
    assert_eq!(error.code.as_deref(), Some("TargetGroupNotFound"));
}

fn fleet(n: usize) -> (Groups, Dns) {
    let groups = Groups::default();
    let dns = Dns::default();
    for i in 0..n {
        let arn = format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/g{i}/50dc6c495c0c9188"
        );
        groups
            .targets
            .lock()
            .expect("lock")
            .insert(arn.clone(), Vec::new());
        let name = format!("svc{i}.example.com");
        groups.tag(&arn, &[("tether:source", &format!("dns:{name}"))]);
        dns.answer(&name, &[&format!("10.1.{}.{}", i / 250, i % 250)]);
    }
    (groups, dns)
}

/// Past the budget a quiet group is read on its turn only (every K runs),
/// a changed source at once; a warm container reads no state and writes
/// none when nothing changes.
#[tokio::test]
async fn over_the_budget_quiet_groups_rotate_and_a_changed_source_is_read_at_once() {
    let (groups, dns) = fleet(60);
    let mut c = config(None);
    c.describe_every = 6;
    let e = Engine {
        config: c,
        dns,
        interfaces: Nics::default(),
        elb: groups,
        store: crate::sync::store::CachedStore::new(Store::default()),
        metrics: Published::default(),
    };
    // The first run reads every group (the budget allows it) and syncs them.
    let first = e.run_at(soon(), minute(0)).await;
    assert_eq!(first.failures(), Vec::<String>::new());
    assert_eq!(first.described_groups(), 60);
    // Now ELB allows only 15 a run: 60 / 6 = 10 quiet groups are due.
    e.elb.budget.store(15, Ordering::SeqCst);
    let (loads, saves) = (
        e.store.inner().loads.load(Ordering::SeqCst),
        e.store.inner().saves.load(Ordering::SeqCst),
    );
    let mut times: BTreeMap<TargetGroupArn, usize> = BTreeMap::new();
    for n in 1..=6 {
        let r = e.run_at(soon(), minute(n)).await;
        assert_eq!(r.failures(), Vec::<String>::new());
        assert_eq!(
            (r.described_groups(), r.deferred_groups()),
            (10, 0),
            "run {n}"
        );
        assert_eq!(r.synced_groups(), 60);
        for m in r.mappings.iter().filter(|m| m.described) {
            *times.entry(m.target_group_arn.clone()).or_default() += 1;
        }
    }
    assert_eq!(times.len(), 60, "every group once in K runs");
    assert!(times.values().all(|n| *n == 1));
    assert_eq!(
        e.store.inner().loads.load(Ordering::SeqCst),
        loads,
        "warm: no read"
    );
    assert_eq!(
        e.store.inner().saves.load(Ordering::SeqCst),
        saves,
        "quiet: no write"
    );
    // One source changes: its group is read the next run, whatever its turn.
    e.dns.answer("svc7.example.com", &["10.9.9.9"]);
    let r = e.run_at(soon(), minute(7)).await;
    let g7 = r
        .mappings
        .iter()
        .find(|m| m.source.to_string() == "dns:svc7.example.com")
        .expect("g7");
    assert!(g7.described);
    assert_eq!(
        g7.registered,
        ["10.9.9.9:80".parse::<SocketAddr>().expect("sa")]
    );
}

/// More changed groups than the budget: the rest wait for the next run,
/// reported as deferred, not failed.
#[tokio::test]
async fn groups_over_the_budget_are_deferred_not_failed() {
    let (groups, dns) = fleet(30);
    groups.budget.store(12, Ordering::SeqCst);
    let e = engine(config(None), dns, Nics::default(), groups);
    let r = tick(&e, 1).await;
    assert_eq!(r.failures(), Vec::<String>::new());
    assert_eq!((r.described_groups(), r.deferred_groups()), (12, 18));
    assert_eq!(e.metrics.value("DeferredGroups"), [18.0]);
    assert_eq!(e.metrics.value("SyncedGroups"), [12.0]);
    // The next runs read the rest, after the quiet groups whose turn it is.
    let mut left = vec![r.deferred_groups()];
    for n in 2..=4 {
        let r = tick(&e, n).await;
        assert_eq!(r.failures(), Vec::<String>::new());
        left.push(r.deferred_groups());
        if r.deferred_groups() == 0 {
            assert_eq!(r.synced_groups(), 30);
            break;
        }
    }
    assert_eq!(left.last(), Some(&0), "{left:?}");
    assert!(left.windows(2).all(|w| w[1] < w[0]), "{left:?}");
}

/// A source in another account is listed with its role; a role the
/// function may not assume is a bad tag naming the tag, and lists nothing.
#[tokio::test]
async fn a_source_role_must_be_allowed_and_is_used_for_the_listing() {
    let role = "arn:aws:iam::222222222222:role/tether-source";
    let mut groups = Groups::with(&[(TG, &[]), (TG2, &[])]);
    tags(
        &mut groups,
        TG,
        &[
            ("tether:source", "alb:orders"),
            ("tether:source-role", role),
        ],
    );
    tags(
        &mut groups,
        TG2,
        &[
            ("tether:source", "alb:orders"),
            ("tether:source-role", "arn:aws:iam::333333333333:role/x"),
        ],
    );
    let nics = Nics::default();
    nics.alb("orders", &["10.0.0.1"], crate::sync::fakes::VPC);
    let mut c = config(None);
    c.source_roles.allowed = vec!["arn:aws:iam::222222222222:role/*".into()];
    let e = engine(c, Dns::default(), nics, groups);
    let report = tick(&e, 1).await;
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80"]);
    assert!(e.elb.now(TG2).is_empty());
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains(&format!("{TG2} tag tether:source-role")),
        "{failures:?}"
    );
    let roles = e.interfaces.roles.lock().expect("lock").clone();
    assert_eq!(roles, [Some(role.parse().expect("role"))]);
}

/// AccessDenied on the role (or any failed listing) is doubt: nothing is
/// counted down, nothing removed.
#[tokio::test]
async fn access_denied_on_the_source_role_is_doubt_never_absence() {
    let role = "arn:aws:iam::222222222222:role/tether-source";
    let mut groups = Groups::with(&[(TG, &["10.0.0.1:80", "10.0.0.2:80"])]);
    tags(
        &mut groups,
        TG,
        &[
            ("tether:source", "alb:orders"),
            ("tether:source-role", role),
            ("tether:deregister-after", "1"),
            ("tether:max-deregister-percent", "100"),
        ],
    );
    let nics = Nics::default();
    nics.alb_fails("orders", aws_error("sts:AssumeRole", "AccessDenied"));
    let mut c = config(None);
    c.source_roles.allowed = vec![role.into()];
    let e = engine(c, Dns::default(), nics, groups);
    for n in 1..=3 {
        let report = tick(&e, n).await;
        assert_eq!(
            report.mappings[0]
                .error
                .as_ref()
                .and_then(|e| e.code.as_deref()),
            Some("AccessDenied")
        );
        assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"]);
    }
}

/// An empty DNS answer after full ones (fix 3) reaches the engine as
/// doubt: nothing counts down.
#[tokio::test]
async fn an_empty_answer_after_full_ones_counts_nothing_down() {
    struct Flaky(std::sync::Mutex<Vec<Vec<IpAddr>>>);
    impl Lookup for Flaky {
        async fn lookup(
            &self,
            _: &str,
            _: crate::dns::RecordKind,
        ) -> Result<Vec<IpAddr>, DnsFailure> {
            let mut answers = self.0.lock().expect("lock");
            Ok(if answers.is_empty() {
                Vec::new()
            } else {
                answers.remove(0)
            })
        }
    }
    let eight = |from: u8| {
        (from..from + 8)
            .map(|i| IpAddr::from([10, 0, 0, i]))
            .collect()
    };
    let e = Engine {
        config: one_mapping(serde_json::json!({"deregister_after": 1})),
        dns: Flaky(std::sync::Mutex::new(vec![eight(1), eight(3)])),
        interfaces: Nics::default(),
        elb: Groups::with(&[(TG, &["10.0.0.11:80", "10.0.0.12:80"])]),
        store: Store::default(),
        metrics: Published::default(),
    };
    let report = e.run_at(soon(), minute(1)).await;
    let m = &report.mappings[0];
    assert_eq!(
        m.error.as_ref().and_then(|e| e.code.as_deref()),
        Some("EmptyAfterFull")
    );
    assert!(m.deregistered.is_empty());
    assert!(m.pending.is_empty(), "{:?}", m.pending);
    assert_eq!(m.registered.len(), 10, "what was seen is registered");
}

#[test]
fn the_scheduled_time_of_an_event_is_its_period() {
    let at = |t: &str| scheduled_time(&serde_json::json!({"time": t}));
    assert_eq!(at("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(at("2026-11-24T12:00:00Z"), Some(1_795_521_600));
    assert_eq!(at("2024-02-29T23:59:59Z"), Some(1_709_251_199));
    assert_eq!(at("2022-03-22T18:59:43.123Z"), Some(1_647_975_583));
    for bad in [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-24 12:00:00Z",
        "<aws.scheduler.scheduled-time>",
    ] {
        assert_eq!(at(bad), None, "{bad}");
    }
    assert_eq!(scheduled_time(&serde_json::json!({})), None);
}

//! The engine on in-memory fakes of its small traits: conflicts, the
//! group-wide guard, exact sources, tags, doubt and the deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::aws::AwsError;
use crate::config::{DnsSettings, MetricsSettings, StateLocation};
use crate::dns::{DnsFailure, RecordKind};
use crate::metrics::Datum;
use crate::sync::groups::{GroupInfo, Target};
use crate::sync::mapping::AlbRef;
use crate::sync::state::SyncState;

const TG: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/50dc6c495c0c9188";
const TG2: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg2/60dc6c495c0c9188";

#[derive(Default)]
struct Dns {
    answers: HashMap<String, Vec<IpAddr>>,
    /// Names that never answer.
    hang: BTreeSet<String>,
}

impl Lookup for Dns {
    async fn lookup(&self, name: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
        if self.hang.contains(name) {
            std::future::pending::<()>().await;
        }
        match self.answers.get(name) {
            Some(addrs) => Ok(addrs.iter().filter(|a| kind.matches(a)).copied().collect()),
            None => Err(DnsFailure::NxDomain),
        }
    }
}

#[derive(Default)]
struct Nics {
    albs: HashMap<String, Result<BTreeSet<IpAddr>, AwsError>>,
}

impl Interfaces for Nics {
    async fn alb_addresses(&self, alb: &AlbRef) -> Result<BTreeSet<IpAddr>, AwsError> {
        self.albs
            .get(&alb.name)
            .cloned()
            .unwrap_or_else(|| Err(throttled("elasticloadbalancing:DescribeLoadBalancers")))
    }

    async fn vpce_addresses(&self, id: &str) -> Result<BTreeSet<IpAddr>, AwsError> {
        Err(AwsError::new(
            "ec2:DescribeVpcEndpoints",
            id,
            "no such VPC endpoint",
        ))
    }
}

fn throttled(op: &'static str) -> AwsError {
    AwsError {
        operation: op,
        resource: "x".into(),
        code: Some("Throttling".into()),
        message: "Rate exceeded".into(),
    }
}

#[derive(Default)]
struct Groups {
    targets: Mutex<BTreeMap<String, Vec<Target>>>,
    tags: BTreeMap<String, Vec<(String, String)>>,
    /// Groups whose DescribeTargetHealth fails.
    broken: BTreeSet<String>,
    /// DeregisterTargets never answers.
    hang_deregister: bool,
}

impl Groups {
    fn with(groups: &[(&str, &[&str])]) -> Self {
        let targets = groups
            .iter()
            .map(|(arn, addrs)| {
                let ts = addrs
                    .iter()
                    .map(|a| Target {
                        addr: a.parse().expect("test address"),
                        availability_zone: None,
                        draining: false,
                    })
                    .collect();
                (arn.to_string(), ts)
            })
            .collect();
        Groups {
            targets: Mutex::new(targets),
            ..Groups::default()
        }
    }

    fn now(&self, arn: &str) -> Vec<String> {
        let all = self.targets.lock().expect("lock");
        let mut v: Vec<String> = all[arn].iter().map(|t| t.addr.to_string()).collect();
        v.sort();
        v
    }
}

impl TargetGroups for Groups {
    async fn list(&self) -> Result<Vec<GroupInfo>, AwsError> {
        let all = self.targets.lock().expect("lock");
        Ok(all
            .keys()
            .map(|arn| GroupInfo {
                arn: arn.parse().expect("test arn"),
                ip_targets: true,
                port: Some(80),
                ipv6: false,
            })
            .collect())
    }

    async fn tags(
        &self,
        arns: &[TargetGroupArn],
    ) -> Result<Vec<crate::sync::groups::Tagged>, AwsError> {
        Ok(arns
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    self.tags.get(a.as_str()).cloned().unwrap_or_default(),
                )
            })
            .collect())
    }

    async fn describe(&self, arn: &TargetGroupArn) -> Result<Vec<Target>, AwsError> {
        if self.broken.contains(arn.as_str()) {
            return Err(throttled("elasticloadbalancing:DescribeTargetHealth"));
        }
        Ok(self.targets.lock().expect("lock")[arn.as_str()].clone())
    }

    async fn register(
        &self,
        arn: &TargetGroupArn,
        targets: &[SocketAddr],
        availability_zone: Option<&str>,
    ) -> Result<(), AwsError> {
        let mut all = self.targets.lock().expect("lock");
        let group = all.entry(arn.to_string()).or_default();
        for t in targets {
            group.push(Target {
                addr: *t,
                availability_zone: availability_zone.map(str::to_owned),
                draining: false,
            });
        }
        Ok(())
    }

    async fn deregister(&self, arn: &TargetGroupArn, targets: &[Target]) -> Result<(), AwsError> {
        if self.hang_deregister {
            std::future::pending::<()>().await;
        }
        let mut all = self.targets.lock().expect("lock");
        let group = all.entry(arn.to_string()).or_default();
        group.retain(|t| !targets.iter().any(|d| d.addr == t.addr));
        Ok(())
    }
}

/// Objects with a version counter as ETag; `races` writes by "another run"
/// land before this run's next conditional writes.
#[derive(Default)]
struct Store {
    objects: Mutex<HashMap<String, (Vec<u8>, u64)>>,
    races: AtomicUsize,
    /// Only saves of this key race (any key when unset).
    race_key: Option<String>,
    saves: AtomicUsize,
}

impl Store {
    fn state(&self, key: &str) -> Option<SyncState> {
        let objects = self.objects.lock().expect("lock");
        objects
            .get(key)
            .and_then(|(b, _)| SyncState::decode(b).ok())
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        let mut objects = self.objects.lock().expect("lock");
        let version = objects.get(key).map_or(1, |(_, v)| v + 1);
        objects.insert(key.to_owned(), (bytes, version));
    }
}

impl StateStore for Store {
    async fn load(&self, key: &str) -> Result<Loaded, AwsError> {
        let objects = self.objects.lock().expect("lock");
        Ok(match objects.get(key) {
            None => Loaded {
                prior: Prior::Fresh,
                version: Version::Absent,
                unusable: None,
            },
            Some((bytes, v)) => {
                let prior = Prior::from_decoded(SyncState::decode(bytes));
                Loaded {
                    unusable: matches!(prior, Prior::Corrupt(_)).then(|| bytes.clone()),
                    prior,
                    version: Version::ETag(v.to_string()),
                }
            }
        })
    }

    async fn save(
        &self,
        key: &str,
        state: &SyncState,
        version: &Version,
    ) -> Result<Version, SaveError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        let racing = self.race_key.as_deref().is_none_or(|k| k == key);
        if racing
            && self
                .races
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            let mut other = self.state(key).unwrap_or_default();
            other.seen.insert(IpAddr::from([10, 9, 9, 9]));
            self.put(key, other.encode());
        }
        let mut objects = self.objects.lock().expect("lock");
        let current = objects.get(key).map(|(_, v)| *v);
        let ok = match version {
            Version::Absent => current.is_none(),
            Version::ETag(e) => current.map(|v| v.to_string()).as_ref() == Some(e),
        };
        if !ok {
            return Err(SaveError::Conflict {
                key: key.to_owned(),
            });
        }
        let next = current.unwrap_or(0) + 1;
        objects.insert(key.to_owned(), (state.encode(), next));
        Ok(Version::ETag(next.to_string()))
    }

    async fn preserve(&self, key: &str, etag: &str, bytes: &[u8]) -> Result<String, AwsError> {
        let aside = format!("{key}.unusable-{etag}");
        self.put(&aside, bytes.to_vec());
        Ok(aside)
    }
}

#[derive(Default)]
struct Published(Mutex<Vec<Datum>>);

impl Metrics for Published {
    async fn publish(&self, _: &str, data: &[Datum]) -> Result<(), AwsError> {
        self.0.lock().expect("lock").extend(data.iter().cloned());
        Ok(())
    }
}

impl Published {
    /// The target groups (the `TargetGroup` dimension) with metrics of their own.
    fn groups(&self) -> BTreeSet<String> {
        let data = self.0.lock().expect("lock");
        data.iter()
            .flat_map(|d| &d.dimensions)
            .filter(|(name, _)| *name == "TargetGroup")
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn clear(&self) {
        self.0.lock().expect("lock").clear();
    }

    fn value(&self, name: &str) -> Vec<f64> {
        let data = self.0.lock().expect("lock");
        data.iter()
            .filter(|d| d.name == name)
            .map(|d| d.values[0].0)
            .collect()
    }
}

type Fake = Engine<Dns, Nics, Groups, Store, Published>;

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
    Dns {
        answers: pairs
            .iter()
            .map(|(n, a)| {
                (
                    n.to_string(),
                    a.iter().map(|x| x.parse().expect("ip")).collect(),
                )
            })
            .collect(),
        ..Dns::default()
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn tags(groups: &mut Groups, arn: &str, pairs: &[(&str, &str)]) {
    groups.tags.insert(
        arn.to_owned(),
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
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
    let report = e.run(soon()).await;
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
    e.run(soon()).await;
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
    e.run(soon()).await;
    assert_eq!(
        e.metrics.value("Registrations"),
        [1.0, 1.0],
        "group and fleet"
    );
    e.metrics.clear();
    e.run(soon()).await;
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
    let report = e.run(soon()).await;
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
    let mut nics = Nics::default();
    nics.albs.insert(
        "orders".into(),
        Ok(BTreeSet::from([IpAddr::from([10, 0, 0, 1])])),
    );
    let mut e = engine(config(None), Dns::default(), nics, groups);
    e.run(soon()).await;
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"], "one absence");
    // A failed listing: no countdown advances, nothing is removed, it fails.
    e.interfaces.albs.insert(
        "orders".into(),
        Err(throttled("ec2:DescribeNetworkInterfaces")),
    );
    let report = e.run(soon()).await;
    let error = report.mappings[0]
        .error
        .clone()
        .expect("failed listing fails the mapping");
    assert_eq!(error.code.as_deref(), Some("Throttling"));
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"]);
    // An empty listing is a failure too, not "every node is gone".
    e.interfaces
        .albs
        .insert("orders".into(), Ok(BTreeSet::new()));
    assert!(e.run(soon()).await.mappings[0].error.is_some());
    assert_eq!(e.elb.now(TG), ["10.0.0.1:80", "10.0.0.2:80"]);
    e.interfaces.albs.insert(
        "orders".into(),
        Ok(BTreeSet::from([IpAddr::from([10, 0, 0, 1])])),
    );
    e.run(soon()).await;
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
    let mut e = engine(
        config(Some(targets)),
        dns(&[
            ("a.example.com", &["10.0.0.1", "10.0.0.2"]),
            ("b.example.com", &["10.0.0.3", "10.0.0.4"]),
        ]),
        Nics::default(),
        groups,
    );
    e.run(soon()).await;
    assert_eq!(e.elb.now(TG).len(), 4);
    // Both names lose both addresses: four stale, 50% of six after
    // registering two new ones is three, for the group as a whole.
    e.dns = dns(&[
        ("a.example.com", &["10.0.0.5"]),
        ("b.example.com", &["10.0.0.6"]),
    ]);
    let report = e.run(soon()).await;
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
    let report = e.run(soon()).await;
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
    let report = e.run(soon()).await;
    let error = report.mappings[0].error.clone().expect("gave up");
    assert_eq!(error.kind, ErrorKind::StateConflict);
    assert!(e.elb.now(TG).is_empty(), "nothing changed after giving up");
}

#[tokio::test]
async fn a_failed_describe_still_keeps_the_countdown_resets() {
    let targets =
        serde_json::json!([{"dns_name": "a.example.com", "target_group_arn": TG, "port": 80}]);
    let mut groups = Groups::with(&[(TG, &["10.0.0.1:80"])]);
    groups.broken.insert(TG.into());
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
    e.store.put(&key, before.encode());
    let report = e.run(soon()).await;
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
    let report = e.run(soon()).await;
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
    let mut d = dns(&[("a.example.com", &["10.0.0.1"])]);
    d.hang.insert("slow.example.com".into());
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
    let first = e.run(soon()).await;
    assert_eq!(
        first.mappings[0].registered,
        ["10.0.0.1:80".parse::<SocketAddr>().expect("sa")]
    );
    let second = e.run(soon()).await;
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
    let mut e = engine(
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
        ..SyncState::default()
    };
    e.store.put(&key_a, before.encode());
    // b's intent conflicts once, after a's was written: the group is re-planned.
    e.store.race_key = Some(key_b);
    e.store.races.store(1, Ordering::SeqCst);
    let report = e.run(soon()).await;
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
    let mut groups = Groups::with(&[(TG, &["10.0.0.9:80"])]);
    groups.hang_deregister = true;
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

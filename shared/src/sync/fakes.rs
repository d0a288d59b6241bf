//! In-memory fakes of the engine's traits, with the faults a test turns on:
//! the engine's unit tests and the soak (`tests/tests/target_sync_soak.rs`)
//! share them. Each fake keeps its state behind a lock so that a test
//! changes the world between runs, and two engines (overlapping runs) can
//! share one world through `Arc`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::groups::{Described, GroupInfo, Tagged, Target, TargetGroups};
use super::interfaces::{Interfaces, Listed, Listing};
use super::mapping::{AlbRef, RoleArn, TargetGroupArn};
use super::state::{Prior, SyncState};
use super::store::{Loaded, SaveError, StateStore, Version};
use crate::aws::AwsError;
use crate::dns::{DnsFailure, Lookup, RecordKind};
use crate::metrics::{Datum, Metrics};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An AWS error with a code, as an adapter would return it.
pub fn aws_error(operation: &'static str, code: &str) -> AwsError {
    AwsError {
        operation,
        resource: "fake".into(),
        code: Some(code.into()),
        message: format!("{code} (fake)"),
    }
}

/// Takes one from a counter of faults to come; true when there was one.
fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// DNS answers by name: addresses, or a failure.
#[derive(Default)]
pub struct FakeDns {
    pub answers: Mutex<HashMap<String, Result<Vec<IpAddr>, DnsFailure>>>,
    /// Names that never answer.
    pub hang: Mutex<BTreeSet<String>>,
    pub queries: AtomicUsize,
}

impl FakeDns {
    pub fn with(pairs: &[(&str, &[&str])]) -> Self {
        let dns = FakeDns::default();
        for (name, addrs) in pairs {
            dns.answer(name, addrs);
        }
        dns
    }

    pub fn answer(&self, name: &str, addrs: &[&str]) {
        let ips = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        lock(&self.answers).insert(name.to_owned(), Ok(ips));
    }

    pub fn fail(&self, name: &str, failure: DnsFailure) {
        lock(&self.answers).insert(name.to_owned(), Err(failure));
    }
}

impl Lookup for FakeDns {
    async fn lookup(&self, name: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if lock(&self.hang).contains(name) {
            std::future::pending::<()>().await;
        }
        let answer = lock(&self.answers).get(name).cloned();
        match answer {
            Some(Ok(addrs)) => Ok(addrs.into_iter().filter(|a| kind.matches(a)).collect()),
            Some(Err(failure)) => Err(failure),
            None => Err(DnsFailure::NxDomain),
        }
    }
}

/// Interfaces of ALBs (by name) and VPC endpoints, in one VPC unless set.
#[derive(Default)]
pub struct FakeNics {
    pub albs: Mutex<HashMap<String, Listing>>,
    pub vpces: Mutex<HashMap<String, Listing>>,
    /// Calls made, and the roles they were made with.
    pub calls: AtomicUsize,
    pub roles: Mutex<Vec<Option<RoleArn>>>,
}

impl FakeNics {
    pub fn alb(&self, name: &str, addrs: &[&str], vpc: &str) {
        let listed = Listed {
            addrs: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
            vpc_id: Some(vpc.to_owned()),
        };
        lock(&self.albs).insert(name.to_owned(), Ok(listed));
    }

    pub fn alb_fails(&self, name: &str, error: AwsError) {
        lock(&self.albs).insert(name.to_owned(), Err(error));
    }
}

impl Interfaces for FakeNics {
    async fn albs(&self, role: Option<&RoleArn>, albs: &[AlbRef]) -> HashMap<AlbRef, Listing> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.roles).push(role.cloned());
        let known = lock(&self.albs);
        albs.iter()
            .map(|a| {
                let listing = known.get(&a.name).cloned().unwrap_or_else(|| {
                    Err(aws_error(
                        "elasticloadbalancing:DescribeLoadBalancers",
                        "LoadBalancerNotFound",
                    ))
                });
                (a.clone(), listing)
            })
            .collect()
    }

    async fn vpces(&self, role: Option<&RoleArn>, ids: &[String]) -> HashMap<String, Listing> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.roles).push(role.cloned());
        let known = lock(&self.vpces);
        ids.iter()
            .map(|id| {
                let listing = known.get(id).cloned().unwrap_or_else(|| {
                    Err(aws_error(
                        "ec2:DescribeVpcEndpoints",
                        "InvalidVpcEndpointId.NotFound",
                    ))
                });
                (id.clone(), listing)
            })
            .collect()
    }
}

/// The VPC of every fake group unless set otherwise.
pub const VPC: &str = "vpc-0123456789abcdef0";

/// Target groups: their targets, tags and facts, and the faults to come.
pub struct FakeGroups {
    pub targets: Mutex<BTreeMap<String, Vec<Target>>>,
    pub tags: Mutex<BTreeMap<String, Vec<(String, String)>>>,
    /// Groups of another VPC than [`VPC`], or IPv6.
    pub vpcs: Mutex<BTreeMap<String, String>>,
    pub ipv6: Mutex<BTreeSet<String>>,
    /// Groups whose DescribeTargetHealth fails (Throttling).
    pub broken: Mutex<BTreeSet<String>>,
    /// Registrations or deregistrations that fail, as many as set.
    pub failing_registers: AtomicUsize,
    pub failing_deregisters: AtomicUsize,
    /// DeregisterTargets never answers.
    pub hang_deregister: AtomicBool,
    /// Describe calls allowed per run (`describe_budget`).
    pub budget: AtomicUsize,
    pub describes: AtomicUsize,
    pub tagged_calls: AtomicUsize,
}

impl Default for FakeGroups {
    fn default() -> Self {
        Self {
            targets: Mutex::default(),
            tags: Mutex::default(),
            vpcs: Mutex::default(),
            ipv6: Mutex::default(),
            broken: Mutex::default(),
            failing_registers: AtomicUsize::new(0),
            failing_deregisters: AtomicUsize::new(0),
            hang_deregister: AtomicBool::new(false),
            budget: AtomicUsize::new(usize::MAX),
            describes: AtomicUsize::new(0),
            tagged_calls: AtomicUsize::new(0),
        }
    }
}

impl FakeGroups {
    pub fn with(groups: &[(&str, &[&str])]) -> Self {
        let fake = FakeGroups::default();
        {
            let mut all = lock(&fake.targets);
            for (arn, addrs) in groups {
                let ts = addrs
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .map(|addr| Target {
                        addr,
                        availability_zone: None,
                        draining: false,
                    })
                    .collect();
                all.insert((*arn).to_owned(), ts);
            }
        }
        fake
    }

    pub fn tag(&self, arn: &str, pairs: &[(&str, &str)]) {
        lock(&self.tags).insert(
            arn.to_owned(),
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }

    /// The group's targets as sorted `ip:port`.
    pub fn now(&self, arn: &str) -> Vec<String> {
        let all = lock(&self.targets);
        let mut v: Vec<String> = all
            .get(arn)
            .map(|ts| ts.iter().map(|t| t.addr.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn addrs(&self, arn: &str) -> BTreeSet<SocketAddr> {
        lock(&self.targets)
            .get(arn)
            .map(|ts| ts.iter().map(|t| t.addr).collect())
            .unwrap_or_default()
    }
}

impl TargetGroups for FakeGroups {
    async fn tagged(&self, key: &str) -> Result<Vec<Tagged>, AwsError> {
        self.tagged_calls.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.tags)
            .iter()
            .filter(|(_, tags)| tags.iter().any(|(k, _)| k == key))
            .filter_map(|(arn, tags)| Some((arn.parse().ok()?, tags.clone())))
            .collect())
    }

    async fn info(
        &self,
        arns: &[TargetGroupArn],
    ) -> Result<HashMap<TargetGroupArn, GroupInfo>, AwsError> {
        let targets = lock(&self.targets);
        let (vpcs, ipv6) = (lock(&self.vpcs), lock(&self.ipv6));
        Ok(arns
            .iter()
            .filter(|a| targets.contains_key(a.as_str()))
            .map(|a| {
                let info = GroupInfo {
                    arn: a.clone(),
                    ip_targets: true,
                    port: Some(80),
                    ipv6: ipv6.contains(a.as_str()),
                    vpc_id: Some(vpcs.get(a.as_str()).cloned().unwrap_or(VPC.to_owned())),
                };
                (a.clone(), info)
            })
            .collect())
    }

    async fn describe(&self, arn: &TargetGroupArn) -> Result<Described, AwsError> {
        // Every call yields once, so that two runs on one world interleave.
        tokio::task::yield_now().await;
        self.describes.fetch_add(1, Ordering::SeqCst);
        if lock(&self.broken).contains(arn.as_str()) {
            return Err(aws_error(
                "elasticloadbalancing:DescribeTargetHealth",
                "Throttling",
            ));
        }
        Ok(match lock(&self.targets).get(arn.as_str()) {
            Some(targets) => Described::Targets(targets.clone()),
            None => Described::Gone,
        })
    }

    fn describe_budget(&self, _window: Duration) -> usize {
        self.budget.load(Ordering::SeqCst)
    }

    async fn register(
        &self,
        arn: &TargetGroupArn,
        targets: &[SocketAddr],
        availability_zone: Option<&str>,
    ) -> Result<(), AwsError> {
        tokio::task::yield_now().await;
        if take(&self.failing_registers) {
            return Err(aws_error(
                "elasticloadbalancing:RegisterTargets",
                "InvalidTarget",
            ));
        }
        let mut all = lock(&self.targets);
        let group = all.entry(arn.to_string()).or_default();
        for t in targets {
            group.retain(|g| g.addr != *t);
            group.push(Target {
                addr: *t,
                availability_zone: availability_zone.map(str::to_owned),
                draining: false,
            });
        }
        Ok(())
    }

    async fn deregister(&self, arn: &TargetGroupArn, targets: &[Target]) -> Result<(), AwsError> {
        if self.hang_deregister.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if take(&self.failing_deregisters) {
            return Err(aws_error(
                "elasticloadbalancing:DeregisterTargets",
                "Throttling",
            ));
        }
        let mut all = lock(&self.targets);
        let group = all.entry(arn.to_string()).or_default();
        group.retain(|t| !targets.iter().any(|d| d.addr == t.addr));
        Ok(())
    }
}

/// Objects with a version counter as ETag, and the faults to come.
#[derive(Default)]
pub struct FakeStore {
    pub objects: Mutex<HashMap<String, (Vec<u8>, u64)>>,
    /// Writes by "another run" that land before this run's next
    /// conditional writes (of `race_key` only, when set).
    pub races: AtomicUsize,
    pub race_key: Mutex<Option<String>>,
    /// Writes that land and whose answer is lost: the SDK's retry then
    /// finds the condition gone (412), as S3 answers a retried
    /// conditional PutObject whose first attempt landed.
    pub lost_answers: AtomicUsize,
    /// Writes that fail (a 5xx the SDK gave up on): nothing lands.
    pub failing_saves: AtomicUsize,
    /// Reads that fail, per key (or of any key under `""`).
    pub failing_loads: Mutex<HashMap<String, usize>>,
    pub saves: AtomicUsize,
    pub loads: AtomicUsize,
}

impl FakeStore {
    pub fn state(&self, key: &str) -> Option<SyncState> {
        lock(&self.objects)
            .get(key)
            .and_then(|(b, _)| SyncState::decode(b).ok())
    }

    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        let mut objects = lock(&self.objects);
        let version = objects.get(key).map_or(1, |(_, v)| v + 1);
        objects.insert(key.to_owned(), (bytes, version));
    }

    fn load_fails(&self, key: &str) -> bool {
        let mut failing = lock(&self.failing_loads);
        for k in [key, ""] {
            if let Some(n) = failing.get_mut(k)
                && *n > 0
            {
                *n -= 1;
                return true;
            }
        }
        false
    }
}

impl StateStore for FakeStore {
    async fn load(&self, key: &str) -> Result<Loaded, AwsError> {
        tokio::task::yield_now().await;
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.load_fails(key) {
            return Err(aws_error("s3:GetObject", "InternalError"));
        }
        let objects = lock(&self.objects);
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
        tokio::task::yield_now().await;
        self.saves.fetch_add(1, Ordering::SeqCst);
        let bytes = state.encode().map_err(|error| SaveError::Encode {
            key: key.to_owned(),
            error,
        })?;
        if take(&self.failing_saves) {
            return Err(aws_error("s3:PutObject", "InternalError").into());
        }
        let racing = lock(&self.race_key).as_deref().is_none_or(|k| k == key);
        if racing && take(&self.races) {
            let mut other = self.state(key).unwrap_or_default();
            other.seen.insert(IpAddr::from([10, 9, 9, 9]));
            other.in_sync = false;
            if let Ok(b) = other.encode() {
                self.put(key, b);
            }
        }
        let mut objects = lock(&self.objects);
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
        objects.insert(key.to_owned(), (bytes, next));
        if take(&self.lost_answers) {
            return Err(SaveError::Conflict {
                key: key.to_owned(),
            });
        }
        Ok(Version::ETag(next.to_string()))
    }

    async fn preserve(&self, key: &str, etag: &str, bytes: &[u8]) -> Result<String, AwsError> {
        let aside = format!("{key}.unusable-{etag}");
        self.put(&aside, bytes.to_vec());
        Ok(aside)
    }
}

/// Published metrics, kept.
#[derive(Default)]
pub struct FakeMetrics {
    pub data: Mutex<Vec<Datum>>,
    /// Publishing fails (Throttling) while set.
    pub failing: AtomicBool,
}

impl Metrics for FakeMetrics {
    async fn publish(&self, _: &str, data: &[Datum]) -> Result<(), AwsError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(aws_error("cloudwatch:PutMetricData", "Throttling"));
        }
        lock(&self.data).extend(data.iter().cloned());
        Ok(())
    }
}

impl FakeMetrics {
    /// The target groups (the `TargetGroup` dimension) with metrics of their own.
    pub fn groups(&self) -> BTreeSet<String> {
        lock(&self.data)
            .iter()
            .flat_map(|d| &d.dimensions)
            .filter(|(name, _)| *name == "TargetGroup")
            .map(|(_, value)| value.clone())
            .collect()
    }

    pub fn clear(&self) {
        lock(&self.data).clear();
    }

    pub fn value(&self, name: &str) -> Vec<f64> {
        lock(&self.data)
            .iter()
            .filter(|d| d.name == name)
            .map(|d| d.values[0].0)
            .collect()
    }
}

/// Every fake shared: two engines on one world run "at the same time".
impl<T: Lookup> Lookup for Arc<T> {
    async fn lookup(&self, name: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
        self.as_ref().lookup(name, kind).await
    }
}

impl<T: Interfaces> Interfaces for Arc<T> {
    async fn albs(&self, role: Option<&RoleArn>, albs: &[AlbRef]) -> HashMap<AlbRef, Listing> {
        self.as_ref().albs(role, albs).await
    }

    async fn vpces(&self, role: Option<&RoleArn>, ids: &[String]) -> HashMap<String, Listing> {
        self.as_ref().vpces(role, ids).await
    }
}

impl<T: TargetGroups> TargetGroups for Arc<T> {
    async fn tagged(&self, key: &str) -> Result<Vec<Tagged>, AwsError> {
        self.as_ref().tagged(key).await
    }

    async fn info(
        &self,
        arns: &[TargetGroupArn],
    ) -> Result<HashMap<TargetGroupArn, GroupInfo>, AwsError> {
        self.as_ref().info(arns).await
    }

    async fn describe(&self, arn: &TargetGroupArn) -> Result<Described, AwsError> {
        self.as_ref().describe(arn).await
    }

    fn describe_budget(&self, window: Duration) -> usize {
        self.as_ref().describe_budget(window)
    }

    async fn register(
        &self,
        arn: &TargetGroupArn,
        targets: &[SocketAddr],
        availability_zone: Option<&str>,
    ) -> Result<(), AwsError> {
        self.as_ref()
            .register(arn, targets, availability_zone)
            .await
    }

    async fn deregister(&self, arn: &TargetGroupArn, targets: &[Target]) -> Result<(), AwsError> {
        self.as_ref().deregister(arn, targets).await
    }
}

impl<T: StateStore> StateStore for Arc<T> {
    async fn load(&self, key: &str) -> Result<Loaded, AwsError> {
        self.as_ref().load(key).await
    }

    async fn save(
        &self,
        key: &str,
        state: &SyncState,
        version: &Version,
    ) -> Result<Version, SaveError> {
        self.as_ref().save(key, state, version).await
    }

    async fn preserve(&self, key: &str, etag: &str, bytes: &[u8]) -> Result<String, AwsError> {
        self.as_ref().preserve(key, etag, bytes).await
    }
}

impl<T: Metrics> Metrics for Arc<T> {
    async fn publish(&self, namespace: &str, data: &[Datum]) -> Result<(), AwsError> {
        self.as_ref().publish(namespace, data).await
    }
}

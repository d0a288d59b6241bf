//! The soak: 120 one-minute ticks of a fleet of 24 tagged target groups
//! under a seeded schedule of AWS and DNS faults, with overlapping runs (a
//! second container syncing the same minute) and retried invocations and
//! writes, on the in-memory fakes of the engine's traits
//! (`tether_shared::sync::fakes`, deterministic: no clock, no network).
//!
//! The sources change under it (nodes come and go). After every tick, no
//! target was removed whose address its source listed that minute; after
//! the faults stop, every group converges to its source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_shared::config::Vars;
use tether_shared::dns::{DnsFailure, Lookup, RecordKind};
use tether_shared::sync::fakes::{FakeGroups, FakeMetrics, FakeNics, FakeStore, VPC, aws_error};
use tether_shared::sync::store::CachedStore;
use tether_shared::sync::{Engine, SyncConfig};

const TICKS: u64 = 120;
const GROUPS: usize = 24;
const START: u64 = 1_764_000_000;

/// xorshift64*: a seeded, reproducible schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with probability `percent` in 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How a name answers this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Timeout,
    ServFail,
    NxDomain,
    /// Empty answers after the first (full) one.
    EmptyAfterFull,
}

/// DNS names answering from the truth: 8 addresses at most per answer, a
/// rotating subset when there are more (as ELB answers), unless faulty.
#[derive(Default)]
struct SoakDns {
    truth: Mutex<HashMap<String, Vec<IpAddr>>>,
    faults: Mutex<HashMap<String, Fault>>,
    asked: Mutex<HashMap<String, usize>>,
}

impl Lookup for SoakDns {
    async fn lookup(&self, name: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
        tokio::task::yield_now().await;
        if kind != RecordKind::A {
            return Ok(Vec::new());
        }
        let n = {
            let mut asked = self.asked.lock().expect("lock");
            let n = asked.entry(name.to_owned()).or_default();
            *n += 1;
            *n
        };
        match self.faults.lock().expect("lock").get(name) {
            Some(Fault::Timeout) => return Err(DnsFailure::Timeout),
            Some(Fault::ServFail) => return Err(DnsFailure::ServFail),
            Some(Fault::NxDomain) => return Err(DnsFailure::NxDomain),
            Some(Fault::EmptyAfterFull) if n % 2 == 0 => return Ok(Vec::new()),
            _ => {}
        }
        let all = self
            .truth
            .lock()
            .expect("lock")
            .get(name)
            .cloned()
            .unwrap_or_default();
        if all.len() <= 8 {
            return Ok(all);
        }
        let start = n % all.len();
        Ok((0..8).map(|i| all[(start + i) % all.len()]).collect())
    }
}

/// A group's source in the world.
struct Group {
    arn: String,
    /// `dns:<name>` or `alb:<name>`.
    source: String,
    /// Addresses a new node may take.
    pool: Vec<IpAddr>,
    truth: BTreeSet<IpAddr>,
    /// A DNS name with more than 8 addresses: never complete, so its
    /// stale addresses are kept (by design), not converged away.
    saturates: bool,
}

fn ip(g: usize, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        20 + g as u8,
        (n / 200) as u8,
        (n % 200 + 1) as u8,
    ))
}

type Soak = Engine<
    Arc<SoakDns>,
    Arc<FakeNics>,
    Arc<FakeGroups>,
    CachedStore<Arc<FakeStore>>,
    Arc<FakeMetrics>,
>;

struct World {
    dns: Arc<SoakDns>,
    nics: Arc<FakeNics>,
    elb: Arc<FakeGroups>,
    store: Arc<FakeStore>,
    metrics: Arc<FakeMetrics>,
    groups: Vec<Group>,
}

impl World {
    fn new(rng: &mut Rng) -> World {
        let w = World {
            dns: Arc::default(),
            nics: Arc::default(),
            elb: Arc::default(),
            store: Arc::default(),
            metrics: Arc::default(),
            groups: Vec::new(),
        };
        let mut groups = Vec::new();
        for g in 0..GROUPS {
            let arn = format!(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/soak{g}/50dc6c495c0c9188"
            );
            // Two thirds DNS names (a few of them larger than an answer),
            // a third ALBs listed by their interfaces.
            let (source, size) = match g % 6 {
                0 | 1 => (format!("alb:alb{g}"), 3 + rng.below(10)),
                5 => (format!("dns:big{g}.example.com"), 10 + rng.below(3)),
                _ => (format!("dns:svc{g}.example.com"), 2 + rng.below(5)),
            };
            let pool: Vec<IpAddr> = (0..40).map(|n| ip(g, n)).collect();
            let truth: BTreeSet<IpAddr> = pool[..size].iter().copied().collect();
            let after = 2 + rng.below(2);
            w.elb
                .targets
                .lock()
                .expect("lock")
                .insert(arn.clone(), Vec::new());
            w.elb.tag(
                &arn,
                &[
                    ("tether:source", &source),
                    ("tether:deregister-after", &after.to_string()),
                ],
            );
            groups.push(Group {
                arn,
                saturates: source.starts_with("dns:big"),
                source,
                pool,
                truth,
            });
        }
        let mut w = w;
        w.groups = groups;
        w.publish_truth();
        w
    }

    /// What every source lists right now.
    fn publish_truth(&self) {
        for g in &self.groups {
            let addrs: Vec<IpAddr> = g.truth.iter().copied().collect();
            if let Some(name) = g.source.strip_prefix("dns:") {
                self.dns
                    .truth
                    .lock()
                    .expect("lock")
                    .insert(name.to_owned(), addrs);
            } else if let Some(name) = g.source.strip_prefix("alb:") {
                let text: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                let refs: Vec<&str> = text.iter().map(String::as_str).collect();
                self.nics.alb(name, &refs, VPC);
            }
        }
    }

    /// Nodes come and go.
    fn evolve(&mut self, rng: &mut Rng) {
        for g in &mut self.groups {
            if !rng.chance(12) {
                continue;
            }
            let min = if g.saturates { 10 } else { 2 };
            // A name of 8 addresses or more answers full: it is never
            // complete (by design), so the small names stay below 8.
            let small_name = g.source.starts_with("dns:") && !g.saturates;
            let full = small_name && g.truth.len() >= 7;
            if g.truth.len() > min && (full || rng.chance(50)) {
                let gone = *g.truth.iter().nth(rng.below(g.truth.len())).expect("some");
                g.truth.remove(&gone);
            } else {
                let new = g.pool[rng.below(g.pool.len())];
                g.truth.insert(new);
            }
        }
        self.publish_truth();
    }

    /// This tick's faults, from the seeded schedule.
    fn faults(&self, rng: &mut Rng) {
        let mut dns = self.dns.faults.lock().expect("lock");
        dns.clear();
        for g in &self.groups {
            let Some(name) = g.source.strip_prefix("dns:") else {
                continue;
            };
            if rng.chance(12) {
                let fault = [
                    Fault::Timeout,
                    Fault::ServFail,
                    Fault::NxDomain,
                    Fault::EmptyAfterFull,
                ][rng.below(4)];
                dns.insert(name.to_owned(), fault);
            }
        }
        for g in &self.groups {
            if let Some(name) = g.source.strip_prefix("alb:")
                && rng.chance(10)
            {
                let code = ["Throttling", "AccessDenied", "RequestLimitExceeded"][rng.below(3)];
                self.nics
                    .alb_fails(name, aws_error("ec2:DescribeNetworkInterfaces", code));
            }
        }
        let mut broken = self.elb.broken.lock().expect("lock");
        broken.clear();
        for g in &self.groups {
            if rng.chance(8) {
                broken.insert(g.arn.clone());
            }
        }
        let count = |rng: &mut Rng, percent| usize::from(rng.chance(percent)) * (1 + rng.below(3));
        self.elb
            .failing_registers
            .store(count(rng, 15), Ordering::SeqCst);
        self.elb
            .failing_deregisters
            .store(count(rng, 15), Ordering::SeqCst);
        // Some ticks, ELB allows fewer Describe calls than there are groups.
        let budget = if rng.chance(25) {
            6 + rng.below(10)
        } else {
            usize::MAX
        };
        self.elb.budget.store(budget, Ordering::SeqCst);
        self.store
            .lost_answers
            .store(count(rng, 20), Ordering::SeqCst);
        self.store
            .failing_saves
            .store(count(rng, 10), Ordering::SeqCst);
        self.store.races.store(count(rng, 10), Ordering::SeqCst);
        if rng.chance(10) {
            self.store
                .failing_loads
                .lock()
                .expect("lock")
                .insert(String::new(), 1 + rng.below(3));
        }
        self.metrics.failing.store(rng.chance(10), Ordering::SeqCst);
    }

    fn calm(&self) {
        self.dns.faults.lock().expect("lock").clear();
        self.publish_truth();
        self.elb.broken.lock().expect("lock").clear();
        for counter in [&self.elb.failing_registers, &self.elb.failing_deregisters] {
            counter.store(0, Ordering::SeqCst);
        }
        self.elb.budget.store(usize::MAX, Ordering::SeqCst);
        for counter in [
            &self.store.lost_answers,
            &self.store.failing_saves,
            &self.store.races,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
        self.store.failing_loads.lock().expect("lock").clear();
        self.metrics.failing.store(false, Ordering::SeqCst);
    }

    /// A container: its own warm cache, the shared world.
    fn container(&self) -> Soak {
        let vars = Vars(|name: &str| match name {
            "STATE_BUCKET" => Some("soak-state".to_owned()),
            "AWS_LAMBDA_FUNCTION_NAME" => Some("target-sync".to_owned()),
            _ => None,
        });
        let config = SyncConfig::from_vars(&vars).expect("config");
        Engine {
            config,
            dns: Arc::clone(&self.dns),
            interfaces: Arc::clone(&self.nics),
            elb: Arc::clone(&self.elb),
            store: CachedStore::new(Arc::clone(&self.store)),
            metrics: Arc::clone(&self.metrics),
        }
    }

    fn targets(&self) -> BTreeMap<String, BTreeSet<SocketAddr>> {
        self.groups
            .iter()
            .map(|g| (g.arn.clone(), self.elb.addrs(&g.arn)))
            .collect()
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn a_faulty_hour_removes_nothing_still_listed_and_every_group_converges() {
    let mut rng = Rng(0x7e7e_7e7e_2026_1203);
    let mut world = World::new(&mut rng);
    let (a, mut b) = (world.container(), world.container());
    let mut removed_total = 0;
    for tick in 0..TICKS {
        world.evolve(&mut rng);
        world.faults(&mut rng);
        let before = world.targets();
        let minute = START + tick * 60;
        match rng.below(4) {
            // Two containers in the same minute, at the same time.
            0 => {
                let (_, _) = tokio::join!(
                    a.run_at(deadline(), minute),
                    b.run_at(deadline(), minute + 1)
                );
            }
            // A run, and Lambda's retry of it later in the minute.
            1 => {
                a.run_at(deadline(), minute).await;
                a.run_at(deadline(), minute + 40).await;
            }
            // A new container (cold: no cache) takes over.
            2 => {
                b = world.container();
                b.run_at(deadline(), minute).await;
            }
            _ => {
                a.run_at(deadline(), minute).await;
            }
        }
        let after = world.targets();
        for g in &world.groups {
            for gone in before[&g.arn].difference(&after[&g.arn]) {
                removed_total += 1;
                assert!(
                    !g.truth.contains(&gone.ip()),
                    "tick {tick}: {gone} removed from {} while {} listed it",
                    g.arn,
                    g.source
                );
            }
        }
    }
    assert!(
        removed_total > 0,
        "the soak removed nothing: it proved nothing"
    );

    // The faults stop: within a few minutes every group equals its source
    // (a name larger than one answer keeps its stale addresses: never complete).
    world.calm();
    for tick in TICKS..TICKS + 12 {
        let report = a.run_at(deadline(), START + tick * 60).await;
        if tick == TICKS + 11 {
            assert_eq!(report.failures(), Vec::<String>::new());
        }
    }
    for g in &world.groups {
        let listed: BTreeSet<SocketAddr> =
            g.truth.iter().map(|ip| SocketAddr::new(*ip, 80)).collect();
        let now = world.elb.addrs(&g.arn);
        if g.saturates {
            assert!(
                listed.is_subset(&now),
                "{}: {listed:?} not all in {now:?}",
                g.source
            );
        } else {
            assert_eq!(now, listed, "{} did not converge", g.source);
        }
    }
}

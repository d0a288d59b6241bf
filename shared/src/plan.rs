//! The reconcile planner: a pure function from what DNS said, what the target
//! group holds and what the last runs remembered, to what to change.
//!
//! Register aggressively, deregister cautiously:
//! - every resolved address not registered is registered at once;
//! - a managed target missing from DNS is deregistered only after
//!   `deregister_after` successful resolutions in a row without it, and never
//!   more than `max_deregister_percent` of the group in one run;
//! - a failed or doubtful resolution, or unusable state, never deregisters
//!   and never advances a countdown.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::mapping::{Mapping, Ownership};
use crate::state::{Prior, SyncState};

/// What a run learned from DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Every query answered with addresses.
    Complete(BTreeSet<IpAddr>),
    /// Some queries answered, others failed: the addresses are real, but an
    /// address missing from them may only be missing from the failed queries.
    Partial(BTreeSet<IpAddr>),
    /// Nothing usable.
    Failed,
}

/// A target as `DescribeTargetHealth` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub addr: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Being removed: does not count as registered.
    pub draining: bool,
}

/// What to do this run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub register: Vec<SocketAddr>,
    /// As registered (port and zone), so that the deregistration matches.
    pub deregister: Vec<Target>,
    /// Due for deregistration but over the percent guard.
    pub held_back: Vec<SocketAddr>,
    /// The state once the plan is applied; `None` when nothing may change.
    pub state: Option<SyncState>,
    /// The state to write before changing the group: `state`, but with the
    /// targets about to be deregistered still owned and counting, so that a
    /// deregistration that fails (or never happens) is retried next run.
    pub intent: Option<SyncState>,
    /// Registered targets once the plan is applied.
    pub registered_after: usize,
}

pub fn plan(mapping: &Mapping, resolution: &Resolution, targets: &[Target], prior: &Prior) -> Plan {
    let (addrs, certain) = match resolution {
        Resolution::Failed => return Plan::default(),
        Resolution::Complete(addrs) => (addrs, true),
        Resolution::Partial(addrs) => (addrs, false),
    };
    let (previous, trusted) = match prior {
        Prior::Fresh => (SyncState::default(), true),
        Prior::Valid(state) => (state.clone(), true),
        Prior::Corrupt(_) => (SyncState::default(), false),
    };
    let may_count = certain && trusted;

    let registered: BTreeSet<SocketAddr> = targets
        .iter()
        .filter(|t| !t.draining)
        .map(|t| t.addr)
        .collect();
    let desired: BTreeSet<SocketAddr> = addrs
        .iter()
        .map(|ip| SocketAddr::new(*ip, mapping.port))
        .collect();
    let register: Vec<SocketAddr> = desired.difference(&registered).copied().collect();

    // What this function registered and is still there. Unusable state is
    // rebuilt from the group: the registered targets that DNS vouches for.
    let mut owned: BTreeSet<SocketAddr> = match prior {
        Prior::Corrupt(_) => registered.intersection(&desired).copied().collect(),
        _ => previous.owned.intersection(&registered).copied().collect(),
    };
    owned.extend(register.iter().copied());

    let manages = |t: &SocketAddr| match mapping.ownership {
        Ownership::Exclusive => {
            t.port() == mapping.port || !mapping.foreign_ports.contains(&t.port())
        }
        Ownership::Tracked => owned.contains(t),
    };
    let step = u32::from(may_count);
    let pending: BTreeMap<SocketAddr, u32> = registered
        .difference(&desired)
        .filter(|t| manages(t))
        .filter_map(|t| {
            let count = previous.pending.get(t).copied().unwrap_or(0) + step;
            (count > 0).then_some((*t, count))
        })
        .collect();

    let mut deregister = Vec::new();
    let mut held_back = Vec::new();
    if may_count {
        let mut due: Vec<(u32, SocketAddr)> = pending
            .iter()
            .filter(|(_, count)| **count >= mapping.deregister_after)
            .map(|(t, count)| (*count, *t))
            .collect();
        // Longest missing first; ties in address order.
        due.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let group_size = registered.len() + register.len();
        let budget = group_size * usize::from(mapping.max_deregister_percent) / 100;
        for (i, (_, addr)) in due.into_iter().enumerate() {
            if i < budget {
                if let Some(target) = targets.iter().find(|t| t.addr == addr && !t.draining) {
                    deregister.push(target.clone());
                }
            } else {
                held_back.push(addr);
            }
        }
    }

    let seen = if certain {
        addrs.clone()
    } else {
        previous.seen.union(addrs).copied().collect()
    };
    let intent = SyncState {
        seen,
        pending,
        owned,
        ..SyncState::default()
    };
    let mut state = intent.clone();
    for target in &deregister {
        state.pending.remove(&target.addr);
        state.owned.remove(&target.addr);
    }
    let registered_after = registered.len() + register.len() - deregister.len();
    Plan {
        register,
        deregister,
        held_back,
        state: Some(state),
        intent: Some(intent),
        registered_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Naming, RecordKind};
    use proptest::prelude::*;
    use serde_json::json;

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/50dc6c495c0c9188";

    fn mapping(ownership: &str, after: u32, percent: u8) -> Mapping {
        let mut m = Mapping::from_json(
            "t",
            &json!({"dns_name": "alb.example.com", "target_group_arn": ARN, "port": 80,
                    "ownership": ownership, "deregister_after": after,
                    "max_deregister_percent": percent}),
            Naming::Snake,
        )
        .unwrap();
        m.record_types = vec![RecordKind::A];
        m
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn sa(n: u8, port: u16) -> SocketAddr {
        SocketAddr::new(ip(n), port)
    }

    fn reg(addrs: &[SocketAddr]) -> Vec<Target> {
        addrs
            .iter()
            .map(|a| Target {
                addr: *a,
                availability_zone: None,
                draining: false,
            })
            .collect()
    }

    fn complete(ns: &[u8]) -> Resolution {
        Resolution::Complete(ns.iter().map(|n| ip(*n)).collect())
    }

    /// Runs the planner over successive resolutions against a simulated group.
    fn run(m: &Mapping, group: &mut Vec<Target>, state: &mut Prior, r: &Resolution) -> Plan {
        let p = plan(m, r, group, state);
        group.retain(|t| !p.deregister.iter().any(|d| d.addr == t.addr));
        group.extend(reg(&p.register));
        if let Some(s) = &p.state {
            *state = Prior::Valid(s.clone());
        }
        p
    }

    #[test]
    fn rotation_deregisters_after_the_countdown() {
        let m = mapping("exclusive", 3, 100);
        let mut group = reg(&[sa(1, 80), sa(2, 80)]);
        let mut state = Prior::Fresh;
        let p = run(&m, &mut group, &mut state, &complete(&[2, 3]));
        assert_eq!(p.register, [sa(3, 80)]);
        assert!(p.deregister.is_empty());
        assert_eq!(p.state.as_ref().unwrap().pending[&sa(1, 80)], 1);
        run(&m, &mut group, &mut state, &complete(&[2, 3]));
        let p = run(&m, &mut group, &mut state, &complete(&[2, 3]));
        assert_eq!(
            p.deregister.iter().map(|t| t.addr).collect::<Vec<_>>(),
            [sa(1, 80)]
        );
        assert_eq!(p.registered_after, 2);
    }

    #[test]
    fn an_address_that_comes_back_resets_its_countdown() {
        let m = mapping("exclusive", 3, 100);
        let mut group = reg(&[sa(1, 80)]);
        let mut state = Prior::Fresh;
        run(&m, &mut group, &mut state, &complete(&[2]));
        run(&m, &mut group, &mut state, &complete(&[2]));
        let p = run(&m, &mut group, &mut state, &complete(&[1, 2]));
        assert!(p.state.unwrap().pending.is_empty());
        let p = run(&m, &mut group, &mut state, &complete(&[2]));
        assert_eq!(p.state.unwrap().pending[&sa(1, 80)], 1);
    }

    #[test]
    fn a_draining_target_back_in_dns_is_registered_again() {
        let m = mapping("exclusive", 3, 50);
        let mut targets = reg(&[sa(1, 80)]);
        targets[0].draining = true;
        let p = plan(&m, &complete(&[1]), &targets, &Prior::Fresh);
        assert_eq!(p.register, [sa(1, 80)]);
    }

    #[test]
    fn deregistration_uses_the_registered_port_and_zone() {
        let m = mapping("exclusive", 1, 100);
        let targets = vec![Target {
            addr: sa(9, 8080),
            availability_zone: Some("all".into()),
            draining: false,
        }];
        let p = plan(&m, &complete(&[1]), &targets, &Prior::Fresh);
        assert_eq!(p.deregister, targets);
    }

    #[test]
    fn corrupt_state_rebuilds_without_deregistering() {
        let m = mapping("tracked", 1, 100);
        let targets = reg(&[sa(1, 80), sa(2, 80)]);
        let prior = Prior::Corrupt(crate::state::StateError::Invalid("x".into()));
        let p = plan(&m, &complete(&[1, 3]), &targets, &prior);
        assert!(p.deregister.is_empty());
        let state = p.state.unwrap();
        assert!(state.pending.is_empty());
        assert_eq!(state.owned, BTreeSet::from([sa(1, 80), sa(3, 80)]));
    }

    #[test]
    fn the_last_stale_target_of_a_small_group_can_go() {
        // One stale target, one new: 2 targets after registering, 50% = 1.
        let m = mapping("exclusive", 1, 50);
        let p = plan(&m, &complete(&[2]), &reg(&[sa(1, 80)]), &Prior::Fresh);
        assert_eq!(p.deregister.len(), 1);
        assert!(p.held_back.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Complete(Vec<u8>),
        Partial(Vec<u8>),
        Failed,
    }

    impl Step {
        fn resolution(&self) -> Resolution {
            let set = |ns: &Vec<u8>| ns.iter().map(|n| ip(*n)).collect();
            match self {
                Step::Complete(ns) if ns.is_empty() => Resolution::Failed,
                Step::Complete(ns) => Resolution::Complete(set(ns)),
                Step::Partial(ns) => Resolution::Partial(set(ns)),
                Step::Failed => Resolution::Failed,
            }
        }
    }

    fn step() -> impl Strategy<Value = Step> {
        let addrs = prop::collection::vec(1u8..12, 0..8);
        prop_oneof![
            6 => addrs.clone().prop_map(Step::Complete),
            1 => addrs.prop_map(Step::Partial),
            1 => Just(Step::Failed),
        ]
    }

    fn any_mapping() -> impl Strategy<Value = Mapping> {
        (
            prop_oneof![Just("exclusive"), Just("tracked")],
            1u32..5,
            0u8..=100,
        )
            .prop_map(|(o, after, pct)| mapping(o, after, pct))
    }

    fn any_group() -> impl Strategy<Value = Vec<Target>> {
        prop::collection::btree_set(
            (1u8..12, prop_oneof![Just(80u16), Just(443), Just(8080)]),
            0..10,
        )
        .prop_map(|set| set.into_iter().map(|(n, p)| sa(n, p)).collect::<Vec<_>>())
        .prop_map(|addrs| reg(&addrs))
    }

    proptest! {
        #[test]
        fn every_resolved_address_is_registered_after_the_run(
            m in any_mapping(), group in any_group(), s in step()
        ) {
            let r = s.resolution();
            let p = plan(&m, &r, &group, &Prior::Fresh);
            if let Resolution::Complete(addrs) | Resolution::Partial(addrs) = &r {
                for ip in addrs {
                    let t = SocketAddr::new(*ip, m.port);
                    let there = group.iter().any(|g| g.addr == t && !g.draining);
                    prop_assert!(there || p.register.contains(&t));
                    prop_assert!(!p.deregister.iter().any(|d| d.addr == t));
                }
            }
        }

        #[test]
        fn the_intent_keeps_only_the_targets_being_deregistered(
            m in any_mapping(), group in any_group(), s in step()
        ) {
            let prior = Prior::Valid(SyncState {
                pending: group.iter().map(|t| (t.addr, 100)).collect(),
                owned: group.iter().map(|t| t.addr).collect(),
                ..SyncState::default()
            });
            let p = plan(&m, &s.resolution(), &group, &prior);
            if let (Some(intent), Some(state)) = (&p.intent, &p.state) {
                let gone: BTreeSet<SocketAddr> = p.deregister.iter().map(|t| t.addr).collect();
                let extra: BTreeSet<SocketAddr> = intent.pending.keys().filter(|t| !state.pending.contains_key(t)).copied().collect();
                prop_assert_eq!(&extra, &gone);
                prop_assert!(state.owned.is_subset(&intent.owned));
                prop_assert!(intent.owned.difference(&state.owned).all(|t| gone.contains(t)));
                for t in &p.register {
                    prop_assert!(intent.owned.contains(t), "registered {} not owned before the change", t);
                }
            }
        }

        #[test]
        fn a_failed_resolution_changes_nothing(m in any_mapping(), group in any_group()) {
            let prior = Prior::Valid(SyncState {
                pending: group.iter().map(|t| (t.addr, 7)).collect(),
                ..SyncState::default()
            });
            prop_assert_eq!(plan(&m, &Resolution::Failed, &group, &prior), Plan::default());
        }

        #[test]
        fn the_percent_guard_holds(m in any_mapping(), group in any_group(), s in step()) {
            let prior = Prior::Valid(SyncState {
                pending: group.iter().map(|t| (t.addr, 100)).collect(),
                owned: group.iter().map(|t| t.addr).collect(),
                ..SyncState::default()
            });
            let p = plan(&m, &s.resolution(), &group, &prior);
            let size = group.len() + p.register.len();
            prop_assert!(p.deregister.len() * 100 <= size * usize::from(m.max_deregister_percent));
        }

        #[test]
        fn doubt_never_deregisters_nor_advances(
            m in any_mapping(), group in any_group(), addrs in prop::collection::vec(1u8..12, 1..8)
        ) {
            let pending: BTreeMap<SocketAddr, u32> = group.iter().map(|t| (t.addr, 1)).collect();
            let prior = Prior::Valid(SyncState { pending: pending.clone(), ..SyncState::default() });
            let partial = Step::Partial(addrs.clone()).resolution();
            let corrupt = Prior::Corrupt(crate::state::StateError::Invalid("x".into()));
            for (r, prior) in [(&partial, &prior), (&complete(&addrs), &corrupt)] {
                let p = plan(&m, r, &group, prior);
                prop_assert!(p.deregister.is_empty());
                let state = p.state.unwrap();
                for (t, n) in &state.pending {
                    prop_assert!(*n <= pending.get(t).copied().unwrap_or(0));
                }
            }
        }

        #[test]
        fn tracked_ownership_never_touches_foreign_targets(
            group in any_group(), steps in prop::collection::vec(step(), 1..12), after in 1u32..4
        ) {
            let m = mapping("tracked", after, 100);
            let foreign: BTreeSet<SocketAddr> = group.iter().map(|t| t.addr).collect();
            let mut group = group;
            let mut state = Prior::Fresh;
            for s in &steps {
                let p = run(&m, &mut group, &mut state, &s.resolution());
                for d in &p.deregister {
                    prop_assert!(!foreign.contains(&d.addr), "deregistered foreign {}", d.addr);
                }
            }
        }

        #[test]
        fn exclusive_leaves_foreign_ports_alone(group in any_group(), s in step()) {
            let mut m = mapping("exclusive", 1, 100);
            m.foreign_ports = BTreeSet::from([443]);
            let prior = Prior::Valid(SyncState {
                pending: group.iter().map(|t| (t.addr, 5)).collect(),
                ..SyncState::default()
            });
            let p = plan(&m, &s.resolution(), &group, &prior);
            prop_assert!(p.deregister.iter().all(|d| d.addr.port() != 443));
        }

        /// Over any sequence of runs, a target is deregistered only after
        /// `deregister_after` successful resolutions in a row without it (a
        /// failed run neither counts nor breaks the streak; a run that sees
        /// it resets the streak).
        #[test]
        fn deregistered_only_after_enough_successful_runs_without_it(
            m in any_mapping(), group in any_group(), steps in prop::collection::vec(step(), 1..16)
        ) {
            let mut group = group;
            let mut state = Prior::Fresh;
            let mut streak: BTreeMap<SocketAddr, u32> = BTreeMap::new();
            for s in &steps {
                let r = s.resolution();
                let before = group.clone();
                let p = run(&m, &mut group, &mut state, &r);
                match &r {
                    Resolution::Failed => {}
                    Resolution::Complete(addrs) | Resolution::Partial(addrs) => {
                        let complete = matches!(r, Resolution::Complete(_));
                        for t in &before {
                            if addrs.contains(&t.addr.ip()) && t.addr.port() == m.port {
                                streak.remove(&t.addr);
                            } else if complete {
                                *streak.entry(t.addr).or_default() += 1;
                            }
                        }
                        for d in &p.deregister {
                            let n = streak.remove(&d.addr).unwrap_or(0);
                            prop_assert!(n >= m.deregister_after, "{} after {n} runs", d.addr);
                        }
                    }
                }
            }
        }
    }
}

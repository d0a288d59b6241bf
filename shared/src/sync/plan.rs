//! The reconcile planner: a pure function from what the sources said, what a
//! target group holds and what the last runs remembered, to what to change.
//! It plans one target group at a time, for all the mappings on it.
//!
//! Register aggressively, deregister cautiously:
//! - every address a source lists and the group lacks is registered at once;
//! - a target that any mapping of the group wants is never counted down;
//! - a managed target missing from its source counts one absence per
//!   schedule period in which the source answered completely (a retried or
//!   overlapping run in the same period counts nothing); it is deregistered
//!   after `deregister_after` absences in a row;
//! - counts last counted more than [`EXPIRY_PERIODS`] periods ago have
//!   expired: the streak was broken (a group untagged for a while, a source
//!   switched away and back, a day of doubt), and counting starts over;
//! - doubt (a failed or partial source, unusable state) on a port freezes
//!   every countdown on that port for the run: nothing there is deregistered;
//! - one group never loses more than `max_deregister_percent` (the smallest of
//!   its mappings') of its targets in one run, longest missing first.
//!
//! Ownership under `tracked`: a mapping owns what it registered and every
//! registered target its source lists (it would have registered it). So
//! after a lost or unusable state object it adopts the targets its source
//! lists right now, and a target added by hand at an address the source
//! never listed is never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::groups::Target;
use super::mapping::{Mapping, Ownership};
use super::source::Resolution;
use super::state::{Prior, SyncState};

/// Periods after which a countdown that was not counted again expires.
pub const EXPIRY_PERIODS: u64 = 5;

/// How a run counts absences: whether it may (the first sync at deploy
/// time only registers), and when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counting {
    pub absences: bool,
    /// The run's start, in Unix seconds.
    pub now: u64,
    /// The schedule period in seconds (at least 1).
    pub period: u64,
}

impl Counting {
    /// The schedule period a time falls in.
    pub fn slot(&self, t: u64) -> u64 {
        t / self.period.max(1)
    }

    /// Whether counts last counted at `counted_at` are still a streak.
    fn current(&self, counted_at: Option<u64>) -> bool {
        counted_at.is_some_and(|t| self.slot(t) + EXPIRY_PERIODS >= self.slot(self.now))
    }

    /// Whether a run of this period already counted.
    fn counted_this_period(&self, counted_at: Option<u64>) -> bool {
        counted_at.is_some_and(|t| self.slot(t) == self.slot(self.now))
    }
}

/// What the planner knows about one mapping of the group.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub mapping: &'a Mapping,
    pub resolution: &'a Resolution,
    pub prior: &'a Prior,
}

/// What to do for one mapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MappingPlan {
    /// Registered on behalf of this mapping (with its availability zone).
    pub register: Vec<SocketAddr>,
    /// Deregistered on this mapping's countdown.
    pub deregister: Vec<SocketAddr>,
    /// Due on this mapping's countdown, but over the group's percent guard.
    pub held_back: Vec<SocketAddr>,
    /// The state once the plan is applied; `None` when the mapping is not
    /// planned (failed source, or state it may not touch).
    pub state: Option<SyncState>,
    /// The state to write before changing the group: `state`, with the
    /// targets about to be deregistered still owned and counting, so that a
    /// deregistration that fails (or never happens) is retried next run.
    pub intent: Option<SyncState>,
}

/// What to do for the whole group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupPlan {
    /// One per input, in order.
    pub mappings: Vec<MappingPlan>,
    /// Every deregistration, as registered (port and zone), each once.
    pub deregister: Vec<Target>,
    /// Registered targets once the plan is applied.
    pub registered_after: usize,
}

/// Can this mapping's absences count this run? Not in doubt (a partial
/// or failed source, unusable state), and not counted already this period.
fn certain(input: &Input<'_>, counting: Counting) -> bool {
    let already = match input.prior {
        Prior::Valid(s) => counting.counted_this_period(s.counted_at),
        _ => false,
    };
    counting.absences
        && !already
        && matches!(input.resolution, Resolution::Complete(_))
        && matches!(input.prior, Prior::Fresh | Prior::Valid(_))
}

fn desired(input: &Input<'_>) -> BTreeSet<SocketAddr> {
    input
        .resolution
        .addrs()
        .into_iter()
        .flatten()
        .map(|ip| SocketAddr::new(*ip, input.mapping.port))
        .collect()
}

/// `counting.absences` off (the first sync at deploy time): register only;
/// no countdown advances and nothing is deregistered.
pub fn plan_group(targets: &[Target], inputs: &[Input<'_>], counting: Counting) -> GroupPlan {
    let registered: BTreeSet<SocketAddr> = targets
        .iter()
        .filter(|t| !t.draining)
        .map(|t| t.addr)
        .collect();
    let wanted: Vec<BTreeSet<SocketAddr>> = inputs.iter().map(desired).collect();
    let wanted_by_any: BTreeSet<SocketAddr> = wanted.iter().flatten().copied().collect();
    // A port on which some mapping is in doubt: no absence there counts.
    let doubtful_ports: BTreeSet<u16> = inputs
        .iter()
        .filter(|i| !certain(i, counting))
        .map(|i| i.mapping.port)
        .collect();

    let mut assigned = registered.clone();
    let mut plans: Vec<MappingPlan> = Vec::with_capacity(inputs.len());
    // (absences, target, mapping index) of every target due for deregistration.
    let mut due: Vec<(u32, SocketAddr, usize)> = Vec::new();
    for (index, (input, desired)) in inputs.iter().zip(&wanted).enumerate() {
        let m = input.mapping;
        let previous = match input.prior {
            Prior::Valid(state) => Some(state),
            Prior::Fresh | Prior::Corrupt(_) => None,
            Prior::Refused(_) => {
                plans.push(MappingPlan::default());
                continue;
            }
        };
        let Some(addrs) = input.resolution.addrs() else {
            plans.push(MappingPlan::default());
            continue;
        };
        // Each new target is registered once, on behalf of the first mapping.
        let register: Vec<SocketAddr> = desired
            .iter()
            .filter(|t| assigned.insert(**t))
            .copied()
            .collect();

        // What this mapping registered and is still there, and what its
        // source lists (adopted: see the module documentation).
        let mut owned: BTreeSet<SocketAddr> = previous
            .map(|s| s.owned.intersection(&registered).copied().collect())
            .unwrap_or_default();
        owned.extend(desired.iter().copied());

        let manages = |t: &SocketAddr| match m.ownership {
            Ownership::Exclusive => t.port() == m.port || !m.foreign_ports.contains(&t.port()),
            Ownership::Tracked => owned.contains(t),
        };
        let counts = certain(input, counting);
        // Counts from a streak that was broken start over.
        let streak = previous.filter(|s| counting.current(s.counted_at));
        let pending: BTreeMap<SocketAddr, u32> = registered
            .difference(&wanted_by_any)
            .filter(|t| manages(t))
            .filter_map(|t| {
                let before = streak.and_then(|s| s.pending.get(t)).copied().unwrap_or(0);
                let step = u32::from(counts && !doubtful_ports.contains(&t.port()));
                let count = before.saturating_add(step);
                (count > 0).then_some((*t, count))
            })
            .collect();
        if counts {
            due.extend(
                pending
                    .iter()
                    .filter(|(t, n)| {
                        **n >= m.deregister_after && !doubtful_ports.contains(&t.port())
                    })
                    .map(|(t, n)| (*n, *t, index)),
            );
        }
        let counted_at = if pending.is_empty() {
            None
        } else if counts {
            Some(counting.now)
        } else {
            streak.and_then(|s| s.counted_at)
        };
        plans.push(MappingPlan {
            register,
            intent: Some(SyncState {
                // What the source said this run.
                seen: addrs.clone(),
                pending,
                owned,
                counted_at,
                in_sync: false,
                ..SyncState::default()
            }),
            ..MappingPlan::default()
        });
    }

    // The group-wide guard, over the group as it will be after registering.
    let size_after = assigned.len();
    let percent = inputs
        .iter()
        .map(|i| usize::from(i.mapping.max_deregister_percent))
        .min()
        .unwrap_or(0);
    let mut budget = size_after * percent / 100;
    // Longest missing first; ties in address order.
    due.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut gone: BTreeSet<SocketAddr> = BTreeSet::new();
    for (_, addr, index) in due {
        if gone.contains(&addr) {
            plans[index].deregister.push(addr);
        } else if budget > 0 {
            budget -= 1;
            gone.insert(addr);
            plans[index].deregister.push(addr);
        } else {
            plans[index].held_back.push(addr);
        }
    }
    // A target held back by one mapping but removed on another's countdown is gone.
    for (p, input) in plans.iter_mut().zip(inputs) {
        p.held_back.retain(|t| !gone.contains(t));
        if let Some(intent) = &mut p.intent {
            let mut state = intent.clone();
            for t in &gone {
                state.pending.remove(t);
                state.owned.remove(t);
            }
            if state.pending.is_empty() {
                state.counted_at = None;
            }
            // Left equal to a source that answered completely: quiet until
            // the source changes.
            state.in_sync = matches!(input.resolution, Resolution::Complete(_))
                && state.pending.is_empty()
                && p.held_back.is_empty();
            // With nothing to change, the intent is the final state.
            if p.register.is_empty() && p.deregister.is_empty() {
                *intent = state.clone();
            }
            p.state = Some(state);
        }
    }
    let deregister: Vec<Target> = targets
        .iter()
        .filter(|t| !t.draining && gone.contains(&t.addr))
        .cloned()
        .collect();
    GroupPlan {
        mappings: plans,
        registered_after: size_after - deregister.len(),
        deregister,
    }
}

/// When the group cannot be read after a source answered: the state that
/// keeps what the source proved (a listed address is not missing, so its
/// countdown restarts) and changes nothing else.
pub fn reset_only(prior: &SyncState, seen: &BTreeSet<IpAddr>, port: u16) -> SyncState {
    let mut state = prior.clone();
    state
        .pending
        .retain(|t, _| !(t.port() == port && seen.contains(&t.ip())));
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::RecordKind;
    use crate::sync::mapping::{Settings, Source};
    use crate::sync::state::StateError;
    use proptest::prelude::*;

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/50dc6c495c0c9188";

    fn mapping(name: &str, port: u16, ownership: Ownership, after: u32, percent: u8) -> Mapping {
        let settings = Settings {
            record_types: vec![RecordKind::A],
            deregister_after: after,
            ownership,
            max_deregister_percent: percent,
            ..Settings::default()
        };
        Mapping::new(
            Source::Dns(name.into()),
            ARN.parse().unwrap(),
            port,
            settings,
        )
    }

    const PERIOD: u64 = 60;

    /// The `n`th run of a schedule of one minute.
    fn run(n: u64) -> Counting {
        Counting {
            absences: true,
            now: 1_764_000_000 + n * PERIOD,
            period: PERIOD,
        }
    }

    /// Counted by the run before `run(0)`.
    const LAST: Option<u64> = Some(1_764_000_000 - PERIOD);

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

    fn one(
        m: &Mapping,
        r: &Resolution,
        targets: &[Target],
        prior: &Prior,
    ) -> (MappingPlan, GroupPlan) {
        let g = plan_group(
            targets,
            &[Input {
                mapping: m,
                resolution: r,
                prior,
            }],
            run(0),
        );
        (g.mappings[0].clone(), g)
    }

    /// Applies a group plan to a simulated group and states.
    fn apply(group: &mut Vec<Target>, states: &mut [Prior], g: &GroupPlan) {
        group.retain(|t| !g.deregister.iter().any(|d| d.addr == t.addr));
        for p in &g.mappings {
            group.extend(reg(&p.register));
        }
        for (state, p) in states.iter_mut().zip(&g.mappings) {
            if let Some(s) = &p.state {
                *state = Prior::Valid(s.clone());
            }
        }
    }

    #[test]
    fn rotation_deregisters_after_the_countdown() {
        let m = mapping("a", 80, Ownership::Exclusive, 3, 100);
        let mut group = reg(&[sa(1, 80), sa(2, 80)]);
        let mut state = [Prior::Fresh];
        for n in 1..=3 {
            let r = complete(&[2, 3]);
            let g = plan_group(
                &group,
                &[Input {
                    mapping: &m,
                    resolution: &r,
                    prior: &state[0],
                }],
                run(n),
            );
            if n == 1 {
                assert_eq!(g.mappings[0].register, [sa(3, 80)]);
            }
            if n < 3 {
                assert!(g.deregister.is_empty());
                assert_eq!(
                    g.mappings[0].intent.as_ref().unwrap().pending[&sa(1, 80)],
                    n as u32
                );
            } else {
                assert_eq!(g.mappings[0].deregister, [sa(1, 80)]);
                assert_eq!(g.registered_after, 2);
            }
            apply(&mut group, &mut state, &g);
        }
    }

    #[test]
    fn a_draining_target_back_in_the_source_is_registered_again() {
        let m = mapping("a", 80, Ownership::Exclusive, 3, 50);
        let mut targets = reg(&[sa(1, 80)]);
        targets[0].draining = true;
        let (p, _) = one(&m, &complete(&[1]), &targets, &Prior::Fresh);
        assert_eq!(p.register, [sa(1, 80)]);
    }

    #[test]
    fn deregistration_uses_the_registered_port_and_zone() {
        let m = mapping("a", 80, Ownership::Exclusive, 1, 100);
        let targets = vec![Target {
            addr: sa(9, 8080),
            availability_zone: Some("all".into()),
            draining: false,
        }];
        let (_, g) = one(&m, &complete(&[1]), &targets, &Prior::Fresh);
        assert_eq!(g.deregister, targets);
    }

    #[test]
    fn lost_state_adopts_what_the_source_lists() {
        let m = mapping("a", 80, Ownership::Tracked, 1, 100);
        let targets = reg(&[sa(1, 80), sa(2, 80)]);
        for prior in [
            Prior::Fresh,
            Prior::Corrupt(StateError::Invalid("x".into())),
        ] {
            let (p, g) = one(&m, &complete(&[1, 3]), &targets, &prior);
            assert!(g.deregister.is_empty());
            let state = p.state.unwrap();
            assert_eq!(state.owned, BTreeSet::from([sa(1, 80), sa(3, 80)]));
        }
    }

    #[test]
    fn refused_state_plans_nothing_for_its_mapping_and_freezes_its_port() {
        let a = mapping("a", 80, Ownership::Exclusive, 1, 100);
        let b = mapping("b", 80, Ownership::Tracked, 1, 100);
        let targets = reg(&[sa(1, 80), sa(2, 80)]);
        let owned = Prior::Valid(SyncState {
            owned: BTreeSet::from([sa(2, 80)]),
            pending: BTreeMap::from([(sa(2, 80), 5)]),
            counted_at: LAST,
            ..SyncState::default()
        });
        let refused = Prior::Refused(StateError::Newer { found: 2 });
        let (r1, r2) = (complete(&[9]), complete(&[1]));
        let g = plan_group(
            &targets,
            &[
                Input {
                    mapping: &a,
                    resolution: &r1,
                    prior: &refused,
                },
                Input {
                    mapping: &b,
                    resolution: &r2,
                    prior: &owned,
                },
            ],
            run(0),
        );
        assert_eq!(g.mappings[0], MappingPlan::default());
        assert!(g.deregister.is_empty(), "{g:?}");
        assert_eq!(g.mappings[1].state.as_ref().unwrap().pending[&sa(2, 80)], 5);
    }

    #[test]
    fn the_last_stale_target_of_a_small_group_can_go() {
        // One stale target, one new: 2 targets after registering, 50% = 1.
        let m = mapping("a", 80, Ownership::Exclusive, 1, 50);
        let (_, g) = one(&m, &complete(&[2]), &reg(&[sa(1, 80)]), &Prior::Fresh);
        assert_eq!(g.deregister.len(), 1);
    }

    #[test]
    fn two_mappings_share_one_guard() {
        // Four targets, two stale on each mapping's port, 50%: two may go in
        // all, although each mapping alone would allow two.
        let mut a = mapping("a", 80, Ownership::Exclusive, 1, 50);
        let mut b = mapping("b", 443, Ownership::Exclusive, 1, 50);
        a.foreign_ports = BTreeSet::from([443]);
        b.foreign_ports = BTreeSet::from([80]);
        let targets = reg(&[sa(1, 80), sa(2, 80), sa(1, 443), sa(2, 443)]);
        let (ra, rb) = (complete(&[3]), complete(&[3]));
        let g = plan_group(
            &targets,
            &[
                Input {
                    mapping: &a,
                    resolution: &ra,
                    prior: &Prior::Fresh,
                },
                Input {
                    mapping: &b,
                    resolution: &rb,
                    prior: &Prior::Fresh,
                },
            ],
            run(0),
        );
        // 6 targets after registering two: 50% is 3.
        assert_eq!(g.deregister.len(), 3);
        let held: usize = g.mappings.iter().map(|p| p.held_back.len()).sum();
        assert_eq!(held, 1);
    }

    #[test]
    fn a_target_wanted_by_another_mapping_never_counts_down() {
        let a = mapping("a", 80, Ownership::Tracked, 1, 100);
        let b = mapping("b", 80, Ownership::Tracked, 1, 100);
        let targets = reg(&[sa(1, 80), sa(2, 80)]);
        let prior = Prior::Valid(SyncState {
            owned: BTreeSet::from([sa(1, 80), sa(2, 80)]),
            ..SyncState::default()
        });
        let (ra, rb) = (complete(&[1]), complete(&[2]));
        let g = plan_group(
            &targets,
            &[
                Input {
                    mapping: &a,
                    resolution: &ra,
                    prior: &prior,
                },
                Input {
                    mapping: &b,
                    resolution: &rb,
                    prior: &prior,
                },
            ],
            run(0),
        );
        assert!(g.deregister.is_empty());
        assert!(
            g.mappings
                .iter()
                .all(|p| p.state.as_ref().unwrap().pending.is_empty())
        );
    }

    #[test]
    fn without_counting_absences_nothing_is_deregistered() {
        let m = mapping("a", 80, Ownership::Exclusive, 1, 100);
        let prior = Prior::Valid(SyncState {
            pending: BTreeMap::from([(sa(1, 80), 5)]),
            counted_at: LAST,
            ..SyncState::default()
        });
        let r = complete(&[2]);
        let g = plan_group(
            &reg(&[sa(1, 80)]),
            &[Input {
                mapping: &m,
                resolution: &r,
                prior: &prior,
            }],
            Counting {
                absences: false,
                ..run(0)
            },
        );
        assert_eq!(g.mappings[0].register, [sa(2, 80)]);
        assert!(g.deregister.is_empty());
        assert_eq!(g.mappings[0].state.as_ref().unwrap().pending[&sa(1, 80)], 5);
    }

    #[test]
    fn reset_only_restarts_the_countdown_of_listed_addresses() {
        let state = SyncState {
            pending: BTreeMap::from([(sa(1, 80), 2), (sa(2, 80), 2), (sa(1, 443), 2)]),
            counted_at: LAST,
            ..SyncState::default()
        };
        let reset = reset_only(&state, &BTreeSet::from([ip(1)]), 80);
        let _ = LAST;
        assert_eq!(
            reset.pending,
            BTreeMap::from([(sa(2, 80), 2), (sa(1, 443), 2)])
        );
    }

    #[test]
    fn counts_read_from_a_hand_edited_object_saturate() {
        let m = mapping("a", 80, Ownership::Exclusive, 3, 0);
        let prior = Prior::Valid(SyncState {
            pending: BTreeMap::from([(sa(1, 80), u32::MAX)]),
            counted_at: LAST,
            ..SyncState::default()
        });
        let (p, _) = one(&m, &complete(&[2]), &reg(&[sa(1, 80), sa(2, 80)]), &prior);
        assert_eq!(p.state.unwrap().pending[&sa(1, 80)], u32::MAX);
        assert_eq!(p.held_back, [sa(1, 80)]);
    }

    /// A countdown last counted longer ago than a few periods starts over:
    /// one complete observation after a week untagged is not the third.
    #[test]
    fn a_countdown_not_counted_for_a_few_periods_starts_over() {
        let m = mapping("a", 80, Ownership::Exclusive, 3, 100);
        let group = reg(&[sa(1, 80), sa(2, 80)]);
        for (counted_at, expect) in [
            (run(0).now - (EXPIRY_PERIODS + 1) * PERIOD, 1),
            (run(0).now - EXPIRY_PERIODS * PERIOD, 3),
        ] {
            let prior = Prior::Valid(SyncState {
                pending: BTreeMap::from([(sa(1, 80), 2)]),
                counted_at: Some(counted_at),
                ..SyncState::default()
            });
            let (p, g) = one(&m, &complete(&[2]), &group, &prior);
            assert_eq!(p.intent.unwrap().pending[&sa(1, 80)], expect);
            assert_eq!(g.deregister.is_empty(), expect < 3);
        }
    }

    /// Lambda retries a failed asynchronous invocation, and runs overlap: a
    /// second run in the same period counts no absence again.
    #[test]
    fn a_second_run_in_one_period_counts_nothing() {
        let m = mapping("a", 80, Ownership::Exclusive, 2, 100);
        let mut group = reg(&[sa(1, 80), sa(2, 80)]);
        let mut state = [Prior::Fresh];
        for _ in 0..3 {
            let r = complete(&[2]);
            let g = plan_group(
                &group,
                &[Input {
                    mapping: &m,
                    resolution: &r,
                    prior: &state[0],
                }],
                run(0),
            );
            assert!(g.deregister.is_empty());
            apply(&mut group, &mut state, &g);
        }
        let Prior::Valid(s) = &state[0] else {
            panic!("{state:?}")
        };
        assert_eq!(s.pending[&sa(1, 80)], 1);
        assert_eq!(s.counted_at, Some(run(0).now));
        let r = complete(&[2]);
        let g = plan_group(
            &group,
            &[Input {
                mapping: &m,
                resolution: &r,
                prior: &state[0],
            }],
            run(1),
        );
        assert_eq!(g.deregister.len(), 1, "the next period counts");
    }

    #[test]
    fn only_a_complete_source_with_nothing_pending_leaves_the_group_in_sync() {
        let m = mapping("a", 80, Ownership::Exclusive, 3, 100);
        let (p, _) = one(&m, &complete(&[1]), &reg(&[]), &Prior::Fresh);
        let (intent, state) = (p.intent.unwrap(), p.state.unwrap());
        assert!(state.in_sync);
        assert!(!intent.in_sync, "written before the registration is made");
        let (p, _) = one(&m, &complete(&[1]), &reg(&[sa(1, 80)]), &Prior::Fresh);
        assert_eq!(p.intent, p.state, "nothing to change: one write at most");
        let partial = Resolution::Partial(BTreeSet::from([ip(1)]));
        let (p, _) = one(&m, &partial, &reg(&[sa(1, 80)]), &Prior::Fresh);
        assert!(!p.state.unwrap().in_sync);
        let (p, _) = one(
            &m,
            &complete(&[1]),
            &reg(&[sa(1, 80), sa(2, 80)]),
            &Prior::Fresh,
        );
        assert!(!p.state.unwrap().in_sync, "a target counts down");
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
                Step::Partial(ns) if ns.is_empty() => Resolution::Failed,
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

    fn any_mapping(name: &'static str, port: u16) -> impl Strategy<Value = Mapping> {
        (
            prop_oneof![Just(Ownership::Exclusive), Just(Ownership::Tracked)],
            1u32..5,
            0u8..=100,
        )
            .prop_map(move |(o, after, pct)| mapping(name, port, o, after, pct))
    }

    /// One or two mappings on the group; two on one port are tracked (as
    /// the configuration requires).
    fn any_mappings() -> impl Strategy<Value = Vec<Mapping>> {
        prop_oneof![
            any_mapping("a", 80).prop_map(|m| vec![m]),
            (any_mapping("a", 80), any_mapping("b", 80)).prop_map(|(mut a, mut b)| {
                a.ownership = Ownership::Tracked;
                b.ownership = Ownership::Tracked;
                vec![a, b]
            }),
            (any_mapping("a", 80), any_mapping("b", 443)).prop_map(|(mut a, mut b)| {
                a.foreign_ports = BTreeSet::from([443]);
                b.foreign_ports = BTreeSet::from([80]);
                vec![a, b]
            }),
        ]
    }

    fn any_group() -> impl Strategy<Value = Vec<Target>> {
        prop::collection::btree_set(
            (1u8..12, prop_oneof![Just(80u16), Just(443), Just(8080)]),
            0..10,
        )
        .prop_map(|set| set.into_iter().map(|(n, p)| sa(n, p)).collect::<Vec<_>>())
        .prop_map(|addrs| reg(&addrs))
    }

    fn inputs<'a>(ms: &'a [Mapping], rs: &'a [Resolution], ps: &'a [Prior]) -> Vec<Input<'a>> {
        ms.iter()
            .zip(rs)
            .zip(ps)
            .map(|((mapping, resolution), prior)| Input {
                mapping,
                resolution,
                prior,
            })
            .collect()
    }

    fn long_missing(group: &[Target]) -> Prior {
        Prior::Valid(SyncState {
            pending: group.iter().map(|t| (t.addr, 100)).collect(),
            counted_at: LAST,
            owned: group.iter().map(|t| t.addr).collect(),
            ..SyncState::default()
        })
    }

    proptest! {
        #[test]
        fn every_listed_address_is_registered_and_kept(
            ms in any_mappings(), group in any_group(), s in prop::collection::vec(step(), 2)
        ) {
            let rs: Vec<Resolution> = s.iter().map(Step::resolution).collect();
            let ps = vec![long_missing(&group); ms.len()];
            let g = plan_group(&group, &inputs(&ms, &rs, &ps), run(0));
            let registering: BTreeSet<SocketAddr> =
                g.mappings.iter().flat_map(|p| p.register.iter().copied()).collect();
            for (m, r) in ms.iter().zip(&rs) {
                for ip in r.addrs().into_iter().flatten() {
                    let t = SocketAddr::new(*ip, m.port);
                    let there = group.iter().any(|g| g.addr == t && !g.draining);
                    prop_assert!(there || registering.contains(&t));
                    prop_assert!(!g.deregister.iter().any(|d| d.addr == t));
                }
            }
        }

        #[test]
        fn the_intent_keeps_only_the_targets_being_deregistered(
            ms in any_mappings(), group in any_group(), s in prop::collection::vec(step(), 2)
        ) {
            let rs: Vec<Resolution> = s.iter().map(Step::resolution).collect();
            let ps = vec![long_missing(&group); ms.len()];
            let g = plan_group(&group, &inputs(&ms, &rs, &ps), run(0));
            let gone: BTreeSet<SocketAddr> = g.deregister.iter().map(|t| t.addr).collect();
            for p in &g.mappings {
                if let (Some(intent), Some(state)) = (&p.intent, &p.state) {
                    let extra: BTreeSet<SocketAddr> = intent.pending.keys().filter(|t| !state.pending.contains_key(t)).copied().collect();
                    prop_assert!(extra.is_subset(&gone));
                    prop_assert!(state.owned.is_subset(&intent.owned));
                    for t in &p.register {
                        prop_assert!(intent.owned.contains(t), "registered {} not owned before the change", t);
                    }
                }
            }
        }

        #[test]
        fn the_group_guard_holds(
            ms in any_mappings(), group in any_group(), s in prop::collection::vec(step(), 2)
        ) {
            let rs: Vec<Resolution> = s.iter().map(Step::resolution).collect();
            let ps = vec![long_missing(&group); ms.len()];
            let g = plan_group(&group, &inputs(&ms, &rs, &ps), run(0));
            let registering: usize = g.mappings.iter().map(|p| p.register.len()).sum();
            let size = group.len() + registering;
            let pct = ms.iter().map(|m| usize::from(m.max_deregister_percent)).min().unwrap_or(0);
            prop_assert!(g.deregister.len() * 100 <= size * pct);
        }

        #[test]
        fn doubt_on_a_port_never_deregisters_nor_advances_there(
            ms in any_mappings(), group in any_group(), addrs in prop::collection::vec(1u8..12, 1..8),
            failed in any::<bool>()
        ) {
            let pending: BTreeMap<SocketAddr, u32> = group.iter().map(|t| (t.addr, 1)).collect();
            let prior = Prior::Valid(SyncState { pending: pending.clone(), ..SyncState::default() });
            let doubt = if failed { Resolution::Failed } else { Step::Partial(addrs.clone()).resolution() };
            let mut rs = vec![complete(&addrs); ms.len()];
            rs[0] = doubt;
            let ps = vec![prior; ms.len()];
            let g = plan_group(&group, &inputs(&ms, &rs, &ps), run(0));
            let port = ms[0].port;
            prop_assert!(g.deregister.iter().all(|d| d.addr.port() != port));
            for p in &g.mappings {
                for (t, n) in p.state.iter().flat_map(|s| &s.pending) {
                    if t.port() == port {
                        prop_assert!(*n <= pending.get(t).copied().unwrap_or(0));
                    }
                }
            }
        }

        #[test]
        fn tracked_ownership_never_touches_foreign_targets(
            group in any_group(), steps in prop::collection::vec(step(), 1..12), after in 1u32..4
        ) {
            let m = mapping("a", 80, Ownership::Tracked, after, 100);
            let foreign: BTreeSet<SocketAddr> = group.iter().map(|t| t.addr).collect();
            let mut group = group;
            let mut states = [Prior::Fresh];
            let mut listed: BTreeSet<SocketAddr> = BTreeSet::new();
            for (n, s) in steps.iter().enumerate() {
                let r = s.resolution();
                listed.extend(r.addrs().into_iter().flatten().map(|ip| SocketAddr::new(*ip, 80)));
                let g = plan_group(&group, &[Input { mapping: &m, resolution: &r, prior: &states[0] }], run(n as u64));
                for d in &g.deregister {
                    prop_assert!(!foreign.contains(&d.addr) || listed.contains(&d.addr),
                        "deregistered {} that it never registered nor saw listed", d.addr);
                }
                apply(&mut group, &mut states, &g);
            }
        }

        /// Over any sequence of runs, a target is deregistered only after
        /// `deregister_after` complete answers in a row without it (a failed
        /// or partial run neither counts nor breaks the streak; a run that
        /// lists it resets the streak).
        #[test]
        fn deregistered_only_after_enough_complete_runs_without_it(
            m in any_mapping("a", 80), group in any_group(), steps in prop::collection::vec(step(), 1..16)
        ) {
            let mut group = group;
            let mut states = [Prior::Fresh];
            let mut streak: BTreeMap<SocketAddr, u32> = BTreeMap::new();
            for (n, s) in steps.iter().enumerate() {
                let r = s.resolution();
                let before = group.clone();
                let g = plan_group(&group, &[Input { mapping: &m, resolution: &r, prior: &states[0] }], run(n as u64));
                if let Some(addrs) = r.addrs() {
                    let complete = matches!(r, Resolution::Complete(_));
                    for t in &before {
                        if addrs.contains(&t.addr.ip()) && t.addr.port() == m.port {
                            streak.remove(&t.addr);
                        } else if complete {
                            *streak.entry(t.addr).or_default() += 1;
                        }
                    }
                }
                for d in &g.deregister {
                    let n = streak.remove(&d.addr).unwrap_or(0);
                    prop_assert!(n >= m.deregister_after, "{} after {n} runs", d.addr);
                }
                apply(&mut group, &mut states, &g);
            }
        }
    }
}

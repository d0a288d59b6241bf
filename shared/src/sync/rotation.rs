//! Which target groups a run describes (`DescribeTargetHealth`), within its
//! share of ELB's Describe bucket.
//!
//! ELB allows 40 Describe calls per account and region, refilled at 10 per
//! second, shared with everyone else in the account (its user guide,
//! Request throttling for the ELB API). A run of 3,000 groups cannot read
//! every group each minute, so:
//! - while the budget allows, every group is described every run;
//! - past it, a *quiet* group (its source unchanged since the run that left
//!   the group equal to it) is described at least every `every` runs,
//!   rotating by ARN: groups are ranked by a stable hash of their ARN, and a
//!   run describes the rank class of its schedule period, so each run gets
//!   an even share;
//! - a group whose source changed, or that was never left in sync, is
//!   described at once; one with no state yet after those. What is left of
//!   the budget is not spent on quiet groups out of turn: it stays with the
//!   account's other users.
//!
//! What does not fit is deferred to the next run (and counted), never
//! failed. A change made by hand to a quiet group that is skipped is found
//! when its turn comes, within `every` runs.

use std::collections::BTreeSet;

use super::mapping::TargetGroupArn;

/// Why a group would be described this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Its source changed, or the last run did not leave it in sync.
    Changed,
    /// Quiet: described only on its turn, or when the budget allows all.
    Quiet,
    /// No usable state yet (new, lost or unreadable): described once the
    /// changed ones and the quiet ones whose turn it is are.
    Unknown,
}

/// What the run does with each group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    pub describe: BTreeSet<TargetGroupArn>,
    /// Due this run but over the budget: the next run takes them first.
    pub deferred: BTreeSet<TargetGroupArn>,
    /// Quiet and not their turn.
    pub skipped: BTreeSet<TargetGroupArn>,
}

/// FNV-1a: a hash that is the same in every build and process, so that a
/// cold container rotates exactly as the warm one did.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Chooses the groups to describe: at most `budget`, rotating quiet ones
/// over `every` runs by the run's schedule `slot`.
pub fn choose(groups: &[(TargetGroupArn, Need)], budget: usize, every: u64, slot: u64) -> Choice {
    let mut choice = Choice::default();
    if groups.len() <= budget {
        choice.describe = groups.iter().map(|(arn, _)| arn.clone()).collect();
        return choice;
    }
    let every = every.max(1);
    // Ranked by hash: a stable, even spread over the `every` turns.
    let mut ranked: Vec<&(TargetGroupArn, Need)> = groups.iter().collect();
    ranked.sort_by_key(|(arn, _)| (stable_hash(arn.as_str()), arn.clone()));
    let turn = slot % every;
    let mut order: Vec<(u8, usize, &TargetGroupArn)> = ranked
        .iter()
        .enumerate()
        .map(|(rank, (arn, need))| {
            let due = rank as u64 % every == turn;
            let class = match (need, due) {
                (Need::Changed, _) => 0,
                (Need::Quiet, true) => 1,
                (Need::Unknown, _) => 2,
                (Need::Quiet, false) => 3,
            };
            (class, rank, arn)
        })
        .collect();
    order.sort();
    // Past the budget, a quiet group is read on its turn only: what is left
    // of the budget stays with the account's other users.
    for (i, (class, _, arn)) in order.into_iter().enumerate() {
        let target = if class == 3 {
            &mut choice.skipped
        } else if i < budget {
            &mut choice.describe
        } else {
            &mut choice.deferred
        };
        target.insert(arn.clone());
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arn(i: usize) -> TargetGroupArn {
        format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/g{i}/0123456789abcdef"
        )
        .parse()
        .expect("arn")
    }

    fn fleet(n: usize, need: Need) -> Vec<(TargetGroupArn, Need)> {
        (0..n).map(|i| (arn(i), need)).collect()
    }

    #[test]
    fn under_the_budget_every_group_is_described() {
        let c = choose(&fleet(30, Need::Quiet), 30, 15, 7);
        assert_eq!(c.describe.len(), 30);
        assert!(c.deferred.is_empty() && c.skipped.is_empty());
    }

    #[test]
    fn over_the_budget_changed_groups_come_first_and_nothing_due_is_lost() {
        let mut groups = fleet(3000, Need::Quiet);
        for g in groups.iter_mut().take(40) {
            g.1 = Need::Changed;
        }
        let c = choose(&groups, 260, 15, 0);
        assert!(groups[..40].iter().all(|(a, _)| c.describe.contains(a)));
        // 3000 / 15 = 200 quiet groups are due; 220 places remain for them,
        // and the 20 left are not spent on quiet groups out of turn.
        // (A changed group may also be one whose turn it is.)
        assert!(
            (239..=240).contains(&c.describe.len()),
            "{}",
            c.describe.len()
        );
        assert!(c.deferred.is_empty(), "{}", c.deferred.len());
        assert_eq!(c.skipped.len(), 3000 - c.describe.len());
    }

    #[test]
    fn a_budget_too_small_defers_what_is_due() {
        let c = choose(&fleet(3000, Need::Unknown), 250, 15, 0);
        assert_eq!((c.describe.len(), c.deferred.len()), (250, 2750));
    }

    proptest! {
        /// Over `every` consecutive runs of a stable fleet of quiet groups,
        /// each group is described exactly once, each run at most its even
        /// share.
        #[test]
        fn a_quiet_fleet_is_described_once_per_rotation_evenly(
            n in 20usize..400, every in 2u64..20, start in 0u64..1000
        ) {
            let groups = fleet(n, Need::Quiet);
            let budget = n.div_ceil(every as usize);
            prop_assume!(budget < n);
            let mut times = vec![0usize; n];
            for slot in start..start + every {
                let c = choose(&groups, budget, every, slot);
                prop_assert!(c.deferred.is_empty());
                prop_assert!(c.describe.len() <= budget);
                for (i, (a, _)) in groups.iter().enumerate() {
                    times[i] += usize::from(c.describe.contains(a));
                }
            }
            prop_assert!(times.iter().all(|t| *t == 1), "{times:?}");
        }
    }
}

//! A minute's decision, as pure functions: each endpoint's health from its
//! probes, and this function's vote for the region.
//!
//! - An endpoint is unhealthy in a minute with fewer successful probes than
//!   [`Rule::required`]: the fewest whose share of the minute's rounds is at
//!   least `SUCCESS_THRESHOLD`. With 6 rounds and 0.5 that is 3, so one
//!   failed probe, or a burst of up to 3, never makes an endpoint unhealthy.
//!   An endpoint without a result (a round that did not run) has fewer
//!   successes: no result counts as unhealthy.
//! - The function votes its availability zone's view of the region: `+1`
//!   (unhealthy) when an endpoint is unhealthy this minute or was in one of
//!   the `FAILBACK_MINUTES - 1` minutes before (the hold: failback waits for
//!   that many good minutes in a row), `-1` (healthy) otherwise. The region
//!   alarm sums the votes of every zone's function in the minute
//!   ([`crate::canary::failover`] models what Route 53 makes of them).

use std::time::{Duration, SystemTime};

/// The region metric's value for a healthy vote and an unhealthy one.
pub const HEALTHY_VOTE: f64 = -1.0;
pub const UNHEALTHY_VOTE: f64 = 1.0;

/// How a minute's probes decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Successful probes an endpoint needs in a minute to be healthy.
    pub required: u32,
    /// Minutes in a row without an unhealthy endpoint before the vote turns
    /// healthy again (1: no hold).
    pub failback_minutes: u32,
}

impl Rule {
    /// `required` from the rounds per minute and the success ratio a
    /// healthy minute needs (0 < threshold ≤ 1); at least one success.
    pub fn new(rounds: u32, threshold: f64, failback_minutes: u32) -> Rule {
        // The smallest whole number of successes s with s / rounds >= threshold,
        // without letting 0.5 * 6 = 3.0000000000000004 round up to 4.
        let exact = threshold * f64::from(rounds);
        let required = (exact - 1e-9).ceil().max(1.0) as u32;
        Rule {
            required: required.min(rounds.max(1)),
            failback_minutes: failback_minutes.max(1),
        }
    }

    /// Whether an endpoint with `successes` this minute is healthy.
    pub fn healthy(&self, successes: u32) -> bool {
        successes >= self.required
    }

    /// The longest run of failed probes a minute always tolerates.
    pub fn tolerated_burst(&self, rounds: u32) -> u32 {
        rounds.saturating_sub(self.required)
    }
}

/// This function's vote for the region in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    Healthy,
    /// `held`: every endpoint is healthy this minute, but one was not in the
    /// last `failback_minutes - 1` minutes.
    Unhealthy {
        held: bool,
    },
}

impl Vote {
    /// The value published as the region metric.
    pub fn value(self) -> f64 {
        match self {
            Vote::Healthy => HEALTHY_VOTE,
            Vote::Unhealthy { .. } => UNHEALTHY_VOTE,
        }
    }

    pub fn is_healthy(self) -> bool {
        self == Vote::Healthy
    }
}

/// The vote for `minute` (of length `minute_len`), given whether an
/// endpoint is unhealthy in it and the earlier minutes known to have had an
/// unhealthy endpoint (from CloudWatch and this environment's memory; a
/// cold start that could read neither knows none).
pub fn vote(
    rule: &Rule,
    minute: SystemTime,
    minute_len: Duration,
    unhealthy_now: bool,
    earlier_unhealthy: &[SystemTime],
) -> Vote {
    if unhealthy_now {
        return Vote::Unhealthy { held: false };
    }
    let window = minute_len * (rule.failback_minutes - 1);
    let held = earlier_unhealthy
        .iter()
        .any(|u| *u < minute && minute.duration_since(*u).is_ok_and(|ago| ago <= window));
    if held {
        Vote::Unhealthy { held: true }
    } else {
        Vote::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    const MINUTE: Duration = Duration::from_secs(60);

    fn minute(n: u64) -> SystemTime {
        UNIX_EPOCH + MINUTE * (28_333_334 + n) as u32
    }

    #[test]
    fn with_the_defaults_three_of_six_probes_keep_an_endpoint_healthy() {
        let rule = Rule::new(6, 0.5, 3);
        assert_eq!(rule.required, 3);
        assert!(rule.healthy(3) && !rule.healthy(2));
        assert_eq!(rule.tolerated_burst(6), 3);
        // One probe a minute: its failure is the minute's.
        assert_eq!(Rule::new(1, 0.5, 3).required, 1);
        // Every probe must succeed at 1; at least one at any threshold.
        assert_eq!(Rule::new(6, 1.0, 3).required, 6);
        assert_eq!(Rule::new(6, 0.01, 3).required, 1);
        assert_eq!(Rule::new(6, 0.6, 3).required, 4);
    }

    #[test]
    fn the_vote_holds_unhealthy_until_failback_minutes_good_minutes_in_a_row() {
        let rule = Rule::new(6, 0.5, 3);
        let bad = [minute(10)];
        let votes: Vec<Vote> = (10..14)
            .map(|m| vote(&rule, minute(m), MINUTE, m == 10, &bad))
            .collect();
        assert_eq!(
            votes,
            [
                Vote::Unhealthy { held: false },
                Vote::Unhealthy { held: true },
                Vote::Unhealthy { held: true },
                Vote::Healthy
            ]
        );
        // Without history (a cold start that could not read it): at once.
        assert_eq!(vote(&rule, minute(11), MINUTE, false, &[]), Vote::Healthy);
        // No hold with 1.
        let no_hold = Rule::new(6, 0.5, 1);
        assert_eq!(
            vote(&no_hold, minute(11), MINUTE, false, &bad),
            Vote::Healthy
        );
        assert_eq!(Vote::Healthy.value(), -1.0);
        assert_eq!(Vote::Unhealthy { held: true }.value(), 1.0);
    }

    proptest! {
        #[test]
        fn a_burst_the_rule_tolerates_never_makes_an_endpoint_unhealthy(
            rounds in 1u32..=6,
            threshold in 0.01f64..=1.0,
        ) {
            let rule = Rule::new(rounds, threshold, 3);
            let burst = rule.tolerated_burst(rounds);
            prop_assert!(rule.healthy(rounds - burst));
            prop_assert!(!rule.healthy(rounds - burst - 1) || rounds - burst == 0);
            // The ratio of the required successes reaches the threshold.
            prop_assert!(f64::from(rule.required) / f64::from(rounds) >= threshold - 1e-9
                || rule.required == rounds);
        }

        #[test]
        fn failback_needs_exactly_failback_minutes_good_minutes(k in 1u32..=10, gap in 1u64..20) {
            let rule = Rule::new(6, 0.5, k);
            let healthy = vote(&rule, minute(100 + gap), MINUTE, false, &[minute(100)]).is_healthy();
            prop_assert_eq!(healthy, gap >= u64::from(k));
        }
    }
}

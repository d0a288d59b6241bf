//! Which wall-clock minute an invocation covers, and when its rounds run.
//!
//! CloudWatch periods, and so what Route 53 reads, are minutes of the wall
//! clock. The canary decides once per such minute, from rounds that all fall
//! inside it: round `k` of minute `M` starts at `M + k × PROBE_INTERVAL_MS`,
//! and the minute's data go out once its last round is in, before the
//! minute ends.
//!
//! EventBridge Scheduler invokes "with 60 second precision": a schedule due
//! at 1:00 invokes its target between 1:00:00 and 1:00:59 ("Schedule types",
//! EventBridge Scheduler user guide). The schedule's input carries the time
//! it was due, `<aws.scheduler.scheduled-time>` ("Adding context
//! attributes", same guide), and the invocation due in minute `T` covers
//! minute `T + 1`, whenever in `T` it arrives: one invocation per minute and
//! one minute per invocation, with no gap and no minute covered twice. The
//! cost is the wait: an invocation idles until its minute begins, from 0 to
//! 60 s, so it lasts up to two minutes and the next one starts in a second
//! execution environment while it runs.
//!
//! An invocation that arrives after its minute began (a delivery later than
//! the Scheduler's window) still covers it if its first round can start
//! within [`Timing::grace`]; otherwise it covers nothing ([`Late`]), and the
//! minute has no vote from this function. Without a scheduled time (a manual
//! invocation) the invocation covers the first minute it can cover whole.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Kept after a minute's last round for publishing, so that the data are
/// in CloudWatch before the minute ends.
pub const PUBLISH_MARGIN: Duration = Duration::from_secs(1);

/// How an invocation's rounds are laid out in its minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The length of the minute (60 s; shorter only in tests).
    pub minute: Duration,
    /// Rounds per minute (`PROBES_PER_INVOCATION`).
    pub rounds: u32,
    /// From one round start to the next (`PROBE_INTERVAL_MS`).
    pub interval: Duration,
    /// The longest a round takes: the longest probe timeout.
    pub round_length: Duration,
}

/// The minute an invocation covers, when its rounds start and by when its
/// data must be out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The start of the minute: the timestamp of its data.
    pub minute: SystemTime,
    /// Round starts, in order, all within the minute.
    pub rounds: Vec<SystemTime>,
    /// When the last round has ended at the latest, plus the publishing
    /// margin: before the minute ends.
    pub publish_by: SystemTime,
}

/// The invocation came too late to cover the minute it was due for whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub minute: SystemTime,
    /// How long after the minute began it arrived.
    pub late_by: Duration,
}

impl Timing {
    /// Where the rounds end (plus the publishing margin), from the minute's
    /// start; must not exceed the minute.
    pub fn publish_offset(&self) -> Duration {
        self.interval * self.rounds.saturating_sub(1) + self.round_length + PUBLISH_MARGIN
    }

    /// Whether every round, at its place, ends in time to publish within
    /// the minute; the error says why not.
    pub fn check(&self) -> Result<(), String> {
        if self.rounds == 0 {
            return Err("no round per minute".into());
        }
        if self.rounds > 1 && self.round_length > self.interval {
            return Err(format!(
                "a probe may take {} ms, longer than the {} ms between rounds",
                self.round_length.as_millis(),
                self.interval.as_millis()
            ));
        }
        let needed = self.publish_offset();
        if needed > self.minute {
            return Err(format!(
                "{} rounds {} ms apart, a probe timeout of {} ms and {} ms to publish need {} ms, more than the minute's {} ms",
                self.rounds,
                self.interval.as_millis(),
                self.round_length.as_millis(),
                PUBLISH_MARGIN.as_millis(),
                needed.as_millis(),
                self.minute.as_millis()
            ));
        }
        Ok(())
    }

    /// How late after the minute's start its first round may begin and the
    /// minute still be covered whole: the first round must end before the
    /// second one's place (or, alone, in time to publish).
    pub fn grace(&self) -> Duration {
        let slot = if self.rounds > 1 {
            self.interval
        } else {
            self.minute.saturating_sub(PUBLISH_MARGIN)
        };
        slot.saturating_sub(self.round_length)
    }

    /// The start of the minute that holds `t`.
    pub fn minute_of(&self, t: SystemTime) -> SystemTime {
        let ms = millis(t);
        let len = self.minute.as_millis().max(1) as u64;
        UNIX_EPOCH + Duration::from_millis(ms - ms % len)
    }

    /// The minute an invocation arriving at `now` covers: the one after the
    /// minute it was `scheduled` in, or without a schedule the first one
    /// it can still cover whole.
    pub fn target(&self, now: SystemTime, scheduled: Option<SystemTime>) -> SystemTime {
        match scheduled {
            Some(due) => self.minute_of(due) + self.minute,
            None => {
                let this = self.minute_of(now);
                if now.duration_since(this).unwrap_or_default() <= self.grace() {
                    this
                } else {
                    this + self.minute
                }
            }
        }
    }

    /// The plan of an invocation arriving at `now`, or why it covers
    /// nothing.
    pub fn plan(&self, now: SystemTime, scheduled: Option<SystemTime>) -> Result<Plan, Late> {
        let minute = self.target(now, scheduled);
        let late_by = now.duration_since(minute).unwrap_or_default();
        if late_by > self.grace() {
            return Err(Late { minute, late_by });
        }
        let rounds = (0..self.rounds)
            .map(|k| (minute + self.interval * k).max(now))
            .collect();
        Ok(Plan {
            minute,
            rounds,
            publish_by: minute + self.publish_offset(),
        })
    }
}

/// Milliseconds since the epoch (0 before it).
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The template's defaults: 6 rounds 10 s apart, 3 s probes.
    fn template() -> Timing {
        Timing {
            minute: Duration::from_secs(60),
            rounds: 6,
            interval: Duration::from_secs(10),
            round_length: Duration::from_secs(3),
        }
    }

    /// A minute boundary, and a time `ms` after it.
    fn at(minute: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(28_333_334 * 60_000 + minute * 60_000 + ms)
    }

    #[test]
    fn the_template_defaults_fit_the_minute_and_leave_seven_seconds_of_grace() {
        let t = template();
        assert_eq!(t.check(), Ok(()));
        assert_eq!(t.publish_offset(), Duration::from_secs(54));
        assert_eq!(t.grace(), Duration::from_secs(7));
    }

    #[test]
    fn rounds_that_cannot_publish_within_the_minute_are_refused() {
        let long = Timing {
            round_length: Duration::from_secs(10),
            ..template()
        };
        let err = long.check().unwrap_err();
        assert!(err.contains("61000 ms"), "{err}");
        let overlapping = Timing {
            round_length: Duration::from_secs(11),
            ..template()
        };
        assert!(overlapping.check().unwrap_err().contains("longer than"));
        let one = Timing {
            rounds: 1,
            round_length: Duration::from_secs(3),
            minute: Duration::from_secs(4),
            interval: Duration::from_secs(10),
        };
        assert_eq!(one.check(), Ok(()));
        assert_eq!(one.grace(), Duration::ZERO);
    }

    #[test]
    fn a_minute_is_judged_only_after_its_last_round() {
        let plan = template().plan(at(0, 30_000), Some(at(0, 0))).unwrap();
        assert_eq!(plan.minute, at(1, 0));
        let offsets: Vec<u64> = plan
            .rounds
            .iter()
            .map(|r| millis(*r) - millis(at(1, 0)))
            .collect();
        assert_eq!(offsets, [0, 10_000, 20_000, 30_000, 40_000, 50_000]);
        assert_eq!(plan.publish_by, at(1, 54_000));
    }

    #[test]
    fn an_arrival_late_in_its_minute_waits_for_the_next_one_and_covers_it_whole() {
        let plan = template().plan(at(0, 59_900), Some(at(0, 0))).unwrap();
        assert_eq!(plan.minute, at(1, 0));
        assert_eq!(plan.rounds[0], at(1, 0));
    }

    #[test]
    fn a_delivery_after_the_minute_began_covers_it_within_the_grace_and_not_after() {
        let t = template();
        let plan = t.plan(at(1, 6_000), Some(at(0, 0))).unwrap();
        assert_eq!(plan.rounds[0], at(1, 6_000));
        assert_eq!(plan.rounds[1], at(1, 10_000));
        assert_eq!(
            t.plan(at(1, 7_001), Some(at(0, 0))),
            Err(Late {
                minute: at(1, 0),
                late_by: Duration::from_millis(7_001)
            })
        );
    }

    #[test]
    fn without_a_schedule_the_first_minute_that_can_be_covered_whole() {
        let t = template();
        assert_eq!(t.target(at(3, 2_000), None), at(3, 0));
        assert_eq!(t.target(at(3, 7_500), None), at(4, 0));
    }

    proptest! {
        /// Whatever the delivery offset of each invocation within the
        /// Scheduler's window (and up to the grace after it), every minute
        /// is covered by exactly one invocation, with every round.
        #[test]
        fn every_minute_is_covered_exactly_once_whatever_the_arrivals(
            arrivals in proptest::collection::vec(0u64..67_000, 1..40),
        ) {
            let t = template();
            let mut covered = Vec::new();
            for (due, offset) in arrivals.iter().enumerate() {
                let plan = t.plan(at(due as u64, *offset), Some(at(due as u64, 0)));
                let plan = plan.map_err(|l| TestCaseError::fail(format!("{l:?}")))?;
                prop_assert_eq!(plan.rounds.len(), 6);
                prop_assert!(plan.rounds.iter().all(|r| *r >= plan.minute && *r < plan.minute + t.minute));
                prop_assert!(plan.publish_by <= plan.minute + t.minute);
                covered.push(plan.minute);
            }
            let expected: Vec<SystemTime> = (1..=arrivals.len() as u64).map(|m| at(m, 0)).collect();
            prop_assert_eq!(covered, expected);
        }

        /// Round k never starts before its place, nor (but round 0 when
        /// late) after it.
        #[test]
        fn rounds_keep_their_places(offset in 0u64..7_000) {
            let plan = template().plan(at(1, offset), Some(at(0, 0))).unwrap();
            for (k, r) in plan.rounds.iter().enumerate() {
                let place = at(1, k as u64 * 10_000);
                prop_assert!(*r >= place);
                prop_assert!(k == 0 || *r == place);
            }
        }
    }
}

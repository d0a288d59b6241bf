//! The failover decision as a pure model: what CloudWatch makes of the
//! canary's `Success` datapoints under the template's alarm settings, and so
//! when Route 53 moves a region's traffic away and back.
//!
//! The chain it models, as AWS documents it:
//! - The canary publishes one `Success` datapoint (1 or 0) per endpoint and
//!   probe round, timestamped at the round's start; a probe counts as failed
//!   only after the binary's one retry. Rounds are `PROBE_INTERVAL_MS`
//!   apart, `PROBES_PER_INVOCATION` per one-minute run, so a steady stream.
//! - Each endpoint's alarm (period 60 s, statistic Average) judges a minute
//!   *bad* when its success ratio is below `SuccessThreshold`. It is in ALARM
//!   when at least `DatapointsToAlarm` (M) of the last `EvaluationPeriods` (N)
//!   minutes are bad, and OK otherwise ("Evaluating an alarm", CloudWatch user
//!   guide). With M = 1 and N = 3 one bad minute fails over and three good
//!   minutes in a row fail back: failback is stricter than failover.
//! - Missing minutes follow the guide's rules: when the evaluation range holds
//!   at least N real datapoints, missing ones are skipped; otherwise they are
//!   filled in, as few as needed, with `TreatMissingData` (here: breaching).
//! - A `CLOUDWATCH_METRIC` health check follows the alarm's data stream (not
//!   its state, which is why `SetAlarmState` moves no traffic); the record's
//!   `CALCULATED` check is unhealthy when fewer than its threshold of these
//!   are healthy.
//!
//! The constants below are the template's defaults; a test in
//! `tests/template/test_failover.py` fails when either side changes alone.
//! Timing assumptions that are not parameters are named and documented here,
//! and the README's figures come from these functions (a test checks them).

/// `ProbesPerInvocation`: probe rounds per one-minute run.
pub const PROBES_PER_INVOCATION: u32 = 6;
/// `ProbeIntervalMs`: from round start to round start.
pub const PROBE_INTERVAL_MS: u64 = 10_000;
/// `SuccessThreshold`: a minute is bad when its success ratio is below this.
pub const SUCCESS_THRESHOLD: f64 = 0.5;
/// `AlarmEvaluationPeriods` (N): the minutes an alarm looks at.
pub const ALARM_EVALUATION_PERIODS: usize = 3;
/// `AlarmDatapointsToAlarm` (M): bad minutes among the last N that make ALARM.
pub const ALARM_DATAPOINTS_TO_ALARM: usize = 1;
/// `TreatMissingData` of the endpoint alarms (fixed in the template).
pub const TREAT_MISSING_DATA: MissingData = MissingData::Breaching;
/// `FailoverHealthThreshold`: healthy endpoints the record needs; 0 is all.
pub const FAILOVER_HEALTH_THRESHOLD: usize = 0;
/// The alarms' `Period` (fixed in the template), in milliseconds.
pub const PERIOD_MS: u64 = 60_000;

/// Assumption: CloudWatch evaluates a one-minute alarm once a minute, so a
/// closed minute is judged at most this long after it ends.
pub const CLOUDWATCH_EVALUATION_LAG_S: f64 = 60.0;
/// Assumption: AWS gives no figure for how fast a `CLOUDWATCH_METRIC` health
/// check follows; it reads the alarm's data stream itself rather than waiting
/// for the alarm's state, and we allow this much on top.
pub const ROUTE53_LAG_S: f64 = 20.0;
/// What the defaults promise: a full outage moves traffic within this.
pub const FAILOVER_BUDGET_S: f64 = 180.0;
/// An average month (365.25 days / 12), in minutes.
pub const MINUTES_PER_MONTH: f64 = 43_830.0;

/// How an alarm treats a minute without datapoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingData {
    Breaching,
    NotBreaching,
}

/// An alarm's state, which the health check follows (ALARM is unhealthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    Alarm,
}

/// One endpoint alarm's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarm {
    pub threshold: f64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub missing: MissingData,
}

impl Alarm {
    /// The template's defaults.
    pub const TEMPLATE: Alarm = Alarm {
        threshold: SUCCESS_THRESHOLD,
        evaluation_periods: ALARM_EVALUATION_PERIODS,
        datapoints_to_alarm: ALARM_DATAPOINTS_TO_ALARM,
        missing: TREAT_MISSING_DATA,
    };

    /// A minute's average breaches when it is below the threshold.
    pub fn breaching(&self, average: f64) -> bool {
        average < self.threshold
    }

    /// How many minutes CloudWatch retrieves to evaluate N of them. The guide
    /// says only "more than N"; its example retrieves 5 for N = 3, which we
    /// take as N + 2.
    pub fn evaluation_range(&self) -> usize {
        self.evaluation_periods + 2
    }

    /// The state after evaluating `range` (oldest first, `None` for a
    /// minute without datapoints), by the guide's rules for missing data.
    pub fn evaluate(&self, range: &[Option<f64>]) -> State {
        let n = self.evaluation_periods;
        let existing: Vec<f64> = range.iter().flatten().copied().collect();
        let breaching = if existing.len() >= n {
            let recent = &existing[existing.len() - n..];
            recent.iter().filter(|a| self.breaching(**a)).count()
        } else {
            let real = existing.iter().filter(|a| self.breaching(**a)).count();
            let filled = n - existing.len();
            match self.missing {
                MissingData::Breaching => real + filled,
                MissingData::NotBreaching => real,
            }
        };
        if breaching >= self.datapoints_to_alarm {
            State::Alarm
        } else {
            State::Ok
        }
    }

    /// The state once minute `i` of `minutes` has closed: the evaluation
    /// range ending there (earlier minutes than the series holds count as
    /// missing, so give the series enough history).
    pub fn state_after(&self, minutes: &[Option<f64>], i: usize) -> State {
        let from = (i + 1).saturating_sub(self.evaluation_range());
        let mut range: Vec<Option<f64>> = vec![None; self.evaluation_range() - (i + 1 - from)];
        range.extend_from_slice(&minutes[from..=i]);
        self.evaluate(&range)
    }

    /// The fewest failed probes out of `probes` that make a minute bad.
    pub fn failures_for_a_bad_minute(&self, probes: u32) -> u32 {
        (0..=probes)
            .find(|f| self.breaching(f64::from(probes - f) / f64::from(probes)))
            .unwrap_or(probes + 1)
    }
}

/// Whether the failover record's `CALCULATED` health check is healthy: at
/// least `threshold` of its children (the endpoints' checks) healthy, all of
/// them for 0 (the template's `Fn::Length`). A threshold above the number of
/// children is never met (Route 53's rule).
pub fn record_healthy(children: &[State], threshold: usize) -> bool {
    let needed = if threshold == 0 {
        children.len()
    } else {
        threshold
    };
    children.iter().filter(|s| **s == State::Ok).count() >= needed
}

/// When the probes run: every `interval_ms`, the first at `phase_ms` (the
/// schedule's offset in the minute, below one interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probes {
    pub interval_ms: u64,
    pub phase_ms: u64,
}

impl Probes {
    /// The template's default probing with the schedule at `phase_ms`.
    pub fn template(phase_ms: u64) -> Probes {
        Probes {
            interval_ms: PROBE_INTERVAL_MS,
            phase_ms: phase_ms % PROBE_INTERVAL_MS,
        }
    }

    /// Each minute's success ratio (its `Average`) over `minutes` minutes,
    /// given whether the probe at a time (ms) succeeds.
    pub fn minute_averages(&self, minutes: u64, ok: impl Fn(u64) -> bool) -> Vec<Option<f64>> {
        (0..minutes)
            .map(|m| {
                let (from, to) = (m * PERIOD_MS, (m + 1) * PERIOD_MS);
                let first = from
                    + (self.phase_ms + self.interval_ms - from % self.interval_ms)
                        % self.interval_ms;
                let times = (first..to).step_by(self.interval_ms as usize);
                let (total, good) =
                    times.fold((0u32, 0u32), |(t, g), at| (t + 1, g + u32::from(ok(at))));
                (total > 0).then(|| f64::from(good) / f64::from(total))
            })
            .collect()
    }
}

/// Minutes of healthy history before the events the timings model.
const HISTORY_MINUTES: u64 = 10;
/// How far the timings look after an event.
const HORIZON_MINUTES: u64 = 30;

/// Seconds from the start of a full outage (every probe from then on fails)
/// to Route 53 answering the other region, with the worst-case lags.
/// `offset_ms` places the start within its minute. `None`: never fails over.
pub fn failover_seconds(alarm: &Alarm, probes: Probes, offset_ms: u64) -> Option<f64> {
    let start = HISTORY_MINUTES * PERIOD_MS + offset_ms % PERIOD_MS;
    let minutes = probes.minute_averages(HISTORY_MINUTES + HORIZON_MINUTES, |t| t < start);
    first_change(alarm, &minutes, start, State::Alarm)
}

/// Seconds from the end of a long outage (every probe from then on
/// succeeds) to Route 53 answering this region again, with the worst-case
/// lags. `None`: never fails back.
pub fn failback_seconds(alarm: &Alarm, probes: Probes, offset_ms: u64) -> Option<f64> {
    let end = HISTORY_MINUTES * PERIOD_MS + offset_ms % PERIOD_MS;
    let minutes = probes.minute_averages(HISTORY_MINUTES + HORIZON_MINUTES, |t| t >= end);
    first_change(alarm, &minutes, end, State::Ok)
}

/// When the state first becomes `to` after `event` (ms), in seconds with
/// the lags; the state before the event must be the other one.
fn first_change(alarm: &Alarm, minutes: &[Option<f64>], event: u64, to: State) -> Option<f64> {
    let event_minute = (event / PERIOD_MS) as usize;
    if alarm.state_after(minutes, event_minute - 1) == to {
        return None;
    }
    (event_minute..minutes.len())
        .find(|i| alarm.state_after(minutes, *i) == to)
        .map(|i| {
            let judged = (i as u64 + 1) * PERIOD_MS;
            (judged - event) as f64 / 1000.0 + CLOUDWATCH_EVALUATION_LAG_S + ROUTE53_LAG_S
        })
}

/// The probability that a minute of `probes` independent probes, each
/// failing (after its retry) with probability `p`, is bad.
pub fn bad_minute_probability(alarm: &Alarm, probes: u32, p: f64) -> f64 {
    let fewest = alarm.failures_for_a_bad_minute(probes);
    (fewest..=probes)
        .map(|f| binomial(probes, f) * p.powi(f as i32) * (1.0 - p).powi((probes - f) as i32))
        .sum()
}

fn binomial(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

/// The probability that the alarm goes from OK to ALARM at a given minute
/// (a failover) when each minute is bad independently with probability
/// `q`: every pattern of the N + 1 minutes it depends on, evaluated.
pub fn failovers_per_minute(alarm: &Alarm, q: f64) -> f64 {
    let n = alarm.evaluation_periods;
    let as_minutes = |bits: u32, from: usize| -> Vec<Option<f64>> {
        (from..from + n)
            .map(|i| Some(if bits >> i & 1 == 1 { 0.0 } else { 1.0 }))
            .collect()
    };
    (0u32..1 << (n + 1))
        .filter(|bits| {
            alarm.evaluate(&as_minutes(*bits, 0)) == State::Ok
                && alarm.evaluate(&as_minutes(*bits, 1)) == State::Alarm
        })
        .map(|bits| {
            let bad = bits.count_ones() as i32;
            q.powi(bad) * (1.0 - q).powi(n as i32 + 1 - bad)
        })
        .sum()
}

/// False failovers a month for a per-probe failure probability `p`, with
/// the template's probing.
pub fn false_failovers_per_month(alarm: &Alarm, p: f64) -> f64 {
    let q = bad_minute_probability(alarm, PROBES_PER_INVOCATION, p);
    failovers_per_minute(alarm, q) * MINUTES_PER_MONTH
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const X: Option<f64> = Some(0.0);
    const O: Option<f64> = Some(1.0);
    const MISSING: Option<f64> = None;

    fn alarm(m: usize, n: usize, missing: MissingData) -> Alarm {
        Alarm {
            threshold: 0.5,
            evaluation_periods: n,
            datapoints_to_alarm: m,
            missing,
        }
    }

    /// One table of the guide: each row's state when missing data is
    /// breaching and when it is not, for an M of 3 alarm.
    fn check_table(m: usize, rows: &[[Option<f64>; 5]], states: &[(State, State)]) {
        assert_eq!(rows.len(), states.len());
        for (row, (breaching, not_breaching)) in rows.iter().zip(states) {
            assert_eq!(
                alarm(m, 3, MissingData::Breaching).evaluate(row),
                *breaching,
                "{row:?}"
            );
            let other = alarm(m, 3, MissingData::NotBreaching).evaluate(row);
            assert_eq!(other, *not_breaching, "{row:?}");
        }
    }

    #[test]
    fn evaluation_follows_the_cloudwatch_guide_tables() {
        // "How alarm state is evaluated when data is missing": 5 datapoints
        // retrieved for N = 3; 0 = not breaching, X = breaching, - = missing.
        use State::{Alarm as A, Ok as K};
        let rows: [[Option<f64>; 5]; 6] = [
            [O, MISSING, X, MISSING, X],
            [O, MISSING, MISSING, MISSING, MISSING],
            [MISSING; 5],
            [O, X, X, MISSING, X],
            [MISSING, MISSING, MISSING, MISSING, X],
            [X, MISSING, MISSING, MISSING, MISSING],
        ];
        // 3 of 3: the BREACHING and NOT BREACHING columns.
        check_table(3, &rows, &[(K, K), (K, K), (A, K), (A, A), (A, K), (A, K)]);
        // 2 of 3.
        let rows: [[Option<f64>; 5]; 5] = [
            [O, MISSING, X, MISSING, X],
            [O, O, X, O, X],
            [O, MISSING, X, MISSING, MISSING],
            [MISSING, MISSING, MISSING, MISSING, O],
            [MISSING, MISSING, MISSING, MISSING, X],
        ];
        check_table(2, &rows, &[(A, A), (A, A), (A, K), (A, K), (A, K)]);
    }

    #[test]
    fn with_the_defaults_four_of_six_failed_probes_make_a_bad_minute() {
        let a = Alarm::TEMPLATE;
        assert_eq!(a.failures_for_a_bad_minute(PROBES_PER_INVOCATION), 4);
        assert!(!a.breaching(3.0 / 6.0) && a.breaching(2.0 / 6.0));
    }

    #[test]
    fn a_probe_stream_fills_every_minute_with_the_rounds_of_a_run() {
        for phase in [0, 1, 9_999] {
            let minutes = Probes::template(phase).minute_averages(5, |t| t % 20_000 < 10_000);
            assert!(minutes.iter().all(|m| m.is_some()));
            // Every other probe fails: 3 of 6.
            assert!(minutes.iter().all(|m| *m == Some(0.5)), "{minutes:?}");
        }
    }

    #[test]
    fn a_canary_that_stops_publishing_fails_over_after_three_silent_minutes() {
        let a = Alarm::TEMPLATE;
        let mut minutes = vec![O; 10];
        minutes.extend([MISSING; 3]);
        // Two silent minutes are skipped: three real ones remain in the range.
        assert_eq!(a.state_after(&minutes, 11), State::Ok);
        assert_eq!(a.state_after(&minutes, 12), State::Alarm);
    }

    #[test]
    fn a_new_alarm_without_history_is_unhealthy_until_three_good_minutes() {
        // An endpoint added to the canary and to CanaryEndpoints at once: its
        // alarm has no earlier data, and missing minutes count as breaching
        // until 3 real ones exist (the README's runbook says how to avoid it).
        let a = Alarm::TEMPLATE;
        let minutes = [MISSING, MISSING, MISSING, MISSING, O, O, O];
        let states: Vec<State> = (4..7).map(|i| a.state_after(&minutes, i)).collect();
        assert_eq!(states, [State::Alarm, State::Alarm, State::Ok]);
    }

    #[test]
    fn the_binomial_tail_matches_counting_every_outcome_of_a_minute() {
        let a = Alarm::TEMPLATE;
        for p in [0.001_f64, 0.01, 0.02, 0.1, 0.5] {
            // Independently: all 2^6 patterns of a minute's probes.
            let brute: f64 = (0u32..1 << PROBES_PER_INVOCATION)
                .filter(|bits| {
                    let failed = bits.count_ones();
                    a.breaching(f64::from(PROBES_PER_INVOCATION - failed) / 6.0)
                })
                .map(|bits| {
                    let f = bits.count_ones() as i32;
                    p.powi(f) * (1.0 - p).powi(6 - f)
                })
                .sum();
            let model = bad_minute_probability(&a, PROBES_PER_INVOCATION, p);
            assert!(
                (brute - model).abs() <= 1e-15 * brute.max(1e-300),
                "{p}: {brute} {model}"
            );
        }
    }

    #[test]
    fn failover_rates_match_the_closed_forms() {
        for q in [1e-7, 1e-3, 0.1, 0.4] {
            for n in 1..=5 {
                // M = 1: this minute bad, the N before it good.
                let one = failovers_per_minute(&alarm(1, n, MissingData::Breaching), q);
                let closed = q * (1.0 - q).powi(n as i32);
                assert!(
                    (one - closed).abs() <= 1e-12 * closed,
                    "1 of {n}: {one} {closed}"
                );
                // M = N: the last N bad, the one before them good.
                let all = failovers_per_minute(&alarm(n, n, MissingData::Breaching), q);
                let closed = q.powi(n as i32) * (1.0 - q);
                assert!(
                    (all - closed).abs() <= 1e-12 * closed,
                    "{n} of {n}: {all} {closed}"
                );
            }
        }
    }

    #[test]
    fn the_issues_old_defaults_give_its_sixteen_failovers_a_day() {
        // SuccessThreshold 0.9 (one failed probe makes a bad minute), two
        // minutes, 2% failed probes: "about 16 failovers a day".
        let old = Alarm {
            threshold: 0.9,
            evaluation_periods: 2,
            datapoints_to_alarm: 2,
            missing: MissingData::Breaching,
        };
        let per_day = false_failovers_per_month(&old, 0.02) / MINUTES_PER_MONTH * 1440.0;
        assert!((16.0..17.0).contains(&per_day), "{per_day}");
    }

    #[test]
    fn the_defaults_fail_over_falsely_less_than_once_a_month_at_one_percent() {
        let month = false_failovers_per_month(&Alarm::TEMPLATE, 0.01);
        assert!(month < 1.0, "{month}");
        assert!(false_failovers_per_month(&Alarm::TEMPLATE, 0.02) < 1.0);
    }

    type Timing = fn(&Alarm, Probes, u64) -> Option<f64>;

    /// The least or greatest of a timing over schedule phases and event
    /// offsets, on a 0.5 s grid.
    fn worst_for(alarm: &Alarm, f: Timing, pick: fn(f64, f64) -> f64) -> f64 {
        (0..PROBE_INTERVAL_MS)
            .step_by(500)
            .flat_map(|phase| (0..PERIOD_MS).step_by(500).map(move |o| (phase, o)))
            .filter_map(|(phase, o)| f(alarm, Probes::template(phase), o))
            .reduce(pick)
            .unwrap_or(f64::NAN)
    }

    /// The README's failover figures, as this model computes them.
    fn readme_figures() -> Vec<String> {
        let a = Alarm::TEMPLATE;
        let worst = |f: Timing, pick: fn(f64, f64) -> f64| worst_for(&a, f, pick);
        let two_of_three = Alarm {
            datapoints_to_alarm: 2,
            ..a
        };
        let stricter = Alarm {
            threshold: 0.6,
            ..a
        };
        let q1 = bad_minute_probability(&a, PROBES_PER_INVOCATION, 0.01);
        let q2 = bad_minute_probability(&a, PROBES_PER_INVOCATION, 0.02);
        vec![
            format!("{q1:.3e}"),
            format!("{:.4}", false_failovers_per_month(&a, 0.01)),
            format!("{q2:.3e}"),
            format!("{:.3}", false_failovers_per_month(&a, 0.02)),
            format!("{:.0} s", worst(failover_seconds, f64::min)),
            format!("{:.0} s", worst(failover_seconds, f64::max)),
            format!("{:.0} s", worst(failback_seconds, f64::min)),
            format!("{:.0} s", worst(failback_seconds, f64::max)),
            // "Tuning" and several endpoints.
            format!(
                "up to {:.0} s",
                worst_for(&two_of_three, failover_seconds, f64::max)
            ),
            format!(
                "about {:.2} false failovers",
                false_failovers_per_month(&stricter, 0.01)
            ),
            format!("{:.3} a month)", 10.0 * false_failovers_per_month(&a, 0.01)),
        ]
    }

    #[test]
    fn the_readme_shows_the_models_figures() {
        let readme = include_str!("../../../README.md");
        for figure in readme_figures() {
            assert!(
                readme.contains(&figure),
                "README.md lacks {figure}; the model's figures: {:?}",
                readme_figures()
            );
        }
    }

    proptest! {
        #[test]
        fn one_failed_probe_never_fails_over(phase in 0..PROBE_INTERVAL_MS, at in 0u64..20 * PERIOD_MS) {
            let probes = Probes::template(phase);
            let failed = phase + (at / PROBE_INTERVAL_MS) * PROBE_INTERVAL_MS;
            let minutes = probes.minute_averages(20, |t| t != failed);
            for i in Alarm::TEMPLATE.evaluation_range()..minutes.len() {
                prop_assert_eq!(Alarm::TEMPLATE.state_after(&minutes, i), State::Ok);
            }
        }

        #[test]
        fn a_burst_too_short_for_a_bad_minute_never_fails_over(
            phase in 0..PROBE_INTERVAL_MS,
            first in 0u64..100,
            extra in 0u64..3,
        ) {
            // Up to 3 consecutive failed probes (under 4, the fewest that make
            // a bad minute), wherever they fall across minute boundaries.
            let a = Alarm::TEMPLATE;
            prop_assert_eq!(a.failures_for_a_bad_minute(PROBES_PER_INVOCATION) - 1, 3);
            let probes = Probes::template(phase);
            let from = phase + first * PROBE_INTERVAL_MS;
            let to = from + extra * PROBE_INTERVAL_MS;
            let minutes = probes.minute_averages(25, |t| t < from || t > to);
            for i in a.evaluation_range()..minutes.len() {
                prop_assert_eq!(a.state_after(&minutes, i), State::Ok);
            }
        }

        #[test]
        fn a_full_outage_fails_over_within_three_minutes(phase in 0..PROBE_INTERVAL_MS, offset in 0..PERIOD_MS) {
            let seconds = failover_seconds(&Alarm::TEMPLATE, Probes::template(phase), offset);
            prop_assert!(matches!(seconds, Some(s) if s <= FAILOVER_BUDGET_S), "{:?}", seconds);
        }

        #[test]
        fn failback_takes_longer_than_any_failover(
            phase in 0..PROBE_INTERVAL_MS,
            down in 0..PERIOD_MS,
            up in 0..PERIOD_MS,
            other_phase in 0..PROBE_INTERVAL_MS,
        ) {
            let over = failover_seconds(&Alarm::TEMPLATE, Probes::template(phase), down);
            let back = failback_seconds(&Alarm::TEMPLATE, Probes::template(other_phase), up);
            prop_assert!(matches!((over, back), (Some(o), Some(b)) if b > o), "{:?} {:?}", over, back);
        }

        #[test]
        fn with_the_default_threshold_any_unhealthy_endpoint_fails_the_record_over(
            states in proptest::collection::vec(any::<bool>(), 1..40),
            threshold in 0usize..50,
        ) {
            let children: Vec<State> = states.iter().map(|ok| if *ok { State::Ok } else { State::Alarm }).collect();
            let healthy = children.iter().filter(|s| **s == State::Ok).count();
            prop_assert_eq!(
                record_healthy(&children, FAILOVER_HEALTH_THRESHOLD),
                healthy == children.len()
            );
            prop_assert_eq!(
                record_healthy(&children, threshold),
                healthy >= if threshold == 0 { children.len() } else { threshold }
            );
            prop_assert!(!record_healthy(&children, children.len() + 1));
        }

        #[test]
        fn alarm_when_at_least_m_of_the_last_n_breach(bits in 0u32..1 << 5, m in 1usize..=3) {
            // The guide: ALARM when at least M of the last N (all real) breach.
            let a = alarm(m, 3, MissingData::Breaching);
            let range: Vec<Option<f64>> = (0..5).map(|i| Some(if bits >> i & 1 == 1 { 0.0 } else { 1.0 })).collect();
            let recent_bad = (2..5).filter(|i| bits >> i & 1 == 1).count();
            prop_assert_eq!(a.evaluate(&range) == State::Alarm, recent_bad >= m);
        }
    }
}

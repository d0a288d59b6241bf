//! The failover chain as a pure model: from probe outcomes, through the
//! canary's minute decision and the region alarm's data, to what Route 53
//! answers, under each way Route 53 may read that data.
//!
//! The chain, and what of it AWS documents:
//! - The canary covers whole wall-clock minutes ([`super::minute`], the
//!   shipped plan: EventBridge Scheduler delivers within its minute, and the
//!   invocation due in minute T covers T + 1). Per minute it decides each
//!   endpoint's health and votes its zone's view of the region, `+1` or
//!   `-1`, holding an unhealthy vote for `FAILBACK_MINUTES`
//!   ([`super::decision`], the shipped rule). One function per subnet votes.
//! - The region alarm is one standard-resolution metric, `RegionUnhealthy`,
//!   statistic `Sum` over 60 s, breaching above 0, with `EvaluationPeriods`
//!   equal to `DatapointsToAlarm`: the zones' votes (a majority, ties
//!   healthy) plus whatever an operator publishes (the override).
//! - Route 53 "monitors the data stream for the corresponding alarm instead
//!   of monitoring the alarm state", with its own copy of the comparison,
//!   evaluation periods, metric, namespace, period, statistic, threshold and
//!   dimensions (`CloudWatchAlarmConfiguration`, Route 53 API reference):
//!   no `DatapointsToAlarm`, no `TreatMissingData`. How it reads the stream
//!   is not documented, so the model has two [`Reading`]s and every
//!   property below holds under both. A health check without data is
//!   unhealthy (`InsufficientDataHealthStatus: Unhealthy`).
//! - Not documented either: how soon a closed period counts. The model
//!   allows [`ROUTE53_LAG_S`] after the period ends.
//!
//! The constants are the template's defaults; `tests/template/test_failover.py`
//! fails when either side changes alone, and the figures in docs/failover.md
//! come from [`documented_figures`] (a test checks them).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::decision::{Rule, Vote, vote};
use super::minute::{Timing, millis};

/// `ProbesPerInvocation`: rounds per minute.
pub const PROBES_PER_INVOCATION: u32 = 6;
/// `ProbeIntervalMs`: from round start to round start.
pub const PROBE_INTERVAL_MS: u64 = 10_000;
/// An endpoint's `timeout_ms` when not set: the longest a round takes.
pub const PROBE_TIMEOUT_MS: u64 = 3_000;
/// `SuccessThreshold`: the share of a minute's probes an endpoint needs.
pub const SUCCESS_THRESHOLD: f64 = 0.5;
/// `FailbackMinutes`: good minutes in a row before the vote is healthy.
pub const FAILBACK_MINUTES: u32 = 3;
/// `AlarmEvaluationPeriods`, also the alarm's `DatapointsToAlarm`.
pub const EVALUATION_PERIODS: usize = 1;
/// The region alarm's `Period` (fixed in the template), in milliseconds.
pub const PERIOD_MS: u64 = 60_000;
/// The region alarm's `Threshold` (`GreaterThanThreshold`, `Sum`).
pub const ALARM_THRESHOLD: f64 = 0.0;
/// What the runbook's override publishes: `+` fails the region out, `-`
/// keeps it in, whatever up to 99 zones vote.
pub const OVERRIDE_VALUE: f64 = 100.0;
/// Assumption: a closed period's data reach the health check within this
/// (CloudWatch evaluates one-minute alarms once a minute, 60 s, and we
/// allow 20 s for Route 53, for which AWS gives no figure).
pub const ROUTE53_LAG_S: f64 = 80.0;
/// What the defaults promise: a full outage moves traffic within this.
pub const FAILOVER_BUDGET_S: f64 = 180.0;
/// An average month (365.25 days / 12), in minutes.
pub const MINUTES_PER_MONTH: f64 = 43_830.0;
/// The Scheduler delivers an invocation this long after it was due at most
/// (its documented 60 s precision); later arrivals are modelled too.
pub const SCHEDULER_WINDOW_MS: u64 = 60_000;

/// How Route 53 may read the alarm's data stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As CloudWatch evaluates an alarm with `DatapointsToAlarm` =
    /// `EvaluationPeriods` = N: of the N + 2 periods retrieved, the last N
    /// with data must all breach; missing periods are skipped while any
    /// data remain, and none at all is insufficient data ("Evaluating an
    /// alarm", CloudWatch user guide, with `TreatMissingData` unset).
    MOfN,
    /// Only the latest N periods: unhealthy when all breach, insufficient
    /// data when any has no data.
    LatestN,
}

pub const READINGS: [Reading; 2] = [Reading::MOfN, Reading::LatestN];

/// The health check's status after a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    /// Unhealthy too (`InsufficientDataHealthStatus`).
    InsufficientData,
}

impl Health {
    pub fn is_healthy(self) -> bool {
        self == Health::Healthy
    }
}

/// The region alarm's settings, as Route 53 copies them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarm {
    pub evaluation_periods: usize,
    pub threshold: f64,
}

impl Alarm {
    pub const TEMPLATE: Alarm = Alarm {
        evaluation_periods: EVALUATION_PERIODS,
        threshold: ALARM_THRESHOLD,
    };

    /// A period's `Sum` breaches when above the threshold.
    pub fn breaching(&self, sum: f64) -> bool {
        sum > self.threshold
    }

    /// The health after period `i` of `periods` (each period's `Sum`, `None`
    /// without data; periods before the series have none).
    pub fn health(&self, reading: Reading, periods: &[Option<f64>], i: usize) -> Health {
        let n = self.evaluation_periods;
        let window = |len: usize| -> Vec<Option<f64>> {
            (0..len)
                .rev()
                .map(|back| i.checked_sub(back).and_then(|j| periods[j]))
                .collect()
        };
        let judged: Vec<f64> = match reading {
            Reading::MOfN => {
                let real: Vec<f64> = window(n + 2).into_iter().flatten().collect();
                real[real.len().saturating_sub(n)..].to_vec()
            }
            Reading::LatestN => {
                let latest = window(n);
                if latest.iter().any(Option::is_none) {
                    return Health::InsufficientData;
                }
                latest.into_iter().flatten().collect()
            }
        };
        if judged.is_empty() {
            Health::InsufficientData
        } else if judged.iter().all(|s| self.breaching(*s)) {
            Health::Unhealthy
        } else {
            Health::Healthy
        }
    }
}

/// Whether a zone's function knows the minutes before the one it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Read back from CloudWatch (or remembered): the hold holds.
    Known,
    /// Never (a cold start every minute that cannot read CloudWatch): the
    /// worst case for failback.
    Forgotten,
}

/// One availability zone's canary function.
pub struct Zone<'a> {
    /// When the invocation due in minute `s` arrives, in ms after `s` began.
    pub arrival: &'a dyn Fn(u64) -> u64,
    /// Whether a probe started at `t` (ms in the model) succeeds.
    pub probe_ok: &'a dyn Fn(u64) -> bool,
    /// Whether the function publishes minute `m` at all.
    pub publishes: &'a dyn Fn(u64) -> bool,
    pub history: History,
}

/// The whole chain with its settings.
#[derive(Debug, Clone, Copy)]
pub struct Chain {
    pub timing: Timing,
    pub rule: Rule,
    pub alarm: Alarm,
}

/// The model's minute 0, on a minute boundary of the wall clock.
fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(28_333_334 * PERIOD_MS)
}

fn at(ms: u64) -> SystemTime {
    epoch() + Duration::from_millis(ms)
}

fn model_ms(t: SystemTime) -> u64 {
    millis(t) - millis(epoch())
}

impl Chain {
    /// The template's defaults.
    pub fn template() -> Chain {
        Chain {
            timing: Timing {
                minute: Duration::from_millis(PERIOD_MS),
                rounds: PROBES_PER_INVOCATION,
                interval: Duration::from_millis(PROBE_INTERVAL_MS),
                round_length: Duration::from_millis(PROBE_TIMEOUT_MS),
            },
            rule: Rule::new(PROBES_PER_INVOCATION, SUCCESS_THRESHOLD, FAILBACK_MINUTES),
            alarm: Alarm::TEMPLATE,
        }
    }

    /// One zone's vote in each of `minutes` minutes (`None`: no vote; minute
    /// 0 has none, as nothing was due before it).
    pub fn zone_votes(&self, minutes: u64, zone: &Zone) -> Vec<Option<Vote>> {
        let mut votes = vec![None; minutes as usize];
        let mut unhealthy: Vec<SystemTime> = Vec::new();
        for due in 0..minutes.saturating_sub(1) {
            let arrives = at(due * PERIOD_MS + (zone.arrival)(due));
            let Ok(plan) = self.timing.plan(arrives, Some(at(due * PERIOD_MS))) else {
                continue;
            };
            let m = model_ms(plan.minute) / PERIOD_MS;
            if m >= minutes || !(zone.publishes)(m) {
                continue;
            }
            let successes = plan
                .rounds
                .iter()
                .filter(|r| (zone.probe_ok)(model_ms(**r)))
                .count() as u32;
            let bad = !self.rule.healthy(successes);
            let known: &[SystemTime] = match zone.history {
                History::Known => &unhealthy,
                History::Forgotten => &[],
            };
            votes[m as usize] = Some(vote(
                &self.rule,
                plan.minute,
                self.timing.minute,
                bad,
                known,
            ));
            if bad {
                unhealthy.push(plan.minute);
            }
        }
        votes
    }

    /// Each period's `Sum`: the zones' votes and what an operator published
    /// (`None` when nothing at all was published in it).
    pub fn periods(
        &self,
        zones: &[Vec<Option<Vote>>],
        overrides: &dyn Fn(u64) -> Option<f64>,
    ) -> Vec<Option<f64>> {
        let len = zones.iter().map(Vec::len).max().unwrap_or(0);
        (0..len)
            .map(|m| {
                let data: Vec<f64> = zones
                    .iter()
                    .filter_map(|z| z[m].map(Vote::value))
                    .chain(overrides(m as u64))
                    .collect();
                (!data.is_empty()).then(|| data.iter().sum())
            })
            .collect()
    }

    /// The health after every period.
    pub fn health(&self, reading: Reading, periods: &[Option<f64>]) -> Vec<Health> {
        (0..periods.len())
            .map(|i| self.alarm.health(reading, periods, i))
            .collect()
    }

    /// When Route 53 may answer by period `i`'s health, in ms of the model.
    fn visible_at(i: usize) -> f64 {
        ((i as u64 + 1) * PERIOD_MS) as f64 + ROUTE53_LAG_S * 1000.0
    }

    /// Seconds from `event` (ms) to the first period after it whose health
    /// is (not) healthy, with the lag; `None` if it never comes or the
    /// health before the event was already that.
    fn first_change(health: &[Health], event: u64, to_healthy: bool) -> Option<f64> {
        let from = (event / PERIOD_MS) as usize;
        if health[from - 1].is_healthy() == to_healthy {
            return None;
        }
        (from..health.len())
            .find(|i| health[*i].is_healthy() == to_healthy)
            .map(|i| (Self::visible_at(i) - event as f64) / 1000.0)
    }
}

/// Minutes of healthy history before the events the timings model.
const HISTORY_MINUTES: u64 = 12;
/// How far the timings look after an event.
const HORIZON_MINUTES: u64 = 30;
const MINUTES: u64 = HISTORY_MINUTES + HORIZON_MINUTES;

/// Seconds from the start of a full outage (every probe of every zone from
/// `HISTORY_MINUTES + offset_ms` on fails) to Route 53 answering the other
/// region; every invocation arrives `arrival_ms` after it was due.
pub fn failover_seconds(
    chain: &Chain,
    reading: Reading,
    arrival_ms: u64,
    offset_ms: u64,
) -> Option<f64> {
    let start = HISTORY_MINUTES * PERIOD_MS + offset_ms % PERIOD_MS;
    let zone = Zone {
        arrival: &|_| arrival_ms,
        probe_ok: &|t| t < start,
        publishes: &|_| true,
        history: History::Known,
    };
    let periods = chain.periods(&[chain.zone_votes(MINUTES, &zone)], &|_| None);
    Chain::first_change(&chain.health(reading, &periods), start, false)
}

/// Seconds from the end of a long outage (every probe from then on
/// succeeds) to Route 53 answering this region again.
pub fn failback_seconds(
    chain: &Chain,
    reading: Reading,
    arrival_ms: u64,
    offset_ms: u64,
    history: History,
) -> Option<f64> {
    let end = HISTORY_MINUTES * PERIOD_MS + offset_ms % PERIOD_MS;
    let zone = Zone {
        arrival: &|_| arrival_ms,
        probe_ok: &|t| t >= end,
        publishes: &|_| true,
        history,
    };
    let periods = chain.periods(&[chain.zone_votes(MINUTES, &zone)], &|_| None);
    Chain::first_change(&chain.health(reading, &periods), end, true)
}

/// Seconds from the start of the first minute a healthy region's canaries
/// no longer publish to Route 53 answering the other region.
pub fn silence_seconds(chain: &Chain, reading: Reading) -> Option<f64> {
    let stop = HISTORY_MINUTES;
    let zone = Zone {
        arrival: &|_| 0,
        probe_ok: &|_| true,
        publishes: &|m| m < stop,
        history: History::Known,
    };
    let periods = chain.periods(&[chain.zone_votes(MINUTES, &zone)], &|_| None);
    Chain::first_change(&chain.health(reading, &periods), stop * PERIOD_MS, false)
}

/// The probability that a minute of `rounds` independent probes, each
/// failing (after its retry) with probability `p`, makes an endpoint
/// unhealthy.
pub fn bad_minute_probability(rule: &Rule, rounds: u32, p: f64) -> f64 {
    let fewest_failures = rounds - rule.required + 1;
    (fewest_failures..=rounds)
        .map(|f| binomial(rounds, f) * p.powi(f as i32) * (1.0 - p).powi((rounds - f) as i32))
        .sum()
}

fn binomial(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

/// False failovers a month of one endpoint seen from one zone, for a
/// per-probe failure probability `p`: a bad minute after a healthy vote
/// (the `FAILBACK_MINUTES` minutes before it good). More zones only lower
/// it (a majority must be bad in the same minute).
pub fn false_failovers_per_month(chain: &Chain, p: f64) -> f64 {
    let q = bad_minute_probability(&chain.rule, chain.timing.rounds, p);
    q * (1.0 - q).powi(chain.rule.failback_minutes as i32) * MINUTES_PER_MONTH
}

/// Lambda's price for arm64, per GB-second (us-east-1 list price), and
/// the canary's memory (the template's 128 MB).
pub const LAMBDA_USD_PER_GB_SECOND: f64 = 0.000_013_333_4;
pub const CANARY_MEMORY_GB: f64 = 0.125;
/// How long a minute's work takes once it begins: its rounds (the last one
/// starts 50 s in) and a probe and publishing (assumed 1 s).
pub const MINUTE_WORK_S: f64 = 51.0;

/// One canary function's Lambda duration charge a month (requests are
/// 0.01 USD more) when each invocation first waits `wait_s` for its minute.
pub fn lambda_usd_per_month(wait_s: f64) -> f64 {
    (wait_s + MINUTE_WORK_S) * CANARY_MEMORY_GB * LAMBDA_USD_PER_GB_SECOND * MINUTES_PER_MONTH
}

/// The extremes of a timing over arrivals (within the Scheduler's window
/// and the grace after it) and event offsets, on a 0.5 s grid, and whether
/// every combination gave one.
fn extremes(chain: &Chain, f: &dyn Fn(&Chain, u64, u64) -> Option<f64>) -> (f64, f64, bool) {
    let last_arrival = SCHEDULER_WINDOW_MS + chain.timing.grace().as_millis() as u64;
    let mut all = true;
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for arrival in (0..=last_arrival).step_by(1_000) {
        for offset in (0..PERIOD_MS).step_by(500) {
            match f(chain, arrival, offset) {
                Some(s) => {
                    low = low.min(s);
                    high = high.max(s);
                }
                None => all = false,
            }
        }
    }
    (low, high, all)
}

/// The failover figures of docs/failover.md (and the canary's Lambda cost
/// in docs/operations.md), as this model computes them (the same
/// under both readings where they must be).
pub fn documented_figures() -> Vec<String> {
    let chain = Chain::template();
    let over = |r| extremes(&chain, &|c, a, o| failover_seconds(c, r, a, o));
    let back = |r, h| extremes(&chain, &move |c, a, o| failback_seconds(c, r, a, o, h));
    let (over_low, over_high, _) = over(Reading::MOfN);
    let (back_low, back_high, _) = back(Reading::MOfN, History::Known);
    let (cold_low, cold_high, _) = back(Reading::MOfN, History::Forgotten);
    let two = Chain {
        alarm: Alarm {
            evaluation_periods: 2,
            ..Alarm::TEMPLATE
        },
        ..chain
    };
    let (_, two_high, _) = extremes(&two, &|c, a, o| failover_seconds(c, Reading::MOfN, a, o));
    let q1 = bad_minute_probability(&chain.rule, PROBES_PER_INVOCATION, 0.01);
    let q2 = bad_minute_probability(&chain.rule, PROBES_PER_INVOCATION, 0.02);
    let seconds = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.0} s"));
    vec![
        format!("{over_low:.0} s to {over_high:.0} s"),
        format!("{back_low:.0} s to {back_high:.0} s"),
        format!("{cold_low:.0} s to {cold_high:.0} s"),
        format!("up to {two_high:.0} s"),
        seconds(silence_seconds(&chain, Reading::LatestN)),
        seconds(silence_seconds(&chain, Reading::MOfN)),
        format!("{q1:.3e}"),
        format!(
            "{:.4} false failovers a month",
            false_failovers_per_month(&chain, 0.01)
        ),
        format!("{q2:.3e}"),
        format!("{:.3} a month", false_failovers_per_month(&chain, 0.02)),
        // Arrivals spread over the Scheduler's minute wait 30 s on average;
        // arrivals at its start wait the whole minute.
        format!("{:.2} USD", lambda_usd_per_month(30.0)),
        format!("{:.2} USD", lambda_usd_per_month(60.0)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const X: Option<f64> = Some(1.0);
    const O: Option<f64> = Some(-1.0);
    const MISSING: Option<f64> = None;

    fn run(
        chain: &Chain,
        zones: &[Zone],
        overrides: &dyn Fn(u64) -> Option<f64>,
        reading: Reading,
    ) -> Vec<Health> {
        let votes: Vec<Vec<Option<Vote>>> =
            zones.iter().map(|z| chain.zone_votes(MINUTES, z)).collect();
        chain.health(reading, &chain.periods(&votes, overrides))
    }

    /// Health from the first minute that every zone could vote in on.
    fn settled(health: &[Health]) -> &[Health] {
        &health[2..]
    }

    #[test]
    fn both_readings_judge_the_latest_period_and_differ_only_on_missing_data() {
        let a = Alarm::TEMPLATE;
        for reading in READINGS {
            assert_eq!(a.health(reading, &[O, O, X], 2), Health::Unhealthy);
            assert_eq!(a.health(reading, &[X, X, O], 2), Health::Healthy);
        }
        // A missing latest period: skipped by M of N, insufficient data by
        // the latest N.
        let gap = [O, X, MISSING];
        assert_eq!(a.health(Reading::MOfN, &gap, 2), Health::Unhealthy);
        assert_eq!(
            a.health(Reading::LatestN, &gap, 2),
            Health::InsufficientData
        );
        // N + 2 = 3 periods without data: insufficient data for both.
        let silent = [O, MISSING, MISSING, MISSING];
        for reading in READINGS {
            assert_eq!(a.health(reading, &silent, 3), Health::InsufficientData);
        }
        // N = 2: both periods must breach; M of N skips a missing one.
        let two = Alarm {
            evaluation_periods: 2,
            ..a
        };
        assert_eq!(two.health(Reading::MOfN, &[X, O, X], 2), Health::Healthy);
        assert_eq!(
            two.health(Reading::MOfN, &[X, X, MISSING], 2),
            Health::Unhealthy
        );
        assert_eq!(
            two.health(Reading::LatestN, &[O, X, X], 2),
            Health::Unhealthy
        );
    }

    #[test]
    fn the_model_uses_the_defaults_of_the_canary() {
        assert_eq!(PROBE_TIMEOUT_MS, crate::canary::config::DEFAULT_TIMEOUT_MS);
        assert_eq!(Chain::template().timing.check(), Ok(()));
        // A burst of up to 3 is what the rule tolerates with 6 rounds.
        let chain = Chain::template();
        assert_eq!(chain.rule.tolerated_burst(PROBES_PER_INVOCATION), 3);
        // The Sum of a majority: ties (one zone of two) are healthy.
        assert!(!Alarm::TEMPLATE.breaching(0.0) && Alarm::TEMPLATE.breaching(1.0));
    }

    #[test]
    fn every_timing_figure_holds_for_every_arrival_and_offset_under_both_readings() {
        let chain = Chain::template();
        for reading in READINGS {
            let (low, high, all) = extremes(&chain, &|c, a, o| failover_seconds(c, reading, a, o));
            assert!(
                all && high <= FAILOVER_BUDGET_S,
                "{reading:?}: {low} {high}"
            );
            let (back_low, _, all) = extremes(&chain, &|c, a, o| {
                failback_seconds(c, reading, a, o, History::Known)
            });
            assert!(all && back_low > high, "{reading:?}: failback {back_low}");
            assert!(silence_seconds(&chain, reading).is_some(), "{reading:?}");
        }
        // The figures docs/failover.md gives once are the same under both readings.
        let both: Vec<_> = READINGS
            .iter()
            .map(|r| extremes(&chain, &|c, a, o| failover_seconds(c, *r, a, o)))
            .collect();
        assert_eq!(both[0], both[1]);
    }

    #[test]
    fn the_binomial_tail_matches_counting_every_outcome_of_a_minute() {
        let rule = Chain::template().rule;
        for p in [0.001_f64, 0.01, 0.02, 0.1, 0.5] {
            let brute: f64 = (0u32..1 << PROBES_PER_INVOCATION)
                .filter(|bits| !rule.healthy(PROBES_PER_INVOCATION - bits.count_ones()))
                .map(|bits| {
                    let f = bits.count_ones() as i32;
                    p.powi(f) * (1.0 - p).powi(6 - f)
                })
                .sum();
            let model = bad_minute_probability(&rule, PROBES_PER_INVOCATION, p);
            assert!(
                (brute - model).abs() <= 1e-15 * brute.max(1e-300),
                "{p}: {brute} {model}"
            );
        }
    }

    #[test]
    fn the_defaults_fail_over_falsely_less_than_once_a_month_at_two_percent() {
        let chain = Chain::template();
        assert!(false_failovers_per_month(&chain, 0.01) < 0.01);
        assert!(false_failovers_per_month(&chain, 0.02) < 1.0);
    }

    #[test]
    fn the_docs_show_the_models_figures() {
        // The failover figures are in docs/failover.md, the canary's Lambda
        // cost in docs/operations.md ("What it costs").
        let docs = [
            include_str!("../../../docs/failover.md"),
            include_str!("../../../docs/operations.md"),
        ];
        let figures = documented_figures();
        for figure in &figures {
            assert!(
                docs.iter().any(|doc| doc.contains(figure.as_str())),
                "docs/failover.md and docs/operations.md lack {figure}; the model's figures: {figures:?}"
            );
        }
    }

    fn reading() -> impl Strategy<Value = Reading> {
        prop_oneof![Just(Reading::MOfN), Just(Reading::LatestN)]
    }

    /// An arrival for each due minute, within the Scheduler's window or up
    /// to the grace after it.
    fn arrivals() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(0u64..67_000, MINUTES as usize)
    }

    proptest! {
        #[test]
        fn one_failed_probe_never_fails_over(
            reading in reading(),
            arrivals in arrivals(),
            zone_count in 1usize..4,
            at in 0u64..MINUTES * PERIOD_MS,
        ) {
            let chain = Chain::template();
            let failed = at - at % PROBE_INTERVAL_MS;
            let arrival = |s: u64| arrivals[s as usize];
            let probe = |t: u64| t - t % PROBE_INTERVAL_MS != failed;
            let zones: Vec<Zone> = (0..zone_count)
                .map(|_| Zone { arrival: &arrival, probe_ok: &probe, publishes: &|_| true, history: History::Known })
                .collect();
            let health = run(&chain, &zones, &|_| None, reading);
            prop_assert!(settled(&health).iter().all(|h| h.is_healthy()), "{:?}", health);
        }

        #[test]
        fn a_burst_of_up_to_three_failed_probes_never_fails_over(
            reading in reading(),
            arrivals in arrivals(),
            first in 0u64..(MINUTES - 1) * 6,
            extra in 0u64..3,
        ) {
            // Every zone sees the same burst: consecutive rounds, wherever they
            // fall across minute boundaries (and a late first round with them).
            let chain = Chain::template();
            let from = first * PROBE_INTERVAL_MS;
            let to = from + (extra + 1) * PROBE_INTERVAL_MS;
            let arrival = |s: u64| arrivals[s as usize];
            let probe = |t: u64| !(from..to).contains(&(t - t % PROBE_INTERVAL_MS));
            let zones = [
                Zone { arrival: &arrival, probe_ok: &probe, publishes: &|_| true, history: History::Known },
                Zone { arrival: &|_| 0, probe_ok: &probe, publishes: &|_| true, history: History::Known },
            ];
            let health = run(&chain, &zones, &|_| None, reading);
            prop_assert!(settled(&health).iter().all(|h| h.is_healthy()), "{:?}", health);
        }

        #[test]
        fn a_full_outage_fails_over_within_180_s_for_every_schedule_phase(
            reading in reading(),
            arrival in 0u64..67_000,
            offset in 0u64..PERIOD_MS,
        ) {
            let seconds = failover_seconds(&Chain::template(), reading, arrival, offset);
            prop_assert!(matches!(seconds, Some(s) if s <= FAILOVER_BUDGET_S), "{:?}", seconds);
        }

        #[test]
        fn a_full_outage_fails_over_whatever_each_invocations_arrival(
            reading in reading(),
            arrivals in arrivals(),
            offset in 0u64..PERIOD_MS,
        ) {
            let chain = Chain::template();
            let start = HISTORY_MINUTES * PERIOD_MS + offset;
            let arrival = |s: u64| arrivals[s as usize];
            let zone = Zone { arrival: &arrival, probe_ok: &|t| t < start, publishes: &|_| true, history: History::Known };
            let health = run(&chain, &[zone], &|_| None, reading);
            let seconds = Chain::first_change(&health, start, false);
            prop_assert!(matches!(seconds, Some(s) if s <= FAILOVER_BUDGET_S), "{:?}", seconds);
        }

        #[test]
        fn canaries_that_stop_publishing_fail_over(
            reading in reading(),
            zone_count in 1usize..4,
            stop in 3u64..MINUTES - 6,
        ) {
            let chain = Chain::template();
            let publishes = |m: u64| m < stop;
            let zones: Vec<Zone> = (0..zone_count)
                .map(|_| Zone { arrival: &|_| 0, probe_ok: &|_| true, publishes: &publishes, history: History::Known })
                .collect();
            let health = run(&chain, &zones, &|_| None, reading);
            prop_assert!(health[stop as usize - 1].is_healthy());
            // Within N + 2 silent minutes (M of N), or at once (latest N), and for good.
            let within = stop as usize + EVALUATION_PERIODS + 1;
            prop_assert!(health[within..].iter().all(|h| *h == Health::InsufficientData), "{:?}", health);
        }

        #[test]
        fn one_zone_alone_never_fails_the_region_over(
            reading in reading(),
            arrivals in arrivals(),
            zone_count in 2usize..=6,
        ) {
            // The first zone's probes all fail (its subnet lost its route), the
            // others' all succeed.
            let chain = Chain::template();
            let arrival = |s: u64| arrivals[s as usize];
            let mut zones = vec![Zone { arrival: &arrival, probe_ok: &|_| false, publishes: &|_| true, history: History::Known }];
            for _ in 1..zone_count {
                zones.push(Zone { arrival: &arrival, probe_ok: &|_| true, publishes: &|_| true, history: History::Known });
            }
            let health = run(&chain, &zones, &|_| None, reading);
            prop_assert!(settled(&health).iter().all(|h| h.is_healthy()), "{:?}", health);
        }

        #[test]
        fn the_override_fails_the_region_out_and_back_whatever_the_zones_vote(
            reading in reading(),
            outcomes in proptest::collection::vec(any::<bool>(), 1..=6),
            from in 2u64..20,
            length in 1u64..10,
            keep_in in any::<bool>(),
        ) {
            // Each zone healthy or down throughout; the operator publishes the
            // override every minute of [from, from + length), then stops.
            let chain = Chain::template();
            let value = if keep_in { -OVERRIDE_VALUE } else { OVERRIDE_VALUE };
            let probes: Vec<Box<dyn Fn(u64) -> bool>> =
                outcomes.iter().map(|ok| { let ok = *ok; Box::new(move |_| ok) as Box<dyn Fn(u64) -> bool> }).collect();
            let zones: Vec<Zone> = probes
                .iter()
                .map(|p| Zone { arrival: &|_| 0, probe_ok: p.as_ref(), publishes: &|_| true, history: History::Known })
                .collect();
            let window = from..from + length;
            let overrides = |m: u64| window.contains(&m).then_some(value);
            let with = run(&chain, &zones, &overrides, reading);
            let without = run(&chain, &zones, &|_| None, reading);
            for m in 2..MINUTES as usize {
                let expected = if window.contains(&(m as u64)) { keep_in } else { without[m].is_healthy() };
                prop_assert_eq!(with[m].is_healthy(), expected, "minute {}", m);
            }
        }

        #[test]
        fn failback_takes_longer_than_any_failover(
            reading in reading(),
            arrival in 0u64..67_000,
            down in 0..PERIOD_MS,
            up in 0..PERIOD_MS,
        ) {
            let chain = Chain::template();
            let over = failover_seconds(&chain, reading, arrival, down);
            let back = failback_seconds(&chain, reading, arrival, up, History::Known);
            prop_assert!(matches!((over, back), (Some(o), Some(b)) if b > o), "{:?} {:?}", over, back);
        }
    }
}

//! The minute decision's settings, read at cold start beside the endpoints
//! (`CanaryConfig`), and checked against them: every round of a minute must
//! end in time to publish within it.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `SUCCESS_THRESHOLD` | share of a minute's probes an endpoint needs to be healthy | `0.5` |
//! | `FAILBACK_MINUTES` | good minutes in a row before the vote turns healthy | `3` |
//! | `STACK_NAME` | the `Stack` dimension of the region metrics | none |
//! | `CANARY_MINUTE_MS` | the minute's length, for tests only | `60000` |
//!
//! `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda) is the `FunctionName`
//! dimension of the per-function detail, which the hold reads back.

use std::time::Duration;

use super::config::CanaryConfig;
use super::decision::Rule;
use super::minute::Timing;
use crate::config::{ConfigError, Vars};
use crate::fields::shorten;

pub const DEFAULT_SUCCESS_THRESHOLD: f64 = 0.5;
pub const DEFAULT_FAILBACK_MINUTES: u64 = 3;
pub const MINUTE: Duration = Duration::from_secs(60);

/// Who publishes, as metric dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `Stack` of the region metrics (the region alarm's dimension).
    pub stack: Option<String>,
    /// `FunctionName` of the per-function detail.
    pub function: Option<String>,
}

/// How minutes are laid out and decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub timing: Timing,
    pub rule: Rule,
    pub identity: Identity,
}

impl Settings {
    pub fn from_env(config: &CanaryConfig) -> Result<Settings, ConfigError> {
        Self::from_vars(&Vars(|name: &str| std::env::var(name).ok()), config)
    }

    pub fn from_vars<F: Fn(&str) -> Option<String>>(
        vars: &Vars<F>,
        config: &CanaryConfig,
    ) -> Result<Settings, ConfigError> {
        let minute = match vars.number("CANARY_MINUTE_MS", 1000..=60_000)? {
            Some(ms) if 60_000 % ms != 0 || ms % 1000 != 0 => {
                return Err(ConfigError::new(
                    "CANARY_MINUTE_MS",
                    format!(
                        "{ms} is not a whole number of seconds that divides 60000 (it exists for tests; leave it unset)"
                    ),
                ));
            }
            Some(ms) => Duration::from_millis(ms),
            None => MINUTE,
        };
        let threshold = match vars.get("SUCCESS_THRESHOLD") {
            None => DEFAULT_SUCCESS_THRESHOLD,
            Some(text) => match text.parse::<f64>() {
                Ok(t) if t > 0.0 && t <= 1.0 => t,
                _ => {
                    return Err(ConfigError::new(
                        "SUCCESS_THRESHOLD",
                        format!(
                            "expected a share of the probes above 0 and at most 1, such as 0.5, got \"{}\"",
                            shorten(&text)
                        ),
                    ));
                }
            },
        };
        let failback = vars
            .number("FAILBACK_MINUTES", 1..=10)?
            .unwrap_or(DEFAULT_FAILBACK_MINUTES) as u32;
        let (longest, which) = config
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.timeout, i))
            .max()
            .unwrap_or_default();
        let timing = Timing {
            minute,
            rounds: config.probes_per_invocation,
            interval: config.probe_interval,
            round_length: longest,
        };
        timing.check().map_err(|why| {
            ConfigError::new(
                "PROBES_PER_INVOCATION",
                format!("{why} (the longest timeout is CANARY_TARGETS[{which}].timeout_ms): every round of a minute must end in time to publish within it"),
            )
        })?;
        let stack = vars.get("STACK_NAME");
        if let Some(name) = &stack
            && name.len() > 255
        {
            return Err(ConfigError::new(
                "STACK_NAME",
                format!("\"{}\" is longer than 255 characters", shorten(name)),
            ));
        }
        Ok(Settings {
            timing,
            rule: Rule::new(timing.rounds, threshold, failback),
            identity: Identity {
                stack,
                function: vars.get("AWS_LAMBDA_FUNCTION_NAME"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("CANARY_TARGETS".into()).or_insert_with(|| {
            r#"[{"name": "a", "url": "https://a.example/"}, {"name": "b", "url": "https://b.example/", "timeout_ms": 2000}]"#.into()
        });
        let vars = Vars(|name: &str| map.get(name).cloned());
        let config = CanaryConfig::from_vars(&vars)?;
        Settings::from_vars(&vars, &config)
    }

    #[test]
    fn the_template_defaults_fit_and_name_who_publishes() {
        let s = settings(&[
            ("PROBES_PER_INVOCATION", "6"),
            ("PROBE_INTERVAL_MS", "10000"),
            ("STACK_NAME", "tether"),
            ("AWS_LAMBDA_FUNCTION_NAME", "tether-HealthCanaryFunction-x"),
        ])
        .unwrap();
        assert_eq!(s.timing.minute, MINUTE);
        assert_eq!(s.timing.round_length, Duration::from_secs(3));
        assert_eq!((s.rule.required, s.rule.failback_minutes), (3, 3));
        assert_eq!(s.identity.stack.as_deref(), Some("tether"));
        assert_eq!(
            s.identity.function.as_deref(),
            Some("tether-HealthCanaryFunction-x")
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, location, needle) in [
            (
                vec![("SUCCESS_THRESHOLD", "0")],
                "SUCCESS_THRESHOLD",
                "\"0\"",
            ),
            (
                vec![("SUCCESS_THRESHOLD", "half")],
                "SUCCESS_THRESHOLD",
                "half",
            ),
            (
                vec![("FAILBACK_MINUTES", "0")],
                "FAILBACK_MINUTES",
                "1 to 10",
            ),
            (
                vec![("CANARY_MINUTE_MS", "7000")],
                "CANARY_MINUTE_MS",
                "divides 60000",
            ),
            (
                vec![("CANARY_MINUTE_MS", "1500")],
                "CANARY_MINUTE_MS",
                "whole number of seconds",
            ),
            (
                vec![
                    ("PROBES_PER_INVOCATION", "6"),
                    ("PROBE_INTERVAL_MS", "12000"),
                ],
                "PROBES_PER_INVOCATION",
                "CANARY_TARGETS[0].timeout_ms",
            ),
        ] {
            let err = settings(&vars).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(err.problem.contains(needle), "{err}");
        }
    }

    #[test]
    fn a_short_minute_for_tests_still_has_to_hold_its_rounds() {
        let s = settings(&[
            ("CANARY_MINUTE_MS", "3000"),
            ("PROBES_PER_INVOCATION", "2"),
            ("PROBE_INTERVAL_MS", "1000"),
            (
                "CANARY_TARGETS",
                r#"[{"name": "a", "url": "http://a.example/", "timeout_ms": 500}]"#,
            ),
        ])
        .unwrap();
        assert_eq!(s.timing.minute, Duration::from_secs(3));
        let err = settings(&[("CANARY_MINUTE_MS", "3000")]).unwrap_err();
        assert!(err.problem.contains("4000 ms"), "{err}");
    }
}

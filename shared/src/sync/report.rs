//! What a run did: the invocation's response, its log lines and its metrics.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use lambda_runtime::Diagnostic;
use serde::Serialize;

use super::mapping::{Mapping, MetricsDetail, Source, TargetGroupArn};
use super::source::Observed;
use crate::aws::AwsError;
use crate::fields::FieldError;
use crate::metrics::Datum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The source: DNS, or the EC2/ELB calls that list interfaces.
    Source,
    /// The group's tags.
    Tags,
    Elb,
    S3,
    /// A state object this build may not touch.
    State,
    StateConflict,
    Deadline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingError {
    pub kind: ErrorKind,
    /// The AWS error code or DNS failure, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl MappingError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            message: message.into(),
        }
    }

    pub fn aws(kind: ErrorKind, e: &AwsError) -> Self {
        Self {
            kind,
            code: e.code.clone(),
            message: e.to_string(),
        }
    }
}

/// What one mapping's run did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingReport {
    pub source: Source,
    pub target_group_arn: TargetGroupArn,
    pub port: u16,
    /// The addresses the source gave.
    pub resolved: Vec<IpAddr>,
    /// Every DNS answer was full: the name may have more addresses.
    pub saturated: bool,
    pub registered: Vec<SocketAddr>,
    pub deregistered: Vec<SocketAddr>,
    /// Targets counting down to deregistration, with their absences.
    pub pending: BTreeMap<SocketAddr, u32>,
    /// Due for deregistration but held back by `max_deregister_percent`.
    pub held_back: Vec<SocketAddr>,
    /// Registered targets in the group after the run's changes, when the
    /// group was read.
    pub targets: Option<usize>,
    /// The group was read this run (`DescribeTargetHealth`). A quiet group
    /// out of its turn is not.
    pub described: bool,
    /// Due this run but over its share of ELB's Describe rate: the next
    /// run reads it first. Not a failure.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MappingError>,
    /// Whether the mapping publishes its own metrics.
    #[serde(skip)]
    pub metrics: MetricsDetail,
}

impl MappingReport {
    pub fn new(m: &Mapping, observed: Option<&Observed>) -> Self {
        let mut report = Self {
            source: m.source.clone(),
            target_group_arn: m.target_group_arn.clone(),
            port: m.port,
            resolved: Vec::new(),
            saturated: false,
            registered: Vec::new(),
            deregistered: Vec::new(),
            pending: BTreeMap::new(),
            held_back: Vec::new(),
            targets: None,
            described: false,
            deferred: false,
            note: None,
            error: None,
            metrics: m.metrics,
        };
        if let Some(o) = observed {
            report.resolved = o
                .resolution
                .addrs()
                .into_iter()
                .flatten()
                .copied()
                .collect();
            report.saturated = o.saturated;
            if o.saturated {
                report.note = Some(super::source::saturation_note(m));
            }
        }
        report
    }

    pub fn fail(&mut self, error: MappingError) {
        // The first cause is the one to read.
        if self.error.is_none() {
            self.error = Some(error);
        }
    }
}

/// A target group whose tags could not be read into a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupError {
    pub target_group_arn: TargetGroupArn,
    pub error: FieldError,
}

/// What the whole run did; the invocation's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub mappings: Vec<MappingReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_tags: Vec<GroupError>,
    /// Discovery by tag failed: tagged groups were not synced this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_error: Option<MappingError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_error: Option<String>,
}

impl SyncReport {
    /// One line per failure: which mapping, group or step, and why.
    pub fn failures(&self) -> Vec<String> {
        let mappings = self.mappings.iter().filter_map(|m| {
            m.error.as_ref().map(|e| {
                format!(
                    "{} -> {}:{}: {}",
                    m.source, m.target_group_arn, m.port, e.message
                )
            })
        });
        mappings
            .chain(self.bad_tags.iter().map(|g| g.error.to_string()))
            .chain(
                self.discovery_error
                    .iter()
                    .map(|e| format!("discovery: {}", e.message)),
            )
            .chain(self.metrics_error.iter().map(|e| format!("metrics: {e}")))
            .collect()
    }

    /// Failed mappings, counting a failed discovery as one (the tagged
    /// groups it would have found are not synced).
    pub fn failed_mappings(&self) -> usize {
        self.mappings.iter().filter(|m| m.error.is_some()).count()
            + self.bad_tags.len()
            + usize::from(self.discovery_error.is_some())
    }

    /// The fleet totals (dimension `FunctionName`, a fixed set however large
    /// the fleet) and the metrics of the mappings that publish their own:
    /// every mapping with `all_detailed`, else those tagged `detailed`.
    pub fn metric_data(&self, function_name: Option<&str>, all_detailed: bool) -> Vec<Datum> {
        let mut data: Vec<Datum> = self
            .mappings
            .iter()
            .filter(|m| all_detailed || m.metrics == MetricsDetail::Detailed)
            .flat_map(|m| mapping_data(m, self.dry_run))
            .collect();
        if let Some(name) = function_name {
            data.extend(self.fleet_data(name));
        }
        data
    }

    /// Target groups whose every mapping synced (read and left equal to
    /// its source, or quiet and not its turn).
    pub fn synced_groups(&self) -> usize {
        let mut groups: BTreeMap<&TargetGroupArn, bool> = BTreeMap::new();
        for m in &self.mappings {
            *groups.entry(&m.target_group_arn).or_insert(true) &= m.error.is_none() && !m.deferred;
        }
        groups.values().filter(|synced| **synced).count()
    }

    /// Target groups deferred to the next run (over the Describe budget).
    pub fn deferred_groups(&self) -> usize {
        let groups: std::collections::BTreeSet<&TargetGroupArn> = self
            .mappings
            .iter()
            .filter(|m| m.deferred)
            .map(|m| &m.target_group_arn)
            .collect();
        groups.len()
    }

    /// Target groups read this run.
    pub fn described_groups(&self) -> usize {
        let groups: std::collections::BTreeSet<&TargetGroupArn> = self
            .mappings
            .iter()
            .filter(|m| m.described)
            .map(|m| &m.target_group_arn)
            .collect();
        groups.len()
    }

    fn fleet_data(&self, function_name: &str) -> Vec<Datum> {
        let dims = [("FunctionName", function_name.to_owned())];
        let total = |f: fn(&MappingReport) -> usize| self.mappings.iter().map(f).sum::<usize>();
        let mut data = vec![
            Datum::count("FailedMappings", &dims, self.failed_mappings()),
            Datum::count("SyncedGroups", &dims, self.synced_groups()),
            Datum::count(
                "SaturatedMappings",
                &dims,
                total(|m| usize::from(m.saturated)),
            ),
            Datum::count("HeldBackTargets", &dims, total(|m| m.held_back.len())),
            Datum::count("PendingDeregistrations", &dims, total(|m| m.pending.len())),
            Datum::count("DeferredGroups", &dims, self.deferred_groups()),
        ];
        if !self.dry_run {
            data.extend(changes(
                &dims,
                total(|m| m.registered.len()),
                total(|m| m.deregistered.len()),
            ));
        }
        data
    }
}

/// Counters of changes, published only when something changed: a quiet
/// run (or group) adds no metric-hours for them.
fn changes(dims: &[(&'static str, String)], registered: usize, deregistered: usize) -> Vec<Datum> {
    [
        ("Registrations", registered),
        ("Deregistrations", deregistered),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| Datum::count(name, dims, n))
    .collect()
}

/// One mapping's own metrics. A dry run publishes nothing that claims a
/// change.
fn mapping_data(r: &MappingReport, dry_run: bool) -> Vec<Datum> {
    let dims = [
        ("TargetGroup", r.target_group_arn.resource().to_owned()),
        ("Source", r.source.to_string()),
    ];
    let mut data = vec![
        Datum::count("Errors", &dims, usize::from(r.error.is_some())),
        Datum::count("Saturated", &dims, usize::from(r.saturated)),
    ];
    if !r.resolved.is_empty() {
        data.push(Datum::count("ResolvedAddresses", &dims, r.resolved.len()));
    }
    if let Some(targets) = r.targets {
        data.extend([
            Datum::count("PendingDeregistrations", &dims, r.pending.len()),
            Datum::count("HeldBack", &dims, r.held_back.len()),
        ]);
        if !dry_run {
            // The group as it is after the changes this run made.
            data.push(Datum::count("RegisteredTargets", &dims, targets));
            data.extend(changes(&dims, r.registered.len(), r.deregistered.len()));
        }
    }
    data
}

/// The invocation failed; carries the full report.
#[derive(thiserror::Error)]
#[error("{}", self.summary())]
pub struct SyncFailed(pub SyncReport);

/// The runtime logs a failed invocation's error with `Debug`: make that the
/// readable summary rather than a dump of the report.
impl std::fmt::Debug for SyncFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl SyncFailed {
    fn summary(&self) -> String {
        let r = &self.0;
        format!(
            "{} of {} mappings failed{}: {}",
            r.failed_mappings(),
            r.mappings.len() + r.bad_tags.len(),
            if r.metrics_error.is_some() {
                ", metrics not published"
            } else {
                ""
            },
            r.failures().join("; ")
        )
    }
}

impl From<SyncFailed> for Diagnostic {
    fn from(e: SyncFailed) -> Self {
        Diagnostic {
            error_type: "TargetSyncFailed".into(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::mapping::Settings;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Every fleet total: a fixed set, whatever the fleet.
    const FLEET: [&str; 8] = [
        "FailedMappings",
        "SyncedGroups",
        "SaturatedMappings",
        "HeldBackTargets",
        "PendingDeregistrations",
        "DeferredGroups",
        "Registrations",
        "Deregistrations",
    ];

    /// A group's report: `n` its number, then what the run did to it.
    fn report(
        n: u32,
        registered: u8,
        deregistered: u8,
        failed: bool,
        detailed: bool,
    ) -> MappingReport {
        let arn = format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/g{n}/50dc6c495c0c9188"
        );
        let settings = Settings {
            metrics: if detailed {
                MetricsDetail::Detailed
            } else {
                MetricsDetail::Fleet
            },
            ..Settings::default()
        };
        let m = Mapping::new(
            Source::Dns("a.example.com".into()),
            arn.parse().expect("arn"),
            80,
            settings,
        );
        let mut r = MappingReport::new(&m, None);
        let addr = |i: u8| SocketAddr::from(([10, 0, 0, i], 80));
        r.registered = (0..registered).map(addr).collect();
        r.deregistered = (0..deregistered).map(|i| addr(i + 100)).collect();
        r.targets = Some(usize::from(registered));
        if failed {
            r.fail(MappingError::new(ErrorKind::Elb, "throttled"));
        }
        r
    }

    fn run(mappings: Vec<MappingReport>) -> SyncReport {
        SyncReport {
            dry_run: false,
            mappings,
            bad_tags: Vec::new(),
            discovery_error: None,
            metrics_error: None,
        }
    }

    proptest! {
        #[test]
        fn fleet_totals_are_a_fixed_set_whatever_the_fleet(
            groups in proptest::collection::vec((0u8..4, 0u8..4, any::<bool>()), 0..60),
        ) {
            let reports = groups
                .iter()
                .enumerate()
                .map(|(n, (reg, dereg, failed))| report(n as u32, *reg, *dereg, *failed, false))
                .collect();
            let data = run(reports).metric_data(Some("target-sync"), false);
            prop_assert!(data.len() <= FLEET.len());
            for d in &data {
                prop_assert!(FLEET.contains(&d.name), "{} is not a fleet total", d.name);
                prop_assert_eq!(&d.dimensions, &vec![("FunctionName", "target-sync".to_owned())]);
            }
            let registered: u32 = groups.iter().map(|(r, _, _)| u32::from(*r)).sum();
            let published: Vec<f64> = data
                .iter()
                .filter(|d| d.name == "Registrations")
                .map(|d| d.values[0].0)
                .collect();
            // A counter of changes only when something changed.
            let expected: Vec<f64> = (registered > 0).then_some(f64::from(registered)).into_iter().collect();
            prop_assert_eq!(published, expected);
        }
    }

    #[test]
    fn a_group_tagged_detailed_adds_its_own_and_all_detailed_adds_every_group() {
        let reports = vec![report(1, 0, 0, false, false), report(2, 1, 0, false, true)];
        let own = |all| -> BTreeSet<String> {
            run(reports.clone())
                .metric_data(Some("f"), all)
                .iter()
                .flat_map(|d| d.dimensions.clone())
                .filter(|(k, _)| *k == "TargetGroup")
                .map(|(_, v)| v)
                .collect()
        };
        let g = |n| format!("targetgroup/g{n}/50dc6c495c0c9188");
        assert_eq!(own(false), BTreeSet::from([g(2)]));
        assert_eq!(own(true), BTreeSet::from([g(1), g(2)]));
    }

    #[test]
    fn a_group_is_synced_only_when_all_its_mappings_are() {
        let mut other_port = report(1, 0, 0, true, false);
        other_port.port = 443;
        let r = run(vec![
            report(1, 0, 0, false, false),
            other_port,
            report(2, 0, 0, false, false),
        ]);
        assert_eq!(r.synced_groups(), 1);
        assert_eq!(r.failed_mappings(), 1);
    }
}

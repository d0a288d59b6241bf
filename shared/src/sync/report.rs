//! What a run did: the invocation's response, its log lines and its metrics.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use lambda_runtime::Diagnostic;
use serde::Serialize;

use super::mapping::{Mapping, Source, TargetGroupArn};
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
    /// Registered targets in the group after the run, when known.
    pub targets: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MappingError>,
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
            note: None,
            error: None,
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

    /// The per-run metrics (dimension `FunctionName`) and, with
    /// `per_mapping`, each mapping's.
    pub fn metric_data(&self, function_name: Option<&str>, per_mapping: bool) -> Vec<Datum> {
        let mut data: Vec<Datum> = self
            .mappings
            .iter()
            .filter(|_| per_mapping)
            .flat_map(|m| mapping_data(m, self.dry_run))
            .collect();
        if let Some(name) = function_name {
            let dims = [("FunctionName", name.to_owned())];
            let synced = self.mappings.iter().filter(|m| m.error.is_none()).count();
            let saturated = self.mappings.iter().filter(|m| m.saturated).count();
            let held: usize = self.mappings.iter().map(|m| m.held_back.len()).sum();
            data.extend([
                Datum::count("FailedMappings", &dims, self.failed_mappings()),
                Datum::count("SyncedMappings", &dims, synced),
                Datum::count("SaturatedMappings", &dims, saturated),
                Datum::count("HeldBackTargets", &dims, held),
            ]);
        }
        data
    }
}

/// A dry run publishes nothing that claims a change.
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
            data.extend([
                Datum::count("RegisteredTargets", &dims, targets),
                Datum::count("Registrations", &dims, r.registered.len()),
                Datum::count("Deregistrations", &dims, r.deregistered.len()),
            ]);
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

//! The target-sync engine: one run over every mapping.
//!
//! Per mapping: resolve (once per distinct name), read the target group and
//! the state, plan, register, deregister, write the state conditionally
//! (re-reading and re-planning once on a conflict), then publish metrics for
//! all mappings together. One mapping's failure never stops the others; the
//! run reports every failure at the end so that the invocation fails.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use futures_util::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use tokio::time::timeout_at;
use tracing::{error, info, warn};

use crate::aws::{AwsError, s3_client};
use crate::config::SyncConfig;
use crate::deadline::{RESPONSE_MARGIN, lambda_deadline};
use crate::dns::{HickoryDns, Lookup, Resolved, resolve};
use crate::elb::{Elb, TargetGroups};
use crate::mapping::{Mapping, RecordKind, TargetGroupArn};
use crate::metrics::{CloudWatch, Datum, Metrics};
use crate::plan::{Resolution, plan};
use crate::state::Prior;
use crate::store::{S3Store, SaveError, StateStore, Version};

/// Mappings synced at the same time (AWS API rate limits are per account).
const CONCURRENT_MAPPINGS: usize = 16;
/// Of that margin, what publishing the metrics may take.
const PUBLISH_TIME: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Dns,
    Elb,
    S3,
    StateConflict,
    Deadline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingError {
    pub kind: ErrorKind,
    pub message: String,
}

/// What one mapping's run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingReport {
    pub dns_name: String,
    pub target_group_arn: TargetGroupArn,
    pub port: u16,
    /// The addresses DNS gave.
    pub resolved: Vec<IpAddr>,
    /// Targets registered by this run.
    pub registered: Vec<SocketAddr>,
    /// Targets deregistered by this run.
    pub deregistered: Vec<SocketAddr>,
    /// Targets counting down to deregistration, with their counts.
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
    fn new(m: &Mapping) -> Self {
        Self {
            dns_name: m.dns_name.clone(),
            target_group_arn: m.target_group_arn.clone(),
            port: m.port,
            resolved: Vec::new(),
            registered: Vec::new(),
            deregistered: Vec::new(),
            pending: BTreeMap::new(),
            held_back: Vec::new(),
            targets: None,
            note: None,
            error: None,
        }
    }

    fn fail(mut self, kind: ErrorKind, message: impl Into<String>) -> Self {
        self.error = Some(MappingError {
            kind,
            message: message.into(),
        });
        self
    }
}

/// What the whole run did; the invocation's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub mappings: Vec<MappingReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_error: Option<String>,
}

impl SyncReport {
    /// One line per failure: which mapping (or the metrics) and why.
    pub fn failures(&self) -> Vec<String> {
        let mappings = self.mappings.iter().filter_map(|m| {
            m.error.as_ref().map(|e| {
                format!(
                    "{} -> {}:{}: {}",
                    m.dns_name, m.target_group_arn, m.port, e.message
                )
            })
        });
        mappings
            .chain(self.metrics_error.iter().map(|e| format!("metrics: {e}")))
            .collect()
    }
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
        let failures = self.0.failures();
        let failed_mappings = self.0.mappings.iter().filter(|m| m.error.is_some()).count();
        format!(
            "{failed_mappings} of {} mappings failed{}: {}",
            self.0.mappings.len(),
            if self.0.metrics_error.is_some() {
                ", metrics not published"
            } else {
                ""
            },
            failures.join("; ")
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

/// The engine with its dependencies, built once per cold start.
pub struct Engine<D, T, S, M> {
    pub config: SyncConfig,
    pub dns: D,
    pub elb: T,
    pub store: S,
    pub metrics: M,
}

pub type AwsEngine = Engine<HickoryDns, Elb, S3Store, CloudWatch>;

impl AwsEngine {
    pub fn from_sdk(config: SyncConfig, sdk: &SdkConfig) -> Result<Self, lambda_runtime::Error> {
        Ok(Engine {
            dns: HickoryDns::new(&config.dns)?,
            elb: Elb::new(aws_sdk_elasticloadbalancingv2::Client::new(sdk)),
            store: S3Store::new(s3_client(sdk), config.state.bucket.clone()),
            metrics: CloudWatch::new(aws_sdk_cloudwatch::Client::new(sdk)),
            config,
        })
    }
}

/// The key of a mapping's state object.
pub fn state_key(prefix: &str, m: &Mapping) -> String {
    format!(
        "{prefix}{}/{}/{}.json",
        m.target_group_arn.resource(),
        m.dns_name,
        m.port
    )
}

type NameKey<'a> = (&'a str, &'a [RecordKind], u32);

fn name_key(m: &Mapping) -> NameKey<'_> {
    (&m.dns_name, &m.record_types, m.max_lookups)
}

impl<D: Lookup, T: TargetGroups, S: StateStore, M: Metrics> Engine<D, T, S, M> {
    /// The Lambda handler: any event (the schedule's) starts one run.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<SyncReport, SyncFailed> {
        let report = self
            .run(lambda_deadline(event.context.deadline, RESPONSE_MARGIN))
            .await;
        // A failure is logged by the runtime (with the summary) and reported
        // to Lambda, so that the Errors metric and an alarm see it.
        if report.failures().is_empty() {
            Ok(report)
        } else {
            Err(SyncFailed(report))
        }
    }

    /// Syncs every mapping and publishes the metrics.
    pub async fn run(&self, deadline: Instant) -> SyncReport {
        let deadline = tokio::time::Instant::from_std(deadline);
        let mappings = &self.config.mappings;

        // Each distinct name is resolved once, for all its mappings.
        let mut keys: Vec<NameKey<'_>> = mappings.iter().map(name_key).collect();
        keys.sort();
        keys.dedup();
        let lookups = keys
            .iter()
            .map(|(name, kinds, max)| resolve(&self.dns, name, kinds, *max));
        let resolved: Option<HashMap<NameKey<'_>, Resolved>> =
            timeout_at(deadline, futures_util::future::join_all(lookups))
                .await
                .ok()
                .map(|all| keys.iter().copied().zip(all).collect());

        let reports: Vec<MappingReport> = futures_util::stream::iter(mappings)
            .map(|m| {
                let resolved = resolved.as_ref().and_then(|r| r.get(&name_key(m)));
                async move {
                    let Some(resolved) = resolved else {
                        return MappingReport::new(m).fail(
                            ErrorKind::Deadline,
                            "resolving did not finish before the deadline",
                        );
                    };
                    match timeout_at(deadline, self.sync_mapping(m, resolved)).await {
                        Ok(report) => report,
                        Err(_) => MappingReport::new(m).fail(
                            ErrorKind::Deadline,
                            "did not finish before the Lambda deadline; the next run takes over",
                        ),
                    }
                }
            })
            .buffered(CONCURRENT_MAPPINGS)
            .collect()
            .await;

        for r in &reports {
            match &r.error {
                None => info!(
                    dns_name = %r.dns_name, target_group = %r.target_group_arn, port = r.port,
                    resolved = r.resolved.len(), registered = ?r.registered,
                    deregistered = ?r.deregistered, pending = ?r.pending, held_back = ?r.held_back,
                    targets = r.targets, dry_run = self.config.dry_run, "mapping synced"
                ),
                Some(e) => error!(
                    dns_name = %r.dns_name, target_group = %r.target_group_arn, port = r.port,
                    kind = ?e.kind, error = %e.message, "mapping failed"
                ),
            }
        }

        let metrics_error = if self.config.metrics.enabled {
            let data: Vec<Datum> = reports.iter().flat_map(metric_data).collect();
            let publish = self.metrics.publish(&self.config.metrics.namespace, &data);
            match timeout_at(deadline + PUBLISH_TIME, publish).await {
                Ok(result) => result.err().map(|e| e.to_string()),
                Err(_) => Some("publishing did not finish before the Lambda deadline".into()),
            }
        } else {
            None
        };
        SyncReport {
            dry_run: self.config.dry_run,
            mappings: reports,
            metrics_error,
        }
    }

    async fn sync_mapping(&self, m: &Mapping, resolved: &Resolved) -> MappingReport {
        let mut report = MappingReport::new(m);
        if let Resolution::Complete(addrs) | Resolution::Partial(addrs) = &resolved.resolution {
            report.resolved = addrs.iter().copied().collect();
        }
        let dns_error = resolved.failure_message(&m.dns_name);
        if resolved.resolution == Resolution::Failed {
            let message =
                dns_error.unwrap_or_else(|| format!("resolving {}: no address", m.dns_name));
            return report.fail(ErrorKind::Dns, message);
        }
        if resolved.saturated {
            warn!(dns_name = %m.dns_name, lookups = resolved.lookups,
                  "every DNS answer was full: the name may have more addresses than seen; no countdown advances this run");
            report.note = Some(format!(
                "all {} answers for {} were full ({} addresses each): it may have more addresses than seen, so no countdown advanced",
                resolved.lookups,
                m.dns_name,
                crate::dns::FULL_ANSWER
            ));
        }
        if let Err((kind, message)) = self.apply(m, resolved, &mut report).await {
            return report.fail(kind, message);
        }
        match dns_error {
            // Addresses were registered, countdowns held: still a failed sync.
            Some(message) => report.fail(ErrorKind::Dns, message),
            None => report,
        }
    }

    async fn apply(
        &self,
        m: &Mapping,
        resolved: &Resolved,
        report: &mut MappingReport,
    ) -> Result<(), (ErrorKind, String)> {
        let key = state_key(&self.config.state.prefix, m);
        let elb_error = |e: AwsError| (ErrorKind::Elb, e.to_string());
        let s3_error = |e: AwsError| (ErrorKind::S3, e.to_string());

        for attempt in 1..=2 {
            let targets = self
                .elb
                .describe(&m.target_group_arn)
                .await
                .map_err(elb_error)?;
            let loaded = self.store.load(&key).await.map_err(s3_error)?;
            if let Prior::Corrupt(e) = &loaded.prior {
                warn!(key, error = %e, "state object is unusable: rebuilding it from the target group, deregistering nothing this run");
                report.note = Some(format!(
                    "state object {key} was unusable ({e}); rebuilt without deregistering"
                ));
            }
            let plan = plan(m, &resolved.resolution, &targets, &loaded.prior);
            let (Some(intent), Some(state)) = (plan.intent, plan.state) else {
                return Ok(()); // a failed resolution never gets here
            };
            report.pending = state.pending.clone();
            report.held_back = plan.held_back.clone();
            report.targets = Some(plan.registered_after);
            if !plan.held_back.is_empty() {
                warn!(key, held_back = ?plan.held_back, max_deregister_percent = m.max_deregister_percent,
                      "deregistrations held back by the percent guard");
            }
            if self.config.dry_run {
                report.registered = plan.register;
                report.deregistered = plan.deregister.iter().map(|t| t.addr).collect();
                return Ok(());
            }
            if let (Some(bytes), Version::ETag(etag)) = (&loaded.unusable, &loaded.version) {
                let aside = self
                    .store
                    .preserve(&key, etag, bytes)
                    .await
                    .map_err(s3_error)?;
                warn!(key, aside, "kept the unusable state object aside");
            }

            // The intent is written first: a conflict shows before the group
            // is touched, and what this run registers is owned before it exists.
            let version = if matches!(&loaded.prior, Prior::Valid(previous) if *previous == intent)
            {
                loaded.version.clone() // nothing changed: no write needed
            } else {
                match self.store.save(&key, &intent, &loaded.version).await {
                    Ok(version) => version,
                    Err(SaveError::Conflict { .. }) if attempt == 1 => {
                        warn!(
                            key,
                            "state changed under this run (another run wrote it): re-reading and re-planning"
                        );
                        continue;
                    }
                    Err(SaveError::Conflict { key }) => {
                        return Err((
                            ErrorKind::StateConflict,
                            format!(
                                "state object {key} kept changing under this run; giving up this mapping until the next run"
                            ),
                        ));
                    }
                    Err(SaveError::Aws(e)) => return Err(s3_error(e)),
                }
            };

            self.elb
                .register(
                    &m.target_group_arn,
                    &plan.register,
                    m.availability_zone.as_deref(),
                )
                .await
                .map_err(elb_error)?;
            report.registered = plan.register;
            self.elb
                .deregister(&m.target_group_arn, &plan.deregister)
                .await
                .map_err(elb_error)?;
            report.deregistered = plan.deregister.iter().map(|t| t.addr).collect();

            // The deregistered targets leave the state. Should this write be
            // lost, the next run drops them anyway: they are no longer registered.
            if state != intent {
                match self.store.save(&key, &state, &version).await {
                    Ok(_) => {}
                    Err(SaveError::Conflict { key }) => {
                        warn!(
                            key,
                            "another run wrote the state after this run's changes; the next run reconciles"
                        );
                    }
                    Err(SaveError::Aws(e)) => return Err(s3_error(e)),
                }
            }
            return Ok(());
        }
        Ok(())
    }
}

fn metric_data(r: &MappingReport) -> Vec<Datum> {
    let dims = [
        ("TargetGroup", r.target_group_arn.resource().to_owned()),
        ("DnsName", r.dns_name.clone()),
    ];
    let mut data = vec![Datum::count(
        "Errors",
        &dims,
        usize::from(r.error.is_some()),
    )];
    if !r.resolved.is_empty() {
        data.push(Datum::count("ResolvedAddresses", &dims, r.resolved.len()));
    }
    if let Some(targets) = r.targets {
        data.extend([
            Datum::count("RegisteredTargets", &dims, targets),
            Datum::count("Registrations", &dims, r.registered.len()),
            Datum::count("Deregistrations", &dims, r.deregistered.len()),
            Datum::count("PendingDeregistrations", &dims, r.pending.len()),
            Datum::count("HeldBack", &dims, r.held_back.len()),
        ]);
    }
    data
}

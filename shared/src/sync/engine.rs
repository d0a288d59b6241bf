//! The target-sync engine: one run over every mapping.
//!
//! 1. Find the mappings: those configured, and the groups tagged to opt in.
//! 2. Observe each distinct source once, each under its own time limit.
//! 3. Per target group, for all its mappings together: read the group once,
//!    read the states, plan, write the intents (conditional writes), register,
//!    deregister, write the final states. A conflict re-reads and re-plans once.
//! 4. Publish the metrics for the whole run.
//!
//! One group's failure never stops the others; the run reports every failure
//! at the end so that the invocation fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
use futures_util::StreamExt;
use futures_util::future::join_all;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tokio::time::timeout_at;
use tracing::{error, info, warn};

use super::config::SyncConfig;
use super::groups::Target;
use super::groups::{BATCH, Elb, TargetGroups};
use super::interfaces::{Ec2Interfaces, Interfaces};
use super::mapping::{Mapping, Source, TargetGroupArn};
use super::plan::{GroupPlan, Input, plan_group, reset_only};
use super::report::{ErrorKind, GroupError, MappingError, MappingReport, SyncFailed, SyncReport};
use super::source::{ObserveKey, Observed, observe, observe_key};
use super::state::{Prior, StateError};
use super::store::{Loaded, S3Store, SaveError, StateStore, Version};
use super::tags::discover;
use crate::aws::s3_client;
use crate::deadline::{RESPONSE_MARGIN, lambda_deadline};
use crate::dns::{HickoryDns, Lookup};
use crate::metrics::{CloudWatch, Metrics};

/// Target groups synced at the same time, and sources observed at the same
/// time (ELB and EC2 rate limits are per account and region).
const CONCURRENT_GROUPS: usize = 8;
/// Sources observed at the same time: DNS queries are cheap, and a source
/// queued behind slow ones must not start too late to finish.
const CONCURRENT_SOURCES: usize = 64;
/// Kept at the end of a group's time to write countdown resets when its
/// target group cannot be read.
const RESET_RESERVE: Duration = Duration::from_secs(3);
/// Of the margin before the Lambda deadline, what publishing may take.
const PUBLISH_TIME: Duration = Duration::from_secs(2);
/// Attempts per ELB or EC2 call: throttling (a bucket of 40 Describe calls
/// refilled at 10 per second) slows a run down rather than failing it.
const API_ATTEMPTS: u32 = 8;

/// The engine with its dependencies, built once per cold start.
pub struct Engine<D, I, T, S, M> {
    pub config: SyncConfig,
    pub dns: D,
    pub interfaces: I,
    pub elb: T,
    pub store: S,
    pub metrics: M,
}

pub type AwsEngine = Engine<HickoryDns, Ec2Interfaces, Elb, S3Store, CloudWatch>;

/// The ELB and EC2 clients of a sync, built for throttling: ELB allows 40
/// Describe calls per account and region, refilled at 10 per second.
/// - Adaptive retries: back off on `Throttling` and pace later calls.
/// - No retry quota: the SDK's default stops retrying after a few dozen
///   throttled calls, and a fleet makes hundreds; the run's deadline bounds
///   the retries instead.
/// - No whole-operation timeout (waiting for the rate limiter is part of an
///   operation); each attempt keeps its own.
pub fn fleet_clients(
    sdk: &SdkConfig,
) -> (aws_sdk_elasticloadbalancingv2::Client, aws_sdk_ec2::Client) {
    let retry = RetryConfig::adaptive()
        .with_max_attempts(API_ATTEMPTS)
        .with_max_backoff(Duration::from_secs(5));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .disable_operation_timeout()
        .build();
    let partition = |name: &'static str| {
        RetryPartition::custom(name)
            .token_bucket(TokenBucket::unlimited())
            .build()
    };
    let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk)
        .retry_config(retry.clone())
        .timeout_config(timeouts.clone())
        .retry_partition(partition("tether-elasticloadbalancing"))
        .build();
    let ec2 = aws_sdk_ec2::config::Builder::from(sdk)
        .retry_config(retry)
        .timeout_config(timeouts)
        .retry_partition(partition("tether-ec2"))
        .build();
    (
        aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
        aws_sdk_ec2::Client::from_conf(ec2),
    )
}

impl AwsEngine {
    pub fn from_sdk(config: SyncConfig, sdk: &SdkConfig) -> Result<Self, lambda_runtime::Error> {
        let (elb, ec2) = fleet_clients(sdk);
        Ok(Engine {
            dns: HickoryDns::new(&config.dns)?,
            interfaces: Ec2Interfaces::new(ec2, elb.clone()),
            elb: Elb::new(elb),
            store: S3Store::new(s3_client(sdk), config.state.bucket.clone()),
            metrics: CloudWatch::new(aws_sdk_cloudwatch::Client::new(sdk)),
            config,
        })
    }
}

/// The key of a mapping's state object (a dry run keeps its own under
/// `dry-run/`).
pub fn state_key(prefix: &str, m: &Mapping, dry_run: bool) -> String {
    let source = match &m.source {
        Source::Dns(name) => name.clone(),
        other => other.to_string(),
    };
    let dry = if dry_run { "dry-run/" } else { "" };
    format!(
        "{prefix}{dry}{}/{source}/{}.json",
        m.target_group_arn.resource(),
        m.port
    )
}

/// The mappings of one run, found in the configuration and by tag.
struct Found {
    mappings: Vec<Mapping>,
    bad_tags: Vec<GroupError>,
    discovery_error: Option<MappingError>,
}

impl<D: Lookup, I: Interfaces, T: TargetGroups, S: StateStore, M: Metrics> Engine<D, I, T, S, M> {
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
        let mut report = self.sync(deadline).await;
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.config.metrics.enabled {
            let data = report.metric_data(
                self.config.function_name.as_deref(),
                self.config.mapping_metrics,
            );
            let publish = self.metrics.publish(&self.config.metrics.namespace, &data);
            report.metrics_error = match timeout_at(deadline + PUBLISH_TIME, publish).await {
                Ok(result) => result.err().map(|e| e.to_string()),
                Err(_) => Some("publishing did not finish before the Lambda deadline".into()),
            };
        }
        report
    }

    /// Syncs every mapping; publishes nothing.
    pub async fn sync(&self, deadline: Instant) -> SyncReport {
        let deadline = tokio::time::Instant::from_std(deadline);
        let found = match timeout_at(deadline, self.find_mappings()).await {
            Ok(found) => found,
            Err(_) => Found {
                mappings: self.config.mappings.clone(),
                bad_tags: Vec::new(),
                discovery_error: Some(MappingError::new(
                    ErrorKind::Deadline,
                    "discovery by tag did not finish before the Lambda deadline",
                )),
            },
        };
        for g in &found.bad_tags {
            error!(target_group = %g.target_group_arn, kind = ?ErrorKind::Tags, error = %g.error, "{GROUP_FAILED}");
        }
        // Sources get half of the time left, each on its own: one slow name
        // fails its own mappings only, and the groups keep time to apply.
        let now = tokio::time::Instant::now();
        let source_deadline = now + deadline.saturating_duration_since(now) / 2;
        let observed = self.observe_all(&found.mappings, source_deadline).await;

        let mut groups: BTreeMap<&TargetGroupArn, Vec<&Mapping>> = BTreeMap::new();
        for m in &found.mappings {
            groups.entry(&m.target_group_arn).or_default().push(m);
        }
        let mut mappings: Vec<MappingReport> = futures_util::stream::iter(groups)
            .map(|(arn, ms)| {
                let observed = &observed;
                async move { self.sync_group(arn, &ms, observed, deadline).await }
            })
            .buffer_unordered(CONCURRENT_GROUPS)
            .flat_map(futures_util::stream::iter)
            .collect()
            .await;
        mappings.sort_by(|a, b| {
            (&a.target_group_arn, a.port, &a.source).cmp(&(&b.target_group_arn, b.port, &b.source))
        });
        for group in mappings.chunk_by(|a, b| a.target_group_arn == b.target_group_arn) {
            log_group(group, self.config.dry_run);
        }
        SyncReport {
            dry_run: self.config.dry_run,
            mappings,
            bad_tags: found.bad_tags,
            discovery_error: found.discovery_error,
            metrics_error: None,
        }
    }

    async fn find_mappings(&self) -> Found {
        let mut found = Found {
            mappings: self.config.mappings.clone(),
            bad_tags: Vec::new(),
            discovery_error: None,
        };
        let Some(prefix) = &self.config.tag_prefix else {
            return found;
        };
        let configured: BTreeSet<TargetGroupArn> = found
            .mappings
            .iter()
            .map(|m| m.target_group_arn.clone())
            .collect();
        match discover(&self.elb, prefix, &configured).await {
            Ok(discovered) => {
                found.mappings.extend(discovered.mappings);
                found.bad_tags = discovered
                    .errors
                    .into_iter()
                    .map(|(target_group_arn, error)| GroupError {
                        target_group_arn,
                        error,
                    })
                    .collect();
            }
            Err(e) => {
                error!(error = %e, "discovery by tag failed: tagged groups are not synced this run");
                found.discovery_error = Some(MappingError::aws(ErrorKind::Elb, &e));
            }
        }
        found
    }

    /// Each distinct source once, each bounded by `deadline`.
    async fn observe_all(
        &self,
        mappings: &[Mapping],
        deadline: tokio::time::Instant,
    ) -> HashMap<ObserveKey, Observed> {
        let mut distinct: HashMap<ObserveKey, &Mapping> = HashMap::new();
        for m in mappings {
            distinct.entry(observe_key(m)).or_insert(m);
        }
        futures_util::stream::iter(distinct)
            .map(|(key, m)| async move {
                let observed =
                    match timeout_at(deadline, observe(&self.dns, &self.interfaces, m)).await {
                        Ok(observed) => observed,
                        Err(_) => Observed::failed(
                            Some("Timeout".into()),
                            format!(
                                "{} did not answer in time (half of the run's time)",
                                m.source
                            ),
                        ),
                    };
                (key, observed)
            })
            .buffer_unordered(CONCURRENT_SOURCES)
            .collect()
            .await
    }

    async fn sync_group(
        &self,
        arn: &TargetGroupArn,
        ms: &[&Mapping],
        observed: &HashMap<ObserveKey, Observed>,
        deadline: tokio::time::Instant,
    ) -> Vec<MappingReport> {
        let views: Vec<&Observed> = ms.iter().map(|m| &observed[&observe_key(m)]).collect();
        let mut reports: Vec<MappingReport> = ms
            .iter()
            .zip(&views)
            .map(|(m, o)| {
                let mut r = MappingReport::new(m, Some(o));
                if let Some(p) = &o.problem {
                    r.fail(MappingError {
                        kind: ErrorKind::Source,
                        code: p.code.clone(),
                        message: p.message.clone(),
                    });
                }
                r
            })
            .collect();
        // Bounded here, so that what was done before the deadline (the
        // registrations already made) stays in the reports.
        let applied = timeout_at(
            deadline,
            self.apply(arn, ms, &views, &mut reports, deadline),
        );
        let error = match applied.await {
            Ok(Ok(())) => return reports,
            Ok(Err(e)) => e,
            Err(_) => MappingError::new(
                ErrorKind::Deadline,
                "did not finish before the Lambda deadline; the next run takes over",
            ),
        };
        for r in &mut reports {
            r.fail(error.clone());
        }
        reports
    }

    /// Plans and applies the group's changes; an error fails every mapping
    /// of the group (a mapping's own problems are already in its report).
    /// The report shows a change once it is made (in a dry run: planned).
    async fn apply(
        &self,
        arn: &TargetGroupArn,
        ms: &[&Mapping],
        views: &[&Observed],
        reports: &mut [MappingReport],
        deadline: tokio::time::Instant,
    ) -> Result<(), MappingError> {
        let keys: Vec<String> = ms
            .iter()
            .map(|m| state_key(&self.config.state.prefix, m, self.config.dry_run))
            .collect();
        let mut written = Written::new();
        for attempt in 1..=2 {
            let targets = self.read_group(arn, ms, views, &keys, deadline).await?;
            let stored = self.load_all(ms, &keys, reports).await;
            let priors = written.priors(&stored);
            let inputs: Vec<Input<'_>> = (0..ms.len())
                .map(|i| Input {
                    mapping: ms[i],
                    resolution: &views[i].resolution,
                    prior: &priors[i],
                })
                .collect();
            let plan = plan_group(&targets, &inputs, self.config.count_absences);
            report_plan(arn, &plan, reports);
            // Intents first: a conflict shows before the group is touched,
            // and what this run registers is owned before it exists.
            let Some(versions) = self
                .write_intents(&keys, &stored, &priors, &plan, &mut written, attempt)
                .await?
            else {
                continue; // a conflict: plan again from what is there now
            };
            if self.config.dry_run {
                // Its own state is written; the group is not touched.
                for (r, p) in reports.iter_mut().zip(&plan.mappings) {
                    (r.registered, r.deregistered) = (p.register.clone(), p.deregister.clone());
                }
                return Ok(());
            }
            self.change_group(arn, ms, &plan, reports).await?;
            return self.write_final(&keys, &versions, &plan).await;
        }
        Ok(())
    }

    /// The group's targets, bounded short of the deadline: a throttled read
    /// must leave time to keep what the sources proved.
    async fn read_group(
        &self,
        arn: &TargetGroupArn,
        ms: &[&Mapping],
        views: &[&Observed],
        keys: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Target>, MappingError> {
        let until = deadline.checked_sub(RESET_RESERVE).unwrap_or(deadline);
        let error = match timeout_at(until, self.elb.describe(arn)).await {
            Ok(Ok(targets)) => return Ok(targets),
            Ok(Err(e)) => MappingError::aws(ErrorKind::Elb, &e),
            Err(_) => MappingError::new(
                ErrorKind::Deadline,
                "reading the target group did not finish before the deadline",
            ),
        };
        self.keep_resets(ms, views, keys).await;
        Err(error)
    }

    /// Writes each changed intent conditionally; `None` after a first
    /// conflict (the caller re-plans), an error after a second.
    async fn write_intents(
        &self,
        keys: &[String],
        stored: &[Loaded],
        priors: &[Prior],
        plan: &GroupPlan,
        written: &mut Written,
        attempt: u32,
    ) -> Result<Option<Vec<Version>>, MappingError> {
        let mut versions = Vec::with_capacity(keys.len());
        for (i, (key, l)) in keys.iter().zip(stored).enumerate() {
            let intent = plan.mappings[i].intent.as_ref();
            let Some(intent) = intent.filter(|t| !matches!(&l.prior, Prior::Valid(s) if s == *t))
            else {
                versions.push(l.version.clone());
                continue;
            };
            self.keep_aside(key, l).await?;
            match self.store.save(key, intent, &l.version).await {
                Ok(version) => {
                    written.insert(i, priors[i].clone(), version.clone());
                    versions.push(version);
                }
                Err(SaveError::Conflict { .. }) if attempt == 1 => {
                    warn!(
                        key,
                        "state changed under this run: re-reading and re-planning"
                    );
                    return Ok(None);
                }
                Err(SaveError::Conflict { key }) => {
                    return Err(MappingError::new(
                        ErrorKind::StateConflict,
                        format!(
                            "state object {key} kept changing under this run; the next run takes over"
                        ),
                    ));
                }
                Err(SaveError::Aws(e)) => return Err(MappingError::aws(ErrorKind::S3, &e)),
            }
        }
        Ok(Some(versions))
    }

    /// Registers (each mapping's new targets, with its zone), then
    /// deregisters; the reports show each change once it is made.
    async fn change_group(
        &self,
        arn: &TargetGroupArn,
        ms: &[&Mapping],
        plan: &GroupPlan,
        reports: &mut [MappingReport],
    ) -> Result<(), MappingError> {
        // Batch by batch, so that a failure half-way reports what was made.
        let elb_error = |e: crate::aws::AwsError| MappingError::aws(ErrorKind::Elb, &e);
        for ((m, p), r) in ms.iter().zip(&plan.mappings).zip(reports.iter_mut()) {
            let zone = m.availability_zone.as_deref();
            for batch in p.register.chunks(BATCH) {
                self.elb
                    .register(arn, batch, zone)
                    .await
                    .map_err(elb_error)?;
                r.registered.extend_from_slice(batch);
            }
        }
        for batch in plan.deregister.chunks(BATCH) {
            self.elb.deregister(arn, batch).await.map_err(elb_error)?;
            for (r, p) in reports.iter_mut().zip(&plan.mappings) {
                let gone = p
                    .deregister
                    .iter()
                    .filter(|t| batch.iter().any(|b| b.addr == **t));
                r.deregistered.extend(gone);
            }
        }
        Ok(())
    }

    /// The deregistered targets leave the state. Should this write be lost,
    /// the next run drops them anyway: they are no longer registered.
    async fn write_final(
        &self,
        keys: &[String],
        versions: &[Version],
        plan: &GroupPlan,
    ) -> Result<(), MappingError> {
        for ((key, version), p) in keys.iter().zip(versions).zip(&plan.mappings) {
            let (Some(intent), Some(state)) = (&p.intent, &p.state) else {
                continue;
            };
            if state == intent {
                continue;
            }
            match self.store.save(key, state, version).await {
                Ok(_) => {}
                Err(SaveError::Conflict { key }) => {
                    warn!(
                        key,
                        "another run wrote the state after this run's changes; the next run reconciles"
                    );
                }
                Err(SaveError::Aws(e)) => return Err(MappingError::aws(ErrorKind::S3, &e)),
            }
        }
        Ok(())
    }

    /// Every mapping's state; one that cannot be read or used is reported
    /// on its mapping and planned as doubt.
    async fn load_all(
        &self,
        ms: &[&Mapping],
        keys: &[String],
        reports: &mut [MappingReport],
    ) -> Vec<Loaded> {
        let loads = keys.iter().zip(ms).map(|(key, m)| async move {
            let loaded = self.store.load(key).await;
            // A dry run starts from the real state the first time.
            match loaded {
                Ok(Loaded {
                    prior: Prior::Fresh,
                    ..
                }) if self.config.dry_run => {
                    let real = state_key(&self.config.state.prefix, m, false);
                    self.store.load(&real).await.map(|l| Loaded {
                        version: Version::Absent,
                        unusable: None,
                        ..l
                    })
                }
                other => other,
            }
        });
        let mut all = Vec::with_capacity(ms.len());
        for ((result, r), key) in join_all(loads).await.into_iter().zip(reports).zip(keys) {
            let loaded = match result {
                Ok(loaded) => loaded,
                Err(e) => {
                    r.fail(MappingError::aws(ErrorKind::S3, &e));
                    Loaded {
                        prior: Prior::Refused(StateError::Unreadable(e.to_string())),
                        version: Version::Absent,
                        unusable: None,
                    }
                }
            };
            match &loaded.prior {
                Prior::Refused(e) if r.error.is_none() => r.fail(MappingError::new(
                    ErrorKind::State,
                    format!("state object {key}: {e}"),
                )),
                Prior::Corrupt(e) => {
                    warn!(key, error = %e, "state object is unusable: rebuilding it, deregistering nothing this run");
                    r.note = Some(format!(
                        "state object {key} was unusable ({e}); rebuilt without deregistering"
                    ));
                }
                _ => {}
            }
            all.push(loaded);
        }
        all
    }

    /// Keeps an unusable object's bytes under another key before it is replaced.
    async fn keep_aside(&self, key: &str, loaded: &Loaded) -> Result<(), MappingError> {
        if let (Some(bytes), Version::ETag(etag)) = (&loaded.unusable, &loaded.version) {
            let aside = self
                .store
                .preserve(key, etag, bytes)
                .await
                .map_err(|e| MappingError::aws(ErrorKind::S3, &e))?;
            warn!(key, aside, "kept the unusable state object aside");
        }
        Ok(())
    }

    /// The group could not be read, but the sources answered: keep what
    /// they proved (a listed address restarts its countdown), best effort.
    async fn keep_resets(&self, ms: &[&Mapping], views: &[&Observed], keys: &[String]) {
        if self.config.dry_run {
            return;
        }
        for ((m, o), key) in ms.iter().zip(views).zip(keys) {
            let Some(seen) = o.resolution.addrs() else {
                continue;
            };
            let Ok(Loaded {
                prior: Prior::Valid(state),
                version,
                ..
            }) = self.store.load(key).await
            else {
                continue;
            };
            let reset = reset_only(&state, seen, m.port);
            if reset != state
                && let Err(e) = self.store.save(key, &reset, &version).await
            {
                warn!(key, error = %e, "could not keep the countdown resets");
            }
        }
    }
}

/// Intents this run wrote: the state each was planned from, and the version
/// written. A re-plan starts again from that state, not from this run's own
/// intent, so no countdown advances twice in one run.
struct Written(HashMap<usize, (Prior, Version)>);

impl Written {
    fn new() -> Self {
        Written(HashMap::new())
    }

    fn insert(&mut self, index: usize, planned_from: Prior, version: Version) {
        self.0.insert(index, (planned_from, version));
    }

    /// What to plan from: the stored state, or, where it is still this
    /// run's own intent, the state that intent was planned from.
    fn priors(&self, stored: &[Loaded]) -> Vec<Prior> {
        stored
            .iter()
            .enumerate()
            .map(|(i, l)| match self.0.get(&i) {
                Some((prior, version)) if *version == l.version => prior.clone(),
                _ => l.prior.clone(),
            })
            .collect()
    }
}

/// What the plan will leave: countdowns, held-back targets, group size.
fn report_plan(arn: &TargetGroupArn, plan: &GroupPlan, reports: &mut [MappingReport]) {
    for (r, p) in reports.iter_mut().zip(&plan.mappings) {
        if let Some(state) = &p.state {
            r.pending = state.pending.clone();
            r.held_back = p.held_back.clone();
            r.targets = Some(plan.registered_after);
        }
        if !p.held_back.is_empty() {
            warn!(target_group = %arn, held_back = ?p.held_back,
                  "deregistrations held back by max_deregister_percent");
        }
    }
}

/// The message of the one log line per target group and run: what the
/// README's Logs Insights queries and the alarms' descriptions point to.
pub const GROUP_SYNCED: &str = "target group synced";
pub const GROUP_FAILED: &str = "target group failed";

/// One line per target group (its mappings are adjacent in `reports`): the
/// per-group detail that the fleet-total metrics leave out.
fn log_group(reports: &[MappingReport], dry_run: bool) {
    let Some(first) = reports.first() else {
        return;
    };
    let join = |f: &dyn Fn(&MappingReport) -> Vec<String>| {
        reports.iter().flat_map(f).collect::<Vec<_>>().join(" ")
    };
    let sources = join(&|r| vec![format!("{}:{}", r.source, r.port)]);
    let registered = join(&|r| r.registered.iter().map(ToString::to_string).collect());
    let deregistered = join(&|r| r.deregistered.iter().map(ToString::to_string).collect());
    let held_back = join(&|r| r.held_back.iter().map(ToString::to_string).collect());
    let count = |f: fn(&MappingReport) -> usize| reports.iter().map(f).sum::<usize>();
    let (resolved, pending) = (count(|r| r.resolved.len()), count(|r| r.pending.len()));
    let targets = reports.iter().filter_map(|r| r.targets).max();
    let saturated = reports.iter().any(|r| r.saturated);
    let arn = &first.target_group_arn;
    match reports.iter().find_map(|r| r.error.as_ref()) {
        None => info!(
            target_group = %arn, sources, resolved, targets, registered, deregistered,
            pending, held_back, saturated, dry_run, "{GROUP_SYNCED}"
        ),
        Some(e) => error!(
            target_group = %arn, sources, resolved, targets, registered, deregistered,
            pending, held_back, saturated, dry_run,
            failed = reports.iter().filter(|r| r.error.is_some()).count(),
            kind = ?e.kind, code = e.code.as_deref(), error = %e.message, "{GROUP_FAILED}"
        ),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

//! The target-sync engine: one run over every mapping.
//!
//! 1. Find the mappings: those configured, and the groups tagged to opt in
//!    (the Resource Groups Tagging API).
//! 2. Observe each distinct source once, each under its own time limit;
//!    `alb:` and `vpce:` sources together, a few EC2 calls for all of them.
//! 3. Read every group's states (a warm container has them already), and
//!    choose the groups to describe within the run's share of ELB's
//!    Describe bucket ([`super::rotation`]).
//! 4. Per described group, for all its mappings together: read the group,
//!    plan, write the intents (conditional writes), register, deregister,
//!    write the final states. A conflict re-reads and re-plans once.
//! 5. Publish the metrics for the whole run.
//!
//! One group's failure never stops the others; the run reports every failure
//! at the end so that the invocation fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use futures_util::StreamExt;
use futures_util::future::join_all;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tokio::time::timeout_at;
use tracing::{error, info, warn};

use super::config::SyncConfig;
use super::groups::{Described, Elb, GroupInfo, TargetGroups};
use super::interfaces::{Accounts, Ec2Interfaces, Interfaces};
use super::mapping::{AlbRef, Mapping, RoleArn, Source, TargetGroupArn};
use super::plan::{Counting, GroupPlan, Input, plan_group, reset_only};
use super::report::{ErrorKind, GroupError, MappingError, MappingReport, SyncFailed, SyncReport};
use super::rotation::{Need, choose};
use super::source::{ObserveKey, Observed, Resolution, from_listing, observe_dns, observe_key};
use super::state::{Prior, StateError, SyncState, needs_write};
use super::store::{CachedStore, Loaded, S3Store, SaveError, StateStore, Version};
use super::tags::discover;
use crate::aws::limits::TARGETS_PER_CALL;
use crate::aws::{SyncClients, s3_client};
use crate::deadline::{RESPONSE_MARGIN, lambda_deadline};
use crate::dns::{HickoryDns, Lookup};
use crate::metrics::{CloudWatch, Metrics};

/// Target groups synced at the same time (ELB's Describe calls are paced
/// by the adapter; this bounds the calls in flight).
const CONCURRENT_GROUPS: usize = 8;
/// Sources observed at the same time: DNS queries are cheap, and a source
/// queued behind slow ones must not start too late to finish.
const CONCURRENT_SOURCES: usize = 64;
/// State objects read at the same time (a cold container reads them all).
const CONCURRENT_LOADS: usize = 32;
/// Kept at the end of a group's time to write countdown resets when its
/// target group cannot be read.
const RESET_RESERVE: Duration = Duration::from_secs(3);
/// Kept at the end of the run for the last groups' writes: Describe calls
/// are budgeted over the time before it.
const TAIL_RESERVE: Duration = Duration::from_secs(5);
/// Of the margin before the Lambda deadline, what publishing may take.
const PUBLISH_TIME: Duration = Duration::from_secs(2);

/// The engine with its dependencies, built once per cold start.
pub struct Engine<D, I, T, S, M> {
    pub config: SyncConfig,
    pub dns: D,
    pub interfaces: I,
    pub elb: T,
    pub store: S,
    pub metrics: M,
}

pub type AwsEngine = Engine<HickoryDns, Ec2Interfaces, Elb, CachedStore<S3Store>, CloudWatch>;

impl AwsEngine {
    pub fn from_sdk(config: SyncConfig, sdk: &SdkConfig) -> Result<Self, lambda_runtime::Error> {
        let clients = SyncClients::new(sdk);
        let accounts = Accounts {
            sdk: sdk.clone(),
            external_id: config.source_roles.external_id.clone(),
        };
        Ok(Engine {
            dns: HickoryDns::new(&config.dns)?,
            interfaces: Ec2Interfaces::new(&clients, Some(accounts)),
            elb: Elb::new(&clients, f64::from(config.describe_share) / 100.0),
            store: CachedStore::new(S3Store::new(s3_client(sdk), config.state.bucket.clone())),
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

/// One mapping of a group through a run: what it is, what its source said,
/// its state object, what was read of it, and its report.
struct Member<'a> {
    mapping: &'a Mapping,
    observed: Observed,
    key: String,
    loaded: Loaded,
    /// Why this attempt's read of the state failed, if it did: reported
    /// only if the last attempt's read failed too.
    load_error: Option<MappingError>,
    report: MappingReport,
}

impl Member<'_> {
    /// Whether this mapping needs its group read this run.
    fn need(&self) -> Option<Need> {
        let addrs = self.observed.resolution.addrs()?;
        Some(match (&self.loaded.prior, &self.observed.resolution) {
            (Prior::Valid(s), Resolution::Complete(_)) if s.in_sync && &s.seen == addrs => {
                Need::Quiet
            }
            (Prior::Valid(_), _) => Need::Changed,
            _ => Need::Unknown,
        })
    }
}

/// What one conditional write came to.
enum Write {
    Written(Version),
    /// Another writer changed the object since it was read.
    Conflict,
}

/// What writing a group's intents came to.
enum Intents {
    /// Every changed intent is written: the versions to write the final
    /// states over.
    Written(Vec<Version>),
    /// Another writer changed one: plan again from what is there now.
    Conflict,
}

/// The group's fate this run.
enum Turn {
    Describe,
    Skip,
    Defer,
}

/// An event time further than this from now (a replayed event) is not
/// taken for the run's period.
const MAX_EVENT_AGE: u64 = 3600;

/// The `time` of a scheduled event, in Unix seconds: an EventBridge rule's
/// event carries it, and the template's schedule passes EventBridge
/// Scheduler's `<aws.scheduler.scheduled-time>` as `time` (Scheduler user
/// guide, "Adding context attributes"), e.g. `2026-11-24T12:00:00Z`.
pub fn scheduled_time(event: &Value) -> Option<u64> {
    let text = event.get("time")?.as_str()?;
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |from: usize, to: usize| text.get(from..to)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), from 1970.
    let (y, mo) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<D: Lookup, I: Interfaces, T: TargetGroups, S: StateStore, M: Metrics> Engine<D, I, T, S, M> {
    /// The Lambda handler: any event (the schedule's) starts one run. The
    /// run's period is the event's `time` when it has one (the time the
    /// tick was scheduled for: a retry of it carries the same), else now.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<SyncReport, SyncFailed> {
        let now = unix_now();
        let at = scheduled_time(&event.payload)
            .filter(|t| t.abs_diff(now) <= MAX_EVENT_AGE)
            .unwrap_or(now);
        let deadline = lambda_deadline(event.context.deadline, RESPONSE_MARGIN);
        // Boxed: a run's future is deep, and the runtime's would nest it.
        let report = Box::pin(self.run_at(deadline, at)).await;
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
        self.run_at(deadline, unix_now()).await
    }

    /// [`Engine::run`] for a run started at `now` (Unix seconds).
    pub async fn run_at(&self, deadline: Instant, now: u64) -> SyncReport {
        let mut report = Box::pin(self.sync_at(deadline, now)).await;
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
        self.sync_at(deadline, unix_now()).await
    }

    /// [`Engine::sync`] for a run started at `now` (Unix seconds).
    pub async fn sync_at(&self, deadline: Instant, now: u64) -> SyncReport {
        let deadline = tokio::time::Instant::from_std(deadline);
        let counting = Counting {
            absences: self.config.count_absences,
            now,
            period: self.config.schedule_period.as_secs().max(1),
        };
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
        // The groups' VPCs, for exact sources (read once per container).
        let arns: BTreeSet<TargetGroupArn> = found
            .mappings
            .iter()
            .filter(|m| m.source.is_exact())
            .map(|m| m.target_group_arn.clone())
            .collect();
        let arns: Vec<TargetGroupArn> = arns.into_iter().collect();
        let groups_info = match arns.is_empty() {
            true => Ok(HashMap::new()),
            false => self.elb.info(&arns).await,
        };
        // Sources get half of the time left, each on its own: one slow name
        // fails its own mappings only, and the groups keep time to apply.
        let start = tokio::time::Instant::now();
        let source_deadline = start + deadline.saturating_duration_since(start) / 2;
        let observed = Box::pin(self.observe_all(&found.mappings, source_deadline)).await;

        let mut groups: BTreeMap<&TargetGroupArn, Vec<&Mapping>> = BTreeMap::new();
        for m in &found.mappings {
            groups.entry(&m.target_group_arn).or_default().push(m);
        }
        let members: Vec<(&TargetGroupArn, Vec<Member<'_>>)> = futures_util::stream::iter(groups)
            .map(|(arn, ms)| {
                let (observed, info) = (&observed, &groups_info);
                // Boxed: the run's future would otherwise nest every
                // step's type, past the compiler's depth limit.
                Box::pin(async move { (arn, self.members(arn, &ms, observed, info).await) })
            })
            .buffered(CONCURRENT_LOADS)
            .collect()
            .await;

        // Which groups to read: all while the budget allows, else rotating.
        let needs: Vec<(TargetGroupArn, Need)> = members
            .iter()
            .filter_map(|(arn, ms)| {
                let need = ms.iter().filter_map(Member::need).min()?;
                Some(((*arn).clone(), need))
            })
            .collect();
        let window = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(TAIL_RESERVE);
        let choice = choose(
            &needs,
            self.elb.describe_budget(window),
            self.config.describe_every,
            counting.slot(now),
        );
        if !choice.deferred.is_empty() {
            warn!(
                deferred = choice.deferred.len(),
                described = choice.describe.len(),
                "more groups to read than this run's share of ELB's Describe rate: the rest wait for the next run"
            );
        }
        let mut mappings: Vec<MappingReport> = futures_util::stream::iter(members)
            .map(|(arn, members)| {
                let turn = if choice.describe.contains(arn) {
                    Turn::Describe
                } else if choice.deferred.contains(arn) {
                    Turn::Defer
                } else {
                    Turn::Skip
                };
                Box::pin(self.sync_group(arn, members, turn, counting, deadline))
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
                for m in discovered.mappings {
                    // The role must be one the function may assume.
                    let denied = m
                        .source_role
                        .as_ref()
                        .and_then(|r| self.config.source_roles.check(r).err());
                    match denied {
                        None => found.mappings.push(m),
                        Some(why) => found.bad_tags.push(GroupError {
                            error: crate::fields::FieldError::new(
                                format!("{} tag {prefix}source-role", m.target_group_arn),
                                why,
                            ),
                            target_group_arn: m.target_group_arn,
                        }),
                    }
                }
                found.bad_tags.extend(discovered.errors.into_iter().map(
                    |(target_group_arn, error)| GroupError {
                        target_group_arn,
                        error,
                    },
                ));
            }
            Err(e) => {
                error!(error = %e, "discovery by tag failed: tagged groups are not synced this run");
                found.discovery_error = Some(MappingError::aws(ErrorKind::Elb, &e));
            }
        }
        found
    }

    /// Each distinct source once, each bounded by `deadline`: DNS names
    /// one by one, exact sources a few EC2 calls per account for all.
    async fn observe_all(
        &self,
        mappings: &[Mapping],
        deadline: tokio::time::Instant,
    ) -> HashMap<ObserveKey, Observed> {
        let mut distinct: HashMap<ObserveKey, &Mapping> = HashMap::new();
        for m in mappings {
            distinct.entry(observe_key(m)).or_insert(m);
        }
        let late = |m: &Mapping| {
            Observed::failed(
                Some("Timeout".into()),
                format!(
                    "{} did not answer in time (half of the run's time)",
                    m.source
                ),
            )
        };
        let dns = futures_util::stream::iter(
            distinct
                .iter()
                .filter(|(_, m)| !m.source.is_exact())
                .map(|(key, m)| (key.clone(), *m)),
        )
        .map(|(key, m)| async move {
            let Source::Dns(name) = &m.source else {
                return (key, late(m));
            };
            let observed = timeout_at(deadline, observe_dns(&self.dns, name, m))
                .await
                .unwrap_or_else(|_| late(m));
            (key, observed)
        })
        .buffer_unordered(CONCURRENT_SOURCES)
        .collect::<Vec<_>>();
        let exact = timeout_at(deadline, self.observe_exact(&distinct));
        let (dns, exact) = futures_util::join!(dns, exact);
        let mut all: HashMap<ObserveKey, Observed> = dns.into_iter().collect();
        match exact {
            Ok(exact) => all.extend(exact),
            Err(_) => all.extend(
                distinct
                    .iter()
                    .filter(|(_, m)| m.source.is_exact())
                    .map(|(key, m)| (key.clone(), late(m))),
            ),
        }
        all
    }

    /// The `alb:` and `vpce:` sources, batched per account.
    async fn observe_exact(
        &self,
        distinct: &HashMap<ObserveKey, &Mapping>,
    ) -> Vec<(ObserveKey, Observed)> {
        let mut by_role: BTreeMap<Option<&RoleArn>, (BTreeSet<AlbRef>, BTreeSet<String>)> =
            BTreeMap::new();
        for m in distinct.values() {
            let entry = by_role.entry(m.source_role.as_ref()).or_default();
            match &m.source {
                Source::Alb(alb) => {
                    entry.0.insert(alb.clone());
                }
                Source::Vpce(id) => {
                    entry.1.insert(id.clone());
                }
                Source::Dns(_) => {}
            }
        }
        let listings = join_all(by_role.into_iter().map(|(role, (albs, vpces))| async move {
            let albs: Vec<AlbRef> = albs.into_iter().collect();
            let vpces: Vec<String> = vpces.into_iter().collect();
            let (albs, vpces) = futures_util::join!(
                async {
                    match albs.is_empty() {
                        true => HashMap::new(),
                        false => self.interfaces.albs(role, &albs).await,
                    }
                },
                async {
                    match vpces.is_empty() {
                        true => HashMap::new(),
                        false => self.interfaces.vpces(role, &vpces).await,
                    }
                }
            );
            (role.cloned(), albs, vpces)
        }))
        .await;
        let mut out = Vec::new();
        for (key, m) in distinct.iter().filter(|(_, m)| m.source.is_exact()) {
            let listing = listings
                .iter()
                .find(|(role, _, _)| role.as_ref() == m.source_role.as_ref())
                .and_then(|(_, albs, vpces)| match &m.source {
                    Source::Alb(alb) => albs.get(alb),
                    Source::Vpce(id) => vpces.get(id),
                    Source::Dns(_) => None,
                });
            let observed = match listing {
                Some(listing) => from_listing(m, listing),
                None => Observed::failed(None, format!("{} was not listed", m.source)),
            };
            out.push((key.clone(), observed));
        }
        out
    }

    /// The group's members with their observations and states.
    async fn members<'m>(
        &self,
        arn: &TargetGroupArn,
        ms: &[&'m Mapping],
        observed: &HashMap<ObserveKey, Observed>,
        info: &Result<HashMap<TargetGroupArn, GroupInfo>, crate::aws::AwsError>,
    ) -> Vec<Member<'m>> {
        let mut members: Vec<Member<'m>> = ms
            .iter()
            .map(|m| {
                let mut o = observed
                    .get(&observe_key(m))
                    .cloned()
                    .unwrap_or_else(|| Observed::failed(None, "not observed".into()));
                if m.source.is_exact() && o.problem.is_none() {
                    let group_vpc = match info {
                        Ok(info) => info.get(arn).map(|g| g.vpc_id.clone()),
                        Err(e) => {
                            o = Observed::failed(
                                e.code.clone(),
                                format!("reading the target group's VPC: {e}"),
                            );
                            None
                        }
                    };
                    if let Some(problem) = vpc_mismatch(m, &o, group_vpc.flatten().as_deref()) {
                        o = Observed::failed(Some("VpcMismatch".into()), problem);
                    }
                }
                let mut report = MappingReport::new(m, Some(&o));
                if let Some(p) = &o.problem {
                    report.fail(MappingError {
                        kind: ErrorKind::Source,
                        code: p.code.clone(),
                        message: p.message.clone(),
                    });
                }
                Member {
                    mapping: m,
                    observed: o,
                    key: state_key(&self.config.state.prefix, m, self.config.dry_run),
                    loaded: Loaded {
                        prior: Prior::Fresh,
                        version: Version::Absent,
                        unusable: None,
                    },
                    load_error: None,
                    report,
                }
            })
            .collect();
        self.load_all(&mut members).await;
        members
    }

    async fn sync_group(
        &self,
        arn: &TargetGroupArn,
        mut members: Vec<Member<'_>>,
        turn: Turn,
        counting: Counting,
        deadline: tokio::time::Instant,
    ) -> Vec<MappingReport> {
        let described = match turn {
            Turn::Describe => true,
            Turn::Skip => false,
            Turn::Defer => {
                for m in &mut members {
                    m.report.deferred = true;
                    m.report.note.get_or_insert_with(|| {
                        "not read this run: more groups changed than this run's share of ELB's Describe rate allows; the next run reads it first".into()
                    });
                }
                false
            }
        };
        if !described {
            for m in &mut members {
                if let Prior::Valid(s) = &m.loaded.prior {
                    m.report.pending = s.pending.clone();
                }
                if let Some(e) = m.load_error.take() {
                    m.report.fail(e);
                }
            }
            return members.into_iter().map(|m| m.report).collect();
        }
        for m in &mut members {
            m.report.described = true;
        }
        // Bounded here, so that what was done before the deadline (the
        // registrations already made) stays in the reports.
        let applied = timeout_at(deadline, self.apply(arn, &mut members, counting, deadline));
        let error = match applied.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(MappingError::new(
                ErrorKind::Deadline,
                "did not finish before the Lambda deadline; the next run takes over",
            )),
        };
        members
            .into_iter()
            .map(|mut m| {
                if let Some(e) = m.load_error.take() {
                    m.report.fail(e);
                }
                if let Some(e) = &error {
                    m.report.fail(e.clone());
                }
                m.report
            })
            .collect()
    }

    /// Plans and applies the group's changes; an error fails every mapping
    /// of the group (a mapping's own problems are already in its report).
    /// The report shows a change once it is made (in a dry run: planned).
    async fn apply(
        &self,
        arn: &TargetGroupArn,
        members: &mut [Member<'_>],
        counting: Counting,
        deadline: tokio::time::Instant,
    ) -> Result<(), MappingError> {
        let mut written = Planned::new();
        for attempt in 1..=2 {
            if attempt > 1 {
                self.load_all(members).await;
            }
            let targets = match self.read_group(arn, members, deadline).await? {
                Described::Targets(targets) => targets,
                Described::Gone => return self.gone(arn, members),
            };
            let priors = written.priors(members);
            let inputs: Vec<Input<'_>> = members
                .iter()
                .zip(&priors)
                .map(|(m, prior)| Input {
                    mapping: m.mapping,
                    resolution: &m.observed.resolution,
                    prior,
                })
                .collect();
            let plan = plan_group(&targets, &inputs, counting);
            drop(inputs);
            report_plan(arn, &plan, members);
            // Intents first: a conflict shows before the group is touched,
            // and what this run registers is owned before it exists.
            let versions = match self
                .write_intents(members, &priors, &plan, &mut written)
                .await?
            {
                Intents::Written(versions) => versions,
                Intents::Conflict if attempt == 1 => {
                    warn!(target_group = %arn, "state changed under this run: re-reading and re-planning");
                    continue;
                }
                Intents::Conflict => {
                    return Err(MappingError::new(
                        ErrorKind::StateConflict,
                        format!(
                            "state object {} kept changing under this run; the next run takes over",
                            members
                                .iter()
                                .map(|m| m.key.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            };
            if self.config.dry_run {
                // Its own state is written; the group is not touched.
                for (m, p) in members.iter_mut().zip(&plan.mappings) {
                    (m.report.registered, m.report.deregistered) =
                        (p.register.clone(), p.deregister.clone());
                    if p.state.is_some() {
                        m.report.targets = Some(plan.registered_after);
                    }
                }
                return Ok(());
            }
            let changed = self.change_group(arn, members, &plan).await;
            // The group as it is now: before, and what was made of the plan.
            let before = targets.iter().filter(|t| !t.draining).count();
            let registered: usize = members.iter().map(|m| m.report.registered.len()).sum();
            let deregistered = members
                .iter()
                .flat_map(|m| m.report.deregistered.iter())
                .collect::<BTreeSet<_>>()
                .len();
            for (m, p) in members.iter_mut().zip(&plan.mappings) {
                if p.state.is_some() {
                    m.report.targets = Some(before + registered - deregistered);
                }
            }
            changed?;
            return self.write_final(members, &versions, &plan).await;
        }
        Ok(())
    }

    /// A group that no longer exists: one found by tag was deleted (the
    /// tagging API lists it a while longer) and is left; a configured one
    /// is an error.
    fn gone(&self, arn: &TargetGroupArn, members: &mut [Member<'_>]) -> Result<(), MappingError> {
        if self
            .config
            .mappings
            .iter()
            .any(|m| &m.target_group_arn == arn)
        {
            return Err(MappingError {
                kind: ErrorKind::Elb,
                code: Some("TargetGroupNotFound".into()),
                message: format!("TargetGroupNotFound: target group {arn} does not exist"),
            });
        }
        for m in members.iter_mut() {
            m.report.note = Some(
                "the target group was deleted; the tagging API still lists it for a while".into(),
            );
        }
        Ok(())
    }

    /// The group's targets, bounded short of the deadline: a throttled read
    /// must leave time to keep what the sources proved.
    async fn read_group(
        &self,
        arn: &TargetGroupArn,
        members: &[Member<'_>],
        deadline: tokio::time::Instant,
    ) -> Result<Described, MappingError> {
        // The reserve, or a quarter of what is left when less is left.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let until = deadline - RESET_RESERVE.min(left / 4);
        let error = match timeout_at(until, self.elb.describe(arn)).await {
            Ok(Ok(described)) => return Ok(described),
            Ok(Err(e)) => MappingError::aws(ErrorKind::Elb, &e),
            Err(_) => MappingError::new(
                ErrorKind::Deadline,
                "reading the target group did not finish before the deadline",
            ),
        };
        self.keep_resets(members).await;
        Err(error)
    }

    /// One conditional write. A 412 is not always another writer: the SDK
    /// retries a `PutObject` whose answer was lost (a timeout, a 5xx), and
    /// when the first attempt had landed, the retry finds the condition
    /// gone. The object then holds exactly what this run wrote, and it is
    /// taken as written, not re-planned (which would count an absence
    /// twice).
    async fn write(
        &self,
        key: &str,
        state: &SyncState,
        version: &Version,
    ) -> Result<Write, MappingError> {
        match self.store.save(key, state, version).await {
            Ok(version) => Ok(Write::Written(version)),
            Err(SaveError::Conflict { .. }) => match self.store.load(key).await {
                Ok(Loaded {
                    prior: Prior::Valid(stored),
                    version,
                    ..
                }) if stored == *state => {
                    warn!(
                        key,
                        "this run's own write landed before its answer was lost: taken as written"
                    );
                    Ok(Write::Written(version))
                }
                _ => Ok(Write::Conflict),
            },
            Err(SaveError::Encode { key, error }) => Err(MappingError::new(
                ErrorKind::State,
                format!("state object {key} cannot be written: {error}"),
            )),
            Err(SaveError::Aws(e)) => Err(MappingError::aws(ErrorKind::S3, &e)),
        }
    }

    /// Writes each changed intent conditionally, stopping at a conflict
    /// (the caller re-plans or gives up).
    async fn write_intents(
        &self,
        members: &[Member<'_>],
        priors: &[Prior],
        plan: &GroupPlan,
        written: &mut Planned,
    ) -> Result<Intents, MappingError> {
        let mut versions = Vec::with_capacity(members.len());
        for (i, m) in members.iter().enumerate() {
            let stored = match &m.loaded.prior {
                Prior::Valid(s) => Some(s),
                _ => None,
            };
            let Some(intent) = plan.mappings[i]
                .intent
                .as_ref()
                .filter(|t| needs_write(stored, t))
            else {
                versions.push(m.loaded.version.clone());
                continue;
            };
            self.keep_aside(&m.key, &m.loaded).await?;
            match self.write(&m.key, intent, &m.loaded.version).await? {
                Write::Written(version) => {
                    written.insert(i, priors[i].clone(), version.clone());
                    versions.push(version);
                }
                Write::Conflict => return Ok(Intents::Conflict),
            }
        }
        Ok(Intents::Written(versions))
    }

    /// Registers (each mapping's new targets, with its zone), then
    /// deregisters, batch by batch; a failed batch stops neither the
    /// others nor the deregistrations. The reports show each change once it
    /// is made; the first error is returned.
    async fn change_group(
        &self,
        arn: &TargetGroupArn,
        members: &mut [Member<'_>],
        plan: &GroupPlan,
    ) -> Result<(), MappingError> {
        let mut first_error: Option<MappingError> = None;
        for (m, p) in members.iter_mut().zip(&plan.mappings) {
            let zone = m.mapping.availability_zone.as_deref();
            for batch in p.register.chunks(TARGETS_PER_CALL) {
                match self.elb.register(arn, batch, zone).await {
                    Ok(()) => m.report.registered.extend_from_slice(batch),
                    Err(e) => {
                        first_error.get_or_insert(MappingError::aws(ErrorKind::Elb, &e));
                    }
                }
            }
        }
        for batch in plan.deregister.chunks(TARGETS_PER_CALL) {
            if let Err(e) = self.elb.deregister(arn, batch).await {
                first_error.get_or_insert(MappingError::aws(ErrorKind::Elb, &e));
                continue;
            }
            for (m, p) in members.iter_mut().zip(&plan.mappings) {
                let gone = p
                    .deregister
                    .iter()
                    .filter(|t| batch.iter().any(|b| b.addr == **t));
                m.report.deregistered.extend(gone);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The deregistered targets leave the state, and a group left equal to
    /// its sources says so. Should this write be lost, the next run drops
    /// the targets anyway (they are no longer registered) and reads the
    /// group again.
    async fn write_final(
        &self,
        members: &[Member<'_>],
        versions: &[Version],
        plan: &GroupPlan,
    ) -> Result<(), MappingError> {
        for ((m, version), p) in members.iter().zip(versions).zip(&plan.mappings) {
            let (Some(intent), Some(state)) = (&p.intent, &p.state) else {
                continue;
            };
            if !needs_write(Some(intent), state) {
                continue;
            }
            if let Write::Conflict = self.write(&m.key, state, version).await? {
                warn!(
                    key = m.key,
                    "another run wrote the state after this run's changes; the next run reconciles"
                );
            }
        }
        Ok(())
    }

    /// Every member's state; one that cannot be read or used is planned as
    /// doubt, and reported unless a later read of the same run succeeds.
    async fn load_all(&self, members: &mut [Member<'_>]) {
        let loads = members.iter().map(|m| async move {
            let loaded = self.store.load(&m.key).await;
            // A dry run starts from the real state the first time.
            match loaded {
                Ok(Loaded {
                    prior: Prior::Fresh,
                    ..
                }) if self.config.dry_run => {
                    let real = state_key(&self.config.state.prefix, m.mapping, false);
                    self.store.load(&real).await.map(|l| Loaded {
                        version: Version::Absent,
                        unusable: None,
                        ..l
                    })
                }
                other => other,
            }
        });
        let results = join_all(loads).await;
        for (m, result) in members.iter_mut().zip(results) {
            m.load_error = None;
            m.loaded = match result {
                Ok(loaded) => loaded,
                Err(e) => {
                    m.load_error = Some(MappingError::aws(ErrorKind::S3, &e));
                    Loaded {
                        prior: Prior::Refused(StateError::Unreadable(e.to_string())),
                        version: Version::Absent,
                        unusable: None,
                    }
                }
            };
            match &m.loaded.prior {
                Prior::Refused(e) if m.load_error.is_none() => {
                    m.load_error = Some(MappingError::new(
                        ErrorKind::State,
                        format!("state object {}: {e}", m.key),
                    ));
                }
                Prior::Corrupt(e) => {
                    warn!(key = m.key, error = %e, "state object is unusable: rebuilding it, deregistering nothing this run");
                    m.report.note = Some(format!(
                        "state object {} was unusable ({e}); rebuilt without deregistering",
                        m.key
                    ));
                }
                _ => {}
            }
        }
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
    async fn keep_resets(&self, members: &[Member<'_>]) {
        if self.config.dry_run {
            return;
        }
        for m in members {
            let Some(seen) = m.observed.resolution.addrs() else {
                continue;
            };
            let Prior::Valid(state) = &m.loaded.prior else {
                continue;
            };
            let reset = reset_only(state, seen, m.mapping.port);
            if reset != *state
                && let Err(e) = self.store.save(&m.key, &reset, &m.loaded.version).await
            {
                warn!(key = m.key, error = %e, "could not keep the countdown resets");
            }
        }
    }
}

/// An exact source outside the target group's VPC: its addresses may mean
/// something else there (an overlapping range), or RegisterTargets refuses
/// them at every run. Targets outside the VPC are registered with the
/// availability zone `all` (ELB user guide, "IP addresses as targets"), so
/// that setting is the opt-in.
fn vpc_mismatch(m: &Mapping, o: &Observed, group_vpc: Option<&str>) -> Option<String> {
    let (Some(source_vpc), Some(group_vpc)) = (o.vpc_id.as_deref(), group_vpc) else {
        return None;
    };
    if source_vpc == group_vpc || m.availability_zone.as_deref() == Some("all") {
        return None;
    }
    Some(format!(
        "{} is in VPC {source_vpc}, but target group {} is in VPC {group_vpc}: its addresses are not the group's; if the VPCs are peered, set the availability zone to all (tag availability-zone = all, or \"availability_zone\": \"all\")",
        m.source, m.target_group_arn
    ))
}

/// Intents this run wrote: the state each was planned from, and the version
/// written. A re-plan starts again from that state, not from this run's own
/// intent, so no countdown advances twice in one run.
struct Planned(HashMap<usize, (Prior, Version)>);

impl Planned {
    fn new() -> Self {
        Planned(HashMap::new())
    }

    fn insert(&mut self, index: usize, planned_from: Prior, version: Version) {
        self.0.insert(index, (planned_from, version));
    }

    /// What to plan from: the stored state, or, where it is still this
    /// run's own intent, the state that intent was planned from.
    fn priors(&self, members: &[Member<'_>]) -> Vec<Prior> {
        members
            .iter()
            .enumerate()
            .map(|(i, m)| match self.0.get(&i) {
                Some((prior, version)) if *version == m.loaded.version => prior.clone(),
                _ => m.loaded.prior.clone(),
            })
            .collect()
    }
}

/// What the plan will leave: countdowns and held-back targets.
fn report_plan(arn: &TargetGroupArn, plan: &GroupPlan, members: &mut [Member<'_>]) {
    for (m, p) in members.iter_mut().zip(&plan.mappings) {
        if let Some(state) = &p.state {
            m.report.pending = state.pending.clone();
            m.report.held_back = p.held_back.clone();
        }
        if !p.held_back.is_empty() {
            warn!(target_group = %arn, held_back = ?p.held_back,
                  "deregistrations held back by max_deregister_percent");
        }
    }
}

/// The message of the one log line per target group and run: what the
/// Logs Insights queries of docs/target-sync.md and the alarms' descriptions point to.
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
    let described = reports.iter().any(|r| r.described);
    let deferred = reports.iter().any(|r| r.deferred);
    let arn = &first.target_group_arn;
    match reports.iter().find_map(|r| r.error.as_ref()) {
        None => info!(
            target_group = %arn, sources, resolved, targets, registered, deregistered,
            pending, held_back, saturated, described, deferred, dry_run, "{GROUP_SYNCED}"
        ),
        Some(e) => error!(
            target_group = %arn, sources, resolved, targets, registered, deregistered,
            pending, held_back, saturated, described, dry_run,
            failed = reports.iter().filter(|r| r.error.is_some()).count(),
            kind = ?e.kind, code = e.code.as_deref(), error = %e.message, "{GROUP_FAILED}"
        ),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

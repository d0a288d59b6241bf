//! `Custom::TargetSync`: the first sync at deploy time, over everything the
//! scheduled target-sync would sync.
//!
//! The configuration is the custom-resources function's own environment,
//! which the template gives the target-sync function's variables (a test
//! keeps the two equal), so both sync the same mappings with the same state.
//! The event carries no configuration: a stack that can invoke the function
//! can make it sync what the schedule would sync anyway, never choose the
//! addresses or the groups. It may only name target groups to wait for
//! (`TargetGroupArns`: groups created in the same deploy, whose tags the
//! discovery may not see at once).
//!
//! Create and Update run the engine once (publishing no metrics), so the
//! NLBs have targets the moment the stack completes. It only registers: no
//! countdown advances and nothing is deregistered at deploy time (its
//! retries would otherwise count absences seconds apart); the schedule does
//! the rest.
//!
//! - It fails only when nothing could be synced (every mapping failed, or
//!   discovery did), or a group it was told to wait for was not synced: one
//!   other team's mis-tagged group must not make the stack undeployable.
//!   Failed groups are named in the SUCCESS reason, and the scheduled
//!   function's `FailedMappings` alarm follows them.
//! - While AWS answers AccessDenied (a policy created in the same stack is
//!   not in effect yet), a name answers NXDOMAIN (a record created in the
//!   same stack is not visible yet), or a group it waits for is not synced
//!   yet, it waits and syncs again, as long as the deadline allows.
//! - A Create that fails deregisters what it registered: the rollback's
//!   Delete has nothing to remove, and the stack leaves no target behind.
//! - Delete does nothing: deleting tether must not empty a working NLB. The
//!   target groups stay as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{info, warn};

use super::dispatch::{Applied, Failure};
use crate::aws::AwsError;
use crate::dns::{DnsFailure, HickoryDns, Lookup, RecordKind};
use crate::fields::{FieldError, Fields};
use crate::metrics::{Datum, Metrics};
use crate::sync::groups::{Elb, TargetGroups};
use crate::sync::interfaces::Ec2Interfaces;
use crate::sync::mapping::TargetGroupArn;
use crate::sync::store::S3Store;
use crate::sync::{Engine, SyncConfig, SyncReport};

pub const TYPE: &str = "Custom::TargetSync";

/// The resource's properties: only what to wait for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Props {
    /// `TargetGroupArns`: groups that must be synced before the resource
    /// succeeds.
    pub wait_for: Vec<TargetGroupArn>,
}

impl Props {
    pub fn read(properties: &Value) -> Result<Props, FieldError> {
        let mut f = Fields::new("ResourceProperties", properties)?;
        f.string("ServiceToken")?;
        // CloudFormation passes the resource's own timeout along; not used here.
        f.number("ServiceTimeout", 1..=3600)?;
        if f.raw("Environment").is_some() {
            return Err(FieldError::new(
                f.at("Environment"),
                "is no longer read: Custom::TargetSync syncs with the custom-resources \
                 function's own environment (the template gives it target-sync's variables); \
                 remove the property",
            ));
        }
        let location = f.at("TargetGroupArns");
        let wait_for = f
            .string_list("TargetGroupArns")?
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, arn)| {
                arn.parse()
                    .map_err(|why: String| FieldError::new(format!("{location}[{i}]"), why))
            })
            .collect::<Result<Vec<TargetGroupArn>, _>>()?;
        f.finish()?;
        Ok(Props { wait_for })
    }
}

/// The configuration of a sync at deploy time: the function's, publishing
/// nothing and counting no absences (it only registers).
pub fn one_off(config: &SyncConfig) -> SyncConfig {
    let mut config = config.clone();
    config.metrics.enabled = false;
    config.function_name = None;
    config.count_absences = false;
    config
}

/// One first sync per state location.
pub fn physical_id(config: &SyncConfig) -> String {
    let s = &config.state;
    format!("tether-first-sync:{}/{}", s.bucket, s.prefix)
}

/// The function's resolver, or one for the resource's own `DNS_SERVERS`.
pub enum Resolver<'a> {
    Shared(&'a HickoryDns),
    Own(Box<HickoryDns>),
}

impl Lookup for Resolver<'_> {
    async fn lookup(&self, name: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
        match self {
            Resolver::Shared(dns) => dns.lookup(name, kind).await,
            Resolver::Own(dns) => dns.lookup(name, kind).await,
        }
    }
}

/// Metrics of custom resource syncs: switched off in their configuration,
/// so the engine never publishes through this.
pub struct Unpublished;

impl Metrics for Unpublished {
    async fn publish(&self, _: &str, _: &[Datum]) -> Result<(), AwsError> {
        Ok(())
    }
}

/// The clients a TargetSync request uses.
pub struct Clients<'a> {
    pub dns: Resolver<'a>,
    pub interfaces: Ec2Interfaces,
    pub elb: &'a Elb,
    pub s3: &'a aws_sdk_s3::Client,
}

/// Errors that time cures within a stack operation: IAM applying a new
/// policy (ELB and S3 say AccessDenied, EC2 UnauthorizedOperation), and a
/// new DNS record becoming visible (NXDOMAIN).
const PATIENT_CODES: [&str; 3] = ["AccessDenied", "UnauthorizedOperation", "NXDOMAIN"];
const FIRST_WAIT: Duration = Duration::from_secs(2);
/// Kept after the last sync to undo a failed Create's registrations: this
/// much, or a quarter of the time left when that is less.
const UNDO_RESERVE: Duration = Duration::from_secs(20);
/// Once some mappings synced, how long the others are waited for: a name
/// or a policy of this stack appears within it; another team's broken group
/// would otherwise hold every deploy until its timeout. Groups named in
/// `TargetGroupArns` are waited for until the deadline.
const PATIENCE_WITH_PROGRESS: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(16);
/// Time kept for a last attempt and the answer when retrying.
const RESERVE: Duration = Duration::from_secs(30);

fn waits_for_time(report: &SyncReport) -> bool {
    let patient = |code: Option<&str>| code.is_some_and(|c| PATIENT_CODES.contains(&c));
    report
        .mappings
        .iter()
        .filter_map(|m| m.error.as_ref())
        .chain(report.discovery_error.as_ref())
        .any(|e| patient(e.code.as_deref()))
}

/// The groups of `wait_for` that `report` did not sync, each with why.
fn not_synced(report: &SyncReport, wait_for: &[TargetGroupArn]) -> Vec<String> {
    wait_for
        .iter()
        .filter_map(|arn| {
            let mappings: Vec<_> = report
                .mappings
                .iter()
                .filter(|m| &m.target_group_arn == arn)
                .collect();
            let bad_tag = report.bad_tags.iter().find(|g| &g.target_group_arn == arn);
            let why = if let Some(bad) = bad_tag {
                bad.error.to_string()
            } else if mappings.is_empty() {
                "not among the target groups this function syncs (is it tagged?)".to_owned()
            } else if let Some(e) = mappings.iter().find_map(|m| m.error.as_ref()) {
                e.message.clone()
            } else {
                return None;
            };
            Some(format!("{arn}: {why}"))
        })
        .collect()
}

/// Everything the syncs of one request registered, per target group.
pub type Registered = BTreeMap<TargetGroupArn, BTreeSet<SocketAddr>>;

/// Runs the sync; while it fails in a way time cures, or a group of
/// `wait_for` is not synced yet, waits and runs it again, as long as the
/// deadline allows. Also returns every target the attempts registered.
pub async fn run_patiently<D, I, T, S>(
    engine: &Engine<D, I, T, S, Unpublished>,
    wait_for: &[TargetGroupArn],
    deadline: Instant,
) -> (SyncReport, Registered)
where
    D: Lookup,
    I: crate::sync::interfaces::Interfaces,
    T: TargetGroups,
    S: crate::sync::store::StateStore,
{
    let mut wait = FIRST_WAIT;
    let mut registered = Registered::new();
    let started = Instant::now();
    loop {
        let report = engine.sync(deadline.into_std()).await;
        for m in &report.mappings {
            registered
                .entry(m.target_group_arn.clone())
                .or_default()
                .extend(m.registered.iter().copied());
        }
        let waited_for = not_synced(&report, wait_for);
        let progress = report.mappings.iter().any(|m| m.error.is_none());
        let patient = !progress || started.elapsed() < PATIENCE_WITH_PROGRESS;
        let retry = !waited_for.is_empty() || (waits_for_time(&report) && patient);
        if !retry || Instant::now() + wait + RESERVE > deadline {
            return (report, registered);
        }
        warn!(
            wait_ms = wait.as_millis() as u64,
            waiting_for = waited_for.join("; "),
            "access denied, name not found or a group not synced yet: waiting, then syncing again"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// Create or Update, with the function's configuration `config`.
pub async fn apply(
    clients: Clients<'_>,
    config: &SyncConfig,
    props: &Props,
    creating: bool,
    deadline: Instant,
) -> Result<Applied, Failure> {
    let engine = Engine {
        config: one_off(config),
        dns: clients.dns,
        interfaces: clients.interfaces,
        elb: clients.elb.clone(),
        store: S3Store::new(clients.s3.clone(), config.state.bucket.clone()),
        metrics: Unpublished,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let sync_deadline = deadline
        .checked_sub(UNDO_RESERVE.min(left / 4))
        .unwrap_or(deadline);
    let (report, registered) = run_patiently(&engine, &props.wait_for, sync_deadline).await;
    let failures = report.failures();
    let synced = report.mappings.iter().filter(|m| m.error.is_none()).count();
    let waited_for = not_synced(&report, &props.wait_for);
    let nothing_synced = !failures.is_empty() && (synced == 0 || report.discovery_error.is_some());
    if nothing_synced || !waited_for.is_empty() {
        let mut why = if waited_for.is_empty() {
            format!("sync failed: {}", failures.join("; "))
        } else {
            format!(
                "ResourceProperties.TargetGroupArns: not synced before the deadline: {}",
                waited_for.join("; ")
            )
        };
        if creating {
            why.push_str(&undo_registrations(clients.elb, &registered, deadline).await);
        }
        return Err(Failure(why));
    }
    let count: usize = registered.values().map(BTreeSet::len).sum();
    info!(
        mappings = report.mappings.len(),
        synced,
        registered = count,
        "first sync done"
    );
    let mut notes: Vec<String> = report
        .mappings
        .iter()
        .filter_map(|m| m.note.clone())
        .collect();
    if !failures.is_empty() {
        notes.insert(
            0,
            format!(
                "{} of {} mappings not synced (the schedule retries them and alarms): {}",
                report.failed_mappings(),
                report.mappings.len() + report.bad_tags.len(),
                failures.join("; ")
            ),
        );
    }
    let data = [
        ("Synced", synced.to_string()),
        ("Registered", count.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Ok(Applied {
        physical_id: physical_id(config),
        data,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// A failed Create leaves nothing behind: deregisters what it registered,
/// group by group, until shortly before `deadline`.
async fn undo_registrations(elb: &Elb, registered: &Registered, deadline: Instant) -> String {
    let until = deadline
        .checked_sub(Duration::from_secs(1))
        .unwrap_or(deadline);
    let mut undone = 0;
    let mut problems = Vec::new();
    for (arn, addrs) in registered.iter().filter(|(_, a)| !a.is_empty()) {
        let undo = async {
            let targets: Vec<_> = match elb.describe(arn).await? {
                crate::sync::groups::Described::Targets(targets) => targets,
                crate::sync::groups::Described::Gone => Vec::new(),
            }
            .into_iter()
            .filter(|t| !t.draining && addrs.contains(&t.addr))
            .collect();
            if targets.is_empty() {
                return Ok(0);
            }
            // One call per batch of the API's size.
            for batch in targets.chunks(crate::aws::limits::TARGETS_PER_CALL) {
                elb.deregister(arn, batch).await?;
            }
            Ok::<usize, AwsError>(targets.len())
        };
        match tokio::time::timeout_at(until, undo).await {
            Ok(Ok(n)) => undone += n,
            Ok(Err(e)) => problems.push(e.to_string()),
            Err(_) => problems.push(format!(
                "{arn}: no time left (still registered: {})",
                addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    match (undone, problems.is_empty()) {
        (0, true) => String::new(),
        (n, true) => format!("; deregistered the {n} targets this sync had registered"),
        (n, false) => format!(
            "; deregistered {n} of the targets this sync registered, but not all: {}",
            problems.join("; ")
        ),
    }
}

/// Delete: leaves the target groups as they are.
pub fn delete(physical_id: Option<&str>) -> Applied {
    Applied {
        physical_id: physical_id.unwrap_or("tether-first-sync").to_owned(),
        data: Default::default(),
        note: Some("target groups left as they are (deleting tether never empties an NLB)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;
    use crate::sync::report::GroupError;
    use crate::sync::{ErrorKind, MappingError, MappingReport};
    use serde_json::json;

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/50dc6c495c0c9188";

    fn config() -> SyncConfig {
        let targets = format!(
            "[{{\"dns_name\":\"a.example.com\",\"target_group_arn\":\"{ARN}\",\"port\":80}}]"
        );
        let vars = Vars(|name: &str| match name {
            "STATE_BUCKET" => Some("tether-state".to_owned()),
            "STATE_PREFIX" => Some("sync/".to_owned()),
            "TARGETS" => Some(targets.clone()),
            _ => None,
        });
        SyncConfig::from_vars(&vars).unwrap()
    }

    fn report(error: Option<&str>) -> SyncReport {
        let config = config();
        let mut m = MappingReport::new(&config.mappings[0], None);
        if let Some(code) = error {
            m.fail(MappingError {
                kind: ErrorKind::Source,
                code: Some(code.to_owned()),
                message: format!("{code} happened"),
            });
        }
        SyncReport {
            dry_run: false,
            mappings: vec![m],
            bad_tags: Vec::new(),
            discovery_error: None,
            metrics_error: None,
        }
    }

    #[test]
    fn only_errors_that_time_cures_are_waited_for() {
        for code in ["NXDOMAIN", "AccessDenied", "UnauthorizedOperation"] {
            assert!(waits_for_time(&report(Some(code))), "{code}");
        }
        for code in ["SERVFAIL", "TargetGroupNotFound", "Throttling"] {
            assert!(!waits_for_time(&report(Some(code))), "{code}");
        }
    }

    #[test]
    fn the_one_off_sync_is_the_functions_publishing_nothing_and_only_registering() {
        let config = config();
        let once = one_off(&config);
        assert_eq!(once.mappings, config.mappings);
        assert_eq!(once.state, config.state);
        assert!(!once.metrics.enabled && !once.count_absences);
        assert_eq!(once.function_name, None);
        assert_eq!(physical_id(&config), "tether-first-sync:tether-state/sync/");
    }

    #[test]
    fn the_event_names_only_what_to_wait_for() {
        let read = |props: Value| Props::read(&props);
        let p = read(
            json!({"ServiceToken": "arn:aws:lambda:us-east-1:1:function:cr",
            "ServiceTimeout": "240", "TargetGroupArns": [ARN]}),
        )
        .unwrap();
        assert_eq!(p.wait_for, [ARN.parse().unwrap()]);
        // CloudFormation may pass a list as a comma-separated string.
        assert_eq!(
            read(json!({"TargetGroupArns": ARN}))
                .unwrap()
                .wait_for
                .len(),
            1
        );
        assert_eq!(read(json!({})).unwrap(), Props::default());

        // The configuration never comes from the event.
        let err =
            read(json!({"Environment": {"STATE_BUCKET": "b1b", "TARGETS": "[]"}})).unwrap_err();
        assert_eq!(err.location, "ResourceProperties.Environment");
        assert!(err.problem.contains("own environment"), "{err}");
        for (props, location, needle) in [
            (
                json!({"TargetGroupArns": [ARN, "arn:aws:s3:::bucket"]}),
                "ResourceProperties.TargetGroupArns[1]",
                "arn:aws:s3:::bucket",
            ),
            (
                json!({"TargetGroupArns": []}),
                "ResourceProperties.TargetGroupArns",
                "non-empty list",
            ),
            (
                json!({"Mappings": "x"}),
                "ResourceProperties.Mappings",
                "unknown field",
            ),
        ] {
            let err = read(props).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn a_group_waited_for_counts_as_synced_only_without_error() {
        let arn: TargetGroupArn = ARN.parse().unwrap();
        assert!(not_synced(&report(None), std::slice::from_ref(&arn)).is_empty());
        let failed = not_synced(&report(Some("SERVFAIL")), std::slice::from_ref(&arn));
        assert!(
            failed.len() == 1 && failed[0].contains("SERVFAIL happened"),
            "{failed:?}"
        );

        let other: TargetGroupArn =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/u/60dc6c495c0c9188"
                .parse()
                .unwrap();
        let missing = not_synced(&report(None), std::slice::from_ref(&other));
        assert!(missing[0].contains("not among"), "{missing:?}");

        let mut bad = report(None);
        bad.mappings.clear();
        bad.bad_tags.push(GroupError {
            target_group_arn: other.clone(),
            error: FieldError::new("tag tether:port", "expected a port, got x"),
        });
        let tagged = not_synced(&bad, std::slice::from_ref(&other));
        assert!(tagged[0].contains("tether:port"), "{tagged:?}");
        // Nothing to wait for: nothing is missing.
        assert!(not_synced(&bad, &[]).is_empty());
    }
}

//! `Custom::TargetSync`: the first sync at deploy time, over everything the
//! scheduled target-sync would sync.
//!
//! `Environment` holds the same variables as the target-sync function's
//! environment, so both sync the same mappings with the same state. Create
//! and Update run the engine once (publishing no metrics), so the NLBs have
//! targets the moment the stack completes. It only registers: no countdown
//! advances and nothing is deregistered at deploy time (its retries would
//! otherwise count absences seconds apart); the schedule does the rest.
//!
//! - It fails only when nothing could be synced (every mapping failed, or
//!   discovery did): one other team's mis-tagged group must not make the
//!   stack undeployable. Failed groups are named in the SUCCESS reason, and
//!   the scheduled function's `FailedMappings` alarm follows them.
//! - While AWS answers AccessDenied (a policy created in the same stack is
//!   not in effect yet) or a name answers NXDOMAIN (a record created in the
//!   same stack is not visible yet), it waits and syncs again, as long as the
//!   deadline allows.
//! - A Create that fails deregisters what it registered: the rollback's
//!   Delete has nothing to remove, and the stack leaves no target behind.
//! - Delete does nothing: deleting tether must not empty a working NLB. The
//!   target groups stay as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{info, warn};

use super::dispatch::{Applied, Failure};
use crate::aws::AwsError;
use crate::config::Vars;
use crate::dns::{DnsFailure, HickoryDns, Lookup, RecordKind};
use crate::fields::{FieldError, Fields, shorten};
use crate::metrics::{Datum, Metrics};
use crate::sync::groups::{Elb, TargetGroups};
use crate::sync::interfaces::Ec2Interfaces;
use crate::sync::mapping::TargetGroupArn;
use crate::sync::store::S3Store;
use crate::sync::{Engine, SyncConfig, SyncReport};

pub const TYPE: &str = "Custom::TargetSync";

/// The resource's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    pub config: SyncConfig,
}

impl Props {
    pub fn read(properties: &Value) -> Result<Props, FieldError> {
        let mut f = Fields::new("ResourceProperties", properties)?;
        f.string("ServiceToken")?;
        // CloudFormation passes the resource's own timeout along; not used here.
        f.number("ServiceTimeout", 1..=3600)?;
        let location = f.at("Environment");
        let vars = environment(&location, f.raw("Environment"))?;
        f.finish()?;
        let mut config = SyncConfig::from_vars(&Vars(|name: &str| vars.get(name).cloned()))
            .map_err(|e| FieldError::new(format!("{location}.{}", e.location), e.problem))?;
        // One-off syncs publish nothing, and only register.
        config.metrics.enabled = false;
        config.function_name = None;
        config.count_absences = false;
        Ok(Props { config })
    }

    /// One first sync per state location.
    pub fn physical_id(&self) -> String {
        let s = &self.config.state;
        format!("tether-first-sync:{}/{}", s.bucket, s.prefix)
    }
}

/// `Environment`: an object of strings (CloudFormation passes every scalar
/// as a string).
fn environment(
    location: &str,
    value: Option<&Value>,
) -> Result<HashMap<String, String>, FieldError> {
    let Some(Value::Object(map)) = value else {
        return Err(FieldError::new(
            location,
            "is required: the target-sync function's environment variables, as an object of strings",
        ));
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
            other => Err(FieldError::new(
                format!("{location}.{k}"),
                format!("expected a string, got {}", shorten(&other.to_string())),
            )),
        })
        .collect()
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
/// would otherwise hold every deploy until its timeout.
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

/// Everything the syncs of one request registered, per target group.
pub type Registered = BTreeMap<TargetGroupArn, BTreeSet<SocketAddr>>;

/// Runs the sync; while it fails in a way time cures, waits and runs it
/// again, as long as the deadline allows. Also returns every target the
/// attempts registered.
pub async fn run_patiently<D, I, T, S>(
    engine: &Engine<D, I, T, S, Unpublished>,
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
        let progress = report.mappings.iter().any(|m| m.error.is_none());
        let patient = !progress || started.elapsed() < PATIENCE_WITH_PROGRESS;
        if !waits_for_time(&report) || !patient || Instant::now() + wait + RESERVE > deadline {
            return (report, registered);
        }
        warn!(
            wait_ms = wait.as_millis() as u64,
            "access denied or name not found yet: waiting, then syncing again"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// Create or Update.
pub async fn apply(
    clients: Clients<'_>,
    props: &Props,
    creating: bool,
    deadline: Instant,
) -> Result<Applied, Failure> {
    let engine = Engine {
        config: props.config.clone(),
        dns: clients.dns,
        interfaces: clients.interfaces,
        elb: clients.elb.clone(),
        store: S3Store::new(clients.s3.clone(), props.config.state.bucket.clone()),
        metrics: Unpublished,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let sync_deadline = deadline
        .checked_sub(UNDO_RESERVE.min(left / 4))
        .unwrap_or(deadline);
    let (report, registered) = run_patiently(&engine, sync_deadline).await;
    let failures = report.failures();
    let synced = report.mappings.iter().filter(|m| m.error.is_none()).count();
    if !failures.is_empty() && (synced == 0 || report.discovery_error.is_some()) {
        let mut why = format!("sync failed: {}", failures.join("; "));
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
        physical_id: props.physical_id(),
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

    #[test]
    fn only_errors_that_time_cures_are_waited_for() {
        use crate::sync::{ErrorKind, MappingError, MappingReport};
        let props = props(json!({"STATE_BUCKET": "b1b", "TARGETS":
            "[{\"dns_name\":\"a.example.com\",\"target_group_arn\":\"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/50dc6c495c0c9188\",\"port\":80}]"}))
        .unwrap();
        let report = |code: &str| {
            let mut m = MappingReport::new(&props.config.mappings[0], None);
            m.fail(MappingError {
                kind: ErrorKind::Source,
                code: Some(code.to_owned()),
                message: "x".into(),
            });
            SyncReport {
                dry_run: false,
                mappings: vec![m],
                bad_tags: Vec::new(),
                discovery_error: None,
                metrics_error: None,
            }
        };
        for code in ["NXDOMAIN", "AccessDenied", "UnauthorizedOperation"] {
            assert!(waits_for_time(&report(code)), "{code}");
        }
        for code in ["SERVFAIL", "TargetGroupNotFound", "Throttling"] {
            assert!(!waits_for_time(&report(code)), "{code}");
        }
    }
    use super::*;
    use serde_json::json;

    fn props(env: Value) -> Result<Props, FieldError> {
        Props::read(&json!({
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:cr",
            "Environment": env,
        }))
    }

    #[test]
    fn the_environment_of_the_function() {
        let p = props(
            json!({"STATE_BUCKET": "tether-state", "STATE_PREFIX": "sync/",
            "TAG_PREFIX": "stg:", "DNS_SERVERS": "", "CW_METRIC_FLAG_IP_COUNT": "true"}),
        )
        .unwrap();
        assert_eq!(p.config.tag_prefix.as_deref(), Some("stg:"));
        assert_eq!(p.config.state.prefix, "sync/");
        assert!(!p.config.metrics.enabled);
        assert_eq!(p.physical_id(), "tether-first-sync:tether-state/sync/");
    }

    #[test]
    fn bad_properties_name_the_variable_and_the_value() {
        for (env, location, needle) in [
            (
                json!({}),
                "ResourceProperties.Environment.STATE_BUCKET",
                "not set",
            ),
            (
                json!({"STATE_BUCKET": "b1b", "TAG_PREFIX": "aws:x"}),
                "ResourceProperties.Environment.TAG_PREFIX",
                "aws:x",
            ),
            (
                json!({"STATE_BUCKET": "b1b", "TARGETS": "[{"}),
                "ResourceProperties.Environment.TARGETS",
                "JSON",
            ),
            (
                json!({"STATE_BUCKET": ["x"]}),
                "ResourceProperties.Environment.STATE_BUCKET",
                "string",
            ),
            (json!("x"), "ResourceProperties.Environment", "required"),
        ] {
            let err = props(env).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
        let err = Props::read(&json!({"Environment": {"STATE_BUCKET": "b1b"}, "Mappings": "x"}))
            .unwrap_err();
        assert_eq!(err.location, "ResourceProperties.Mappings");
    }
}

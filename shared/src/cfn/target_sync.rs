//! `Custom::TargetSync`: one target-sync mapping, synced at deploy time.
//!
//! Create and Update run one sync with the shared engine, so the NLB has
//! targets the moment the stack completes. The mapping's ownership is always
//! `tracked`: Delete deregisters exactly the targets this mapping registered
//! (as its state object records them) and deletes the state object; targets
//! that someone else registered, e.g. a scheduled target-sync with its own
//! state, are left alone. By default the state lives under its own prefix
//! ([`DEFAULT_PREFIX`]), apart from any scheduled mapping's. The tether
//! template passes the scheduled sync's prefix instead, on purpose: the
//! first sync's state is the one the schedule continues, and deleting the
//! stack removes the targets either of them registered.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{info, warn};

use super::dispatch::{Applied, Failure};
use super::dns_addresses::read_servers;
use super::event::blank_as_absent;
use crate::aws::AwsError;
use crate::config::{
    DEFAULT_NAMESPACE, DnsSettings, MetricsSettings, StateLocation, SyncConfig, normalize_prefix,
    validate_bucket,
};
use crate::dns::{DnsFailure, HickoryDns, Lookup};
use crate::elb::{Elb, TargetGroups};
use crate::fields::{FieldError, Fields};
use crate::mapping::{Mapping, Naming, Ownership, RecordKind};
use crate::metrics::{Datum, Metrics};
use crate::state::Prior;
use crate::store::{S3Store, StateStore, Version};
use crate::sync::{Engine, SyncReport, state_key};

pub const TYPE: &str = "Custom::TargetSync";
/// The default `StatePrefix`.
pub const DEFAULT_PREFIX: &str = "custom-resources/target-sync/";

/// The resource's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    pub mapping: Mapping,
    pub state: StateLocation,
    /// Empty: the function's resolver.
    pub servers: Vec<SocketAddr>,
}

impl Props {
    pub fn read(properties: &Value) -> Result<Props, FieldError> {
        let properties = &blank_as_absent(properties);
        let mut f = Fields::new("ResourceProperties", properties)?;
        f.string("ServiceToken")?;
        let explicit_ownership = properties.get("Ownership").is_some_and(|v| !v.is_null());
        let mut mapping = Mapping::read(&mut f, Naming::Pascal)?;
        if explicit_ownership && mapping.ownership == Ownership::Exclusive {
            return Err(FieldError::new(
                f.at("Ownership"),
                "\"exclusive\" is not available for Custom::TargetSync: its Delete removes what it registered, so it tracks what it registers (\"tracked\", the default)",
            ));
        }
        mapping.ownership = Ownership::Tracked;
        let bucket = validate_bucket(&f.required_string("StateBucket")?)
            .map_err(|e| FieldError::new(f.at("StateBucket"), e.problem))?;
        let prefix = match f.string("StatePrefix")? {
            None => DEFAULT_PREFIX.to_owned(),
            Some(p) => {
                normalize_prefix(&p).map_err(|e| FieldError::new(f.at("StatePrefix"), e.problem))?
            }
        };
        let servers = read_servers(&mut f)?;
        // Ordering only: a template sets `After: !Ref <policy>` to create this
        // resource after a policy that Fn::ForEach generated (DependsOn cannot
        // name those). The value is not used.
        f.string_list("After")?;
        f.finish()?;
        Ok(Props {
            mapping,
            state: StateLocation { bucket, prefix },
            servers,
        })
    }

    /// Identity: target group, DNS name and port, like the state key. Other
    /// properties (record types, zone, countdown, DNS servers, even where the
    /// state is kept) are updated in place.
    pub fn physical_id(&self) -> String {
        let m = &self.mapping;
        format!(
            "tether-sync:{}:{}:{}",
            m.target_group_arn.resource(),
            m.dns_name,
            m.port
        )
    }

    pub fn state_key(&self) -> String {
        state_key(&self.state.prefix, &self.mapping)
    }

    fn config(&self, dns_timeout: Duration) -> SyncConfig {
        SyncConfig {
            mappings: vec![self.mapping.clone()],
            state: self.state.clone(),
            dns: DnsSettings {
                servers: self.servers.clone(),
                timeout: dns_timeout,
            },
            // One-off syncs publish nothing; the scheduled target-sync does.
            metrics: MetricsSettings {
                namespace: DEFAULT_NAMESPACE.to_owned(),
                enabled: false,
            },
            dry_run: false,
        }
    }
}

/// The function's resolver, or one for the resource's `DnsServers`.
pub enum Resolver<'a> {
    Shared(&'a HickoryDns),
    Own(Box<HickoryDns>),
}

impl Resolver<'_> {
    fn get(&self) -> &HickoryDns {
        match self {
            Resolver::Shared(dns) => dns,
            Resolver::Own(dns) => dns.as_ref(),
        }
    }
}

impl Lookup for Resolver<'_> {
    async fn lookup(&self, name: &str, kind: RecordKind) -> Result<Vec<IpAddr>, DnsFailure> {
        self.get().lookup(name, kind).await
    }
}

/// Metrics of custom resource syncs: switched off in their configuration
/// (`metrics.enabled = false`), so the engine never publishes through this.
pub struct Unpublished;

impl Metrics for Unpublished {
    async fn publish(&self, _: &str, _: &[Datum]) -> Result<(), AwsError> {
        Ok(())
    }
}

/// The clients a TargetSync request uses.
pub struct Clients<'a> {
    pub dns: Resolver<'a>,
    pub dns_timeout: Duration,
    pub elb: &'a Elb,
    pub s3: &'a aws_sdk_s3::Client,
}

/// Retries of a sync that AWS denied: the template attaches the mapping's
/// policy just before this resource, and IAM takes a few seconds to apply it.
const DENIED_FIRST_WAIT: Duration = Duration::from_secs(2);
const DENIED_MAX_WAIT: Duration = Duration::from_secs(16);
/// Time kept for a last attempt and the answer when retrying.
const DENIED_RESERVE: Duration = Duration::from_secs(30);

/// Runs the sync; while AWS answers AccessDenied (a new policy not yet in
/// effect), waits and runs it again, as long as the deadline allows.
pub async fn run_while_denied<D, S>(
    engine: &Engine<D, Elb, S, Unpublished>,
    deadline: Instant,
) -> SyncReport
where
    D: Lookup,
    S: StateStore,
{
    let mut wait = DENIED_FIRST_WAIT;
    loop {
        let report = engine.run(deadline.into_std()).await;
        let denied = report.mappings.iter().any(|m| {
            m.error
                .as_ref()
                .is_some_and(|e| e.message.contains("AccessDenied"))
        });
        if !denied || Instant::now() + wait + DENIED_RESERVE > deadline {
            return report;
        }
        warn!(
            wait_ms = wait.as_millis() as u64,
            "access denied: waiting for IAM to apply the new policy, then syncing again"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(DENIED_MAX_WAIT);
    }
}

/// Create, or Update to `props` (from `old`, when the old properties were valid).
pub async fn apply(
    clients: Clients<'_>,
    props: &Props,
    old: Option<&Props>,
    deadline: Instant,
) -> Result<Applied, Failure> {
    let mut notes = Vec::new();
    if let Some(old) = old.filter(|o| o.physical_id() == props.physical_id())
        && let Some(note) = move_state(clients.s3, old, props).await?
    {
        notes.push(note);
    }
    let engine = Engine {
        config: props.config(clients.dns_timeout),
        dns: clients.dns,
        elb: clients.elb.clone(),
        store: S3Store::new(clients.s3.clone(), props.state.bucket.clone()),
        metrics: Unpublished,
    };
    let report = run_while_denied(&engine, deadline).await;
    let failures = report.failures();
    if !failures.is_empty() {
        return Err(Failure(format!("sync failed: {}", failures.join("; "))));
    }
    let Some(m) = report.mappings.first() else {
        return Err(Failure("sync reported no mapping".into()));
    };
    if let Some(note) = &m.note {
        notes.push(note.clone());
    }
    let list = |addrs: &[String]| addrs.join(",");
    let resolved: Vec<String> = m.resolved.iter().map(IpAddr::to_string).collect();
    let registered: Vec<String> = m.registered.iter().map(SocketAddr::to_string).collect();
    let deregistered: Vec<String> = m.deregistered.iter().map(SocketAddr::to_string).collect();
    info!(resolved = ?resolved, registered = ?registered, deregistered = ?deregistered, targets = m.targets, "synced");
    let data = [
        ("Addresses", list(&resolved)),
        ("Registered", list(&registered)),
        ("Targets", m.targets.unwrap_or_default().to_string()),
        (
            "StateObject",
            format!("s3://{}/{}", props.state.bucket, props.state_key()),
        ),
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

/// The same mapping with its state kept elsewhere now: the state (and with it
/// the record of what the mapping registered) moves along.
async fn move_state(
    s3: &aws_sdk_s3::Client,
    old: &Props,
    new: &Props,
) -> Result<Option<String>, Failure> {
    let (old_key, new_key) = (old.state_key(), new.state_key());
    if old.state.bucket == new.state.bucket && old_key == new_key {
        return Ok(None);
    }
    let from = S3Store::new(s3.clone(), old.state.bucket.clone());
    let to = S3Store::new(s3.clone(), new.state.bucket.clone());
    let s3_failure = |e: AwsError| Failure(format!("moving the state object: {e}"));
    let loaded = match from.load(&old_key).await {
        Err(e) if e.is_code("NoSuchBucket") => return Ok(None),
        other => other.map_err(s3_failure)?,
    };
    let Prior::Valid(state) = loaded.prior else {
        return Ok(None);
    };
    let target = to.load(&new_key).await.map_err(s3_failure)?;
    if target.version != Version::Absent {
        return Ok(Some(format!(
            "state s3://{}/{new_key} already exists: kept it, and left s3://{}/{old_key} in place",
            new.state.bucket, old.state.bucket
        )));
    }
    to.save(&new_key, &state, &Version::Absent)
        .await
        .map_err(|e| Failure(format!("moving the state object: {e}")))?;
    from.delete(&old_key).await.map_err(s3_failure)?;
    info!(from = %format!("s3://{}/{old_key}", old.state.bucket), to = %format!("s3://{}/{new_key}", new.state.bucket), "state object moved");
    Ok(Some(format!(
        "state moved from s3://{}/{old_key} to s3://{}/{new_key}",
        old.state.bucket, new.state.bucket
    )))
}

/// Delete: deregisters the targets the mapping registered that are still
/// registered (with their registered port and zone), then deletes the state.
/// A missing state object, target group or bucket is success.
pub async fn delete(elb: &Elb, s3: &aws_sdk_s3::Client, props: &Props) -> Result<Applied, Failure> {
    let key = props.state_key();
    let arn = &props.mapping.target_group_arn;
    let store = S3Store::new(s3.clone(), props.state.bucket.clone());
    let loaded = match store.load(&key).await {
        Ok(loaded) => Some(loaded),
        Err(e) if e.is_code("NoSuchBucket") => None,
        Err(e) => return Err(Failure(e.to_string())),
    };
    let mut unusable = None;
    let owned: BTreeSet<SocketAddr> = match loaded.as_ref().map(|l| (&l.prior, l)) {
        Some((Prior::Valid(state), _)) => state.owned.clone(),
        Some((Prior::Corrupt(e), l)) => {
            // Nothing is known to be ours: deregister nothing, keep the bytes.
            warn!(key, error = %e, "state object is unusable: deregistering nothing");
            if let (Some(bytes), Version::ETag(etag)) = (&l.unusable, &l.version) {
                let aside = store
                    .preserve(&key, etag, bytes)
                    .await
                    .map_err(|e| Failure(e.to_string()))?;
                unusable = Some(format!(
                    "state object s3://{}/{key} was unusable ({e}): nothing deregistered; it is kept at {aside}",
                    props.state.bucket
                ));
            }
            BTreeSet::new()
        }
        Some((Prior::Fresh, _)) | None => BTreeSet::new(),
    };

    let mut deregistered = Vec::new();
    if !owned.is_empty() {
        match elb.describe(arn).await {
            Ok(targets) => {
                let mine: Vec<_> = targets
                    .into_iter()
                    .filter(|t| !t.draining && owned.contains(&t.addr))
                    .collect();
                match elb.deregister(arn, &mine).await {
                    Ok(()) => deregistered.extend(mine.iter().map(|t| t.addr.to_string())),
                    Err(e) if e.is_code("TargetGroupNotFound") => {}
                    Err(e) => return Err(Failure(e.to_string())),
                }
            }
            Err(e) if e.is_code("TargetGroupNotFound") => {}
            Err(e) => return Err(Failure(e.to_string())),
        }
    }
    if loaded
        .as_ref()
        .is_some_and(|l| l.version != Version::Absent)
    {
        match store.delete(&key).await {
            Ok(()) => {}
            Err(e) if e.is_code("NoSuchBucket") || e.is_code("NoSuchKey") => {}
            Err(e) => return Err(Failure(e.to_string())),
        }
    }
    info!(deregistered = ?deregistered, state_key = %key, "mapping removed");
    Ok(Applied {
        physical_id: props.physical_id(),
        data: Default::default(),
        note: Some(match (unusable, deregistered.is_empty()) {
            (Some(why), _) => why,
            (None, true) => "no target of this mapping was registered".to_owned(),
            (None, false) => format!("deregistered {}", deregistered.join(", ")),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-80/50dc6c495c0c9188";

    fn props(extra: Value) -> Result<Props, FieldError> {
        let mut v = json!({"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:cr",
            "DnsName": "internal-alb.example.com", "TargetGroupArn": ARN, "Port": "80",
            "StateBucket": "tether-state"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        Props::read(&v)
    }

    #[test]
    fn cloudformation_strings_and_tracked_ownership() {
        let p = props(json!({"RecordTypes": ["A", "AAAA"], "DeregisterAfter": "2", "DnsServers": "127.0.0.1:5353"})).unwrap();
        assert_eq!(p.mapping.port, 80);
        assert_eq!(p.mapping.deregister_after, 2);
        assert_eq!(p.mapping.ownership, Ownership::Tracked);
        assert_eq!(p.state.prefix, DEFAULT_PREFIX);
        assert_eq!(p.servers, ["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]);
        assert_eq!(
            p.physical_id(),
            "tether-sync:targetgroup/api-80/50dc6c495c0c9188:internal-alb.example.com:80"
        );
        assert_eq!(
            p.state_key(),
            "custom-resources/target-sync/targetgroup/api-80/50dc6c495c0c9188/internal-alb.example.com/80.json"
        );
        assert!(props(json!({"Ownership": "tracked"})).is_ok());
        // What a template passes for optional parameters left empty.
        let p = props(json!({"DnsServers": "", "StatePrefix": ""})).unwrap();
        assert!(p.servers.is_empty());
        assert_eq!(p.state.prefix, DEFAULT_PREFIX);
    }

    #[test]
    fn identity_changes_only_with_group_name_or_port() {
        let id = |extra| props(extra).unwrap().physical_id();
        let base = id(json!({}));
        for same in [
            json!({"DeregisterAfter": 9}),
            json!({"StatePrefix": "x/"}),
            json!({"AvailabilityZone": "all"}),
            json!({"DnsName": "Internal-ALB.example.com."}),
            json!({"Port": 80}),
            json!({"After": "arn:aws:iam::123456789012:policy/tether-TargetGroupAccess-1"}),
        ] {
            assert_eq!(id(same.clone()), base, "{same}");
        }
        for other in [
            json!({"Port": "443"}),
            json!({"DnsName": "other.example.com"}),
            json!({"TargetGroupArn": ARN.replace("api-80", "api-81")}),
        ] {
            assert_ne!(id(other.clone()), base, "{other}");
        }
    }

    #[test]
    fn bad_properties_name_property_and_value() {
        for (extra, location, needle) in [
            (json!({"Port": "0"}), "ResourceProperties.Port", "\"0\""),
            (json!({"Port": null}), "ResourceProperties.Port", "required"),
            (
                json!({"TargetGroupArn": "tg-1"}),
                "ResourceProperties.TargetGroupArn",
                "tg-1",
            ),
            (
                json!({"StateBucket": "Bad_Bucket"}),
                "ResourceProperties.StateBucket",
                "Bad_Bucket",
            ),
            (
                json!({"StatePrefix": "a//b"}),
                "ResourceProperties.StatePrefix",
                "a//b",
            ),
            (
                json!({"Ownership": "exclusive"}),
                "ResourceProperties.Ownership",
                "exclusive",
            ),
            (
                json!({"DnsServers": ["nope"]}),
                "ResourceProperties.DnsServers",
                "nope",
            ),
            (json!({"Prot": "80"}), "ResourceProperties.Prot", "unknown"),
        ] {
            let err = props(extra).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
    }
}

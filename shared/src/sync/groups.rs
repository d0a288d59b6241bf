//! NLB target groups of type `ip`: found through the Resource Groups Tagging
//! API, read and changed through the Elastic Load Balancing v2 API.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetGroupIpAddressTypeEnum, TargetHealthStateEnum, TargetTypeEnum,
};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use serde::Serialize;

use super::mapping::TargetGroupArn;
use crate::aws::limits::{
    ELB_DESCRIBE, TAGGED_PER_PAGE, TAGGING_GET_RESOURCES, TARGET_GROUPS_PER_PAGE,
};
use crate::aws::{AwsError, Pacer, SyncClients};

/// A target as `DescribeTargetHealth` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub addr: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Being removed: does not count as registered.
    pub draining: bool,
}

/// What `DescribeTargetGroups` says of a group: facts fixed when the group
/// was created, so they are read once per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub arn: TargetGroupArn,
    /// Target type `ip`: the only kind target-sync can manage.
    pub ip_targets: bool,
    pub port: Option<u16>,
    /// `IpAddressType` `ipv6`: its targets are IPv6 addresses.
    pub ipv6: bool,
    pub vpc_id: Option<String>,
}

/// A group's tags, as `(key, value)` pairs.
pub type Tagged = (TargetGroupArn, Vec<(String, String)>);

/// A group's targets, or the news that it no longer exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Described {
    Targets(Vec<Target>),
    /// `TargetGroupNotFound`: deleted (the tagging API may still list it
    /// for a while: its tags are eventually consistent).
    Gone,
}

pub trait TargetGroups: Send + Sync {
    /// The target groups carrying the tag `key`, with all their tags.
    fn tagged(&self, key: &str) -> impl Future<Output = Result<Vec<Tagged>, AwsError>> + Send;

    /// What ELB says of these groups; a group missing from the answer no
    /// longer exists.
    fn info(
        &self,
        arns: &[TargetGroupArn],
    ) -> impl Future<Output = Result<HashMap<TargetGroupArn, GroupInfo>, AwsError>> + Send;

    /// Every target of the group, draining ones included (marked).
    fn describe(
        &self,
        arn: &TargetGroupArn,
    ) -> impl Future<Output = Result<Described, AwsError>> + Send;

    /// How many `describe` calls this run may make in `window`.
    fn describe_budget(&self, window: Duration) -> usize;

    /// One RegisterTargets call.
    fn register(
        &self,
        arn: &TargetGroupArn,
        targets: &[SocketAddr],
        availability_zone: Option<&str>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// One DeregisterTargets call, with the targets exactly as they are
    /// registered (port and zone).
    fn deregister(
        &self,
        arn: &TargetGroupArn,
        targets: &[Target],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// [`TargetGroups`] through the Resource Groups Tagging and ELB v2 APIs,
/// pacing its ELB Describe calls to a share of the account's bucket.
#[derive(Clone)]
pub struct Elb {
    client: Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
    describes: Arc<Pacer>,
    get_resources: Arc<Pacer>,
    /// Every group's fixed facts, as last listed.
    known: Arc<Mutex<HashMap<TargetGroupArn, GroupInfo>>>,
}

impl Elb {
    /// `share` (0 to 1) of ELB's Describe bucket for this function.
    pub fn new(clients: &SyncClients, share: f64) -> Self {
        Self {
            client: clients.elb.clone(),
            tagging: clients.tagging.clone(),
            describes: Arc::new(Pacer::new(ELB_DESCRIBE, share)),
            get_resources: Arc::new(Pacer::new(TAGGING_GET_RESOURCES, 1.0)),
            known: Arc::default(),
        }
    }

    /// Unpaced, for a client whose answers are mocked.
    pub fn unpaced(clients: &SyncClients) -> Self {
        Self {
            describes: Arc::new(Pacer::unlimited()),
            get_resources: Arc::new(Pacer::unlimited()),
            ..Self::new(clients, 1.0)
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<TargetGroupArn, GroupInfo>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every target group of the account and region (all pages).
    async fn list(&self) -> Result<Vec<GroupInfo>, AwsError> {
        const OP: &str = "elasticloadbalancing:DescribeTargetGroups";
        let mut groups = Vec::new();
        let mut marker = None;
        loop {
            self.describes.take().await;
            let page = self
                .client
                .describe_target_groups()
                .page_size(TARGET_GROUPS_PER_PAGE)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, "*", &e))?;
            for g in page.target_groups() {
                let text = g.target_group_arn().unwrap_or_default();
                let arn = text
                    .parse()
                    .map_err(|e: String| AwsError::new(OP, "*", e))?;
                groups.push(GroupInfo {
                    arn,
                    ip_targets: g.target_type() == Some(&TargetTypeEnum::Ip),
                    port: g.port().and_then(|p| u16::try_from(p).ok()),
                    ipv6: g.ip_address_type() == Some(&TargetGroupIpAddressTypeEnum::Ipv6),
                    vpc_id: g.vpc_id().map(str::to_owned),
                });
            }
            match page.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => return Ok(groups),
            }
        }
    }
}

fn description(addr: &SocketAddr, availability_zone: Option<&str>) -> TargetDescription {
    TargetDescription::builder()
        .id(addr.ip().to_string())
        .port(i32::from(addr.port()))
        .set_availability_zone(availability_zone.map(str::to_owned))
        .build()
}

impl TargetGroups for Elb {
    async fn tagged(&self, key: &str) -> Result<Vec<Tagged>, AwsError> {
        const OP: &str = "tag:GetResources";
        // Filtered on the tag key and the resource type, 100 per page
        // (Resource Groups Tagging API reference, GetResources).
        let mut tagged = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.get_resources.take().await;
            let page = self
                .tagging
                .get_resources()
                .tag_filters(TagFilter::builder().key(key).build())
                .resource_type_filters("elasticloadbalancing:targetgroup")
                .resources_per_page(TAGGED_PER_PAGE)
                .set_pagination_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, key, &e))?;
            for r in page.resource_tag_mapping_list() {
                let Some(arn) = r.resource_arn().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                let tags = r
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect();
                tagged.push((arn, tags));
            }
            match page.pagination_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(tagged),
            }
        }
    }

    async fn info(
        &self,
        arns: &[TargetGroupArn],
    ) -> Result<HashMap<TargetGroupArn, GroupInfo>, AwsError> {
        let unknown = {
            let known = self.known();
            arns.iter().any(|a| !known.contains_key(a))
        };
        if unknown {
            // A new group: list them all (a page holds 400), once.
            let listed = self.list().await?;
            *self.known() = listed.into_iter().map(|g| (g.arn.clone(), g)).collect();
        }
        let known = self.known();
        Ok(arns
            .iter()
            .filter_map(|a| known.get(a).map(|g| (a.clone(), g.clone())))
            .collect())
    }

    async fn describe(&self, arn: &TargetGroupArn) -> Result<Described, AwsError> {
        const OP: &str = "elasticloadbalancing:DescribeTargetHealth";
        self.describes.take().await;
        // DescribeTargetHealth is not paginated: one call returns every target.
        let output = match self
            .client
            .describe_target_health()
            .target_group_arn(arn.as_str())
            .send()
            .await
        {
            Ok(output) => output,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_target_group_not_found_exception()) =>
            {
                self.known().remove(arn);
                return Ok(Described::Gone);
            }
            Err(e) => return Err(AwsError::from_sdk(OP, arn.as_str(), &e)),
        };
        output
            .target_health_descriptions()
            .iter()
            .map(|d| {
                let target = d.target();
                let id = target.and_then(|t| t.id()).unwrap_or_default();
                let ip: IpAddr = id.parse().map_err(|_| {
                    AwsError::new(
                        OP,
                        arn.as_str(),
                        format!("target `{id}` is not an IP address: target-sync manages target groups of type ip"),
                    )
                })?;
                let port = target
                    .and_then(|t| t.port())
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| AwsError::new(OP, arn.as_str(), format!("target `{id}` has no valid port")))?;
                let draining = d
                    .target_health()
                    .and_then(|h| h.state())
                    .is_some_and(|s| *s == TargetHealthStateEnum::Draining);
                Ok(Target {
                    addr: SocketAddr::new(ip, port),
                    availability_zone: target.and_then(|t| t.availability_zone()).map(str::to_owned),
                    draining,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Described::Targets)
    }

    fn describe_budget(&self, window: Duration) -> usize {
        self.describes.budget(window)
    }

    async fn register(
        &self,
        arn: &TargetGroupArn,
        targets: &[SocketAddr],
        availability_zone: Option<&str>,
    ) -> Result<(), AwsError> {
        self.client
            .register_targets()
            .target_group_arn(arn.as_str())
            .set_targets(Some(
                targets
                    .iter()
                    .map(|a| description(a, availability_zone))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("elasticloadbalancing:RegisterTargets", arn.as_str(), &e)
            })?;
        Ok(())
    }

    async fn deregister(&self, arn: &TargetGroupArn, targets: &[Target]) -> Result<(), AwsError> {
        let descriptions = targets
            .iter()
            .map(|t| description(&t.addr, t.availability_zone.as_deref()))
            .collect();
        self.client
            .deregister_targets()
            .target_group_arn(arn.as_str())
            .set_targets(Some(descriptions))
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("elasticloadbalancing:DeregisterTargets", arn.as_str(), &e)
            })?;
        Ok(())
    }
}

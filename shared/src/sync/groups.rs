//! NLB target groups of type `ip`, through the Elastic Load Balancing v2 API.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetGroupIpAddressTypeEnum, TargetHealthStateEnum, TargetTypeEnum,
};
use serde::Serialize;

use super::mapping::TargetGroupArn;
use crate::aws::AwsError;

/// Targets per Register/DeregisterTargets call.
pub const BATCH: usize = 50;
/// ARNs per DescribeTags call (the API's limit).
pub const TAGS_PER_CALL: usize = 20;
/// Target groups per DescribeTargetGroups page (the API's maximum).
const PAGE_SIZE: i32 = 400;

/// A target as `DescribeTargetHealth` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub addr: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Being removed: does not count as registered.
    pub draining: bool,
}

/// A target group as `DescribeTargetGroups` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub arn: TargetGroupArn,
    /// Target type `ip`: the only kind target-sync can manage.
    pub ip_targets: bool,
    pub port: Option<u16>,
    /// `IpAddressType` `ipv6`: its targets are IPv6 addresses.
    pub ipv6: bool,
}

/// A group's tags, as `(key, value)` pairs.
pub type Tagged = (TargetGroupArn, Vec<(String, String)>);

pub trait TargetGroups: Send + Sync {
    /// Every target group of the account and region (all pages).
    fn list(&self) -> impl Future<Output = Result<Vec<GroupInfo>, AwsError>> + Send;

    /// The tags of these groups, asked [`TAGS_PER_CALL`] at a time.
    fn tags(
        &self,
        arns: &[TargetGroupArn],
    ) -> impl Future<Output = Result<Vec<Tagged>, AwsError>> + Send;

    /// Every target of the group, draining ones included (marked).
    fn describe(
        &self,
        arn: &TargetGroupArn,
    ) -> impl Future<Output = Result<Vec<Target>, AwsError>> + Send;

    fn register(
        &self,
        arn: &TargetGroupArn,
        targets: &[SocketAddr],
        availability_zone: Option<&str>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Deregisters targets exactly as they are registered (port and zone).
    fn deregister(
        &self,
        arn: &TargetGroupArn,
        targets: &[Target],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// [`TargetGroups`] through the Elastic Load Balancing v2 API.
#[derive(Clone)]
pub struct Elb {
    client: Client,
}

impl Elb {
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn description(addr: &SocketAddr, availability_zone: Option<&str>) -> TargetDescription {
    TargetDescription::builder()
        .id(addr.ip().to_string())
        .port(i32::from(addr.port()))
        .set_availability_zone(availability_zone.map(str::to_owned))
        .build()
}

impl Elb {
    /// One DescribeTags call (at most [`TAGS_PER_CALL`] ARNs).
    async fn tags_of(&self, chunk: &[TargetGroupArn]) -> Result<Vec<Tagged>, AwsError> {
        const OP: &str = "elasticloadbalancing:DescribeTags";
        let out = self
            .client
            .describe_tags()
            .set_resource_arns(Some(chunk.iter().map(|a| a.as_str().to_owned()).collect()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, format!("{} target groups", chunk.len()), &e))?;
        let mut tagged = Vec::with_capacity(chunk.len());
        for description in out.tag_descriptions() {
            let Some(arn) = chunk
                .iter()
                .find(|a| Some(a.as_str()) == description.resource_arn())
            else {
                continue;
            };
            let tags = description
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            tagged.push((arn.clone(), tags));
        }
        Ok(tagged)
    }
}

impl TargetGroups for Elb {
    async fn list(&self) -> Result<Vec<GroupInfo>, AwsError> {
        const OP: &str = "elasticloadbalancing:DescribeTargetGroups";
        let mut groups = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .describe_target_groups()
                .page_size(PAGE_SIZE)
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
                });
            }
            match page.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => return Ok(groups),
            }
        }
    }

    async fn tags(&self, arns: &[TargetGroupArn]) -> Result<Vec<Tagged>, AwsError> {
        let mut all = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(TAGS_PER_CALL) {
            match self.tags_of(chunk).await {
                Ok(tagged) => all.extend(tagged),
                // A group deleted since it was listed fails the whole call:
                // ask one by one, and leave the deleted ones out.
                Err(e) if e.is_code("TargetGroupNotFound") => {
                    for arn in chunk {
                        match self.tags_of(std::slice::from_ref(arn)).await {
                            Ok(tagged) => all.extend(tagged),
                            Err(e) if e.is_code("TargetGroupNotFound") => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    async fn describe(&self, arn: &TargetGroupArn) -> Result<Vec<Target>, AwsError> {
        const OP: &str = "elasticloadbalancing:DescribeTargetHealth";
        // DescribeTargetHealth is not paginated: one call returns every target.
        let output = self
            .client
            .describe_target_health()
            .target_group_arn(arn.as_str())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, arn.as_str(), &e))?;
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
            .collect()
    }

    async fn register(
        &self,
        arn: &TargetGroupArn,
        targets: &[SocketAddr],
        availability_zone: Option<&str>,
    ) -> Result<(), AwsError> {
        for batch in targets.chunks(BATCH) {
            self.client
                .register_targets()
                .target_group_arn(arn.as_str())
                .set_targets(Some(
                    batch
                        .iter()
                        .map(|a| description(a, availability_zone))
                        .collect(),
                ))
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk("elasticloadbalancing:RegisterTargets", arn.as_str(), &e)
                })?;
        }
        Ok(())
    }

    async fn deregister(&self, arn: &TargetGroupArn, targets: &[Target]) -> Result<(), AwsError> {
        for batch in targets.chunks(BATCH) {
            let descriptions = batch
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
        }
        Ok(())
    }
}

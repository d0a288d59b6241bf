//! NLB target groups of type `ip`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthStateEnum};

use crate::aws::AwsError;
use crate::mapping::TargetGroupArn;
use crate::plan::Target;

/// Targets per Register/DeregisterTargets call.
pub const BATCH: usize = 50;

pub trait TargetGroups: Send + Sync {
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

impl TargetGroups for Elb {
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

//! Exact sources: the addresses of network interfaces, listed by EC2.
//!
//! - An Application Load Balancer's nodes are interfaces whose description is
//!   `ELB app/<name>/<id>` (the end of the load balancer's ARN). Listing them
//!   gives every node address, more than the 8 a DNS answer holds, with no
//!   resolver cache in between. A node leaves DNS before its interface is
//!   deleted and still serves then, so a listed node stays a target.
//! - An interface VPC endpoint lists its interfaces in `DescribeVpcEndpoints`.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use aws_sdk_ec2::types::{Filter, NetworkInterface};
use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;

use super::mapping::AlbRef;
use crate::aws::AwsError;

pub trait Interfaces: Send + Sync {
    /// Every address of the load balancer's node interfaces.
    fn alb_addresses(
        &self,
        alb: &AlbRef,
    ) -> impl Future<Output = Result<BTreeSet<IpAddr>, AwsError>> + Send;

    /// Every address of the VPC endpoint's interfaces.
    fn vpce_addresses(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<BTreeSet<IpAddr>, AwsError>> + Send;
}

/// [`Interfaces`] through EC2 (and ELB, to find a load balancer by name).
pub struct Ec2Interfaces {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    /// ALB names already looked up (an ALB keeps its ARN for life), so that
    /// a warm function spends no Describe call on them. An entry is dropped
    /// when its listing comes back empty: the ALB may have been replaced.
    arns: Mutex<HashMap<String, String>>,
}

impl Ec2Interfaces {
    pub fn new(ec2: aws_sdk_ec2::Client, elb: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        Self {
            ec2,
            elb,
            arns: Mutex::default(),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.arns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ALB's ARN: as given, or looked up by name.
    async fn alb_arn(&self, alb: &AlbRef) -> Result<String, AwsError> {
        if let Some(arn) = &alb.arn {
            return Ok(arn.clone());
        }
        if let Some(arn) = self.cached().get(&alb.name) {
            return Ok(arn.clone());
        }
        let arn = self.look_up(alb).await?;
        self.cached().insert(alb.name.clone(), arn.clone());
        Ok(arn)
    }

    async fn look_up(&self, alb: &AlbRef) -> Result<String, AwsError> {
        const OP: &str = "elasticloadbalancing:DescribeLoadBalancers";
        let out = self
            .elb
            .describe_load_balancers()
            .names(&alb.name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, &alb.name, &e))?;
        let lb = out
            .load_balancers()
            .first()
            .ok_or_else(|| AwsError::new(OP, &alb.name, "no load balancer of that name"))?;
        if lb.r#type() != Some(&LoadBalancerTypeEnum::Application) {
            return Err(AwsError::new(
                OP,
                &alb.name,
                "is not an Application Load Balancer: alb: takes one",
            ));
        }
        lb.load_balancer_arn()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::new(OP, &alb.name, "the answer has no ARN"))
    }

    /// Every address of the interfaces asked for (all pages).
    async fn addresses(&self, which: Which, resource: &str) -> Result<BTreeSet<IpAddr>, AwsError> {
        const OP: &str = "ec2:DescribeNetworkInterfaces";
        let mut addrs = BTreeSet::new();
        let mut token = None;
        loop {
            let request = self.ec2.describe_network_interfaces().set_next_token(token);
            let request = match &which {
                Which::Description(text) => request
                    .filters(Filter::builder().name("description").values(text).build())
                    .max_results(1000),
                Which::Ids(ids) => request.set_network_interface_ids(Some(ids.clone())),
            };
            let page = request
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, resource, &e))?;
            for interface in page.network_interfaces() {
                addrs.extend(interface_addresses(interface));
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(addrs),
            }
        }
    }
}

/// Which interfaces to list.
enum Which {
    /// Those with this description.
    Description(String),
    /// These ones.
    Ids(Vec<String>),
}

/// The private IPv4 addresses and the IPv6 addresses of one interface.
fn interface_addresses(interface: &NetworkInterface) -> Vec<IpAddr> {
    let v4 = interface
        .private_ip_addresses()
        .iter()
        .filter_map(|a| a.private_ip_address())
        .chain(interface.private_ip_address());
    let v6 = interface
        .ipv6_addresses()
        .iter()
        .filter_map(|a| a.ipv6_address());
    v4.chain(v6).filter_map(|text| text.parse().ok()).collect()
}

/// `ELB app/<name>/<id>`, the description of an ALB's node interfaces.
pub fn alb_interface_description(alb_arn: &str) -> Option<String> {
    let resource = alb_arn.split_once(":loadbalancer/")?.1;
    resource
        .starts_with("app/")
        .then(|| format!("ELB {resource}"))
}

impl Interfaces for Ec2Interfaces {
    async fn alb_addresses(&self, alb: &AlbRef) -> Result<BTreeSet<IpAddr>, AwsError> {
        let arn = self.alb_arn(alb).await?;
        let description = alb_interface_description(&arn).ok_or_else(|| {
            AwsError::new(
                "elasticloadbalancing:DescribeLoadBalancers",
                &arn,
                "not an Application Load Balancer ARN",
            )
        })?;
        let addrs = self
            .addresses(Which::Description(description.clone()), &description)
            .await?;
        if addrs.is_empty() {
            self.cached().remove(&alb.name);
        }
        Ok(addrs)
    }

    async fn vpce_addresses(&self, id: &str) -> Result<BTreeSet<IpAddr>, AwsError> {
        const OP: &str = "ec2:DescribeVpcEndpoints";
        let out = self
            .ec2
            .describe_vpc_endpoints()
            .vpc_endpoint_ids(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, id, &e))?;
        let endpoint = out
            .vpc_endpoints()
            .first()
            .ok_or_else(|| AwsError::new(OP, id, "no such VPC endpoint"))?;
        let ids = endpoint.network_interface_ids().to_vec();
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        self.addresses(Which::Ids(ids), id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_the_end_of_the_alb_arn() {
        let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/orders/50dc6c495c0c9188";
        assert_eq!(
            alb_interface_description(arn).as_deref(),
            Some("ELB app/orders/50dc6c495c0c9188")
        );
        let nlb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n/1";
        assert_eq!(alb_interface_description(nlb), None);
    }
}

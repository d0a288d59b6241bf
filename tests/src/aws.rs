//! Fixtures in the emulator: a VPC with subnets, load balancers, target
//! groups and buckets.
//!
//! The VPC is created through moto's EC2 Query API with a plain HTTP request
//! (it predates the `aws-sdk-ec2` dependency, and needs no client). moto
//! routes a request by the service name in the credential scope of its
//! `Authorization` header and does not check signatures.
//!
//! moto gives an ALB no network interfaces: [`create_alb_nodes`] creates
//! them by hand, with the description AWS gives a node's interface.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::error::DisplayErrorContext;
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, TargetTypeEnum,
};
use bytes::Bytes;
use hyper::Method;

use crate::moto::{BoxError, Moto, REGION, http_request};

/// A VPC and its subnets in the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `vpc-...`
    pub vpc_id: String,
    /// Two subnets, in us-east-1a and us-east-1b.
    pub subnet_ids: Vec<String>,
}

/// A load balancer in the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// The load balancer's ARN.
    pub arn: String,
    /// Its DNS name, e.g. `name-1.us-east-1.elb.amazonaws.com` (made up by moto).
    pub dns_name: String,
}

/// The kind of load balancer [`create_load_balancer`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    /// An Application Load Balancer.
    Application,
    /// A Network Load Balancer.
    Network,
}

/// Creates VPC 10.0.0.0/16 with subnets 10.0.1.0/24 (us-east-1a) and
/// 10.0.2.0/24 (us-east-1b).
pub async fn create_vpc_with_subnets(moto: &Moto) -> Result<Network, BoxError> {
    let vpc = ec2_query(
        moto,
        &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
    )
    .await?;
    let vpc_id = xml_element(&vpc, "vpcId")?;
    let mut subnet_ids = Vec::new();
    for (cidr, zone) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
        let subnet = ec2_query(
            moto,
            &[
                ("Action", "CreateSubnet"),
                ("VpcId", &vpc_id),
                ("CidrBlock", cidr),
                ("AvailabilityZone", zone),
            ],
        )
        .await?;
        subnet_ids.push(xml_element(&subnet, "subnetId")?);
    }
    Ok(Network { vpc_id, subnet_ids })
}

/// Creates VPC `cidr` with two /24 subnets (us-east-1a and us-east-1b)
/// through the SDK, in the account of `ec2`'s credentials (moto keeps
/// resources per account, chosen by the credentials: an assumed role's act
/// in the role's account).
pub async fn create_vpc_in_account(
    ec2: &aws_sdk_ec2::Client,
    second_octet: u8,
) -> Result<Network, BoxError> {
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("10.{second_octet}.0.0/16"))
        .send()
        .await
        .map_err(|e| sdk_error("CreateVpc", e))?;
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or("CreateVpc: no id")?
        .to_owned();
    let mut subnet_ids = Vec::new();
    for (third, zone) in [(1, "us-east-1a"), (2, "us-east-1b")] {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.{second_octet}.{third}.0/24"))
            .availability_zone(zone)
            .send()
            .await
            .map_err(|e| sdk_error("CreateSubnet", e))?;
        subnet_ids.push(
            subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .ok_or("CreateSubnet: no id")?
                .to_owned(),
        );
    }
    Ok(Network { vpc_id, subnet_ids })
}

/// Creates an IP target group (protocol TCP, the given port) in the network's
/// VPC and returns its ARN.
pub async fn create_nlb_target_group(
    elb: &ElbClient,
    net: &Network,
    name: &str,
    port: i32,
) -> Result<String, BoxError> {
    let output = elb
        .create_target_group()
        .name(name)
        .protocol(ProtocolEnum::Tcp)
        .port(port)
        .vpc_id(&net.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .map_err(|e| sdk_error("CreateTargetGroup", e))?;
    output
        .target_groups()
        .first()
        .and_then(|tg| tg.target_group_arn())
        .map(str::to_owned)
        .ok_or_else(|| format!("CreateTargetGroup {name}: no ARN in the answer").into())
}

/// Creates an internal load balancer of the given kind in both subnets.
pub async fn create_load_balancer(
    elb: &ElbClient,
    net: &Network,
    name: &str,
    kind: LbKind,
) -> Result<LoadBalancer, BoxError> {
    let lb_type = match kind {
        LbKind::Application => LoadBalancerTypeEnum::Application,
        LbKind::Network => LoadBalancerTypeEnum::Network,
    };
    let output = elb
        .create_load_balancer()
        .name(name)
        .r#type(lb_type)
        .scheme(LoadBalancerSchemeEnum::Internal)
        .set_subnets(Some(net.subnet_ids.clone()))
        .send()
        .await
        .map_err(|e| sdk_error("CreateLoadBalancer", e))?;
    let lb = output
        .load_balancers()
        .first()
        .ok_or_else(|| format!("CreateLoadBalancer {name}: no load balancer in the answer"))?;
    match (lb.load_balancer_arn(), lb.dns_name()) {
        (Some(arn), Some(dns_name)) => Ok(LoadBalancer {
            arn: arn.to_owned(),
            dns_name: dns_name.to_owned(),
        }),
        _ => Err(format!("CreateLoadBalancer {name}: ARN or DNS name missing: {lb:?}").into()),
    }
}

/// The targets registered in a target group as sorted `(ip, port, state)`
/// triples, from DescribeTargetHealth.
pub async fn registered_targets(
    elb: &ElbClient,
    tg_arn: &str,
) -> Result<Vec<(String, i32, String)>, BoxError> {
    let output = elb
        .describe_target_health()
        .target_group_arn(tg_arn)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTargetHealth", e))?;
    let mut targets = Vec::new();
    for description in output.target_health_descriptions() {
        let target = description.target().ok_or_else(|| {
            format!("DescribeTargetHealth: entry without target: {description:?}")
        })?;
        let ip = target
            .id()
            .ok_or_else(|| format!("DescribeTargetHealth: target without id: {target:?}"))?;
        let port = target
            .port()
            .ok_or_else(|| format!("DescribeTargetHealth: target without port: {target:?}"))?;
        let state = description
            .target_health()
            .and_then(|health| health.state())
            .map(|state| state.as_str().to_owned())
            .unwrap_or_default();
        targets.push((ip.to_owned(), port, state));
    }
    targets.sort();
    Ok(targets)
}

/// Creates the network interfaces of an ALB's nodes, by hand (moto creates
/// none): one per address, in the first subnet, described `ELB app/<name>/<id>`
/// as AWS describes a node's interface. Returns the interface ids.
pub async fn create_alb_nodes(
    ec2: &aws_sdk_ec2::Client,
    net: &Network,
    alb_arn: &str,
    ips: &[&str],
) -> Result<Vec<String>, BoxError> {
    let resource = alb_arn
        .split_once(":loadbalancer/")
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{alb_arn} is not a load balancer ARN"))?;
    let mut ids = Vec::new();
    for ip in ips {
        let second = ip.split('.').nth(2) == Some("2");
        let subnet = if second {
            &net.subnet_ids[1]
        } else {
            &net.subnet_ids[0]
        };
        let out = ec2
            .create_network_interface()
            .subnet_id(subnet)
            .private_ip_address(*ip)
            .description(format!("ELB {resource}"))
            .send()
            .await
            .map_err(|e| sdk_error("CreateNetworkInterface", e))?;
        let id = out
            .network_interface()
            .and_then(|n| n.network_interface_id())
            .ok_or("CreateNetworkInterface: no id in the answer")?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// Deletes network interfaces (a node leaving).
pub async fn delete_interfaces(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Result<(), BoxError> {
    for id in ids {
        ec2.delete_network_interface()
            .network_interface_id(id)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteNetworkInterface", e))?;
    }
    Ok(())
}

/// Creates an interface VPC endpoint in both subnets; returns its id. moto
/// gives it one network interface per subnet.
pub async fn create_interface_endpoint(
    ec2: &aws_sdk_ec2::Client,
    net: &Network,
) -> Result<String, BoxError> {
    let out = ec2
        .create_vpc_endpoint()
        .vpc_id(&net.vpc_id)
        .service_name(format!("com.amazonaws.{REGION}.execute-api"))
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .set_subnet_ids(Some(net.subnet_ids.clone()))
        .send()
        .await
        .map_err(|e| sdk_error("CreateVpcEndpoint", e))?;
    out.vpc_endpoint()
        .and_then(|e| e.vpc_endpoint_id())
        .map(str::to_owned)
        .ok_or_else(|| "CreateVpcEndpoint: no id in the answer".into())
}

/// Adds tags to a target group (or any ELB resource).
pub async fn tag(elb: &ElbClient, arn: &str, tags: &[(&str, &str)]) -> Result<(), BoxError> {
    let mut request = elb.add_tags().resource_arns(arn);
    for (k, v) in tags {
        request = request.tags(
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build(),
        );
    }
    request.send().await.map_err(|e| sdk_error("AddTags", e))?;
    Ok(())
}

/// Creates an S3 bucket (in us-east-1, so without a location constraint).
pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<(), BoxError> {
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .map_err(|e| sdk_error("CreateBucket", e))?;
    Ok(())
}

/// An SDK error with its full chain of causes (the plain `Display` of an
/// `SdkError` is only "service error").
fn sdk_error(operation: &str, error: impl std::error::Error) -> BoxError {
    format!("{operation}: {}", DisplayErrorContext(&error)).into()
}

/// Sends one EC2 Query API request (`Version=2016-11-15` is added) and
/// returns the XML answer; a non-2xx status is an error including the body.
async fn ec2_query(moto: &Moto, params: &[(&str, &str)]) -> Result<String, BoxError> {
    let mut form = String::from("Version=2016-11-15");
    for (name, value) in params {
        form.push('&');
        form.push_str(&form_encode(name));
        form.push('=');
        form.push_str(&form_encode(value));
    }
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ec2/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Authorization", authorization.as_str()),
    ];
    let url = format!("{}/", moto.endpoint());
    let (status, body) = http_request(
        Method::POST,
        &url,
        &headers,
        Bytes::from(form),
        Duration::from_secs(30),
    )
    .await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("EC2 {params:?} failed with {status}: {body}").into())
    }
}

/// Percent-encodes a form value (everything but unreserved characters).
fn form_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The text of the first `<tag>...</tag>` element in `xml`.
fn xml_element(xml: &str, tag: &str) -> Result<String, BoxError> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.find(&open)
        .map(|start| &xml[start + open.len()..])
        .and_then(|rest| rest.find(&close).map(|end| rest[..end].to_owned()))
        .ok_or_else(|| format!("no <{tag}> in EC2 answer: {xml}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encode_escapes_reserved_characters() {
        assert_eq!(form_encode("10.0.0.0/16"), "10.0.0.0%2F16");
        assert_eq!(form_encode("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn xml_element_finds_first_match_or_reports_body() {
        let xml = "<r><vpc><vpcId>vpc-1</vpcId></vpc><vpcId>vpc-2</vpcId></r>";
        assert_eq!(xml_element(xml, "vpcId").ok(), Some("vpc-1".to_owned()));
        let err = xml_element("<Errors/>", "subnetId")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("no <subnetId> in EC2 answer: <Errors/>")
        );
    }
}

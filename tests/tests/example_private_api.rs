//! The example (`examples/private-api/template.yaml`) and the product agree
//! on the tag contract: the example stack, deployed into the emulator's
//! CloudFormation through the real SDK, creates its VPC, subnets, endpoints,
//! load balancers, target groups, ECS services and hosted zone; then
//! target-sync (the built binary under the Runtime API emulator, tag
//! discovery on, as the template runs it) fills the stack's NLB target groups
//! with the ALB's node addresses.
//!
//! What moto 5.2 lacks is said, never faked:
//! - resource types its CloudFormation has no model for are skipped by moto;
//!   the test prints each one (and fails if one it did not expect is missing);
//! - `example_private_api.py` changes the template where moto cannot parse
//!   it (Fn::Cidr evaluated; the NLB's TCP/TLS listeners removed, because
//!   moto creates every CloudFormation load balancer as an application load
//!   balancer); the test prints each change;
//! - moto drops a target group's `Tags` given in CloudFormation: the test
//!   applies the template's own tags (from the template, `${Alb}` replaced by
//!   the stack's ALB) with `AddTags`, and says so;
//! - moto keeps neither an ECS service's LaunchType, NetworkConfiguration
//!   nor LoadBalancers, nor a hosted zone's VPCs, nor the subnets of an
//!   AWS::EC2::SubnetRouteTableAssociation: the test checks what moto keeps,
//!   prints the rest, and the template's own values are checked by
//!   `tests/template/test_example_private_api.py`;
//! - moto creates no network interfaces for an ALB's nodes: they are created
//!   by hand with the description AWS gives them (`ELB app/<name>/<id>`).
//!
//! Two stacks: every part on in a closed VPC, and one region with a NAT
//! gateway (the defaults otherwise).
//!
//! Run with `--nocapture` to see those lists.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudformation::types::{Parameter, StackStatus};
use serde_json::Value;
use tether_tests::aws::tag;
use tether_tests::example::{
    Parts, Plan, Stack, describe_services, hosted_zone, plan, request_certificate,
};
use tether_tests::moto::BoxError;
use tether_tests::world::{World, ok_tick};

type R = Result<(), BoxError>;

/// Resource types moto 5.2's CloudFormation has no model for (it skips
/// them). A resource of any other type missing from the stack fails the test.
const EMULATOR_GAPS: [&str; 5] = [
    "AWS::ApiGateway::VpcLink",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::DomainNameV2",
    "AWS::ApiGateway::BasePathMappingV2",
    "AWS::ApiGateway::DomainNameAccessAssociation",
];

const STACK: &str = "private-api";

async fn deploy(cfn: &aws_sdk_cloudformation::Client, plan: &Plan) -> Result<Stack, BoxError> {
    let mut request = cfn
        .create_stack()
        .stack_name(STACK)
        .template_body(plan.template.to_string());
    for (k, v) in &plan.parameters {
        request = request.parameters(
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build(),
        );
    }
    request.send().await.map_err(|e| {
        format!(
            "CreateStack: {}",
            aws_sdk_cloudformation::error::DisplayErrorContext(&e)
        )
    })?;
    // moto creates the stack within the call; DescribeStacks has its status.
    let out = cfn.describe_stacks().stack_name(STACK).send().await?;
    let stack = out.stacks().first().ok_or("DescribeStacks: no stack")?;
    let status = stack.stack_status().cloned();
    if status != Some(StackStatus::CreateComplete) {
        return Err(format!(
            "stack {status:?}: {}",
            stack.stack_status_reason().unwrap_or_default()
        )
        .into());
    }
    let physical = common::stack_resources(cfn, STACK).await?;
    Ok(Stack {
        status: "CREATE_COMPLETE".into(),
        physical,
    })
}

/// Deploys the plan; prints what was changed for the emulator and what it
/// did not create, and fails on a missing resource of a type moto supports.
async fn deployed(w: &World, plan: &Plan) -> Result<Stack, BoxError> {
    println!("changed for the emulator:");
    for change in &plan.changes {
        println!("  {change}");
    }
    let cfn = aws_sdk_cloudformation::Client::new(&w.sdk);
    let stack = deploy(&cfn, plan).await?;
    let missing: BTreeMap<&String, &String> = plan
        .resources
        .iter()
        .filter(|(logical, _)| !stack.physical.contains_key(*logical))
        .collect();
    println!("not created by the emulator (moto 5.2 has no CloudFormation model for these types):");
    for (logical, kind) in &missing {
        println!("  {logical} ({kind})");
    }
    let unexpected: Vec<_> = missing
        .iter()
        .filter(|(_, kind)| !EMULATOR_GAPS.contains(&kind.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "missing from the stack: {unexpected:?}"
    );
    assert!(
        stack.physical.len() > missing.len() + 30,
        "the stack holds most of the example: {:?}",
        stack.physical.keys()
    );
    Ok(stack)
}

/// The VPC has the template's range, and its private subnets the first two
/// /24s of it, with no public addresses.
async fn check_vpc(w: &World, plan: &Plan, stack: &Stack) -> R {
    let vpc = stack.id("Vpc")?;
    let vpcs = w.ec2.describe_vpcs().vpc_ids(vpc).send().await?;
    assert_eq!(
        vpcs.vpcs().first().and_then(|v| v.cidr_block()),
        Some(plan.parameters["VpcCidr"].as_str())
    );
    let subnets = w
        .ec2
        .describe_subnets()
        .subnet_ids(stack.id("PrivateSubnetA")?)
        .subnet_ids(stack.id("PrivateSubnetB")?)
        .send()
        .await?;
    let mut cidrs: Vec<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.cidr_block())
        .collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.20.0.0/24", "10.20.1.0/24"]);
    assert!(
        subnets
            .subnets()
            .iter()
            .all(|s| s.vpc_id() == Some(vpc) && s.map_public_ip_on_launch() == Some(false))
    );
    Ok(())
}

/// The services of the VPC's endpoints (`s3`, `ecr.api`, ...).
async fn endpoint_services(w: &World, stack: &Stack) -> Result<BTreeSet<String>, BoxError> {
    let endpoints = w
        .ec2
        .describe_vpc_endpoints()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(stack.id("Vpc")?)
                .build(),
        )
        .send()
        .await?;
    Ok(endpoints
        .vpc_endpoints()
        .iter()
        .filter_map(|e| e.service_name()?.strip_prefix("com.amazonaws.us-east-1."))
        .map(str::to_owned)
        .collect())
}

/// The NLB's target groups as (target type, protocol, port), sorted.
async fn group_shapes(w: &World, arns: &[&str]) -> Result<Vec<(String, String, i32)>, BoxError> {
    let groups = w
        .elb
        .describe_target_groups()
        .set_target_group_arns(Some(arns.iter().map(|a| a.to_string()).collect()))
        .send()
        .await?;
    let mut shapes: Vec<(String, String, i32)> = groups
        .target_groups()
        .iter()
        .map(|g| {
            (
                g.target_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
                g.protocol()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                g.port().unwrap_or_default(),
            )
        })
        .collect();
    shapes.sort();
    Ok(shapes)
}

/// The tag contract: the template tags exactly `groups`, each with
/// `tether:source=alb:<the stack's ALB>`. moto drops the tags CloudFormation
/// gives a target group; where they are missing, the template's own are
/// applied (and that is printed).
async fn tag_as_the_template_says(w: &World, plan: &Plan, stack: &Stack, groups: &[&str]) -> R {
    assert_eq!(
        plan.tags.keys().map(String::as_str).collect::<Vec<_>>(),
        groups,
        "only the NLB's groups opt in to tether"
    );
    let alb = stack.id("Alb")?;
    for (logical, tags) in &plan.tags {
        let resolved: Vec<(String, String)> = tags
            .iter()
            .map(|t| Ok((t.key.clone(), stack.substitute(&t.value)?)))
            .collect::<Result<_, BoxError>>()?;
        assert_eq!(
            resolved,
            [("tether:source".to_owned(), format!("alb:{alb}"))]
        );
        let arn = stack.id(logical)?;
        let present = w.elb.describe_tags().resource_arns(arn).send().await?;
        let present: Vec<(String, String)> = present
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect();
        if present.is_empty() {
            println!(
                "moto dropped the CloudFormation tags of {logical}: applying the template's own: {resolved:?}"
            );
            let pairs: Vec<(&str, &str)> = resolved
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            tag(&w.elb, arn, &pairs).await?;
        } else {
            assert_eq!(present, resolved, "{logical}'s tags in the emulator");
        }
    }
    Ok(())
}

/// The ALB's nodes as AWS creates them (by hand: moto does not), then one
/// scheduled run of target-sync with tag discovery, as the template runs it.
/// Returns its response; the ALB's own target groups (ECS registers the
/// tasks there) are left as they were.
async fn sync_alb_nodes(
    w: &World,
    stack: &Stack,
    nodes: &[(&str, &str)],
) -> Result<Value, BoxError> {
    let resource = stack
        .id("Alb")?
        .split_once(":loadbalancer/")
        .map(|(_, r)| r.to_owned())
        .ok_or("the ALB's id is not an ARN")?;
    for (subnet, ip) in nodes {
        w.ec2
            .create_network_interface()
            .subnet_id(stack.id(subnet)?)
            .private_ip_address(*ip)
            .description(format!("ELB {resource}"))
            .send()
            .await?;
    }
    let alb_groups = [
        stack.id("BooksTargetGroup")?,
        stack.id("AuthorsTargetGroup")?,
    ];
    let mut before = Vec::new();
    for group in alb_groups {
        before.push(w.targets(group).await?);
    }
    let f = w
        .spawn(
            "target-sync",
            &w.env(&[("TAG_DISCOVERY", "true"), ("TAG_PREFIX", "tether:")]),
        )
        .await?;
    let out = ok_tick(&f).await?;
    for (group, before) in alb_groups.iter().zip(before) {
        assert_eq!(
            w.targets(group).await?,
            before,
            "an ALB target group changed"
        );
    }
    Ok(out)
}

const NODES: [(&str, &str); 3] = [
    ("PrivateSubnetA", "10.20.0.10"),
    ("PrivateSubnetA", "10.20.0.11"),
    ("PrivateSubnetB", "10.20.1.10"),
];

fn on_port(port: u16) -> Vec<String> {
    NODES.iter().map(|(_, ip)| format!("{ip}:{port}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_deploys_and_target_sync_fills_both_target_groups() -> R {
    let w = World::start().await?;
    // Every part on (TLS, custom domain, hosted zone) in a closed VPC: the
    // listeners need certificates that exist, from the emulator's ACM.
    let backend = request_certificate(&w.moto, "backend.example.com").await?;
    let api = request_certificate(&w.moto, "api.example.com").await?;
    let plan = plan(
        Parts::All,
        &[("NlbCertificateArn", &backend), ("ApiCertificateArn", &api)],
    )?;
    let stack = deployed(&w, &plan).await?;
    check_vpc(&w, &plan, &stack).await?;
    for public in [
        "InternetGateway",
        "NatGateway",
        "PublicSubnet",
        "NatAddress",
    ] {
        assert!(
            !stack.physical.contains_key(public),
            "{public} exists without Egress=nat"
        );
    }
    // The endpoints of a closed VPC, and tether's (two regions).
    assert_eq!(
        endpoint_services(&w, &stack).await?,
        BTreeSet::from(
            [
                "ec2",
                "ecr.api",
                "ecr.dkr",
                "elasticloadbalancing",
                "execute-api",
                "logs",
                "monitoring",
                "s3"
            ]
            .map(String::from)
        )
    );

    // Both load balancers internal.
    let (alb, nlb) = (stack.id("Alb")?, stack.id("Nlb")?);
    let lbs = w
        .elb
        .describe_load_balancers()
        .load_balancer_arns(alb)
        .load_balancer_arns(nlb)
        .send()
        .await?;
    assert_eq!(lbs.load_balancers().len(), 2);
    for lb in lbs.load_balancers() {
        assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internal"), "{lb:?}");
        if lb.load_balancer_arn() == Some(nlb) {
            println!(
                "the NLB is of type {:?} in the emulator (moto ignores Type in CloudFormation)",
                lb.r#type()
            );
        }
    }

    // The NLB's target groups: type ip, the template's ports and tags.
    let (http_group, tls_group) = (
        stack.id("NlbHttpTargetGroup")?,
        stack.id("NlbTlsTargetGroup")?,
    );
    assert_eq!(
        group_shapes(&w, &[http_group, tls_group]).await?,
        [
            ("ip".into(), "TCP".into(), 80),
            ("ip".into(), "TLS".into(), 443)
        ]
    );
    tag_as_the_template_says(
        &w,
        &plan,
        &stack,
        &["NlbHttpTargetGroup", "NlbTlsTargetGroup"],
    )
    .await?;

    // The ECS services, with their task definitions. moto's CloudFormation
    // keeps neither LaunchType, NetworkConfiguration nor LoadBalancers of an
    // AWS::ECS::Service: those (Fargate, no public IP, the ALB's groups) are
    // checked on the template (tests/template/test_example_private_api.py).
    let books = stack.id("BooksService")?;
    let authors = stack.id("AuthorsService")?;
    let services = describe_services(&w.moto, stack.id("Cluster")?, &[books, authors]).await?;
    assert_eq!(services.len(), 2, "{services:?}");
    for (service, task) in services
        .iter()
        .zip(["BooksTaskDefinition", "AuthorsTaskDefinition"])
    {
        assert_eq!(service["status"], "ACTIVE", "{service}");
        assert_eq!(service["taskDefinition"], stack.id(task)?, "{service}");
        assert_eq!(
            service["desiredCount"].to_string(),
            plan.parameters["DesiredCount"],
            "{service}"
        );
    }
    println!(
        "ECS services in the emulator: {books}, {authors} (moto drops LaunchType, NetworkConfiguration and LoadBalancers)"
    );

    // The private hosted zone of the two-region setup.
    let zone = hosted_zone(&w.moto, stack.id("HostedZone")?).await?;
    assert!(
        zone.contains("<Name>example.com.</Name>") || zone.contains("<Name>example.com</Name>"),
        "{zone}"
    );
    println!(
        "the hosted zone in the emulator is private: {} (moto's CloudFormation ignores its VPCs)",
        zone.contains("<PrivateZone>true</PrivateZone>")
    );

    // target-sync fills both groups, each with its own port.
    assert!(w.targets(http_group).await?.is_empty());
    let out = sync_alb_nodes(&w, &stack, &NODES).await?;
    assert_eq!(out["mappings"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(w.targets(http_group).await?, on_port(80));
    assert_eq!(w.targets(tls_group).await?, on_port(443));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_region_with_a_nat_gateway_deploys_and_target_sync_fills_its_target_group() -> R {
    let w = World::start().await?;
    let plan = plan(Parts::OneRegion, &[("Egress", "nat")])?;
    let stack = deployed(&w, &plan).await?;
    check_vpc(&w, &plan, &stack).await?;
    // The NAT option: the tasks' way out, and only the API's endpoint (and
    // the free S3 gateway) beside it.
    assert_eq!(
        endpoint_services(&w, &stack).await?,
        BTreeSet::from(["execute-api", "s3"].map(String::from))
    );
    let nat = w
        .ec2
        .describe_nat_gateways()
        .nat_gateway_ids(stack.id("NatGateway")?)
        .send()
        .await?;
    assert_eq!(
        nat.nat_gateways().first().and_then(|n| n.subnet_id()),
        Some(stack.id("PublicSubnet")?)
    );
    let tables = w
        .ec2
        .describe_route_tables()
        .route_table_ids(stack.id("PrivateRouteTable")?)
        .route_table_ids(stack.id("PublicRouteTable")?)
        .send()
        .await?;
    assert_eq!(tables.route_tables().len(), 2, "{tables:?}");
    for table in tables.route_tables() {
        let default = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .ok_or_else(|| format!("no default route: {table:?}"))?;
        let subnets: BTreeSet<&str> = table
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id())
            .collect();
        let (via, members) = if table.route_table_id() == Some(stack.id("PrivateRouteTable")?) {
            assert_eq!(default.nat_gateway_id(), Some(stack.id("NatGateway")?));
            (
                "NAT",
                BTreeSet::from([stack.id("PrivateSubnetA")?, stack.id("PrivateSubnetB")?]),
            )
        } else {
            assert_eq!(default.gateway_id(), Some(stack.id("InternetGateway")?));
            (
                "internet gateway",
                BTreeSet::from([stack.id("PublicSubnet")?]),
            )
        };
        if subnets.is_empty() {
            println!(
                "the {via} route table has no subnet in the emulator: moto's CloudFormation does not \
                 associate AWS::EC2::SubnetRouteTableAssociation (the template's associations are \
                 checked in tests/template/test_example_private_api.py)"
            );
        } else {
            assert_eq!(subnets, members, "subnets of the {via} route table");
        }
    }
    for absent in ["TetherSecurityGroup", "HostedZone", "NlbTlsTargetGroup"] {
        assert!(
            !stack.physical.contains_key(absent),
            "{absent} in one region"
        );
    }
    let http_group = stack.id("NlbHttpTargetGroup")?;
    assert_eq!(
        group_shapes(&w, &[http_group]).await?,
        [("ip".into(), "TCP".into(), 80)]
    );
    tag_as_the_template_says(&w, &plan, &stack, &["NlbHttpTargetGroup"]).await?;
    let out = sync_alb_nodes(&w, &stack, &NODES).await?;
    assert_eq!(out["mappings"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(w.targets(http_group).await?, on_port(80));
    Ok(())
}

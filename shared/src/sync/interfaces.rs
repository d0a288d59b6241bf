//! Exact sources: the addresses of network interfaces, listed by EC2, in
//! this account or, through a role, in another one.
//!
//! - An Application Load Balancer's nodes are interfaces whose description is
//!   `ELB app/<name>/<id>` (the end of the load balancer's ARN). Listing them
//!   gives every node address, more than the 8 a DNS answer holds, with no
//!   resolver cache in between. A node leaves DNS before its interface is
//!   deleted and still serves then, so a listed node stays a target. One
//!   `DescribeNetworkInterfaces` call lists the nodes of many ALBs: several
//!   values of one filter are ORed (EC2 API reference, `Filter`).
//! - An interface VPC endpoint lists its interfaces in `DescribeVpcEndpoints`.
//!
//! Each listing says the VPC of its interfaces, which the engine compares
//! with the target group's.
//!
//! A source in another account (a shared VPC, a hub-and-spoke network) is
//! listed with credentials of a role there, from `sts:AssumeRole` with the
//! configured external ID, which the role's trust policy requires with the
//! condition `sts:ExternalId` (IAM user guide, "Access to AWS accounts owned
//! by third parties": id_roles_create_for-user_externalid.html). The SDK keeps the credentials until they expire and
//! asks for new ones then. Any failure, `AccessDenied` on the role
//! included, is a failed listing: doubt, never absence.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, NetworkInterface};
use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;

use super::mapping::{AlbRef, RoleArn};
use crate::aws::limits::{
    EC2_NON_MUTATING, FILTER_VALUES_PER_CALL, INTERFACES_PER_PAGE, VPC_ENDPOINTS_PER_CALL,
};
use crate::aws::{AwsError, Pacer, SyncClients};

/// What one source's interfaces hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listed {
    pub addrs: BTreeSet<IpAddr>,
    /// The VPC of the interfaces (an ALB's nodes, an endpoint's).
    pub vpc_id: Option<String>,
}

pub type Listing = Result<Listed, AwsError>;

pub trait Interfaces: Send + Sync {
    /// Every address of each load balancer's node interfaces, listed in the
    /// account of `role` (this account without one).
    fn albs(
        &self,
        role: Option<&RoleArn>,
        albs: &[AlbRef],
    ) -> impl Future<Output = HashMap<AlbRef, Listing>> + Send;

    /// Every address of each VPC endpoint's interfaces.
    fn vpces(
        &self,
        role: Option<&RoleArn>,
        ids: &[String],
    ) -> impl Future<Output = HashMap<String, Listing>> + Send;
}

/// How to reach other accounts: the function's own configuration, to
/// build clients with a role's credentials, and the external ID.
#[derive(Clone)]
pub struct Accounts {
    pub sdk: SdkConfig,
    pub external_id: Option<String>,
}

/// The clients of one account.
struct Account {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

/// [`Interfaces`] through EC2 (and ELB, to find a load balancer by name).
pub struct Ec2Interfaces {
    own: Arc<Account>,
    accounts: Option<Accounts>,
    /// Clients with each role's credentials, built once per container: the
    /// SDK caches the credentials until they expire.
    roles: Mutex<HashMap<RoleArn, Arc<Account>>>,
    /// ALB names already looked up (an ALB keeps its ARN for life), so that
    /// a warm function spends no Describe call on them. An entry is dropped
    /// when its listing comes back empty: the ALB may have been replaced.
    arns: Mutex<HashMap<(Option<RoleArn>, String), String>>,
    pacer: Pacer,
}

impl Ec2Interfaces {
    /// `accounts`: how to assume a mapping's `source_role` (none: a mapping
    /// with one fails, naming why).
    pub fn new(clients: &SyncClients, accounts: Option<Accounts>) -> Self {
        Self {
            own: Arc::new(Account {
                ec2: clients.ec2.clone(),
                elb: clients.elb.clone(),
            }),
            accounts,
            roles: Mutex::default(),
            arns: Mutex::default(),
            // Half of DescribeNetworkInterfaces' own bucket.
            pacer: Pacer::new(EC2_NON_MUTATING, 0.5),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<(Option<RoleArn>, String), String>> {
        self.arns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The clients of the role's account.
    async fn account(&self, role: Option<&RoleArn>) -> Result<Arc<Account>, AwsError> {
        let Some(role) = role else {
            return Ok(Arc::clone(&self.own));
        };
        if let Some(account) = self
            .roles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(role)
        {
            return Ok(Arc::clone(account));
        }
        let Some(accounts) = &self.accounts else {
            return Err(AwsError::new(
                "sts:AssumeRole",
                role.as_str(),
                "this function is not set up to assume source roles",
            ));
        };
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role.as_str())
            .session_name("tether-target-sync")
            .configure(&accounts.sdk);
        if let Some(id) = &accounts.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        let sdk = accounts
            .sdk
            .to_builder()
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build();
        let clients = SyncClients::new(&sdk);
        let account = Arc::new(Account {
            ec2: clients.ec2,
            elb: clients.elb,
        });
        self.roles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(role.clone(), Arc::clone(&account));
        Ok(account)
    }

    /// The ALB's ARN: as given, or looked up by name.
    async fn alb_arn(
        &self,
        account: &Account,
        role: Option<&RoleArn>,
        alb: &AlbRef,
    ) -> Result<String, AwsError> {
        if let Some(arn) = &alb.arn {
            return Ok(arn.clone());
        }
        let key = (role.cloned(), alb.name.clone());
        if let Some(arn) = self.cached().get(&key) {
            return Ok(arn.clone());
        }
        const OP: &str = "elasticloadbalancing:DescribeLoadBalancers";
        let out = account
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
        let arn = lb
            .load_balancer_arn()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::new(OP, &alb.name, "the answer has no ARN"))?;
        self.cached().insert(key, arn.clone());
        Ok(arn)
    }

    /// The interfaces asked for (all pages), each once.
    async fn interfaces(
        &self,
        account: &Account,
        which: Which,
        resource: &str,
    ) -> Result<Vec<NetworkInterface>, AwsError> {
        const OP: &str = "ec2:DescribeNetworkInterfaces";
        let mut found = Vec::new();
        let mut token = None;
        loop {
            self.pacer.take().await;
            let request = account
                .ec2
                .describe_network_interfaces()
                .set_next_token(token);
            let request = match &which {
                Which::Descriptions(texts) => request
                    .filters(
                        Filter::builder()
                            .name("description")
                            .set_values(Some(texts.clone()))
                            .build(),
                    )
                    .max_results(INTERFACES_PER_PAGE),
                Which::Ids(ids) => request.set_network_interface_ids(Some(ids.clone())),
            };
            let page = request
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, resource, &e))?;
            found.extend(page.network_interfaces().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }
}

/// Which interfaces to list.
enum Which {
    /// Those with any of these descriptions.
    Descriptions(Vec<String>),
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

fn add(listed: &mut Listed, interface: &NetworkInterface) {
    listed.addrs.extend(interface_addresses(interface));
    if listed.vpc_id.is_none() {
        listed.vpc_id = interface.vpc_id().map(str::to_owned);
    }
}

/// `ELB app/<name>/<id>`, the description of an ALB's node interfaces.
pub fn alb_interface_description(alb_arn: &str) -> Option<String> {
    let resource = alb_arn.split_once(":loadbalancer/")?.1;
    resource
        .starts_with("app/")
        .then(|| format!("ELB {resource}"))
}

impl Interfaces for Ec2Interfaces {
    async fn albs(&self, role: Option<&RoleArn>, albs: &[AlbRef]) -> HashMap<AlbRef, Listing> {
        let mut out = HashMap::new();
        let account = match self.account(role).await {
            Ok(account) => account,
            Err(e) => return albs.iter().map(|a| (a.clone(), Err(e.clone()))).collect(),
        };
        // Each ALB's description, then one call per batch of descriptions.
        let mut wanted: BTreeMap<String, Vec<&AlbRef>> = BTreeMap::new();
        for alb in albs {
            let described = self.alb_arn(&account, role, alb).await.and_then(|arn| {
                alb_interface_description(&arn).ok_or_else(|| {
                    AwsError::new(
                        "elasticloadbalancing:DescribeLoadBalancers",
                        &arn,
                        "not an Application Load Balancer ARN",
                    )
                })
            });
            match described {
                Ok(description) => wanted.entry(description).or_default().push(alb),
                Err(e) => {
                    out.insert(alb.clone(), Err(e));
                }
            }
        }
        let descriptions: Vec<String> = wanted.keys().cloned().collect();
        for batch in descriptions.chunks(FILTER_VALUES_PER_CALL) {
            let resource = format!("{} load balancers' nodes", batch.len());
            let listed = self
                .interfaces(&account, Which::Descriptions(batch.to_vec()), &resource)
                .await;
            let mut by_description: HashMap<&str, Listed> = HashMap::new();
            if let Ok(interfaces) = &listed {
                for interface in interfaces {
                    if let Some(d) = interface.description() {
                        add(by_description.entry(d).or_default(), interface);
                    }
                }
            }
            for description in batch {
                for alb in &wanted[description] {
                    let result = match &listed {
                        Err(e) => Err(e.clone()),
                        Ok(_) => Ok(by_description
                            .get(description.as_str())
                            .cloned()
                            .unwrap_or_default()),
                    };
                    if matches!(&result, Ok(l) if l.addrs.is_empty()) {
                        self.cached().remove(&(role.cloned(), alb.name.clone()));
                    }
                    out.insert((*alb).clone(), result);
                }
            }
        }
        out
    }

    async fn vpces(&self, role: Option<&RoleArn>, ids: &[String]) -> HashMap<String, Listing> {
        const OP: &str = "ec2:DescribeVpcEndpoints";
        let mut out = HashMap::new();
        let account = match self.account(role).await {
            Ok(account) => account,
            Err(e) => return ids.iter().map(|id| (id.clone(), Err(e.clone()))).collect(),
        };
        for batch in ids.chunks(VPC_ENDPOINTS_PER_CALL) {
            let resource = batch.join(" ");
            self.pacer.take().await;
            let endpoints = match account
                .ec2
                .describe_vpc_endpoints()
                .set_vpc_endpoint_ids(Some(batch.to_vec()))
                .send()
                .await
            {
                Ok(answer) => answer.vpc_endpoints().to_vec(),
                Err(e) => {
                    let e = AwsError::from_sdk(OP, &resource, &e);
                    out.extend(batch.iter().map(|id| (id.clone(), Err(e.clone()))));
                    continue;
                }
            };
            let interface_ids: Vec<String> = endpoints
                .iter()
                .flat_map(|e| e.network_interface_ids().iter().cloned())
                .collect();
            let interfaces = if interface_ids.is_empty() {
                Ok(Vec::new())
            } else {
                self.interfaces(&account, Which::Ids(interface_ids), &resource)
                    .await
            };
            for id in batch {
                let Some(endpoint) = endpoints.iter().find(|e| e.vpc_endpoint_id() == Some(id))
                else {
                    out.insert(
                        id.clone(),
                        Err(AwsError::new(OP, id, "no such VPC endpoint")),
                    );
                    continue;
                };
                let result = interfaces.as_ref().map_err(Clone::clone).map(|all| {
                    let mut listed = Listed {
                        vpc_id: endpoint.vpc_id().map(str::to_owned),
                        ..Listed::default()
                    };
                    let mine = endpoint.network_interface_ids();
                    for interface in all.iter().filter(|i| {
                        i.network_interface_id()
                            .is_some_and(|n| mine.iter().any(|m| m == n))
                    }) {
                        add(&mut listed, interface);
                    }
                    listed
                });
                out.insert(id.clone(), result);
            }
        }
        out
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

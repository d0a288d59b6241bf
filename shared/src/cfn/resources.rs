//! The production [`Handler`]: the resource types, dispatched on
//! `ResourceType`, with the AWS clients and the resolver built at cold start.

use std::time::Duration;

use aws_config::SdkConfig;
use tokio::time::Instant;

use super::dispatch::{Applied, Failure, Handler};
use super::event::{Request, RequestType};
use super::{dns_addresses, empty_bucket, target_sync};
use crate::aws::s3_client;
use crate::config::{ConfigError, DnsSettings, Vars, dns_settings};
use crate::dns::HickoryDns;
use crate::sync::SyncConfig;
use crate::sync::groups::Elb;
use crate::sync::interfaces::Ec2Interfaces;

/// Every resource type this function serves.
pub const TYPES: [&str; 3] = [dns_addresses::TYPE, empty_bucket::TYPE, target_sync::TYPE];

/// The function's settings, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `ALLOW_INSECURE_RESPONSE_URL=true`: http response URLs to loopback hosts.
    pub allow_insecure: bool,
    /// `DNS_SERVERS`, `DNS_TIMEOUT_MS`: the default resolver.
    pub dns: DnsSettings,
    /// target-sync's variables (`STATE_BUCKET`, `TAG_PREFIX`, ...), for
    /// `Custom::TargetSync`; a bad or missing one fails only those events.
    pub sync: Result<SyncConfig, String>,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars(|name: &str| std::env::var(name).ok()))
    }

    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let allow_insecure = vars
            .boolean("ALLOW_INSECURE_RESPONSE_URL")?
            .unwrap_or(false);
        Ok(Settings {
            allow_insecure,
            dns: dns_settings(vars)?,
            sync: SyncConfig::from_vars(vars).map_err(|e| e.to_string()),
        })
    }
}

/// What serves the events: the resources, or, when the function's own
/// configuration is broken, an answer of FAILED with the reason to every
/// event, so that a stack never waits an hour on a function that cannot start.
pub enum Service {
    Ready(Box<AwsResources>),
    Misconfigured(String),
}

impl Service {
    /// Reads the configuration and builds the clients; never fails. Also
    /// returns whether http response URLs to loopback are allowed.
    pub fn from_env(sdk: &SdkConfig) -> (Service, bool) {
        let vars = Vars(|name: &str| std::env::var(name).ok());
        // Read on its own, so that a broken setting elsewhere still answers
        // (a bad value of the flag itself means no: https only).
        let allow_insecure = vars
            .boolean("ALLOW_INSECURE_RESPONSE_URL")
            .ok()
            .flatten()
            .unwrap_or(false);
        let built = Settings::from_vars(&vars)
            .map_err(|e| e.to_string())
            .and_then(|settings| AwsResources::from_sdk(sdk, &settings).map_err(|e| e.to_string()));
        match built {
            Ok(resources) => (Service::Ready(Box::new(resources)), allow_insecure),
            Err(why) => {
                tracing::error!(error = %why, "invalid configuration: every event will be answered FAILED");
                (Service::Misconfigured(why), allow_insecure)
            }
        }
    }
}

impl Handler for Service {
    async fn apply(&self, request: &Request, deadline: Instant) -> Result<Applied, Failure> {
        match self {
            Service::Ready(resources) => resources.apply(request, deadline).await,
            Service::Misconfigured(why) => Err(Failure(format!(
                "the custom-resources function is misconfigured: {why}"
            ))),
        }
    }
}

pub struct AwsResources {
    /// target-sync's configuration, read from this function's environment
    /// for `Custom::TargetSync` (its error fails only those events).
    sync: Result<SyncConfig, String>,
    dns: HickoryDns,
    dns_timeout: Duration,
    elb: Elb,
    clients: crate::aws::SyncClients,
    sdk: SdkConfig,
    s3: aws_sdk_s3::Client,
}

impl AwsResources {
    pub fn from_sdk(sdk: &SdkConfig, settings: &Settings) -> Result<Self, lambda_runtime::Error> {
        // The same throttling-aware clients as the scheduled sync.
        let clients = crate::aws::SyncClients::new(sdk);
        Ok(Self {
            sync: settings.sync.clone(),
            dns: HickoryDns::new(&settings.dns)?,
            dns_timeout: settings.dns.timeout,
            elb: Elb::new(
                &clients,
                crate::sync::config::MAX_DESCRIBE_SHARE as f64 / 100.0,
            ),
            clients,
            sdk: sdk.clone(),
            s3: s3_client(sdk),
        })
    }

    /// A resolver for the resource's `DnsServers`, or the function's.
    fn resolver(
        &self,
        servers: &[std::net::SocketAddr],
    ) -> Result<target_sync::Resolver<'_>, Failure> {
        if servers.is_empty() {
            return Ok(target_sync::Resolver::Shared(&self.dns));
        }
        let settings = DnsSettings {
            servers: servers.to_vec(),
            timeout: self.dns_timeout,
        };
        HickoryDns::new(&settings)
            .map(|dns| target_sync::Resolver::Own(Box::new(dns)))
            .map_err(|e| {
                Failure(format!(
                    "ResourceProperties.DnsServers: cannot use them: {e}"
                ))
            })
    }

    async fn dns_addresses(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> Result<Applied, Failure> {
        if request.request_type == RequestType::Delete {
            // A lookup creates nothing: nothing to read, nothing to fail on
            // (not even properties that only an older version accepted).
            return Ok(Applied {
                physical_id: request.physical_id.clone().unwrap_or_default(),
                ..Applied::default()
            });
        }
        let props = dns_addresses::Props::read(&request.properties)?;
        let dns = self.resolver(&props.servers)?;
        let addrs = dns_addresses::resolve_at_least(&dns, &props, deadline).await?;
        Ok(Applied {
            physical_id: props.physical_id(),
            data: dns_addresses::data(&addrs),
            note: None,
        })
    }

    async fn target_sync(&self, request: &Request, deadline: Instant) -> Result<Applied, Failure> {
        if request.request_type == RequestType::Delete {
            // Nothing to read: a Delete always succeeds and changes nothing.
            return Ok(target_sync::delete(request.physical_id.as_deref()));
        }
        let props = target_sync::Props::read(&request.properties)?;
        let config = self.sync.as_ref().map_err(|why| {
            Failure(format!(
                "the custom-resources function has no usable target-sync configuration \
                 (Custom::TargetSync syncs with target-sync's variables in this function's \
                 environment): {why}"
            ))
        })?;
        let clients = target_sync::Clients {
            // The function's resolver: DNS_SERVERS is the sync's too.
            dns: target_sync::Resolver::Shared(&self.dns),
            interfaces: Ec2Interfaces::new(
                &self.clients,
                Some(crate::sync::interfaces::Accounts {
                    sdk: self.sdk.clone(),
                    external_id: config.source_roles.external_id.clone(),
                }),
            ),
            elb: &self.elb,
            s3: &self.s3,
        };
        let creating = request.request_type == RequestType::Create;
        target_sync::apply(clients, config, &props, creating, deadline).await
    }

    async fn empty_bucket(&self, request: &Request, deadline: Instant) -> Result<Applied, Failure> {
        let props = empty_bucket::Props::read(&request.properties)?;
        match request.request_type {
            RequestType::Delete => empty_bucket::delete(&self.s3, &props, deadline).await,
            // Nothing to do but validate; the name is returned so that a
            // template can reference the bucket through this resource (and
            // CloudFormation then deletes those resources before emptying).
            RequestType::Create | RequestType::Update => Ok(Applied {
                physical_id: props.physical_id(),
                data: [("BucketName".to_owned(), props.bucket.clone())].into(),
                note: None,
            }),
        }
    }
}

impl Handler for AwsResources {
    async fn apply(&self, request: &Request, deadline: Instant) -> Result<Applied, Failure> {
        match request.resource_type.as_str() {
            dns_addresses::TYPE => self.dns_addresses(request, deadline).await,
            target_sync::TYPE => self.target_sync(request, deadline).await,
            empty_bucket::TYPE => self.empty_bucket(request, deadline).await,
            // This function never created a resource of another type.
            other if request.request_type == RequestType::Delete => Ok(Applied {
                physical_id: request.physical_id.clone().unwrap_or_default(),
                data: Default::default(),
                note: Some(format!(
                    "nothing to delete: ResourceType \"{other}\" is not served by this function"
                )),
            }),
            other => Err(Failure(format!(
                "ResourceType: \"{}\" is not served by this function (it serves {})",
                crate::fields::shorten(other),
                TYPES.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_vars(&Vars(|n: &str| map.get(n).cloned()))
    }

    #[test]
    fn settings_from_the_environment() {
        assert!(!settings(&[]).unwrap().allow_insecure);
        assert!(
            settings(&[("ALLOW_INSECURE_RESPONSE_URL", "TRUE")])
                .unwrap()
                .allow_insecure
        );
        let err = settings(&[("ALLOW_INSECURE_RESPONSE_URL", "yes")]).unwrap_err();
        assert_eq!(err.location, "ALLOW_INSECURE_RESPONSE_URL");
        let s = settings(&[("DNS_SERVERS", "127.0.0.1:5353"), ("DNS_TIMEOUT_MS", "300")]).unwrap();
        assert_eq!(s.dns.servers.len(), 1);
        assert_eq!(s.dns.timeout, Duration::from_millis(300));
    }
}

//! What a mapping's source says: the addresses behind a DNS name, an ALB's
//! nodes or a VPC endpoint's interfaces, and how far they can be trusted.
//!
//! - DNS: every requested type answered, and no answer stayed full
//!   ([`Resolution::Complete`]); some answers but a query failed or every
//!   answer was full ([`Resolution::Partial`]: the addresses are real, an
//!   address missing from them proves nothing); no address ([`Resolution::Failed`]).
//! - Interfaces: a successful listing is complete; a failed call, or a
//!   listing with no address of the requested types, is failed.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use super::interfaces::Listing;
use super::mapping::{Mapping, RoleArn, Source};
use crate::dns::{FULL_ANSWER, Lookup, resolve};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Complete(BTreeSet<IpAddr>),
    Partial(BTreeSet<IpAddr>),
    Failed,
}

impl Resolution {
    /// The addresses seen, complete or not.
    pub fn addrs(&self) -> Option<&BTreeSet<IpAddr>> {
        match self {
            Resolution::Complete(a) | Resolution::Partial(a) => Some(a),
            Resolution::Failed => None,
        }
    }
}

/// Why a source was not (entirely) usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The AWS error code (`LoadBalancerNotFound`, `Throttling`, …) or the
    /// DNS failure (`NXDOMAIN`, `SERVFAIL`, `Timeout`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

/// One observation of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub resolution: Resolution,
    /// DNS only: every answer was full up to `max_lookups`.
    pub saturated: bool,
    pub problem: Option<Problem>,
    /// Exact sources: the VPC of the interfaces.
    pub vpc_id: Option<String>,
}

impl Observed {
    pub fn failed(code: Option<String>, message: String) -> Observed {
        Observed {
            resolution: Resolution::Failed,
            saturated: false,
            problem: Some(Problem { code, message }),
            vpc_id: None,
        }
    }
}

/// What [`observe`] shares between mappings: mappings with the same key get
/// the same observation, made once per run.
pub type ObserveKey = (Source, Vec<crate::dns::RecordKind>, u32, Option<RoleArn>);

pub fn observe_key(m: &Mapping) -> ObserveKey {
    let lookups = if m.source.is_exact() {
        0
    } else {
        m.max_lookups
    };
    (
        m.source.clone(),
        m.record_types.clone(),
        lookups,
        m.source_role.clone(),
    )
}

/// An exact source's observation, from its interfaces' listing.
pub fn from_listing(m: &Mapping, listed: &Listing) -> Observed {
    match listed {
        Err(e) => Observed::failed(e.code.clone(), format!("listing {}: {e}", m.source)),
        Ok(listed) => {
            let addrs: BTreeSet<IpAddr> = listed
                .addrs
                .iter()
                .filter(|ip| m.record_types.iter().any(|k| k.matches(ip)))
                .copied()
                .collect();
            if addrs.is_empty() {
                return Observed::failed(
                    None,
                    format!(
                        "{} has no network interface address of type {}",
                        m.source,
                        kinds(m)
                    ),
                );
            }
            Observed {
                resolution: Resolution::Complete(addrs),
                saturated: false,
                problem: None,
                vpc_id: listed.vpc_id.clone(),
            }
        }
    }
}

fn kinds(m: &Mapping) -> String {
    let names: Vec<&str> = m.record_types.iter().map(|k| k.as_str()).collect();
    names.join(" ")
}

/// A DNS source's observation.
pub async fn observe_dns<D: Lookup>(dns: &D, name: &str, m: &Mapping) -> Observed {
    let r = resolve(dns, name, &m.record_types, m.max_lookups).await;
    let problem = r.failure_message(name).map(|message| Problem {
        code: r.failures.first().map(|(_, f)| f.code().to_owned()),
        message,
    });
    if r.addrs.is_empty() {
        return Observed {
            resolution: Resolution::Failed,
            saturated: false,
            vpc_id: None,
            problem: problem.or_else(|| {
                Some(Problem {
                    code: Some("NODATA".into()),
                    message: format!("resolving {name}: no address of type {}", kinds(m)),
                })
            }),
        };
    }
    let resolution = if problem.is_some() || r.saturated {
        Resolution::Partial(r.addrs)
    } else {
        Resolution::Complete(r.addrs)
    };
    Observed {
        resolution,
        saturated: r.saturated,
        problem,
        vpc_id: None,
    }
}

/// The note for a name whose answers stayed full.
pub fn saturation_note(m: &Mapping) -> String {
    format!(
        "every DNS answer for {} held {FULL_ANSWER} addresses through {} lookups: it may have more addresses than seen, so no countdown advanced; use the source alb:<name> to read an ALB's nodes from its network interfaces",
        m.source, m.max_lookups
    )
}

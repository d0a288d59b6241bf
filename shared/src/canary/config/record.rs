//! `FAILOVER_RECORD_NAME`: the failover record whose health this canary
//! decides (the template passes it; empty or unset: no record).
//!
//! An endpoint whose URL host is that name, and that resolves it (no
//! `connect_to`), would probe whichever region the record answers with: the
//! region's health would depend on itself. Route 53 says so of its own
//! checkers: "if you create a health check for which the value of
//! `FullyQualifiedDomainName` matches the name of the records and you then
//! associate the health check with those records, health check results will
//! be unpredictable" (Route 53 API Reference, `HealthCheckConfig`,
//! `FullyQualifiedDomainName`, for a check without `IPAddress`:
//! <https://docs.aws.amazon.com/Route53/latest/APIReference/API_HealthCheckConfig.html>).
//! Such an endpoint is refused at cold start.
//!
//! With `connect_to` the record's name is only the SNI name and `Host`
//! header, and the addresses are the region's own, as with Route 53's
//! `IPAddress`: nothing depends on what the record answers, so that endpoint
//! (the usual way to probe a region behind a shared name) is accepted.
//!
//! Not detected: a host that is a CNAME to the record, or a host that a
//! wildcard record (`*.example.com`) answers; the canary reads no DNS at
//! cold start.

use super::Endpoint;
use crate::config::ConfigError;
use crate::dns::validate_dns_name;
use crate::fields::shorten;

/// The variable naming the failover record.
pub const RECORD_VAR: &str = "FAILOVER_RECORD_NAME";

/// A failover record's name: lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverRecord(String);

impl FailoverRecord {
    /// A DNS name, or a wildcard name (`*.example.com`).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: String| ConfigError::new(RECORD_VAR, why);
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let name = validate_dns_name(rest).map_err(|_| {
            bad(format!(
                "\"{}\" is not a DNS name (the failover record's name, such as api.example.com)",
                shorten(text)
            ))
        })?;
        Ok(FailoverRecord(if wildcard {
            format!("*.{name}")
        } else {
            name
        }))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// Whether `host` is the record's own name (case and a trailing dot
    /// aside).
    pub fn is(&self, host: &str) -> bool {
        host.trim_end_matches('.').eq_ignore_ascii_case(&self.0)
    }
}

/// Refuses the first endpoint that would resolve the failover record.
pub fn refuse_self_probe(
    record: &FailoverRecord,
    endpoints: &[Endpoint],
) -> Result<(), ConfigError> {
    let Some((i, e)) = endpoints.iter().enumerate().find(|(_, e)| {
        e.connect_to.is_empty() && e.url.host_str().is_some_and(|host| record.is(host))
    }) else {
        return Ok(());
    };
    Err(ConfigError::new(
        format!("CANARY_TARGETS[{i}].url"),
        format!(
            "\"{}\" resolves {}, the failover record this canary decides ({RECORD_VAR}): it would probe whichever region the record answers, and Route 53 calls a health check of its own record unpredictable. Probe the region's own name, or keep this name and set connect_to to the region's addresses",
            e.shown_url(),
            record.name()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(fields: serde_json::Value) -> Endpoint {
        Endpoint::from_json("T", &fields).unwrap()
    }

    #[test]
    fn record_names_are_dns_names_or_wildcards() {
        assert_eq!(
            FailoverRecord::parse("API.Example.com.").unwrap().name(),
            "api.example.com"
        );
        assert_eq!(
            FailoverRecord::parse("*.example.com").unwrap().name(),
            "*.example.com"
        );
        for bad in ["10.0.0.1", "a..b", "api example", "*."] {
            let err = FailoverRecord::parse(bad).unwrap_err();
            assert_eq!(err.location, RECORD_VAR);
            assert!(err.problem.contains(bad), "{err}");
        }
    }

    #[test]
    fn an_endpoint_resolving_the_record_is_refused() {
        let record = FailoverRecord::parse("api.example.com").unwrap();
        let own = endpoint(json!({"name": "a", "url": "https://eu-west-1.api.example.com/health"}));
        let pinned = endpoint(
            json!({"name": "b", "url": "https://api.example.com/health", "connect_to": "10.0.1.25:443"}),
        );
        assert_eq!(refuse_self_probe(&record, &[own.clone(), pinned]), Ok(()));
        for url in [
            "https://api.example.com/health?token=abc",
            "http://API.EXAMPLE.COM.:8080/",
        ] {
            let self_probe = endpoint(json!({"name": "c", "url": url}));
            let err = refuse_self_probe(&record, &[own.clone(), self_probe]).unwrap_err();
            assert_eq!(err.location, "CANARY_TARGETS[1].url");
            assert!(
                err.problem.contains("api.example.com, the failover record")
                    && err.problem.contains(RECORD_VAR)
                    && err.problem.contains("unpredictable")
                    && !err.problem.contains("token=abc"),
                "{err}"
            );
        }
    }
}

//! Reading the environment: what every function's configuration shares
//! (variables, the resolver, metrics, the state location).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::fields::{FieldError, parse_bool, shorten, split_list};

/// A configuration problem, naming the variable (and field) and the value.
pub type ConfigError = FieldError;

/// Where the sync keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLocation {
    pub bucket: String,
    /// Empty, or ends with `/`.
    pub prefix: String,
}

/// Settings of the DNS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Empty: the system configuration (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Bound on each query.
    pub timeout: Duration,
}

/// Metrics settings shared by the functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub namespace: String,
    pub enabled: bool,
}

pub const DEFAULT_NAMESPACE: &str = "Tether";
pub const DEFAULT_STATE_PREFIX: &str = "target-sync/";
pub const DEFAULT_DNS_TIMEOUT_MS: u64 = 2000;

/// Reads variables; empty or blank values count as unset (templates often
/// pass `""` for an optional parameter).
pub struct Vars<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A whole number in `range`.
    pub fn number(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::new(
                name,
                format!(
                    "expected a whole number from {} to {}, got \"{}\"",
                    range.start(),
                    range.end(),
                    shorten(&text)
                ),
            )),
        }
    }

    /// `true` or `false`, in any case.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        parse_bool(&text).map(Some).ok_or_else(|| {
            ConfigError::new(
                name,
                format!("expected true or false, got \"{}\"", shorten(&text)),
            )
        })
    }

    pub fn required(&self, name: &str, why: &str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| ConfigError::new(name, format!("is not set ({why})")))
    }
}

/// `DNS_SERVERS` and `DNS_TIMEOUT_MS`.
pub fn dns_settings<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<DnsSettings, ConfigError> {
    let servers = match vars.get("DNS_SERVERS") {
        None => Vec::new(),
        Some(list) => split_list(&list)
            .iter()
            .map(|item| parse_server(item).map_err(|e| ConfigError::new("DNS_SERVERS", e)))
            .collect::<Result<_, _>>()?,
    };
    let timeout_ms = vars
        .number("DNS_TIMEOUT_MS", 50..=30_000)?
        .unwrap_or(DEFAULT_DNS_TIMEOUT_MS);
    Ok(DnsSettings {
        servers,
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// `METRICS_NAMESPACE`, refusing the reserved `AWS/` prefix.
pub fn namespace<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<String, ConfigError> {
    let Some(ns) = vars.get("METRICS_NAMESPACE") else {
        return Ok(DEFAULT_NAMESPACE.to_owned());
    };
    if ns.to_ascii_uppercase().starts_with("AWS/") {
        return Err(ConfigError::new(
            "METRICS_NAMESPACE",
            format!("\"{ns}\" is reserved for AWS services (namespaces starting with AWS/)"),
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || ".-_/#:".contains(c);
    if ns.len() > 255 || !ns.chars().all(ok_char) {
        return Err(ConfigError::new(
            "METRICS_NAMESPACE",
            format!("\"{}\" is not a valid CloudWatch namespace", shorten(&ns)),
        ));
    }
    Ok(ns)
}

/// `ip` or `ip:port` (`[v6]:port`); port 53 by default.
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(format!(
            "\"{}\" is not an IP address or ip:port",
            shorten(text)
        )),
    }
}

pub fn validate_bucket(name: &str) -> Result<String, ConfigError> {
    validate_bucket_in("STATE_BUCKET", name)
}

/// A bucket name read from the variable `var`, whose error names `var`.
pub fn validate_bucket_in(var: &str, name: &str) -> Result<String, ConfigError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::new(
            var,
            format!("\"{}\" is not a valid S3 bucket name", shorten(name)),
        ))
    }
}

pub fn normalize_prefix(prefix: &str) -> Result<String, ConfigError> {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.len() > 512 || trimmed.contains("//") {
        return Err(ConfigError::new(
            "STATE_PREFIX",
            format!("\"{}\" is not a usable key prefix", shorten(prefix)),
        ));
    }
    Ok(if trimmed.is_empty() || trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_buckets_and_prefixes() {
        assert_eq!(
            parse_server("10.0.0.2").unwrap(),
            "10.0.0.2:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        assert!(
            parse_server("dns.google")
                .unwrap_err()
                .contains("dns.google")
        );
        assert!(
            validate_bucket("Bad_Bucket")
                .unwrap_err()
                .to_string()
                .contains("Bad_Bucket")
        );
        assert_eq!(normalize_prefix("/sync/x").unwrap(), "sync/x/");
        assert!(normalize_prefix("a//b").is_err());
    }
}

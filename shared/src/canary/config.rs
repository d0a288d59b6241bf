//! health-canary configuration from the environment, validated at cold start.
//!
//! `CANARY_TARGETS` is a JSON array of endpoints; `PROBES_PER_INVOCATION`
//! and `PROBE_INTERVAL_MS` space the probe rounds of one invocation;
//! `DNS_SERVERS`, `DNS_TIMEOUT_MS` and `METRICS_NAMESPACE` are read as for
//! target-sync.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::config::{ConfigError, DnsSettings, Vars, dns_settings, namespace};
use crate::fields::{Fields, json_array, shorten, show};

pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// The TCP handshake with one address, unless the timeout is shorter.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Addresses in one `connect_to` (one per availability zone, and room).
pub const MAX_CONNECT_TO: usize = 16;
/// The largest request `body`.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
pub const DEFAULT_PROBES: u64 = 1;
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
/// The longest an invocation may plan to probe: the Lambda maximum is 15
/// minutes, and one minute is kept for the last round and publishing.
pub const MAX_PLANNED: Duration = Duration::from_secs(14 * 60);
/// Endpoints per function: every round's metrics go out in one call.
pub const MAX_ENDPOINTS: usize = 150;
const TIMEOUT_RANGE: RangeInclusive<u64> = 1..=60_000;

/// The variable naming an S3 object that holds `CANARY_TARGETS`.
pub const TARGETS_URI: &str = "CANARY_TARGETS_S3_URI";

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    pub fn parse(text: &str) -> Result<S3Uri, ConfigError> {
        let bad = || {
            ConfigError::new(
                TARGETS_URI,
                format!(
                    "\"{}\" is not s3://<bucket>/<key>",
                    crate::fields::shorten(text)
                ),
            )
        };
        let rest = text.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
        if key.is_empty() || crate::config::validate_bucket(bucket).is_err() {
            return Err(bad());
        }
        Ok(S3Uri {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl std::fmt::Display for S3Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The whole health-canary configuration.
#[derive(Debug, Clone)]
pub struct CanaryConfig {
    pub endpoints: Vec<Endpoint>,
    /// Probe rounds per invocation.
    pub probes_per_invocation: u32,
    /// From the start of one round to the start of the next.
    pub probe_interval: Duration,
    pub dns: DnsSettings,
    pub namespace: String,
}

/// One probed endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The metric dimension `Endpoint`.
    pub name: String,
    pub url: Url,
    pub method: Method,
    /// Plain header values, and (after [`super::secrets::resolve`]) the
    /// secret ones, marked sensitive.
    pub headers: HeaderMap,
    /// Headers whose values are read from Secrets Manager or SSM at cold start.
    pub secret_headers: Vec<(HeaderName, SecretRef)>,
    /// Sent with POST and PUT only.
    pub body: Option<String>,
    pub expect_status: StatusSet,
    pub body_contains: Option<String>,
    /// Bounds the whole probe (connect, TLS, answer, and the one retry).
    pub timeout: Duration,
    /// Bounds the TCP handshake with one address; the next is tried after.
    pub connect_timeout: Duration,
    /// An answer slower than this fails with the class `slow`.
    pub max_latency: Option<Duration>,
    /// Connect to these (in turn) instead of resolving the URL's host
    /// (which stays the SNI name and the Host header). Empty: resolve.
    pub connect_to: Vec<SocketAddr>,
    /// PEM text of extra trusted CAs, already checked to parse.
    pub ca_bundle: Option<String>,
}

/// Where a header value is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// A Secrets Manager secret (name or ARN); its `SecretString` is the value.
    Secret(String),
    /// An SSM parameter (name or ARN), read with decryption (SecureString).
    Parameter(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Secret(id) => write!(f, "secret {id}"),
            SecretRef::Parameter(name) => write!(f, "SSM parameter {name}"),
        }
    }
}

/// Accepted status codes: inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<RangeInclusive<u16>>);

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }

    /// Parses `200`, `200-299`, `200-299, 301` (items separated by commas).
    pub fn parse(text: &str) -> Result<Self, String> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Err(format!("\"{}\" names no status code", shorten(text)));
        }
        let mut ranges = Vec::new();
        for item in items {
            let (low, high) = match item.split_once('-') {
                Some((low, high)) => (low.trim(), high.trim()),
                None => (item, item),
            };
            let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
            match (code(low), code(high)) {
                (Some(low), Some(high)) if low <= high => ranges.push(low..=high),
                _ => {
                    return Err(format!(
                        "\"{}\" is not a status code (100-599) or a range such as 200-299",
                        shorten(item)
                    ));
                }
            }
        }
        Ok(StatusSet(ranges))
    }

    /// From JSON: a number, a string of items, or an array of either.
    fn from_json(value: &Value) -> Result<Self, String> {
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Array(items) if !items.is_empty() => {
                let parts: Option<Vec<String>> = items
                    .iter()
                    .map(|item| match item {
                        Value::Number(n) => Some(n.to_string()),
                        Value::String(s) if !s.contains(',') => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                parts
                    .ok_or_else(|| {
                        format!(
                            "expected status codes or ranges such as \"200-299\", got {}",
                            show(value)
                        )
                    })?
                    .join(",")
            }
            other => {
                return Err(format!(
                    "expected a status code, a range such as \"200-299\" or a list of them, got {}",
                    show(other)
                ));
            }
        };
        Self::parse(&text)
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r.start() == r.end() {
                true => r.start().to_string(),
                false => format!("{}-{}", r.start(), r.end()),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl CanaryConfig {
    /// Reads the configuration from the process environment.
    /// Reads the configuration; `CANARY_TARGETS_S3_URI` (an object holding
    /// the `CANARY_TARGETS` array, for lists beyond Lambda's 4 KB
    /// environment) is read through `fetch`, once, at cold start.
    pub async fn load<Fut>(fetch: impl FnOnce(S3Uri) -> Fut) -> Result<Self, ConfigError>
    where
        Fut: std::future::Future<Output = Result<String, String>>,
    {
        let env = Vars(|name: &str| std::env::var(name).ok());
        let Some(uri) = env.get(TARGETS_URI) else {
            return Self::from_env();
        };
        if env.get("CANARY_TARGETS").is_some() {
            return Err(ConfigError::new(
                TARGETS_URI,
                "is set together with CANARY_TARGETS: use one or the other",
            ));
        }
        let uri = S3Uri::parse(&uri)?;
        let text = fetch(uri.clone())
            .await
            .map_err(|e| ConfigError::new(TARGETS_URI, format!("reading {uri}: {e}")))?;
        Self::from_vars(&Vars(|name: &str| match name {
            "CANARY_TARGETS" => Some(text.clone()),
            other => std::env::var(other).ok(),
        }))
        .map_err(|e| ConfigError::new(format!("{} (from {uri})", e.location), e.problem))
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars(|name: &str| std::env::var(name).ok()))
    }

    /// Reads the configuration through `vars` (tests pass a map).
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let json = vars.get("CANARY_TARGETS").ok_or_else(|| {
            ConfigError::new(
                "CANARY_TARGETS",
                "is not set: give a JSON array of endpoints such as [{\"name\": \"api\", \"url\": \"https://api.example.com/health\"}]",
            )
        })?;
        let endpoints = parse_targets(&json)?;
        let probes = vars
            .number("PROBES_PER_INVOCATION", 1..=900)?
            .unwrap_or(DEFAULT_PROBES);
        let interval_ms = vars
            .number("PROBE_INTERVAL_MS", 1000..=840_000)?
            .unwrap_or(DEFAULT_INTERVAL_MS);
        let planned = Duration::from_millis(probes * interval_ms);
        if probes > 1 && planned > MAX_PLANNED {
            return Err(ConfigError::new(
                "PROBES_PER_INVOCATION",
                format!(
                    "{probes} probes every {interval_ms} ms plan {} s of probing, more than the {} s an invocation may plan (Lambda runs at most 15 minutes)",
                    planned.as_secs(),
                    MAX_PLANNED.as_secs()
                ),
            ));
        }
        if probes > 1 {
            let interval = Duration::from_millis(interval_ms);
            if let Some((i, e)) = endpoints
                .iter()
                .enumerate()
                .find(|(_, e)| e.timeout > interval)
            {
                return Err(ConfigError::new(
                    "PROBE_INTERVAL_MS",
                    format!(
                        "{interval_ms} ms is shorter than CANARY_TARGETS[{i}].timeout_ms ({} ms): a round must fit in the interval",
                        e.timeout.as_millis()
                    ),
                ));
            }
        }
        Ok(CanaryConfig {
            endpoints,
            probes_per_invocation: probes as u32,
            probe_interval: Duration::from_millis(interval_ms),
            dns: dns_settings(vars)?,
            namespace: namespace(vars)?,
        })
    }

    /// The longest probe timeout of any endpoint.
    pub fn longest_timeout(&self) -> Duration {
        self.endpoints
            .iter()
            .map(|e| e.timeout)
            .max()
            .unwrap_or_default()
    }
}

fn parse_targets(json: &str) -> Result<Vec<Endpoint>, ConfigError> {
    let items = json_array("CANARY_TARGETS", json, "endpoints")?;
    if items.len() > MAX_ENDPOINTS {
        return Err(ConfigError::new(
            "CANARY_TARGETS",
            format!(
                "has {} endpoints; one function probes at most {MAX_ENDPOINTS} (use a second function)",
                items.len()
            ),
        ));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut endpoints = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let endpoint = Endpoint::from_json(&format!("CANARY_TARGETS[{i}]"), item)?;
        if let Some(first) = names.insert(endpoint.name.clone(), i) {
            return Err(ConfigError::new(
                format!("CANARY_TARGETS[{i}].name"),
                format!(
                    "\"{}\" is already the name of CANARY_TARGETS[{first}]: names are the metric dimension and must be unique",
                    shorten(&endpoint.name)
                ),
            ));
        }
        endpoints.push(endpoint);
    }
    if let Some((first, second)) =
        super::names::colliding(endpoints.iter().map(|e| e.name.as_str()))
    {
        let (a, b) = (&endpoints[first].name, &endpoints[second].name);
        return Err(ConfigError::new(
            format!("CANARY_TARGETS[{second}].name"),
            format!(
                "\"{}\" and CANARY_TARGETS[{first}].name \"{}\" have the same letters and digits ({}): the template's logical IDs (EndpointAlarm&{{Endpoint}}) keep only those, so they would collide",
                shorten(b),
                shorten(a),
                super::names::logical_suffix(b)
            ),
        ));
    }
    Ok(endpoints)
}

const FIELDS: [&str; 12] = [
    "body",
    "body_contains",
    "ca_bundle",
    "connect_timeout_ms",
    "connect_to",
    "expect_status",
    "headers",
    "max_latency_ms",
    "method",
    "name",
    "timeout_ms",
    "url",
];
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Endpoint {
    /// One element of `CANARY_TARGETS`; `location` names it in messages.
    pub fn from_json(location: &str, value: &Value) -> Result<Self, ConfigError> {
        // `headers` and `expect_status` are not plain scalars: read them from
        // the object directly and leave the rest to `Fields`.
        let mut rest = value.clone();
        let (raw_headers, raw_status, raw_connect_to) = match &mut rest {
            Value::Object(map) => (
                map.remove("headers"),
                map.remove("expect_status"),
                map.remove("connect_to"),
            ),
            _ => (None, None, None),
        };
        let mut f = Fields::new(location, &rest)?;
        let name = f.required_string("name")?;
        if let Err(problem) = super::names::check_name(&name) {
            return Err(ConfigError::new(
                f.at("name"),
                format!("{} {problem}", show(&Value::String(name.clone()))),
            ));
        }
        let url = parse_url(&f.at("url"), &f.required_string("url")?)?;
        let method = match f.string("method")? {
            None => Method::GET,
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    return Err(ConfigError::new(
                        f.at("method"),
                        format!("\"{}\" is not one of {}", shorten(&m), METHODS.join(", ")),
                    ));
                }
                Method::from_bytes(upper.as_bytes())
                    .map_err(|e| ConfigError::new(f.at("method"), e.to_string()))?
            }
        };
        let body_contains = f.string("body_contains")?;
        if body_contains.is_some() && method == Method::HEAD {
            return Err(ConfigError::new(
                f.at("body_contains"),
                "cannot be checked with method HEAD (a HEAD response has no body)",
            ));
        }
        let timeout_ms = f
            .number("timeout_ms", TIMEOUT_RANGE)?
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        let connect_timeout_ms = f
            .number("connect_timeout_ms", TIMEOUT_RANGE)?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS.min(timeout_ms));
        if connect_timeout_ms > timeout_ms {
            return Err(ConfigError::new(
                f.at("connect_timeout_ms"),
                format!("{connect_timeout_ms} is more than timeout_ms ({timeout_ms})"),
            ));
        }
        let max_latency_ms = f.number("max_latency_ms", TIMEOUT_RANGE)?;
        if let Some(max) = max_latency_ms
            && max > timeout_ms
        {
            return Err(ConfigError::new(
                f.at("max_latency_ms"),
                format!(
                    "{max} is more than timeout_ms ({timeout_ms}): a slower answer times out first"
                ),
            ));
        }
        let body = f.string("body")?;
        if let Some(text) = &body {
            if method != Method::POST && method != Method::PUT {
                return Err(ConfigError::new(
                    f.at("body"),
                    format!(
                        "is set but the method is {method}: a request body is sent with POST or PUT only"
                    ),
                ));
            }
            if text.len() > MAX_REQUEST_BODY {
                return Err(ConfigError::new(
                    f.at("body"),
                    format!("is {} bytes, more than {MAX_REQUEST_BODY}", text.len()),
                ));
            }
        }
        let connect_to = match raw_connect_to {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => parse_connect_to(&f.at("connect_to"), &value)?,
        };
        if let Some(port) = url.port()
            && let Some(addr) = connect_to.iter().find(|a| a.port() != port)
        {
            return Err(ConfigError::new(
                f.at("connect_to"),
                format!(
                    "port {} differs from the URL's port {port}: leave the port out of the URL to connect to another port",
                    addr.port()
                ),
            ));
        }
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
        if !connect_to.is_empty() && host.parse::<std::net::IpAddr>().is_ok() {
            return Err(ConfigError::new(
                f.at("connect_to"),
                format!(
                    "is set but the URL's host {host} is an address already: put the address to connect to in the URL"
                ),
            ));
        }
        let ca_bundle = match f.string("ca_bundle")? {
            None => None,
            Some(pem) => Some(check_ca_bundle(&f.at("ca_bundle"), &pem)?),
        };
        let (headers, secret_headers) = match raw_headers {
            None | Some(Value::Null) => (HeaderMap::new(), Vec::new()),
            Some(value) => parse_headers(&f.at("headers"), &value)?,
        };
        let expect_status = match raw_status {
            None | Some(Value::Null) => StatusSet(vec![200..=299]),
            Some(value) => StatusSet::from_json(&value)
                .map_err(|e| ConfigError::new(f.at("expect_status"), e))?,
        };
        if let Err(e) = f.finish() {
            // `finish` lists only the fields it saw; name all of them.
            return Err(ConfigError::new(
                e.location,
                format!("unknown field (known fields: {})", FIELDS.join(", ")),
            ));
        }
        if ca_bundle.is_some() && url.scheme() != "https" {
            return Err(ConfigError::new(
                format!("{location}.ca_bundle"),
                "is set but the URL is not https",
            ));
        }
        Ok(Endpoint {
            name,
            url,
            method,
            headers,
            secret_headers,
            body,
            expect_status,
            body_contains,
            timeout: Duration::from_millis(timeout_ms),
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            max_latency: max_latency_ms.map(Duration::from_millis),
            connect_to,
            ca_bundle,
        })
    }
}

fn parse_url(location: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| {
        ConfigError::new(
            location,
            format!("\"{}\" is not a URL ({e})", shorten(text)),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            location,
            format!(
                "\"{}\" is not an http or https URL (scheme \"{}\")",
                shorten(text),
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(
            location,
            format!("\"{}\" has no host", shorten(text)),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            location,
            "contains credentials; send them with \"headers\" (the URL is logged)",
        ));
    }
    Ok(url)
}

/// `connect_to`: `"ip:port"` or a list of them (tried in turn).
fn parse_connect_to(location: &str, value: &Value) -> Result<Vec<SocketAddr>, ConfigError> {
    let one = |at: &str, item: &Value| match item {
        Value::String(text) => match text.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => Ok(addr),
            _ => Err(ConfigError::new(
                at,
                format!(
                    "\"{}\" is not ip:port (such as 10.0.1.25:443 or [fd00::1]:443)",
                    shorten(text)
                ),
            )),
        },
        other => Err(ConfigError::new(
            at,
            format!("expected \"ip:port\", got {}", show(other)),
        )),
    };
    let addrs = match value {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_CONNECT_TO {
                return Err(ConfigError::new(
                    location,
                    format!(
                        "has {} addresses; give 1 to {MAX_CONNECT_TO} (one per availability zone)",
                        items.len()
                    ),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| one(&format!("{location}[{i}]"), item))
                .collect::<Result<Vec<_>, _>>()?
        }
        item => vec![one(location, item)?],
    };
    if let Some((i, addr)) = addrs
        .iter()
        .enumerate()
        .find(|(i, a)| addrs[..*i].contains(a))
    {
        return Err(ConfigError::new(
            format!("{location}[{i}]"),
            format!("{addr} is listed twice"),
        ));
    }
    Ok(addrs)
}

type Headers = (HeaderMap, Vec<(HeaderName, SecretRef)>);

/// `headers`: names to a string, `{"secret": "<name or ARN>"}` (Secrets
/// Manager) or `{"ssm": "<parameter name or ARN>"}` (an SSM SecureString).
fn parse_headers(location: &str, value: &Value) -> Result<Headers, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError::new(
            location,
            format!(
                "expected an object of header names and values, got {}",
                show(value)
            ),
        ));
    };
    let mut headers = HeaderMap::new();
    let mut secret = Vec::new();
    for (name, value) in map {
        let at = format!("{location}.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(&at, "is not a valid header name"))?;
        match value {
            Value::String(text) => {
                let header_value = HeaderValue::from_str(text).map_err(|_| {
                    ConfigError::new(&at, "is not a valid header value (control characters?)")
                })?;
                headers.append(header, header_value);
            }
            Value::Object(source) if source.len() == 1 => {
                let (kind, id) = source
                    .iter()
                    .next()
                    .map(|(k, v)| (k.as_str(), v))
                    .unwrap_or(("", value));
                let id = match id {
                    Value::String(id) if !id.trim().is_empty() => id.trim().to_owned(),
                    other => {
                        return Err(ConfigError::new(
                            format!("{at}.{kind}"),
                            format!("expected a name or ARN, got {}", show(other)),
                        ));
                    }
                };
                let reference = match kind {
                    "secret" => SecretRef::Secret(id),
                    "ssm" => SecretRef::Parameter(id),
                    other => {
                        return Err(ConfigError::new(
                            format!("{at}.{other}"),
                            "is not a value source: use {\"secret\": \"<Secrets Manager name or ARN>\"} or {\"ssm\": \"<SSM parameter name>\"}",
                        ));
                    }
                };
                secret.push((header, reference));
            }
            other => {
                return Err(ConfigError::new(
                    &at,
                    format!(
                        "expected a string, {{\"secret\": \"<name or ARN>\"}} or {{\"ssm\": \"<parameter name>\"}}, got {}",
                        show(other)
                    ),
                ));
            }
        }
    }
    // By name: the same order whatever the JSON map's order (serde_json's
    // `preserve_order` may be on or off, depending on the build).
    secret.sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
    Ok((headers, secret))
}

/// Checks that `pem` holds at least one certificate usable as a trust anchor.
fn check_ca_bundle(location: &str, pem: &str) -> Result<String, ConfigError> {
    let mut store = rustls::RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let cert = cert.map_err(|e| {
            ConfigError::new(
                location,
                format!("certificate {} is not valid PEM ({e})", n + 1),
            )
        })?;
        store.add(cert).map_err(|e| {
            ConfigError::new(
                location,
                format!("certificate {} is not a usable CA certificate ({e})", n + 1),
            )
        })?;
    }
    if store.is_empty() {
        return Err(ConfigError::new(
            location,
            format!(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----): {}",
                shorten(pem)
            ),
        ));
    }
    Ok(pem.to_owned())
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_targets_object_is_an_s3_uri() {
        let uri = S3Uri::parse("s3://tether-config/canary/targets.json").unwrap();
        assert_eq!(
            (uri.bucket.as_str(), uri.key.as_str()),
            ("tether-config", "canary/targets.json")
        );
        assert_eq!(uri.to_string(), "s3://tether-config/canary/targets.json");
        for bad in [
            "tether-config/x",
            "s3://tether-config",
            "s3://tether-config/",
            "s3://Bad_B/x",
        ] {
            let err = S3Uri::parse(bad).unwrap_err();
            assert_eq!(err.location, TARGETS_URI);
            assert!(err.problem.contains(bad), "{err}");
        }
    }
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn config(pairs: &[(&str, &str)]) -> Result<CanaryConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CanaryConfig::from_vars(&Vars(|name: &str| map.get(name).cloned()))
    }

    fn targets(items: Value) -> String {
        items.to_string()
    }

    /// `CANARY_TARGETS` with one endpoint: `api` with `extra` fields.
    fn one(extra: Value) -> String {
        let mut item = json!({"name": "api", "url": "https://api.example.com/"});
        if let (Value::Object(m), Value::Object(e)) = (&mut item, extra) {
            m.extend(e);
        }
        targets(json!([item]))
    }

    #[test]
    fn defaults() {
        let t = targets(json!([{"name": "api", "url": "https://api.example.com/health"}]));
        let c = config(&[("CANARY_TARGETS", &t)]).unwrap();
        assert_eq!(c.probes_per_invocation, 1);
        assert_eq!(c.probe_interval, Duration::from_secs(10));
        assert_eq!(c.namespace, "Tether");
        let e = &c.endpoints[0];
        assert_eq!(e.method, Method::GET);
        assert_eq!(e.timeout, Duration::from_millis(3000));
        assert_eq!(e.expect_status.to_string(), "200-299");
        assert!(e.headers.is_empty() && e.connect_to.is_empty() && e.ca_bundle.is_none());
        assert_eq!(e.connect_timeout, Duration::from_millis(1000));
        assert_eq!((e.max_latency, e.body.as_deref()), (None, None));
        assert_eq!(e.url.scheme(), "https");
    }

    #[test]
    fn every_field() {
        let t = targets(json!([{
            "name": "orders-primary",
            "url": "https://api.example.com/health",
            "method": "head",
            "headers": {"x-api-key": "k", "Accept": "application/json"},
            "expect_status": [200, "301-302"],
            "timeout_ms": "1500",
            "connect_to": "10.0.1.25:443",
        }, {
            "name": "plain",
            "url": "http://10.0.0.1:8080/",
            "method": "POST",
            "expect_status": "204, 400-404",
            "body_contains": "ok",
        }]));
        let c = config(&[
            ("CANARY_TARGETS", &t),
            ("PROBES_PER_INVOCATION", "6"),
            ("PROBE_INTERVAL_MS", "10000"),
            ("METRICS_NAMESPACE", "Platform/Canary"),
        ])
        .unwrap();
        let (a, b) = (&c.endpoints[0], &c.endpoints[1]);
        assert_eq!(a.method, Method::HEAD);
        assert_eq!(a.headers["x-api-key"], "k");
        assert_eq!(a.headers["accept"], "application/json");
        assert_eq!(a.expect_status.to_string(), "200,301-302");
        assert_eq!(a.timeout, Duration::from_millis(1500));
        assert_eq!(a.connect_to, vec!["10.0.1.25:443".parse().unwrap()]);
        assert_eq!(b.method, Method::POST);
        assert_eq!(b.body_contains.as_deref(), Some("ok"));
        assert!(b.expect_status.contains(204) && b.expect_status.contains(401));
        assert!(!b.expect_status.contains(200));
        assert_eq!(c.probes_per_invocation, 6);
        assert_eq!(c.longest_timeout(), Duration::from_millis(3000));
    }

    #[test]
    fn status_sets() {
        let s = StatusSet::parse("200-299").unwrap();
        assert!(s.contains(200) && s.contains(299) && !s.contains(300) && !s.contains(199));
        for bad in [
            "",
            "abc",
            "99",
            "600",
            "300-200",
            "200-",
            "2OO",
            "200-299-300",
        ] {
            assert!(StatusSet::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn status_ranges_contain_exactly_their_codes(low in 100u16..=599, len in 0u16..100, probe in 100u16..=599) {
            let high = (low + len).min(599);
            let s = StatusSet::parse(&format!(" {low} - {high} ")).unwrap();
            prop_assert_eq!(s.contains(probe), (low..=high).contains(&probe));
            let reparsed = StatusSet::parse(&s.to_string()).unwrap();
            prop_assert_eq!(reparsed, s);
        }
    }

    #[test]
    fn bad_values_name_the_variable_field_and_value() {
        type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (vec![], "CANARY_TARGETS", "not set"),
            (
                vec![("CANARY_TARGETS", "[{".into())],
                "CANARY_TARGETS",
                "not valid JSON",
            ),
            (
                vec![("CANARY_TARGETS", "{}".into())],
                "CANARY_TARGETS",
                "array",
            ),
            (
                vec![("CANARY_TARGETS", "[]".into())],
                "CANARY_TARGETS",
                "empty",
            ),
            (
                vec![("CANARY_TARGETS", "[1]".into())],
                "CANARY_TARGETS[0]",
                "object",
            ),
            (
                vec![("CANARY_TARGETS", targets(json!([{"url": "http://a/"}])))],
                "CANARY_TARGETS[0].name",
                "required",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"url": "ftp://a/"})))],
                "CANARY_TARGETS[0].url",
                "ftp://a/",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"url": "not a url"})))],
                "CANARY_TARGETS[0].url",
                "not a url",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"url": "https://u:p@a/"})))],
                "CANARY_TARGETS[0].url",
                "credentials",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"method": "FETCH"})))],
                "CANARY_TARGETS[0].method",
                "FETCH",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"expect_status": "2xx"})))],
                "CANARY_TARGETS[0].expect_status",
                "2xx",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"expect_status": {"a": 1}})))],
                "CANARY_TARGETS[0].expect_status",
                "{\"a\":1}",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"timeout_ms": 0})))],
                "CANARY_TARGETS[0].timeout_ms",
                "got 0",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"connect_to": "10.0.0.1"})))],
                "CANARY_TARGETS[0].connect_to",
                "10.0.0.1",
            ),
            (
                vec![(
                    "CANARY_TARGETS",
                    one(json!({"url": "https://a:8443/", "connect_to": "10.0.0.1:443"})),
                )],
                "CANARY_TARGETS[0].connect_to",
                "8443",
            ),
            (
                vec![(
                    "CANARY_TARGETS",
                    one(json!({"url": "https://10.0.0.9/", "connect_to": "10.0.0.1:443"})),
                )],
                "CANARY_TARGETS[0].connect_to",
                "10.0.0.9",
            ),
            (
                vec![(
                    "CANARY_TARGETS",
                    one(json!({"url": "http://a/", "ca_bundle": "x"})),
                )],
                "CANARY_TARGETS[0].ca_bundle",
                "no PEM certificate",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"ca_bundle": "hello"})))],
                "CANARY_TARGETS[0].ca_bundle",
                "no PEM certificate",
            ),
            (
                vec![(
                    "CANARY_TARGETS",
                    one(
                        json!({"ca_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
                    ),
                )],
                "CANARY_TARGETS[0].ca_bundle",
                "certificate 1",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"headers": {"bad name": "x"}})))],
                "CANARY_TARGETS[0].headers.bad name",
                "header name",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"headers": {"x": 1}})))],
                "CANARY_TARGETS[0].headers.x",
                "got 1",
            ),
            (
                vec![(
                    "CANARY_TARGETS",
                    one(json!({"method": "HEAD", "body_contains": "x"})),
                )],
                "CANARY_TARGETS[0].body_contains",
                "HEAD",
            ),
            (
                vec![("CANARY_TARGETS", one(json!({"colour": "red"})))],
                "CANARY_TARGETS[0].colour",
                "expect_status, headers",
            ),
            (
                vec![(
                    "CANARY_TARGETS",
                    targets(
                        json!([{"name": "a", "url": "http://a/"}, {"name": "a", "url": "http://b/"}]),
                    ),
                )],
                "CANARY_TARGETS[1].name",
                "CANARY_TARGETS[0]",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("PROBES_PER_INVOCATION", "90".into()),
                    ("PROBE_INTERVAL_MS", "10000".into()),
                ],
                "PROBES_PER_INVOCATION",
                "900 s",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("PROBES_PER_INVOCATION", "0".into()),
                ],
                "PROBES_PER_INVOCATION",
                "\"0\"",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("PROBE_INTERVAL_MS", "fast".into()),
                ],
                "PROBE_INTERVAL_MS",
                "fast",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({"timeout_ms": 5000}))),
                    ("PROBES_PER_INVOCATION", "3".into()),
                    ("PROBE_INTERVAL_MS", "2000".into()),
                ],
                "PROBE_INTERVAL_MS",
                "timeout_ms",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("METRICS_NAMESPACE", "AWS/X".into()),
                ],
                "METRICS_NAMESPACE",
                "AWS/X",
            ),
            (
                vec![
                    ("CANARY_TARGETS", one(json!({}))),
                    ("DNS_SERVERS", "dns.google".into()),
                ],
                "DNS_SERVERS",
                "dns.google",
            ),
        ];
        for (vars, location, needle) in cases {
            let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let err = config(&pairs).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn the_new_fields() {
        let t = targets(json!([{
            "name": "orders",
            "url": "https://api.example.com/graphql",
            "method": "post",
            "body": "{\"query\": \"{ health }\"}",
            "connect_to": ["10.0.1.25:443", "10.0.2.25:443", "[fd00::1]:443"],
            "connect_timeout_ms": 400,
            "max_latency_ms": 800,
            "headers": {"x-api-key": {"secret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:api-AbCdEf"}, "authorization": {"ssm": "/tether/token"}, "accept": "application/json"},
        }, {"name": "short", "url": "http://a/", "timeout_ms": 300}]));
        let c = config(&[("CANARY_TARGETS", &t)]).unwrap();
        let e = &c.endpoints[0];
        assert_eq!(e.connect_to.len(), 3);
        assert_eq!(e.connect_to[2], "[fd00::1]:443".parse().unwrap());
        assert_eq!(e.connect_timeout, Duration::from_millis(400));
        assert_eq!(e.max_latency, Some(Duration::from_millis(800)));
        assert_eq!(e.body.as_deref(), Some("{\"query\": \"{ health }\"}"));
        assert_eq!(e.headers.len(), 1);
        assert_eq!(
            e.secret_headers,
            vec![
                (
                    HeaderName::from_static("authorization"),
                    SecretRef::Parameter("/tether/token".into())
                ),
                (
                    HeaderName::from_static("x-api-key"),
                    SecretRef::Secret(
                        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:api-AbCdEf".into()
                    )
                ),
            ]
        );
        // The connect timeout defaults to 1 s, or the whole timeout when shorter.
        assert_eq!(c.endpoints[1].connect_timeout, Duration::from_millis(300));
    }

    #[test]
    fn bad_new_fields_name_the_field_and_value() {
        let cases: Vec<(String, &str, &str)> = vec![
            (
                one(json!({"body": "x"})),
                "CANARY_TARGETS[0].body",
                "method is GET",
            ),
            (
                one(json!({"method": "DELETE", "body": "x"})),
                "CANARY_TARGETS[0].body",
                "POST or PUT",
            ),
            (
                one(json!({"method": "PUT", "body": "x".repeat(70_000)})),
                "CANARY_TARGETS[0].body",
                "70000 bytes",
            ),
            (
                one(json!({"connect_to": ["10.0.0.1:443", "10.0.0.2"]})),
                "CANARY_TARGETS[0].connect_to[1]",
                "\"10.0.0.2\"",
            ),
            (
                one(json!({"connect_to": ["10.0.0.1:443", 7]})),
                "CANARY_TARGETS[0].connect_to[1]",
                "got 7",
            ),
            (
                one(json!({"connect_to": []})),
                "CANARY_TARGETS[0].connect_to",
                "has 0 addresses",
            ),
            (
                one(json!({"connect_to": ["10.0.0.1:443", "10.0.0.1:443"]})),
                "CANARY_TARGETS[0].connect_to[1]",
                "twice",
            ),
            (
                one(
                    json!({"url": "https://a:8443/", "connect_to": ["10.0.0.1:8443", "10.0.0.2:443"]}),
                ),
                "CANARY_TARGETS[0].connect_to",
                "port 443",
            ),
            (
                one(json!({"connect_timeout_ms": 5000})),
                "CANARY_TARGETS[0].connect_timeout_ms",
                "5000 is more than timeout_ms (3000)",
            ),
            (
                one(json!({"connect_timeout_ms": "soon"})),
                "CANARY_TARGETS[0].connect_timeout_ms",
                "soon",
            ),
            (
                one(json!({"max_latency_ms": 4000})),
                "CANARY_TARGETS[0].max_latency_ms",
                "4000",
            ),
            (
                one(json!({"max_latency_ms": 0})),
                "CANARY_TARGETS[0].max_latency_ms",
                "got 0",
            ),
            (
                one(json!({"headers": {"x-key": {"vault": "k"}}})),
                "CANARY_TARGETS[0].headers.x-key.vault",
                "value source",
            ),
            (
                one(json!({"headers": {"x-key": {"secret": ""}}})),
                "CANARY_TARGETS[0].headers.x-key.secret",
                "name or ARN",
            ),
            (
                one(json!({"headers": {"x-key": {"secret": "a", "ssm": "b"}}})),
                "CANARY_TARGETS[0].headers.x-key",
                "{\"secret\"",
            ),
            (
                one(json!({"name": "caf\u{e9}"})),
                "CANARY_TARGETS[0].name",
                "\"caf\u{e9}\" contains the non-ASCII character",
            ),
            (
                one(json!({"name": "a\u{1}b"})),
                "CANARY_TARGETS[0].name",
                "control character U+0001",
            ),
            (
                one(json!({"name": " "})),
                "CANARY_TARGETS[0].name",
                "non-empty",
            ),
            (
                targets(
                    json!([{"name": "orders-api", "url": "http://a/"}, {"name": "orders.api", "url": "http://b/"}]),
                ),
                "CANARY_TARGETS[1].name",
                "\"orders.api\" and CANARY_TARGETS[0].name \"orders-api\" have the same letters and digits (ordersapi)",
            ),
        ];
        for (t, location, needle) in cases {
            let err = config(&[("CANARY_TARGETS", &t)]).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn a_connect_to_port_is_fine_when_the_url_has_none_or_the_same() {
        let t = targets(json!([
            {"name": "a", "url": "https://api.example.com/h", "connect_to": "127.0.0.1:8443"},
            {"name": "b", "url": "https://api.example.com:8443/h", "connect_to": "127.0.0.1:8443"},
        ]));
        assert!(config(&[("CANARY_TARGETS", &t)]).is_ok());
    }

    #[test]
    fn one_probe_may_plan_beyond_the_interval_rule() {
        let t = targets(json!([{"name": "a", "url": "http://a/", "timeout_ms": 60000}]));
        let c = config(&[("CANARY_TARGETS", &t), ("PROBE_INTERVAL_MS", "1000")]).unwrap();
        assert_eq!(c.longest_timeout(), Duration::from_secs(60));
    }
}

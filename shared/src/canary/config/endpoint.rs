//! One element of `CANARY_TARGETS`: what to probe and how, and the limits
//! derived from it.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Method, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use super::headers::{SecretRef, parse_headers};
use super::names::check_name;
use super::status::StatusSet;
use crate::config::{ConfigError, DEFAULT_DNS_TIMEOUT_MS};
use crate::fields::{Fields, one_of, shorten, show};

pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// The TCP handshake with one address, unless the timeout is shorter.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Addresses in one `connect_to` (one per availability zone, and room).
pub const MAX_CONNECT_TO: usize = 16;
/// The largest request `body`.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Name resolution takes at most this part of `timeout_ms` (see [`dns_share`]).
pub const DNS_SHARE_DIVISOR: u32 = 3;
const TIMEOUT_RANGE: RangeInclusive<u64> = 1..=60_000;
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Which certificate authorities an https endpoint trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Trust {
    /// The system's public roots, and `ca_bundle` when given.
    #[default]
    PublicAndBundle,
    /// `ca_bundle` alone: a certificate from a public CA is refused.
    BundleOnly,
}

impl Trust {
    pub const CHOICES: [(&'static str, Trust); 2] = [
        ("public-and-bundle", Trust::PublicAndBundle),
        ("bundle-only", Trust::BundleOnly),
    ];
}

/// One probed endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The metric dimension `Endpoint` (see [`super::names`]).
    pub name: String,
    pub url: Url,
    pub method: Method,
    /// The plain header values.
    pub headers: HeaderMap,
    /// Headers whose values are kept in Secrets Manager or SSM; the values
    /// are read and re-read by [`crate::canary::secrets::Secrets`].
    pub secret_headers: Vec<(HeaderName, SecretRef)>,
    /// Sent with POST and PUT only.
    pub body: Option<String>,
    pub expect_status: StatusSet,
    pub body_contains: Option<String>,
    /// Bounds the whole probe (connect, TLS, answer, and the one retry).
    pub timeout: Duration,
    /// Bounds the TCP handshake with one address; the next is tried after.
    pub connect_timeout: Duration,
    /// Bounds name resolution in each attempt: [`dns_share`] of `timeout`.
    pub dns_timeout: Duration,
    /// An answer slower than this fails with the class `slow`.
    pub max_latency: Option<Duration>,
    /// Connect to these (in turn) instead of resolving the URL's host
    /// (which stays the SNI name and the Host header). Empty: resolve.
    pub connect_to: Vec<SocketAddr>,
    /// PEM text of extra trusted CAs, already checked to parse.
    pub ca_bundle: Option<String>,
    pub trust: Trust,
}

/// The most of a probe's `timeout` that name resolution may take in one
/// attempt: a third, and never more than the resolver's own bound
/// (`DNS_TIMEOUT_MS`). A resolver that does not answer then leaves two
/// thirds of the probe: room for `connect_timeout_ms` (1 s of the default
/// 3 s), the TLS handshake and the answer, or for the retry, whose lookup
/// gets its own share. Without it a silent resolver took the default 2 s of
/// a 3 s probe, and the retry had 1 s for all of it.
pub fn dns_share(timeout: Duration, dns_timeout: Duration) -> Duration {
    (timeout / DNS_SHARE_DIVISOR)
        .min(dns_timeout)
        .max(Duration::from_millis(1))
}

/// Whether a failed attempt with `method` may be sent again. RFC 9110,
/// section 9.2.2: "A request method is considered idempotent if the
/// intended effect on the server of multiple identical requests with that
/// method is the same as the effect for a single such request. Of the
/// request methods defined by this specification, PUT, DELETE, and safe
/// request methods are idempotent", and such a request "can be repeated
/// automatically if a communication failure occurs"
/// (<https://www.rfc-editor.org/rfc/rfc9110#section-9.2.2>). GET, HEAD,
/// OPTIONS, PUT and DELETE are retried; POST and PATCH never are.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

impl Endpoint {
    /// One element of `CANARY_TARGETS`; `location` names it in messages.
    pub fn from_json(location: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new(location, value)?;
        let name = f.required_string("name")?;
        if let Err(problem) = check_name(&name) {
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
        let connect_to = match f.raw("connect_to") {
            None => Vec::new(),
            Some(value) => parse_connect_to(&f.at("connect_to"), value)?,
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
        let trust = match f.string("trust")? {
            None => Trust::default(),
            Some(word) => {
                one_of(&word, &Trust::CHOICES).map_err(|e| ConfigError::new(f.at("trust"), e))?
            }
        };
        let (headers, secret_headers) = match f.raw("headers") {
            None => (HeaderMap::new(), Vec::new()),
            Some(value) => parse_headers(&f.at("headers"), value)?,
        };
        let expect_status = match f.raw("expect_status") {
            None => StatusSet::default(),
            Some(value) => StatusSet::from_json(value)
                .map_err(|e| ConfigError::new(f.at("expect_status"), e))?,
        };
        f.finish()?;
        let https = url.scheme() == "https";
        if ca_bundle.is_some() && !https {
            return Err(ConfigError::new(
                format!("{location}.ca_bundle"),
                "is set but the URL is not https",
            ));
        }
        if trust == Trust::BundleOnly && (!https || ca_bundle.is_none()) {
            return Err(ConfigError::new(
                format!("{location}.trust"),
                match https {
                    true => {
                        "is \"bundle-only\" but no ca_bundle is given: nothing would be trusted"
                    }
                    false => "is \"bundle-only\" but the URL is not https",
                },
            ));
        }
        let timeout = Duration::from_millis(timeout_ms);
        Ok(Endpoint {
            name,
            url,
            method,
            headers,
            secret_headers,
            body,
            expect_status,
            body_contains,
            timeout,
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            dns_timeout: dns_share(timeout, Duration::from_millis(DEFAULT_DNS_TIMEOUT_MS)),
            max_latency: max_latency_ms.map(Duration::from_millis),
            connect_to,
            ca_bundle,
            trust,
        })
    }

    /// The URL as logs and messages show it: without its query (which may
    /// carry a token) or fragment; `?…` marks a query left out.
    pub fn shown_url(&self) -> String {
        let mut url = self.url.clone();
        let had_query = url.query().is_some();
        url.set_query(None);
        url.set_fragment(None);
        match had_query {
            true => format!("{url}?…"),
            false => url.to_string(),
        }
    }
}

/// `text` for a message: up to its query or fragment.
fn without_query(text: &str) -> String {
    match text.find(['?', '#']) {
        Some(at) => format!("{}?…", shorten(&text[..at])),
        None => shorten(text),
    }
}

fn parse_url(location: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| {
        ConfigError::new(
            location,
            format!("\"{}\" is not a URL ({e})", without_query(text)),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            location,
            format!(
                "\"{}\" is not an http or https URL (scheme \"{}\")",
                without_query(text),
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(
            location,
            format!("\"{}\" has no host", without_query(text)),
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
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Endpoint `api` with `extra` fields.
    fn endpoint(extra: Value) -> Result<Endpoint, ConfigError> {
        let mut item = json!({"name": "api", "url": "https://api.example.com/"});
        if let (Value::Object(m), Value::Object(e)) = (&mut item, extra) {
            m.extend(e);
        }
        Endpoint::from_json("T[0]", &item)
    }

    #[test]
    fn defaults() {
        let e = endpoint(json!({})).unwrap();
        assert_eq!(e.method, Method::GET);
        assert_eq!(e.timeout, Duration::from_millis(3000));
        assert_eq!(e.connect_timeout, Duration::from_millis(1000));
        assert_eq!(e.dns_timeout, Duration::from_millis(1000));
        assert_eq!(e.expect_status.to_string(), "200-299");
        assert!(e.headers.is_empty() && e.connect_to.is_empty() && e.ca_bundle.is_none());
        assert_eq!((e.max_latency, e.body.as_deref()), (None, None));
        assert_eq!(e.trust, Trust::PublicAndBundle);
        assert_eq!(e.url.scheme(), "https");
    }

    #[test]
    fn every_field() {
        let e = endpoint(json!({
            "name": "orders",
            "url": "https://api.example.com/graphql",
            "method": "post",
            "body": "{\"query\": \"{ health }\"}",
            "connect_to": ["10.0.1.25:443", "10.0.2.25:443", "[fd00::1]:443"],
            "connect_timeout_ms": 400,
            "max_latency_ms": 800,
            "timeout_ms": "1500",
            "expect_status": [200, "301-302"],
            "body_contains": "ok",
            "headers": {"x-api-key": {"secret": "api-key"}, "accept": "application/json"},
        }))
        .unwrap();
        assert_eq!(e.method, Method::POST);
        assert_eq!(e.connect_to.len(), 3);
        assert_eq!(e.connect_to[2], "[fd00::1]:443".parse().unwrap());
        assert_eq!(e.connect_timeout, Duration::from_millis(400));
        assert_eq!(e.timeout, Duration::from_millis(1500));
        assert_eq!(e.dns_timeout, Duration::from_millis(500));
        assert_eq!(e.max_latency, Some(Duration::from_millis(800)));
        assert_eq!(e.body.as_deref(), Some("{\"query\": \"{ health }\"}"));
        assert_eq!(e.expect_status.to_string(), "200,301-302");
        assert_eq!(e.headers["accept"], "application/json");
        assert_eq!(e.secret_headers.len(), 1);
        let short = endpoint(json!({"timeout_ms": 300})).unwrap();
        // The connect timeout defaults to 1 s, or the whole timeout when shorter.
        assert_eq!(short.connect_timeout, Duration::from_millis(300));
    }

    #[test]
    fn trust_modes() {
        let pem = include_str!("../testdata/ca.pem");
        let only = endpoint(json!({"trust": "bundle-only", "ca_bundle": pem})).unwrap();
        assert_eq!(only.trust, Trust::BundleOnly);
        let both = endpoint(json!({"trust": "public-and-bundle", "ca_bundle": pem})).unwrap();
        assert_eq!(both.trust, Trust::PublicAndBundle);
        let cases = [
            (
                json!({"trust": "bundle-only"}),
                "T[0].trust",
                "no ca_bundle",
            ),
            (
                json!({"trust": "bundle-only", "url": "http://a/"}),
                "T[0].trust",
                "not https",
            ),
            (
                json!({"trust": "bundle"}),
                "T[0].trust",
                "\"public-and-bundle\" or \"bundle-only\", got \"bundle\"",
            ),
        ];
        for (extra, location, needle) in cases {
            let err = endpoint(extra).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.problem.contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn bad_fields_name_the_field_and_the_value() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"name": null}), "T[0].name", "required"),
            (json!({"url": "ftp://a/"}), "T[0].url", "ftp://a/"),
            (json!({"url": "not a url"}), "T[0].url", "not a url"),
            (json!({"url": "https://u:p@a/"}), "T[0].url", "credentials"),
            (json!({"method": "FETCH"}), "T[0].method", "FETCH"),
            (json!({"expect_status": "2xx"}), "T[0].expect_status", "2xx"),
            (json!({"timeout_ms": 0}), "T[0].timeout_ms", "got 0"),
            (
                json!({"connect_to": "10.0.0.1"}),
                "T[0].connect_to",
                "10.0.0.1",
            ),
            (
                json!({"url": "https://a:8443/", "connect_to": "10.0.0.1:443"}),
                "T[0].connect_to",
                "8443",
            ),
            (
                json!({"url": "https://10.0.0.9/", "connect_to": "10.0.0.1:443"}),
                "T[0].connect_to",
                "10.0.0.9",
            ),
            (
                json!({"url": "http://a/", "ca_bundle": "x"}),
                "T[0].ca_bundle",
                "no PEM certificate",
            ),
            (
                json!({"ca_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
                "T[0].ca_bundle",
                "certificate 1",
            ),
            (
                json!({"url": "http://a/", "ca_bundle": include_str!("../testdata/ca.pem")}),
                "T[0].ca_bundle",
                "not https",
            ),
            (json!({"headers": {"x": 1}}), "T[0].headers.x", "got 1"),
            (
                json!({"method": "HEAD", "body_contains": "x"}),
                "T[0].body_contains",
                "HEAD",
            ),
            (
                json!({"colour": "red"}),
                "T[0].colour",
                "expect_status, headers",
            ),
            (json!({"body": "x"}), "T[0].body", "method is GET"),
            (
                json!({"method": "DELETE", "body": "x"}),
                "T[0].body",
                "POST or PUT",
            ),
            (
                json!({"method": "PUT", "body": "x".repeat(70_000)}),
                "T[0].body",
                "70000 bytes",
            ),
            (
                json!({"connect_to": ["10.0.0.1:443", "10.0.0.2"]}),
                "T[0].connect_to[1]",
                "\"10.0.0.2\"",
            ),
            (
                json!({"connect_to": ["10.0.0.1:443", 7]}),
                "T[0].connect_to[1]",
                "got 7",
            ),
            (
                json!({"connect_to": []}),
                "T[0].connect_to",
                "has 0 addresses",
            ),
            (
                json!({"connect_to": ["10.0.0.1:443", "10.0.0.1:443"]}),
                "T[0].connect_to[1]",
                "twice",
            ),
            (
                json!({"url": "https://a:8443/", "connect_to": ["10.0.0.1:8443", "10.0.0.2:443"]}),
                "T[0].connect_to",
                "port 443",
            ),
            (
                json!({"connect_timeout_ms": 5000}),
                "T[0].connect_timeout_ms",
                "5000 is more than timeout_ms (3000)",
            ),
            (
                json!({"connect_timeout_ms": "soon"}),
                "T[0].connect_timeout_ms",
                "soon",
            ),
            (
                json!({"max_latency_ms": 4000}),
                "T[0].max_latency_ms",
                "4000",
            ),
            (json!({"max_latency_ms": 0}), "T[0].max_latency_ms", "got 0"),
            (
                json!({"name": "caf\u{e9}"}),
                "T[0].name",
                "\"caf\u{e9}\" contains the non-ASCII character",
            ),
            (
                json!({"name": "a\u{1}b"}),
                "T[0].name",
                "control character U+0001",
            ),
            (json!({"name": " "}), "T[0].name", "non-empty"),
        ];
        for (extra, location, needle) in cases {
            let err = endpoint(extra).unwrap_err();
            assert_eq!(err.location, location, "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn a_connect_to_port_is_fine_when_the_url_has_none_or_the_same() {
        for url in [
            "https://api.example.com/h",
            "https://api.example.com:8443/h",
        ] {
            assert!(endpoint(json!({"url": url, "connect_to": "127.0.0.1:8443"})).is_ok());
        }
    }

    #[test]
    fn queries_are_never_shown() {
        let e = endpoint(json!({"url": "https://api.example.com:8443/health?token=s3cr3t#top"}))
            .unwrap();
        assert_eq!(e.shown_url(), "https://api.example.com:8443/health?…");
        assert_eq!(e.url.query(), Some("token=s3cr3t"), "the request keeps it");
        let plain = endpoint(json!({"url": "https://api.example.com/health"})).unwrap();
        assert_eq!(plain.shown_url(), "https://api.example.com/health");
        for url in [
            "ftp://a/x?token=s3cr3t",
            "https://u:p@a/?token=s3cr3t",
            "http:// a/?token=s3cr3t",
        ] {
            let err = endpoint(json!({"url": url})).unwrap_err();
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn idempotent_methods_per_rfc_9110() {
        let retried: Vec<&str> = METHODS
            .iter()
            .copied()
            .filter(|m| is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()))
            .collect();
        assert_eq!(retried, ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);
    }

    proptest! {
        /// Name resolution never takes more than a third of the probe or
        /// more than DNS_TIMEOUT_MS, and always leaves the connect timeout
        /// its room when that is at most a third of the probe (the default,
        /// 1 s of 3 s).
        #[test]
        fn the_dns_share_leaves_the_connect_room(timeout_ms in 3u64..=60_000, dns_ms in 50u64..=30_000, connect_ms in 1u64..=60_000) {
            let timeout = Duration::from_millis(timeout_ms);
            let share = dns_share(timeout, Duration::from_millis(dns_ms));
            prop_assert!(share <= timeout / 3);
            prop_assert!(share <= Duration::from_millis(dns_ms));
            prop_assert!(share > Duration::ZERO);
            let connect = Duration::from_millis(connect_ms);
            if connect <= timeout / 3 {
                prop_assert!(share + connect <= timeout * 2 / 3 + Duration::from_millis(1));
            }
        }
    }
}

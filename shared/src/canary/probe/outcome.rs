//! What a probe found: its failure classes, the failure, the result.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

/// Why a probe failed; the names are what logs and reports show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The name did not resolve (NXDOMAIN, SERVFAIL, no address, DNS timeout).
    Dns,
    /// No address accepted a connection, or it was reset or closed before an answer.
    Connect,
    /// No complete answer within the endpoint's timeout.
    Timeout,
    /// The server certificate is not signed by a trusted CA.
    TlsUnknownCa,
    /// The server certificate has expired (or is not valid yet).
    TlsExpired,
    /// The server certificate is not valid for the URL's host.
    TlsWrongName,
    /// Any other TLS failure (handshake, alert, protocol version, ...).
    Tls,
    /// The answer is not HTTP.
    Http,
    /// A status outside `expect_status`.
    Status,
    /// `body_contains` is not in the body (its first 64 KiB).
    Body,
    /// A good answer, slower than `max_latency_ms`.
    Slow,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Dns => "dns",
            FailureClass::Connect => "connect",
            FailureClass::Timeout => "timeout",
            FailureClass::TlsUnknownCa => "tls_unknown_ca",
            FailureClass::TlsExpired => "tls_expired",
            FailureClass::TlsWrongName => "tls_wrong_name",
            FailureClass::Tls => "tls",
            FailureClass::Http => "http",
            FailureClass::Status => "status",
            FailureClass::Body => "body",
            FailureClass::Slow => "slow",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: its class, what happened, and the start of the body
/// when one came and may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            snippet: None,
        }
    }

    /// Whether this failure, of an attempt answered with `status`, is a
    /// denial: 401 Unauthorized or 403 Forbidden outside `expect_status`,
    /// the answer to credentials the server refuses.
    pub fn is_denial(&self, status: Option<u16>) -> bool {
        self.class == FailureClass::Status && matches!(status, Some(401 | 403))
    }
}

/// What one probe of one endpoint found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub outcome: Result<(), Failure>,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Of the answering attempt when it succeeded; else from the start of
    /// the probe to its failure.
    pub latency: Duration,
    /// Days until the certificate chain expires (https, once the server's
    /// certificates came): the earliest `notAfter` of the chain that
    /// verified, from the leaf to the trust anchor. See
    /// [`super::tls`] for what a chain that did not verify reports.
    pub cert_expiry_days: Option<f64>,
    /// 1, or 2 when the first attempt failed and was retried.
    pub attempts: u8,
    /// The first attempt's failure, when there was a retry.
    pub first_failure: Option<Failure>,
    /// Addresses that did not accept a connection in the last attempt
    /// before one did (or all of them, on a connect failure).
    pub unreachable: Vec<String>,
    /// The address the last attempt's connection was made to: the one that
    /// answered, when an answer came.
    pub address: Option<SocketAddr>,
    /// `h2` or `http/1.1`, when a connection was made.
    pub protocol: Option<&'static str>,
}

impl ProbeResult {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// Healthy, but an address of the endpoint did not accept a connection.
    pub fn is_degraded(&self) -> bool {
        self.is_ok() && !self.unreachable.is_empty()
    }

    /// `ok` or the failure class.
    pub fn outcome_name(&self) -> &'static str {
        match &self.outcome {
            Ok(()) => "ok",
            Err(f) => f.class.as_str(),
        }
    }
}

/// Days from `now` to `not_after` (epoch seconds), to the hundredth.
pub fn days_between(now: i64, not_after: i64) -> f64 {
    ((not_after - now) as f64 / 86_400.0 * 100.0).floor() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_days_are_floored_to_hundredths() {
        assert_eq!(days_between(0, 86_400 * 30), 30.0);
        assert_eq!(days_between(0, 86_400 * 30 + 43_200), 30.5);
        assert_eq!(days_between(86_400 * 2, 0), -2.0);
        assert_eq!(days_between(0, 86_399), 0.99);
    }

    #[test]
    fn class_names_are_stable() {
        assert_eq!(FailureClass::Slow.as_str(), "slow");
        let json = serde_json::to_value(FailureClass::TlsWrongName).unwrap();
        assert_eq!(json, "tls_wrong_name");
        assert_eq!(FailureClass::TlsWrongName.as_str(), "tls_wrong_name");
    }

    #[test]
    fn only_401_and_403_statuses_are_denials() {
        let status = Failure::new(FailureClass::Status, "status");
        assert!(status.is_denial(Some(401)) && status.is_denial(Some(403)));
        assert!(!status.is_denial(Some(404)) && !status.is_denial(Some(500)));
        assert!(!status.is_denial(None));
        assert!(!Failure::new(FailureClass::Body, "no marker").is_denial(Some(401)));
    }
}

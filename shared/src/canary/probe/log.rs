//! The log lines of one probe: the first attempt's failure when there was
//! a retry, the addresses that did not connect when it was degraded, then
//! one line with the outcome and the address that answered. URLs are shown
//! without their query ([`Endpoint::shown_url`]); no header value is ever
//! logged, nor the body of an endpoint that sends secret headers.

use tracing::{info, warn};

use super::outcome::ProbeResult;
use crate::canary::config::Endpoint;

/// Logs what the probe of `e` in round `round` (from 0) found.
pub fn log_probe(round: u32, e: &Endpoint, result: &ProbeResult) {
    let url = e.shown_url();
    let round = round + 1;
    let address = result.address.map(|a| a.to_string());
    if let Some(first) = &result.first_failure {
        warn!(
            endpoint = %e.name,
            url,
            round,
            class = first.class.as_str(),
            error = %first.message,
            body = first.snippet.as_deref(),
            "probe attempt failed, retrying"
        );
    }
    if result.is_degraded() {
        warn!(
            endpoint = %e.name,
            url,
            round,
            address = address.as_deref(),
            unreachable = %result.unreachable.join("; "),
            "probe degraded: an address did not accept a connection"
        );
    }
    let latency_ms = result.latency.as_millis() as u64;
    match &result.outcome {
        Ok(()) => info!(
            endpoint = %e.name,
            url,
            round,
            outcome = "ok",
            status = result.status,
            latency_ms,
            attempts = result.attempts,
            address = address.as_deref(),
            protocol = result.protocol,
            cert_expiry_days = result.cert_expiry_days,
            "probe"
        ),
        Err(failure) => warn!(
            endpoint = %e.name,
            url,
            round,
            outcome = "fail",
            class = failure.class.as_str(),
            status = result.status,
            latency_ms,
            attempts = result.attempts,
            address = address.as_deref(),
            protocol = result.protocol,
            cert_expiry_days = result.cert_expiry_days,
            error = %failure.message,
            body = failure.snippet.as_deref(),
            "probe"
        ),
    }
}

//! Sending the response: one PUT of the body to the pre-signed URL, retried.
//!
//! No `Content-Type` header (the URL is signed without one, as the AWS helper
//! libraries send it), a `Content-Length`, retries with exponential backoff
//! on connection errors, timeouts and 5xx, never past the deadline.

use std::time::Duration;

use reqwest::{Client, Url};
use tokio::time::Instant;
use tracing::warn;

use super::url::redact;

/// Attempts at most, the first included.
pub const ATTEMPTS: u32 = 5;
/// The wait before the second attempt; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Bound on one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Even at the deadline, one attempt gets this long (the alternative is no answer).
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("the response PUT to {url} was refused with HTTP {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the response PUT to {url} failed after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
}

/// Sends responses; holds one HTTP client for the life of the process.
#[derive(Clone)]
pub struct Responder {
    client: Client,
}

impl Responder {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }

    /// PUTs `body` to `url`; returns the number of attempts it took.
    pub async fn put(&self, url: &Url, body: &[u8], deadline: Instant) -> Result<u32, PutError> {
        let shown = redact(url.as_str());
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let request = self
                .client
                .put(url.clone())
                .timeout(remaining.clamp(MIN_ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT))
                .body(body.to_vec())
                .send();
            let problem = match request.await {
                Ok(response) if response.status().is_success() => return Ok(attempt),
                Ok(response) if response.status().is_server_error() => {
                    format!("HTTP {}", response.status().as_u16())
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    return Err(PutError::Refused {
                        url: shown,
                        status,
                        body: crate::fields::shorten(&text),
                    });
                }
                // reqwest's Display includes the URL: strip the query.
                Err(e) => e.without_url().to_string(),
            };
            let retry_at = Instant::now() + backoff;
            if attempt >= ATTEMPTS || retry_at >= deadline {
                return Err(PutError::GaveUp {
                    url: shown,
                    attempts: attempt,
                    last: problem,
                });
            }
            warn!(url = %shown, attempt, error = %problem, retry_in_ms = backoff.as_millis() as u64, "response PUT failed, retrying");
            tokio::time::sleep_until(retry_at).await;
            backoff *= 2;
        }
    }
}

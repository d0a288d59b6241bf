//! One event in, exactly one response out.
//!
//! [`Dispatcher::answer`] parses the event, checks the response URL, runs the
//! [`Handler`] under a timeout that ends [`WORK_MARGIN`] before the Lambda
//! deadline and with panics caught, turns whatever happened into a response
//! and PUTs it. The handler never sees the URL and cannot skip the answer.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use futures_util::FutureExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, error, info, info_span};

use super::event::{EventError, Request, RequestType};
use super::put::{PutError, Responder};
use super::response::{Response, Status, body};
use super::url::{UrlRefused, check_response_url, redact};
use crate::deadline::lambda_deadline;
use crate::fields::FieldError;

/// The physical id answered for a failed Create, followed by the request id.
/// The Delete CloudFormation then sends with it succeeds without doing anything.
pub const FAILED_CREATE_PREFIX: &str = "tether-failed-create-";
/// Time kept back from the Lambda deadline for the response.
pub const WORK_MARGIN: Duration = Duration::from_secs(5);
/// The response PUT gives up this long before the deadline.
const PUT_MARGIN: Duration = Duration::from_millis(500);

/// What a handler did on success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub physical_id: String,
    /// Attributes for `Fn::GetAtt`.
    pub data: BTreeMap<String, String>,
    /// Shown as the SUCCESS reason (e.g. what a Delete found).
    pub note: Option<String>,
}

/// Why a handler failed: the FAILED response's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

impl From<FieldError> for Failure {
    fn from(e: FieldError) -> Self {
        Failure(e.to_string())
    }
}

/// Applies one request of one resource type.
pub trait Handler: Send + Sync {
    /// `deadline` is when the answer must be ready; work past it is cut off.
    /// (The future need not be `Send`: the runtime polls one event at a
    /// time on its own task, and the sync engine's future is not `Send`.)
    fn apply(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> impl Future<Output = Result<Applied, Failure>>;
}

/// An invocation that could not be answered, or whose answer did not arrive.
#[derive(thiserror::Error)]
pub enum CfnError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("refused to send the response to {url}: {reason}")]
    RefusedUrl { url: String, reason: UrlRefused },
    #[error(transparent)]
    Put(#[from] PutError),
}

/// The runtime logs the error with `Debug`: make that the message.
impl std::fmt::Debug for CfnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<CfnError> for Diagnostic {
    fn from(e: CfnError) -> Self {
        let error_type = match &e {
            CfnError::Event(_) => "InvalidCustomResourceEvent",
            CfnError::RefusedUrl { .. } => "ResponseUrlRefused",
            CfnError::Put(_) => "ResponseNotDelivered",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The invocation's result: what was sent to CloudFormation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answered {
    pub status: Status,
    pub physical_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub data_dropped: bool,
    pub reason_truncated: bool,
}

pub struct Dispatcher<H> {
    handler: H,
    responder: Responder,
    allow_insecure: bool,
}

/// Of a resource's ServiceTimeout, what is kept back for the time the event
/// spent before the handler saw it.
pub const SERVICE_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// `ServiceTimeout` (seconds, 1 to 3600) from the resource's properties.
pub fn service_timeout(properties: &Value) -> Option<Duration> {
    let value = properties.get("ServiceTimeout")?;
    let seconds = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    (1..=3600)
        .contains(&seconds)
        .then(|| Duration::from_secs(seconds))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl<H: Handler> Dispatcher<H> {
    /// `allow_insecure`: `ALLOW_INSECURE_RESPONSE_URL` (http to loopback).
    pub fn new(handler: H, responder: Responder, allow_insecure: bool) -> Self {
        Self {
            handler,
            responder,
            allow_insecure,
        }
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Answered, CfnError> {
        self.answer(
            &event.payload,
            tokio::time::Instant::from_std(lambda_deadline(event.context.deadline, Duration::ZERO)),
        )
        .await
    }

    /// Answers one event; `deadline` is the Lambda deadline.
    pub async fn answer(&self, payload: &Value, deadline: Instant) -> Result<Answered, CfnError> {
        let request = Request::parse(payload)
            .inspect_err(|e| error!(error = %e, "event cannot be answered"))?;
        // CloudFormation stops waiting after the resource's ServiceTimeout,
        // counted from when it sent the event: answer before that too. The
        // event may have waited (in the queue, for a cold start) before it
        // got here, so part of the limit is kept back.
        let deadline = match service_timeout(&request.properties) {
            Some(limit) => {
                deadline.min(Instant::now() + limit.saturating_sub(SERVICE_TIMEOUT_MARGIN))
            }
            None => deadline,
        };
        let span = info_span!(
            "custom_resource",
            request_type = %request.request_type,
            resource_type = %request.resource_type,
            logical_id = %request.logical_id,
            physical_id = request.physical_id.as_deref().unwrap_or(""),
            request_id = %request.request_id,
        );
        self.answer_request(request, deadline)
            .instrument(span)
            .await
    }

    async fn answer_request(
        &self,
        request: Request,
        deadline: Instant,
    ) -> Result<Answered, CfnError> {
        let url = match check_response_url(&request.response_url, self.allow_insecure) {
            Ok(url) => url,
            Err(reason) => {
                let url = redact(&request.response_url);
                error!(response_url = %url, %reason, "response URL refused: no response sent");
                return Err(CfnError::RefusedUrl { url, reason });
            }
        };

        let response = self.run(&request, deadline).await;
        let body = body(&request, &response);
        let put_deadline = deadline.checked_sub(PUT_MARGIN).unwrap_or(deadline);
        let attempts = self
            .responder
            .put(&url, &body.bytes, put_deadline)
            .await
            .inspect_err(|e| error!(error = %e, status = %body.status, "response not delivered"))?;
        let answered = Answered {
            status: body.status,
            physical_id: response.physical_id,
            reason: body.reason,
            attempts,
            data_dropped: body.data_dropped,
            reason_truncated: body.reason_truncated,
        };
        match answered.status {
            Status::Success => info!(
                outcome = %answered.status, new_physical_id = %answered.physical_id,
                reason = answered.reason.as_deref().unwrap_or(""), attempts,
                response_url = %redact(url.as_str()), "answered"
            ),
            Status::Failed => error!(
                outcome = %answered.status, new_physical_id = %answered.physical_id,
                reason = answered.reason.as_deref().unwrap_or(""), attempts,
                data_dropped = answered.data_dropped,
                response_url = %redact(url.as_str()), "answered"
            ),
        }
        Ok(answered)
    }

    /// Runs the handler and turns any outcome into a response.
    async fn run(&self, request: &Request, deadline: Instant) -> Response {
        let existing = request.physical_id.clone();
        if request.request_type == RequestType::Delete
            && existing
                .as_deref()
                .is_some_and(|id| id.starts_with(FAILED_CREATE_PREFIX))
        {
            return Response {
                status: Status::Success,
                reason: Some("nothing to delete: the Create of this resource failed".into()),
                physical_id: existing.unwrap_or_default(),
                data: BTreeMap::new(),
            };
        }

        let work_deadline = deadline
            .checked_sub(WORK_MARGIN)
            .unwrap_or_else(Instant::now)
            .max(Instant::now());
        // Boxed: the handlers' futures nest deeply (the sync engine's does),
        // and naming their whole type here would exceed the compiler's limits.
        let work: Pin<Box<dyn Future<Output = Result<Applied, Failure>> + '_>> =
            Box::pin(self.handler.apply(request, work_deadline));
        let work = AssertUnwindSafe(work).catch_unwind();
        let outcome = match timeout_at(work_deadline, work).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => Err(Failure(format!(
                "internal error: the {} handler panicked ({}); nothing more is known about what it changed",
                request.resource_type,
                panic_message(panic.as_ref())
            ))),
            Err(_) => Err(Failure(format!(
                "did not finish before its deadline, the Lambda timeout or the resource's ServiceTimeout (answering {} s before it, so the stack does not wait); raise them or retry",
                WORK_MARGIN.as_secs()
            ))),
        };

        let failed_id = || match request.request_type {
            RequestType::Create => format!("{FAILED_CREATE_PREFIX}{}", request.request_id),
            RequestType::Update | RequestType::Delete => existing.clone().unwrap_or_default(),
        };
        match outcome {
            Ok(applied) => Response {
                status: Status::Success,
                reason: applied.note,
                // A Delete keeps the id it was sent, whatever the handler says.
                physical_id: match request.request_type {
                    RequestType::Delete => existing.clone().unwrap_or(applied.physical_id),
                    _ => applied.physical_id,
                },
                data: applied.data,
            },
            Err(Failure(reason)) => Response {
                status: Status::Failed,
                reason: Some(reason),
                physical_id: failed_id(),
                data: BTreeMap::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_service_timeout_bounds_the_answer() {
        let secs = |v: Value| service_timeout(&v);
        assert_eq!(
            secs(json!({"ServiceTimeout": "240"})),
            Some(Duration::from_secs(240))
        );
        assert_eq!(
            secs(json!({"ServiceTimeout": 60})),
            Some(Duration::from_secs(60))
        );
        assert_eq!(secs(json!({"ServiceTimeout": "0"})), None);
        assert_eq!(secs(json!({"ServiceTimeout": "soon"})), None);
        assert_eq!(secs(json!({})), None);
    }
}

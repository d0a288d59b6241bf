//! A proxy in front of the emulator that enforces the API rate limits moto
//! does not, and counts what a run costs:
//! - ELB's Describe calls share a bucket of 40 tokens per account and
//!   region, refilled at 10 per second (documented: ELB user guide, Request
//!   throttling for the ELB API); beyond it: `400 Throttling`, as ELB
//!   answers. Simulated other users of the account can take their share of
//!   the same bucket ([`ThrottlingProxy::other_users`]).
//! - EC2's `DescribeNetworkInterfaces` and `DescribeVpcEndpoints` each have
//!   a bucket of 100 refilled at 20 per second (documented: EC2 developer
//!   guide, Request throttling for the Amazon EC2 API, non-mutating
//!   actions); beyond it: `503 RequestLimitExceeded`.
//! - The Resource Groups Tagging API's `GetResources`: a bucket of 10
//!   refilled at 5 per second (assumed: no figure was found in its
//!   documentation); beyond it: `400 ThrottledException`.
//!
//! Every other request (S3, CloudWatch, ELB writes, STS) passes through. S3
//! reads and writes are counted; CloudWatch `PutMetricData` calls and the
//! values they carry are counted (the SDK gzips a body over 10 KiB: it is
//! read uncompressed for counting, and forwarded as it came).
//!
//! Faults: [`ThrottlingProxy::lose_put_answers`] lets S3 `PutObject` calls
//! land and then loses their answers (a 500, or no answer until the
//! client's attempt times out), so that the SDK retries a write that was
//! made, as it would after a network fault.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::moto::BoxError;

/// ELB's documented bucket for Describe calls (per account and region).
pub const BUCKET_SIZE: f64 = 40.0;
pub const REFILL_PER_SECOND: f64 = 10.0;
/// EC2's documented bucket of one non-mutating action.
pub const EC2_BUCKET: (f64, f64) = (100.0, 20.0);
/// The tagging API's assumed bucket for GetResources.
pub const TAGGING_BUCKET: (f64, f64) = (10.0, 5.0);

const THROTTLED: &str = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>throttled-by-test-proxy</RequestId></ErrorResponse>"#;
const EC2_THROTTLED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttled-by-test-proxy</RequestID></Response>"#;
const TAGGING_THROTTLED: &str = r#"{"__type":"ThrottledException","Message":"Rate exceeded"}"#;

/// What the proxy saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// ELB Describe calls let through.
    pub describes: usize,
    /// ELB Describe calls answered `Throttling`.
    pub throttled: usize,
    /// ELB Describe calls by the simulated other users, and those refused.
    pub others: usize,
    pub others_throttled: usize,
    /// EC2 Describe calls let through, and throttled.
    pub ec2: usize,
    pub ec2_throttled: usize,
    /// Tagging API GetResources calls let through, and throttled.
    pub tagging: usize,
    pub tagging_throttled: usize,
    /// S3 object reads and writes.
    pub s3_gets: usize,
    pub s3_puts: usize,
    /// CloudWatch `PutMetricData` calls.
    pub metric_calls: usize,
    /// Values those calls carried (one per metric datum and value).
    pub metric_values: usize,
}

/// A token bucket.
struct Bucket {
    size: f64,
    refill: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(size: f64, refill: f64) -> Self {
        Bucket {
            size,
            refill,
            tokens: size,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.refill;
        self.tokens = (self.tokens + refill).min(self.size);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The buckets and the counts.
struct Limits {
    elb: Bucket,
    ec2: std::collections::HashMap<String, Bucket>,
    tagging: Bucket,
    counts: Counts,
}

impl Limits {
    fn new(elb: (f64, f64)) -> Self {
        Limits {
            elb: Bucket::full(elb.0, elb.1),
            ec2: std::collections::HashMap::new(),
            tagging: Bucket::full(TAGGING_BUCKET.0, TAGGING_BUCKET.1),
            counts: Counts::default(),
        }
    }
}

/// How a lost answer is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The write lands; the client gets `500 InternalError`.
    ServerError,
    /// The write lands; the client gets no answer (its attempt times out).
    NoAnswer,
}

struct Faults {
    lost_puts: AtomicUsize,
    how: Mutex<Lost>,
}

pub struct ThrottlingProxy {
    addr: SocketAddr,
    limits: Arc<Mutex<Limits>>,
    faults: Arc<Faults>,
    elb: (f64, f64),
    task: JoinHandle<()>,
    others: Mutex<Option<JoinHandle<()>>>,
}

impl ThrottlingProxy {
    /// The documented (and assumed) buckets in front of `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Result<ThrottlingProxy, BoxError> {
        Self::start_with(upstream, BUCKET_SIZE, REFILL_PER_SECOND).await
    }

    /// An ELB bucket of `size` tokens refilled at `refill` per second: a
    /// test makes it small, so that throttling happens however fast the
    /// emulator is.
    pub async fn start_with(
        upstream: &str,
        size: f64,
        refill: f64,
    ) -> Result<ThrottlingProxy, BoxError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let limits = Arc::new(Mutex::new(Limits::new((size, refill))));
        let faults = Arc::new(Faults {
            lost_puts: AtomicUsize::new(0),
            how: Mutex::new(Lost::ServerError),
        });
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let task = tokio::spawn({
            let (limits, faults) = (Arc::clone(&limits), Arc::clone(&faults));
            async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                while let Ok((stream, _)) = listener.accept().await {
                    let (limits, faults, upstream, client) = (
                        Arc::clone(&limits),
                        Arc::clone(&faults),
                        Arc::clone(&upstream),
                        client.clone(),
                    );
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            relay(
                                request,
                                Arc::clone(&limits),
                                Arc::clone(&faults),
                                Arc::clone(&upstream),
                                client.clone(),
                            )
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Ok(ThrottlingProxy {
            addr,
            limits,
            faults,
            elb: (size, refill),
            task,
            others: Mutex::new(None),
        })
    }

    /// The endpoint to give the SDK (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts counting afresh with full buckets.
    pub fn reset(&self) {
        *self.lock() = Limits::new(self.elb);
    }

    /// The account's other ELB users: `per_second` Describe calls, taken
    /// from the same bucket, until the proxy is dropped. Their calls that
    /// find it empty are counted (`others_throttled`).
    pub fn other_users(&self, per_second: f64) {
        let limits = Arc::clone(&self.limits);
        let every = Duration::from_secs_f64(1.0 / per_second);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let mut l = limits.lock().unwrap_or_else(PoisonError::into_inner);
                if l.elb.take() {
                    l.counts.others += 1;
                } else {
                    l.counts.others_throttled += 1;
                }
            }
        });
        if let Some(old) = self
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// The next `n` S3 PutObject calls land, and their answers are lost.
    pub fn lose_put_answers(&self, n: usize, how: Lost) {
        *self
            .faults
            .how
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = how;
        self.faults.lost_puts.store(n, Ordering::SeqCst);
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(others) = self
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            others.abort();
        }
    }
}

/// The values a CloudWatch `PutMetricData` call (awsQuery: signed for
/// `monitoring`, `Action=PutMetricData`) carries; `None` for any other call.
fn metric_values(authorization: Option<&str>, body: &[u8]) -> Option<usize> {
    let monitoring = authorization.is_some_and(|a| a.contains("/monitoring/aws4_request"));
    let mut pairs = body.split(|b| *b == b'&');
    if !monitoring || !pairs.clone().any(|pair| pair == b"Action=PutMetricData") {
        return None;
    }
    // `MetricData.member.<n>.Value` or `MetricData.member.<n>.Values.member.<m>`;
    // not `….Dimensions.member.<k>.Value`.
    let is_value = |pair: &[u8]| {
        let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let parts: Vec<&[u8]> = key.split(|b| *b == b'.').collect();
        matches!(
            parts.as_slice(),
            [b"MetricData", b"member", _, b"Value"]
                | [b"MetricData", b"member", _, b"Values", b"member", _]
        )
    };
    Some(pairs.by_ref().filter(|pair| is_value(pair)).count())
}

/// The body of a gzip-encoded request; `None` when it is not gzip.
fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut plain)
        .ok()?;
    Some(plain)
}

/// The service a request is signed for (the credential scope of its
/// `Authorization` header).
fn service(authorization: Option<&str>) -> Option<&str> {
    let scope = authorization?.split("Credential=").nth(1)?;
    scope.split('/').nth(3)
}

/// An ELB Describe call: signed for `elasticloadbalancing`, `Action=Describe…`.
fn is_elb_describe(authorization: Option<&str>, body: &[u8]) -> bool {
    service(authorization) == Some("elasticloadbalancing")
        && body
            .split(|b| *b == b'&')
            .any(|pair| pair.starts_with(b"Action=Describe"))
}

/// The EC2 Describe action a request makes, if any.
fn ec2_describe(authorization: Option<&str>, body: &[u8]) -> Option<String> {
    if service(authorization) != Some("ec2") {
        return None;
    }
    body.split(|b| *b == b'&').find_map(|pair| {
        let action = pair.strip_prefix(b"Action=")?;
        action
            .starts_with(b"Describe")
            .then(|| String::from_utf8_lossy(action).into_owned())
    })
}

/// What the limits say of one request.
enum Verdict {
    Pass,
    Refuse(StatusCode, &'static str, &'static str),
}

fn judge(limits: &Mutex<Limits>, parts: &hyper::http::request::Parts, body: &[u8]) -> Verdict {
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let gzipped = parts
        .headers
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let plain = if gzipped { gunzip(body) } else { None };
    let mut l = limits.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(values) = metric_values(authorization, plain.as_deref().unwrap_or(body)) {
        l.counts.metric_calls += 1;
        l.counts.metric_values += values;
    }
    if service(authorization) == Some("s3") {
        match parts.method {
            Method::GET => l.counts.s3_gets += 1,
            Method::PUT => l.counts.s3_puts += 1,
            _ => {}
        }
    }
    if is_elb_describe(authorization, body) {
        return if l.elb.take() {
            l.counts.describes += 1;
            Verdict::Pass
        } else {
            l.counts.throttled += 1;
            Verdict::Refuse(StatusCode::BAD_REQUEST, THROTTLED, "text/xml")
        };
    }
    if let Some(action) = ec2_describe(authorization, body) {
        let bucket = l
            .ec2
            .entry(action)
            .or_insert_with(|| Bucket::full(EC2_BUCKET.0, EC2_BUCKET.1));
        let granted = bucket.take();
        return if granted {
            l.counts.ec2 += 1;
            Verdict::Pass
        } else {
            l.counts.ec2_throttled += 1;
            Verdict::Refuse(StatusCode::SERVICE_UNAVAILABLE, EC2_THROTTLED, "text/xml")
        };
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    if target.is_some_and(|t| t.ends_with(".GetResources")) {
        return if l.tagging.take() {
            l.counts.tagging += 1;
            Verdict::Pass
        } else {
            l.counts.tagging_throttled += 1;
            Verdict::Refuse(
                StatusCode::BAD_REQUEST,
                TAGGING_THROTTLED,
                "application/x-amz-json-1.1",
            )
        };
    }
    Verdict::Pass
}

async fn relay(
    request: Request<Incoming>,
    limits: Arc<Mutex<Limits>>,
    faults: Arc<Faults>,
    upstream: Arc<str>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Verdict::Refuse(status, text, content_type) = judge(&limits, &parts, &body) {
        return Ok(answer(status, text, content_type));
    }
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let lose = parts.method == Method::PUT
        && service(authorization) == Some("s3")
        && faults
            .lost_puts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let target = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut forward = Request::builder().method(parts.method.clone()).uri(&target);
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let Ok(forward) = forward.body(Full::new(body)) else {
        return Ok(answer(StatusCode::BAD_GATEWAY, "bad request", "text/plain"));
    };
    let Ok(Ok(upstream_answer)) =
        tokio::time::timeout(Duration::from_secs(60), client.request(forward)).await
    else {
        return Ok(answer(
            StatusCode::BAD_GATEWAY,
            "upstream failed",
            "text/plain",
        ));
    };
    let (parts, body) = upstream_answer.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if lose {
        // The write is made; its answer is lost.
        let how = *faults.how.lock().unwrap_or_else(PoisonError::into_inner);
        if how == Lost::NoAnswer {
            std::future::pending::<()>().await;
        }
        return Ok(answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>",
            "application/xml",
        ));
    }
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

fn answer(status: StatusCode, text: &str, content_type: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_elb_describe_calls_are_counted() {
        let elb =
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/elasticloadbalancing/aws4_request";
        let s3 = "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/s3/aws4_request";
        assert!(is_elb_describe(
            Some(elb),
            b"Action=DescribeTargetHealth&Version=2015-12-01"
        ));
        assert!(!is_elb_describe(
            Some(elb),
            b"Action=RegisterTargets&Version=2015-12-01"
        ));
        assert!(!is_elb_describe(Some(s3), b"Action=DescribeTargetHealth"));
        assert!(!is_elb_describe(None, b"Action=DescribeTags"));
    }

    #[test]
    fn put_metric_data_values_are_counted() {
        let cw = "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/monitoring/aws4_request";
        let body = b"Action=PutMetricData&Version=2010-08-01&Namespace=Tether\
            &MetricData.member.1.MetricName=A&MetricData.member.1.Values.member.1=1\
            &MetricData.member.1.Dimensions.member.1.Name=D&MetricData.member.1.Dimensions.member.1.Value=x\
            &MetricData.member.1.Counts.member.1=1&MetricData.member.2.MetricName=B\
            &MetricData.member.2.Values.member.1=0&MetricData.member.2.Values.member.2=3";
        assert_eq!(metric_values(Some(cw), body), Some(3));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, body).expect("in memory");
        let gz = gz.finish().expect("in memory");
        assert_eq!(gunzip(&gz).as_deref(), Some(&body[..]));
        assert_eq!(gunzip(body), None, "not gzip");
        assert_eq!(
            metric_values(Some(cw), b"Action=ListMetrics&Namespace=Tether"),
            None
        );
        let elb =
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/elasticloadbalancing/aws4_request";
        assert_eq!(metric_values(Some(elb), body), None);
    }

    #[test]
    fn requests_are_told_apart_by_service_and_action() {
        let ec2 =
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host";
        assert_eq!(service(Some(ec2)), Some("ec2"));
        assert_eq!(
            ec2_describe(
                Some(ec2),
                b"Action=DescribeNetworkInterfaces&Version=2016-11-15"
            )
            .as_deref(),
            Some("DescribeNetworkInterfaces")
        );
        assert_eq!(ec2_describe(Some(ec2), b"Action=CreateVpc"), None);
        assert_eq!(service(None), None);
    }

    #[test]
    fn the_bucket_holds_forty_then_refills_at_ten_per_second() {
        let mut b = Bucket::full(BUCKET_SIZE, REFILL_PER_SECOND);
        let t0 = b.at;
        let granted = (0..41).filter(|_| b.take_at(t0)).count();
        assert_eq!(granted, 40);
        let half = t0 + Duration::from_millis(500);
        assert_eq!(
            (0..6).filter(|_| b.take_at(half)).count(),
            5,
            "half a second refills five"
        );
    }
}

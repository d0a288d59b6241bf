//! A proxy in front of the emulator that enforces ELB's documented API rate
//! limit, which moto does not: Describe calls share a bucket of 40 tokens
//! per account and region, refilled at 10 per second. A Describe call that
//! finds the bucket empty is answered `400 Throttling`, as ELB answers it.
//! Every other request (S3, EC2, CloudWatch, ELB writes) passes through;
//! CloudWatch `PutMetricData` calls and the values they carry are counted
//! (the SDK gzips a body over 10 KiB: it is read uncompressed for counting,
//! and forwarded as it came).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::moto::BoxError;

/// ELB's documented bucket for Describe calls (per account and region).
pub const BUCKET_SIZE: f64 = 40.0;
pub const REFILL_PER_SECOND: f64 = 10.0;

const THROTTLED: &str = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>throttled-by-test-proxy</RequestId></ErrorResponse>"#;

/// What the proxy saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// ELB Describe calls let through.
    pub describes: usize,
    /// ELB Describe calls answered `Throttling`.
    pub throttled: usize,
    /// CloudWatch `PutMetricData` calls.
    pub metric_calls: usize,
    /// Values those calls carried (one per metric datum and value).
    pub metric_values: usize,
}

struct Bucket {
    size: f64,
    refill: f64,
    tokens: f64,
    at: Instant,
    counts: Counts,
}

impl Bucket {
    fn full(size: f64, refill: f64) -> Self {
        Bucket {
            size,
            refill,
            tokens: size,
            at: Instant::now(),
            counts: Counts::default(),
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
            self.counts.describes += 1;
            true
        } else {
            self.counts.throttled += 1;
            false
        }
    }
}

pub struct ThrottlingProxy {
    addr: SocketAddr,
    bucket: Arc<Mutex<Bucket>>,
    task: JoinHandle<()>,
}

impl ThrottlingProxy {
    /// ELB's documented bucket in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Result<ThrottlingProxy, BoxError> {
        Self::start_with(upstream, BUCKET_SIZE, REFILL_PER_SECOND).await
    }

    /// A bucket of `size` tokens refilled at `refill` per second: a test
    /// makes it small, so that throttling happens however fast the emulator is.
    pub async fn start_with(
        upstream: &str,
        size: f64,
        refill: f64,
    ) -> Result<ThrottlingProxy, BoxError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let bucket = Arc::new(Mutex::new(Bucket::full(size, refill)));
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let task = tokio::spawn({
            let bucket = Arc::clone(&bucket);
            async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                while let Ok((stream, _)) = listener.accept().await {
                    let (bucket, upstream, client) =
                        (Arc::clone(&bucket), Arc::clone(&upstream), client.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            relay(
                                request,
                                Arc::clone(&bucket),
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
        Ok(ThrottlingProxy { addr, bucket, task })
    }

    /// The endpoint to give the SDK (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> Counts {
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts
    }

    /// Starts counting afresh with a full bucket.
    pub fn reset(&self) {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        *b = Bucket::full(b.size, b.refill);
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.task.abort();
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

/// An ELB Describe call: signed for `elasticloadbalancing`, `Action=Describe…`.
fn is_elb_describe(authorization: Option<&str>, body: &[u8]) -> bool {
    let elb = authorization.is_some_and(|a| a.contains("/elasticloadbalancing/aws4_request"));
    elb && body
        .split(|b| *b == b'&')
        .any(|pair| pair.starts_with(b"Action=Describe"))
}

async fn relay(
    request: Request<Incoming>,
    bucket: Arc<Mutex<Bucket>>,
    upstream: Arc<str>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let gzipped = parts
        .headers
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let plain = if gzipped { gunzip(&body) } else { None };
    if let Some(values) = metric_values(authorization, plain.as_deref().unwrap_or(&body)) {
        let mut b = bucket.lock().unwrap_or_else(PoisonError::into_inner);
        b.counts.metric_calls += 1;
        b.counts.metric_values += values;
    }
    if is_elb_describe(authorization, &body)
        && !bucket.lock().unwrap_or_else(PoisonError::into_inner).take()
    {
        return Ok(answer(StatusCode::BAD_REQUEST, THROTTLED, "text/xml"));
    }
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
    fn the_bucket_holds_forty_then_refills_at_ten_per_second() {
        let mut b = Bucket::full(BUCKET_SIZE, REFILL_PER_SECOND);
        let t0 = b.at;
        let granted = (0..41).filter(|_| b.take_at(t0)).count();
        assert_eq!(granted, 40);
        assert_eq!(
            b.counts,
            Counts {
                describes: 40,
                throttled: 1,
                ..Counts::default()
            }
        );
        let half = t0 + Duration::from_millis(500);
        assert_eq!(
            (0..6).filter(|_| b.take_at(half)).count(),
            5,
            "half a second refills five"
        );
    }
}

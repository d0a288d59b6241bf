//! CloudFormation custom resource test support: events as CloudFormation
//! sends them, response URLs that are pre-signed PUT URLs of the S3 emulator
//! (so the response lands where the test reads it back, as CloudFormation
//! would), and a proxy in front of them that fails a number of times first.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::moto::{BoxError, REGION};

/// The bucket that receives the responses (created by [`Responses::new`]).
pub const RESPONSES_BUCKET: &str = "cfn-responses";
pub const STACK_ID: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/tether/8d3e6f40-1a2b-11f0-9c4d-0affd1e2f3a5";
pub const SERVICE_TOKEN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:tether-custom-resources";

/// A response as CloudFormation would read it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub bytes: Vec<u8>,
    pub body: Value,
}

/// Response URLs in the emulator's S3 and the responses PUT to them.
pub struct Responses {
    s3: aws_sdk_s3::Client,
}

impl Responses {
    /// Creates [`RESPONSES_BUCKET`].
    pub async fn new(s3: &aws_sdk_s3::Client) -> Result<Responses, BoxError> {
        crate::aws::create_bucket(s3, RESPONSES_BUCKET).await?;
        Ok(Responses { s3: s3.clone() })
    }

    /// A fresh key and its pre-signed PUT URL (valid one hour), like the
    /// `ResponseURL` CloudFormation sends.
    pub async fn url(&self) -> Result<(String, String), BoxError> {
        let key = format!(
            "arn%3Aaws%3Acloudformation%3A{REGION}%3A123456789012%3Astack/tether/{}",
            crate::lambda::new_request_id()
        );
        let presigned = self
            .s3
            .put_object()
            .bucket(RESPONSES_BUCKET)
            .key(&key)
            .presigned(PresigningConfig::expires_in(Duration::from_secs(3600))?)
            .await?;
        Ok((key, presigned.uri().to_owned()))
    }

    /// The response PUT under `key`, or `None` if nothing arrived.
    pub async fn read(&self, key: &str) -> Result<Option<Stored>, BoxError> {
        match self
            .s3
            .get_object()
            .bucket(RESPONSES_BUCKET)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let bytes = out.body.collect().await?.into_bytes().to_vec();
                let body = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "response is not JSON ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                })?;
                Ok(Some(Stored { bytes, body }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }

    /// Every response key received so far.
    pub async fn keys(&self) -> Result<Vec<String>, BoxError> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(RESPONSES_BUCKET)
            .send()
            .await?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect())
    }
}

fn with_token(properties: &Value) -> Value {
    let mut properties = properties.clone();
    if let Value::Object(map) = &mut properties {
        map.insert("ServiceToken".into(), json!(SERVICE_TOKEN));
    }
    properties
}

fn base(
    request_type: &str,
    resource_type: &str,
    logical_id: &str,
    properties: &Value,
    url: &str,
) -> Value {
    json!({
        "RequestType": request_type,
        "ServiceToken": SERVICE_TOKEN,
        "ResponseURL": url,
        "StackId": STACK_ID,
        "RequestId": crate::lambda::new_request_id(),
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceProperties": with_token(properties),
    })
}

/// A Create event; `ServiceToken` is added to the properties as CloudFormation does.
pub fn create(resource_type: &str, logical_id: &str, properties: &Value, url: &str) -> Value {
    base("Create", resource_type, logical_id, properties, url)
}

/// An Update event from `old` to `properties`.
pub fn update(
    resource_type: &str,
    logical_id: &str,
    physical_id: &str,
    properties: &Value,
    old: &Value,
    url: &str,
) -> Value {
    let mut event = base("Update", resource_type, logical_id, properties, url);
    event["PhysicalResourceId"] = json!(physical_id);
    event["OldResourceProperties"] = with_token(old);
    event
}

/// A Delete event.
pub fn delete(
    resource_type: &str,
    logical_id: &str,
    physical_id: &str,
    properties: &Value,
    url: &str,
) -> Value {
    let mut event = base("Delete", resource_type, logical_id, properties, url);
    event["PhysicalResourceId"] = json!(physical_id);
    event
}

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
    pub body_len: usize,
    /// The status the proxy answered.
    pub status: u16,
}

/// A loopback HTTP proxy: answers 503 to the first `failures` requests, then
/// forwards each request (method, path, query, headers, body) to `upstream`
/// and relays the answer. Records what it received. Stops when dropped.
pub struct FlakyProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl FlakyProxy {
    /// `upstream`: `http://127.0.0.1:PORT` (the emulator).
    pub async fn start(failures: usize, upstream: &str) -> Result<FlakyProxy, BoxError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                while let Ok((stream, _)) = listener.accept().await {
                    let (seen, upstream, client) =
                        (Arc::clone(&seen), Arc::clone(&upstream), client.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            relay(
                                request,
                                failures,
                                Arc::clone(&seen),
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
        Ok(FlakyProxy { addr, seen, task })
    }

    /// `url` (an emulator URL) with the proxy's address instead.
    pub fn url_for(&self, url: &str) -> Result<String, BoxError> {
        let rest = url
            .strip_prefix("http://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .ok_or_else(|| format!("not an http URL with a path: {url}"))?;
        Ok(format!("http://{}{rest}", self.addr))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    request: Request<Incoming>,
    failures: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    upstream: Arc<str>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut record = Seen {
        method: parts.method.to_string(),
        content_type: header("content-type"),
        content_length: header("content-length"),
        body_len: body.len(),
        status: 503,
    };
    let earlier = seen.lock().unwrap_or_else(PoisonError::into_inner).len();
    let response = if earlier < failures {
        plain(StatusCode::SERVICE_UNAVAILABLE, "injected failure")
    } else {
        let target = format!(
            "{upstream}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut forward = Request::builder().method(parts.method.clone()).uri(&target);
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST {
                forward = forward.header(name, value);
            }
        }
        match forward.body(Full::new(body)) {
            Ok(forward) => match client.request(forward).await {
                Ok(answer) => {
                    let status = answer.status();
                    let bytes = answer
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let mut r = Response::new(Full::new(bytes));
                    *r.status_mut() = status;
                    r
                }
                Err(e) => plain(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
            },
            Err(e) => plain(StatusCode::BAD_GATEWAY, &format!("bad request: {e}")),
        }
    };
    record.status = response.status().as_u16();
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(record);
    Ok(response)
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = status;
    r
}

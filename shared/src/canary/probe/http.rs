//! The HTTP part of a probe: the request, the answer's status and at most
//! 64 KiB of its body, and the start of a failed answer's body for the log.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT as USER_AGENT_HEADER};
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::Found;
use super::classify::classify_http;
use super::outcome::{Failure, FailureClass};
use crate::canary::config::Endpoint;
use crate::fields::shorten;

/// The most body a probe reads.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The most characters of body a failure carries (and logs).
pub const SNIPPET_CHARS: usize = 160;
/// How long a failed status waits for the start of its body (the snippet).
const SNIPPET_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
const USER_AGENT: &str = concat!("tether-health-canary/", env!("CARGO_PKG_VERSION"));
/// Said instead of the snippet of an endpoint that sends secret headers.
pub const SNIPPET_WITHHELD: &str =
    "(body not shown: the request carried secret headers, which a server may echo)";

/// Aborts the connection task (closing the connection) when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The request and response on an open connection. `secret` holds the
/// secret headers' current values; an endpoint that sends any never shows
/// a body snippet, since a server may echo what it was sent (a 401 page
/// quoting the key) and a snippet cannot prove it does not.
pub async fn exchange<S>(
    io: S,
    h2: bool,
    e: &Endpoint,
    secret: &[(HeaderName, HeaderValue)],
    deadline: Instant,
    found: &mut Found,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = request(e, secret, h2)?;
    let io = TokioIo::new(io);
    let (response, _connection) = if h2 {
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|err| classify_http(&err))?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        (sender.send_request(request).await, connection)
    } else {
        let (mut sender, conn) = http1::handshake(io)
            .await
            .map_err(|err| classify_http(&err))?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        (sender.send_request(request).await, connection)
    };
    let mut response: Response<Incoming> = response.map_err(|err| classify_http(&err))?;
    let code = response.status().as_u16();
    found.status = Some(code);
    let shows_body = secret.is_empty();
    if !e.expect_status.contains(code) {
        let mut failure = Failure::new(
            FailureClass::Status,
            format!("status {code}, expected {}", e.expect_status),
        );
        if shows_body {
            // The start of the body, if it comes soon: it often says why.
            let wait = (Instant::now() + SNIPPET_WAIT).min(deadline);
            let start = timeout_at(wait, read_body(response.body_mut(), SNIPPET_CHARS * 4))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            failure.snippet = snippet(&start);
        } else {
            failure.message = format!("{} {SNIPPET_WITHHELD}", failure.message);
        }
        return Err(failure);
    }
    let body = read_body(response.body_mut(), BODY_LIMIT)
        .await
        .map_err(|err| classify_http(&err))?;
    if let Some(needle) = &e.body_contains
        && !contains(&body, needle.as_bytes())
    {
        let mut failure = Failure::new(
            FailureClass::Body,
            format!(
                "the body ({} bytes read) does not contain \"{}\"",
                body.len(),
                shorten(needle)
            ),
        );
        match shows_body {
            true => failure.snippet = snippet(&body),
            false => failure.message = format!("{} {SNIPPET_WITHHELD}", failure.message),
        }
        return Err(failure);
    }
    Ok(())
}

/// The request of endpoint `e` with the secret headers `secret`:
/// origin-form with a Host header for HTTP/1.1, absolute (the
/// `:authority`) for h2. The query goes to the server, never to a log.
fn request(
    e: &Endpoint,
    secret: &[(HeaderName, HeaderValue)],
    h2: bool,
) -> Result<Request<Full<Bytes>>, Failure> {
    let bad = |err: String| {
        Failure::new(
            FailureClass::Http,
            format!("cannot build the request: {err}"),
        )
    };
    let url = &e.url;
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let target = if h2 {
        format!("{}://{authority}{path_and_query}", url.scheme())
    } else {
        path_and_query
    };
    // The error of an unparsable target quotes it: say only that.
    let uri: Uri = target.parse().map_err(|_: hyper::http::uri::InvalidUri| {
        bad(format!("{} is no request target", e.shown_url()))
    })?;
    let body = e.body.clone().map(Bytes::from).unwrap_or_default();
    let mut request = Request::builder()
        .method(e.method.clone())
        .uri(uri)
        .body(Full::new(body))
        .map_err(|err| bad(err.to_string()))?;
    let headers = request.headers_mut();
    for (name, value) in &e.headers {
        headers.append(name.clone(), value.clone());
    }
    for (name, value) in secret {
        headers.append(name.clone(), value.clone());
    }
    if !h2 && !headers.contains_key(HOST) {
        headers.insert(
            HOST,
            HeaderValue::from_str(&authority).map_err(|err| bad(err.to_string()))?,
        );
    }
    if !headers.contains_key(USER_AGENT_HEADER) {
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
    }
    if e.body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(request)
}

/// At most `limit` bytes of `body`; never reads past them.
async fn read_body(body: &mut Incoming, limit: usize) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(err)) => return Err(err),
            None => break,
        }
    }
    Ok(out)
}

/// The start of a body for a log line: at most [`SNIPPET_CHARS`]
/// characters, invalid UTF-8 replaced, whitespace runs and control
/// characters folded to one space; `None` when nothing is left.
pub fn snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_CHARS * 4)]);
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if count + usize::from(space) + 1 > SNIPPET_CHARS {
            out.push('…');
            return Some(out);
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
    }
    (!out.is_empty()).then_some(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substring_search() {
        assert!(contains(b"status: ok", b"ok"));
        assert!(!contains(b"status: ko", b"ok"));
        assert!(!contains(b"o", b"ok"));
        assert!(contains(b"", b""));
    }

    #[test]
    fn snippets_are_short_single_line_text() {
        assert_eq!(
            snippet(b"  {\"error\":\n\t\"down\"}\r\n"),
            Some("{\"error\": \"down\"}".into())
        );
        assert_eq!(snippet(b" \n "), None);
        assert_eq!(snippet(b"ok\xff\x00x"), Some("ok\u{fffd} x".into()));
        let long = snippet(&[b'a'; 10_000]).unwrap();
        assert_eq!(long.chars().count(), SNIPPET_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn the_request_carries_the_query_plain_and_secret_headers() {
        let e = Endpoint::from_json(
            "T",
            &json!({"name": "a", "url": "https://api.example.com:8443/h?token=t1", "method": "PUT",
                     "body": "{}", "headers": {"x-plain": "p", "x-key": {"secret": "s"}}}),
        )
        .unwrap();
        let mut secret = HeaderValue::from_static("k-1");
        secret.set_sensitive(true);
        let one = request(&e, &[(HeaderName::from_static("x-key"), secret)], false).unwrap();
        assert_eq!(one.uri().to_string(), "/h?token=t1");
        assert_eq!(one.method(), "PUT");
        let h = one.headers();
        assert_eq!(
            (h["x-plain"].to_str().ok(), h["x-key"].to_str().ok()),
            (Some("p"), Some("k-1"))
        );
        assert!(h["x-key"].is_sensitive());
        assert_eq!(h[HOST], "api.example.com:8443");
        assert_eq!(h[CONTENT_TYPE], "application/json");
        let two = request(&e, &[], true).unwrap();
        assert_eq!(
            two.uri().to_string(),
            "https://api.example.com:8443/h?token=t1"
        );
        assert!(two.headers().get(HOST).is_none() && two.headers().get("x-key").is_none());
    }

    proptest::proptest! {
        #[test]
        fn a_snippet_is_bounded_and_has_no_control_characters(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            if let Some(s) = snippet(&body) {
                proptest::prop_assert!(s.chars().count() <= SNIPPET_CHARS + 1);
                proptest::prop_assert!(!s.chars().any(char::is_control));
                proptest::prop_assert!(!s.starts_with(' ') && !s.ends_with(' '));
            }
        }
    }
}

//! A Lambda Runtime API emulator that runs a built function binary the way
//! Lambda does.
//!
//! [`FunctionProcess::spawn`] starts an HTTP/1 server on `127.0.0.1:0` that
//! implements the runtime side of the
//! [Runtime API](https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html)
//! and runs the binary with `AWS_LAMBDA_RUNTIME_API` pointing at it:
//!
//! - `GET /2018-06-01/runtime/invocation/next` long-polls until
//!   [`FunctionProcess::invoke`] queues an event, then answers with the event
//!   JSON and the `Lambda-Runtime-*` headers (`lambda_runtime` panics without
//!   `Lambda-Runtime-Aws-Request-Id` and `Lambda-Runtime-Deadline-Ms`);
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../error`
//!   complete that invocation (`202 Accepted`);
//! - `POST /2018-06-01/runtime/init/error` records an initialisation error.
//!
//! One event at a time, as Lambda does per execution environment.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::moto::{BoxError, REGION};

/// The account id in the function ARN (moto's default account).
const ACCOUNT_ID: &str = "123456789012";

/// Extra time [`FunctionProcess::invoke`] waits beyond the function timeout.
const INVOKE_GRACE: Duration = Duration::from_secs(5);

/// How often the exit watcher checks whether the child has exited.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How much of the captured output an error message includes (the tail).
const LOG_TAIL_BYTES: usize = 16 * 1024;

const PATH_NEXT: &str = "/2018-06-01/runtime/invocation/next";
const PATH_INVOCATION: &str = "/2018-06-01/runtime/invocation/";
const PATH_INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

/// One completed invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The request id handed to the function.
    pub request_id: String,
    /// `Ok(response JSON)` or `Err(error body)`: the
    /// `{"errorType": ..., "errorMessage": ...}` JSON the runtime posted.
    /// A body that is not JSON is kept as a JSON string.
    pub result: Result<Value, Value>,
    /// From handing out the event (the `next` response) to receiving the
    /// response or error.
    pub duration: Duration,
}

/// How a function process ended, from [`FunctionProcess::wait_exit`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExitReport {
    /// The exit status of the process.
    pub status: ExitStatus,
    /// The body it posted to `/runtime/init/error`, if it did.
    pub init_error: Option<Value>,
}

/// A function binary running against the Runtime API emulator.
///
/// Dropping it kills and reaps the process and stops the server.
#[derive(Debug)]
pub struct FunctionProcess {
    name: String,
    pid: Option<u32>,
    spawned_at: Instant,
    state: Arc<watch::Sender<State>>,
    logs: Arc<Mutex<Vec<u8>>>,
    child: Arc<Mutex<Child>>,
    server: JoinHandle<()>,
    exit_watcher: JoinHandle<()>,
}

/// What the server and the test share; every change wakes all waiters.
#[derive(Debug, Default)]
struct State {
    /// When the process first polled `next` (its init was done).
    first_next: Option<Instant>,
    /// The body of a `POST /runtime/init/error`.
    init_error: Option<Value>,
    /// An event waiting for `next`.
    queued: Option<QueuedEvent>,
    /// The event handed out by `next` and not yet answered.
    in_flight: Option<InFlight>,
    /// The answer to the last handed-out event, until `invoke` takes it.
    completed: Option<Invocation>,
    /// Set once the process has exited and its output is fully read.
    exit_status: Option<ExitStatus>,
}

#[derive(Debug)]
struct QueuedEvent {
    request_id: String,
    body: Bytes,
    deadline_ms: u128,
}

#[derive(Debug)]
struct InFlight {
    request_id: String,
    handed_out: Instant,
}

impl FunctionProcess {
    /// Starts the Runtime API server and spawns `binary` against it.
    ///
    /// The environment is cleared except for `PATH` and `HOME`; then the
    /// variables Lambda sets are added (`AWS_LAMBDA_RUNTIME_API`,
    /// `AWS_LAMBDA_FUNCTION_NAME` = the binary's file name,
    /// `AWS_LAMBDA_FUNCTION_VERSION=$LATEST`, memory size 128, log group and
    /// stream, `_HANDLER`, `LAMBDA_TASK_ROOT` = the binary's directory, which
    /// is also the working directory, `AWS_LAMBDA_LOG_FORMAT=JSON`, ...), and
    /// finally `env`, which may override any of them. stdout and stderr are
    /// captured continuously; see [`FunctionProcess::logs`].
    pub async fn spawn(
        binary: &Path,
        env: &[(String, String)],
    ) -> Result<FunctionProcess, BoxError> {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("not a file path: {}", binary.display()))?;
        let task_root = binary
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));

        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let runtime_api = listener.local_addr()?.to_string();
        let state = Arc::new(watch::Sender::new(State::default()));
        let server = tokio::spawn(serve(listener, Arc::clone(&state), name.clone()));

        let mut command = Command::new(binary);
        command
            .env_clear()
            .current_dir(&task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for inherited in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        command
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]0123456789abcdef",
            )
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", &task_root)
            .env("TZ", ":UTC")
            .envs(env.iter().map(|(k, v)| (k, v)));

        let spawned_at = Instant::now();
        let mut child = match spawn_retrying(&mut command).await {
            Ok(child) => child,
            Err(e) => {
                server.abort();
                return Err(format!("cannot run {}: {e}", binary.display()).into());
            }
        };
        let pid = child.id();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(capture(stdout, Arc::clone(&logs))));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(capture(stderr, Arc::clone(&logs))));
        }
        let child = Arc::new(Mutex::new(child));
        let exit_watcher =
            tokio::spawn(watch_exit(Arc::clone(&child), readers, Arc::clone(&state)));

        Ok(FunctionProcess {
            name,
            pid,
            spawned_at,
            state,
            logs,
            child,
            server,
            exit_watcher,
        })
    }

    /// Waits until the process asks for its first event (its init is done),
    /// or fails with its logs if it posts an init error or exits first.
    pub async fn ready(&self, timeout: Duration) -> Result<(), BoxError> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                s.first_next.is_some() || s.init_error.is_some() || s.exit_status.is_some()
            }),
        )
        .await;
        match waited {
            Ok(Ok(s)) if s.first_next.is_some() => Ok(()),
            Ok(_) => Err(self.failure("the init failed")),
            Err(_) => Err(self.failure(&format!("no `next` within {timeout:?}"))),
        }
    }

    /// Time from spawn until the process first polled `next` (its init was
    /// done); `None` until then.
    pub fn init_duration(&self) -> Option<Duration> {
        self.state
            .borrow()
            .first_next
            .map(|at| at.saturating_duration_since(self.spawned_at))
    }

    /// Invokes the function with `event` and a deadline of now +
    /// `function_timeout`, and waits for its response or error.
    ///
    /// Errors (with the captured logs) if the process exits or has posted an
    /// init error before answering, if it does not answer within
    /// `function_timeout` + 5 s, or if another invocation is in progress.
    pub async fn invoke(
        &self,
        event: Value,
        function_timeout: Duration,
    ) -> Result<Invocation, BoxError> {
        let request_id = new_request_id();
        let deadline = SystemTime::now() + function_timeout;
        let queued = QueuedEvent {
            request_id: request_id.clone(),
            body: Bytes::from(serde_json::to_vec(&event)?),
            deadline_ms: deadline.duration_since(UNIX_EPOCH)?.as_millis(),
        };

        let mut refusal = None;
        self.state.send_if_modified(|s| {
            refusal = if s.exit_status.is_some() {
                Some("the function process has exited")
            } else if s.init_error.is_some() {
                Some("the function posted an init error")
            } else if s.queued.is_some() || s.in_flight.is_some() {
                Some("another invocation is in progress")
            } else {
                None
            };
            if refusal.is_none() {
                s.completed = None;
                s.queued = Some(queued);
            }
            refusal.is_none()
        });
        if let Some(reason) = refusal {
            return Err(self.failure(&format!("cannot invoke {}: {reason}", self.name)));
        }

        let limit = function_timeout + INVOKE_GRACE;
        let mut rx = self.state.subscribe();
        let settled = rx.wait_for(|s| {
            s.completed
                .as_ref()
                .is_some_and(|c| c.request_id == request_id)
                || s.exit_status.is_some()
                || s.init_error.is_some()
        });
        let timed_out = tokio::time::timeout(limit, settled).await.is_err();

        // Take the answer, or withdraw the event so a late answer is refused.
        let mut outcome = None;
        let mut status = None;
        let mut init_error = None;
        self.state.send_modify(|s| {
            outcome = s.completed.take_if(|c| c.request_id == request_id);
            if outcome.is_none() {
                s.queued.take_if(|q| q.request_id == request_id);
                s.in_flight.take_if(|f| f.request_id == request_id);
            }
            status = s.exit_status;
            init_error = s.init_error.clone();
        });
        if let Some(invocation) = outcome {
            return Ok(invocation);
        }
        let reason = if let Some(body) = init_error {
            format!("it posted an init error: {body}")
        } else if let Some(status) = status {
            format!("the process exited ({status})")
        } else if timed_out {
            format!("no answer within {limit:?}")
        } else {
            "the runtime API server stopped".to_owned()
        };
        Err(self.failure(&format!(
            "invocation {request_id} of {} failed: {reason}",
            self.name
        )))
    }

    /// Waits (up to `timeout`) for the process to exit on its own, e.g.
    /// after a configuration error at cold start, and reports its exit status
    /// and the init error it posted, if any.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitReport, BoxError> {
        let mut rx = self.state.subscribe();
        let exited = rx.wait_for(|s| s.exit_status.is_some());
        let report = match tokio::time::timeout(timeout, exited).await {
            Ok(Ok(state)) => state.exit_status.map(|status| ExitReport {
                status,
                init_error: state.init_error.clone(),
            }),
            Ok(Err(_)) | Err(_) => None,
        };
        report
            .ok_or_else(|| self.failure(&format!("{} did not exit within {timeout:?}", self.name)))
    }

    /// For a process that must not start: waits for it to exit with a
    /// failure and returns the one line its cold start printed, which must
    /// be its `invalid configuration` error: nothing else on stdout or
    /// stderr (no Rust debug dump of the error after it).
    pub async fn config_error(&mut self) -> Result<String, BoxError> {
        let exit = self.wait_exit(Duration::from_secs(10)).await?;
        if exit.status.success() {
            return Err(format!("{} exited 0 despite a bad configuration", self.name).into());
        }
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
        match lines[..] {
            [line] if line.contains("invalid configuration") => Ok(line.to_owned()),
            _ => Err(format!(
                "expected exactly one `invalid configuration` line, got {}:\n{logs}",
                lines.len()
            )
            .into()),
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&logs).into_owned()
    }

    /// The peak resident set size of the process so far in KiB (`VmHWM` in
    /// `/proc/<pid>/status`); `None` once it has exited or where unavailable.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        if self.state.borrow().exit_status.is_some() {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// An error with `message` and the tail of the captured output.
    fn failure(&self, message: &str) -> BoxError {
        let logs = self.logs();
        let mut start = logs.len().saturating_sub(LOG_TAIL_BYTES);
        while !logs.is_char_boundary(start) {
            start += 1;
        }
        format!("{message}; output of the process:\n{}", &logs[start..]).into()
    }
}

impl Drop for FunctionProcess {
    /// Stops the server and kills (SIGKILL) and reaps the process.
    fn drop(&mut self) {
        self.server.abort();
        self.exit_watcher.abort();
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        // An error means the process is already gone.
        if child.start_kill().is_ok() {
            for _ in 0..200 {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    Ok(Some(_)) | Err(_) => break,
                }
            }
        }
    }
}

/// The path of a built function binary, e.g. `target/debug/target-sync`.
///
/// `$TETHER_BIN_DIR/<name>` if that variable is set, else `<name>` in the
/// profile directory of the current test executable (test executables live
/// in `<target>/<profile>/deps/`).
///
/// # Panics
///
/// If the binary does not exist: build it first with
/// `cargo build --workspace --bins`.
pub fn function_binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("TETHER_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
            .unwrap_or_else(|| {
                panic!("cannot locate the target directory of this test executable")
            }),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "function binary {} not found: run `cargo build --workspace --bins` first \
         (or set TETHER_BIN_DIR)",
        path.display()
    );
    path
}

/// Spawns `command`, retrying briefly while the binary is "busy": a file just
/// written (e.g. a freshly linked binary or script) can still be open for
/// writing in a process another thread forked at that moment.
async fn spawn_retrying(command: &mut Command) -> std::io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

/// Accepts Runtime API connections until the task is aborted; aborting it
/// also ends every connection (they live in its `JoinSet`).
async fn serve(listener: TcpListener, state: Arc<watch::Sender<State>>, function_name: String) {
    let function_name: Arc<str> = function_name.into();
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("runtime API emulator: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let state = Arc::clone(&state);
        let function_name = Arc::clone(&function_name);
        connections.spawn(async move {
            let service = service_fn(move |request| {
                handle(request, Arc::clone(&state), Arc::clone(&function_name))
            });
            // A connection error just means the process went away.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Routes one Runtime API request.
async fn handle(
    request: Request<Incoming>,
    state: Arc<watch::Sender<State>>,
    function_name: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = if method == Method::GET && path == PATH_NEXT {
        next_event(&state, &function_name).await
    } else if method == Method::POST && path == PATH_INIT_ERROR {
        match read_json(request).await {
            Ok(body) => {
                state.send_modify(|s| s.init_error = Some(body));
                accepted()
            }
            Err(response) => response,
        }
    } else if let (&Method::POST, Some(rest)) = (&method, path.strip_prefix(PATH_INVOCATION)) {
        match rest.split_once('/') {
            Some((request_id, "response")) => complete(request, &state, request_id, true).await,
            Some((request_id, "error")) => complete(request, &state, request_id, false).await,
            _ => not_found(&method, &path),
        }
    } else {
        not_found(&method, &path)
    };
    Ok(response)
}

/// `GET /runtime/invocation/next`: waits for a queued event and hands it out.
async fn next_event(state: &watch::Sender<State>, function_name: &str) -> Response<Full<Bytes>> {
    let mut rx = state.subscribe();
    loop {
        let mut event = None;
        state.send_if_modified(|s| {
            let first_poll = s.first_next.is_none();
            if first_poll {
                s.first_next = Some(Instant::now());
            }
            event = s.queued.take();
            if let Some(queued) = &event {
                s.in_flight = Some(InFlight {
                    request_id: queued.request_id.clone(),
                    handed_out: Instant::now(),
                });
            }
            first_poll || event.is_some()
        });
        if let Some(event) = event {
            return event_response(event, function_name);
        }
        if rx.wait_for(|s| s.queued.is_some()).await.is_err() {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"errorType": "ServiceUnavailable", "errorMessage": "emulator stopped"}),
            );
        }
    }
}

/// The `next` answer for an event, with the headers `lambda_runtime` reads.
fn event_response(event: QueuedEvent, function_name: &str) -> Response<Full<Bytes>> {
    let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}");
    let trace_id = new_trace_id();
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", &event.request_id)
        .header("Lambda-Runtime-Deadline-Ms", event.deadline_ms.to_string())
        .header("Lambda-Runtime-Invoked-Function-Arn", arn)
        .header("Lambda-Runtime-Trace-Id", trace_id)
        .body(Full::new(event.body));
    // Only a header value with invalid characters can fail, and all of them
    // are made here from ASCII.
    response.unwrap_or_else(|e| internal_error(&e.to_string()))
}

/// `POST /runtime/invocation/{id}/response` or `.../error`.
async fn complete(
    request: Request<Incoming>,
    state: &watch::Sender<State>,
    request_id: &str,
    success: bool,
) -> Response<Full<Bytes>> {
    let body = match read_json(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut known = false;
    state.send_if_modified(|s| {
        if let Some(in_flight) = s.in_flight.take_if(|f| f.request_id == request_id) {
            known = true;
            s.completed = Some(Invocation {
                request_id: in_flight.request_id,
                result: if success { Ok(body) } else { Err(body) },
                duration: in_flight.handed_out.elapsed(),
            });
        }
        known
    });
    if known {
        accepted()
    } else {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "errorType": "InvalidRequestID",
                "errorMessage": format!("no invocation {request_id} in progress"),
            }),
        )
    }
}

/// Reads a request body as JSON; a body that is not JSON becomes a JSON
/// string, so it still shows up in test failures.
async fn read_json(request: Request<Incoming>) -> Result<Value, Response<Full<Bytes>>> {
    let bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(internal_error(&format!("cannot read body: {e}"))),
    };
    Ok(serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

fn accepted() -> Response<Full<Bytes>> {
    json_response(StatusCode::ACCEPTED, &json!({"status": "OK"}))
}

fn not_found(method: &Method, path: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"errorType": "NotFound", "errorMessage": format!("{method} {path}")}),
    )
}

fn internal_error(message: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"errorType": "InternalError", "errorMessage": message}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Appends everything from `pipe` to `logs` until end of file.
async fn capture(mut pipe: impl AsyncRead + Unpin, logs: Arc<Mutex<Vec<u8>>>) {
    let mut buffer = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        logs.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(&buffer[..n]);
    }
}

/// Polls for the child's exit, then lets the output readers finish and
/// publishes the exit status. The child stays in the mutex so that `Drop`
/// can always kill and reap it.
async fn watch_exit(
    child: Arc<Mutex<Child>>,
    readers: Vec<JoinHandle<()>>,
    state: Arc<watch::Sender<State>>,
) {
    let status = loop {
        let polled = child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait();
        match polled {
            Ok(Some(status)) => break status,
            Ok(None) => tokio::time::sleep(EXIT_POLL_INTERVAL).await,
            Err(e) => {
                eprintln!("runtime API emulator: cannot wait for the function process: {e}");
                return;
            }
        }
    };
    for reader in readers {
        // A reader still running after this long has a pipe held open by a
        // grandchild; the logs so far are enough.
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    state.send_modify(|s| s.exit_status = Some(status));
}

/// A fresh id in UUID shape (request ids, CloudFormation event ids).
pub(crate) fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{:08x}-{:04x}-4000-8000-{count:012x}",
        std::process::id(),
        nanos & 0xffff
    )
}

/// A fresh X-Ray trace header value (`Root=1-<epoch hex>-<24 hex>;...`).
fn new_trace_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        now.as_secs(),
        now.as_nanos() & 0xffff_ffff_ffff_ffff_ffff_ffff,
        now.subsec_nanos()
    )
}

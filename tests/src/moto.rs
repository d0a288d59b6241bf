//! A `moto_server` process (AWS API emulator) per test, on loopback.
//!
//! [`Moto::start`] spawns `moto_server -H 127.0.0.1 -p <free port>` from the
//! project venv (or `TETHER_MOTO_SERVER`), waits until it answers HTTP, and
//! kills and reaps it again when the [`Moto`] value is dropped, also when the
//! test panics. The child's output goes to a log file in the temp directory,
//! never to the test's own stdout/stderr, so no pipe of a CI runner stays open
//! after the test.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The error type of all test-support functions.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The region every fixture and client uses.
pub const REGION: &str = "us-east-1";

/// The (fake) credentials moto accepts; it does not verify signatures.
const TEST_CREDENTIAL: &str = "testing";

/// How long [`Moto::start`] waits for one server process to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many times [`Moto::start`] tries a fresh port and process.
const START_ATTEMPTS: usize = 3;

/// A running `moto_server` on `127.0.0.1`; killed and reaped on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits (up to 20 s)
    /// until it answers `GET /moto-api/`.
    ///
    /// The binary is `$TETHER_MOTO_SERVER` if set, else
    /// `<workspace>/.venv/bin/moto_server` (created by `make venv`). A port
    /// is picked by binding `127.0.0.1:0` and releasing it again; should
    /// another process grab it first, the server exits and the whole start is
    /// retried, up to three times.
    pub async fn start() -> Result<Moto, BoxError> {
        let binary = moto_binary()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary).await {
                Ok(moto) => return Ok(moto),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| "moto_server did not start".into()))
    }

    /// One attempt of [`Moto::start`]: a fresh port, a fresh process.
    async fn start_once(binary: &Path) -> Result<Moto, BoxError> {
        let port = free_port()?;
        let log_path =
            std::env::temp_dir().join(format!("tether-moto-{}-{port}.log", std::process::id()));
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create moto log {}: {e}", log_path.display()))?;
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        // From here on, dropping `moto` kills the child, on every error path too.
        let mut moto = Moto {
            child,
            port,
            log_path,
        };
        moto.wait_until_ready().await?;
        Ok(moto)
    }

    /// Polls `GET /moto-api/` until the server answers, the child exits or
    /// [`START_TIMEOUT`] passes.
    async fn wait_until_ready(&mut self) -> Result<(), BoxError> {
        let url = format!("{}/moto-api/", self.endpoint());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "moto_server exited during start-up ({status}); its log:\n{}",
                    self.log()
                )
                .into());
            }
            let probe = http_request(Method::GET, &url, &[], Bytes::new(), Duration::from_secs(1));
            if probe.await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "moto_server did not answer on port {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The base URL of the server, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server wrote to stdout/stderr so far (its request log).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Environment for a process under test that makes it talk to this
    /// server only: endpoint, static test credentials, region, no IMDS.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint().as_str()),
            ("AWS_ACCESS_KEY_ID", TEST_CREDENTIAL),
            ("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIAL),
            ("AWS_SESSION_TOKEN", TEST_CREDENTIAL),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// An [`SdkConfig`] for the test's own SDK clients, pointed at this
    /// server with static test credentials in `us-east-1`.
    ///
    /// The programmatic endpoint URL takes precedence over any
    /// `AWS_ENDPOINT_URL*` variable or profile setting of the test process.
    pub async fn sdk_config(&self) -> SdkConfig {
        let credentials = Credentials::new(
            TEST_CREDENTIAL,
            TEST_CREDENTIAL,
            Some(TEST_CREDENTIAL.to_owned()),
            None,
            "tether-tests-moto",
        );
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(credentials)
            .endpoint_url(self.endpoint())
            .load()
            .await
    }

    /// An S3 client for this server, with path-style addressing (moto on
    /// `127.0.0.1` cannot serve virtual-hosted bucket names).
    pub fn s3(&self, cfg: &SdkConfig) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(cfg)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Drop for Moto {
    /// Kills (SIGKILL) and reaps the server. The log file is removed, unless
    /// the thread is panicking (a failing test), so it can be inspected.
    fn drop(&mut self) {
        // Errors here mean the child is already gone; nothing left to do.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("moto_server log kept at {}", self.log_path.display());
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// The `moto_server` binary: `$TETHER_MOTO_SERVER`, else the workspace venv.
fn moto_binary() -> Result<PathBuf, BoxError> {
    let path = match std::env::var_os("TETHER_MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join(".venv/bin/moto_server"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "moto_server not found at {}: run `make venv` (or set TETHER_MOTO_SERVER)",
            path.display()
        )
        .into())
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, BoxError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// One plain HTTP/1 request to a loopback URL; returns status and body.
///
/// Used for moto's readiness probe and for the EC2 Query API calls in
/// [`crate::aws`] (there is deliberately no EC2 SDK crate).
pub(crate) async fn http_request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), BoxError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body))?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {url} within {timeout:?}"))?
}

/// Runs a script of the workspace with the lint venv's Python (which `make
/// lint-template` creates, with SAM CLI and cfn-lint) and returns its
/// standard output; a failure carries its standard error.
pub fn lint_python(script: &str, args: &[String]) -> Result<Vec<u8>, BoxError> {
    let root = workspace_root();
    let python = root.join(".venv-lint/bin/python");
    if !python.is_file() {
        return Err(format!(
            "{} is missing: run `make lint-template` (or `make test`) first",
            python.display()
        )
        .into());
    }
    let out = std::process::Command::new(python)
        .arg(root.join(script))
        .args(args)
        .current_dir(&root)
        .output()?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{script} failed: {}", String::from_utf8_lossy(&out.stderr)).into())
    }
}

//! Self-test of the test support: the moto fixtures and the Lambda Runtime
//! API emulator (driven by small Python stand-ins for a function binary).
//!
//! Needs `moto_server` (`make venv`, or `TETHER_MOTO_SERVER`) and `python3`.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use aws_sdk_s3::primitives::ByteStream;
use serde_json::json;
use tether_tests::aws::{
    LbKind, create_bucket, create_load_balancer, create_nlb_target_group, create_vpc_with_subnets,
    registered_targets,
};
use tether_tests::lambda::FunctionProcess;
use tether_tests::moto::{BoxError, Moto};

#[tokio::test]
async fn moto_fixtures_work_and_the_server_stops_on_drop() -> Result<(), BoxError> {
    let moto = Moto::start().await?;
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
    let env = moto.env();
    assert!(env.contains(&("AWS_ENDPOINT_URL".to_owned(), moto.endpoint())));
    let cfg = moto.sdk_config().await;

    // S3, path-style.
    let s3 = moto.s3(&cfg);
    create_bucket(&s3, "tether-selftest").await?;
    s3.put_object()
        .bucket("tether-selftest")
        .key("state/answers.json")
        .body(ByteStream::from_static(b"{\"ips\":[]}"))
        .send()
        .await?;
    let object = s3
        .get_object()
        .bucket("tether-selftest")
        .key("state/answers.json")
        .send()
        .await?;
    let body = object.body.collect().await?.into_bytes();
    assert_eq!(&body[..], b"{\"ips\":[]}");

    // EC2 through the Query API, then ELBv2 through the SDK.
    let net = create_vpc_with_subnets(&moto).await?;
    assert!(net.vpc_id.starts_with("vpc-"), "{net:?}");
    assert_eq!(net.subnet_ids.len(), 2, "{net:?}");
    assert!(net.subnet_ids.iter().all(|id| id.starts_with("subnet-")));

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
    let alb = create_load_balancer(&elb, &net, "selftest-alb", LbKind::Application).await?;
    assert!(
        alb.arn.contains(":loadbalancer/app/selftest-alb/"),
        "{alb:?}"
    );
    assert!(!alb.dns_name.is_empty());

    let tg_arn = create_nlb_target_group(&elb, &net, "selftest-tg", 80).await?;
    assert!(tg_arn.contains(":targetgroup/selftest-tg/"), "{tg_arn}");
    assert_eq!(registered_targets(&elb, &tg_arn).await?, vec![]);

    elb.register_targets()
        .target_group_arn(&tg_arn)
        .targets(
            TargetDescription::builder()
                .id("10.0.1.10")
                .port(80)
                .build(),
        )
        .send()
        .await?;
    let targets = registered_targets(&elb, &tg_arn).await?;
    println!("registered targets: {targets:?}");
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!((targets[0].0.as_str(), targets[0].1), ("10.0.1.10", 80));
    assert!(!targets[0].2.is_empty(), "{targets:?}");

    let port = moto.port();
    drop(moto);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "moto_server still accepts connections on port {port} after drop"
    );
    Ok(())
}

/// A stand-in function: echoes the first event (with the Lambda headers it
/// saw), answers the second with an error. One keep-alive connection, like
/// `lambda_runtime`.
const ECHO_FUNCTION: &str = r#"
import http.client, json, os, sys
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
base = "/2018-06-01/runtime"
print("stand-in started as", os.environ["AWS_LAMBDA_FUNCTION_NAME"], flush=True)
calls = 0
while True:
    conn.request("GET", base + "/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    calls += 1
    print("invocation", calls, rid, file=sys.stderr, flush=True)
    if calls == 1:
        body = {
            "echo": event,
            "deadline_ms": int(r.getheader("Lambda-Runtime-Deadline-Ms")),
            "arn": r.getheader("Lambda-Runtime-Invoked-Function-Arn"),
            "trace": r.getheader("Lambda-Runtime-Trace-Id"),
            "content_type": r.getheader("Content-Type"),
            "log_format": os.environ["AWS_LAMBDA_LOG_FORMAT"],
        }
        path = base + "/invocation/" + rid + "/response"
    else:
        body = {"errorType": "Boom", "errorMessage": "second call fails"}
        path = base + "/invocation/" + rid + "/error"
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    assert r.status == 202, r.status
"#;

/// A stand-in function that fails its initialisation, as a function with a
/// bad configuration does.
const INIT_ERROR_FUNCTION: &str = r#"
import http.client, json, os, sys
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
print("config error: TETHER_SETTING is missing", file=sys.stderr, flush=True)
body = {"errorType": "ConfigError", "errorMessage": "TETHER_SETTING is missing"}
conn.request("POST", "/2018-06-01/runtime/init/error", json.dumps(body),
             {"Lambda-Runtime-Function-Error-Type": "Runtime.InitError"})
conn.getresponse().read()
sys.exit(3)
"#;

#[tokio::test]
async fn lambda_emulator_runs_a_function_process() -> Result<(), BoxError> {
    let Some(python) = python3() else {
        println!("SKIPPED: python3 not found; the emulator self-test needs it");
        return Ok(());
    };
    let dir = scratch_dir("echo")?;
    let binary = write_script(&dir, "echo-fn", &python, ECHO_FUNCTION)?;
    let env = [("CUSTOM".to_owned(), "1".to_owned())];
    let function = FunctionProcess::spawn(&binary, &env).await?;

    let event = json!({"source": "aws.events", "detail": {"n": 1}});
    let started_ms = epoch_ms();
    let first = function
        .invoke(event.clone(), Duration::from_secs(30))
        .await?;
    println!("first invocation: {first:?}");
    let response = first
        .result
        .clone()
        .map_err(|e| format!("unexpected error: {e}"))?;
    assert_eq!(response["echo"], event);
    assert_eq!(
        response["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:echo-fn"
    );
    assert_eq!(response["content_type"], "application/json");
    assert_eq!(response["log_format"], "JSON");
    assert!(
        response["trace"]
            .as_str()
            .is_some_and(|t| t.starts_with("Root=1-"))
    );
    let deadline_ms = response["deadline_ms"].as_u64().unwrap_or_default();
    assert!(
        (started_ms + 29_000..=started_ms + 31_000).contains(&deadline_ms),
        "deadline {deadline_ms} is not about 30 s after {started_ms}"
    );
    assert!(first.duration < Duration::from_secs(10));

    let init = function.init_duration();
    println!(
        "init duration: {init:?}, peak RSS: {:?} KiB",
        function.peak_rss_kib()
    );
    assert!(init.is_some());
    assert!(function.peak_rss_kib().is_some_and(|kib| kib > 0));

    let second = function
        .invoke(json!({"n": 2}), Duration::from_secs(30))
        .await?;
    assert_ne!(second.request_id, first.request_id);
    assert_eq!(
        second.result,
        Err(json!({"errorType": "Boom", "errorMessage": "second call fails"}))
    );

    let logs = function.logs();
    assert!(logs.contains("stand-in started as echo-fn"), "{logs}");
    assert!(
        logs.contains(&format!("invocation 2 {}", second.request_id)),
        "{logs}"
    );
    drop(function);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn lambda_emulator_reports_an_init_error_and_exit() -> Result<(), BoxError> {
    let Some(python) = python3() else {
        println!("SKIPPED: python3 not found; the emulator self-test needs it");
        return Ok(());
    };
    let dir = scratch_dir("init-error")?;
    let binary = write_script(&dir, "broken-fn", &python, INIT_ERROR_FUNCTION)?;
    let mut function = FunctionProcess::spawn(&binary, &[]).await?;

    let report = function.wait_exit(Duration::from_secs(20)).await?;
    println!("exit report: {report:?}");
    assert_eq!(report.status.code(), Some(3));
    assert_eq!(
        report.init_error,
        Some(json!({"errorType": "ConfigError", "errorMessage": "TETHER_SETTING is missing"}))
    );
    assert_eq!(function.init_duration(), None);
    assert_eq!(function.peak_rss_kib(), None);
    assert!(function.logs().contains("TETHER_SETTING is missing"));

    let refused = function.invoke(json!({}), Duration::from_secs(1)).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("TETHER_SETTING is missing"), "{message}");
    drop(function);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The real `python3` interpreter (not a pyenv shim, which needs more of the
/// environment than the emulator passes on), or `None` without one.
fn python3() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8(output.stdout).ok()?;
    let path = PathBuf::from(path.trim());
    (output.status.success() && path.is_file()).then_some(path)
}

/// A fresh directory for one test's stand-in binary.
fn scratch_dir(name: &str) -> Result<PathBuf, BoxError> {
    let dir = std::env::temp_dir().join(format!(
        "tether-selftest-{name}-{}-{}",
        std::process::id(),
        epoch_ms()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes an executable Python script `dir/name` run by `python`.
fn write_script(dir: &Path, name: &str, python: &Path, source: &str) -> Result<PathBuf, BoxError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!{}\n{source}", python.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

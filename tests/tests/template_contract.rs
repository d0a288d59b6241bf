//! The template-binary contract: each built binary, started with the
//! environment the rendered template gives its function (every part on,
//! parameters filled in as for a full deployment), passes its cold-start
//! validation, and the metrics it publishes are the ones the template's
//! alarms watch (namespace, name, every dimension and its value). A variable
//! or a metric renamed on either side fails here.
//!
//! The environments and alarms come from `tests/template/render.py`, run with
//! the lint venv that `make lint-template` (part of `make test`) creates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tether_tests::aws::create_bucket;
use tether_tests::https::{Behaviour, TestCa, TestServer};
use tether_tests::moto::{BoxError, lint_python};
use tether_tests::world::{World, scheduled_event};

/// The name the canary's endpoints are served under (connect_to pins loopback).
const HOST: &str = "api.contract.test";

type Environments = BTreeMap<String, BTreeMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Alarm {
    alarm: String,
    namespace: String,
    metric_name: String,
    dimensions: BTreeMap<String, String>,
}

fn render<T: serde::de::DeserializeOwned>(what: &str) -> Result<T, BoxError> {
    let out = lint_python("tests/template/render.py", &[what.to_owned()])?;
    Ok(serde_json::from_slice(&out)?)
}

/// What a function's logical id is called once deployed (`Ref`), as
/// render.py assumes it.
fn deployed_name(logical: &str) -> String {
    format!("tether-{logical}-0123456789ab")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_accepts_the_template_environment_and_feeds_its_alarms() -> Result<(), BoxError>
{
    let environments: Environments = render("environments")?;
    let alarms: Vec<Alarm> = render("alarms")?;
    let w = World::start().await?;
    // The canary's endpoints are on the internet in the rendered template:
    // here the same names point at a server on loopback, over https so that
    // the certificate alarms' metric (CertificateExpiryDays) is published too.
    let ca = TestCa::new("tether contract CA")?;
    let server = TestServer::https(Behaviour::ok(), &ca.issue_valid(&[HOST], 30)?).await?;
    for (logical, binary) in [
        ("TargetSyncFunction", "target-sync"),
        ("HealthCanaryFunction", "health-canary"),
        ("CustomResourcesFunction", "custom-resources"),
    ] {
        let vars = environments
            .get(logical)
            .ok_or_else(|| format!("the rendered template has no {logical}"))?;
        if let Some(bucket) = vars.get("STATE_BUCKET") {
            create_bucket(&w.s3, bucket).await?;
        }
        let mut env = w.moto.env();
        env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.push(("AWS_LAMBDA_FUNCTION_NAME".into(), deployed_name(logical)));
        let f = w.spawn(binary, &env).await?;
        f.ready(Duration::from_secs(20)).await?;
        let logs = f.logs();
        assert!(!logs.contains("invalid configuration"), "{binary}: {logs}");
        drop(f);
        let local = match binary {
            "target-sync" => env,
            "health-canary" => {
                // The template's endpoints, by name, served on loopback.
                let rendered: Vec<Value> =
                    serde_json::from_str(vars.get("CANARY_TARGETS").ok_or("no CANARY_TARGETS")?)?;
                let port = server.port();
                let url = format!("https://{HOST}:{port}/");
                let targets: Vec<Value> = rendered
                    .iter()
                    .map(|t| {
                        json!({"name": t["name"], "url": url, "connect_to": format!("127.0.0.1:{port}"),
                               "ca_bundle": ca.pem()})
                    })
                    .collect();
                // One round in a 5 s minute instead of the template's six in 60 s.
                let replaced = [
                    "CANARY_TARGETS",
                    "PROBES_PER_INVOCATION",
                    "CANARY_MINUTE_MS",
                ];
                env.into_iter()
                    .filter(|(k, _)| !replaced.contains(&k.as_str()))
                    .chain([
                        ("CANARY_TARGETS".into(), Value::Array(targets).to_string()),
                        ("PROBES_PER_INVOCATION".into(), "1".into()),
                        ("CANARY_MINUTE_MS".into(), "5000".into()),
                    ])
                    .collect()
            }
            _ => continue,
        };
        let f = w.spawn(binary, &local).await?;
        let run = f.invoke(scheduled_event(), Duration::from_secs(60)).await?;
        run.result.map_err(|e| {
            format!(
                "{binary} with the template's environment: {e}\n{}",
                f.logs()
            )
        })?;
    }

    for alarm in &alarms {
        let published = published(&w, &alarm.namespace, &alarm.metric_name).await?;
        assert!(
            published.contains(&alarm.dimensions),
            "alarm {} watches {}/{} {:?}, but the functions publish it with {:?}",
            alarm.alarm,
            alarm.namespace,
            alarm.metric_name,
            alarm.dimensions,
            published
        );
    }
    assert!(
        alarms.len() >= 4,
        "the full deployment has alarms: {alarms:?}"
    );
    Ok(())
}

/// The dimension sets a metric was published with (ListMetrics).
async fn published(
    w: &World,
    namespace: &str,
    name: &str,
) -> Result<BTreeSet<BTreeMap<String, String>>, BoxError> {
    let out = w
        .cloudwatch
        .list_metrics()
        .namespace(namespace)
        .metric_name(name)
        .send()
        .await?;
    Ok(out
        .metrics()
        .iter()
        .map(|m| {
            m.dimensions()
                .iter()
                .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
                .collect()
        })
        .collect())
}

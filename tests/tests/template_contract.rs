//! The template-binary contract: each built binary, started with the
//! environment the rendered template gives its function (every part on,
//! parameters filled in as for a full deployment), passes its cold-start
//! validation. A variable renamed on either side fails here.
//!
//! The environments come from `tests/template/render.py environments`, run
//! with the lint venv that `make lint-template` (part of `make test`) creates.

use std::collections::BTreeMap;
use std::time::Duration;

use tether_tests::aws::create_bucket;
use tether_tests::moto::{BoxError, workspace_root};
use tether_tests::world::{World, scheduled_event};

type Environments = BTreeMap<String, BTreeMap<String, String>>;

fn rendered() -> Result<Environments, BoxError> {
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
        .arg(root.join("tests/template/render.py"))
        .arg("environments")
        .current_dir(&root)
        .output()?;
    if !out.status.success() {
        return Err(format!("render.py failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_accepts_the_environment_the_template_gives_it() -> Result<(), BoxError> {
    let environments = rendered()?;
    let w = World::start().await?;
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
        let f = w.spawn(binary, &env).await?;
        f.ready(Duration::from_secs(20)).await?;
        let logs = f.logs();
        assert!(!logs.contains("invalid configuration"), "{binary}: {logs}");
        if binary == "target-sync" {
            // Its sources are all on loopback (none is tagged): one real run.
            let run = f.invoke(scheduled_event(), Duration::from_secs(30)).await?;
            run.result
                .map_err(|e| format!("{binary} with the template's environment: {e}"))?;
        }
    }
    Ok(())
}

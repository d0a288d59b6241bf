//! `make bench`: speed, memory and size of the release binaries, measured
//! against local parts and written to `BENCHMARKS.md`.

pub mod canary;
pub mod target_sync;

use std::fmt::Write as _;
use std::time::Duration;

use crate::moto::BoxError;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub value: String,
    pub note: String,
}

/// A part of the report.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    /// What was measured and how.
    pub method: String,
    pub rows: Vec<Row>,
}

impl Section {
    pub fn new(title: &str, method: &str) -> Self {
        Self {
            title: title.to_owned(),
            method: method.to_owned(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, what: &str, value: impl Into<String>, note: &str) {
        self.rows.push(Row {
            what: what.to_owned(),
            value: value.into(),
            note: note.to_owned(),
        });
    }
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The median and the maximum of some durations.
pub fn median_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let median = samples.get(samples.len() / 2).copied().unwrap_or_default();
    let max = samples.last().copied().unwrap_or_default();
    (median, max)
}

/// Renders the report as Markdown.
pub fn render(sections: &[Section], machine: &str) -> String {
    let mut out = String::from("# Benchmarks\n\nWritten by `make bench`; do not edit by hand.\n\n");
    let _ = writeln!(out, "Machine: {machine}\n");
    for s in sections {
        let _ = writeln!(out, "## {}\n\n{}\n", s.title, s.method);
        out.push_str("| measure | value | note |\n|---|---|---|\n");
        for r in &s.rows {
            let _ = writeln!(out, "| {} | {} | {} |", r.what, r.value, r.note);
        }
        out.push('\n');
    }
    out
}

/// Runs every part of the bench, or those `TETHER_BENCH` names
/// (comma-separated: `target-sync`, `canary`, `artifacts`; `quota` alone
/// runs target-sync's 3,000-group part only).
pub async fn run_all() -> Result<Vec<Section>, BoxError> {
    let only = std::env::var("TETHER_BENCH").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    let mut sections = Vec::new();
    if wanted("target-sync") {
        sections.extend(target_sync::run().await?);
    } else if wanted("quota") {
        sections.push(target_sync::quota().await?);
    }
    if wanted("canary") {
        sections.extend(canary::run().await?);
    }
    if wanted("artifacts") {
        sections.push(template()?);
        sections.push(artifacts()?);
    }
    Ok(sections)
}

/// The template's size against CloudFormation's quota for a template body
/// passed inline (51,200 bytes; 1 MB from S3, as `sam deploy` passes it).
fn template() -> Result<Section, BoxError> {
    const INLINE: u64 = 51_200;
    let path = crate::moto::workspace_root().join("template.yaml");
    let size = std::fs::metadata(&path)?.len();
    let mut s = Section::new(
        "template.yaml",
        "The template as written (only the SAM transform, no Fn::ForEach): its size against CloudFormation's \
         quota for a template body passed inline, without S3.",
    );
    s.row(
        "size",
        format!("{size} bytes"),
        &if size <= INLINE {
            format!(
                "{} bytes under the {INLINE}-byte inline quota",
                INLINE - size
            )
        } else {
            format!(
                "{} bytes over the {INLINE}-byte inline quota: deploy from S3 (sam deploy does)",
                size - INLINE
            )
        },
    );
    Ok(s)
}

/// First `sam build`s this code cannot measure again (another commit or
/// another profile), with where each comes from.
const FIRST_BUILD_BEFORE: [(&str, &str, &str); 3] = [
    (
        "first `make build`, before",
        "797 s",
        "BENCHMARKS.md at commit eef8c8b (make bench), before target-sync's fleet work and the canary's \
         per-zone functions added code and dependencies; lto fat, codegen-units 1, aws-sdk-ec2 codegen-units 16",
    ),
    (
        "first `make build`, thin LTO (tried, not kept)",
        "1037 s",
        "commit 1607449, `make build` into an empty CARGO_TARGET_DIR on an earlier 2-core machine, alone (CPU 1916 s): \
         target-sync 772 s (every dependency), health-canary 123 s, custom-resources 115 s; binaries \
         target-sync 11.12 MiB, health-canary 10.23 MiB, custom-resources 11.72 MiB, about 25% above fat LTO's (8.96, 8.29 and 9.33 MiB)",
    ),
    (
        "first `make build`, fat LTO, on that earlier machine",
        "1221 s",
        "commit 9631d61, the profile kept (the one measured below), the same way on the machine of the thin LTO row \
         (CPU 1808 s): the figure to compare with 1037 s; machines of this kind differ by up to about 1.7x in speed",
    ),
];

/// The arm64 `bootstrap` files that `sam build` (`make build`) produced.
fn artifacts() -> Result<Section, BoxError> {
    let mut s = Section::new(
        "Lambda artifacts (arm64, from `sam build`)",
        "The `bootstrap` binaries in `.aws-sam/build/` that `sam deploy` uploads: cross-compiled by \
         cargo-lambda with zig for `provided.al2023` on arm64, release profile (fat lto, codegen-units 1, \
         opt-level s, strip). Zip: deflate, as packaged.",
    );
    let root = crate::moto::workspace_root();
    let timing = |file: &str| {
        std::fs::read_to_string(root.join(".aws-sam").join(file))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    };
    // The first build before this profile, which this code cannot measure
    // again: kept with where it comes from.
    for (what, value, note) in FIRST_BUILD_BEFORE {
        s.row(what, value, note);
    }
    // The first build (every crate compiled) is kept apart from the latest.
    match timing("build-time-cold.json") {
        Some(t) => s.row(
            "first `make build` (sam build of the three functions), now",
            format!("{} s", t["seconds"]),
            &format!(
                "CPU (user + sys) {}; commit {}{}: cargo had no arm64 release artifacts, every crate compiled, as in a user's first `sam build`",
                t.get("cpu_seconds").map_or("not recorded".to_owned(), |c| format!("{c} s")),
                t["commit"].as_str().unwrap_or("not recorded"),
                if t["dirty"] == true { " with changes" } else { "" },
            ),
        ),
        None => s.row(
            "first `make build`, now",
            "not measured",
            "run `make build` with no arm64 release artifacts in CARGO_TARGET_DIR",
        ),
    }
    if let Some(t) = timing("build-time.json").filter(|t| t["cold"] != true) {
        s.row(
            "latest `make build`",
            format!("{} s", t["seconds"]),
            "incremental: cargo's arm64 artifacts were there",
        );
    }
    match ec2_compile_time() {
        Some((secs, file)) => s.row(
            "aws-sdk-ec2 compile (release, codegen-units 16)",
            format!("{secs:.0} s"),
            &format!("the largest crate, from `cargo build --release --timings` ({file})"),
        ),
        None => s.row(
            "aws-sdk-ec2 compile",
            "not measured",
            "run `cargo build --release --timings` on a build that compiles it",
        ),
    }
    for (logical, name) in [
        ("TargetSyncFunction", "target-sync"),
        ("HealthCanaryFunction", "health-canary"),
        ("CustomResourcesFunction", "custom-resources"),
    ] {
        let bootstrap = root.join(".aws-sam/build").join(logical).join("bootstrap");
        if bootstrap.is_file() {
            let size = std::fs::metadata(&bootstrap)?.len();
            let zip = target_sync::zip_size(&bootstrap)?;
            s.row(
                name,
                target_sync::mib(size),
                &format!("zip {}", target_sync::mib(zip)),
            );
        } else {
            s.row(name, "not measured", "run `make build` before `make bench`");
        }
    }
    Ok(s)
}

/// How long aws-sdk-ec2 took in the newest release `--timings` report of
/// the shared target dir that compiled it.
fn ec2_compile_time() -> Option<(f64, String)> {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_TARGET_DIR")?).join("cargo-timings");
    let mut reports: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cargo-timing-"))
        })
        .collect();
    reports.sort();
    reports.iter().rev().find_map(|path| {
        let html = std::fs::read_to_string(path).ok()?;
        if !html.contains("<td>Profile:</td><td>release</td>") {
            return None;
        }
        let start = html.find("const UNIT_DATA = ")? + "const UNIT_DATA = ".len();
        let end = start + html[start..].find("];")? + 1;
        let units: serde_json::Value = serde_json::from_str(&html[start..end]).ok()?;
        let ec2 = units
            .as_array()?
            .iter()
            .find(|u| u["name"] == "aws-sdk-ec2")?;
        let name = path.file_name()?.to_string_lossy().into_owned();
        Some((ec2["duration"].as_f64()?, name))
    })
}

/// The machine the figures come from.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}, {}", std::env::consts::ARCH)
}

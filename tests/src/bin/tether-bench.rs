//! `make bench`: measures the release binaries and writes BENCHMARKS.md.

use std::process::ExitCode;

use tether_tests::bench;

#[tokio::main]
async fn main() -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "BENCHMARKS.md".into());
    let sections = match bench::run_all().await {
        Ok(sections) => sections,
        Err(e) => {
            eprintln!("bench failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = bench::render(&sections, &bench::machine());
    print!("{report}");
    match std::fs::write(&out, report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write {out}: {e}");
            ExitCode::FAILURE
        }
    }
}

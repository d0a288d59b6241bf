//! `make demo`: tether's functions at work against local parts.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match tether_tests::demo::run_all().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

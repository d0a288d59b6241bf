//! `make demo`: each function at work against local parts, no AWS account.
//!
//! Every part starts what it needs (moto, a DNS server, HTTP servers) on
//! loopback and stops it when done.

pub mod canary;
pub mod custom_resources;
pub mod target_sync;

use crate::moto::BoxError;

/// Runs every part of the demo, in order, then prints what each showed
/// (each part's summary is made of what it observed, not written ahead).
pub async fn run_all() -> Result<(), BoxError> {
    let summaries = [
        target_sync::run().await?,
        canary::run().await?,
        custom_resources::run().await?,
    ];
    heading("make demo: done");
    for line in summaries {
        println!("- {line}");
    }
    println!(
        "\nEverything ran against moto and a DNS server on loopback, started and stopped by the demo. \
         Deploy to AWS: sam build && sam deploy --guided (README.md)."
    );
    Ok(())
}

/// Prints a part's heading.
pub fn heading(title: &str) {
    println!("\n=== {title} ===\n");
}

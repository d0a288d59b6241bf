//! `make demo`: each function at work against local parts, no AWS account.
//!
//! Every part starts what it needs (moto, a DNS server, HTTP servers) on
//! loopback and stops it when done.

pub mod canary;
pub mod custom_resources;
pub mod target_sync;

use crate::moto::BoxError;

/// Runs every part of the demo, in order.
pub async fn run_all() -> Result<(), BoxError> {
    target_sync::run().await?;
    canary::run().await?;
    custom_resources::run().await?;
    Ok(())
}

/// Prints a part's heading.
pub fn heading(title: &str) {
    println!("\n=== {title} ===\n");
}

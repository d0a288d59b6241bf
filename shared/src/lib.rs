//! tether's library: the logic of every function and the AWS adapters.
//!
//! One folder per function ([`sync`] for target-sync, [`canary`] for
//! health-canary, [`cfn`] for custom-resources); the crate root keeps what
//! they share: AWS clients, reading the environment, the deadline, fields,
//! metrics and the resolver.

pub mod aws;
pub mod canary;
pub mod cfn;
pub mod config;
pub mod deadline;
pub mod dns;
pub mod fields;
pub mod metrics;
pub mod startup;
pub mod sync;

//! tether's library: the logic of every function and the AWS adapters.
//!
//! Decisions are pure functions over plain data ([`plan`], [`config`],
//! [`state`]); I/O sits behind small traits ([`dns::Lookup`],
//! [`elb::TargetGroups`], [`store::StateStore`], [`metrics::Metrics`]) with
//! one adapter each, and [`sync`] is the engine that joins them.

pub mod aws;
pub mod canary;
pub mod cfn;
pub mod config;
pub mod deadline;
pub mod dns;
pub mod elb;
pub mod fields;
pub mod mapping;
pub mod metrics;
pub mod plan;
pub mod state;
pub mod store;
pub mod sync;

//! target-sync: keeps NLB IP target groups equal to their sources.
//!
//! Decisions are pure functions over plain data ([`plan`], [`config`],
//! [`state`], [`tags`]); I/O sits behind small traits, one adapter each:
//! [`crate::dns::Lookup`] and [`interfaces::Interfaces`] (the sources),
//! [`groups::TargetGroups`], [`store::StateStore`], [`crate::metrics::Metrics`].
//! [`engine`] joins them; [`rotation`] chooses the groups a run reads.
//! `fakes` (feature `fakes`, and in unit tests) holds in-memory fakes of
//! every trait, shared by the engine's tests and the soak.

pub mod config;
pub mod engine;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod groups;
pub mod interfaces;
pub mod mapping;
pub mod plan;
pub mod report;
pub mod rotation;
pub mod source;
pub mod state;
pub mod store;
pub mod tags;

pub use config::SyncConfig;
pub use engine::{AwsEngine, Engine, GROUP_FAILED, GROUP_SYNCED, state_key};
pub use report::{ErrorKind, MappingError, MappingReport, SyncFailed, SyncReport};

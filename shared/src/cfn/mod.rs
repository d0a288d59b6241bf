//! custom-resources: CloudFormation custom resources that never hang a stack.
//!
//! - [`event`]: the request as CloudFormation sends it.
//! - [`response`]: the response body, never over 4096 bytes.
//! - [`url`]: where a response may go (https; http to loopback only when
//!   allowed) and how its URL shows in logs (never the signature).
//! - [`put`]: the response PUT, retried with backoff until the deadline.
//! - [`dispatch`]: one event in, exactly one response out, whatever the
//!   handler does (fails, panics, hangs past the deadline).
//! - [`resources`]: the resource types ([`dns_addresses`], [`target_sync`],
//!   [`empty_bucket`]) behind one [`dispatch::Handler`].
//!
//! Physical ids are derived from each resource's identity (see each type's
//! `Props::physical_id`); a failed Create answers
//! [`dispatch::FAILED_CREATE_PREFIX`]`<RequestId>`, whose Delete succeeds
//! without touching anything.

pub mod dispatch;
pub mod dns_addresses;
pub mod empty_bucket;
pub mod event;
pub mod put;
pub mod resources;
pub mod response;
pub mod target_sync;
pub mod url;

pub use dispatch::{Answered, CfnError, Dispatcher};
pub use put::Responder;
pub use resources::{AwsResources, Service, Settings};

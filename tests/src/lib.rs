//! Test support for tether: real parts on loopback.
//!
//! - [`moto`]: a `moto_server` process (AWS APIs) from the project venv.
//! - [`dns`]: an authoritative DNS server (hickory-server) whose answers a test changes.
//! - [`lambda`]: a Lambda Runtime API emulator that runs a built function binary.
//! - [`aws`]: fixtures in the emulator (VPC, load balancers, target groups, buckets).
//! - [`https`]: HTTP/HTTPS servers with certificates from a test CA (health-canary).
//! - [`canary`]: health-canary under test (its setup, report, log lines, metrics).
//! - [`cfn`]: pre-signed response URLs and CloudFormation events (custom-resources).
//! - [`example`]: the example stack `examples/private-api` for the emulator's CloudFormation.
//! - [`release`]: the release (`make release`) packaged, uploaded and taken apart again in the emulator.
//! - [`demo`], [`bench`]: `make demo` and `make bench`.
//! - [`world`]: all of the above together, as target-sync tests, the demo and the bench use them.

pub mod aws;
pub mod bench;
pub mod canary;
pub mod cfn;
pub mod demo;
pub mod dns;
pub mod example;
pub mod https;
pub mod lambda;
pub mod moto;
pub mod release;
pub mod throttle;
pub mod world;

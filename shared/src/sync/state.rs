//! The state a mapping keeps in S3 between runs.
//!
//! A document is read strictly (unknown fields are an error) when it has this
//! build's `schema_version`; one with a newer version is never used nor
//! overwritten: a newer tether wrote it, and this build refuses the mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The version of [`SyncState`]'s JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

/// What one mapping remembers between runs. Targets are `ip:port`
/// (`[v6]:port` for IPv6), always with the port they are registered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncState {
    pub schema_version: u32,
    /// The addresses of the last resolution.
    pub seen: BTreeSet<IpAddr>,
    /// Registered, managed targets missing from DNS: how many successful
    /// resolutions in a row have not had them.
    pub pending: BTreeMap<SocketAddr, u32>,
    /// Targets this function registered and that are still registered.
    pub owned: BTreeSet<SocketAddr>,
}

impl Default for SyncState {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            seen: BTreeSet::new(),
            pending: BTreeMap::new(),
            owned: BTreeSet::new(),
        }
    }
}

/// Why a stored state object cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("not a valid state document: {0}")]
    Invalid(String),
    #[error("schema_version {found} is not supported (this build reads {SCHEMA_VERSION})")]
    Version { found: u32 },
    #[error(
        "schema_version {found} was written by a newer tether (this build reads {SCHEMA_VERSION}); refusing to touch the mapping: deploy the newer version"
    )]
    Newer { found: u32 },
    #[error("{size} bytes is more than a state object may hold ({MAX_STATE_BYTES} bytes)")]
    TooLarge { size: u64 },
    /// S3 did not give the object: nothing is known about it.
    #[error("could not be read: {0}")]
    Unreadable(String),
    #[error("pending count of {target} is 0")]
    ZeroCount { target: SocketAddr },
}

/// The largest state object read: far above any real group (a target is
/// about 40 bytes; a group holds at most 1000 targets in its quotas).
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
struct VersionOnly {
    schema_version: u32,
}

impl StateError {
    /// Unusable state is rebuilt; refused state stops the mapping untouched.
    pub fn refuses(&self) -> bool {
        matches!(
            self,
            StateError::Newer { .. } | StateError::TooLarge { .. } | StateError::Unreadable(_)
        )
    }
}

impl SyncState {
    pub fn decode(bytes: &[u8]) -> Result<SyncState, StateError> {
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::TooLarge {
                size: bytes.len() as u64,
            });
        }
        // The version first: a newer layout is not this build's to judge.
        if let Ok(VersionOnly { schema_version }) = serde_json::from_slice(bytes)
            && schema_version > SCHEMA_VERSION
        {
            return Err(StateError::Newer {
                found: schema_version,
            });
        }
        let state: SyncState =
            serde_json::from_slice(bytes).map_err(|e| StateError::Invalid(e.to_string()))?;
        if state.schema_version != SCHEMA_VERSION {
            return Err(StateError::Version {
                found: state.schema_version,
            });
        }
        if let Some((target, _)) = state.pending.iter().find(|(_, n)| **n == 0) {
            return Err(StateError::ZeroCount { target: *target });
        }
        Ok(state)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain maps of strings and numbers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// The state as found before a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// No state object yet: a first run.
    Fresh,
    Valid(SyncState),
    /// An object exists but cannot be used; it is not "no state". It is
    /// kept aside and rebuilt, deregistering nothing that run.
    Corrupt(StateError),
    /// An object this build must not touch (newer schema, too large).
    Refused(StateError),
}

impl Prior {
    pub fn from_decoded(result: Result<SyncState, StateError>) -> Prior {
        match result {
            Ok(state) => Prior::Valid(state),
            Err(e) if e.refuses() => Prior::Refused(e),
            Err(e) => Prior::Corrupt(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_ipv4_and_ipv6_targets() {
        let mut state = SyncState::default();
        state.seen.insert("10.0.0.1".parse().unwrap());
        state.pending.insert("10.0.0.2:443".parse().unwrap(), 2);
        state.pending.insert("[fd00::1]:443".parse().unwrap(), 1);
        state.owned.insert("10.0.0.1:443".parse().unwrap());
        let bytes = state.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"[fd00::1]:443\": 1"), "{text}");
        assert_eq!(SyncState::decode(&bytes).unwrap(), state);
    }

    #[test]
    fn bad_documents_are_errors_not_empty_state() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "not a valid state"),
            (b"{\"schema_version\":1}", "missing field"),
            (
                b"{\"schema_version\":0,\"seen\":[],\"pending\":{},\"owned\":[]}",
                "schema_version 0",
            ),
            (
                b"{\"schema_version\":1,\"seen\":[\"x\"],\"pending\":{},\"owned\":[]}",
                "invalid IP",
            ),
            (
                b"{\"schema_version\":1,\"seen\":[],\"pending\":{\"10.0.0.1:80\":0},\"owned\":[]}",
                "is 0",
            ),
        ];
        for (bytes, needle) in cases {
            let err = SyncState::decode(bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn a_newer_document_is_refused_not_rebuilt() {
        let newer = br#"{"schema_version":2,"seen":[],"targets":{"10.0.0.1:80":{"absent":2}}}"#;
        let err = SyncState::decode(newer).unwrap_err();
        assert_eq!(err, StateError::Newer { found: 2 });
        assert!(matches!(Prior::from_decoded(Err(err)), Prior::Refused(_)));
        let big = vec![b' '; MAX_STATE_BYTES as usize + 1];
        assert!(SyncState::decode(&big).unwrap_err().refuses());
    }

    #[test]
    fn an_unknown_field_in_this_version_is_unusable() {
        let extra = br#"{"schema_version":1,"seen":[],"pending":{},"owned":[],"x":1}"#;
        let err = SyncState::decode(extra).unwrap_err();
        assert!(!err.refuses(), "{err}");
    }
}

//! The state a mapping keeps in S3 between runs.
//!
//! A document is read strictly (unknown fields are an error) when it has a
//! `schema_version` this build knows: the current one, or an older one,
//! which is read and upgraded (its countdowns restart: it carries no time).
//! One with a newer version is never used nor overwritten: a newer tether
//! wrote it, and this build refuses the mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The version of [`SyncState`]'s JSON layout.
/// - 1: `seen`, `pending`, `owned`.
/// - 2: adds `counted_at` and `in_sync`.
pub const SCHEMA_VERSION: u32 = 2;

/// What one mapping remembers between runs. Targets are `ip:port`
/// (`[v6]:port` for IPv6), always with the port they are registered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncState {
    pub schema_version: u32,
    /// The addresses of the last observation written: a record for
    /// people, and, while `in_sync`, what the next run compares its source
    /// with to know whether the group is quiet.
    pub seen: BTreeSet<IpAddr>,
    /// Registered, managed targets missing from the source: how many
    /// complete observations in a row have not had them.
    pub pending: BTreeMap<SocketAddr, u32>,
    /// Targets this function registered and that are still registered.
    pub owned: BTreeSet<SocketAddr>,
    /// While `pending` is not empty: when (Unix seconds) the run that last
    /// counted its absences started. Counts a few schedule periods older
    /// than a run have expired and start over; a second run in the same
    /// period (a retry, an overlap) counts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<u64>,
    /// The run that wrote this left the group holding every address of
    /// `seen` on the mapping's port, with nothing counting down.
    pub in_sync: bool,
}

impl Default for SyncState {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            seen: BTreeSet::new(),
            pending: BTreeMap::new(),
            owned: BTreeSet::new(),
            counted_at: None,
            in_sync: false,
        }
    }
}

/// Schema version 1, as written by earlier releases.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateV1 {
    #[allow(dead_code)]
    schema_version: u32,
    seen: BTreeSet<IpAddr>,
    pending: BTreeMap<SocketAddr, u32>,
    owned: BTreeSet<SocketAddr>,
}

impl From<StateV1> for SyncState {
    /// Version 1 kept no time: its counts cannot be dated, so they count
    /// as expired (they start over, which delays a removal, never hastens
    /// it), and nothing says the group was left in sync.
    fn from(v1: StateV1) -> Self {
        SyncState {
            seen: v1.seen,
            pending: v1.pending,
            owned: v1.owned,
            ..SyncState::default()
        }
    }
}

/// Whether `next` must be written over `stored`: it differs in something a
/// later run decides on. `seen` is a record, compared only while the state
/// says the group is in sync (the next run reads it to know whether the
/// source changed); so a name whose answers vary (saturated, partial)
/// writes nothing by itself.
pub fn needs_write(stored: Option<&SyncState>, next: &SyncState) -> bool {
    let Some(stored) = stored else {
        return true;
    };
    stored.pending != next.pending
        || stored.owned != next.owned
        || stored.in_sync != next.in_sync
        || stored.counted_at != next.counted_at
        || stored.schema_version != next.schema_version
        || (next.in_sync && stored.seen != next.seen)
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
        let invalid = |e: serde_json::Error| StateError::Invalid(e.to_string());
        let state: SyncState = match serde_json::from_slice::<VersionOnly>(bytes) {
            Ok(VersionOnly { schema_version: 1 }) => {
                SyncState::from(serde_json::from_slice::<StateV1>(bytes).map_err(invalid)?)
            }
            _ => serde_json::from_slice(bytes).map_err(invalid)?,
        };
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

    /// The document to write; an error, never an empty or unreadable
    /// document, when it cannot be made or would be too large to be read
    /// back.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StateError::Invalid(e.to_string()))?;
        let size = bytes.len() as u64;
        if size > MAX_STATE_BYTES {
            return Err(StateError::TooLarge { size });
        }
        Ok(bytes)
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
        state.counted_at = Some(1_764_000_000);
        let bytes = state.encode().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"[fd00::1]:443\": 1"), "{text}");
        assert_eq!(SyncState::decode(&bytes).unwrap(), state);
    }

    #[test]
    fn a_version_1_document_is_read_with_its_counts_undated() {
        let v1 = br#"{"schema_version":1,"seen":["10.0.0.1"],"pending":{"10.0.0.2:80":2},"owned":["10.0.0.1:80"]}"#;
        let state = SyncState::decode(v1).unwrap();
        assert_eq!(state.schema_version, SCHEMA_VERSION);
        assert_eq!(state.pending[&"10.0.0.2:80".parse().unwrap()], 2);
        assert_eq!((state.counted_at, state.in_sync), (None, false));
        // Strict in its own layout too.
        let extra = br#"{"schema_version":1,"seen":[],"pending":{},"owned":[],"in_sync":true}"#;
        assert!(!SyncState::decode(extra).unwrap_err().refuses());
    }

    #[test]
    fn bad_documents_are_errors_not_empty_state() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "not a valid state"),
            (b"{\"schema_version\":2}", "missing field"),
            (
                b"{\"schema_version\":0,\"seen\":[],\"pending\":{},\"owned\":[],\"in_sync\":false}",
                "schema_version 0",
            ),
            (
                b"{\"schema_version\":2,\"seen\":[\"x\"],\"pending\":{},\"owned\":[],\"in_sync\":false}",
                "invalid IP",
            ),
            (
                b"{\"schema_version\":2,\"seen\":[],\"pending\":{\"10.0.0.1:80\":0},\"owned\":[],\"in_sync\":false}",
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
        let newer = br#"{"schema_version":3,"seen":[],"targets":{"10.0.0.1:80":{"absent":2}}}"#;
        let err = SyncState::decode(newer).unwrap_err();
        assert_eq!(err, StateError::Newer { found: 3 });
        assert!(matches!(Prior::from_decoded(Err(err)), Prior::Refused(_)));
        let big = vec![b' '; MAX_STATE_BYTES as usize + 1];
        assert!(SyncState::decode(&big).unwrap_err().refuses());
    }

    #[test]
    fn an_unknown_field_in_this_version_is_unusable() {
        let extra =
            br#"{"schema_version":2,"seen":[],"pending":{},"owned":[],"in_sync":false,"x":1}"#;
        let err = SyncState::decode(extra).unwrap_err();
        assert!(!err.refuses(), "{err}");
    }

    /// Today a state too large to be read back would be written, and the
    /// next run would refuse the mapping for ever: it is an error instead.
    #[test]
    fn a_state_too_large_to_read_back_is_not_encoded() {
        let mut state = SyncState::default();
        for i in 0..60_000u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            state.pending.insert(SocketAddr::new(addr.into(), 443), 1);
        }
        assert!(matches!(state.encode(), Err(StateError::TooLarge { .. })));
    }

    #[test]
    fn seen_alone_is_written_only_while_the_group_is_in_sync() {
        let stored = SyncState {
            seen: BTreeSet::from(["10.0.0.1".parse().unwrap()]),
            ..SyncState::default()
        };
        let mut next = stored.clone();
        next.seen.insert("10.0.0.2".parse().unwrap());
        assert!(!needs_write(Some(&stored), &next), "a record only");
        next.in_sync = true;
        assert!(needs_write(Some(&stored), &next));
        let mut in_sync = stored.clone();
        in_sync.in_sync = true;
        assert!(!needs_write(Some(&in_sync), &in_sync));
        assert!(needs_write(None, &in_sync));
    }
}

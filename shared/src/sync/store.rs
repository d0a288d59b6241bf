//! The mappings' state objects in S3, written with conditional writes so
//! that two overlapping runs cannot lose each other's updates, and a warm
//! container's copy of them ([`CachedStore`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::state::{MAX_STATE_BYTES, Prior, StateError, SyncState};
use crate::aws::{AwsError, Bounded, read_bounded};

/// The version of a state object a run read, for the conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// No object: write only if there still is none (`If-None-Match: *`).
    Absent,
    /// Write only if the object is still this one (`If-Match`).
    ETag(String),
}

/// A state object as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub prior: Prior,
    pub version: Version,
    /// The raw bytes when they could not be used, to keep them aside.
    pub unusable: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    #[error("state object {key} was changed by another run since it was read")]
    Conflict { key: String },
    #[error("state object {key} is not written: {error}")]
    Encode { key: String, error: StateError },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

pub trait StateStore: Send + Sync {
    fn load(&self, key: &str) -> impl Future<Output = Result<Loaded, AwsError>> + Send;

    /// Writes `state` only if the object is still at `version`; returns the
    /// new version.
    fn save(
        &self,
        key: &str,
        state: &SyncState,
        version: &Version,
    ) -> impl Future<Output = Result<Version, SaveError>> + Send;

    /// Keeps an unusable object's bytes under another key (named after its
    /// ETag, so that nothing is ever overwritten) before it is replaced.
    fn preserve(
        &self,
        key: &str,
        etag: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
}

/// [`StateStore`] in one S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    fn name(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl StateStore for S3Store {
    async fn load(&self, key: &str) -> Result<Loaded, AwsError> {
        const OP: &str = "s3:GetObject";
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(Loaded {
                    prior: Prior::Fresh,
                    version: Version::Absent,
                    unusable: None,
                });
            }
            Err(e) => return Err(AwsError::from_sdk(OP, self.name(key), &e)),
        };
        let Some(etag) = output.e_tag().map(str::to_owned) else {
            return Err(AwsError::new(OP, self.name(key), "response has no ETag"));
        };
        // Bounded: the body of an object too large is never read.
        let bytes = match read_bounded(output, MAX_STATE_BYTES)
            .await
            .map_err(|e| AwsError::new(OP, self.name(key), e))?
        {
            Bounded::Read(bytes) => bytes,
            Bounded::TooLarge(size) => {
                return Ok(Loaded {
                    prior: Prior::Refused(StateError::TooLarge { size }),
                    version: Version::ETag(etag),
                    unusable: None,
                });
            }
        };
        let prior = Prior::from_decoded(SyncState::decode(&bytes));
        let unusable = matches!(prior, Prior::Corrupt(_)).then(|| bytes.clone());
        Ok(Loaded {
            prior,
            version: Version::ETag(etag),
            unusable,
        })
    }

    async fn save(
        &self,
        key: &str,
        state: &SyncState,
        version: &Version,
    ) -> Result<Version, SaveError> {
        let body = state.encode().map_err(|error| SaveError::Encode {
            key: self.name(key),
            error,
        })?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let request = match version {
            Version::Absent => request.if_none_match("*"),
            Version::ETag(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(out) => match out.e_tag() {
                Some(etag) => Ok(Version::ETag(etag.to_owned())),
                None => Err(
                    AwsError::new("s3:PutObject", self.name(key), "response has no ETag").into(),
                ),
            },
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                // 412: the condition failed; 409: a concurrent conditional write won.
                if matches!(status, Some(412 | 409)) {
                    Err(SaveError::Conflict {
                        key: key.to_owned(),
                    })
                } else {
                    Err(AwsError::from_sdk("s3:PutObject", self.name(key), &e).into())
                }
            }
        }
    }

    async fn preserve(&self, key: &str, etag: &str, bytes: &[u8]) -> Result<String, AwsError> {
        let aside = format!("{key}.unusable-{}", etag.trim_matches('"'));
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&aside)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:PutObject", self.name(&aside), &e))?;
        Ok(self.name(&aside))
    }
}

/// A warm container's copy of the state objects it read or wrote, with
/// their ETags: a run reads only what it has not seen. What another writer
/// changed since is caught by the conditional write of any change this run
/// makes (412, then the object is read again); a run that changes nothing
/// writes nothing and so needs no read.
pub struct CachedStore<S> {
    inner: S,
    kept: Mutex<HashMap<String, Loaded>>,
}

impl<S> CachedStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            kept: Mutex::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<String, Loaded>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: StateStore> StateStore for CachedStore<S> {
    async fn load(&self, key: &str) -> Result<Loaded, AwsError> {
        if let Some(loaded) = self.kept().get(key) {
            return Ok(loaded.clone());
        }
        let loaded = self.inner.load(key).await?;
        // An unusable or refused object is read again each time: it is
        // rare, and a newer tether may have replaced it.
        if matches!(loaded.prior, Prior::Fresh | Prior::Valid(_)) {
            self.kept().insert(key.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    async fn save(
        &self,
        key: &str,
        state: &SyncState,
        version: &Version,
    ) -> Result<Version, SaveError> {
        let saved = self.inner.save(key, state, version).await;
        let mut kept = self.kept();
        match &saved {
            Ok(version) => {
                kept.insert(
                    key.to_owned(),
                    Loaded {
                        prior: Prior::Valid(state.clone()),
                        version: version.clone(),
                        unusable: None,
                    },
                );
            }
            // Someone else wrote it, or nobody knows what is there now.
            Err(_) => {
                kept.remove(key);
            }
        }
        saved
    }

    async fn preserve(&self, key: &str, etag: &str, bytes: &[u8]) -> Result<String, AwsError> {
        self.inner.preserve(key, etag, bytes).await
    }
}

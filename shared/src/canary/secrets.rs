//! Header values kept in Secrets Manager or as SSM SecureString parameters.
//!
//! Each distinct secret is read once at cold start (a missing or unusable
//! one fails it), then read again, so that a rotated secret does not turn
//! every probe into a 401 until the next cold start:
//!
//! - **on a TTL**: a value older than `SECRETS_TTL_SECONDS` (default 300 s)
//!   is read again while the probe that found it old runs, not before it: a
//!   slow Secrets Manager delays no probe;
//! - **on a denial**: a probe answered 401 or 403 (outside `expect_status`)
//!   reads its endpoint's secrets again, once per probe, before its retry,
//!   so that the retry (or, for a method that is not retried, the next
//!   probe) sends the new value. A re-read that finds the same value (a
//!   server that denies a current secret) is not repeated for
//!   [`DENIED_UNCHANGED_WAIT`]: a permanently denying endpoint costs at most
//!   one `GetSecretValue` a minute.
//!
//! Endpoints sharing a secret share one value and one read at a time. A
//! re-read that fails keeps the last good value, says so in a warning, and
//! never fails the probe or the round; it is tried again after
//! [`RETRY_AFTER_FAILURE`] (or the TTL, when shorter). Values are never
//! logged: messages name the header, the secret and the AWS error; the
//! values go into requests as sensitive header values.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use aws_config::SdkConfig;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderName, HeaderValue};
use tokio::time::{Instant, timeout_at};
use tracing::{info, warn};

use super::config::{CanaryConfig, SecretRef};
use crate::aws::AwsError;
use crate::config::ConfigError;

/// After a failed re-read, the next waits this long (or the TTL, if shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// After a denial re-read found the same value, the next waits this long.
pub const DENIED_UNCHANGED_WAIT: Duration = Duration::from_secs(60);

/// Reads one secret value.
pub trait SecretStore: Send + Sync {
    fn read(&self, reference: &SecretRef) -> impl Future<Output = Result<String, AwsError>> + Send;
}

/// Secrets Manager `GetSecretValue` and SSM `GetParameter` (with decryption).
pub struct AwsSecrets {
    secrets: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

impl AwsSecrets {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
        }
    }
}

impl SecretStore for AwsSecrets {
    async fn read(&self, reference: &SecretRef) -> Result<String, AwsError> {
        match reference {
            SecretRef::Secret(id) => {
                const OP: &str = "secretsmanager:GetSecretValue";
                let out = self
                    .secrets
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(OP, id.as_str(), &e))?;
                out.secret_string.ok_or_else(|| {
                    AwsError::new(
                        OP,
                        id.as_str(),
                        "the secret has no SecretString (binary secrets are not header values)",
                    )
                })
            }
            SecretRef::Parameter(name) => {
                const OP: &str = "ssm:GetParameter";
                let out = self
                    .ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(OP, name.as_str(), &e))?;
                let parameter = out.parameter.ok_or_else(|| {
                    AwsError::new(OP, name.as_str(), "no parameter in the answer")
                })?;
                if parameter.r#type.as_ref().map(|t| t.as_str()) != Some("SecureString") {
                    return Err(AwsError::new(
                        OP,
                        name.as_str(),
                        format!(
                            "is a {} parameter, not a SecureString: keep header secrets encrypted",
                            parameter.r#type.as_ref().map_or("untyped", |t| t.as_str())
                        ),
                    ));
                }
                parameter
                    .value
                    .ok_or_else(|| AwsError::new(OP, name.as_str(), "the parameter has no value"))
            }
        }
    }
}

/// [`SecretStore`] behind a pointer, so that [`Secrets`] (and the prober
/// that holds it) has no type parameter.
trait ReadSecret: Send + Sync {
    fn read_boxed<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
}

impl<S: SecretStore> ReadSecret for S {
    fn read_boxed<'a>(
        &'a self,
        reference: &'a SecretRef,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(self.read(reference))
    }
}

/// Why a value is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Older than `SECRETS_TTL_SECONDS`.
    Ttl,
    /// The endpoint answered 401 or 403.
    Denied,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ttl => "ttl",
            Reason::Denied => "denied",
        }
    }
}

/// One secret's value and when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub value: HeaderValue,
    /// When `value` was read.
    pub read_at: Instant,
    /// When a read was last tried, successful or not.
    pub tried_at: Instant,
    /// A denial re-read found the same value: no other before this.
    pub quiet_until: Option<Instant>,
}

impl Held {
    fn new(value: HeaderValue, now: Instant) -> Self {
        Held {
            value,
            read_at: now,
            tried_at: now,
            quiet_until: None,
        }
    }

    /// Whether the TTL asks for a read at `now`: the value is older than
    /// `ttl`, and no read failed in the last [`RETRY_AFTER_FAILURE`] (or `ttl`).
    pub fn due_by_ttl(&self, now: Instant, ttl: Duration) -> bool {
        now.saturating_duration_since(self.read_at) >= ttl
            && now.saturating_duration_since(self.tried_at) >= ttl.min(RETRY_AFTER_FAILURE)
    }

    /// Whether a denial seen by a probe that started at `probe_started`
    /// asks for a read at `now`: nothing was tried since that probe
    /// started (one read per probe, shared by the endpoints of a round),
    /// and no unchanged re-read asks for quiet.
    pub fn due_by_denial(&self, probe_started: Instant, now: Instant) -> bool {
        self.tried_at < probe_started && self.quiet_until.is_none_or(|quiet| now >= quiet)
    }

    /// The state after a read tried at `now` for `reason`.
    pub fn after(&self, read: Result<HeaderValue, String>, reason: Reason, now: Instant) -> Held {
        match read {
            Ok(value) => {
                let unchanged = value == self.value;
                Held {
                    quiet_until: (reason == Reason::Denied && unchanged)
                        .then(|| now + DENIED_UNCHANGED_WAIT),
                    ..Held::new(value, now)
                }
            }
            Err(_) => Held {
                tried_at: now,
                ..self.clone()
            },
        }
    }
}

/// One distinct secret.
struct Entry {
    reference: SecretRef,
    held: Mutex<Held>,
    /// One read of this secret at a time.
    reading: tokio::sync::Mutex<()>,
}

impl Entry {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The secret header values of every endpoint, read at cold start and read
/// again as the module documentation says.
pub struct Secrets {
    store: Option<Box<dyn ReadSecret>>,
    ttl: Duration,
    entries: Vec<Entry>,
    /// Per endpoint (by index): its secret headers, as indexes of `entries`.
    endpoints: Vec<Vec<(HeaderName, usize)>>,
}

impl Secrets {
    /// No secret headers at all.
    pub fn none() -> Self {
        Secrets {
            store: None,
            ttl: Duration::MAX,
            entries: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    /// Reads every secret of `config`'s endpoints, each distinct one once;
    /// a secret that cannot be read, or is no header value, fails the cold
    /// start naming the header and the secret, never a value.
    pub async fn read<S: SecretStore + 'static>(
        config: &CanaryConfig,
        store: S,
    ) -> Result<Self, ConfigError> {
        let now = Instant::now();
        let mut index: HashMap<&SecretRef, usize> = HashMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for (i, endpoint) in config.endpoints.iter().enumerate() {
            let mut headers = Vec::with_capacity(endpoint.secret_headers.len());
            for (name, reference) in &endpoint.secret_headers {
                let at = format!("CANARY_TARGETS[{i}].headers.{name}");
                let n = match index.get(reference) {
                    Some(n) => *n,
                    None => {
                        let text = store.read(reference).await.map_err(|e| {
                            ConfigError::new(&at, format!("reading {reference}: {e}"))
                        })?;
                        let value = header_value(&text).map_err(|e| {
                            ConfigError::new(&at, format!("the value of {reference} {e}"))
                        })?;
                        entries.push(Entry {
                            reference: reference.clone(),
                            held: Mutex::new(Held::new(value, now)),
                            reading: tokio::sync::Mutex::new(()),
                        });
                        index.insert(reference, entries.len() - 1);
                        entries.len() - 1
                    }
                };
                headers.push((name.clone(), n));
            }
            endpoints.push(headers);
        }
        Ok(Secrets {
            store: Some(Box::new(store)),
            ttl: config.secrets_ttl,
            entries,
            endpoints,
        })
    }

    fn of(&self, endpoint: usize) -> &[(HeaderName, usize)] {
        self.endpoints.get(endpoint).map_or(&[], Vec::as_slice)
    }

    /// Whether endpoint `endpoint` sends secret headers.
    pub fn has_any(&self, endpoint: usize) -> bool {
        !self.of(endpoint).is_empty()
    }

    /// The secret headers of endpoint `endpoint` as they are now, marked
    /// sensitive.
    pub fn headers(&self, endpoint: usize) -> Vec<(HeaderName, HeaderValue)> {
        self.of(endpoint)
            .iter()
            .map(|(name, n)| (name.clone(), self.entries[*n].held().value.clone()))
            .collect()
    }

    /// Reads again, before `deadline`, the secrets of `endpoint` that the
    /// TTL finds old at `now`.
    pub async fn refresh_old(&self, endpoint: usize, now: Instant, deadline: Instant) {
        for (_, n) in self.of(endpoint) {
            self.reread(
                *n,
                Reason::Ttl,
                deadline,
                |held| held.due_by_ttl(now, self.ttl),
                now,
            )
            .await;
        }
    }

    /// Reads again, before `deadline`, the secrets of `endpoint` after its
    /// probe (started at `probe_started`) was denied.
    pub async fn refresh_denied(
        &self,
        endpoint: usize,
        probe_started: Instant,
        now: Instant,
        deadline: Instant,
    ) {
        for (_, n) in self.of(endpoint) {
            let due = |held: &Held| held.due_by_denial(probe_started, now);
            self.reread(*n, Reason::Denied, deadline, due, now).await;
        }
    }

    /// One read of entry `n` if `due` (checked again once this is the only
    /// read of it), stamped `now`; the outcome is logged, never the value.
    async fn reread(
        &self,
        n: usize,
        reason: Reason,
        deadline: Instant,
        due: impl Fn(&Held) -> bool,
        now: Instant,
    ) {
        let (Some(store), Some(entry)) = (&self.store, self.entries.get(n)) else {
            return;
        };
        if !due(&entry.held()) {
            return;
        }
        let Ok(_only) = timeout_at(deadline, entry.reading.lock()).await else {
            return;
        };
        let before = entry.held().clone();
        if !due(&before) {
            return;
        }
        let read = match timeout_at(deadline, store.read_boxed(&entry.reference)).await {
            Ok(Ok(text)) => header_value(&text).map_err(|e| format!("the new value {e}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer before the probe's deadline".to_owned()),
        };
        let after = before.after(read.clone(), reason, now);
        match read {
            Ok(_) => info!(
                secret = %entry.reference,
                reason = reason.as_str(),
                changed = after.value != before.value,
                "secret header value read again"
            ),
            Err(error) => warn!(
                secret = %entry.reference,
                reason = reason.as_str(),
                error = %error,
                age_s = now.saturating_duration_since(before.read_at).as_secs(),
                "secret header value not read again: keeping the last good value"
            ),
        }
        *entry.held() = after;
    }
}

/// A secret's text as a sensitive header value.
fn header_value(text: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        "is not a valid header value (a line break or control character?)".to_owned()
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;
    use futures_util::FutureExt;
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::Arc;

    /// A store over a map that tests change, counting reads.
    #[derive(Clone, Default)]
    struct Map(Arc<Mutex<(HashMap<SecretRef, String>, usize)>>);

    impl Map {
        fn set(&self, reference: &SecretRef, value: &str) {
            self.0
                .lock()
                .unwrap()
                .0
                .insert(reference.clone(), value.into());
        }
        fn remove(&self, reference: &SecretRef) {
            self.0.lock().unwrap().0.remove(reference);
        }
        fn reads(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    impl SecretStore for Map {
        async fn read(&self, reference: &SecretRef) -> Result<String, AwsError> {
            let mut state = self.0.lock().unwrap();
            state.1 += 1;
            state
                .0
                .get(reference)
                .cloned()
                .ok_or_else(|| AwsError::new("test:Read", reference.to_string(), "not found"))
        }
    }

    fn config(targets: serde_json::Value, ttl: &str) -> CanaryConfig {
        let t = targets.to_string();
        let ttl = ttl.to_owned();
        CanaryConfig::from_vars(&Vars(|n: &str| match n {
            "CANARY_TARGETS" => Some(t.clone()),
            "SECRETS_TTL_SECONDS" => Some(ttl.clone()),
            _ => None,
        }))
        .unwrap()
    }

    fn api_key() -> SecretRef {
        SecretRef::Secret("api-key".into())
    }

    fn two_endpoints() -> CanaryConfig {
        config(
            json!([
                {"name": "a", "url": "https://a.example/", "headers": {"x-api-key": {"secret": "api-key"}, "x-plain": "p"}},
                {"name": "b", "url": "https://b.example/", "headers": {"x-api-key": {"secret": "api-key"}, "authorization": {"ssm": "/tether/token"}}},
                {"name": "c", "url": "https://c.example/"},
            ]),
            "300",
        )
    }

    fn store() -> Map {
        let store = Map::default();
        store.set(&api_key(), "k-old");
        store.set(&SecretRef::Parameter("/tether/token".into()), "Bearer t");
        store
    }

    fn shown(secrets: &Secrets, endpoint: usize) -> Vec<(String, String)> {
        secrets
            .headers(endpoint)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect()
    }

    #[test]
    fn secret_values_are_read_once_marked_sensitive_and_never_shown() {
        let store = store();
        let secrets = Secrets::read(&two_endpoints(), store.clone())
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(store.reads(), 2);
        assert_eq!(shown(&secrets, 0), [("x-api-key".into(), "k-old".into())]);
        assert_eq!(
            shown(&secrets, 1),
            [
                ("authorization".into(), "Bearer t".into()),
                ("x-api-key".into(), "k-old".into())
            ]
        );
        assert!(shown(&secrets, 2).is_empty() && !secrets.has_any(2) && secrets.has_any(0));
        assert!(secrets.headers(0).iter().all(|(_, v)| v.is_sensitive()));
        assert!(!format!("{:?}", secrets.headers(1)).contains("k-old"));
    }

    #[test]
    fn a_missing_or_bad_secret_fails_the_cold_start_naming_the_header_not_a_value() {
        let c = config(
            json!([{"name": "a", "url": "https://a.example/", "headers": {"x-key": {"ssm": "/missing"}}}]),
            "300",
        );
        let err = Secrets::read(&c, Map::default())
            .now_or_never()
            .unwrap()
            .err()
            .unwrap();
        assert_eq!(err.location, "CANARY_TARGETS[0].headers.x-key");
        assert!(err.problem.contains("SSM parameter /missing"), "{err}");

        let c = config(
            json!([{"name": "a", "url": "https://a.example/", "headers": {"x-key": {"secret": "s"}}}]),
            "300",
        );
        let store = Map::default();
        store.set(&SecretRef::Secret("s".into()), "xx-secret\nyy");
        let err = Secrets::read(&c, store)
            .now_or_never()
            .unwrap()
            .err()
            .unwrap();
        assert!(
            err.problem.contains("secret s") && !err.problem.contains("xx-secret"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_denial_reads_the_secret_again_once_per_probe_for_every_endpoint_sharing_it() {
        let store = store();
        let secrets = Secrets::read(&two_endpoints(), store.clone())
            .await
            .unwrap();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(3);
        store.set(&api_key(), "k-new");
        let probe = t0 + Duration::from_secs(10);
        secrets
            .refresh_denied(0, probe, probe, deadline + Duration::from_secs(10))
            .await;
        assert_eq!(store.reads(), 3);
        assert_eq!(shown(&secrets, 0), [("x-api-key".into(), "k-new".into())]);
        assert_eq!(shown(&secrets, 1)[1], ("x-api-key".into(), "k-new".into()));
        // The other endpoint's denial in the same round reads nothing more
        // for the shared secret, only its own parameter.
        secrets
            .refresh_denied(1, probe, probe, deadline + Duration::from_secs(10))
            .await;
        assert_eq!(store.reads(), 4);
    }

    #[tokio::test]
    async fn an_unchanged_value_quiets_denial_rereads_for_a_minute() {
        let store = store();
        let secrets = Secrets::read(&two_endpoints(), store.clone())
            .await
            .unwrap();
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        for (round, expected_reads) in [(10, 3), (20, 3), (60, 3), (71, 4)] {
            let probe = t0 + Duration::from_secs(round);
            secrets.refresh_denied(0, probe, probe, far).await;
            assert_eq!(store.reads(), expected_reads, "round at {round} s");
        }
    }

    #[tokio::test]
    async fn old_values_are_read_again_and_a_failed_read_keeps_the_last_good_value() {
        let store = store();
        let c = config(
            json!([{"name": "a", "url": "https://a.example/", "headers": {"x-api-key": {"secret": "api-key"}}}]),
            "300",
        );
        let secrets = Secrets::read(&c, store.clone()).await.unwrap();
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(36_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        secrets.refresh_old(0, at(299), far).await;
        assert_eq!(store.reads(), 1, "not old yet");
        store.remove(&api_key());
        secrets.refresh_old(0, at(301), far).await;
        assert_eq!(store.reads(), 2);
        assert_eq!(shown(&secrets, 0), [("x-api-key".into(), "k-old".into())]);
        secrets.refresh_old(0, at(320), far).await;
        assert_eq!(store.reads(), 2, "a failed read waits 30 s");
        store.set(&api_key(), "k-new");
        secrets.refresh_old(0, at(332), far).await;
        assert_eq!(store.reads(), 3);
        assert_eq!(shown(&secrets, 0), [("x-api-key".into(), "k-new".into())]);
        secrets.refresh_old(0, at(600), far).await;
        assert_eq!(store.reads(), 3, "fresh again for 300 s");
    }

    #[tokio::test]
    async fn a_read_that_does_not_answer_before_the_deadline_keeps_the_value() {
        struct Silent;
        impl SecretStore for Silent {
            async fn read(&self, _: &SecretRef) -> Result<String, AwsError> {
                std::future::pending().await
            }
        }
        let c = config(
            json!([{"name": "a", "url": "https://a.example/", "headers": {"x-api-key": {"secret": "api-key"}}}]),
            "1",
        );
        let mut secrets = Secrets::read(&c, store()).await.unwrap();
        secrets.store = Some(Box::new(Silent));
        let now = Instant::now() + Duration::from_secs(5);
        secrets
            .refresh_old(0, now, Instant::now() + Duration::from_millis(20))
            .await;
        assert_eq!(shown(&secrets, 0), [("x-api-key".into(), "k-old".into())]);
    }

    fn held_at(read: u64, tried: u64, quiet: Option<u64>, t0: Instant) -> Held {
        let at = |s: u64| t0 + Duration::from_secs(s);
        Held {
            value: HeaderValue::from_static("v"),
            read_at: at(read),
            tried_at: at(tried),
            quiet_until: quiet.map(at),
        }
    }

    proptest! {
        /// The TTL reads a value exactly when it is older than the TTL and
        /// no read failed within min(TTL, 30 s).
        #[test]
        fn the_ttl_rule(read in 0u64..1000, since_try in 0u64..1000, now in 0u64..3000, ttl in 1u64..600) {
            let t0 = Instant::now();
            let tried = read + since_try;
            let held = held_at(read, tried, None, t0);
            let due = held.due_by_ttl(t0 + Duration::from_secs(now), Duration::from_secs(ttl));
            let expected = now >= read + ttl && now >= tried + ttl.min(30);
            prop_assert_eq!(due, expected);
        }

        /// A denial reads at most once per probe, and not during the quiet
        /// an unchanged value asked for; a failed read keeps the value.
        #[test]
        fn the_denial_rule(tried in 0u64..100, probe in 0u64..100, quiet in proptest::option::of(0u64..200), now_after in 0u64..100) {
            let t0 = Instant::now();
            let held = held_at(0, tried, quiet, t0);
            let now = probe + now_after;
            let due = held.due_by_denial(t0 + Duration::from_secs(probe), t0 + Duration::from_secs(now));
            prop_assert_eq!(due, tried < probe && quiet.is_none_or(|q| now >= q));
            let kept = held.after(Err("denied".into()), Reason::Denied, t0 + Duration::from_secs(now));
            prop_assert_eq!(&kept.value, &held.value);
            prop_assert_eq!(kept.read_at, held.read_at);
            prop_assert!(!kept.due_by_denial(t0 + Duration::from_secs(now), t0 + Duration::from_secs(now)));
            let same = held.after(Ok(HeaderValue::from_static("v")), Reason::Denied, t0 + Duration::from_secs(now));
            prop_assert_eq!(same.quiet_until, Some(t0 + Duration::from_secs(now) + DENIED_UNCHANGED_WAIT));
            let new = held.after(Ok(HeaderValue::from_static("w")), Reason::Denied, t0 + Duration::from_secs(now));
            prop_assert_eq!(new.quiet_until, None);
        }
    }
}

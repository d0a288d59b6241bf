//! Header values kept in Secrets Manager or as SSM SecureString parameters,
//! read once at cold start (each distinct secret once) and never logged:
//! errors name the header, the secret and the AWS error, never the value,
//! and the values go into the request as sensitive header values.

use std::collections::HashMap;
use std::future::Future;

use aws_config::SdkConfig;
use reqwest::header::HeaderValue;

use super::config::{CanaryConfig, SecretRef};
use crate::aws::AwsError;
use crate::config::ConfigError;

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

/// Reads every secret header value of `config` (each distinct secret once)
/// into its endpoint's headers, marked sensitive.
pub async fn resolve<S: SecretStore>(
    config: &mut CanaryConfig,
    store: &S,
) -> Result<(), ConfigError> {
    let mut read: HashMap<SecretRef, HeaderValue> = HashMap::new();
    for (i, endpoint) in config.endpoints.iter_mut().enumerate() {
        for (name, reference) in std::mem::take(&mut endpoint.secret_headers) {
            let at = format!("CANARY_TARGETS[{i}].headers.{name}");
            let value = match read.get(&reference) {
                Some(value) => value.clone(),
                None => {
                    let text = store
                        .read(&reference)
                        .await
                        .map_err(|e| ConfigError::new(&at, format!("reading {reference}: {e}")))?;
                    let mut value = HeaderValue::from_str(&text).map_err(|_| {
                        ConfigError::new(
                            &at,
                            format!("the value of {reference} is not a valid header value (a line break or control character?)"),
                        )
                    })?;
                    value.set_sensitive(true);
                    read.insert(reference.clone(), value.clone());
                    value
                }
            };
            endpoint.headers.append(name, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;
    use serde_json::json;
    use std::sync::Mutex;

    /// A store over a map that counts reads.
    struct Map(HashMap<SecretRef, String>, Mutex<usize>);

    impl SecretStore for Map {
        async fn read(&self, reference: &SecretRef) -> Result<String, AwsError> {
            *self.1.lock().unwrap() += 1;
            self.0
                .get(reference)
                .cloned()
                .ok_or_else(|| AwsError::new("test:Read", reference.to_string(), "not found"))
        }
    }

    fn config(targets: serde_json::Value) -> CanaryConfig {
        let t = targets.to_string();
        CanaryConfig::from_vars(&Vars(|n: &str| (n == "CANARY_TARGETS").then(|| t.clone())))
            .unwrap()
    }

    #[test]
    fn secret_values_are_read_once_marked_sensitive_and_never_shown() {
        let mut c = config(json!([
            {"name": "a", "url": "https://a.example/", "headers": {"x-api-key": {"secret": "api-key"}, "x-plain": "p"}},
            {"name": "b", "url": "https://b.example/", "headers": {"x-api-key": {"secret": "api-key"}, "authorization": {"ssm": "/tether/token"}}},
        ]));
        let store = Map(
            HashMap::from([
                (SecretRef::Secret("api-key".into()), "k-secret".into()),
                (
                    SecretRef::Parameter("/tether/token".into()),
                    "Bearer t".into(),
                ),
            ]),
            Mutex::new(0),
        );
        futures_util::FutureExt::now_or_never(resolve(&mut c, &store))
            .unwrap()
            .unwrap();
        assert_eq!(*store.1.lock().unwrap(), 2);
        let (a, b) = (&c.endpoints[0], &c.endpoints[1]);
        assert_eq!(a.headers["x-api-key"], "k-secret");
        assert!(a.headers["x-api-key"].is_sensitive() && !a.headers["x-plain"].is_sensitive());
        assert_eq!(b.headers["authorization"], "Bearer t");
        assert!(a.secret_headers.is_empty() && b.secret_headers.is_empty());
        assert!(!format!("{:?}", a.headers).contains("k-secret"));
    }

    #[test]
    fn a_missing_or_bad_secret_names_the_header_and_the_secret_not_a_value() {
        let targets = json!([{"name": "a", "url": "https://a.example/", "headers": {"x-key": {"ssm": "/missing"}}}]);
        let store = Map(HashMap::new(), Mutex::new(0));
        let mut c = config(targets);
        let err = futures_util::FutureExt::now_or_never(resolve(&mut c, &store))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.location, "CANARY_TARGETS[0].headers.x-key");
        assert!(err.problem.contains("SSM parameter /missing"), "{err}");

        let mut c = config(
            json!([{"name": "a", "url": "https://a.example/", "headers": {"x-key": {"secret": "s"}}}]),
        );
        let store = Map(
            HashMap::from([(SecretRef::Secret("s".into()), "xx-secret\nyy".into())]),
            Mutex::new(0),
        );
        let err = futures_util::FutureExt::now_or_never(resolve(&mut c, &store))
            .unwrap()
            .unwrap_err();
        assert!(
            err.problem.contains("secret s") && !err.problem.contains("xx-secret"),
            "{err}"
        );
    }
}

//! The example stack (`examples/private-api/template.yaml`) in the emulator's
//! CloudFormation.
//!
//! [`plan`] asks `tests/template/example_private_api.py` (lint venv) for the
//! template to deploy into moto, the resources a stack with the given
//! parameters creates, and the changes the emulator forced on the template
//! (each one printed by the test); the test creates the stack through the
//! real CloudFormation SDK (a dev-dependency) and keeps what it created in a
//! [`Stack`]. ACM and ECS, which have no SDK crate here, are called through
//! their JSON protocol with a plain HTTP request, as [`crate::aws`] does for
//! EC2.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::moto::{BoxError, Moto, REGION, http_request, lint_python};

/// One tag as the template writes it; `${Logical}` stands for a resource's physical id.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TemplateTag {
    pub key: String,
    pub value: String,
}

/// What to deploy and what to expect, from `example_private_api.py emulator`.
#[derive(Debug, Deserialize)]
pub struct Plan {
    /// The template as JSON: the real one, with `changes` applied.
    pub template: Value,
    /// Every parameter value passed to the stack.
    pub parameters: BTreeMap<String, String>,
    /// What was changed in the template for the emulator, and why.
    pub changes: Vec<String>,
    /// Logical id to resource type, for every resource the stack creates.
    pub resources: BTreeMap<String, String>,
    /// The tags the template gives each target group.
    pub tags: BTreeMap<String, Vec<TemplateTag>>,
}

/// Which parameters [`plan`] starts from (those of `example_private_api.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// Every optional part on: TLS, custom domain, hosted zone, peer VPC (`FULL`).
    All,
    /// One region: the required parameters only (`MINIMAL`).
    OneRegion,
}

/// Runs `example_private_api.py emulator [minimal] Name=Value ...` with the
/// lint venv: `parts`, overridden by `parameters`.
pub fn plan(parts: Parts, parameters: &[(&str, &str)]) -> Result<Plan, BoxError> {
    let mut args = vec!["emulator".to_owned()];
    if parts == Parts::OneRegion {
        args.push("minimal".to_owned());
    }
    args.extend(parameters.iter().map(|(k, v)| format!("{k}={v}")));
    let out = lint_python("tests/template/example_private_api.py", &args)?;
    Ok(serde_json::from_slice(&out)?)
}

/// A created stack: logical id to physical id of each resource it holds.
#[derive(Debug)]
pub struct Stack {
    pub status: String,
    pub physical: BTreeMap<String, String>,
}

impl Stack {
    /// The physical id of a resource, or an error naming it.
    pub fn id(&self, logical: &str) -> Result<&str, BoxError> {
        self.physical
            .get(logical)
            .map(String::as_str)
            .ok_or_else(|| format!("the stack has no {logical}: {:?}", self.physical).into())
    }

    /// `text` with every `${Logical}` replaced by that resource's physical id.
    pub fn substitute(&self, text: &str) -> Result<String, BoxError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text}"))?;
            out.push_str(&rest[..start]);
            out.push_str(self.id(&rest[start + 2..start + end])?);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Requests a certificate from the emulator's ACM; returns its ARN (the
/// template's listeners need one that exists).
pub async fn request_certificate(moto: &Moto, domain: &str) -> Result<String, BoxError> {
    let answer = json_call(
        moto,
        "acm",
        "CertificateManager.RequestCertificate",
        &json!({"DomainName": domain}),
    )
    .await?;
    answer["CertificateArn"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("RequestCertificate: no ARN in {answer}").into())
}

/// ECS `DescribeServices` of the cluster's services, as JSON.
pub async fn describe_services(
    moto: &Moto,
    cluster: &str,
    services: &[&str],
) -> Result<Vec<Value>, BoxError> {
    let answer = json_call(
        moto,
        "ecs",
        "AmazonEC2ContainerServiceV20141113.DescribeServices",
        &json!({"cluster": cluster, "services": services}),
    )
    .await?;
    Ok(answer["services"].as_array().cloned().unwrap_or_default())
}

/// Route 53 `GetHostedZone` of a zone id, as the XML answer.
pub async fn hosted_zone(moto: &Moto, id: &str) -> Result<String, BoxError> {
    let authorization = authorization("route53");
    let id = id.trim_start_matches("/hostedzone/");
    let url = format!("{}/2013-04-01/hostedzone/{id}", moto.endpoint());
    let (status, answer) = http_request(
        Method::GET,
        &url,
        &[("Authorization", authorization.as_str())],
        Bytes::new(),
        Duration::from_secs(30),
    )
    .await?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if status.is_success() {
        Ok(answer)
    } else {
        Err(format!("GetHostedZone {id} failed with {status}: {answer}").into())
    }
}

/// An `Authorization` header that routes a request to `service` in moto,
/// which reads the service from the credential scope and checks no signature.
fn authorization(service: &str) -> String {
    authorization_in(service, REGION)
}

/// The same, for `service` in `region`.
pub(crate) fn authorization_in(service: &str, region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    )
}

/// One call of an AWS JSON 1.1 protocol operation; a non-2xx status is an
/// error carrying the body.
pub(crate) async fn json_call(
    moto: &Moto,
    service: &str,
    target: &str,
    body: &Value,
) -> Result<Value, BoxError> {
    let authorization = authorization(service);
    let headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", target),
        ("Authorization", authorization.as_str()),
    ];
    let url = format!("{}/", moto.endpoint());
    let (status, answer) = http_request(
        Method::POST,
        &url,
        &headers,
        Bytes::from(body.to_string()),
        Duration::from_secs(30),
    )
    .await?;
    if !status.is_success() {
        return Err(format!(
            "{target} failed with {status}: {}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    Ok(serde_json::from_slice(&answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitute_replaces_every_placeholder_and_names_a_missing_one() {
        let stack = Stack {
            status: "CREATE_COMPLETE".into(),
            physical: BTreeMap::from([("Alb".into(), "arn:alb".into())]),
        };
        assert_eq!(
            stack.substitute("alb:${Alb}").ok().as_deref(),
            Some("alb:arn:alb")
        );
        assert_eq!(stack.substitute("plain").ok().as_deref(), Some("plain"));
        let error = stack.substitute("${Nlb}").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("no Nlb")));
    }
}

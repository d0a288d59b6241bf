//! The release (`make release`, `dist/tether-<version>/`) in the emulator.
//!
//! [`Release::package`] runs the release's own packaging
//! (`scripts/release.py`, through `tests/template/release_stack.py`) on the
//! binaries of this build. Those are the host's (x86_64 here), where the
//! release's are arm64: building arm64 release binaries would cost a cold CI
//! machine most of its time budget, and everything else the test exercises
//! (the template, its code locations, the zips) is the release's own.
//!
//! [`FunctionCode`] is a function as the emulator's Lambda holds it: its
//! configuration (environment, handler, the SHA-256 of its code) from
//! `GetFunction`, and its code unpacked from the object it was created from.
//! The Lambda API is called as JSON over plain HTTP (there is no Lambda SDK
//! crate here), as [`crate::example`] does for ACM and ECS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::example::{authorization_in, json_call};
use crate::lambda::function_binary;
use crate::moto::{BoxError, Moto, REGION, http_request, lint_python};

/// The helper script (lint venv).
const SCRIPT: &str = "tests/template/release_stack.py";

/// A release written by the release's packaging code.
#[derive(Debug, Clone, Deserialize)]
pub struct Release {
    /// The version, from the workspace `Cargo.toml`.
    pub version: String,
    /// The architecture of the binaries in its zips (the host's here).
    pub arch: String,
    /// File name to SHA-256 (hex), as in its `SHA256SUMS`.
    pub files: BTreeMap<String, String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Release {
    /// Packages this build's function binaries into `out`.
    pub fn package(out: &Path) -> Result<Release, BoxError> {
        let binaries = function_binary("target-sync")
            .parent()
            .map(Path::to_path_buf)
            .ok_or("the binaries have no directory")?;
        let stdout = lint_python(
            SCRIPT,
            &[
                "package".into(),
                binaries.display().to_string(),
                out.display().to_string(),
            ],
        )?;
        let mut release: Release = serde_json::from_slice(&stdout)?;
        release.dir = out.to_path_buf();
        Ok(release)
    }

    /// The path of one of its files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Its template, parsed.
    pub fn template(&self) -> Result<Value, BoxError> {
        Ok(serde_json::from_slice(&std::fs::read(
            self.path("template.json"),
        )?)?)
    }

    /// Copies every file of the release to `s3://bucket/prefix/`, as the
    /// install guide does with `aws s3 cp --recursive`.
    pub async fn upload(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
    ) -> Result<(), BoxError> {
        for name in self
            .files
            .keys()
            .chain(std::iter::once(&"SHA256SUMS".to_owned()))
        {
            let body = std::fs::read(self.path(name))?;
            s3.put_object()
                .bucket(bucket)
                .key(format!("{prefix}/{name}"))
                .body(body.into())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "PutObject {name}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )
                })?;
        }
        Ok(())
    }
}

/// What a stack of the release creates for some parameters, by the
/// template's own conditions (`release_stack.py plan`).
#[derive(Debug, Deserialize)]
pub struct Plan {
    /// Every parameter value the stack is given.
    pub parameters: BTreeMap<String, String>,
    /// Logical id to type of each resource the stack creates.
    pub resources: BTreeMap<String, String>,
    /// The logical ids of its Lambda functions.
    pub functions: Vec<String>,
    /// The template to deploy into moto: the release's, with `changes`.
    pub template: Value,
    /// What was changed for the emulator, and why.
    pub changes: Vec<String>,
}

/// Which stack a [`plan`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One stack (CreateStack).
    Stack,
    /// The stacks of a service-managed StackSet.
    StackSet,
}

/// The plan for `parameters` (the rest at their defaults).
pub fn plan(
    release: &Release,
    deployment: Deployment,
    parameters: &[(&str, String)],
) -> Result<Plan, BoxError> {
    let command = match deployment {
        Deployment::Stack => "plan",
        Deployment::StackSet => "plan-stack-set",
    };
    let mut args = vec![
        command.to_owned(),
        release.path("template.json").display().to_string(),
    ];
    args.extend(parameters.iter().map(|(k, v)| format!("{k}={v}")));
    Ok(serde_json::from_slice(&lint_python(SCRIPT, &args)?)?)
}

/// Where a custom resource's event comes from and where it is answered.
#[derive(Debug, serde::Serialize)]
pub struct EventContext<'a> {
    pub parameters: &'a BTreeMap<String, String>,
    /// `Logical` (Ref) or `Logical.Attribute` to its value in the stack.
    pub attributes: BTreeMap<String, String>,
    pub stack_id: &'a str,
    pub request_id: String,
    pub response_url: String,
}

/// The Create event CloudFormation sends the custom resource `logical` of
/// the release's template (`release_stack.py event`).
pub fn custom_resource_event(
    release: &Release,
    logical: &str,
    context: &EventContext<'_>,
) -> Result<Value, BoxError> {
    let out = lint_python(
        SCRIPT,
        &[
            "event".into(),
            release.path("template.json").display().to_string(),
            logical.into(),
            serde_json::to_string(context)?,
        ],
    )?;
    Ok(serde_json::from_slice(&out)?)
}

/// The URL where moto's CloudFormation takes custom resource responses
/// for a stack (the path moto gives the events it sends itself).
pub fn moto_response_url(moto: &Moto, stack_id: &str) -> String {
    format!(
        "{}/cloudformation_{REGION}/cfnresponse?stack={stack_id}",
        moto.endpoint()
    )
}

/// A function as the emulator's Lambda holds it, and its unpacked code.
#[derive(Debug)]
pub struct FunctionCode {
    pub name: String,
    pub arn: String,
    /// Its configured timeout: the deadline of an invocation.
    pub timeout: Duration,
    pub handler: String,
    pub runtime: String,
    pub architectures: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// The unpacked handler: `<dir>/<handler>`.
    pub executable: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetFunction {
    configuration: Configuration,
    code: Code,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Configuration {
    function_name: String,
    function_arn: String,
    timeout: u64,
    handler: String,
    runtime: String,
    #[serde(default)]
    architectures: Vec<String>,
    code_sha256: String,
    #[serde(default)]
    environment: Option<Environment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Environment {
    /// moto gives the value of a Number parameter as a JSON number.
    #[serde(default)]
    variables: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Code {
    location: String,
}

#[derive(Debug, Deserialize)]
struct Unzipped {
    entries: Vec<String>,
    sha256_base64: String,
}

/// Where in the emulator a Lambda call goes: an account (moto's
/// `x-moto-account-id`; `None`: its default account) and a region.
#[derive(Debug, Clone, Copy)]
pub struct In<'a> {
    pub account: Option<&'a str>,
    pub region: &'a str,
}

impl In<'static> {
    /// The default account, in [`REGION`].
    pub const DEFAULT: In<'static> = In {
        account: None,
        region: REGION,
    };
}

/// One GET of the emulator's Lambda API (REST JSON).
async fn lambda_get(moto: &Moto, at: In<'_>, path: &str) -> Result<Value, BoxError> {
    let url = format!("{}/2015-03-31/{path}", moto.endpoint());
    let authorization = authorization_in("lambda", at.region);
    let account = at.account;
    let mut headers = vec![("Authorization", authorization.as_str())];
    if let Some(account) = account {
        headers.push(("x-moto-account-id", account));
    }
    let (status, body) = http_request(
        Method::GET,
        &url,
        &headers,
        Bytes::new(),
        Duration::from_secs(30),
    )
    .await?;
    if !status.is_success() {
        return Err(format!("GET {path}: {status} {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The names of the functions there.
pub async fn function_names(moto: &Moto, at: In<'_>) -> Result<Vec<String>, BoxError> {
    let out = lambda_get(moto, at, "functions/").await?;
    Ok(out["Functions"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f["FunctionName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

impl FunctionCode {
    /// `GetFunction` of `name` (there); the code is fetched from `bucket`
    /// at the key the function was created from, checked against the
    /// function's `CodeSha256`, and unpacked into `dir`.
    pub async fn fetch(
        moto: &Moto,
        at: In<'_>,
        s3: &aws_sdk_s3::Client,
        name: &str,
        bucket: &str,
        dir: &Path,
    ) -> Result<FunctionCode, BoxError> {
        let function: GetFunction =
            serde_json::from_value(lambda_get(moto, at, &format!("functions/{name}")).await?)?;
        // moto gives the key the code was read from in a made-up URL.
        let key = function
            .code
            .location
            .split_once(".amazonaws.com/")
            .map(|(_, key)| key.to_owned())
            .ok_or_else(|| format!("no key in the code location {}", function.code.location))?;
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetObject {bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        let zip = dir.join("code.zip");
        std::fs::create_dir_all(dir)?;
        std::fs::write(&zip, object.body.collect().await?.into_bytes())?;
        let out = lint_python(
            SCRIPT,
            &[
                "unzip".into(),
                zip.display().to_string(),
                dir.display().to_string(),
            ],
        )?;
        let unzipped: Unzipped = serde_json::from_slice(&out)?;
        let c = function.configuration;
        if unzipped.sha256_base64 != c.code_sha256 {
            return Err(format!(
                "{name}: s3://{bucket}/{key} is not the code the function holds (SHA-256 {} vs {})",
                unzipped.sha256_base64, c.code_sha256
            )
            .into());
        }
        if !unzipped.entries.contains(&c.handler) {
            return Err(format!(
                "{name}: no {} in its zip ({:?})",
                c.handler, unzipped.entries
            )
            .into());
        }
        Ok(FunctionCode {
            executable: dir.join(&c.handler),
            name: c.function_name,
            arn: c.function_arn,
            timeout: Duration::from_secs(c.timeout),
            handler: c.handler,
            runtime: c.runtime,
            architectures: c.architectures,
            environment: c
                .environment
                .map(|e| e.variables)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
        })
    }

    /// The environment to start it with: the emulator's (endpoint,
    /// credentials, region), the function's own, its name, then `extra`.
    pub fn env(&self, moto: &Moto, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = moto.env();
        env.extend(self.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.push(("AWS_LAMBDA_FUNCTION_NAME".into(), self.name.clone()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }
}

/// An organization in the emulator: its root, one OU and the member
/// accounts created in it.
#[derive(Debug)]
pub struct Organization {
    pub id: String,
    pub root: String,
    pub ou: String,
    pub members: Vec<String>,
}

/// Creates an organization (all features) in the emulator's default
/// account, which becomes its management account, with an OU holding
/// `members` new accounts.
pub async fn organization(moto: &Moto, ou: &str, members: usize) -> Result<Organization, BoxError> {
    const TARGET: &str = "AWSOrganizationsV20161128";
    let call = |action: &'static str, body: Value| async move {
        json_call(moto, "organizations", &format!("{TARGET}.{action}"), &body).await
    };
    let org = call(
        "CreateOrganization",
        serde_json::json!({"FeatureSet": "ALL"}),
    )
    .await?;
    let id = org["Organization"]["Id"]
        .as_str()
        .ok_or("CreateOrganization: no id")?
        .to_owned();
    let roots = call("ListRoots", serde_json::json!({})).await?;
    let root = roots["Roots"][0]["Id"]
        .as_str()
        .ok_or("ListRoots: no root")?
        .to_owned();
    let created = call(
        "CreateOrganizationalUnit",
        serde_json::json!({"ParentId": root, "Name": ou}),
    )
    .await?;
    let ou = created["OrganizationalUnit"]["Id"]
        .as_str()
        .ok_or("CreateOrganizationalUnit: no id")?
        .to_owned();
    let mut accounts = Vec::new();
    for i in 0..members {
        let status = call(
            "CreateAccount",
            serde_json::json!({"AccountName": format!("member-{i}"), "Email": format!("member-{i}@example.com")}),
        )
        .await?;
        let account = status["CreateAccountStatus"]["AccountId"]
            .as_str()
            .ok_or_else(|| format!("CreateAccount: no account id in {status}"))?
            .to_owned();
        call(
            "MoveAccount",
            serde_json::json!({"AccountId": account, "SourceParentId": root, "DestinationParentId": ou}),
        )
        .await?;
        accounts.push(account);
    }
    Ok(Organization {
        id,
        root,
        ou,
        members: accounts,
    })
}

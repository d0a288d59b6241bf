//! The CloudFormation custom resource request, as delivered to the function.
//!
//! Only what is needed to answer is required (`RequestType`, `ResponseURL`,
//! `StackId`, `RequestId`, `LogicalResourceId`, and `PhysicalResourceId` for
//! Update and Delete): a request without one of them cannot be answered at
//! all. Everything else (the resource type, the properties) is checked by the
//! resource handlers, whose errors become a FAILED response.

use std::fmt;

use serde_json::{Map, Value};

use crate::fields::show;

/// `RequestType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Create => "Create",
            RequestType::Update => "Update",
            RequestType::Delete => "Delete",
        }
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that cannot be answered: it lacks what the response must echo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CloudFormation custom resource request: {0}")]
pub struct EventError(pub String);

/// One custom resource request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub request_type: RequestType,
    /// `ResourceType`, e.g. `Custom::TargetSync` (empty if absent).
    pub resource_type: String,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_id: String,
    /// `PhysicalResourceId`: present on Update and Delete.
    pub physical_id: Option<String>,
    /// `ResourceProperties` (an empty object if absent).
    pub properties: Value,
    /// `OldResourceProperties` on Update.
    pub old_properties: Option<Value>,
}

impl Request {
    pub fn parse(event: &Value) -> Result<Request, EventError> {
        let Value::Object(map) = event else {
            return Err(EventError(format!(
                "expected a JSON object, got {}",
                show(event)
            )));
        };
        let request_type = match text(map, "RequestType")? {
            "Create" => RequestType::Create,
            "Update" => RequestType::Update,
            "Delete" => RequestType::Delete,
            other => {
                return Err(EventError(format!(
                    "RequestType: expected Create, Update or Delete, got \"{other}\""
                )));
            }
        };
        let physical_id = match map.get("PhysicalResourceId") {
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            None | Some(Value::Null) if request_type == RequestType::Create => None,
            other => {
                return Err(EventError(format!(
                    "PhysicalResourceId: a {request_type} request needs a non-empty string, got {}",
                    other.map_or_else(|| "nothing".to_owned(), show)
                )));
            }
        };
        let object = |name: &str| match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value @ Value::Object(_)) => Ok(Some(value.clone())),
            Some(other) => Err(EventError(format!(
                "{name}: expected an object, got {}",
                show(other)
            ))),
        };
        Ok(Request {
            request_type,
            resource_type: match map.get("ResourceType") {
                Some(Value::String(t)) => t.clone(),
                _ => String::new(),
            },
            response_url: text(map, "ResponseURL")?.to_owned(),
            stack_id: text(map, "StackId")?.to_owned(),
            request_id: text(map, "RequestId")?.to_owned(),
            logical_id: text(map, "LogicalResourceId")?.to_owned(),
            physical_id,
            properties: object("ResourceProperties")?.unwrap_or_else(|| Value::Object(Map::new())),
            old_properties: object("OldResourceProperties")?,
        })
    }
}

/// Properties with blank strings turned into nulls, which the field reader
/// treats as absent: templates pass `""` for an optional parameter left
/// empty (`DnsServers: !Ref DnsServers`). The keys stay, so that a misspelt
/// property is still reported.
pub fn blank_as_absent(properties: &Value) -> Value {
    let mut properties = properties.clone();
    if let Value::Object(map) = &mut properties {
        for value in map.values_mut() {
            if value.as_str().is_some_and(|s| s.trim().is_empty()) {
                *value = Value::Null;
            }
        }
    }
    properties
}

fn text<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a str, EventError> {
    match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(other) => Err(EventError(format!(
            "{name}: expected a non-empty string, got {}",
            show(other)
        ))),
        None => Err(EventError(format!("{name} is missing"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn create() -> Value {
        json!({
            "RequestType": "Create",
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:tether-custom-resources",
            "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=abc",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/tether/1f1e",
            "RequestId": "6c7f0a8e-1d1c-4b1b-9b7e-2c8f3f1c0d5e",
            "LogicalResourceId": "SyncApi80",
            "ResourceType": "Custom::TargetSync",
            "ResourceProperties": {"ServiceToken": "arn:...", "Port": "80"}
        })
    }

    #[test]
    fn a_real_create_event_parses() {
        let r = Request::parse(&create()).unwrap();
        assert_eq!(r.request_type, RequestType::Create);
        assert_eq!(r.resource_type, "Custom::TargetSync");
        assert_eq!(r.logical_id, "SyncApi80");
        assert_eq!(r.physical_id, None);
        assert_eq!(r.properties["Port"], "80");
        assert_eq!(r.old_properties, None);
    }

    #[test]
    fn update_and_delete_need_the_physical_id() {
        let mut event = create();
        event["RequestType"] = json!("Update");
        let err = Request::parse(&event).unwrap_err();
        assert!(err.0.contains("PhysicalResourceId"), "{err}");
        event["PhysicalResourceId"] = json!("tether-sync:x");
        event["OldResourceProperties"] = json!({"Port": "443"});
        let r = Request::parse(&event).unwrap();
        assert_eq!(r.physical_id.as_deref(), Some("tether-sync:x"));
        assert_eq!(r.old_properties.unwrap()["Port"], "443");
        event["RequestType"] = json!("Delete");
        assert_eq!(
            Request::parse(&event).unwrap().request_type,
            RequestType::Delete
        );
    }

    #[test]
    fn missing_answer_fields_are_errors_naming_them() {
        for field in [
            "RequestType",
            "ResponseURL",
            "StackId",
            "RequestId",
            "LogicalResourceId",
        ] {
            let mut event = create();
            event.as_object_mut().unwrap().remove(field);
            let err = Request::parse(&event).unwrap_err();
            assert!(err.0.contains(field), "{err}");
        }
        let mut event = create();
        event["RequestType"] = json!("Replace");
        assert!(Request::parse(&event).unwrap_err().0.contains("Replace"));
        assert!(Request::parse(&json!([1])).is_err());
    }

    #[test]
    fn a_missing_resource_type_is_left_to_the_dispatch() {
        let mut event = create();
        event.as_object_mut().unwrap().remove("ResourceType");
        event.as_object_mut().unwrap().remove("ResourceProperties");
        let r = Request::parse(&event).unwrap();
        assert_eq!(r.resource_type, "");
        assert_eq!(r.properties, json!({}));
    }

    #[test]
    fn blank_properties_count_as_absent() {
        let p = blank_as_absent(&json!({"DnsServers": "", "StatePrefix": " ", "Port": "80"}));
        assert_eq!(
            p,
            json!({"DnsServers": null, "StatePrefix": null, "Port": "80"})
        );
    }

    proptest! {
        /// Whatever the strings, parsing keeps them exactly.
        #[test]
        fn fields_are_kept_verbatim(
            kind in prop::sample::select(vec!["Create", "Update", "Delete"]),
            url in "[ -~]{1,80}", stack in "[ -~]{1,80}", request in "[ -~]{1,40}",
            logical in "[A-Za-z0-9]{1,40}", physical in "[ -~]{1,60}", rtype in "[ -~]{0,40}",
        ) {
            let event = json!({
                "RequestType": kind, "ResponseURL": url, "StackId": stack, "RequestId": request,
                "LogicalResourceId": logical, "PhysicalResourceId": physical,
                "ResourceType": rtype, "ResourceProperties": {"A": "1"},
            });
            let r = Request::parse(&event).unwrap();
            prop_assert_eq!(r.request_type.as_str(), kind);
            prop_assert_eq!(r.response_url, url);
            prop_assert_eq!(r.stack_id, stack);
            prop_assert_eq!(r.request_id, request);
            prop_assert_eq!(r.logical_id, logical);
            prop_assert_eq!(r.physical_id, Some(physical));
            prop_assert_eq!(r.resource_type, rtype);
        }
    }
}

//! The response body CloudFormation reads from the pre-signed URL.
//!
//! CloudFormation refuses a body over 4096 bytes, and a refused body leaves
//! the stack waiting for up to an hour. [`body`] therefore never exceeds
//! [`MAX_BODY`]: Data that does not fit is dropped and the response becomes
//! FAILED with an explanation (a SUCCESS without its attributes would only
//! fail later, at an obscure `Fn::GetAtt`), and a long `Reason` is cut.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::event::Request;

/// CloudFormation's limit for the whole response body.
pub const MAX_BODY: usize = 4096;

/// Appended to a `Reason` that had to be cut.
const TRUNCATED: &str = "… (truncated)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
        })
    }
}

/// What the function answers, before it is fitted into a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// Required (and always sent) when FAILED; optional on SUCCESS.
    pub reason: Option<String>,
    pub physical_id: String,
    /// Attributes for `Fn::GetAtt`; values are strings.
    pub data: BTreeMap<String, String>,
}

/// A serialized body, with what had to be changed to fit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// The status actually sent (FAILED when Data was dropped).
    pub status: Status,
    /// The reason actually sent.
    pub reason: Option<String>,
    pub data_dropped: bool,
    pub reason_truncated: bool,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "Status")]
    status: Status,
    #[serde(rename = "Reason", skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(rename = "PhysicalResourceId")]
    physical_id: &'a str,
    #[serde(rename = "StackId")]
    stack_id: &'a str,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
    #[serde(rename = "LogicalResourceId")]
    logical_id: &'a str,
    #[serde(rename = "Data", skip_serializing_if = "Option::is_none")]
    data: Option<&'a BTreeMap<String, String>>,
}

fn serialize(
    request: &Request,
    status: Status,
    reason: Option<&str>,
    physical_id: &str,
    data: Option<&BTreeMap<String, String>>,
) -> Vec<u8> {
    let wire = Wire {
        status,
        reason,
        physical_id,
        stack_id: &request.stack_id,
        request_id: &request.request_id,
        logical_id: &request.logical_id,
        data,
    };
    // A struct of strings and a map of strings always serializes.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The body for `response` to `request`, at most [`MAX_BODY`] bytes as long
/// as the ids CloudFormation sent leave room (they take a few hundred bytes).
pub fn body(request: &Request, response: &Response) -> Body {
    let mut status = response.status;
    let mut reason = match (status, &response.reason) {
        (_, Some(reason)) if !reason.trim().is_empty() => Some(reason.clone()),
        (Status::Failed, _) => Some("failed (no reason given)".to_owned()),
        (Status::Success, _) => None,
    };
    let data = (!response.data.is_empty()).then_some(&response.data);
    let pid = response.physical_id.as_str();

    let bytes = serialize(request, status, reason.as_deref(), pid, data);
    if bytes.len() <= MAX_BODY {
        return Body {
            bytes,
            status,
            reason,
            data_dropped: false,
            reason_truncated: false,
        };
    }

    let mut data_dropped = false;
    if let Some(data) = data {
        let data_size = serde_json::to_vec(data).map_or(0, |d| d.len());
        let why = format!(
            "the response Data ({} attributes, {data_size} bytes) does not fit in CloudFormation's {MAX_BODY}-byte response limit and was dropped",
            data.len()
        );
        reason = Some(match (status, reason) {
            (Status::Failed, Some(r)) => format!("{r}; {why}"),
            (_, Some(r)) => format!("{why} ({r})"),
            (_, None) => why,
        });
        status = Status::Failed;
        data_dropped = true;
        let bytes = serialize(request, status, reason.as_deref(), pid, None);
        if bytes.len() <= MAX_BODY {
            return Body {
                bytes,
                status,
                reason,
                data_dropped,
                reason_truncated: false,
            };
        }
    }

    // Only the reason is left to shorten.
    let full = reason.unwrap_or_default();
    let base = serialize(request, status, Some(""), pid, None).len();
    let room = MAX_BODY.saturating_sub(base);
    let cut = cut_to_escaped(&full, room.saturating_sub(escaped_len(TRUNCATED)));
    let reason = Some(format!("{cut}{TRUNCATED}"));
    let mut bytes = serialize(request, status, reason.as_deref(), pid, None);
    let reason = if bytes.len() <= MAX_BODY {
        reason
    } else {
        // Not even the suffix fits: the ids are too long for any reason.
        bytes = serialize(request, status, Some(""), pid, None);
        Some(String::new())
    };
    Body {
        bytes,
        status,
        reason,
        data_dropped,
        reason_truncated: true,
    }
}

/// Bytes a character takes inside a JSON string as serde_json writes it.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(text: &str) -> usize {
    text.chars().map(escaped_char_len).sum()
}

/// The longest prefix of `text` (whole characters) whose escaped form takes
/// at most `room` bytes.
fn cut_to_escaped(text: &str, room: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += escaped_char_len(c);
        if used > room {
            return &text[..i];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfn::event::RequestType;
    use proptest::prelude::*;
    use serde_json::Value;

    fn request() -> Request {
        Request {
            request_type: RequestType::Create,
            resource_type: "Custom::DnsAddresses".into(),
            response_url: "https://example.invalid/x".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/tether/8d3e6f40-1a2b-11f0-9c4d-0affd1e2f3a5".into(),
            request_id: "6c7f0a8e-1d1c-4b1b-9b7e-2c8f3f1c0d5e".into(),
            logical_id: "EndpointAddresses".into(),
            physical_id: None,
            properties: Value::Null,
            old_properties: None,
        }
    }

    fn parse(body: &Body) -> Value {
        serde_json::from_slice(&body.bytes).unwrap()
    }

    #[test]
    fn success_with_data() {
        let data = BTreeMap::from([("Count".to_owned(), "2".to_owned())]);
        let b = body(
            &request(),
            &Response {
                status: Status::Success,
                reason: None,
                physical_id: "pid".into(),
                data,
            },
        );
        let v = parse(&b);
        assert_eq!(v["Status"], "SUCCESS");
        assert!(v.get("Reason").is_none());
        assert_eq!(v["PhysicalResourceId"], "pid");
        assert_eq!(v["LogicalResourceId"], "EndpointAddresses");
        assert_eq!(v["Data"]["Count"], "2");
        assert!(!b.data_dropped && !b.reason_truncated);
    }

    #[test]
    fn failed_always_has_a_reason_and_no_empty_data() {
        let b = body(
            &request(),
            &Response {
                status: Status::Failed,
                reason: Some(" ".into()),
                physical_id: "p".into(),
                data: BTreeMap::new(),
            },
        );
        let v = parse(&b);
        assert_eq!(v["Status"], "FAILED");
        assert_eq!(v["Reason"], "failed (no reason given)");
        assert!(v.get("Data").is_none());
    }

    #[test]
    fn oversize_data_is_dropped_with_an_explanation() {
        let data: BTreeMap<String, String> = (1..=300)
            .map(|n| {
                (
                    format!("Address{n}"),
                    format!("10.0.{}.{}", n / 250, n % 250),
                )
            })
            .collect();
        let b = body(
            &request(),
            &Response {
                status: Status::Success,
                reason: None,
                physical_id: "p".into(),
                data,
            },
        );
        assert!(b.bytes.len() <= MAX_BODY);
        assert!(b.data_dropped);
        let v = parse(&b);
        assert_eq!(v["Status"], "FAILED");
        assert!(v.get("Data").is_none());
        assert!(
            v["Reason"].as_str().unwrap().contains("300 attributes"),
            "{v}"
        );
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let reason = "é\"\u{1}".repeat(5000);
        let b = body(
            &request(),
            &Response {
                status: Status::Failed,
                reason: Some(reason),
                physical_id: "p".into(),
                data: BTreeMap::new(),
            },
        );
        assert!(b.bytes.len() <= MAX_BODY);
        assert!(
            b.bytes.len() > MAX_BODY - 16,
            "uses the room: {}",
            b.bytes.len()
        );
        let v = parse(&b);
        assert!(v["Reason"].as_str().unwrap().ends_with(TRUNCATED));
    }

    fn any_data() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map("[A-Za-z0-9]{1,20}", any::<String>(), 0..200)
    }

    proptest! {
        #[test]
        fn any_reason_and_data_fit_and_stay_valid_json(
            failed in any::<bool>(),
            reason in prop::option::of(prop_oneof![any::<String>(), "\\PC{0,6000}", "[\"\\\\\u{0}-\u{1f}]{0,5000}"]),
            data in any_data(),
            physical_id in "[ -~]{1,1024}",
        ) {
            let status = if failed { Status::Failed } else { Status::Success };
            let r = request();
            let b = body(&r, &Response { status, reason: reason.clone(), physical_id: physical_id.clone(), data: data.clone() });
            prop_assert!(b.bytes.len() <= MAX_BODY, "{} bytes", b.bytes.len());
            let v: Value = serde_json::from_slice(&b.bytes).unwrap();
            let status = b.status.to_string();
            prop_assert_eq!(v["Status"].as_str(), Some(status.as_str()));
            prop_assert_eq!(v["PhysicalResourceId"].as_str(), Some(physical_id.as_str()));
            prop_assert_eq!(v["StackId"].as_str(), Some(r.stack_id.as_str()));
            prop_assert_eq!(v["RequestId"].as_str(), Some(r.request_id.as_str()));
            prop_assert_eq!(v["LogicalResourceId"].as_str(), Some(r.logical_id.as_str()));
            if b.status == Status::Failed {
                prop_assert!(v["Reason"].is_string());
            }
            if failed {
                prop_assert_eq!(b.status, Status::Failed);
            }
            // Data is sent whole or not at all.
            match v.get("Data") {
                Some(sent) => prop_assert_eq!(sent, &serde_json::to_value(&data).unwrap()),
                None => prop_assert!(data.is_empty() || b.data_dropped),
            }
            // A reason is sent whole, or cut and marked.
            let original = reason.as_deref().filter(|r| !r.trim().is_empty());
            let kept = !b.data_dropped && !b.reason_truncated;
            if let (Some(original), Some(sent), true) = (original, v["Reason"].as_str(), kept) {
                prop_assert_eq!(sent, original);
            }
        }
    }
}

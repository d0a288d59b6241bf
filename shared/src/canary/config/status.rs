//! `expect_status`: the status codes that count as healthy.

use std::fmt;
use std::ops::RangeInclusive;

use serde_json::Value;

use crate::fields::{shorten, show};

/// Accepted status codes: inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<RangeInclusive<u16>>);

impl Default for StatusSet {
    /// `200-299`.
    fn default() -> Self {
        StatusSet(vec![200..=299])
    }
}

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }

    /// Parses `200`, `200-299`, `200-299, 301` (items separated by commas).
    pub fn parse(text: &str) -> Result<Self, String> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Err(format!("\"{}\" names no status code", shorten(text)));
        }
        let mut ranges = Vec::new();
        for item in items {
            let (low, high) = match item.split_once('-') {
                Some((low, high)) => (low.trim(), high.trim()),
                None => (item, item),
            };
            let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
            match (code(low), code(high)) {
                (Some(low), Some(high)) if low <= high => ranges.push(low..=high),
                _ => {
                    return Err(format!(
                        "\"{}\" is not a status code (100-599) or a range such as 200-299",
                        shorten(item)
                    ));
                }
            }
        }
        Ok(StatusSet(ranges))
    }

    /// From JSON: a number, a string of items, or an array of either.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Array(items) if !items.is_empty() => {
                let parts: Option<Vec<String>> = items
                    .iter()
                    .map(|item| match item {
                        Value::Number(n) => Some(n.to_string()),
                        Value::String(s) if !s.contains(',') => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                parts
                    .ok_or_else(|| {
                        format!(
                            "expected status codes or ranges such as \"200-299\", got {}",
                            show(value)
                        )
                    })?
                    .join(",")
            }
            other => {
                return Err(format!(
                    "expected a status code, a range such as \"200-299\" or a list of them, got {}",
                    show(other)
                ));
            }
        };
        Self::parse(&text)
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r.start() == r.end() {
                true => r.start().to_string(),
                false => format!("{}-{}", r.start(), r.end()),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn status_sets() {
        let s = StatusSet::parse("200-299").unwrap();
        assert!(s.contains(200) && s.contains(299) && !s.contains(300) && !s.contains(199));
        assert_eq!(StatusSet::default(), s);
        for bad in [
            "",
            "abc",
            "99",
            "600",
            "300-200",
            "200-",
            "2OO",
            "200-299-300",
        ] {
            assert!(StatusSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_json_takes_numbers_strings_and_lists() {
        let s = StatusSet::from_json(&json!([200, "301-302"])).unwrap();
        assert_eq!(s.to_string(), "200,301-302");
        assert_eq!(
            StatusSet::from_json(&json!(204)).unwrap().to_string(),
            "204"
        );
        let err = StatusSet::from_json(&json!({"a": 1})).unwrap_err();
        assert!(err.contains("{\"a\":1}"), "{err}");
        let err = StatusSet::from_json(&json!(["200,201"])).unwrap_err();
        assert!(err.contains("200,201"), "{err}");
    }

    proptest! {
        #[test]
        fn status_ranges_contain_exactly_their_codes(low in 100u16..=599, len in 0u16..100, probe in 100u16..=599) {
            let high = (low + len).min(599);
            let s = StatusSet::parse(&format!(" {low} - {high} ")).unwrap();
            prop_assert_eq!(s.contains(probe), (low..=high).contains(&probe));
            let reparsed = StatusSet::parse(&s.to_string()).unwrap();
            prop_assert_eq!(reparsed, s);
        }
    }
}

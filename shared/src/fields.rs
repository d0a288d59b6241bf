//! Reading typed fields out of a JSON object with errors that name the field
//! and the value.
//!
//! The same reader serves `TARGETS` (JSON written by a person) and
//! CloudFormation custom resource properties (where every scalar arrives as a
//! string), so numbers and booleans are accepted both as JSON values and as
//! strings (`443` and `"443"`, `true` and `"true"`).

use std::fmt;

use serde_json::{Map, Value};

/// A field (or variable) with an unusable value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct FieldError {
    /// Where the value came from, e.g. `TARGETS[1].port` or `ALB_LISTENER`.
    pub location: String,
    /// What is wrong, quoting the value.
    pub problem: String,
}

impl FieldError {
    pub fn new(location: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            problem: problem.into(),
        }
    }
}

/// Shows a JSON value the way a user wrote it, shortened if long.
pub fn show(value: &Value) -> String {
    let text = value.to_string();
    shorten(&text)
}

/// Shortens text for an error message (values can be large or secret-ish).
pub fn shorten(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head}…")
}

/// One of a closed set of words (a setting such as `ownership`), or an
/// error that lists them and quotes `value`.
pub fn one_of<T: Copy>(value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    match choices.iter().find(|(word, _)| *word == value) {
        Some((_, choice)) => Ok(*choice),
        None => {
            let words: Vec<String> = choices.iter().map(|(w, _)| format!("\"{w}\"")).collect();
            Err(format!(
                "expected {}, got \"{}\"",
                words.join(" or "),
                shorten(value)
            ))
        }
    }
}

/// A JSON object being read field by field; reports unknown fields at the end.
pub struct Fields<'a> {
    location: String,
    map: &'a Map<String, Value>,
    seen: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// `location` names the object in messages, e.g. `TARGETS[0]`.
    pub fn new(location: impl Into<String>, value: &'a Value) -> Result<Self, FieldError> {
        let location = location.into();
        match value {
            Value::Object(map) => Ok(Self {
                location,
                map,
                seen: Vec::new(),
            }),
            other => Err(FieldError::new(
                location,
                format!("expected a JSON object, got {}", show(other)),
            )),
        }
    }

    /// The location of one field, for messages.
    pub fn at(&self, name: &str) -> String {
        format!("{}.{name}", self.location)
    }

    fn get(&mut self, name: &'static str) -> Option<&'a Value> {
        self.seen.push(name);
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    /// The field as it is, for a caller that reads it itself.
    pub fn raw(&mut self, name: &'static str) -> Option<&'a Value> {
        self.get(name)
    }

    fn missing(&self, name: &str) -> FieldError {
        FieldError::new(self.at(name), "is required")
    }

    /// A non-empty string (surrounding white space removed).
    pub fn string(&mut self, name: &'static str) -> Result<Option<String>, FieldError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            Some(other) => Err(FieldError::new(
                self.at(name),
                format!("expected a non-empty string, got {}", show(other)),
            )),
        }
    }

    pub fn required_string(&mut self, name: &'static str) -> Result<String, FieldError> {
        self.string(name)?.ok_or_else(|| self.missing(name))
    }

    /// A whole number in `range`, given as a JSON number or a string of digits.
    pub fn number(
        &mut self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, FieldError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(FieldError::new(
                self.at(name),
                format!(
                    "expected a whole number from {} to {}, got {}",
                    range.start(),
                    range.end(),
                    show(value)
                ),
            )),
        }
    }

    pub fn required_number(
        &mut self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, FieldError> {
        self.number(name, range)?.ok_or_else(|| self.missing(name))
    }

    /// `true`/`false`, as JSON booleans or strings (any case).
    pub fn boolean(&mut self, name: &'static str) -> Result<Option<bool>, FieldError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match value {
            Value::Bool(b) => Ok(Some(*b)),
            Value::String(s) => parse_bool(s)
                .map(Some)
                .ok_or_else(|| FieldError::new(self.at(name), bool_problem(s))),
            other => Err(FieldError::new(self.at(name), bool_problem(show(other)))),
        }
    }

    /// A list of non-empty strings: a JSON array, or one string holding a
    /// comma-separated list.
    pub fn string_list(&mut self, name: &'static str) -> Result<Option<Vec<String>>, FieldError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let items: Option<Vec<String>> = match value {
            Value::String(s) => Some(split_list(s)),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        match items {
            Some(items) if !items.is_empty() => Ok(Some(items)),
            _ => Err(FieldError::new(
                self.at(name),
                format!("expected a non-empty list of strings, got {}", show(value)),
            )),
        }
    }

    /// Fails on any field that was never asked for (a typo must not be ignored).
    pub fn finish(self) -> Result<(), FieldError> {
        let mut unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|key| !self.seen.contains(&key.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(key) => {
                let mut known = self.seen.clone();
                known.sort_unstable();
                Err(FieldError::new(
                    self.at(key),
                    format!("unknown field (known fields: {})", known.join(", ")),
                ))
            }
        }
    }
}

/// A non-empty JSON array held by the variable `variable` (`what` names its
/// items in messages, e.g. "mappings").
pub fn json_array(variable: &str, text: &str, what: &str) -> Result<Vec<Value>, FieldError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        FieldError::new(
            variable,
            format!("is not valid JSON ({e}): {}", shorten(text)),
        )
    })?;
    match value {
        Value::Array(items) if items.is_empty() => {
            Err(FieldError::new(variable, "is an empty array"))
        }
        Value::Array(items) => Ok(items),
        _ => Err(FieldError::new(
            variable,
            format!("expected a JSON array of {what}, got {}", shorten(text)),
        )),
    }
}

/// Splits `a, b,c` into trimmed, non-empty items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `true`/`false` in any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn bool_problem(value: impl fmt::Display) -> String {
    format!("expected true or false, got {value}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_of_names_every_choice_and_quotes_the_value() {
        let choices = [("fleet", 1), ("detailed", 2)];
        assert_eq!(one_of("detailed", &choices), Ok(2));
        assert_eq!(
            one_of("Detailed", &choices),
            Err("expected \"fleet\" or \"detailed\", got \"Detailed\"".to_owned())
        );
    }

    #[test]
    fn numbers_and_booleans_are_accepted_as_strings() {
        let value = json!({"port": "443", "dry": "TRUE", "n": 7, "b": false});
        let mut f = Fields::new("X", &value).unwrap();
        assert_eq!(f.number("port", 1..=65535).unwrap(), Some(443));
        assert_eq!(f.boolean("dry").unwrap(), Some(true));
        assert_eq!(f.number("n", 0..=10).unwrap(), Some(7));
        assert_eq!(f.boolean("b").unwrap(), Some(false));
        f.finish().unwrap();
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let value = json!({"port": 0, "typo": 1});
        let mut f = Fields::new("TARGETS[2]", &value).unwrap();
        let err = f.number("port", 1..=65535).unwrap_err();
        assert_eq!(err.location, "TARGETS[2].port");
        assert!(err.problem.contains("got 0"), "{err}");
        let err = f.finish().unwrap_err();
        assert_eq!(err.location, "TARGETS[2].typo");
        assert!(err.problem.contains("unknown field"), "{err}");
    }

    #[test]
    fn lists_come_as_arrays_or_comma_separated_strings() {
        let value = json!({"a": ["A", " AAAA "], "b": "A, AAAA", "c": [], "d": [1]});
        let mut f = Fields::new("X", &value).unwrap();
        assert_eq!(f.string_list("a").unwrap().unwrap(), ["A", "AAAA"]);
        assert_eq!(f.string_list("b").unwrap().unwrap(), ["A", "AAAA"]);
        assert!(f.string_list("c").is_err());
        assert!(f.string_list("d").is_err());
    }

    #[test]
    fn missing_and_null_are_absent_but_required_fields_say_so() {
        let value = json!({"a": null});
        let mut f = Fields::new("X", &value).unwrap();
        assert_eq!(f.string("a").unwrap(), None);
        let err = f.required_string("b").unwrap_err();
        assert_eq!(err.to_string(), "X.b: is required");
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(500);
        assert!(shorten(&long).chars().count() <= 121);
    }
}

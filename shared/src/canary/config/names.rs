//! Endpoint names: what CloudWatch, Route 53 and the template accept.
//!
//! A name is the `Endpoint` dimension value of the canary's metrics and, in
//! the template, part of logical IDs (`EndpointHealthCheck&{Endpoint}`):
//! `Fn::ForEach` with `&{}` keeps only the name's letters and digits.
//!
//! - CloudWatch (`Dimension.Value`): ASCII only, no control characters, at
//!   least one non-whitespace character, 1 to 1024 characters.
//! - Route 53 (`CLOUDWATCH_METRIC` health checks copy the alarm's dimensions):
//!   at most 255 characters, which is the stricter limit and the one kept.
//! - CloudFormation: a logical ID has only letters and digits and at most 255
//!   characters, so a name needs a letter or digit, its letters and digits
//!   must differ from every other name's, and the longest prefix plus them
//!   must fit.

use std::collections::HashMap;

/// Route 53's limit on the dimension value of a health check's alarm
/// (CloudWatch alone would take 1024).
pub const MAX_NAME_CHARS: usize = 255;
/// CloudFormation's limit on a logical ID.
pub const MAX_LOGICAL_ID: usize = 255;
/// Every logical ID prefix the template puts before `&{Endpoint}`
/// (`tests/tests/canary_names.rs` checks this list against template.yaml).
pub const LOGICAL_ID_PREFIXES: &[&str] = &[
    "EndpointAlarm",
    "EndpointHealthCheck",
    "CertificateAlarm",
    "HealthCheckId",
];

/// What the template's `&{Endpoint}` makes of `name`: its ASCII letters and
/// digits.
pub fn logical_suffix(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// Why one name is refused on its own (without the others).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(
            "has no character other than whitespace (CloudWatch refuses such a dimension value)"
                .into(),
        );
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "contains the non-ASCII character {c:?} (U+{:04X}); CloudWatch dimension values are ASCII",
            u32::from(c)
        ));
    }
    if let Some(c) = name.chars().find(char::is_ascii_control) {
        return Err(format!(
            "contains the control character U+{:04X}; CloudWatch refuses control characters in dimension values",
            u32::from(c)
        ));
    }
    if name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "is {} characters long; a Route 53 health check's alarm dimension takes at most {MAX_NAME_CHARS}",
            name.len()
        ));
    }
    let suffix = logical_suffix(name);
    if suffix.is_empty() {
        return Err("has no letter or digit: the template's logical IDs (EndpointAlarm&{Endpoint}) keep only those".into());
    }
    let longest = LOGICAL_ID_PREFIXES
        .iter()
        .map(|p| p.len())
        .max()
        .unwrap_or(0);
    if longest + suffix.len() > MAX_LOGICAL_ID {
        return Err(format!(
            "has {} letters and digits; with the template's longest logical ID prefix ({longest} characters) that is more than the {MAX_LOGICAL_ID} characters of a logical ID",
            suffix.len()
        ));
    }
    Ok(())
}

/// The first pair of names (by index) whose letters and digits are the
/// same, so that the template would build one logical ID for both.
pub fn colliding<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<(usize, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Some(first) = seen.insert(logical_suffix(name), i) {
            return Some((first, i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_names() {
        for name in [
            "orders",
            "orders-api",
            "Orders API 2",
            "a",
            "eu-west-1/orders",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        assert_eq!(check_name(&"a".repeat(236)), Ok(()));
    }

    #[test]
    fn bad_names_say_why() {
        let cases = [
            ("", "whitespace"),
            ("   ", "whitespace"),
            ("caf\u{e9}", "non-ASCII"),
            ("a\tb", "control character U+0009"),
            ("a\u{7f}", "control character U+007F"),
            ("--", "no letter or digit"),
        ];
        for (name, needle) in cases {
            let err = check_name(name).unwrap_err();
            assert!(err.contains(needle), "{name:?}: {err}");
        }
        assert!(
            check_name(&"a".repeat(256))
                .unwrap_err()
                .contains("256 characters")
        );
        // 237 letters plus EndpointHealthCheck (19) is 256.
        assert!(
            check_name(&"a".repeat(237))
                .unwrap_err()
                .contains("logical ID")
        );
        assert!(check_name(&format!("{}-", "a".repeat(236))).is_ok());
    }

    #[test]
    fn names_collide_when_their_letters_and_digits_do() {
        assert_eq!(
            colliding(["orders-api", "billing", "orders_api"]),
            Some((0, 2))
        );
        assert_eq!(colliding(["orders", "Orders"]), None);
        assert_eq!(colliding(["a.b", "a-c"]), None);
    }

    proptest! {
        #[test]
        fn an_accepted_name_makes_a_logical_id_within_limits(name in "\\PC{0,300}") {
            if check_name(&name).is_ok() {
                let suffix = logical_suffix(&name);
                prop_assert!(name.is_ascii() && !name.trim().is_empty());
                prop_assert!(!name.chars().any(|c| c.is_ascii_control()));
                prop_assert!(!suffix.is_empty());
                for prefix in LOGICAL_ID_PREFIXES {
                    prop_assert!(prefix.len() + suffix.len() <= MAX_LOGICAL_ID);
                }
            }
        }

        #[test]
        fn punctuation_never_tells_names_apart(base in "[a-z0-9]{1,20}", a in "[-_. /]{0,3}", b in "[-_. /]{1,3}") {
            let first = format!("{base}{a}");
            let second = format!("{b}{base}");
            prop_assert_eq!(colliding([first.as_str(), second.as_str()]), Some((0, 1)));
        }
    }
}

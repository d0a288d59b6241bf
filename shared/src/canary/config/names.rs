//! Endpoint names: the one rule, stated here and nowhere else.
//!
//! A name is the value of the `Endpoint` dimension of the canary's metrics
//! and the `endpoint` field of its log lines. Nothing else is built from it:
//! no template resource, alarm or health check is made per endpoint (the
//! region's decision is one metric). So a name only has to be
//!
//! - a CloudWatch dimension value: "Dimension values must contain only ASCII
//!   characters and must include at least one non-whitespace character.
//!   ASCII control characters are not supported as part of dimension
//!   values", 1 to 1024 characters (CloudWatch API Reference, `Dimension`,
//!   <https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html>);
//! - usable in a log line: no control character, so one name is one line
//!   (the CloudWatch rule already says so);
//! - distinct from every other name of the function, compared exactly as
//!   CloudWatch compares dimension values ([`first_repeat`]).
//!
//! `orders-api`, `orders_api` and `Orders API` are three good, different names.

use std::collections::HashMap;

/// CloudWatch's limit on a dimension value.
pub const MAX_NAME_CHARS: usize = 1024;

/// Why one name is refused on its own (without the others); the caller puts
/// the field and the quoted value in front.
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
            "contains the control character U+{:04X}; CloudWatch refuses control characters in dimension values (and a log line would break)",
            u32::from(c)
        ));
    }
    if name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "is {} characters long; a CloudWatch dimension value takes at most {MAX_NAME_CHARS}",
            name.len()
        ));
    }
    Ok(())
}

/// The first name (by index) that repeats an earlier one: `(earlier, later)`.
pub fn first_repeat<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<(usize, usize)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Some(first) = seen.insert(name, i) {
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
            "orders_api",
            "orders.api",
            "Orders API 2",
            "a",
            "eu-west-1/orders",
            "--",
            "#1 (primary)",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        assert_eq!(check_name(&"a".repeat(MAX_NAME_CHARS)), Ok(()));
    }

    #[test]
    fn bad_names_say_why() {
        let cases = [
            ("", "whitespace"),
            ("   ", "whitespace"),
            ("caf\u{e9}", "non-ASCII"),
            ("a\tb", "control character U+0009"),
            ("a\nb", "control character U+000A"),
            ("a\u{7f}", "control character U+007F"),
        ];
        for (name, needle) in cases {
            let err = check_name(name).unwrap_err();
            assert!(err.contains(needle), "{name:?}: {err}");
        }
        assert!(
            check_name(&"a".repeat(MAX_NAME_CHARS + 1))
                .unwrap_err()
                .contains("1025 characters")
        );
    }

    #[test]
    fn names_repeat_only_when_equal() {
        assert_eq!(
            first_repeat(["orders-api", "billing", "orders-api"]),
            Some((0, 2))
        );
        assert_eq!(
            first_repeat(["orders-api", "orders_api", "Orders-API"]),
            None
        );
        assert_eq!(first_repeat([]), None);
    }

    proptest! {
        /// The rule is CloudWatch's, exactly: an accepted name is 1 to 1024
        /// ASCII characters without control characters and not only
        /// whitespace; every such string is accepted.
        #[test]
        fn a_name_is_accepted_exactly_when_cloudwatch_takes_it(name in "\\PC{0,40}|[ -~\\t\\n]{0,40}|[a-z]{1020,1030}") {
            let cloudwatch_takes_it = !name.is_empty()
                && name.len() <= MAX_NAME_CHARS
                && name.is_ascii()
                && !name.chars().any(|c| c.is_ascii_control())
                && name.chars().any(|c| !c.is_whitespace());
            prop_assert_eq!(check_name(&name).is_ok(), cloudwatch_takes_it, "{:?}", name);
        }

        #[test]
        fn punctuation_and_case_tell_names_apart(base in "[a-z0-9]{1,20}", a in "[-_. /]{1,3}") {
            let first = base.clone();
            let second = format!("{base}{a}");
            let third = base.to_ascii_uppercase();
            let distinct = first_repeat([first.as_str(), second.as_str(), third.as_str()]);
            prop_assert_eq!(distinct, if first == third { Some((0, 2)) } else { None });
        }
    }
}

//! The canary's cold-start check of endpoint names knows every logical ID
//! the template builds from them: each `<Prefix>&{Endpoint}` key of
//! template.yaml's `Fn::ForEach` blocks has its prefix in
//! `LOGICAL_ID_PREFIXES`, so the length limit it checks is the template's.

use tether_shared::canary::names::{LOGICAL_ID_PREFIXES, MAX_LOGICAL_ID, check_name};
use tether_tests::moto::{BoxError, workspace_root};

/// The prefixes of the keys ending in `&{Endpoint}:` (a `&{...}` key is
/// only valid inside `Fn::ForEach`).
fn template_prefixes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let key = line.trim_start().trim_start_matches("- ");
            let (prefix, rest) = key.split_once("&{Endpoint}")?;
            (rest.starts_with(':')
                && !prefix.is_empty()
                && prefix.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| prefix.to_owned())
        })
        .collect()
}

#[test]
fn every_logical_id_prefix_of_the_template_is_known_to_the_name_check() -> Result<(), BoxError> {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml"))?;
    let prefixes = template_prefixes(&text);
    // Since issue 17 the template builds no logical ID from an endpoint name
    // (no Fn::ForEach): any that comes back must be known to the check.
    assert!(
        !text.contains("Fn::ForEach") && prefixes.is_empty(),
        "&{{Endpoint}} keys are back: {prefixes:?}"
    );
    for prefix in &prefixes {
        assert!(
            LOGICAL_ID_PREFIXES.contains(&prefix.as_str()),
            "template.yaml builds {prefix}&{{Endpoint}}; add {prefix:?} to canary::names::LOGICAL_ID_PREFIXES"
        );
    }
    // The longest accepted name makes a valid logical ID with every prefix
    // the check knows.
    let longest = LOGICAL_ID_PREFIXES
        .iter()
        .map(|p| p.len())
        .max()
        .unwrap_or(0);
    let name = "a".repeat(MAX_LOGICAL_ID - longest);
    assert_eq!(check_name(&name), Ok(()));
    assert!(check_name(&format!("{name}b")).is_err());
    Ok(())
}

#[test]
fn the_prefix_scan_reads_foreach_keys_only() {
    let text = "Resources:\n  Fn::ForEach::Endpoints:\n    - Endpoint\n    - !Ref CanaryEndpoints\n    - EndpointAlarm&{Endpoint}:\n        Type: X\n      EndpointHealthCheck&{Endpoint}:\n        Name: { Ref: !Sub \"EndpointAlarm&{Endpoint}\" }\n";
    assert_eq!(
        template_prefixes(text),
        ["EndpointAlarm", "EndpointHealthCheck"]
    );
}

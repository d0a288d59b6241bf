//! Endpoint names follow one rule, `canary::config::names` (a CloudWatch
//! dimension value, distinct within the function); nothing else constrains
//! them. The demo's names pass the canary's own cold-start check, and
//! names that differ only by punctuation, which the template's logical IDs
//! once could not tell apart, are two endpoints.

use serde_json::{Value, json};
use tether_shared::canary::CanaryConfig;
use tether_shared::canary::config::names::{MAX_NAME_CHARS, check_name};
use tether_shared::config::Vars;
use tether_tests::demo;

fn load(targets: &Value) -> Result<CanaryConfig, tether_shared::config::ConfigError> {
    let text = targets.to_string();
    CanaryConfig::from_vars(&Vars(|name: &str| {
        (name == "CANARY_TARGETS").then(|| text.clone())
    }))
}

#[test]
fn the_demos_endpoints_pass_the_canarys_check() {
    // A real PEM: the demo trusts a private CA through ca_bundle.
    let ca = tether_tests::https::TestCa::new("names CA").expect("a test CA");
    let targets =
        demo::canary::targets("https://orders.internal.example.test:8443/health", ca.pem());
    let config = load(&targets).unwrap_or_else(|e| panic!("the demo's CANARY_TARGETS: {e}"));
    let names: Vec<&str> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, [demo::canary::ENDPOINT]);
    assert!(
        demo::canary::ENDPOINT.contains('-'),
        "the demo shows a name with punctuation"
    );
}

#[test]
fn punctuation_case_and_length_up_to_cloudwatchs_limit_make_distinct_names() {
    let long = "a".repeat(MAX_NAME_CHARS);
    let targets = json!([
        {"name": "orders-api", "url": "http://a.example.test/"},
        {"name": "orders_api", "url": "http://b.example.test/"},
        {"name": "Orders API", "url": "http://c.example.test/"},
        {"name": "eu-west-1/orders", "url": "http://d.example.test/"},
        {"name": long, "url": "http://e.example.test/"},
    ]);
    let config = load(&targets).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.endpoints.len(), 5);
    for e in &config.endpoints {
        assert_eq!(check_name(&e.name), Ok(()));
    }
}

#[test]
fn a_bad_or_repeated_name_names_the_field_and_the_value() {
    let cases = [
        (
            json!([{"name": "orders\napi", "url": "http://a/"}]),
            "CANARY_TARGETS[0].name",
            "\"orders\\napi\" contains the control character U+000A",
        ),
        (
            json!([{"name": "a".repeat(MAX_NAME_CHARS + 1), "url": "http://a/"}]),
            "CANARY_TARGETS[0].name",
            "1025 characters",
        ),
        (
            json!([{"name": "orders-api", "url": "http://a/"}, {"name": "orders-api", "url": "http://b/"}]),
            "CANARY_TARGETS[1].name",
            "\"orders-api\" is already the name of CANARY_TARGETS[0]",
        ),
    ];
    for (targets, location, needle) in cases {
        let err = load(&targets)
            .err()
            .unwrap_or_else(|| panic!("{targets} was accepted"));
        assert_eq!(err.location, location, "{err}");
        assert!(err.problem.contains(needle), "{err} should say {needle}");
    }
}

#[test]
fn the_template_builds_nothing_from_an_endpoint_name() -> Result<(), tether_tests::moto::BoxError> {
    // One rule for names: the canary's check. The template once built
    // logical IDs and alarms from a `CanaryEndpoints` list with a pattern of
    // its own, so a name the canary accepted could never get an alarm.
    let text = std::fs::read_to_string(tether_tests::moto::workspace_root().join("template.yaml"))?;
    for needle in [
        "&{Endpoint}",
        "Fn::ForEach",
        "CanaryEndpoints",
        "CANARY_ENDPOINTS",
    ] {
        assert!(!text.contains(needle), "template.yaml has {needle} again");
    }
    Ok(())
}

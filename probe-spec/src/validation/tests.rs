use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

use super::*;
use crate::{
    duration::{DURATION_PATTERN, parse_duration},
    port::{PORT_NAME_MAX_LENGTH, PORT_NAME_PATTERN, port_name_problem},
    test_support::pattern_matches,
};

/// Each schema pattern accepts exactly what the matching Rust check accepts, so `validate()`
/// and the apiserver agree (lengths are checked by maxLength beside the pattern).
#[test]
fn schema_patterns_agree_with_the_rust_checks() {
    let dns_names = [
        "api",
        "api.shop.svc.cluster.local",
        "api.shop.svc.cluster.local.",
        "Example.COM",
        "a-1.b2",
        "1.2.3.4",
        "",
        ".",
        "a..b",
        "-api",
        "api-",
        "api_shop",
        "http://x",
        "a b",
        "ä.com",
        &"a".repeat(63),
        &"a".repeat(64),
    ];
    for name in dns_names {
        assert_eq!(
            pattern_matches(DNS_NAME_PATTERN, name),
            dns_name_problem(name).is_none(),
            "dns name {name:?}"
        );
    }

    let object_names = [
        "frontend", "web-0", "a.b-c", "", "Frontend", "web_0", "-web", "web.", "a..b",
    ];
    for name in object_names {
        assert_eq!(
            pattern_matches(OBJECT_NAME_PATTERN, name),
            object_name_problem(name).is_none(),
            "pod {name:?}"
        );
    }

    let namespaces = [
        "shop",
        "kube-system",
        "a1",
        "",
        "Shop",
        "team.payments",
        "-shop",
        "shop-",
    ];
    for name in namespaces {
        assert_eq!(
            pattern_matches(NAMESPACE_PATTERN, name),
            namespace_problem(name).is_none(),
            "namespace {name:?}"
        );
    }

    let port_names = [
        "http",
        "h2c",
        "grpc-web",
        "1-a",
        "a-1",
        "x",
        "metrics-9090",
        "8080",
        "",
        "HTTP",
        "-http",
        "http-",
        "a--b",
        "web_ui",
        "dns.tcp",
        "123-456",
    ];
    for name in port_names
        .into_iter()
        .filter(|name| name.len() <= PORT_NAME_MAX_LENGTH)
    {
        assert_eq!(
            pattern_matches(PORT_NAME_PATTERN, name),
            port_name_problem(name).is_none(),
            "port {name:?}"
        );
    }

    let durations = [
        "1s", "500ms", "1m30s", "2h", "30s1m", "", "30", "1.5s", "-1s", "1d", "1 s", "s", "1S",
    ];
    for text in durations {
        assert_eq!(
            pattern_matches(DURATION_PATTERN, text),
            parse_duration(text).is_ok(),
            "duration {text:?}"
        );
    }
}

#[test]
fn port_names_follow_the_kubernetes_rule() {
    let cases = [
        ("http", None),
        ("grpc-web", None),
        (
            "8080",
            Some(
                "\"8080\" is a quoted number; write the port number without quotes, or name a container port",
            ),
        ),
        ("", Some("a port name must not be empty")),
        (
            "a-very-long-port-name",
            Some("port name \"a-very-long-port-name\" is longer than 15 characters"),
        ),
        (
            "a--b",
            Some(
                "port name \"a--b\" is invalid: use lowercase letters, digits and single inner hyphens, with at least one letter",
            ),
        ),
    ];
    for (name, want) in cases {
        assert_eq!(port_name_problem(name).as_deref(), want, "{name:?}");
    }
}

fn requirement(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: values.map(|values| values.iter().map(ToString::to_string).collect()),
    }
}

#[test]
fn label_selectors_report_each_invalid_part() {
    let selector = LabelSelector {
        match_labels: Some(
            [
                ("app", "web"),
                ("bad key!", "x"),
                ("example.com/tier", "front end"),
                ("/name", ""),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ),
        match_expressions: Some(vec![
            requirement("app.kubernetes.io/name", "In", Some(&["web", "api"])),
            requirement("tier", "Exists", None),
            requirement("tier", "NotIn", Some(&[])),
            requirement("tier", "DoesNotExist", Some(&["x"])),
            requirement("tier", "Equals", Some(&["x"])),
            requirement("tier", "In", Some(&["not valid"])),
        ]),
    };
    let mut problems = Problems::default();
    check_label_selector(&selector, "spec.from.podSelector", &mut problems);
    let errors: Vec<String> = match problems.into_result() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    };
    assert_eq!(
        errors,
        [
            "spec.from.podSelector.matchLabels: \"/name\" is not a valid label key",
            "spec.from.podSelector.matchLabels: \"bad key!\" is not a valid label key",
            "spec.from.podSelector.matchLabels.example.com/tier: \"front end\" is not a valid label value",
            "spec.from.podSelector.matchExpressions[2].values: operator NotIn needs at least one value",
            "spec.from.podSelector.matchExpressions[3].values: operator DoesNotExist takes no values",
            "spec.from.podSelector.matchExpressions[4].operator: \"Equals\" is not one of In, NotIn, Exists, DoesNotExist",
            "spec.from.podSelector.matchExpressions[5].values[0]: \"not valid\" is not a valid label value",
        ]
    );
}

#[test]
fn validation_errors_display_every_problem() {
    let mut problems = Problems::default();
    assert_eq!(Problems::default().into_result(), Ok(()));
    problems.push("spec.to", "list at least one target");
    problems.push("spec.maxPairs", "0 is out of range 1..10000");
    let errors = problems.into_result().expect_err("two problems");
    assert_eq!(errors.errors().len(), 2);
    assert_eq!(
        errors.to_string(),
        "spec.to: list at least one target; spec.maxPairs: 0 is out of range 1..10000"
    );
}

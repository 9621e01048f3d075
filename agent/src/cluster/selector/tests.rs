use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::testing::labels;

fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: if values.is_empty() {
            None
        } else {
            Some(values.iter().map(|v| v.to_string()).collect())
        },
    }
}

fn selector(match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> Selector {
    let sel = LabelSelector {
        match_labels: if match_labels.is_empty() {
            None
        } else {
            Some(labels(match_labels))
        },
        match_expressions: if exprs.is_empty() { None } else { Some(exprs) },
    };
    Selector::try_from(&sel).expect("valid selector")
}

#[test]
fn matching_table() {
    let web = labels(&[("app", "web"), ("tier", "front")]);
    let bare = labels(&[]);
    let empty_value = labels(&[("app", "")]);
    let cases: Vec<(&str, Selector, &Labels, bool)> = vec![
        (
            "E11 empty selector matches all",
            selector(&[], vec![]),
            &bare,
            true,
        ),
        (
            "matchLabels hit",
            selector(&[("app", "web")], vec![]),
            &web,
            true,
        ),
        (
            "matchLabels miss",
            selector(&[("app", "api")], vec![]),
            &web,
            false,
        ),
        (
            "matchLabels AND expressions",
            selector(&[("app", "web")], vec![expr("tier", "In", &["back"])]),
            &web,
            false,
        ),
        (
            "E11 empty value needs the key",
            selector(&[("app", "")], vec![]),
            &bare,
            false,
        ),
        (
            "E11 empty value matches empty",
            selector(&[("app", "")], vec![]),
            &empty_value,
            true,
        ),
        (
            "In hit",
            selector(&[], vec![expr("tier", "In", &["back", "front"])]),
            &web,
            true,
        ),
        (
            "In missing key",
            selector(&[], vec![expr("zone", "In", &["a"])]),
            &web,
            false,
        ),
        (
            "NotIn other value",
            selector(&[], vec![expr("tier", "NotIn", &["back"])]),
            &web,
            true,
        ),
        (
            "NotIn same value",
            selector(&[], vec![expr("tier", "NotIn", &["front"])]),
            &web,
            false,
        ),
        (
            "E12 NotIn matches a missing key",
            selector(&[], vec![expr("zone", "NotIn", &["a"])]),
            &web,
            true,
        ),
        (
            "Exists",
            selector(&[], vec![expr("app", "Exists", &[])]),
            &web,
            true,
        ),
        (
            "Exists missing",
            selector(&[], vec![expr("zone", "Exists", &[])]),
            &web,
            false,
        ),
        (
            "E12 DoesNotExist missing key",
            selector(&[], vec![expr("zone", "DoesNotExist", &[])]),
            &web,
            true,
        ),
        (
            "DoesNotExist present",
            selector(&[], vec![expr("app", "DoesNotExist", &[])]),
            &web,
            false,
        ),
    ];
    for (name, sel, labels, want) in cases {
        assert_eq!(sel.matches(labels), want, "{name}: {sel} vs {labels:?}");
    }
}

#[test]
fn invalid_selectors_are_rejected_with_the_field() {
    let cases: Vec<(LabelSelector, &str)> = vec![
        (
            LabelSelector {
                match_expressions: Some(vec![expr("a", "Equals", &["x"])]),
                ..Default::default()
            },
            "matchExpressions[0].operator",
        ),
        (
            LabelSelector {
                match_expressions: Some(vec![expr("a", "In", &[])]),
                ..Default::default()
            },
            "matchExpressions[0].values",
        ),
        (
            LabelSelector {
                match_expressions: Some(vec![expr("a", "NotIn", &[])]),
                ..Default::default()
            },
            "matchExpressions[0].values",
        ),
        (
            LabelSelector {
                match_expressions: Some(vec![expr("a", "Exists", &["x"])]),
                ..Default::default()
            },
            "matchExpressions[0].values",
        ),
        (
            LabelSelector {
                match_expressions: Some(vec![expr("bad key!", "Exists", &[])]),
                ..Default::default()
            },
            "matchExpressions[0].key",
        ),
        (
            LabelSelector {
                match_expressions: Some(vec![expr("a", "In", &["-bad"])]),
                ..Default::default()
            },
            "matchExpressions[0].values[0]",
        ),
        (
            LabelSelector {
                match_labels: Some(labels(&[("app", "has space")])),
                ..Default::default()
            },
            "matchLabels.app",
        ),
        (
            LabelSelector {
                match_labels: Some(labels(&[("Bad.Prefix/app", "x")])),
                ..Default::default()
            },
            "matchLabels.Bad.Prefix/app",
        ),
    ];
    for (sel, field) in cases {
        let err = Selector::try_from(&sel).expect_err("must be invalid");
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn display_is_readable() {
    let sel = selector(
        &[("team", "frontend")],
        vec![
            expr("tier", "In", &["b", "a"]),
            expr("legacy", "DoesNotExist", &[]),
        ],
    );
    assert_eq!(sel.to_string(), "{team: frontend, tier in (a, b), !legacy}");
    assert_eq!(Selector::everything().to_string(), "{}");
    assert_eq!(display_labels(&labels(&[("team", "shop")])), "{team: shop}");
    let unmet = sel
        .first_unmet(&labels(&[("team", "frontend"), ("tier", "c")]))
        .unwrap();
    assert_eq!(unmet.to_string(), "tier in (a, b)");
}

#[test]
fn valid_keys_with_prefix() {
    let sel = selector(
        &[
            ("kubernetes.io/metadata.name", "x"),
            ("app.kubernetes.io/name", "web"),
        ],
        vec![],
    );
    assert!(sel.matches(&labels(&[
        ("kubernetes.io/metadata.name", "x"),
        ("app.kubernetes.io/name", "web")
    ])));
}

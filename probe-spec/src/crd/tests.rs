use kube::core::cel::{compile_schema, estimate_rule_cost};

use super::*;
use crate::{
    duration::DURATION_PATTERN,
    test_support::{nodes_with_rules, openapi_schema, rules_at},
};

fn schemas() -> [(&'static str, serde_json::Value); 3] {
    [
        ("ProbeSpec", openapi_schema::<ProbeSpec>()),
        ("ClusterProbeSpec", openapi_schema::<ClusterProbeSpec>()),
        ("ProbeRequest", openapi_schema::<ProbeRequest>()),
    ]
}

#[test]
fn every_cel_rule_compiles_and_fits_the_cost_budget() {
    for (kind, schema) in schemas() {
        let nodes = nodes_with_rules(&schema);
        assert!(!nodes.is_empty(), "{kind} has CEL rules");
        for (path, node) in nodes {
            let compiled = compile_schema(node);
            assert!(
                !compiled.has_errors(),
                "{kind} {path}: {:?}",
                compiled.compilation_errors()
            );
            for rule in rules_at(node) {
                // kube-cel's estimate is a heuristic; the apiserver computes the real one.
                let warnings = estimate_rule_cost(rule, &compiled);
                assert!(warnings.is_empty(), "{kind} {path}: {rule}: {warnings:?}");
            }
        }
    }
}

#[test]
fn duration_rules_leave_malformed_strings_to_the_pattern() {
    // duration() fails on a string outside the grammar; each rule that calls it first lets
    // such strings through, so the user sees the pattern error instead of an evaluation error.
    let guard = format!(".matches('{DURATION_PATTERN}')");
    for (kind, schema) in schemas() {
        for (path, node) in nodes_with_rules(&schema) {
            for rule in rules_at(node)
                .into_iter()
                .filter(|rule| rule.contains("duration("))
            {
                assert!(
                    rule.starts_with('!') && rule.contains(&guard),
                    "{kind} {path}: {rule}"
                );
            }
        }
    }
}

#[test]
fn crds_yaml_is_three_sorted_documents() {
    let yaml = crds_yaml();
    assert!(yaml.starts_with(CRDS_YAML_HEADER));
    let documents: Vec<&str> = yaml.split("---\n").skip(1).collect();
    assert_eq!(documents.len(), 3);
    let names: Vec<String> = documents
        .iter()
        .map(|document| {
            let crd: CustomResourceDefinition =
                serde_yaml_ng::from_str(document).expect("a CRD document");
            crd.metadata.name.unwrap_or_default()
        })
        .collect();
    assert_eq!(
        names,
        [
            "clusterprobespecs.netreach.dev",
            "proberequests.netreach.dev",
            "probespecs.netreach.dev"
        ]
    );
    assert_eq!(yaml, crds_yaml(), "rendering is deterministic");
}

use serde_json::json;

use super::*;

fn cnp(spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
           "metadata": {"name": "p"}, "spec": spec})
}

fn subject() -> Value {
    json!({"namespaces": {"matchLabels": {"team": "a"}}})
}

#[test]
fn policies_convert_with_their_tier_priority_and_rules() {
    let policy = TieredPolicy::try_from(&cnp(json!({
        "tier": "Admin", "priority": 7, "subject": subject(),
        "ingress": [{"name": "deny-b", "action": "Deny",
                     "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "b"}}}}],
                     "protocols": [{"tcp": {"destinationPort": {"number": 80}}},
                                   {"udp": {"destinationPort": {"range": {"start": 53, "end": 60}}}},
                                   {"destinationNamedPort": "web"}]}],
        "egress": [{"name": "net", "action": "Accept", "to": [{"networks": ["10.0.0.0/8"]}]}]
    })))
    .expect("converts");
    assert_eq!(policy.tier, PolicyTier::Admin);
    assert_eq!(policy.priority, 7);
    assert_eq!(policy.key(), "ClusterNetworkPolicy/p");
    let rule = &policy.ingress[0];
    assert_eq!(
        (rule.name.as_str(), rule.action, &rule.invalid),
        ("deny-b", TierAction::Deny, &None)
    );
    assert_eq!(
        rule.ports.as_deref(),
        Some(
            &[
                TieredPort::Number {
                    protocol: Protocol::Tcp,
                    port: 80
                },
                TieredPort::Range {
                    protocol: Protocol::Udp,
                    start: 53,
                    end: 60
                },
                TieredPort::Named("web".into()),
            ][..]
        )
    );
    assert!(matches!(policy.egress[0].peers[0], TieredPeer::Networks(_)));
}

#[test]
fn v1alpha1_kinds_take_allow_and_ports_with_tcp_by_default() {
    let anp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "a"}, "spec": {"priority": 3, "subject": subject(),
        "ingress": [{"name": "r", "action": "Allow", "from": [{"namespaces": {}}],
                     "ports": [{"portNumber": {"port": 8080}}, {"portRange": {"start": 1, "end": 9, "protocol": "UDP"}}]}]}});
    let policy = TieredPolicy::try_from(&anp).expect("converts");
    assert_eq!(policy.ingress[0].action, TierAction::Accept);
    assert_eq!(
        policy.ingress[0].ports.as_deref(),
        Some(
            &[
                TieredPort::Number {
                    protocol: Protocol::Tcp,
                    port: 8080
                },
                TieredPort::Range {
                    protocol: Protocol::Udp,
                    start: 1,
                    end: 9
                },
            ][..]
        )
    );
    let banp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"}, "spec": {"subject": subject(),
        "egress": [{"name": "d", "action": "Deny", "to": [{"namespaces": {}}]}]}});
    let policy = TieredPolicy::try_from(&banp).expect("converts");
    assert_eq!((policy.tier, policy.priority), (PolicyTier::Baseline, 0));
}

/// Rules that do not validate stay, marked invalid (the engine fails closed on them).
#[test]
fn rules_that_do_not_validate_are_marked_invalid() {
    let cases: [(&str, Value, bool); 7] = [
        (
            "unknown peer kind",
            json!({"name": "r", "action": "Deny", "to": [{"serviceAccounts": {}}]}),
            true,
        ),
        (
            "networks on ingress",
            json!({"name": "r", "action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}),
            false,
        ),
        (
            "no peers",
            json!({"name": "r", "action": "Accept", "from": []}),
            false,
        ),
        (
            "unknown field",
            json!({"name": "r", "action": "Deny", "from": [{"namespaces": {}}], "extra": 1}),
            false,
        ),
        (
            "bad action",
            json!({"name": "r", "action": "Allow", "from": [{"namespaces": {}}]}),
            false,
        ),
        (
            "bad port",
            json!({"name": "r", "action": "Deny", "from": [{"namespaces": {}}], "protocols": [{"tcp": {"destinationPort": {"number": 0}}}]}),
            false,
        ),
        (
            "bad cidr",
            json!({"name": "r", "action": "Deny", "to": [{"networks": ["10.0.0.0/99"]}]}),
            true,
        ),
    ];
    for (name, rule_json, egress) in cases {
        let key = if egress { "egress" } else { "ingress" };
        let policy = TieredPolicy::try_from(&cnp(
            json!({"tier": "Baseline", "priority": 1, "subject": subject(), key: [rule_json]}),
        ))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rules = if egress {
            &policy.egress
        } else {
            &policy.ingress
        };
        assert!(rules[0].invalid.is_some(), "{name}: not marked invalid");
    }
}

#[test]
fn policies_without_a_valid_name_tier_priority_or_subject_are_not_loaded() {
    let cases: [(&str, Value, &str); 4] = [
        (
            "no tier",
            cnp(json!({"priority": 1, "subject": subject()})),
            "spec.tier",
        ),
        (
            "bad priority",
            cnp(json!({"tier": "Admin", "priority": -1, "subject": subject()})),
            "spec.priority",
        ),
        (
            "two subjects",
            cnp(json!({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}, "pods": {}}})),
            "spec.subject",
        ),
        (
            "no name",
            json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy", "spec": {}}),
            "metadata.name",
        ),
    ];
    for (name, object, field) in cases {
        let error = TieredPolicy::try_from(&object).expect_err(name);
        assert_eq!(error.field, field, "{name}: {error}");
    }
}

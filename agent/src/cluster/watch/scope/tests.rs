use super::*;
use crate::schedule::fixtures::{cluster_probe_spec, probe_spec};

fn watches(plan: &PodWatchPlan) -> Vec<String> {
    plan.watches.iter().map(ToString::to_string).collect()
}

const CNI: &[&str] = &[
    "pods labelSelector=app in (flannel,kindnet)",
    "pods labelSelector=component=antrea-agent",
    "pods labelSelector=k8s-app in (aws-node,calico-node,cilium,kube-router)",
    "pods labelSelector=name=weave-net",
];

/// Spec -> the selector watches its pairs need (besides this node's and the CNI agents').
#[test]
fn each_spec_needs_its_sources_and_pod_and_ip_targets() {
    let cases: &[(Spec, &[&str])] = &[
        (
            probe_spec(
                "shop",
                "a",
                "  from: {podSelector: {matchLabels: {app: web}}}\n  to:\n  - podSelector: {matchLabels: {app: api}}\n    ports: [{port: 80}]\n",
            ),
            &[
                "pods in shop labelSelector=app=api",
                "pods in shop labelSelector=app=web",
            ],
        ),
        (
            // A namespaceSelector is matched locally: the pod selector is watched everywhere.
            probe_spec(
                "shop",
                "b",
                "  from: {podSelector: {}}\n  to:\n  - namespaceSelector: {matchLabels: {team: pay}}\n    podSelector: {matchExpressions: [{key: tier, operator: In, values: [b, a]}]}\n    ports: [{port: 80}]\n  - ip: 192.0.2.10\n    ports: [{port: 443}]\n  - dns: example.com\n  - host: example.com\n    ports: [{port: 443}]\n",
            ),
            &[
                "pods fieldSelector=status.podIP=192.0.2.10",
                "pods in shop",
                "pods labelSelector=tier in (a,b)",
            ],
        ),
        (
            cluster_probe_spec(
                "c",
                "  from: {podSelector: {matchLabels: {probe: source}}, namespaceSelector: {}}\n  to:\n  - dns: kubernetes.default.svc.cluster.local\n",
            ),
            &["pods labelSelector=probe=source"],
        ),
    ];
    for (spec, expected) in cases {
        let plan = plan_pod_watches(
            std::slice::from_ref(spec),
            "node-1",
            &CniAgentMatcher::builtin(),
            64,
        );
        let mut needs: Vec<String> = plan.needs[&spec.key]
            .iter()
            .map(ToString::to_string)
            .collect();
        needs.sort();
        let mut expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
        expected.sort();
        assert_eq!(needs, expected, "{}", spec.key);
        assert!(plan.fallback.is_none());
        assert!(!plan.is_complete());
        let all = watches(&plan);
        assert!(all.contains(&"pods fieldSelector=spec.nodeName=node-1".to_string()));
        for cni in CNI {
            assert!(all.contains(&cni.to_string()), "{cni} in {all:?}");
        }
    }
}

#[test]
fn identical_selectors_share_one_watch() {
    let body = "  from: {podSelector: {matchLabels: {app: web}}}\n  to:\n  - podSelector: {matchLabels: {app: web}}\n    ports: [{port: 80}]\n";
    let specs = [probe_spec("shop", "a", body), probe_spec("shop", "b", body)];
    let plan = plan_pod_watches(&specs, "n", &CniAgentMatcher::builtin(), 64);
    let selected: Vec<&PodWatch> = plan
        .watches
        .iter()
        .filter(|w| w.labels == "app=web")
        .collect();
    assert_eq!(selected.len(), 1);
    // local + 4 CNI + 1 shared selector
    assert_eq!(plan.watches.len(), 6, "{:?}", watches(&plan));
}

#[test]
fn the_cluster_wide_watch_takes_over_when_selectors_would_not_do() {
    let everywhere = cluster_probe_spec(
        "dns-everywhere",
        "  from: {podSelector: {}}\n  to:\n  - dns: kubernetes.default.svc.cluster.local\n",
    );
    let plan = plan_pod_watches(
        std::slice::from_ref(&everywhere),
        "n",
        &CniAgentMatcher::builtin(),
        64,
    );
    assert_eq!(watches(&plan), ["pods (every pod)"]);
    assert!(plan.is_complete());
    assert_eq!(
        plan.fallback,
        Some(Fallback::SelectsEverything {
            spec: everywhere.key.clone()
        })
    );

    let specs: Vec<Spec> = (0..3)
        .map(|i| {
            probe_spec(
                "shop",
                &format!("s{i}"),
                &format!("  from: {{podSelector: {{matchLabels: {{app: a{i}}}}}}}\n  to:\n  - dns: x.example\n"),
            )
        })
        .collect();
    let plan = plan_pod_watches(&specs, "n", &CniAgentMatcher::builtin(), 2);
    assert_eq!(
        plan.fallback,
        Some(Fallback::TooManySelectors {
            needed: 3,
            bound: 2
        })
    );
    assert!(plan.is_complete());
    assert!(
        plan.needs
            .values()
            .all(|n| n.iter().all(PodWatch::is_everything))
    );
}

#[test]
fn the_scope_flag_parses() {
    for (text, scope) in [("node", WatchScope::Node), ("cluster", WatchScope::Cluster)] {
        assert_eq!(text.parse::<WatchScope>(), Ok(scope));
        assert_eq!(scope.to_string(), text);
    }
    assert!("pods".parse::<WatchScope>().is_err());
}

#[test]
fn selectors_render_in_the_api_syntax() {
    let cases = [
        ("{}", ""),
        ("{matchLabels: {app: web, tier: a}}", "app=web,tier=a"),
        (
            "{matchExpressions: [{key: a, operator: NotIn, values: [x, y]}, {key: b, operator: Exists}, {key: c, operator: DoesNotExist}]}",
            "a notin (x,y),b,!c",
        ),
    ];
    for (yaml, expected) in cases {
        let selector: LabelSelector = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(query(&selector).as_deref(), Some(expected), "{yaml}");
    }
}

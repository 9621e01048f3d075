//! Tenancy narrowing: a ProbeSpec probes only from its own namespace, a ClusterProbeSpec from
//! wherever its selector reaches.

use super::*;
use crate::cluster::model::ObjectRef;
use crate::schedule::fixtures::{index, namespace};

/// shop (team=shop, tier=web), web (team=shop, tier=web), billing (team=billing).
fn tenants() -> Index {
    index(
        vec![
            namespace("shop", &[("team", "shop"), ("tier", "web")]),
            namespace("web", &[("team", "shop"), ("tier", "web")]),
            namespace("billing", &[("team", "billing")]),
        ],
        vec![],
    )
}

fn from(namespace_selector: Option<&str>) -> ProbeSource {
    let yaml = match namespace_selector {
        Some(sel) => format!("{{podSelector: {{}}, namespaceSelector: {sel}}}"),
        None => "{podSelector: {}}".to_string(),
    };
    serde_yaml_ng::from_str(&yaml).expect("fixture ProbeSource parses")
}

#[test]
fn namespaced_specs_are_narrowed_to_their_own_namespace() {
    let shop = SpecRef::Namespaced(ObjectRef::new("shop", "paths"));
    let cluster = SpecRef::Cluster("paths".into());
    // (case, spec, from.namespaceSelector, namespaces probed from, ignored namespaces)
    type Case = (
        &'static str,
        SpecRef,
        Option<&'static str>,
        &'static [&'static str],
        Option<&'static [&'static str]>,
    );
    let cases: [Case; 9] = [
        ("absent: own namespace", shop.clone(), None, &["shop"], None),
        (
            "{} reaches every namespace",
            shop.clone(),
            Some("{}"),
            &["shop"],
            Some(&["billing", "web"]),
        ),
        (
            "labels that other namespaces carry too",
            shop.clone(),
            Some("{matchLabels: {tier: web}}"),
            &["shop"],
            Some(&["web"]),
        ),
        (
            "only other namespaces: nothing left to probe from",
            shop.clone(),
            Some("{matchLabels: {team: billing}}"),
            &[],
            Some(&["billing"]),
        ),
        (
            "only its own namespace: no condition",
            shop.clone(),
            Some("{matchLabels: {kubernetes.io/metadata.name: shop}}"),
            &["shop"],
            None,
        ),
        (
            "matches nothing: no condition",
            shop,
            Some("{matchLabels: {team: nobody}}"),
            &[],
            None,
        ),
        (
            "ClusterProbeSpec {}: every namespace",
            cluster.clone(),
            Some("{}"),
            &["billing", "shop", "web"],
            None,
        ),
        (
            "ClusterProbeSpec absent: every namespace",
            cluster.clone(),
            None,
            &["billing", "shop", "web"],
            None,
        ),
        (
            "ClusterProbeSpec labels: not narrowed",
            cluster,
            Some("{matchLabels: {tier: web}}"),
            &["shop", "web"],
            None,
        ),
    ];
    let index = tenants();
    for (name, spec, selector, probed, ignored) in cases {
        let got = source_namespaces(&index, &spec, &from(selector)).expect(name);
        let probed: BTreeSet<String> = probed.iter().map(ToString::to_string).collect();
        assert_eq!(got.namespaces, probed, "{name}");
        assert_eq!(
            got.narrowed.as_ref().map(|n| n.ignored.clone()),
            ignored.map(|i| i.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "{name}"
        );
    }
}

#[test]
fn the_message_names_the_selector_and_what_it_ignored() {
    let narrowed = source_namespaces(
        &tenants(),
        &SpecRef::Namespaced(ObjectRef::new("shop", "paths")),
        &from(Some("{matchLabels: {tier: web}}")),
    )
    .unwrap()
    .narrowed
    .expect("narrowed");
    assert_eq!(
        narrowed.to_string(),
        "from.namespaceSelector {\"matchLabels\":{\"tier\":\"web\"}} also selects 1 namespace(s) other than shop (web); a ProbeSpec probes only from pods in its own namespace, so only shop is probed from. A ClusterProbeSpec may probe from other namespaces."
    );

    let many = Narrowed {
        own: "shop".into(),
        selector: "{}".into(),
        ignored: (0..12).map(|i| format!("ns-{i:02}")).collect(),
    };
    let message = many.to_string();
    assert!(message.contains("12 namespace(s)"), "{message}");
    assert!(message.contains("ns-09 and 2 more)"), "{message}");
    assert!(!message.contains("ns-10"), "{message}");
}

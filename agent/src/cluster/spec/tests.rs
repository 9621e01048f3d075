use super::*;

#[test]
fn display_and_parse_tell_the_kinds_apart() {
    let cases = [
        (
            SpecRef::Namespaced(ObjectRef::new("shop", "paths")),
            "shop/paths",
            "ProbeSpec",
        ),
        (
            SpecRef::Cluster("paths".into()),
            "paths",
            "ClusterProbeSpec",
        ),
    ];
    for (spec, text, kind) in cases {
        assert_eq!(spec.to_string(), text);
        assert_eq!(text.parse::<SpecRef>(), Ok(spec.clone()), "{text}");
        assert_eq!(spec.kind(), kind);
        assert_eq!(spec.name(), "paths");
    }
    for bad in ["", "shop/", "/paths", "a/b/c"] {
        assert!(bad.parse::<SpecRef>().is_err(), "{bad:?}");
    }
}

#[test]
fn both_kinds_convert_at_the_edge() {
    let body = "spec: {from: {podSelector: {}}, to: [{dns: api}]}";
    let namespaced: ProbeSpec = serde_yaml_ng::from_str(&format!(
        "apiVersion: netreach.dev/v1alpha1\nkind: ProbeSpec\nmetadata: {{name: x, namespace: shop, generation: 2}}\n{body}"
    ))
    .unwrap();
    let cluster: ClusterProbeSpec = serde_yaml_ng::from_str(&format!(
        "apiVersion: netreach.dev/v1alpha1\nkind: ClusterProbeSpec\nmetadata: {{name: x}}\n{body}"
    ))
    .unwrap();

    let spec = Spec::try_from(&namespaced).unwrap();
    assert_eq!(spec.key, SpecRef::Namespaced(ObjectRef::new("shop", "x")));
    assert_eq!(spec.generation, Some(2));
    let spec = Spec::try_from(&cluster).unwrap();
    assert_eq!(spec.key, SpecRef::Cluster("x".into()));
    assert_eq!(spec.spec, namespaced.spec, "the same body");

    let mut no_namespace = namespaced.clone();
    no_namespace.metadata.namespace = None;
    assert_eq!(
        Spec::try_from(&no_namespace).map_err(|e| e.metric_label()),
        Err("no_namespace")
    );
    let mut no_name = cluster;
    no_name.metadata.name = None;
    assert_eq!(
        Spec::try_from(&no_name).map_err(|e| e.metric_label()),
        Err("no_name")
    );
}

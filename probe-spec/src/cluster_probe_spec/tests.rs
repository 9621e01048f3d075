use kube::CustomResourceExt;

use super::*;
use crate::probe_spec::ProbeSpec;
use crate::test_support::openapi_schema;

#[test]
fn the_crd_is_cluster_scoped_and_named_like_the_kind() {
    let crd = ClusterProbeSpec::crd();
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("clusterprobespecs.netreach.dev")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["nrcps".to_string()]));
    assert_eq!(ProbeSpec::crd().spec.scope, "Namespaced");
}

#[test]
fn spec_status_and_columns_are_those_of_probe_spec() {
    let cluster = openapi_schema::<ClusterProbeSpec>();
    let namespaced = openapi_schema::<ProbeSpec>();
    for field in ["spec", "status"] {
        let strip = |schema: &serde_json::Value| {
            let mut schema = schema["properties"][field].clone();
            schema.as_object_mut().map(|o| o.remove("description"));
            schema
        };
        assert_eq!(strip(&cluster), strip(&namespaced), "{field}");
    }
    let columns = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        crd.spec.versions[0].additional_printer_columns.clone()
    };
    assert_eq!(columns(ClusterProbeSpec::crd()), columns(ProbeSpec::crd()));
}

#[test]
fn parses_from_yaml_and_validates_like_a_probe_spec() {
    let yaml = "\
apiVersion: netreach.dev/v1alpha1
kind: ClusterProbeSpec
metadata: {name: dns-everywhere}
spec:
  from: {podSelector: {}, namespaceSelector: {}}
  to: [{dns: kubernetes.default.svc.cluster.local}]
";
    let spec: ClusterProbeSpec = serde_yaml_ng::from_str(yaml).expect("parses");
    assert_eq!(spec.metadata.namespace, None);
    assert_eq!(spec.spec.interval, "30s", "defaults apply");
    assert_eq!(spec.validate(), Ok(()));

    let mut invalid = spec.clone();
    invalid.spec.0.interval = "1ms".into();
    let errors = invalid.validate().expect_err("interval below 1s");
    assert!(errors.to_string().contains("spec.interval"), "{errors}");
}

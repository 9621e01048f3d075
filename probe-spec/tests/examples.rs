//! Every example under examples/probespecs/ parses into its Rust type, passes `validate()`, and
//! passes the CRD's CEL rules.

use std::path::{Path, PathBuf};

use kube::{
    CustomResourceExt,
    core::cel::{ErrorKind, Validator},
};
use probe_spec::{ClusterProbeSpec, ProbeRequest, ProbeSpec};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/probespecs")
}

fn read_yaml(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The CEL rules of `K`'s CRD that `object` fails, leaving out rules that use `type()`, which
/// kube-cel cannot evaluate (the unit tests check those rules' structure).
fn cel_failures<K: CustomResourceExt>(object: &Value) -> Vec<String> {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|validation| validation.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    let schema = serde_json::to_value(schema).expect("schema to JSON");
    match Validator::new().validate(&schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .filter(|error| {
                !(error.kind == ErrorKind::UnsupportedReference && error.rule.contains("type("))
            })
            .map(ToString::to_string)
            .collect(),
    }
}

/// `value` as a `K`, after checking it against the CRD's CEL rules.
fn parse_checked<K: CustomResourceExt + DeserializeOwned>(name: &str, value: &Value) -> K {
    let object: K =
        serde_json::from_value(value.clone()).unwrap_or_else(|error| panic!("{name}: {error}"));
    assert_eq!(
        cel_failures::<K>(value),
        Vec::<String>::new(),
        "{name}: CEL rules"
    );
    object
}

#[test]
fn every_example_is_valid() {
    let mut checked = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/probespecs exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    entries.sort();

    for path in entries {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_string();
        let value = read_yaml(&path);
        assert_eq!(value["apiVersion"], "netreach.dev/v1alpha1", "{name}");
        let result = match value["kind"].as_str() {
            Some("ProbeSpec") => parse_checked::<ProbeSpec>(&name, &value).validate(),
            Some("ClusterProbeSpec") => {
                let spec = parse_checked::<ClusterProbeSpec>(&name, &value);
                assert!(spec.metadata.namespace.is_none(), "{name}: cluster-scoped");
                spec.validate()
            }
            Some("ProbeRequest") => parse_checked::<ProbeRequest>(&name, &value).validate(),
            other => panic!("{name}: unexpected kind {other:?}"),
        };
        if let Err(errors) = result {
            panic!("{name}: {errors}");
        }
        checked.push(name);
    }

    for expected in [
        "cluster-dns-everywhere.yaml",
        "default-deny-must-hold.yaml",
        "frontend-paths.yaml",
        "probe-request.yaml",
    ] {
        assert!(
            checked.iter().any(|name| name == expected),
            "{expected} was not checked: {checked:?}"
        );
    }
}

#[test]
fn default_deny_example_expects_deny() {
    let value = read_yaml(&examples_dir().join("default-deny-must-hold.yaml"));
    let spec: ProbeSpec = serde_json::from_value(value).expect("a ProbeSpec");
    assert_eq!(spec.spec.expect, probe_spec::Expectation::Deny);
}

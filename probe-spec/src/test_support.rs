//! Helpers for the unit tests: the generated OpenAPI schemas, a walk to one schema node, and
//! client-side evaluation of the CRDs' CEL rules (kube's `cel` feature, a dev-dependency), so
//! the tests exercise the rules the apiserver will run without needing an apiserver.

use kube::{
    CustomResourceExt,
    core::cel::{ErrorKind, Validator},
};
use serde_json::Value;

/// The `openAPIV3Schema` of a resource's only version, as JSON.
pub(crate) fn openapi_schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let validation = crd.spec.versions[0]
        .schema
        .as_ref()
        .expect("the CRD has a schema");
    serde_json::to_value(
        validation
            .open_api_v3_schema
            .as_ref()
            .expect("the CRD has an openAPIV3Schema"),
    )
    .expect("a schema serializes to JSON")
}

/// The schema node at a dotted path of property names; `[]` steps into array items, as in
/// `spec.to[].ports[].port`.
pub(crate) fn schema_at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    let mut node = schema;
    for step in path.split('.') {
        let (name, items) = match step.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (step, false),
        };
        node = &node["properties"][name];
        assert!(
            !node.is_null(),
            "no schema property {name:?} on the way to {path}"
        );
        if items {
            node = &node["items"];
        }
    }
    node
}

/// The CEL rules (`rule` strings) on one schema node.
pub(crate) fn rules_at(node: &Value) -> Vec<&str> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter_map(|rule| rule["rule"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs every CEL rule of `K`'s schema on `object` (a whole resource, with `old` for updates)
/// and returns the failures as `path: message` strings; empty when every rule passes.
///
/// kube-cel does not implement CEL's standard `type()` function, which the apiserver has and
/// which is the documented way to tell the int from the string of an int-or-string. Rules
/// that reach `type()` are left out here; [`rule_with_message`] checks that they exist.
pub(crate) fn cel_failures<K: CustomResourceExt>(
    object: &Value,
    old: Option<&Value>,
) -> Vec<String> {
    match Validator::new().validate(&openapi_schema::<K>(), object, old) {
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

/// The rule on `node` whose message contains `message`.
pub(crate) fn rule_with_message<'a>(node: &'a Value, message: &str) -> Option<&'a str> {
    node["x-kubernetes-validations"]
        .as_array()?
        .iter()
        .find(|rule| {
            rule["message"]
                .as_str()
                .is_some_and(|text| text.contains(message))
        })
        .and_then(|rule| rule["rule"].as_str())
}

/// Every schema node that carries CEL rules, with its path, found by walking properties and
/// array items.
pub(crate) fn nodes_with_rules(schema: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(node: &'a Value, path: String, found: &mut Vec<(String, &'a Value)>) {
        if node.get("x-kubernetes-validations").is_some() {
            found.push((path.clone(), node));
        }
        if let Some(properties) = node["properties"].as_object() {
            for (name, child) in properties {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                walk(child, child_path, found);
            }
        }
        if node.get("items").is_some() {
            walk(&node["items"], format!("{path}[]"), found);
        }
    }
    let mut found = Vec::new();
    walk(schema, String::new(), &mut found);
    found
}

/// How the apiserver rejects an invalid object.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Enforcement {
    /// A CEL rule fails with a message containing this text.
    Cel(&'static str),
    /// A CEL rule on the node at this path, with a message containing this text, uses `type()`,
    /// which kube-cel cannot evaluate (see [`cel_failures`]).
    CelWithType(&'static str, &'static str),
    /// An OpenAPI keyword on the schema node at this path (`[]` steps into items); no CEL rule
    /// needs to fail.
    OpenApi(&'static str, &'static str),
    /// The apiserver does not check it (label-selector syntax); only `validate()` does.
    ClientOnly,
}

/// Asserts that `K`'s schema rejects `object` the way `enforcement` says.
pub(crate) fn assert_schema_rejects<K: CustomResourceExt>(
    case: &str,
    object: &Value,
    enforcement: &Enforcement,
) {
    let schema = openapi_schema::<K>();
    let cel = cel_failures::<K>(object, None);
    match *enforcement {
        Enforcement::Cel(message) => assert!(
            cel.iter().any(|failure| failure.contains(message)),
            "{case}: a CEL rule should fail with {message:?}, got {cel:?}"
        ),
        Enforcement::CelWithType(path, message) => {
            let rule = rule_with_message(schema_at(&schema, path), message);
            assert!(
                rule.is_some_and(|rule| rule.contains("type(")),
                "{case}: the schema at {path} should have a type() rule with {message:?}, got {rule:?}"
            );
        }
        Enforcement::OpenApi(path, keyword) => {
            assert!(
                schema_at(&schema, path).get(keyword).is_some(),
                "{case}: the schema at {path} should have {keyword}"
            );
            assert_eq!(
                cel,
                Vec::<String>::new(),
                "{case}: no CEL rule should be needed"
            );
        }
        Enforcement::ClientOnly => {
            assert_eq!(
                cel,
                Vec::<String>::new(),
                "{case}: the apiserver does not check this"
            );
        }
    }
}

/// Whether `value` matches the schema `pattern`, by CEL's `matches()` (RE2 syntax, as the
/// apiserver's OpenAPI patterns).
pub(crate) fn pattern_matches(pattern: &str, value: &str) -> bool {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"value": {
            "type": "string",
            "x-kubernetes-validations": [{"rule": format!("self.matches(r'{pattern}')")}],
        }},
    });
    let object = serde_json::json!({"value": value});
    match Validator::new().validate(&schema, &object, None) {
        Ok(()) => true,
        Err(errors) => {
            assert!(
                errors
                    .iter()
                    .all(|error| error.kind == ErrorKind::ValidationFailure),
                "pattern {pattern} did not evaluate: {errors:?}"
            );
            false
        }
    }
}

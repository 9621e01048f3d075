//! Live edits of the demo's scenario file: what of a new version of the file can reach the
//! running simulated cluster, and how.
//!
//! ```text
//! edited file ──Scenario::from_yaml──> objects ──keep_uids──> guard_pods ──> SnapshotSource::play
//!                                       dataplane ──dataplane_changes──> Testbed::set_rules / set_faults
//! ```
//!
//! The objects are the cluster's: any of them may change, appear or go, as in a cluster, except
//! what would need the simulated data plane rebuilt: a running pod keeps its spec, status, node
//! and IP (its labels and annotations follow the file), and no pod is created. The data plane
//! keeps what it started with unless the file's `dataplane.rules` or faults change (those are
//! reloaded); the other `dataplane` fields and `nodes` need a restart. Pure: the caller reads
//! the file and applies the result.

use std::collections::BTreeMap;

use serde_json::Value;

/// An object's identity in a scenario: kind, namespace, name.
type Identity = (String, String, String);

fn identity(object: &Value) -> Option<Identity> {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = text("/metadata/name");
    (!name.is_empty()).then(|| (text("/kind"), text("/metadata/namespace"), name))
}

fn describe((kind, namespace, name): &Identity) -> String {
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}

/// Gives each edited object the UID its running version has (the testbed generated the UIDs of
/// objects that had none; the pods' cgroups are named by them).
pub fn keep_uids(running: &[Value], edited: &mut [Value]) {
    let uids: BTreeMap<Identity, Value> = running
        .iter()
        .filter_map(|o| Some((identity(o)?, o.pointer("/metadata/uid")?.clone())))
        .collect();
    for object in edited.iter_mut() {
        let Some(uid) = identity(object).and_then(|id| uids.get(&id)) else {
            continue;
        };
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("uid").or_insert_with(|| uid.clone());
        }
    }
}

/// A pod without its labels and annotations: what must not change live.
fn pod_body(pod: &Value) -> Value {
    let mut body = pod.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
        meta.remove("annotations");
    }
    body
}

/// Holds the pods to what the simulated cluster runs: a new pod is left out, and a running
/// pod's changes other than labels and annotations are undone (its new labels and annotations
/// stay). Returns a note per pod held back. A pod deleted from the file is deleted.
pub fn guard_pods(running: &[Value], edited: &mut Vec<Value>) -> Vec<String> {
    let is_pod = |o: &Value| o.get("kind").and_then(Value::as_str) == Some("Pod");
    let running_pods: BTreeMap<Identity, &Value> = running
        .iter()
        .filter(|o| is_pod(o))
        .filter_map(|o| Some((identity(o)?, o)))
        .collect();
    let mut notes = Vec::new();
    edited.retain_mut(|object| {
        if !is_pod(object) {
            return true;
        }
        let Some(id) = identity(object) else {
            return true;
        };
        let Some(before) = running_pods.get(&id) else {
            notes.push(format!(
                "{} is new: pods cannot be added to a running demo (restart it); left out",
                describe(&id)
            ));
            return false;
        };
        if pod_body(before) != pod_body(object) {
            notes.push(format!(
                "{}: only labels and annotations of a running pod change live (restart the demo for the rest); the rest is kept as started",
                describe(&id)
            ));
            let mut kept = (*before).clone();
            for field in ["labels", "annotations"] {
                let new = object.pointer(&format!("/metadata/{field}")).cloned();
                if let Some(meta) = kept.get_mut("metadata").and_then(Value::as_object_mut) {
                    match new {
                        Some(value) => meta.insert(field.into(), value),
                        None => meta.remove(field),
                    };
                }
            }
            *object = kept;
        }
        true
    });
    notes
}

/// What changed in the data plane between two versions of a scenario.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DataplaneChanges {
    /// `dataplane.rules` changed: reload them.
    pub rules: bool,
    /// The faults changed: reload them.
    pub faults: bool,
    /// What changed that a running demo cannot take (each kept as started).
    pub kept: Vec<&'static str>,
}

pub fn dataplane_changes(
    running: &testbed::Scenario,
    edited: &testbed::Scenario,
) -> DataplaneChanges {
    let (old, new) = (&running.dataplane, &edited.dataplane);
    let mut kept = Vec::new();
    if running.nodes != edited.nodes {
        kept.push("nodes");
    }
    if old.closed != new.closed {
        kept.push("dataplane.closed");
    }
    if old.dns != new.dns {
        kept.push("dataplane.dns");
    }
    if old.mesh != new.mesh {
        kept.push("dataplane.mesh");
    }
    let faults = |s: &testbed::Scenario| s.all_faults().cloned().collect::<Vec<_>>();
    DataplaneChanges {
        rules: old.rules != new.rules,
        faults: faults(running) != faults(edited),
        kept,
    }
}

#[cfg(test)]
mod tests;

//! CNI-native policies: Cilium's, Calico's and Antrea's own policy kinds. netreach does not
//! evaluate them; it only knows they exist, so a prediction they may change says it is
//! incomplete and names them instead of blaming an `unknown` fault.
//!
//! A namespaced one may select any pod of its namespace; a cluster-wide one any pod. Which of
//! them actually select a pod would take each CNI's own selector language and tiers: not
//! attempted, so "may apply" is what is said.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::model::ServedAs;

/// The CNI-native policy kinds netreach recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniPolicyKind {
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
    CalicoNetworkPolicy,
    CalicoGlobalNetworkPolicy,
    AntreaNetworkPolicy,
    AntreaClusterNetworkPolicy,
}

impl CniPolicyKind {
    pub const ALL: [CniPolicyKind; 6] = [
        CniPolicyKind::CiliumNetworkPolicy,
        CniPolicyKind::CiliumClusterwideNetworkPolicy,
        CniPolicyKind::CalicoNetworkPolicy,
        CniPolicyKind::CalicoGlobalNetworkPolicy,
        CniPolicyKind::AntreaNetworkPolicy,
        CniPolicyKind::AntreaClusterNetworkPolicy,
    ];

    /// How it is named to a reader: the CNI's name where the kind alone is ambiguous.
    pub fn as_str(self) -> &'static str {
        match self {
            CniPolicyKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            CniPolicyKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            CniPolicyKind::CalicoNetworkPolicy => "Calico NetworkPolicy",
            CniPolicyKind::CalicoGlobalNetworkPolicy => "Calico GlobalNetworkPolicy",
            CniPolicyKind::AntreaNetworkPolicy => "Antrea NetworkPolicy",
            CniPolicyKind::AntreaClusterNetworkPolicy => "Antrea ClusterNetworkPolicy",
        }
    }

    /// The object kind in the API.
    pub fn api_kind(self) -> &'static str {
        match self {
            CniPolicyKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            CniPolicyKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            CniPolicyKind::CalicoNetworkPolicy | CniPolicyKind::AntreaNetworkPolicy => {
                "NetworkPolicy"
            }
            CniPolicyKind::CalicoGlobalNetworkPolicy => "GlobalNetworkPolicy",
            CniPolicyKind::AntreaClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }

    pub fn namespaced(self) -> bool {
        matches!(
            self,
            CniPolicyKind::CiliumNetworkPolicy
                | CniPolicyKind::CalicoNetworkPolicy
                | CniPolicyKind::AntreaNetworkPolicy
        )
    }

    /// The APIs it is served under, preferred first: a cluster serves one of them (Calico's
    /// `projectcalico.org/v3` API server fronts the same objects as its `crd.projectcalico.org`
    /// CRDs, so only the first one served is watched).
    pub fn served_as(self) -> &'static [ServedAs] {
        macro_rules! at {
            ($group:literal, $version:literal, $plural:literal) => {
                ServedAs {
                    group: $group,
                    version: $version,
                    plural: $plural,
                }
            };
        }
        match self {
            CniPolicyKind::CiliumNetworkPolicy => {
                &[at!("cilium.io", "v2", "ciliumnetworkpolicies")]
            }
            CniPolicyKind::CiliumClusterwideNetworkPolicy => {
                &[at!("cilium.io", "v2", "ciliumclusterwidenetworkpolicies")]
            }
            CniPolicyKind::CalicoNetworkPolicy => &[
                at!("projectcalico.org", "v3", "networkpolicies"),
                at!("crd.projectcalico.org", "v1", "networkpolicies"),
            ],
            CniPolicyKind::CalicoGlobalNetworkPolicy => &[
                at!("projectcalico.org", "v3", "globalnetworkpolicies"),
                at!("crd.projectcalico.org", "v1", "globalnetworkpolicies"),
            ],
            CniPolicyKind::AntreaNetworkPolicy => {
                &[at!("crd.antrea.io", "v1beta1", "networkpolicies")]
            }
            CniPolicyKind::AntreaClusterNetworkPolicy => {
                &[at!("crd.antrea.io", "v1beta1", "clusternetworkpolicies")]
            }
        }
    }

    /// The kind of an object by its `apiVersion` and `kind`.
    pub fn of(api_version: &str, kind: &str) -> Option<Self> {
        CniPolicyKind::ALL.into_iter().find(|k| {
            k.api_kind() == kind && k.served_as().iter().any(|s| api_version == s.api_version())
        })
    }
}

impl fmt::Display for CniPolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One CNI-native policy: its kind and name (and namespace, for a namespaced kind).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CniPolicy {
    pub kind: CniPolicyKind,
    /// `None` for a cluster-wide kind.
    pub namespace: Option<Arc<str>>,
    pub name: Arc<str>,
}

impl fmt::Display for CniPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Why an object is not a CNI-native policy netreach can name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CniPolicyError {
    #[error("apiVersion {api_version:?} kind {kind:?} is not a CNI-native policy kind")]
    UnknownKind { api_version: String, kind: String },
    #[error("metadata.name is missing or empty")]
    NoName,
    #[error("metadata.namespace is missing: {0} is namespaced")]
    NoNamespace(CniPolicyKind),
}

impl CniPolicyError {
    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            CniPolicyError::UnknownKind { .. } => "kind",
            CniPolicyError::NoName => "metadata.name",
            CniPolicyError::NoNamespace(_) => "metadata.namespace",
        }
    }
}

impl CniPolicy {
    /// From an object's `apiVersion`, `kind` and metadata (its spec is not read). `kind`
    /// overrides what the object says (a watch of a known API may deliver objects without
    /// their type).
    pub fn from_object(
        object: &Value,
        kind: Option<CniPolicyKind>,
    ) -> Result<Self, CniPolicyError> {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
        let kind = match kind {
            Some(kind) => kind,
            None => {
                let (api_version, kind) = (text("/apiVersion"), text("/kind"));
                CniPolicyKind::of(api_version.unwrap_or_default(), kind.unwrap_or_default())
                    .ok_or_else(|| CniPolicyError::UnknownKind {
                        api_version: api_version.unwrap_or_default().to_string(),
                        kind: kind.unwrap_or_default().to_string(),
                    })?
            }
        };
        let name = text("/metadata/name")
            .filter(|n| !n.is_empty())
            .ok_or(CniPolicyError::NoName)?;
        let namespace = if kind.namespaced() {
            Some(
                text("/metadata/namespace")
                    .filter(|n| !n.is_empty())
                    .ok_or(CniPolicyError::NoNamespace(kind))?
                    .into(),
            )
        } else {
            None
        };
        Ok(Self {
            kind,
            namespace,
            name: name.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_convert_by_api_version_and_kind() {
        let cases = [
            (
                json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                       "metadata": {"name": "l7", "namespace": "shop"}}),
                Ok("CiliumNetworkPolicy shop/l7"),
            ),
            (
                json!({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                       "metadata": {"name": "lockdown"}}),
                Ok("CiliumClusterwideNetworkPolicy lockdown"),
            ),
            (
                json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
                       "metadata": {"name": "default.deny"}}),
                Ok("Calico GlobalNetworkPolicy default.deny"),
            ),
            (
                json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                       "metadata": {"name": "allow", "namespace": "db"}}),
                Ok("Calico NetworkPolicy db/allow"),
            ),
            (
                json!({"apiVersion": "crd.antrea.io/v1beta1", "kind": "ClusterNetworkPolicy",
                       "metadata": {"name": "acnp"}}),
                Ok("Antrea ClusterNetworkPolicy acnp"),
            ),
            (
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": "np", "namespace": "a"}}),
                Err("not a CNI-native policy kind"),
            ),
            (
                json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                       "metadata": {"name": "x"}}),
                Err("metadata.namespace is missing"),
            ),
            (
                json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                       "metadata": {"namespace": "x"}}),
                Err("metadata.name is missing"),
            ),
        ];
        for (object, want) in cases {
            let got = CniPolicy::from_object(&object, None).map(|p| p.to_string());
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e} vs {want}"),
                (got, want) => panic!("{object}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_apis() {
        for kind in CniPolicyKind::ALL {
            for served in kind.served_as() {
                assert_eq!(
                    CniPolicyKind::of(&served.api_version(), kind.api_kind()),
                    Some(kind)
                );
            }
        }
    }
}

//! The cluster-scoped policy tiers: ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`,
//! tiers Admin and Baseline) and the older AdminNetworkPolicy / BaselineAdminNetworkPolicy
//! (`v1alpha1`), converted at the edge from the API's JSON into one validated model.
//!
//! ```text
//! CNP v1alpha2 {tier, priority, subject, ingress/egress [{name, action Accept|Deny|Pass,
//!               from/to [namespaces|pods|networks|nodes|domainNames], protocols}]}
//! ANP v1alpha1 {priority, subject, ... action Allow|Deny|Pass, ports}   ──TryFrom<&Value>──> TieredPolicy
//! BANP v1alpha1 {subject, ... action Allow|Deny, ports}  (tier Baseline, one policy)
//! ```
//!
//! Fail closed, as the API specifies for what does not validate: a peer or port this model
//! does not understand makes an Accept rule match nothing, and a Deny or Pass rule deny
//! everything ([`TieredRule::invalid`]). A policy whose name, tier, priority or subject does not
//! validate is not loaded at all, with a problem naming the field.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::model::{Cidr, Protocol, ServedAs};
use super::selector::Selector;

/// The API a policy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TieredKind {
    ClusterNetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
}

impl TieredKind {
    pub const ALL: [TieredKind; 3] = [
        TieredKind::ClusterNetworkPolicy,
        TieredKind::AdminNetworkPolicy,
        TieredKind::BaselineAdminNetworkPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TieredKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            TieredKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            TieredKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }

    /// The API it is served under.
    pub fn served_as(self) -> &'static [ServedAs] {
        const GROUP: &str = "policy.networking.k8s.io";
        match self {
            TieredKind::ClusterNetworkPolicy => &[ServedAs {
                group: GROUP,
                version: "v1alpha2",
                plural: "clusternetworkpolicies",
            }],
            TieredKind::AdminNetworkPolicy => &[ServedAs {
                group: GROUP,
                version: "v1alpha1",
                plural: "adminnetworkpolicies",
            }],
            TieredKind::BaselineAdminNetworkPolicy => &[ServedAs {
                group: GROUP,
                version: "v1alpha1",
                plural: "baselineadminnetworkpolicies",
            }],
        }
    }

    /// The kind of an object by its `apiVersion` and `kind`.
    pub fn of(api_version: &str, kind: &str) -> Option<Self> {
        match (api_version, kind) {
            ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy") => {
                Some(TieredKind::ClusterNetworkPolicy)
            }
            ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy") => {
                Some(TieredKind::AdminNetworkPolicy)
            }
            ("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy") => {
                Some(TieredKind::BaselineAdminNetworkPolicy)
            }
            _ => None,
        }
    }
}

/// Where a tier is evaluated: Admin before NetworkPolicy, Baseline after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum PolicyTier {
    Admin,
    Baseline,
}

impl PolicyTier {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyTier::Admin => "Admin",
            PolicyTier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for PolicyTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TierAction {
    /// Allowed; no lower tier and no NetworkPolicy of this direction is read (`Allow` in v1alpha1).
    Accept,
    Deny,
    /// Skip the rest of this tier: the next tier decides.
    Pass,
}

impl TierAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TierAction::Accept => "Accept",
            TierAction::Deny => "Deny",
            TierAction::Pass => "Pass",
        }
    }
}

/// The pods a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TieredSubject {
    /// Every pod of the namespaces the selector matches.
    Namespaces(Selector),
    /// Pods matching both selectors.
    Pods {
        namespace_selector: Selector,
        pod_selector: Selector,
    },
}

/// One peer of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TieredPeer {
    Namespaces(Selector),
    Pods {
        namespace_selector: Selector,
        pod_selector: Selector,
    },
    /// Destination addresses (egress), pod addresses included.
    Networks(Vec<Cidr>),
    /// Nodes by their labels (egress): their addresses.
    Nodes(Selector),
    /// FQDNs (egress): what they resolve to is implementation-defined for a static evaluator.
    DomainNames(Vec<String>),
}

/// A port a rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TieredPort {
    Number {
        protocol: Protocol,
        port: u16,
    },
    Range {
        protocol: Protocol,
        start: u16,
        end: u16,
    },
    /// A container port name, resolved on the destination pod.
    Named(String),
}

/// One rule, in the order written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TieredRule {
    pub name: String,
    pub action: TierAction,
    pub peers: Vec<TieredPeer>,
    /// `None`: every port and protocol.
    pub ports: Option<Vec<TieredPort>>,
    /// Why the rule did not validate: it then matches nothing (Accept) or everything, as a
    /// Deny (Deny and Pass).
    pub invalid: Option<String>,
}

/// A ClusterNetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TieredPolicy {
    pub kind: TieredKind,
    pub name: String,
    pub tier: PolicyTier,
    /// Lower first; 0 for a BaselineAdminNetworkPolicy (there is one).
    pub priority: u32,
    pub subject: TieredSubject,
    pub ingress: Vec<TieredRule>,
    pub egress: Vec<TieredRule>,
}

impl TieredPolicy {
    /// `ClusterNetworkPolicy/name`: cluster-scoped, so named by kind.
    pub fn key(&self) -> String {
        Self::key_of(self.kind, &self.name)
    }

    /// The key of the policy of `kind` named `name` ([`Self::key`]).
    pub fn key_of(kind: TieredKind, name: &str) -> String {
        format!("{}/{name}", kind.as_str())
    }
}

/// Why a policy was not loaded: the field and the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TieredError {
    pub field: String,
    pub message: String,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> TieredError {
    TieredError {
        field: field.into(),
        message: message.into(),
    }
}

fn selector(field: &str, value: &Value) -> Result<Selector, String> {
    let api: LabelSelector =
        serde_json::from_value(value.clone()).map_err(|e| format!("{field}: {e}"))?;
    Selector::try_from(&api).map_err(|e| format!("{field}.{}: {}", e.field, e.message))
}

/// `namespaces` or `pods` (exactly one): a subject, or a pod peer.
fn pods_or_namespaces(field: &str, value: &Value) -> Result<TieredSubject, String> {
    let Some(map) = value.as_object() else {
        return Err(format!("{field}: expected an object"));
    };
    let mut keys = map.keys().map(String::as_str);
    match (keys.next(), keys.next()) {
        (Some("namespaces"), None) => Ok(TieredSubject::Namespaces(selector(
            &format!("{field}.namespaces"),
            &map["namespaces"],
        )?)),
        (Some("pods"), None) => {
            let pods = &map["pods"];
            let part = |name: &str| match pods.get(name) {
                Some(v) => selector(&format!("{field}.pods.{name}"), v),
                None => Err(format!("{field}.pods.{name}: required")),
            };
            Ok(TieredSubject::Pods {
                namespace_selector: part("namespaceSelector")?,
                pod_selector: part("podSelector")?,
            })
        }
        _ => Err(format!(
            "{field}: exactly one of namespaces or pods is required, found {:?}",
            map.keys().collect::<Vec<_>>()
        )),
    }
}

fn peer(field: &str, value: &Value, egress: bool) -> Result<TieredPeer, String> {
    let Some(map) = value.as_object() else {
        return Err(format!("{field}: expected an object"));
    };
    if map.len() != 1 {
        return Err(format!(
            "{field}: exactly one peer kind is required, found {:?}",
            map.keys().collect::<Vec<_>>()
        ));
    }
    let (key, inner) = map.iter().next().ok_or_else(|| format!("{field}: empty"))?;
    let strings = |what: &str| -> Result<Vec<String>, String> {
        inner
            .as_array()
            .ok_or_else(|| format!("{field}.{what}: expected a list"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{field}.{what}: expected strings"))
            })
            .collect()
    };
    match key.as_str() {
        "namespaces" | "pods" => Ok(match pods_or_namespaces(field, value)? {
            TieredSubject::Namespaces(s) => TieredPeer::Namespaces(s),
            TieredSubject::Pods {
                namespace_selector,
                pod_selector,
            } => TieredPeer::Pods {
                namespace_selector,
                pod_selector,
            },
        }),
        "networks" if egress => {
            let cidrs = strings("networks")?
                .iter()
                .map(|c| {
                    c.parse::<Cidr>()
                        .map_err(|e| format!("{field}.networks: {c:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if cidrs.is_empty() {
                return Err(format!("{field}.networks: empty"));
            }
            Ok(TieredPeer::Networks(cidrs))
        }
        "nodes" if egress => Ok(TieredPeer::Nodes(selector(
            &format!("{field}.nodes"),
            inner,
        )?)),
        "domainNames" if egress => Ok(TieredPeer::DomainNames(strings("domainNames")?)),
        other => Err(format!(
            "{field}.{other}: not a peer this model knows for {}",
            if egress { "egress" } else { "ingress" }
        )),
    }
}

fn protocol(field: &str, name: &str) -> Result<Protocol, String> {
    match name.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(format!("{field}: unknown protocol {name:?}")),
    }
}

fn port_number(field: &str, value: Option<&Value>) -> Result<u16, String> {
    value
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{field}: expected a port number 1-65535"))
}

fn range(field: &str, protocol: Protocol, value: &Value) -> Result<TieredPort, String> {
    let start = port_number(&format!("{field}.start"), value.get("start"))?;
    let end = port_number(&format!("{field}.end"), value.get("end"))?;
    if start > end {
        return Err(format!("{field}: start {start} is after end {end}"));
    }
    Ok(TieredPort::Range {
        protocol,
        start,
        end,
    })
}

/// A list whose items each hold exactly one of `one_of`'s keys: (the item's field path, its
/// key, its value) per item.
fn one_key_items<'v>(
    field: &str,
    value: &'v Value,
    one_of: &str,
) -> Result<Vec<(String, &'v str, &'v Value)>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{field}: expected a list"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("{field}[{i}]");
            match item.as_object().map(|m| (m.len(), m.iter().next())) {
                Some((1, Some((key, inner)))) => Ok((field, key.as_str(), inner)),
                _ => Err(format!("{field}: expected exactly one of {one_of}")),
            }
        })
        .collect()
}

/// v1alpha2 `protocols`: `{tcp|udp|sctp: {destinationPort: {number | range}}}` or
/// `{destinationNamedPort: name}`.
fn protocols(field: &str, value: &Value) -> Result<Vec<TieredPort>, String> {
    let mut ports = Vec::new();
    for (field, key, inner) in one_key_items(field, value, "tcp, udp, sctp, destinationNamedPort")?
    {
        if key == "destinationNamedPort" {
            let name = inner
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{field}.destinationNamedPort: expected a name"))?;
            ports.push(TieredPort::Named(name.to_string()));
            continue;
        }
        let protocol = protocol(&field, key)?;
        let field = format!("{field}.{key}");
        let Some(destination) = inner.get("destinationPort") else {
            // A protocol without a port: every port of it.
            ports.push(TieredPort::Range {
                protocol,
                start: 1,
                end: u16::MAX,
            });
            continue;
        };
        let field = format!("{field}.destinationPort");
        match (destination.get("number"), destination.get("range")) {
            (Some(number), None) => ports.push(TieredPort::Number {
                protocol,
                port: port_number(&format!("{field}.number"), Some(number))?,
            }),
            (None, Some(r)) => ports.push(range(&format!("{field}.range"), protocol, r)?),
            _ => {
                return Err(format!(
                    "{field}: exactly one of number or range is required"
                ));
            }
        }
    }
    Ok(ports)
}

/// v1alpha1 `ports`: `{portNumber: {port, protocol}} | {portRange: {start, end, protocol}} |
/// {namedPort: name}`; protocol defaults to TCP.
fn v1alpha1_ports(field: &str, value: &Value) -> Result<Vec<TieredPort>, String> {
    let mut ports = Vec::new();
    for (field, key, inner) in one_key_items(field, value, "portNumber, portRange, namedPort")? {
        let proto = |inner: &Value| match inner.get("protocol").and_then(Value::as_str) {
            Some(name) => protocol(&format!("{field}.{key}.protocol"), name),
            None => Ok(Protocol::Tcp),
        };
        match key {
            "namedPort" => ports.push(TieredPort::Named(
                inner
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("{field}.namedPort: expected a name"))?
                    .to_string(),
            )),
            "portNumber" => ports.push(TieredPort::Number {
                protocol: proto(inner)?,
                port: port_number(&format!("{field}.portNumber.port"), inner.get("port"))?,
            }),
            "portRange" => ports.push(range(&format!("{field}.portRange"), proto(inner)?, inner)?),
            other => return Err(format!("{field}.{other}: not a port this model knows")),
        }
    }
    Ok(ports)
}

fn rule(kind: TieredKind, field: &str, value: &Value, egress: bool) -> TieredRule {
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let action = match value.get("action").and_then(Value::as_str) {
        Some("Accept") if kind == TieredKind::ClusterNetworkPolicy => Ok(TierAction::Accept),
        Some("Allow") if kind != TieredKind::ClusterNetworkPolicy => Ok(TierAction::Accept),
        Some("Deny") => Ok(TierAction::Deny),
        Some("Pass") if kind != TieredKind::BaselineAdminNetworkPolicy => Ok(TierAction::Pass),
        other => Err(format!(
            "{field}.action: {other:?} is not an action of {}",
            kind.as_str()
        )),
    };
    let peers_key = if egress { "to" } else { "from" };
    let mut invalid = None;
    let mut fail = |message: String| {
        invalid.get_or_insert(message);
    };
    let mut peers = Vec::new();
    match value.get(peers_key).and_then(Value::as_array) {
        Some(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                match peer(&format!("{field}.{peers_key}[{i}]"), item, egress) {
                    Ok(peer) => peers.push(peer),
                    Err(message) => fail(message),
                }
            }
        }
        _ => fail(format!(
            "{field}.{peers_key}: at least one peer is required"
        )),
    }
    let ports_key = match kind {
        TieredKind::ClusterNetworkPolicy => "protocols",
        _ => "ports",
    };
    let ports = match value.get(ports_key) {
        None | Some(Value::Null) => None,
        Some(v) => {
            let parsed = match kind {
                TieredKind::ClusterNetworkPolicy => protocols(&format!("{field}.{ports_key}"), v),
                _ => v1alpha1_ports(&format!("{field}.{ports_key}"), v),
            };
            match parsed {
                Ok(ports) => Some(ports),
                Err(message) => {
                    fail(message);
                    Some(Vec::new())
                }
            }
        }
    };
    let known: &[&str] = &["name", "action", peers_key, ports_key];
    if let Some(map) = value.as_object() {
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            fail(format!("{field}.{key}: not a field this model knows"));
        }
    }
    let action = action.unwrap_or_else(|message| {
        fail(message);
        TierAction::Deny
    });
    TieredRule {
        name,
        action,
        peers,
        ports,
        invalid,
    }
}

impl TryFrom<&Value> for TieredPolicy {
    type Error = TieredError;

    fn try_from(object: &Value) -> Result<Self, Self::Error> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind_name = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = TieredKind::of(api_version, kind_name).ok_or_else(|| {
            error(
                "kind",
                format!("{api_version} {kind_name} is not a policy tier"),
            )
        })?;
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| error("metadata.name", "required"))?
            .to_string();
        let spec = object
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| error("spec", "required"))?;
        let tier = match kind {
            TieredKind::ClusterNetworkPolicy => match spec.get("tier").and_then(Value::as_str) {
                Some("Admin") => PolicyTier::Admin,
                Some("Baseline") => PolicyTier::Baseline,
                other => {
                    return Err(error(
                        "spec.tier",
                        format!("{other:?}: expected Admin or Baseline"),
                    ));
                }
            },
            TieredKind::AdminNetworkPolicy => PolicyTier::Admin,
            TieredKind::BaselineAdminNetworkPolicy => PolicyTier::Baseline,
        };
        let priority = match kind {
            TieredKind::BaselineAdminNetworkPolicy => 0,
            _ => spec
                .get("priority")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| error("spec.priority", "expected a non-negative integer"))?,
        };
        let subject = pods_or_namespaces(
            "spec.subject",
            spec.get("subject")
                .ok_or_else(|| error("spec.subject", "required"))?,
        )
        .map_err(|message| error("spec.subject", message))?;
        let rules = |key: &str, egress: bool| -> Vec<TieredRule> {
            spec.get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| rule(kind, &format!("spec.{key}[{i}]"), item, egress))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(TieredPolicy {
            kind,
            name,
            tier,
            priority,
            subject,
            ingress: rules("ingress", false),
            egress: rules("egress", true),
        })
    }
}

#[cfg(test)]
mod tests;

//! What the agent writes to a ProbeRequest's `status`: its phase, and the outcome and
//! diagnosis of the probe.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::verdict::{Direction, PairVerdict};

/// Where a ProbeRequest is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProbeRequestPhase {
    /// Accepted, waiting for the agent on the source pod's node.
    #[default]
    Pending,
    /// The agent is probing.
    Running,
    /// Every probe ran; outcome and verdict are set, whatever they are.
    Succeeded,
    /// The probe could not run (no such pod, pod not running, invalid spec); see message.
    Failed,
}

/// The result of a ProbeRequest, written by the agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRequestStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default)]
    pub phase: ProbeRequestPhase,
    /// The node whose agent ran the probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The resolved destination, e.g. "payments/gateway:8443/TCP", "10.0.0.1:53/UDP" or a DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The most frequent outcome: open, refused, timeout, unreachable, open_or_filtered, resolved, nxdomain, servfail, dns_timeout or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// How many probes had each outcome, when count is above 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<String, u32>,
    /// ok, blocked_by_policy, policy_not_enforced or unexpected_block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_enum::<PairVerdict>")]
    pub verdict: Option<PairVerdict>,
    /// The reason code of the verdict, e.g. default_deny or cni_unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The side whose policy decides: ingress or egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_enum::<Direction>")]
    pub direction: Option<Direction>,
    /// The NetworkPolicies that decide the flow, as namespace/name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The diagnosis in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The full explanation: each policy and rule considered and the first requirement that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Median probe latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_seconds: Option<f64>,
    /// When the agent started probing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the agent finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Why the request failed, or other detail for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

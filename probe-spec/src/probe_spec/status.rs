//! What the agents write to a ProbeSpec's `status`: conditions, counts by verdict, and the
//! last pairs that do not meet `expect`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MAX_LAST_FAILING_PAIRS;
use crate::{port::Protocol, verdict::PairVerdict};

/// What the agents observed for a ProbeSpec.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpecStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: the agents probe this spec. Satisfied: every probed pair meets expect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// How many pairs currently have each verdict.
    #[serde(default)]
    pub counts: VerdictCounts,
    /// The most recent pairs that do not meet expect, newest first (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LAST_FAILING_PAIRS))]
    pub last_failing_pairs: Vec<FailingPair>,
    /// Agents' own shares, keyed by node name: at most 32 entries whatever the node count, agents with a problem or failing pairs first. One agent runs per node and writes only its own key with a merge patch, so agents never overwrite each other; the fields above are aggregated from the fresh entries here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeContribution>,
}

/// One agent's share of a ProbeSpec's status, at `status.nodes.<node>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeContribution {
    /// The `metadata.generation` the agent planned its pairs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many of this node's pairs have each verdict.
    #[serde(default)]
    pub counts: VerdictCounts,
    /// How many of this node's pairs do not meet `expect`.
    #[serde(default)]
    pub failing: u32,
    /// The node's most recent failing pairs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LAST_FAILING_PAIRS))]
    pub last_failing_pairs: Vec<FailingPair>,
    /// Why the agent cannot probe the spec (e.g. it does not validate), if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What the agent left out of a ProbeSpec's sources: the namespaces that
    /// `from.namespaceSelector` reaches besides the spec's own (a ProbeSpec probes only from
    /// its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_narrowed: Option<String>,
    /// The agent's heartbeat: readers ignore entries that have not been refreshed recently.
    pub updated_at: Time,
}

impl NodeContribution {
    /// How many pairs this node probes for the spec.
    pub fn pairs(&self) -> u32 {
        PairVerdict::ALL
            .iter()
            .map(|v| self.counts.get(*v))
            .fold(0, u32::saturating_add)
    }
}

/// Number of pairs per verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictCounts {
    /// Reachable, and the policy set allows it.
    #[serde(default)]
    pub ok: u32,
    /// Not reachable, and the policy set denies it.
    #[serde(default)]
    pub blocked_by_policy: u32,
    /// Reachable, although the policy set denies it.
    #[serde(default)]
    pub policy_not_enforced: u32,
    /// Not reachable, although the policy set allows it.
    #[serde(default)]
    pub unexpected_block: u32,
    /// The probe could not run (nothing observed).
    #[serde(default)]
    pub not_probed: u32,
    /// The probe ran but its observation cannot decide (UDP silence, a mesh redirect).
    #[serde(default)]
    pub inconclusive: u32,
    /// A Service pair: some endpoints blocked by policy, the others reachable.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub partially_blocked: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl VerdictCounts {
    /// The count for one verdict.
    pub fn get(&self, verdict: PairVerdict) -> u32 {
        match verdict {
            PairVerdict::Ok => self.ok,
            PairVerdict::BlockedByPolicy => self.blocked_by_policy,
            PairVerdict::PolicyNotEnforced => self.policy_not_enforced,
            PairVerdict::UnexpectedBlock => self.unexpected_block,
            PairVerdict::NotProbed => self.not_probed,
            PairVerdict::Inconclusive => self.inconclusive,
            PairVerdict::PartiallyBlocked => self.partially_blocked,
        }
    }

    /// Counts one more pair with `verdict`.
    pub fn add(&mut self, verdict: PairVerdict) {
        let count = match verdict {
            PairVerdict::Ok => &mut self.ok,
            PairVerdict::BlockedByPolicy => &mut self.blocked_by_policy,
            PairVerdict::PolicyNotEnforced => &mut self.policy_not_enforced,
            PairVerdict::UnexpectedBlock => &mut self.unexpected_block,
            PairVerdict::NotProbed => &mut self.not_probed,
            PairVerdict::Inconclusive => &mut self.inconclusive,
            PairVerdict::PartiallyBlocked => &mut self.partially_blocked,
        };
        *count = count.saturating_add(1);
    }
}

/// A pair that does not meet the ProbeSpec's expect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailingPair {
    /// The source pod, as namespace/name.
    pub from: String,
    /// The destination: a pod as namespace/name, an IP, or a host or DNS name.
    pub to: String,
    /// The destination port; absent for dns targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The protocol probed; absent for dns targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_enum::<Protocol>")]
    pub protocol: Option<Protocol>,
    /// ok, blocked_by_policy, policy_not_enforced, unexpected_block, not_probed or inconclusive.
    pub verdict: PairVerdict,
    /// Why: a policy reason (default_deny, port_not_allowed, pod_selector_mismatch, namespace_selector_mismatch, ip_block_mismatch, named_port_unresolved) a fault reason (cni_unhealthy, node_not_ready, destination_not_ready, not_listening, dns_failure, unknown), why a probe did not run (netns_not_found, host_network_source, unsupported_protocol, pod_file_unreadable, resolve_failed, refused_target, agent_overloaded, probe_error) or why an observation cannot decide (udp_silence, mesh_redirect, destination_unknown, view_stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The NetworkPolicy that decides the pair, as namespace/name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// When the pair stopped meeting expect.
    pub since: Time,
    /// The pair's latest verdict changes as the agent that probes it keeps them, oldest first
    /// (at most 5; the agent's /v1/pairs has up to 20 per pair and 7 days).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECENT_CHANGES))]
    pub recent_changes: Vec<VerdictChange>,
    /// Probes of the pair since the agent started probing it, by outcome (open, refused,
    /// timeout, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, u64>,
}

/// The most entries in a failing pair's `recentChanges`.
pub const MAX_RECENT_CHANGES: usize = 5;

/// A stretch of time a pair had one verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictChange {
    /// When a probe first found this verdict.
    pub start: Time,
    /// When a probe first found another; absent while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    pub verdict: PairVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

//! Status of the netreach custom resources: ProbeSpec and ClusterProbeSpec (written by every
//! agent) and ProbeRequest (written by the agent on the source pod's node).
//!
//! **ProbeSpec and ClusterProbeSpec (one status type): one entry per node, plus an aggregate under optimistic concurrency.** Every
//! agent probes its own share of a spec's pairs, so several agents write the same status. Each
//! owns `status.nodes.<node>` ([`NodeContribution`]): counts by verdict, failing pairs, the
//! generation it planned from, and a heartbeat. A JSON merge patch of a map only touches the
//! keys it names, so agents never overwrite each other's entries. The top-level fields that
//! `kubectl get probespecs` shows (`counts`, `conditions`, `lastFailingPairs`,
//! `observedGeneration`) are a pure function of the fresh entries ([`aggregate`]), recomputed by
//! whichever agent writes, in the same patch, with `metadata.resourceVersion` as a
//! precondition: an agent that read a stale status gets 409 Conflict, re-reads and retries, so
//! the aggregate always matches the entries it was computed from.
//!
//! ```text
//! NodeReport ──> GET probespec ──> nodes (+ own, - stale) ──aggregate()──> PATCH …/status
//!                     ^                                                      │ merge patch with
//!                     └──────────────────── 409 Conflict: retry ─────────────┘ resourceVersion
//! ```
//!
//! Entries whose heartbeat is older than `stale_after` (an agent that left) are ignored and
//! removed (`null`) by the next writer. An agent with no pairs for a spec removes its entry.
//! Writes are skipped when the report did not change, except for a heartbeat every
//! `refresh_every`.
//!
//! **Bounded by the entries, not by the nodes.** `status.nodes` keeps at most
//! `max_node_entries` (32) entries, whatever the node count: one object stays far below etcd's
//! 1.5 MiB, and the writers of a spec (each of whose patches every ProbeSpec watcher, i.e.
//! every agent, receives) are at most 32, so a spec's status traffic grows with the node
//! count once (fan-out), never with its square. Entries rank by what they say ([`rank`]): a
//! problem, then failing pairs, then undecided pairs or narrowed sources, then all-fine. An
//! agent without an entry takes a free slot, or the slot of the lowest-ranked entry if it
//! outranks it (that entry is removed in the same patch, under the same precondition); else it
//! writes nothing, and tries again at its next heartbeat. So every failing agent reports while
//! at most 32 fail, `Satisfied=False` holds whenever one entry fails, and the counts cover the
//! agents with an entry (the Ready message says when the entries are full; the metric
//! `netreach_spec_pairs`, summed in Prometheus, counts every agent's pairs).
//!
//! `ProbeSpecStatus::nodes` (`BTreeMap<String, NodeContribution>`, defined in probe-spec) is
//! part of the CRD's structural schema, so the API server keeps these entries.
//!
//! **ProbeRequest**: one writer (the source's node), so a plain merge patch of the whole status,
//! with explicit `null`s for unset fields so a later phase clears what an earlier one set.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use parking_lot::Mutex;
use probe_spec::probe_spec::{
    CONDITION_READY, CONDITION_SATISFIED, CONDITION_SOURCES_NARROWED, MAX_LAST_FAILING_PAIRS,
    MAX_NODE_ENTRIES,
};
use probe_spec::{
    ClusterProbeSpec, Expectation, FailingPair, ProbeRequest, ProbeRequestStatus, ProbeSpec,
    ProbeSpecStatus, VerdictCounts,
};
use serde_json::{Map, Value, json};
use tracing::{debug, warn};

use crate::cluster::SpecRef;
use crate::cluster::model::ObjectRef;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `object` is `namespace/name`, or the name of a cluster-scoped object.
    #[error("reading {kind} {object}: {source}")]
    Get {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("patching {kind} {object} status: {source}")]
    Patch {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {object}: {source}")]
    Delete {
        kind: &'static str,
        object: ObjectRef,
        #[source]
        source: kube::Error,
    },
    #[error("patching {kind} {object} status: still conflicting after {attempts} attempts")]
    Conflict {
        kind: &'static str,
        object: String,
        attempts: u32,
    },
    #[error("encoding {kind} {object} status: {source}")]
    Encode {
        kind: &'static str,
        object: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether writing again later may succeed (the API was away or overloaded, or another
    /// writer kept winning), as opposed to a refusal that would only repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Get { source, .. }
            | Error::Patch { source, .. }
            | Error::Delete { source, .. } => crate::cluster::watch::backoff::is_transient(source),
            Error::Conflict { .. } => true,
            Error::Encode { .. } => false,
        }
    }

    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Get { .. } => "get",
            Error::Patch { .. } => "patch",
            Error::Delete { .. } => "delete",
            Error::Conflict { .. } => "conflict",
            Error::Encode { .. } => "encode",
        }
    }
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Patched,
    /// Nothing new to say (the report is what was last written, and no heartbeat is due).
    Unchanged,
    /// The object is gone (404): nothing to report on.
    Gone,
}

// === Per-node contributions and their aggregate ===

pub use probe_spec::NodeContribution;

/// What one agent reports for one spec (a [`NodeContribution`] without the heartbeat).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeReport {
    pub observed_generation: Option<i64>,
    pub counts: VerdictCounts,
    /// Pairs that do not meet `expect` (judged by the diagnosis, which knows e.g. that a
    /// refused `ok` pair does not meet `expect: Allow`).
    pub failing: u32,
    /// Newest first; truncated to [`StatusConfig::node_failing_pairs`].
    pub last_failing_pairs: Vec<FailingPair>,
    pub problem: Option<String>,
    /// The namespaces a ProbeSpec's `from.namespaceSelector` reaches besides its own, which
    /// the planner ignored (see [`crate::schedule::Narrowed`]).
    pub sources_narrowed: Option<String>,
}

impl NodeReport {
    /// A report with no pairs, no problem and nothing narrowed: the agent has nothing to say
    /// about the spec. (A spec narrowed down to no sources still gets its condition.)
    pub fn is_empty(&self) -> bool {
        self.counts == VerdictCounts::default()
            && self.problem.is_none()
            && self.sources_narrowed.is_none()
    }

    fn contribution(&self, cap: usize, now: SystemTime) -> NodeContribution {
        let mut failing = self.last_failing_pairs.clone();
        failing.truncate(cap);
        NodeContribution {
            observed_generation: self.observed_generation,
            counts: self.counts.clone(),
            failing: self.failing,
            last_failing_pairs: failing,
            problem: self.problem.clone(),
            sources_narrowed: self.sources_narrowed.clone(),
            updated_at: time(now),
        }
    }
}

/// Condition reasons (CamelCase, as Kubernetes conditions use).
pub mod reasons {
    /// Ready=True: agents probe pairs of the spec.
    pub const PROBING: &str = "Probing";
    /// Ready=False, Satisfied=Unknown: no fresh agent reports a pair.
    pub const NO_PAIRS: &str = "NoPairs";
    /// Ready=False: an agent cannot run the spec.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Satisfied=True.
    pub const ALL_PAIRS_MEET_EXPECTATION: &str = "AllPairsMeetExpectation";
    /// Satisfied=False.
    pub const PAIRS_FAIL_EXPECTATION: &str = "PairsFailExpectation";
    /// SourcesNarrowed=True: a ProbeSpec's `from.namespaceSelector` reaches other namespaces.
    pub const OTHER_NAMESPACES_IGNORED: &str = "OtherNamespacesIgnored";
}

/// The top-level status from the fresh node entries: counts summed, failing pairs merged
/// (newest first, at most 20), the oldest observed generation, and the conditions (keeping
/// `lastTransitionTime` from `previous` when a condition's status did not change).
/// `SourcesNarrowed` is there only while a fresh entry reports narrowed sources: conditions are
/// written as a whole list, so leaving it out removes it.
pub fn aggregate(
    expect: Expectation,
    nodes: &BTreeMap<String, NodeContribution>,
    previous: &[Condition],
    now: SystemTime,
) -> ProbeSpecStatus {
    let mut counts = VerdictCounts::default();
    let mut failing = 0u32;
    let mut pairs = 0u32;
    let mut last: Vec<FailingPair> = Vec::new();
    for node in nodes.values() {
        counts = sum_counts(&counts, &node.counts);
        failing = failing.saturating_add(node.failing);
        pairs = pairs.saturating_add(node.pairs());
        last.extend(node.last_failing_pairs.iter().cloned());
    }
    last.sort_by(|a, b| {
        b.since
            .0
            .cmp(&a.since.0)
            .then_with(|| (&a.from, &a.to, a.port).cmp(&(&b.from, &b.to, b.port)))
    });
    last.truncate(MAX_LAST_FAILING_PAIRS);
    let observed_generation = nodes.values().filter_map(|n| n.observed_generation).min();
    let full = if nodes.len() >= MAX_NODE_ENTRIES {
        format!(
            " (status keeps at most {MAX_NODE_ENTRIES} agents' entries, failing ones first: counts cover those agents)"
        )
    } else {
        String::new()
    };

    let problem = nodes
        .iter()
        .find_map(|(node, n)| n.problem.as_ref().map(|p| format!("{node}: {p}")));
    let expect_str = match expect {
        Expectation::Allow => "Allow",
        Expectation::Deny => "Deny",
    };
    let ready = match (&problem, pairs) {
        (Some(problem), _) => ("False", reasons::INVALID_SPEC, problem.clone()),
        (None, 0) => (
            "False",
            reasons::NO_PAIRS,
            "no agent probes a pair of this spec: no source pod matches, or the agents have not synced".into(),
        ),
        (None, _) => (
            "True",
            reasons::PROBING,
            format!(
                "{pairs} pair(s) probed by {} agent(s): {}{full}",
                nodes.len(),
                nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
    };
    let satisfied = match (pairs, failing) {
        (0, _) => (
            "Unknown",
            reasons::NO_PAIRS,
            "no pairs are probed".to_string(),
        ),
        (_, 0) => (
            "True",
            reasons::ALL_PAIRS_MEET_EXPECTATION,
            format!("all {pairs} pair(s) meet expect {expect_str}"),
        ),
        (_, f) => (
            "False",
            reasons::PAIRS_FAIL_EXPECTATION,
            format!(
                "{f} of {pairs} pair(s) do not meet expect {expect_str} ({})",
                describe_counts(&counts)
            ),
        ),
    };
    let narrowed = nodes
        .values()
        .find_map(|n| n.sources_narrowed.clone())
        .map(|message| ("True", reasons::OTHER_NAMESPACES_IGNORED, message));
    let conditions = [(CONDITION_READY, ready), (CONDITION_SATISFIED, satisfied)]
        .into_iter()
        .chain(narrowed.map(|narrowed| (CONDITION_SOURCES_NARROWED, narrowed)))
        .map(|(type_, (status, reason, message))| {
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map_or_else(|| time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message,
                observed_generation,
                last_transition_time,
            }
        })
        .collect();
    ProbeSpecStatus {
        observed_generation,
        conditions,
        counts,
        last_failing_pairs: last,
        // Each agent patches only its own `status.nodes.<node>` key, next to this summary.
        nodes: Default::default(),
    }
}

fn sum_counts(a: &VerdictCounts, b: &VerdictCounts) -> VerdictCounts {
    VerdictCounts {
        ok: a.ok.saturating_add(b.ok),
        blocked_by_policy: a.blocked_by_policy.saturating_add(b.blocked_by_policy),
        policy_not_enforced: a.policy_not_enforced.saturating_add(b.policy_not_enforced),
        unexpected_block: a.unexpected_block.saturating_add(b.unexpected_block),
        not_probed: a.not_probed.saturating_add(b.not_probed),
        inconclusive: a.inconclusive.saturating_add(b.inconclusive),
        partially_blocked: a.partially_blocked.saturating_add(b.partially_blocked),
    }
}

/// `2 ok, 1 blocked_by_policy` (verdicts with a zero count left out).
fn describe_counts(counts: &VerdictCounts) -> String {
    let parts: Vec<String> = probe_spec::PairVerdict::ALL
        .iter()
        .filter(|v| counts.get(**v) > 0)
        .map(|v| format!("{} {v}", counts.get(*v)))
        .collect();
    parts.join(", ")
}

// === impl SpecStatusWriter ===

/// Settings of the ProbeSpec status writer.
#[derive(Clone, Debug)]
pub struct StatusConfig {
    /// This agent's node: the key it owns under `status.nodes`.
    pub node: String,
    /// Entries with an older heartbeat are ignored and removed.
    pub stale_after: Duration,
    /// An unchanged report is re-written this often, as a heartbeat.
    pub refresh_every: Duration,
    /// Failing pairs kept per node (the aggregate keeps 20 across nodes); small, because
    /// every node's list lives in the one object.
    pub node_failing_pairs: usize,
    /// Attempts on 409 Conflict before giving up until the next report.
    pub max_attempts: u32,
    /// Entries `status.nodes` keeps at most (see the module docs).
    pub max_node_entries: usize,
}

impl StatusConfig {
    pub fn for_node(node: &str) -> Self {
        Self {
            node: node.to_string(),
            stale_after: Duration::from_secs(10 * 60),
            refresh_every: Duration::from_secs(4 * 60),
            node_failing_pairs: 5,
            max_attempts: 5,
            max_node_entries: MAX_NODE_ENTRIES,
        }
    }
}

/// Writes this node's share of ProbeSpec and ClusterProbeSpec statuses.
pub struct SpecStatusWriter {
    client: Client,
    config: StatusConfig,
    /// The ProbeSpec resource (namespaced) and the ClusterProbeSpec resource.
    namespaced: ApiResource,
    cluster: ApiResource,
    /// The last report written per spec, and when.
    last: Mutex<HashMap<SpecRef, (NodeReport, SystemTime)>>,
}

impl fmt::Debug for SpecStatusWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecStatusWriter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The parts of a ProbeSpec a write needs.
pub(crate) struct Current {
    resource_version: Option<String>,
    expect: Expectation,
    nodes: BTreeMap<String, NodeContribution>,
    conditions: Vec<Condition>,
}

impl SpecStatusWriter {
    pub fn new(client: Client, config: StatusConfig) -> Self {
        Self {
            client,
            config,
            namespaced: ApiResource::erase::<ProbeSpec>(&()),
            cluster: ApiResource::erase::<ClusterProbeSpec>(&()),
            last: Mutex::default(),
        }
    }

    /// The API of `spec`'s kind, and the object's name in it.
    fn api<'a>(&self, spec: &'a SpecRef) -> (Api<DynamicObject>, &'a str) {
        match spec {
            SpecRef::Namespaced(key) => (
                Api::namespaced_with(self.client.clone(), &key.namespace, &self.namespaced),
                &key.name,
            ),
            SpecRef::Cluster(name) => (Api::all_with(self.client.clone(), &self.cluster), name),
        }
    }

    /// Publishes this node's report for `spec` (an empty report withdraws the node's entry).
    pub async fn publish(&self, spec: &SpecRef, report: &NodeReport) -> Result<Written> {
        self.publish_at(spec, report, SystemTime::now()).await
    }

    /// [`Self::publish`] at a given time (tests drive the clock).
    pub async fn publish_at(
        &self,
        spec: &SpecRef,
        report: &NodeReport,
        now: SystemTime,
    ) -> Result<Written> {
        if let Some((last, at)) = self.last.lock().get(spec)
            && last == report
            && now.duration_since(*at).unwrap_or(Duration::ZERO) < self.config.refresh_every
        {
            return Ok(Written::Unchanged);
        }
        let (api, name) = self.api(spec);
        let (kind, object) = (spec.kind(), spec.to_string());
        for attempt in 1..=self.config.max_attempts {
            let current = match api.get(name).await {
                Ok(obj) => parse_current(&obj, spec),
                Err(e) if status_code(&e) == Some(404) => return Ok(self.gone(spec)),
                Err(source) => {
                    return Err(Error::Get {
                        kind,
                        object,
                        source,
                    });
                }
            };
            let patch = status_patch(&self.config, current, report, now).map_err(|source| {
                Error::Encode {
                    kind,
                    object: object.clone(),
                    source,
                }
            })?;
            let Some(patch) = patch else {
                self.remember(spec, report, now);
                return Ok(Written::Unchanged);
            };
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(spec, report, now);
                    return Ok(Written::Patched);
                }
                Err(e) if status_code(&e) == Some(409) => {
                    debug!(%spec, attempt, "status conflict; re-reading");
                }
                Err(e) if status_code(&e) == Some(404) => return Ok(self.gone(spec)),
                Err(source) => {
                    return Err(Error::Patch {
                        kind,
                        object,
                        source,
                    });
                }
            }
        }
        Err(Error::Conflict {
            kind,
            object,
            attempts: self.config.max_attempts,
        })
    }

    fn gone(&self, spec: &SpecRef) -> Written {
        self.last.lock().remove(spec);
        Written::Gone
    }

    fn remember(&self, spec: &SpecRef, report: &NodeReport, now: SystemTime) {
        self.last.lock().insert(spec.clone(), (report.clone(), now));
    }
}

/// Which entries a full `status.nodes` keeps first: a problem (3), failing pairs (2),
/// undecided pairs or narrowed sources (1), all pairs fine (0).
pub fn rank(entry: &NodeContribution) -> u8 {
    if entry.problem.is_some() {
        3
    } else if entry.failing > 0 {
        2
    } else if entry.counts.not_probed > 0
        || entry.counts.inconclusive > 0
        || entry.sources_narrowed.is_some()
    {
        1
    } else {
        0
    }
}

/// The merge patch of `config.node`'s report: own entry set or removed, stale entries
/// removed, a lower-ranked entry evicted when the entries are full, the aggregate of what
/// remains, and the resourceVersion precondition. `None` when there is nothing to do (an
/// empty report and nothing to remove, or no room for this node's entry and nothing stale).
pub(crate) fn status_patch(
    config: &StatusConfig,
    current: Current,
    report: &NodeReport,
    now: SystemTime,
) -> serde_json::Result<Option<Value>> {
    let node = &config.node;
    let stale_before = now
        .checked_sub(config.stale_after)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut nodes = current.nodes;
    let mut patch_nodes = Map::new();
    nodes.retain(|name, entry| {
        let fresh = name == node || SystemTime::from(entry.updated_at.0) >= stale_before;
        if !fresh {
            patch_nodes.insert(name.clone(), Value::Null);
        }
        fresh
    });
    if report.is_empty() {
        if nodes.remove(node).is_none() && patch_nodes.is_empty() {
            return Ok(None);
        }
        patch_nodes.insert(node.clone(), Value::Null);
    } else {
        let contribution = report.contribution(config.node_failing_pairs, now);
        let has_room = nodes.contains_key(node)
            || nodes.len() < config.max_node_entries
            || evict_weaker(&mut nodes, &mut patch_nodes, rank(&contribution));
        if has_room {
            patch_nodes.insert(node.clone(), serde_json::to_value(&contribution)?);
            nodes.insert(node.clone(), contribution);
        } else if patch_nodes.is_empty() {
            return Ok(None);
        }
    }
    let status = aggregate(current.expect, &nodes, &current.conditions, now);
    // Explicit nulls: a merge patch leaves out nothing it means to clear.
    let last_failing_pairs = if status.last_failing_pairs.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(&status.last_failing_pairs)?
    };
    Ok(Some(json!({
        "metadata": {"resourceVersion": current.resource_version},
        "status": {
            "nodes": patch_nodes,
            "observedGeneration": status.observed_generation,
            "conditions": serde_json::to_value(&status.conditions)?,
            "counts": serde_json::to_value(&status.counts)?,
            "lastFailingPairs": last_failing_pairs,
        },
    })))
}

/// Removes the lowest-ranked entry (ties: the greatest node name) if it ranks below `rank_of_new`;
/// returns whether it did.
fn evict_weaker(
    nodes: &mut BTreeMap<String, NodeContribution>,
    patch_nodes: &mut Map<String, Value>,
    rank_of_new: u8,
) -> bool {
    let weakest = nodes
        .iter()
        .min_by(|a, b| rank(a.1).cmp(&rank(b.1)).then_with(|| b.0.cmp(a.0)))
        .filter(|(_, entry)| rank(entry) < rank_of_new)
        .map(|(name, _)| name.clone());
    match weakest {
        Some(name) => {
            nodes.remove(&name);
            patch_nodes.insert(name, Value::Null);
            true
        }
        None => false,
    }
}

/// Reads what a write needs from the raw object (the typed `ProbeSpecStatus` has no `nodes`).
/// Malformed node entries are ignored (and overwritten by their owners).
fn parse_current(obj: &DynamicObject, spec: &SpecRef) -> Current {
    let expect = obj
        .data
        .pointer("/spec/expect")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let mut nodes = BTreeMap::new();
    if let Some(Value::Object(raw)) = obj.data.pointer("/status/nodes") {
        for (name, entry) in raw {
            match serde_json::from_value::<NodeContribution>(entry.clone()) {
                Ok(c) => {
                    nodes.insert(name.clone(), c);
                }
                Err(error) => {
                    warn!(%spec, node = %name, %error, "ignoring malformed status.nodes entry")
                }
            }
        }
    }
    let conditions = obj
        .data
        .pointer("/status/conditions")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    Current {
        resource_version: obj.metadata.resource_version.clone(),
        expect,
        nodes,
        conditions,
    }
}

// === impl RequestStatusWriter ===

/// Every field of `ProbeRequestStatus` as serialized; unset ones are sent as `null`.
const REQUEST_STATUS_FIELDS: &[&str] = &[
    "phase",
    "node",
    "target",
    "outcome",
    "outcomes",
    "verdict",
    "reason",
    "direction",
    "policies",
    "summary",
    "explanation",
    "latencySeconds",
    "startedAt",
    "completedAt",
    "message",
];

/// Writes ProbeRequest status (only the agent on the source pod's node does).
#[derive(Clone)]
pub struct RequestStatusWriter {
    client: Client,
}

impl fmt::Debug for RequestStatusWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestStatusWriter")
            .finish_non_exhaustive()
    }
}

impl RequestStatusWriter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Replaces the request's status with `status` (a merge patch with explicit nulls).
    pub async fn write(&self, request: &ObjectRef, status: &ProbeRequestStatus) -> Result<Written> {
        let encode = |source| Error::Encode {
            kind: "ProbeRequest",
            object: request.to_string(),
            source,
        };
        let mut body = match serde_json::to_value(status).map_err(encode)? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        for field in REQUEST_STATUS_FIELDS {
            body.entry(*field).or_insert(Value::Null);
        }
        let patch = json!({ "status": body });
        // Untyped, so a response in a newer schema does not turn a successful write into an error.
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &request.namespace,
            &ApiResource::erase::<ProbeRequest>(&()),
        );
        match api
            .patch_status(
                &request.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(Written::Patched),
            Err(e) if status_code(&e) == Some(404) => Ok(Written::Gone),
            Err(source) => Err(Error::Patch {
                kind: "ProbeRequest",
                object: request.to_string(),
                source,
            }),
        }
    }

    /// Deletes a finished request whose TTL ran out; the UID precondition spares a new request
    /// created under the same name.
    pub async fn delete(&self, request: &ObjectRef, uid: &str) -> Result<Written> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &request.namespace,
            &ApiResource::erase::<ProbeRequest>(&()),
        );
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&request.name, &params).await {
            Ok(_) => Ok(Written::Patched),
            // Gone already, or replaced by a new request of the same name.
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(Written::Gone),
            Err(source) => Err(Error::Delete {
                kind: "ProbeRequest",
                object: request.clone(),
                source,
            }),
        }
    }
}

// === Helpers ===

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn time(t: SystemTime) -> Time {
    Time(Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
pub(crate) mod tests;

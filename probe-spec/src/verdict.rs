//! The bounded result vocabulary that status fields share with metrics, events and JSON output.
//!
//! A pair's verdict combines what the probe observed with what the live NetworkPolicy set
//! predicts. The codes are snake_case because the same strings are metric label values.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed reachability crossed with the policy verdict for one (from, to, port, protocol) pair.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PairVerdict {
    /// Reachable, and the policy set allows it.
    Ok,
    /// Not reachable, and the policy set denies it.
    BlockedByPolicy,
    /// Reachable, although the policy set denies it (the CNI does not enforce the policy).
    PolicyNotEnforced,
    /// Not reachable, although the policy set allows it (CNI, node, or destination fault).
    UnexpectedBlock,
    /// The probe could not run (no source netns, an unsupported protocol, the agent out of
    /// sockets, ...): nothing was observed, so nothing is said about the network.
    NotProbed,
    /// The probe ran but what it saw cannot decide (UDP silence from a service that may just
    /// ignore the probe, a mesh redirect that cannot be bypassed).
    Inconclusive,
    /// A Service pair: some of the Service's endpoints are blocked by policy, the others are
    /// reachable (the blocked ones are named).
    PartiallyBlocked,
}

impl PairVerdict {
    /// Every verdict, in a stable order.
    pub const ALL: [PairVerdict; 7] = [
        PairVerdict::Ok,
        PairVerdict::BlockedByPolicy,
        PairVerdict::PolicyNotEnforced,
        PairVerdict::UnexpectedBlock,
        PairVerdict::NotProbed,
        PairVerdict::Inconclusive,
        PairVerdict::PartiallyBlocked,
    ];

    /// The code used in JSON, metric labels and alerts: `ok`, `blocked_by_policy`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            PairVerdict::Ok => "ok",
            PairVerdict::BlockedByPolicy => "blocked_by_policy",
            PairVerdict::PolicyNotEnforced => "policy_not_enforced",
            PairVerdict::UnexpectedBlock => "unexpected_block",
            PairVerdict::NotProbed => "not_probed",
            PairVerdict::Inconclusive => "inconclusive",
            PairVerdict::PartiallyBlocked => "partially_blocked",
        }
    }

    /// Whether the verdict says something about the network: false for `not_probed` and
    /// `inconclusive`, which never become a policy verdict, an Event or a page.
    pub fn is_decided(self) -> bool {
        !matches!(self, PairVerdict::NotProbed | PairVerdict::Inconclusive)
    }

    /// Whether the probe reached the destination (`refused` counts as reachable). A partially
    /// blocked Service is not: part of what it should reach is closed.
    pub fn reachable(self) -> bool {
        matches!(self, PairVerdict::Ok | PairVerdict::PolicyNotEnforced)
    }
}

impl fmt::Display for PairVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of a flow a policy decision was made on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The destination pod's ingress policies.
    Ingress,
    /// The source pod's egress policies.
    Egress,
}

impl Direction {
    /// The code used in JSON and metric labels: `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

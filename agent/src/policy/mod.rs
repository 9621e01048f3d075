//! The NetworkPolicy engine: pure, synchronous, no I/O.
//!
//! `Engine::new(&Index, Profile)` compiles a snapshot of the index (selector match caches,
//! the policies that select each pod); `Engine::evaluate(&Flow)` returns a structured
//! [`Verdict`] with an egress part (source side) and an ingress part (destination side), and
//! `Engine::matrix` answers every ordered pod pair with bitsets. Both share the same port and
//! peer checks. Semantics follow `docs/reference/netpol-semantics.md` (E0–E25); behaviour the API
//! leaves to the CNI is a [`Profile`] setting and is reported as "implementation-defined".
//!
//! Decisions are modelled as tiers so AdminNetworkPolicy (before) and
//! BaselineAdminNetworkPolicy (after) can slot in around the NetworkPolicy tier.

mod bitset;
mod engine;
pub mod explain;
mod matrix;
mod profile;
mod verdict;
pub mod whatif;

pub use engine::{Denial, Endpoint, Engine, Flow, ResolveError};
pub use matrix::{MatrixCell, MatrixPort, MatrixWalk};
pub use profile::Profile;
pub use verdict::{
    Direction, DirectionVerdict, PeerMiss, PolicyMisses, PortMiss, Reason, RuleMiss, RuleRef, Tier,
    Verdict,
};

#[cfg(test)]
mod tests;

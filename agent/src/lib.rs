//! netreach: in-cluster connectivity probes from inside pod network namespaces, compared with
//! what the live NetworkPolicy set predicts and explained down to the policy, rule and selector.
//!
//! Layers (see docs/design.md): `cluster` (objects -> validated types -> index) and `policy` (the
//! pure engine) do no I/O; `cli` wires them to files and terminals.
// `deny`, not `forbid`: `netns::sys` (setns, socket, SIOCGSKNS) and `probe::errqueue`
// (IP_RECVERR, recvmsg(MSG_ERRQUEUE)) and `malloc` (mallopt, malloc_trim) carry the only,
// documented `allow(unsafe_code)`.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod cluster;
pub mod diagnose;
pub mod malloc;
pub mod netns;
pub mod pair;
pub mod pipeline;
pub mod policy;
pub mod probe;
pub mod report;
pub mod runtime;
pub mod schedule;
#[cfg(test)]
pub(crate) mod testing;

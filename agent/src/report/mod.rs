//! Reporting: what the agent tells the outside world about its pairs.
//!
//! - [`metrics`]: the Prometheus metrics, held in one owned registry and exposed on `/metrics`.
//! - [`events`]: deduplicated, rate-limited Warning Events on source pods.
//! - [`status`]: ProbeSpec status (a per-node entry plus an aggregate) and ProbeRequest status.

pub mod events;
#[cfg(feature = "demo")]
pub mod memory_api;
pub mod metrics;
pub mod status;

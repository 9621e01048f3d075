//! A pair — one probe path from a source pod to a target — and what the agent reports about
//! it. The domain types every layer above shares: `schedule` plans and times [`Pair`]s,
//! `diagnose` gives them a [`PairReason`], `run` builds [`PairReport`]s, and `report`, `api`,
//! `agent` and `cli` read them. Pure data: no I/O; it imports only `cluster`, `policy` and
//! `probe` types.
//!
//! ```text
//! schedule::plan / resolve_request ──> Pair { id: PairId, spec: SpecRef, from: ObjectRef, target: PairTarget }
//! probe + diagnose ──────────────────> PairReport { typed: SpecRef, ObjectRef, PairTarget, PairReason, ... }
//!                                        └─ serde ─> the JSON of /v1/pairs, `netreach demo`, POST /v1/probe
//!                                           (strings: "ns/name", "default_deny", ...; see [`wire`])
//! ```
//!
//! Memory: an agent keeps one report per pair (10,000 on a busy node), so what repeats is
//! shared, not copied: names are `Arc<str>` (in [`crate::cluster::model::ObjectRef`] and
//! [`SpecRef`](crate::cluster::SpecRef)), an explanation is a [`Text`] of pieces shared through
//! [`SharedText`], and the published list ([`PublishedPairs`]) shares the reports themselves.

pub(crate) mod hash;
pub mod history;
mod id;
mod reason;
mod report;
mod text;
mod wire;

pub use history::{PairHistory, SharedHistory};
pub(crate) use id::source_hash;
pub use id::{Pair, PairId, PairTarget, pair_id};
pub use reason::{PairReason, UnknownReason};
pub use report::{Destination, EndpointReport, PairReport, PublishedPairs};
pub use text::{SharedText, StrPool, Text};
pub use wire::{PairReportWire, WireError};

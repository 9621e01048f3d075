//! The cluster view: Kubernetes objects converted at the edge into validated types, held in an
//! `Index` that every mode (agent, demo, offline CLI) feeds the same way.

pub mod changes;
pub mod cni_policy;
pub mod convert;
#[cfg(any(test, feature = "demo"))]
pub mod fake_api;
pub mod index;
pub mod load;
pub mod model;
pub mod selector;
pub mod service;
pub mod spec;
#[cfg(feature = "demo")]
pub mod synthetic;
pub mod tiered;
pub mod watch;

pub use index::Index;
pub use model::*;
pub use selector::Selector;
pub use spec::{Spec, SpecError, SpecRef};

//! Spare sockets kept in a [`super::NetnsHandle`], per socket kind, for
//! [`super::SocketFactory::pooled_socket`].
//!
//! Data flow: a caller takes a spare; when none is left it queues on the kind's refill lock, so
//! a burst of callers triggers ONE hop whose batch is as large as the queue (at least
//! [`SPARE_BATCH`], at most [`MAX_SPARES`]); every queued caller then finds a spare. Spares are
//! unbound, unconnected sockets: invisible to the pod, holding no port. They close when the
//! handle's last clone drops (a pod that goes away releases them with its namespace).
//!
//! A [`SpareBudget`] shared by every handle of one factory caps the spares held process-wide:
//! with 100 source pods, per-handle caps alone would let spares take thousands of descriptors
//! and starve the probes themselves (`EMFILE`). Sockets beyond the budget close at once, and an
//! exhausted budget shrinks refill batches to what the queued callers need.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use socket2::Socket;

use super::sys::RawSocketKind;

/// Sockets made per hop when no spare is waiting and nobody else is queued.
pub const SPARE_BATCH: usize = 16;
/// At most this many spares wait per handle and socket kind (and the largest refill batch).
pub const MAX_SPARES: usize = 64;

/// Spares held at once across every handle of one factory, by default.
pub const DEFAULT_SPARE_BUDGET: usize = 128;

/// How many spares every handle of a factory may hold together.
#[derive(Debug)]
pub struct SpareBudget {
    max: usize,
    held: AtomicUsize,
}

impl SpareBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: AtomicUsize::new(0),
        })
    }

    /// Spares held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Room left.
    pub fn available(&self) -> usize {
        self.max.saturating_sub(self.held())
    }

    /// Reserves up to `wanted`; returns how many were granted.
    pub(crate) fn reserve(&self, wanted: usize) -> usize {
        let mut granted = 0;
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                granted = wanted.min(self.max.saturating_sub(held));
                Some(held + granted)
            });
        granted
    }

    /// Returns a reservation that was not used (a failed refill).
    pub(crate) fn give_back(&self, count: usize) {
        self.release(count);
    }

    fn release(&self, count: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(count))
            });
    }
}

/// All kinds' spares of one handle.
#[derive(Default)]
pub(crate) struct Spares {
    kinds: Mutex<Vec<(RawSocketKind, Arc<KindSpares>)>>,
}

impl Spares {
    /// The spares of `kind` (created empty on first use).
    pub(crate) fn of(&self, kind: RawSocketKind) -> Arc<KindSpares> {
        let mut kinds = self.kinds.lock();
        if let Some((_, spares)) = kinds.iter().find(|(k, _)| *k == kind) {
            return spares.clone();
        }
        let spares = Arc::new(KindSpares::default());
        kinds.push((kind, spares.clone()));
        spares
    }
}

/// Spares of one kind, with the lock that makes refills single-flight.
#[derive(Default)]
pub(crate) struct KindSpares {
    waiting: Mutex<Waiting>,
    /// Held by the one caller that refills; the others queue here.
    pub(crate) refill: tokio::sync::Mutex<()>,
    /// Callers queued for a refill (including the refiller).
    queued: AtomicUsize,
}

/// The sockets waiting, and the budget they were counted against.
#[derive(Default)]
struct Waiting {
    sockets: Vec<Socket>,
    budget: Option<Arc<SpareBudget>>,
}

impl KindSpares {
    pub(crate) fn take(&self) -> Option<Socket> {
        let mut waiting = self.waiting.lock();
        let socket = waiting.sockets.pop()?;
        if let Some(budget) = &waiting.budget {
            budget.release(1);
        }
        Some(socket)
    }

    /// Keeps `sockets`: `reserved` of them were counted against `budget` by
    /// [`Self::plan_refill`]; the rest only while the budget and [`MAX_SPARES`] have room (the
    /// others close). Room reserved for sockets that did not come is given back.
    pub(crate) fn keep(&self, sockets: Vec<Socket>, budget: &Arc<SpareBudget>, reserved: usize) {
        let mut waiting = self.waiting.lock();
        let room = MAX_SPARES.saturating_sub(waiting.sockets.len());
        let counted = reserved.min(sockets.len()).min(room);
        budget.release(reserved - counted);
        let extra = budget.reserve(sockets.len().min(room) - counted);
        // A handle counts against one budget for its whole life (one factory per process).
        if waiting.budget.is_none() {
            waiting.budget = Some(budget.clone());
        }
        waiting
            .sockets
            .extend(sockets.into_iter().take(counted + extra));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.lock().sockets.len()
    }

    /// Counts the caller as queued until the guard drops (also when its future is cancelled).
    pub(crate) fn queue(self: &Arc<Self>) -> Queued {
        self.queued.fetch_add(1, Ordering::Relaxed);
        Queued {
            spares: self.clone(),
        }
    }

    /// The batch a refiller should make, with the budget reserved for the spares it will keep
    /// BEFORE the hop: concurrent refills of many namespaces then cannot together make more
    /// spares than the budget (each would otherwise see the same room). One socket per queued
    /// caller is made whatever the budget (those are probes about to run, not idle spares);
    /// beyond that, spares up to [`SPARE_BATCH`] only as far as the budget reserves them.
    pub(crate) fn plan_refill(&self, budget: &SpareBudget) -> Refill {
        let queued = self.queued.load(Ordering::Relaxed).clamp(1, MAX_SPARES);
        let room = MAX_SPARES.saturating_sub(self.waiting.lock().sockets.len());
        let reserved = budget.reserve((SPARE_BATCH - 1).max(queued - 1).min(room));
        Refill {
            batch: (1 + reserved).max(queued),
            reserved,
        }
    }
}

/// What [`KindSpares::plan_refill`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refill {
    /// Sockets to make in one hop.
    pub(crate) batch: usize,
    /// Spares already counted against the budget; pass to [`KindSpares::keep`], or give back
    /// with [`SpareBudget::give_back`] when the hop fails.
    pub(crate) reserved: usize,
}

impl Drop for KindSpares {
    fn drop(&mut self) {
        let waiting = self.waiting.get_mut();
        if let Some(budget) = &waiting.budget {
            budget.release(waiting.sockets.len());
        }
    }
}

/// A caller waiting for spares; see [`KindSpares::queue`].
pub(crate) struct Queued {
    spares: Arc<KindSpares>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.spares.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

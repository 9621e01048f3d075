//! Spare sockets kept in a [`super::NetnsHandle`], per socket kind, for
//! [`super::SocketFactory::pooled_socket`].
//!
//! Data flow: a caller takes a spare; when none is left it queues on the kind's refill lock, so
//! a burst of callers triggers ONE hop whose batch is as large as the queue (at least
//! [`SPARE_BATCH`], at most [`MAX_SPARES`]); every queued caller then finds a spare. Spares are
//! unbound, unconnected sockets: invisible to the pod, holding no port. They close when the
//! handle's last clone drops (a pod that goes away releases them with its namespace).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use socket2::Socket;

use super::sys::RawSocketKind;

/// Sockets made per hop when no spare is waiting and nobody else is queued.
pub const SPARE_BATCH: usize = 16;
/// At most this many spares wait per handle and socket kind (and the largest refill batch).
pub const MAX_SPARES: usize = 64;

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
    sockets: Mutex<Vec<Socket>>,
    /// Held by the one caller that refills; the others queue here.
    pub(crate) refill: tokio::sync::Mutex<()>,
    /// Callers queued for a refill (including the refiller).
    queued: AtomicUsize,
}

impl KindSpares {
    pub(crate) fn take(&self) -> Option<Socket> {
        self.sockets.lock().pop()
    }

    /// Keeps `sockets`, up to [`MAX_SPARES`] waiting (the rest close).
    pub(crate) fn keep(&self, sockets: Vec<Socket>) {
        let mut waiting = self.sockets.lock();
        let room = MAX_SPARES.saturating_sub(waiting.len());
        waiting.extend(sockets.into_iter().take(room));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sockets.lock().len()
    }

    /// Counts the caller as queued until the guard drops (also when its future is cancelled).
    pub(crate) fn queue(self: &Arc<Self>) -> Queued {
        self.queued.fetch_add(1, Ordering::Relaxed);
        Queued {
            spares: self.clone(),
        }
    }

    /// The batch a refiller should make: one per queued caller, within the bounds.
    pub(crate) fn refill_batch(&self) -> usize {
        self.queued
            .load(Ordering::Relaxed)
            .clamp(SPARE_BATCH, MAX_SPARES)
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

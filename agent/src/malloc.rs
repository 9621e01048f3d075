//! glibc malloc, tuned for a long-running agent with a small, steady heap.
//!
//! Measured on the agent at 9,900 pairs (`make bench-agent-rss`): about 13 MB is live, but
//! with glibc's defaults the process holds 60 MB of anonymous memory. Two causes:
//!
//! - **Arenas.** glibc gives each thread that contends for the heap an arena of its own (up to
//!   8 per core); probes finish on whichever worker or blocking thread is free, so the pair
//!   state is spread over many arenas, each keeping its own free memory. [`limit_arenas`]
//!   keeps one, shared by every thread: the agent's allocation rate is low (0.07 cores at
//!   10,000 pairs), so the lock costs nothing measurable.
//! - **Freed memory inside the heap.** A round's transient allocations (probe buffers, the
//!   diagnoses, a scrape's encoding) are freed, but glibc only returns memory at the top of
//!   the heap. [`trim`] (`malloc_trim`) gives the free pages anywhere in the heap back;
//!   [`spawn_trim`] runs it every [`TRIM_EVERY`].
//!
//! On other C libraries (musl) both are no-ops.

use std::time::Duration;

use tokio::sync::watch;

/// How often freed heap pages are given back to the kernel.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// One malloc arena for every thread, unless the environment sets `MALLOC_ARENA_MAX` (the
/// operator's choice wins). Call before the runtime's threads start.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; M_ARENA_MAX takes any positive
    // count and is honoured for arenas created afterwards.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the heap's free pages back to the kernel; true when some were.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks and only releases free pages.
    #[allow(unsafe_code)]
    unsafe {
        return libc::malloc_trim(0) == 1;
    }
    #[allow(unreachable_code)]
    false
}

/// Runs [`trim`] every [`TRIM_EVERY`] until `stop` turns true.
pub async fn trim_until(mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // malloc_trim walks the heap (about a millisecond for tens of MB): off the
                // async workers.
                let _ = tokio::task::spawn_blocking(trim).await;
            }
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_gives_back_the_pages_a_freed_burst_left_inside_the_heap() {
        limit_arenas();
        // 20,000 chunks of 512 bytes, every 1,000th kept: the ones between are ~0.5 MB runs of
        // free memory inside the heap, which free() alone never returns.
        let burst: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 512]).collect();
        let kept: Vec<Vec<u8>> = burst.into_iter().step_by(1000).collect();
        let released = trim();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released, "malloc_trim released nothing");
        } else {
            assert!(!released);
        }
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, c)| c[0] == (i * 1000) as u8)
        );
    }
}

//! [`PairSpacing`]: keeps probes of one (source netns, destination IP) pair at least an
//! interval apart.
//!
//! Why: responders rate-limit ICMP errors per destination (`icmp_ratelimit` 1000 ms, a burst
//! of ~6, then 1/s). Probing one pair faster turns "refused"/"rejected by policy" into silence.
//! The scheduler asks `reserve(pair)` for the delay before its next probe of that pair.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Default minimum interval between probes of one pair (`docs/reference/probe-facts.md`).
pub const DEFAULT_PAIR_SPACING: Duration = Duration::from_secs(1);
/// Above this many remembered pairs, entries whose slot has passed are pruned.
const PRUNE_ABOVE: usize = 4096;

/// A pair: the source's netns inode and the destination address.
pub type Pair = (u64, IpAddr);

#[derive(Debug)]
pub struct PairSpacing {
    interval: Duration,
    next_slot: Mutex<HashMap<Pair, Instant>>,
}

impl Default for PairSpacing {
    fn default() -> Self {
        Self::new(DEFAULT_PAIR_SPACING)
    }
}

impl PairSpacing {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_slot: Mutex::new(HashMap::new()),
        }
    }

    /// Books the next slot for `pair` and returns how long to wait before using it (zero when
    /// the pair is idle). Concurrent callers get successive slots.
    pub fn reserve(&self, pair: Pair) -> Duration {
        self.reserve_at(pair, Instant::now())
    }

    /// Waits for the next slot of `pair`.
    pub async fn wait(&self, pair: Pair) {
        let delay = self.reserve(pair);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn reserve_at(&self, pair: Pair, now: Instant) -> Duration {
        let mut slots = self.next_slot.lock();
        if slots.len() > PRUNE_ABOVE {
            slots.retain(|_, slot| *slot > now);
        }
        let slot = slots
            .get(&pair)
            .copied()
            .filter(|s| *s > now)
            .unwrap_or(now);
        slots.insert(pair, slot + self.interval);
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn successive_probes_of_a_pair_are_spaced_and_other_pairs_are_free() {
        let spacing = PairSpacing::new(Duration::from_secs(1));
        let a = (1, IpAddr::V4(Ipv4Addr::new(10, 244, 1, 2)));
        let b = (1, IpAddr::V4(Ipv4Addr::new(10, 244, 1, 3)));
        let t0 = Instant::now();
        assert_eq!(spacing.reserve_at(a, t0), Duration::ZERO);
        assert_eq!(spacing.reserve_at(a, t0), Duration::from_secs(1));
        assert_eq!(spacing.reserve_at(a, t0), Duration::from_secs(2));
        assert_eq!(spacing.reserve_at(b, t0), Duration::ZERO);
        // Long idle: no debt carried over.
        assert_eq!(
            spacing.reserve_at(a, t0 + Duration::from_secs(10)),
            Duration::ZERO
        );
    }
}

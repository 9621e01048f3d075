//! How a watch retries: tuned for a node agent, of which a cluster runs thousands.
//!
//! - **Capped.** Exponential from [`BASE`], doubling, at most [`CAP`]: a returning API server
//!   is seen within a few seconds, not the 30-60 s kube-runtime's default reaches after a
//!   minute of failures.
//! - **Jittered.** Each delay is drawn from [half, all] of the exponential step ("equal
//!   jitter"), so agents that failed together do not come back together (`docs/scale.md`).
//! - **Reset when served.** Any event the watch delivers resets it; the next failure starts
//!   again from [`BASE`].
//! - **410 Gone is not a failure to back off from.** The watcher relists at once (the
//!   resourceVersion expired: the API answered), see `is_gone`.

use std::time::Duration;

/// The first delay.
pub const BASE: Duration = Duration::from_millis(250);
/// The largest delay.
pub const CAP: Duration = Duration::from_secs(5);

/// The first delay of a write's retries (status patches, Events).
pub const WRITE_BASE: Duration = Duration::from_secs(1);
/// The largest delay between a write's retries.
pub const WRITE_CAP: Duration = Duration::from_secs(30);

/// Retry delays: exponential from a base to a cap, with equal jitter.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
    /// xorshift64 state: the jitter needs no cryptographic randomness.
    state: u64,
}

impl WatchBackoff {
    /// A watch's backoff ([`BASE`] to [`CAP`]) whose jitter starts from `seed` (different per
    /// watch and per process).
    pub fn new(seed: u64) -> Self {
        Self::between(seed, BASE, CAP)
    }

    /// A write's backoff ([`WRITE_BASE`] to [`WRITE_CAP`]): writes that failed during an
    /// outage come back spread out, never as a storm.
    pub fn for_writes(seed: u64) -> Self {
        Self::between(seed, WRITE_BASE, WRITE_CAP)
    }

    fn between(seed: u64, base: Duration, cap: Duration) -> Self {
        Self {
            attempt: 0,
            base,
            cap,
            state: seed | 1,
        }
    }

    /// A seed that differs between processes, watches and starts.
    pub fn seed(salt: u64) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        now ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let spread = half.as_micros() as u64;
        half + Duration::from_micros(if spread == 0 {
            0
        } else {
            self.random() % (spread + 1)
        })
    }

    /// The watch was served again: the next failure starts from [`BASE`].
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}

/// Whether a failed write is worth retrying: the API was unreachable, overloaded or failing
/// (5xx, 429, a timeout), not refusing this write (403, 404, 422: retrying changes nothing).
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429 || status.code == 408,
        _ => true,
    }
}

/// Whether a watch error is the API saying the resourceVersion is gone (410): the watcher
/// relists on its next poll, and that must not wait.
pub fn is_gone(error: &kube::runtime::watcher::Error) -> bool {
    matches!(error, kube::runtime::watcher::Error::WatchError(status) if status.code == 410)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let mut backoff = WatchBackoff::new(42);
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        // Each delay is within [half, all] of its step: 250 ms, 500 ms, 1 s, 2 s, 4 s, then 5 s.
        let steps = [
            250, 500, 1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000, 5000, 5000,
        ];
        for (delay, step) in delays.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(
                *delay >= step / 2 && *delay <= step,
                "{delay:?} for a step of {step:?}"
            );
        }
        assert!(delays.iter().all(|d| *d <= CAP));
        backoff.reset();
        assert!(backoff.next_delay() <= BASE);
    }

    #[test]
    fn agents_that_failed_together_spread_out() {
        // 1,000 agents at their sixth attempt (the 5 s cap): their delays cover the window.
        let delays: Vec<u128> = (0..1000u64)
            .map(|agent| {
                let mut backoff = WatchBackoff::new(WatchBackoff::seed(agent));
                (0..5).for_each(|_| {
                    backoff.next_delay();
                });
                backoff.next_delay().as_millis()
            })
            .collect();
        let (min, max) = (
            delays.iter().min().copied().unwrap_or(0),
            delays.iter().max().copied().unwrap_or(0),
        );
        assert!(min < 2700 && max > 4800, "{min}..{max} ms");
        // Spread evenly: each quarter second of the window holds about a tenth of them.
        for bucket in 0..10u128 {
            let start = 2500 + bucket * 250;
            let n = delays
                .iter()
                .filter(|d| (start..start + 250).contains(*d))
                .count();
            assert!((50..150).contains(&n), "{n} agents retry at {start} ms");
        }
    }

    #[test]
    fn writes_back_off_from_a_second_to_half_a_minute() {
        let mut backoff = WatchBackoff::for_writes(7);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= WRITE_BASE / 2 && delays[0] <= WRITE_BASE);
        assert!(delays.iter().all(|d| *d <= WRITE_CAP));
        assert!(delays[7] >= WRITE_CAP / 2);
    }

    #[test]
    fn transient_write_errors() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        for (code, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (403, false),
            (404, false),
            (422, false),
        ] {
            assert_eq!(is_transient(&api(code)), transient, "{code}");
        }
    }

    #[test]
    fn gone_is_410_only() {
        let status = |code| {
            kube::runtime::watcher::Error::WatchError(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert!(is_gone(&status(410)));
        assert!(!is_gone(&status(500)));
        assert!(!is_gone(&kube::runtime::watcher::Error::NoResourceVersion));
    }
}

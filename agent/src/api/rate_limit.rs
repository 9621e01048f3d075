//! A per-caller token bucket: each caller (an authenticated username) may make `burst`
//! requests at once and then one every `window / burst`. Pure: the caller passes `now`.
//!
//! The table of buckets stays small: when it reaches [`MAX_TRACKED_CALLERS`], buckets that
//! have refilled completely (callers idle for a whole window) are dropped, since a fresh bucket
//! is the same thing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buckets kept before idle ones are pruned.
pub const MAX_TRACKED_CALLERS: usize = 4096;

/// How many requests a caller may make: `burst` at once, refilled evenly over `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub window: Duration,
}

impl Default for RateLimit {
    /// 5 requests per 10 seconds.
    fn default() -> Self {
        Self {
            burst: 5,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by caller.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token from `caller`'s bucket, or says how long until one is available.
    pub fn check(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let per_second = burst / self.limit.window.as_secs_f64().max(f64::EPSILON);
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED_CALLERS && !buckets.contains_key(caller) {
            let window = self.limit.window;
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.updated) < window);
        }
        let bucket = buckets.entry(caller.to_string()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    /// How many callers have a bucket.
    pub fn tracked_callers(&self) -> usize {
        self.buckets.lock().len()
    }
}

#[cfg(test)]
mod tests;

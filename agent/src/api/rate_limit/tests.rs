use std::time::{Duration, Instant};

use super::*;

fn limiter() -> RateLimiter {
    RateLimiter::new(RateLimit {
        burst: 5,
        window: Duration::from_secs(10),
    })
}

#[test]
fn a_burst_then_one_every_window_over_burst() {
    let limiter = limiter();
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(limiter.check("alice", start), Ok(()));
    }
    let retry = limiter
        .check("alice", start)
        .expect_err("sixth request is limited");
    assert_eq!(retry, Duration::from_secs(2));
    assert!(
        limiter
            .check("alice", start + Duration::from_millis(1999))
            .is_err()
    );
    let refilled = start + Duration::from_millis(2001);
    assert_eq!(limiter.check("alice", refilled), Ok(()));
    assert!(limiter.check("alice", refilled).is_err());
}

#[test]
fn callers_have_their_own_buckets() {
    let limiter = limiter();
    let now = Instant::now();
    for _ in 0..5 {
        limiter.check("alice", now).expect("alice within burst");
    }
    assert!(limiter.check("alice", now).is_err());
    assert_eq!(limiter.check("bob", now), Ok(()));
}

#[test]
fn a_long_pause_refills_only_up_to_the_burst() {
    let limiter = limiter();
    let start = Instant::now();
    limiter.check("alice", start).expect("first");
    let later = start + Duration::from_secs(3600);
    for _ in 0..5 {
        limiter.check("alice", later).expect("refilled");
    }
    assert!(limiter.check("alice", later).is_err());
}

#[test]
fn idle_callers_are_pruned_when_the_table_is_full() {
    let limiter = limiter();
    let start = Instant::now();
    for caller in 0..MAX_TRACKED_CALLERS {
        limiter
            .check(&format!("user-{caller}"), start)
            .expect("fresh");
    }
    assert_eq!(limiter.tracked_callers(), MAX_TRACKED_CALLERS);
    limiter
        .check("late", start + Duration::from_secs(11))
        .expect("fresh");
    assert_eq!(limiter.tracked_callers(), 1);
}

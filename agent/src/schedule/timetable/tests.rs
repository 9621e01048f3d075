//! The timetable: phase spread and jitter bounds, concurrency, path spacing, re-probe on
//! change and the change-to-effect measurement. Every time is `t0 + offset`.

use std::time::{Duration, Instant};

use super::*;
use crate::cluster::SpecRef;
use crate::cluster::model::ObjectRef;
use crate::schedule::fixtures::{key, pair, pod_target};
use crate::schedule::plan::{Plan, Skipped};

const SECOND: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn plan_of(pairs: Vec<Pair>, interval: Duration) -> Plan {
    Plan {
        spec: SpecRef::Namespaced(key("shop/spec")),
        interval,
        timeout: SECOND,
        expect: probe_spec::Expectation::Allow,
        candidates: pairs.len(),
        sampled: pairs.len(),
        pairs,
        skipped: Skipped::default(),
        narrowed: None,
    }
}

/// `n` pairs from distinct sources to distinct destinations (no spacing interplay).
fn independent_pairs(n: usize) -> Vec<Pair> {
    (0..n)
        .map(|i| {
            pair(
                &format!("shop/client-{i}"),
                pod_target(
                    &format!("shop/server-{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    80,
                ),
            )
        })
        .collect()
}

fn timetable(t0: Instant, pairs: Vec<Pair>, interval: Duration) -> (Timetable, Vec<PairId>) {
    let mut tt = Timetable::new(t0, TimetableConfig::default());
    let plan = plan_of(pairs, interval);
    let changes = tt.sync(&plan, t0);
    (tt, changes.added)
}

#[test]
fn jitter_stays_within_ten_percent_and_is_deterministic() {
    let t0 = Instant::now();
    let (tt, ids) = timetable(t0, independent_pairs(200), Duration::from_secs(10));
    let (other, _) = timetable(t0, independent_pairs(200), Duration::from_secs(10));
    let interval = Duration::from_secs(10);
    let bound = ms(1000);
    let mut offsets = std::collections::BTreeSet::new();
    for &id in &ids {
        for round in [0u64, 1, 2, 17, 1000] {
            let slot = tt.slot(id, interval, round);
            let nominal = tt.nominal(id, interval, round);
            let off = if slot >= nominal {
                slot - nominal
            } else {
                nominal - slot
            };
            assert!(off <= bound, "round {round}: jitter {off:?} beyond ±10%");
            offsets.insert(if slot >= nominal {
                (slot - nominal).as_micros() as i128
            } else {
                -((nominal - slot).as_micros() as i128)
            });
            assert_eq!(slot, other.slot(id, interval, round), "not deterministic");
            // Consecutive rounds stay an interval apart, give or take twice the jitter.
            let gap = tt.slot(id, interval, round + 1) - slot;
            assert!(
                gap >= interval - 2 * bound && gap <= interval + 2 * bound,
                "gap {gap:?}"
            );
        }
    }
    // It is jitter, not a constant: both signs and many values.
    assert!(offsets.iter().any(|o| *o < 0) && offsets.iter().any(|o| *o > 0));
    assert!(offsets.len() > 900);
}

#[test]
fn first_runs_spread_over_one_interval() {
    let t0 = Instant::now();
    let interval = Duration::from_secs(10);
    let (tt, ids) = timetable(t0, independent_pairs(200), interval);
    let mut per_second = [0usize; 13];
    for id in &ids {
        let due = tt.due_at(*id).unwrap() - t0;
        assert!(
            due > Duration::ZERO && due <= interval + interval / 5,
            "{due:?}"
        );
        per_second[due.as_secs() as usize] += 1;
    }
    // 200 pairs over ~10 s: no second holds more than a small multiple of its share.
    assert!(per_second.iter().all(|n| *n <= 45), "{per_second:?}");
    assert!(per_second[..10].iter().all(|n| *n >= 5), "{per_second:?}");
}

#[test]
fn ready_never_exceeds_the_free_slots() {
    let t0 = Instant::now();
    let (mut tt, ids) = timetable(t0, independent_pairs(10), Duration::from_secs(10));
    let later = t0 + Duration::from_secs(13); // everything is due
    // (limit, already in flight before the call, expected count)
    let steps: &[(usize, usize)] = &[(3, 3), (3, 0), (5, 2), (5, 0), (0, 0)];
    let mut running = Vec::new();
    for &(limit, want) in steps {
        let got = tt.ready(later, limit);
        assert_eq!(
            got.len(),
            want,
            "limit {limit} with {} in flight",
            tt.in_flight()
        );
        assert!(tt.in_flight() <= limit.max(running.len()));
        running.extend(got);
    }
    assert_eq!(tt.in_flight(), 5);
    // Completing frees exactly one slot.
    tt.complete(running[0], later);
    assert_eq!(tt.ready(later, 5).len(), 1);
    assert_eq!(tt.ready(later, 5).len(), 0);
    // The completed pair is back on its grid, after `later`.
    let due = tt.due_at(running[0]).unwrap();
    assert!(due > later && due <= later + Duration::from_secs(12));
    assert_eq!(ids.len(), 10);
}

#[test]
fn a_path_is_probed_at_most_once_per_second() {
    let t0 = Instant::now();
    // Three ports on one destination pod from one source, one other destination.
    let pairs = vec![
        pair("shop/a", pod_target("shop/b", "10.0.0.2", 80)),
        pair("shop/a", pod_target("shop/b", "10.0.0.2", 81)),
        pair("shop/a", pod_target("shop/b", "10.0.0.2", 82)),
        pair("shop/a", pod_target("shop/c", "10.0.0.3", 80)),
        pair("shop/z", pod_target("shop/b", "10.0.0.2", 80)),
    ];
    let (mut tt, _) = timetable(t0, pairs, Duration::from_secs(30));
    let start = t0 + Duration::from_secs(40);
    // (offset from start, how many start then)
    // Every pair's first slot has passed: all are due at `start`; after a run the next one is
    // at least half an interval away.
    let steps: &[(u64, usize)] = &[
        (0, 3),
        (500, 0),
        (999, 0),
        (1000, 1),
        (1500, 0),
        (2000, 1),
        (3000, 0),
        (14_000, 0),
    ];
    let mut started = Vec::new();
    for &(offset, want) in steps {
        let now = start + ms(offset);
        let got = tt.ready(now, 100);
        assert_eq!(got.len(), want, "at +{offset} ms");
        for id in &got {
            started.push((now, *id));
            tt.complete(*id, now);
        }
    }
    // Per path, starts are >= 1 s apart.
    for (i, (t, id)) in started.iter().enumerate() {
        for (u, other) in &started[i + 1..] {
            let same_path = tt.pair(*id).unwrap().from == tt.pair(*other).unwrap().from
                && tt.pair(*id).unwrap().target.ip() == tt.pair(*other).unwrap().target.ip();
            if same_path {
                assert!(*u - *t >= SECOND, "{id} and {other} {:?} apart", *u - *t);
            }
        }
    }
    assert_eq!(started.len(), 5);
}

#[test]
fn next_wakeup_points_at_the_next_due_or_free_path() {
    let t0 = Instant::now();
    let pairs = vec![
        pair("shop/a", pod_target("shop/b", "10.0.0.2", 80)),
        pair("shop/a", pod_target("shop/b", "10.0.0.2", 81)),
    ];
    let (mut tt, ids) = timetable(t0, pairs, Duration::from_secs(30));
    let first_due = ids.iter().map(|id| tt.due_at(*id).unwrap()).min().unwrap();
    assert_eq!(tt.next_wakeup(), Some(first_due));
    let now = t0 + Duration::from_secs(60);
    let started = tt.ready(now, 10);
    assert_eq!(started.len(), 1);
    // The other port is due but its path is busy for a second.
    assert_eq!(tt.next_wakeup(), Some(now + SECOND));
}

#[test]
fn sync_adds_keeps_and_removes_and_a_removed_probe_keeps_its_slot() {
    let t0 = Instant::now();
    let all = independent_pairs(4);
    let (mut tt, added) = timetable(t0, all.clone(), Duration::from_secs(10));
    assert_eq!(added.len(), 4);
    let now = t0 + Duration::from_secs(20);
    let running = tt.ready(now, 1);
    assert_eq!(running.len(), 1);
    let keep: Vec<Pair> = all
        .iter()
        .filter(|p| p.id != running[0])
        .take(2)
        .cloned()
        .collect();
    let due_before: Vec<Instant> = keep.iter().map(|p| tt.due_at(p.id).unwrap()).collect();
    let changes = tt.sync(&plan_of(keep.clone(), Duration::from_secs(10)), now);
    assert!(changes.added.is_empty());
    assert_eq!(changes.removed.len(), 2);
    assert!(changes.removed.contains(&running[0]));
    assert_eq!(tt.len(), 2);
    // Kept pairs keep their schedule.
    let due_after: Vec<Instant> = keep.iter().map(|p| tt.due_at(p.id).unwrap()).collect();
    assert_eq!(due_before, due_after);
    // The removed pair's probe still holds the only slot until it completes.
    assert!(tt.ready(now + Duration::from_secs(30), 1).is_empty());
    tt.complete(running[0], now);
    assert_eq!(
        tt.len(),
        2,
        "completing a removed pair does not bring it back"
    );
    assert_eq!(tt.ready(now + Duration::from_secs(30), 1).len(), 1);
    // Another spec's pairs are untouched by this spec's sync; remove_spec clears them.
    assert_eq!(
        tt.remove_spec(&SpecRef::Namespaced(ObjectRef::new("other", "spec"))),
        vec![]
    );
    assert_eq!(tt.remove_spec(&SpecRef::Cluster("spec".into())), vec![]);
    assert_eq!(
        tt.remove_spec(&SpecRef::Namespaced(key("shop/spec"))).len(),
        2
    );
    assert!(tt.is_empty());
}

#[test]
fn a_changed_interval_moves_the_pair_to_the_new_grid() {
    let t0 = Instant::now();
    let pairs = independent_pairs(1);
    let (mut tt, ids) = timetable(t0, pairs.clone(), Duration::from_secs(300));
    let now = t0 + Duration::from_secs(1);
    tt.sync(&plan_of(pairs, Duration::from_secs(5)), now);
    let due = tt.due_at(ids[0]).unwrap();
    assert!(
        due > now && due <= now + Duration::from_secs(6),
        "{:?}",
        due - now
    );
}

#[test]
fn change_to_effect_is_measured_once_from_the_first_observation_that_reflects_it() {
    let t0 = Instant::now();
    let interval = Duration::from_secs(30);
    let (mut tt, ids) = timetable(t0, independent_pairs(2), interval);
    let (a, b) = (ids[0], ids[1]);
    // The change comes before either pair's first slot.
    let change = t0 + ms(1);
    tt.mark_due_now(&[a], change);
    assert_eq!(tt.due_at(a), Some(change));
    assert!(tt.change_pending(a) && !tt.change_pending(b));

    // Re-probed at once: the first ready call after the change returns it (b is not due).
    let started = change + ms(20);
    assert_eq!(tt.ready(started, 10), vec![a]);
    // The verdict did not change yet (the CNI is still programming): no measurement, and a
    // quick follow-up instead of waiting a whole interval.
    assert_eq!(tt.record_observation(a, started + ms(5), false), None);
    tt.complete(a, started + ms(5));
    assert_eq!(tt.due_at(a), Some(started + ms(5) + SECOND));
    // Follow-ups back off: 1 s, 2 s, 4 s ...
    let mut now = started + ms(5) + SECOND;
    for backoff in [2u64, 4] {
        assert_eq!(tt.ready(now, 10), vec![a]);
        assert_eq!(tt.record_observation(a, now, false), None);
        tt.complete(a, now);
        assert_eq!(tt.due_at(a), Some(now + Duration::from_secs(backoff)));
        now += Duration::from_secs(backoff);
    }
    // Now it reflects the change: measured from the change to this observation, once.
    assert_eq!(tt.ready(now, 10), vec![a]);
    let effect = tt.record_observation(a, now + ms(3), true);
    assert_eq!(effect, Some(now + ms(3) - change));
    tt.complete(a, now + ms(3));
    assert!(!tt.change_pending(a));
    assert_eq!(
        tt.record_observation(a, now + ms(3), true),
        None,
        "measured twice"
    );
    // ... and back on its regular grid.
    let due = tt.due_at(a).unwrap();
    assert!(
        due - (now + ms(3)) > Duration::from_secs(20),
        "{:?}",
        due - now
    );
    // A pair without a pending change never measures anything.
    assert_eq!(tt.record_observation(b, now, true), None);
}

#[test]
fn a_probe_in_flight_at_the_change_does_not_count_and_runs_again() {
    let t0 = Instant::now();
    let (mut tt, ids) = timetable(t0, independent_pairs(1), Duration::from_secs(30));
    let a = ids[0];
    let start = t0 + Duration::from_secs(40);
    assert_eq!(tt.ready(start, 1), vec![a]);
    let change = start + ms(100);
    tt.mark_due_now(&[a], change);
    // The old probe ends after the change with a new verdict: it started before, so no.
    let done = start + ms(300);
    assert_eq!(tt.record_observation(a, done, true), None);
    tt.complete(a, done);
    assert_eq!(tt.due_at(a), Some(done), "re-run at once");
    let again = done + Duration::from_secs(1);
    assert_eq!(tt.ready(again, 1), vec![a]);
    assert_eq!(
        tt.record_observation(a, again + ms(2), true),
        Some(again + ms(2) - change)
    );
}

#[test]
fn record_before_complete_or_after_gives_the_same_measurement() {
    let t0 = Instant::now();
    for record_first in [true, false] {
        let (mut tt, ids) = timetable(t0, independent_pairs(1), Duration::from_secs(30));
        let a = ids[0];
        let change = t0 + Duration::from_secs(50);
        tt.mark_due_now(&[a], change);
        let start = change + ms(10);
        assert_eq!(tt.ready(start, 1), vec![a]);
        let done = start + ms(40);
        let effect = if record_first {
            let e = tt.record_observation(a, done, true);
            tt.complete(a, done);
            e
        } else {
            tt.complete(a, done);
            tt.record_observation(a, done, true)
        };
        assert_eq!(effect, Some(ms(50)), "record_first {record_first}");
        let due = tt.due_at(a).unwrap();
        assert!(
            due - done > Duration::from_secs(20),
            "record_first {record_first}: follow-up left behind"
        );
    }
}

#[test]
fn a_change_without_effect_expires_after_the_window() {
    let t0 = Instant::now();
    let (mut tt, ids) = timetable(t0, independent_pairs(1), Duration::from_secs(30));
    let a = ids[0];
    let change = t0 + Duration::from_secs(10);
    tt.mark_due_now(&[a], change);
    assert_eq!(tt.ready(change, 1), vec![a]);
    let late = change + tt.config().effect_window;
    assert_eq!(tt.record_observation(a, late, false), None);
    assert!(!tt.change_pending(a));
    tt.complete(a, late);
    assert_eq!(tt.record_observation(a, late, true), None);
}

#[test]
fn marking_unknown_or_later_due_pairs() {
    let t0 = Instant::now();
    let (mut tt, ids) = timetable(t0, independent_pairs(1), Duration::from_secs(30));
    let due = tt.due_at(ids[0]).unwrap();
    // A "change" stamped after the pair is due anyway does not delay it.
    tt.mark_due_now(&ids, due + Duration::from_secs(5));
    assert_eq!(tt.due_at(ids[0]), Some(due));
    // Unknown ids are ignored.
    tt.mark_due_now(&[PairId(42)], t0);
    assert_eq!(tt.len(), 1);
}

#[test]
fn immediate_first_probe_is_due_at_once_then_follows_the_grid() {
    let t0 = Instant::now();
    let interval = Duration::from_secs(10);
    let config = TimetableConfig {
        first_probe: FirstProbe::Immediately,
        ..TimetableConfig::default()
    };
    let mut tt = Timetable::new(t0, config);
    let added = tt.sync(&plan_of(independent_pairs(20), interval), t0).added;
    let started = tt.ready(t0, 100);
    assert_eq!(started.len(), 20, "every new pair starts at once");
    for id in &added {
        tt.complete(*id, t0 + ms(5));
        let next = tt.due_at(*id).expect("scheduled again");
        assert!(
            next >= t0 + interval / 2 && next <= t0 + interval * 2,
            "after the first probe, the grid: {:?}",
            next - t0
        );
    }
    // On the grid (the default), new pairs spread over the interval instead.
    let (mut grid, _) = timetable(t0, independent_pairs(20), interval);
    assert!(grid.ready(t0, 100).len() < 20);
}

//! The [`Timetable`]: when each pair is due, under a global concurrency limit and a minimum
//! spacing per (source pod, destination) path, plus change-triggered re-probes and the
//! change-to-effect measurement. Pure: the caller passes every `now`.
//!
//! Due times sit on a per-pair grid: `origin + phase + k * interval + jitter(k)`, where
//! `phase = id mod interval` spreads the pairs evenly over one interval (they never fire
//! together) and `jitter(k)` is a stable hash of (id, k) within ±10% of the interval (a
//! 0..20% offset on a grid shifted by 10%, so no time lies before `origin`). Grid slots never
//! drift: a probe that ran late does not push later rounds; the next run after a completion is
//! the first slot at least half an interval later, so missed rounds are skipped, not replayed.
//!
//! A change ([`Timetable::mark_due_now`]) makes a pair due at the change time and remembers
//! it; [`Timetable::record_observation`] returns the change-to-effect time at the first
//! observation that started after the change and changed the verdict. Until then the pair is
//! re-probed on a short back-off (spacing, 2x, 4x, ... up to the interval), so the measurement
//! is not quantised to the interval; after `effect_window` without effect the change is
//! dropped (it did not affect this pair).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::plan::Plan;
use crate::pair::hash::StableHasher;
use crate::pair::{Pair, PairId, PairTarget};

/// The shortest interval the grid works with (guards against a zero interval).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimetableConfig {
    /// Minimum time between probe starts on one (source pod, destination) path: responders
    /// rate-limit ICMP errors to ~1/s per destination (`docs/reference/probe-facts.md`).
    pub spacing: Duration,
    /// Jitter bound, in percent of the interval, either way.
    pub jitter_percent: u8,
    /// How long after a change an observation may still be attributed to it.
    pub effect_window: Duration,
    /// When a new pair is first due.
    pub first_probe: FirstProbe,
}

/// When a pair that enters the timetable is first probed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FirstProbe {
    /// On its grid slot: an agent starting with many pairs spreads them over one interval
    /// instead of probing them all at once.
    #[default]
    OnGrid,
    /// At once (still under the spacing and concurrency limits), then on its grid: the demo
    /// shows its first picture without waiting an interval.
    Immediately,
}

impl Default for TimetableConfig {
    fn default() -> Self {
        Self {
            spacing: Duration::from_secs(1),
            jitter_percent: 10,
            effect_window: Duration::from_secs(300),
            first_probe: FirstProbe::OnGrid,
        }
    }
}

/// What a [`Timetable::sync`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncChanges {
    pub added: Vec<PairId>,
    /// Pairs that disappeared: their metric series and status entries go too.
    pub removed: Vec<PairId>,
}

#[derive(Clone, Debug)]
struct Entry {
    pair: Pair,
    interval: Duration,
    next_due: Instant,
    /// When the latest probe of this pair started.
    started_at: Option<Instant>,
    /// A change not yet reflected by an observation.
    change: Option<PendingChange>,
    /// A change arrived while a probe was in flight: run again as soon as it completes.
    rerun_on_complete: bool,
}

#[derive(Clone, Copy, Debug)]
struct PendingChange {
    at: Instant,
    /// Observations after the change that did not reflect it (drives the back-off).
    followups: u32,
}

/// Due times, in-flight probes and path spacing of this node's pairs.
#[derive(Debug)]
pub struct Timetable {
    config: TimetableConfig,
    origin: Instant,
    /// Boxed: a map's spare slots then cost a pointer each, not a whole entry.
    entries: HashMap<PairId, Box<Entry>>,
    /// Pairs not in flight, by due time.
    due: BTreeSet<(Instant, PairId)>,
    /// Probes running now; kept apart from `entries` so a pair removed mid-probe still holds
    /// its slot until `complete`.
    in_flight: HashSet<PairId>,
    /// Last probe start per path (hash of source pod and destination).
    last_start: HashMap<u64, Instant>,
}

impl Timetable {
    /// `origin` anchors every grid; any fixed instant works (e.g. the agent's start).
    pub fn new(origin: Instant, config: TimetableConfig) -> Self {
        Self {
            config,
            origin,
            entries: HashMap::new(),
            due: BTreeSet::new(),
            in_flight: HashSet::new(),
            last_start: HashMap::new(),
        }
    }

    pub fn config(&self) -> &TimetableConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn pair(&self, id: PairId) -> Option<&Pair> {
        self.entries.get(&id).map(|e| &e.pair)
    }

    pub fn pairs(&self) -> impl Iterator<Item = &Pair> {
        self.entries.values().map(|e| &e.pair)
    }

    /// When a pair is next due; `None` while it is in flight or unknown.
    pub fn due_at(&self, id: PairId) -> Option<Instant> {
        if self.in_flight.contains(&id) {
            return None;
        }
        self.entries.get(&id).map(|e| e.next_due)
    }

    // === Grid ===

    /// The slot of round `k`: `origin + phase + k * interval + jitter(k)`.
    pub fn slot(&self, id: PairId, interval: Duration, round: u64) -> Instant {
        let interval = nanos(interval.max(MIN_INTERVAL));
        let phase = u128::from(id.0) % interval;
        let jitter_span = 2 * interval * u128::from(self.config.jitter_percent) / 100;
        let jitter = u128::from(
            StableHasher::new("netreach/jitter/v1")
                .u64(id.0)
                .u64(round)
                .finish(),
        ) % (jitter_span + 1);
        self.origin + duration(phase + u128::from(round) * interval + jitter)
    }

    /// The nominal (unjittered) time of round `k`: jitter keeps slots within ±`jitter_percent`
    /// of it.
    pub fn nominal(&self, id: PairId, interval: Duration, round: u64) -> Instant {
        let interval = nanos(interval.max(MIN_INTERVAL));
        let phase = u128::from(id.0) % interval;
        let center = interval * u128::from(self.config.jitter_percent) / 100;
        self.origin + duration(phase + u128::from(round) * interval + center)
    }

    /// The first slot strictly after `now`.
    fn next_slot(&self, id: PairId, interval: Duration, now: Instant) -> Instant {
        let step = nanos(interval.max(MIN_INTERVAL));
        let phase = u128::from(id.0) % step;
        let elapsed = nanos(now.saturating_duration_since(self.origin));
        let mut round = u64::try_from(elapsed.saturating_sub(phase) / step).unwrap_or(u64::MAX);
        // Jitter only delays a slot (0..20%), so round `floor` or the next one is the answer;
        // the loop runs at most three times.
        loop {
            let slot = self.slot(id, interval, round);
            if slot > now {
                return slot;
            }
            round = round.saturating_add(1);
        }
    }

    fn set_due(&mut self, id: PairId, at: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        self.due.remove(&(entry.next_due, id));
        entry.next_due = at;
        if !self.in_flight.contains(&id) {
            self.due.insert((at, id));
        }
    }

    // === Pairs ===

    /// Makes the timetable hold exactly `plan.pairs` for `plan.spec`: new pairs get their
    /// first grid slot after `now`, kept pairs keep their state (a changed interval moves them
    /// to the new grid), vanished pairs are removed.
    pub fn sync(&mut self, plan: &Plan, now: Instant) -> SyncChanges {
        let wanted: HashSet<PairId> = plan.pairs.iter().map(|p| p.id).collect();
        let mut changes = SyncChanges {
            removed: self
                .remove_where(|e| e.pair.spec == plan.spec && !wanted.contains(&e.pair.id)),
            ..SyncChanges::default()
        };
        for pair in &plan.pairs {
            let id = pair.id;
            match self.entries.get_mut(&id) {
                Some(entry) => {
                    entry.pair = pair.clone();
                    if entry.interval != plan.interval {
                        entry.interval = plan.interval;
                        if entry.change.is_none() {
                            let at = self.next_slot(id, plan.interval, now);
                            self.set_due(id, at);
                        }
                    }
                }
                None => {
                    let next_due = match self.config.first_probe {
                        FirstProbe::OnGrid => self.next_slot(id, plan.interval, now),
                        FirstProbe::Immediately => now,
                    };
                    self.entries.insert(
                        id,
                        Box::new(Entry {
                            pair: pair.clone(),
                            interval: plan.interval,
                            next_due,
                            started_at: None,
                            change: None,
                            rerun_on_complete: false,
                        }),
                    );
                    if !self.in_flight.contains(&id) {
                        self.due.insert((next_due, id));
                    }
                    changes.added.push(id);
                }
            }
        }
        changes.added.sort();
        let spacing = self.config.spacing;
        self.last_start.retain(|_, t| *t + spacing > now);
        changes
    }

    /// Removes every pair of a spec (the ProbeSpec or ClusterProbeSpec was deleted).
    pub fn remove_spec(&mut self, spec: &crate::cluster::SpecRef) -> Vec<PairId> {
        self.remove_where(|e| &e.pair.spec == spec)
    }

    fn remove_where(&mut self, mut pred: impl FnMut(&Entry) -> bool) -> Vec<PairId> {
        let mut removed: Vec<PairId> = self
            .entries
            .values()
            .filter(|e| pred(e))
            .map(|e| e.pair.id)
            .collect();
        removed.sort();
        for id in &removed {
            if let Some(entry) = self.entries.remove(id) {
                self.due.remove(&(entry.next_due, *id));
            }
        }
        removed
    }

    // === Running ===

    /// The pairs to start now, earliest due first: at most `limit - in_flight` of them, never
    /// two on one path, and none on a path that started less than `spacing` ago. They count as
    /// in flight until [`Timetable::complete`].
    pub fn ready(&mut self, now: Instant, limit: usize) -> Vec<PairId> {
        let free = limit.saturating_sub(self.in_flight.len());
        let mut picked: Vec<(Instant, PairId, u64)> = Vec::new();
        let mut paths_taken: HashSet<u64> = HashSet::new();
        for &(at, id) in &self.due {
            if at > now || picked.len() >= free {
                break;
            }
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let path = path_key(&entry.pair);
            if paths_taken.contains(&path) || !self.path_free(path, now) {
                continue;
            }
            paths_taken.insert(path);
            picked.push((at, id, path));
        }
        for &(at, id, path) in &picked {
            self.due.remove(&(at, id));
            self.in_flight.insert(id);
            self.last_start.insert(path, now);
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.started_at = Some(now);
            }
        }
        picked.into_iter().map(|(_, id, _)| id).collect()
    }

    fn path_free(&self, path: u64, now: Instant) -> bool {
        self.last_start
            .get(&path)
            .is_none_or(|t| *t + self.config.spacing <= now)
    }

    /// The earliest time after which [`Timetable::ready`] can return a pair, ignoring the
    /// concurrency limit (a completion frees a slot; the caller knows when that happens).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        for &(at, id) in &self.due {
            if best.is_some_and(|b| at >= b) {
                break;
            }
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let path_free_at = self
                .last_start
                .get(&path_key(&entry.pair))
                .map_or(at, |t| (*t + self.config.spacing).max(at));
            best = Some(best.map_or(path_free_at, |b| b.min(path_free_at)));
        }
        best
    }

    /// A probe of `id` finished: frees its slot and schedules its next run.
    pub fn complete(&mut self, id: PairId, now: Instant) {
        self.in_flight.remove(&id);
        let spacing = self.config.spacing;
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let interval = entry.interval;
        let rerun = std::mem::take(&mut entry.rerun_on_complete);
        let started_at = entry.started_at;
        let followup = match &mut entry.change {
            Some(change) if started_at.is_some_and(|s| s >= change.at) => {
                let backoff = spacing
                    .saturating_mul(1u32 << change.followups.min(16))
                    .min(interval);
                change.followups += 1;
                Some(now + backoff)
            }
            _ => None,
        };
        let at = if rerun {
            now
        } else {
            // At least half an interval after this run: a late run does not pull the next one
            // close behind it (that round is skipped instead).
            let regular = self.next_slot(id, interval, now + interval / 2);
            followup.map_or(regular, |f| f.min(regular))
        };
        self.set_due(id, at);
    }

    // === Changes ===

    /// Makes `ids` due at `change_time` (at once, subject to spacing and the concurrency
    /// limit) and remembers the change for [`Timetable::record_observation`]. A pair in flight
    /// runs again as soon as its current probe completes (that probe started before the change
    /// and does not count). A newer change replaces an unreflected older one. Pairs that the
    /// change brought in (`SyncChanges::added`) have no earlier verdict: report their first
    /// observation as `verdict_changed` to measure how long the change took to be probed.
    pub fn mark_due_now(&mut self, ids: &[PairId], change_time: Instant) {
        for &id in ids {
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            entry.change = Some(PendingChange {
                at: change_time,
                followups: 0,
            });
            if self.in_flight.contains(&id) {
                entry.rerun_on_complete = true;
            } else if change_time < entry.next_due {
                self.set_due(id, change_time);
            }
        }
    }

    /// Records the result of the latest probe of `id` (call it with `complete`, in either
    /// order). Returns the time from the pending change to `now` when this is the first
    /// observation that started after the change and changed the verdict; then the change is
    /// settled and the pair returns to its grid.
    pub fn record_observation(
        &mut self,
        id: PairId,
        now: Instant,
        verdict_changed: bool,
    ) -> Option<Duration> {
        let effect_window = self.config.effect_window;
        let entry = self.entries.get_mut(&id)?;
        let change = entry.change?;
        if entry.started_at.is_none_or(|s| s < change.at) {
            return None;
        }
        if verdict_changed {
            entry.change = None;
            let interval = entry.interval;
            if !self.in_flight.contains(&id) {
                let regular = self.next_slot(id, interval, now + interval / 2);
                self.set_due(id, regular);
            }
            return Some(now.saturating_duration_since(change.at));
        }
        if now.saturating_duration_since(change.at) >= effect_window {
            entry.change = None;
        }
        None
    }

    /// Whether `id` still waits for an observation that reflects a change.
    pub fn change_pending(&self, id: PairId) -> bool {
        self.entries.get(&id).is_some_and(|e| e.change.is_some())
    }
}

/// The spacing key of a pair: (source pod, destination address or name).
fn path_key(pair: &Pair) -> u64 {
    let mut h = StableHasher::new("netreach/path/v1");
    h.str(&pair.from.namespace).str(&pair.from.name);
    match &pair.target {
        PairTarget::Pod { ip, .. } | PairTarget::Ip { ip, .. } => h.str("ip").str(&ip.to_string()),
        PairTarget::Host { name, .. } => h.str("host").str(name),
        PairTarget::Dns { name } => h.str("dns").str(name),
        PairTarget::Service { service, .. } => {
            h.str("service").str(&service.namespace).str(&service.name)
        }
    };
    h.finish()
}

fn nanos(d: Duration) -> u128 {
    d.as_nanos()
}

fn duration(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests;

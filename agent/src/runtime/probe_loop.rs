//! The probe scheduler: the long-running loop that keeps this node's pairs probed, re-probes
//! them when the cluster changes, and reports what it sees.
//!
//! ```text
//! ClusterView ── revision moved ──> ViewSnapshot (Index + ChangeLog copies, taken under the read locks)
//!   │ ProbeSpecs ──schedule::plan(node)──> Timetable::sync ──> vanished pairs: series, reports, streaks go
//!   └ ChangeLog::after(seen) ──cluster_change──affected_pairs──> Timetable::mark_due_now(ids, change time)
//! Timetable::ready(now, --concurrency) ──> PairProber (the Pipeline, in the source pod's netns) ─┐
//!   ┌──────────────────────────────── (PairId, PairReports: one, or one per host address) ───────┘
//!   └─> Timetable::complete + record_observation ──> netreach_policy_change_to_effect_seconds
//!       per-pair metrics, Events on verdict transitions, published pairs (/v1/pairs, status writer)
//! ```
//!
//! A pair's latest probe replaces all its reports ([`PairRecord`]): a host pair has one per
//! address its name resolved to, so an address the name no longer gives loses its report and
//! its metric series with the next probe, and a name that does not resolve leaves one
//! `not_probed` report. Verdict transitions (Events, change-to-effect) are followed per report:
//! per address for a host pair. A report is kept once: the published list (`/v1/pairs`, the
//! status writer) shares the records' `Arc`s, so publishing every second copies pointers only.
//!
//! The decisions live in [`crate::schedule`] (planning, due times, spacing, re-probe sets) and
//! in [`super::changes`] (change mapping, transitions); this module does the I/O around them.
//! One [`ProbeLoop::step`] re-plans and re-probes as the view requires and starts the pairs that
//! are due; [`ProbeLoop::finish`] takes one result in. [`ProbeLoop::run`] loops over both,
//! sleeping until the next due time, a view change or a completion (at most `max_sleep`).
//!
//! Probing starts only after the first full sync of the view: a partial index (policies not yet
//! listed) would produce wrong verdicts and Events. Probes run against a snapshot of the view,
//! so no lock is held across an `.await`; the snapshot is renewed at once when the change log
//! moves, at most every `min_snapshot_interval` for other index and spec changes (pod churn
//! would otherwise copy the index on every completion), and at least every
//! `max_snapshot_age` (CNI restart windows age).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use probe_spec::{Expectation, PairVerdict};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::event_queue::EventNotice;
use super::prober::{Now, PairProber, ProbeJob, ViewSnapshot};
use super::transitions::{Transition, transition};
use crate::cluster::SpecRef;
use crate::cluster::watch::{ClusterView, WatchedKinds};
use crate::pair::{Pair, PairHistory, PairId, PairReport, PublishedPairs, SharedHistory};
use crate::pipeline::PairReports;
use crate::report::events::EventTarget;
use crate::report::metrics::{Metrics, PairKey, PairState};
use crate::schedule::{Timetable, TimetableConfig};

// === Configuration and outputs ===

/// Settings of the scheduler loop.
#[derive(Clone, Debug)]
pub struct ProbeLoopConfig {
    /// This agent's node: pairs whose source pod runs here are probed here.
    pub node: String,
    /// Probes in flight at once (`--concurrency`).
    pub concurrency: usize,
    pub timetable: TimetableConfig,
    /// The longest the loop sleeps, so it stays responsive.
    pub max_sleep: Duration,
    /// Published pairs are refreshed at most this often while probes are in flight.
    pub publish_every: Duration,
    /// Pod churn renews the snapshot (and re-plans) at most this often; change-log entries
    /// (policy and label changes) renew it at once.
    pub min_snapshot_interval: Duration,
    /// A snapshot older than this is renewed even if the view did not move.
    pub max_snapshot_age: Duration,
    /// On shutdown, how long to wait for probes in flight.
    pub shutdown_grace: Duration,
    /// How long a watch may fail before the view counts as stale: then a probe whose
    /// prediction would newly raise a policy verdict keeps the pair's last one.
    pub view_stale_after: Duration,
}

impl ProbeLoopConfig {
    pub fn new(node: impl Into<String>, concurrency: usize, shutdown_grace: Duration) -> Self {
        Self {
            node: node.into(),
            concurrency: concurrency.max(1),
            timetable: TimetableConfig::default(),
            max_sleep: Duration::from_secs(1),
            publish_every: Duration::from_secs(1),
            min_snapshot_interval: Duration::from_secs(1),
            max_snapshot_age: Duration::from_secs(60),
            shutdown_grace,
            view_stale_after: super::view_metrics::STALE_AFTER,
        }
    }
}

/// What the scheduler knows about one ProbeSpec, for the status writer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecSummary {
    /// `metadata.generation` of the spec that was planned.
    pub generation: Option<i64>,
    pub expect: Expectation,
    /// Pairs of the spec this node probes.
    pub planned: usize,
    /// Why the spec cannot be planned, if it cannot.
    pub problem: Option<String>,
    /// The `SourcesNarrowed` message: the namespaces a ProbeSpec's `from.namespaceSelector`
    /// reaches besides its own, left out of its sources.
    pub sources_narrowed: Option<String>,
}

/// Every spec the scheduler knows: ProbeSpecs by namespace/name, ClusterProbeSpecs by name.
pub type SpecSummaries = BTreeMap<SpecRef, SpecSummary>;

/// Where the scheduler's results go.
#[derive(Debug)]
pub struct ProbeLoopOutputs {
    pub metrics: Arc<Metrics>,
    /// This node's pairs, for `/v1/pairs` and the status writer.
    pub pairs: watch::Sender<PublishedPairs>,
    pub specs: watch::Sender<Arc<SpecSummaries>>,
    /// Events to publish; `None` with `--events=false`.
    pub events: Option<mpsc::Sender<EventNotice>>,
    /// How far probing got, published with the pairs; `None`: nobody asks (the agent).
    pub progress: Option<watch::Sender<Progress>>,
}

/// How far the scheduler got through its pairs (the demo's `--once` and `--rounds` wait on
/// it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Times the scheduler planned the view (0: it has not planned yet).
    pub plans: u64,
    /// Pairs planned on this node.
    pub pairs: usize,
    /// Planned pairs probed at least once.
    pub probed: usize,
    /// Full rounds: the fewest probes any planned pair has had (0 until every pair has one).
    pub rounds: u64,
}

/// What one [`ProbeLoop::step`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Pairs a re-plan added and removed.
    pub added: Vec<PairId>,
    pub removed: Vec<PairId>,
    /// Pairs made due at once by cluster changes.
    pub reprobe: Vec<PairId>,
    /// Probes started, earliest due first.
    pub started: Vec<PairId>,
}

/// What [`ProbeLoop::finish`] made of one result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// One per report, in the order the prober returned them (a host pair: per address).
    pub transitions: Vec<Transition>,
    /// The time from a pending change to this observation, when it showed the change's effect
    /// (on any of its reports).
    pub change_to_effect: Option<Duration>,
}

// === impl ProbeLoop ===

/// A ProbeSpec as planned.
#[derive(Clone, Debug)]
struct PlannedSpec {
    timeout: Duration,
    summary: SpecSummary,
}

/// The view revisions a snapshot was taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Revisions {
    index: u64,
    changes: u64,
    specs: u64,
}

type InFlight = FuturesUnordered<BoxFuture<'static, (PairId, PairReports)>>;

/// What the scheduler keeps of one probed pair.
#[derive(Clone, Debug, Default)]
struct PairRecord {
    /// The reports of its latest probe: one, or one per resolved address of a host target.
    /// Shared with the published list, never copied into it.
    reports: Vec<Arc<PairReport>>,
    /// The last verdict that decided something (not `not_probed`/`inconclusive`) per report
    /// ([`report_slot`]), so a probe that could not run between two blocks raises no second
    /// Event.
    last_decided: BySlot<PairVerdict>,
    /// Probes of this pair that completed.
    probes: u64,
    /// The outage history of each report slot ([`report_slot`]).
    histories: BySlot<SharedHistory>,
}

/// A value per report slot ([`report_slot`]): the pair's own, and a host pair's per resolved
/// address. The addresses are boxed: the common pair has none and pays one pointer, not an
/// empty vector's three words (twice per pair, at 10,000 pairs).
#[derive(Clone, Debug)]
#[expect(
    clippy::box_collection,
    reason = "one pointer for the common pair without addresses; a Box<[_]> takes two"
)]
struct BySlot<T> {
    own: Option<T>,
    by_address: Option<Box<Vec<(IpAddr, T)>>>,
}

impl<T> Default for BySlot<T> {
    fn default() -> Self {
        Self {
            own: None,
            by_address: None,
        }
    }
}

impl<T> BySlot<T> {
    fn get(&self, slot: Option<IpAddr>) -> Option<&T> {
        match slot {
            None => self.own.as_ref(),
            Some(ip) => self
                .by_address
                .as_deref()?
                .iter()
                .find(|(address, _)| *address == ip)
                .map(|(_, value)| value),
        }
    }

    /// The value of `slot`, made with `new` when it has none.
    fn get_or_insert_with(&mut self, slot: Option<IpAddr>, new: impl FnOnce() -> T) -> &mut T {
        let Some(ip) = slot else {
            return self.own.get_or_insert_with(new);
        };
        let values = self.by_address.get_or_insert_with(Box::default);
        let at = match values.iter().position(|(address, _)| *address == ip) {
            Some(at) => at,
            None => {
                values.push((ip, new()));
                values.len() - 1
            }
        };
        &mut values[at].1
    }

    /// Keeps the slots in `slots`.
    fn retain(&mut self, slots: &[Option<IpAddr>]) {
        if !slots.contains(&None) {
            self.own = None;
        }
        if let Some(values) = &mut self.by_address {
            values.retain(|(address, _)| slots.contains(&Some(*address)));
            if values.is_empty() {
                self.by_address = None;
            }
        }
    }
}

impl BySlot<SharedHistory> {
    /// Counts `report` into its slot's history, in place, and returns that history, shared.
    fn observe(&mut self, report: &PairReport) -> SharedHistory {
        let history = self.get_or_insert_with(report_slot(report), || {
            SharedHistory::new(PairHistory::new(report.last_probe))
        });
        history.lock().observe(report);
        history.clone()
    }
}

/// A report made while the view is stale (`stale`: the resources whose watch has failed too
/// long). Its prediction may rest on objects deleted since (a policy deleted during an API
/// outage still predicts a block), so a policy verdict the pair did not already have is not
/// raised from it: the pair keeps its last report, or without one reads `inconclusive`
/// (`view_stale`). Either way the report says which resources were stale.
fn hold_if_stale(report: PairReport, record: &PairRecord, stale: WatchedKinds) -> PairReport {
    let raises_policy_verdict = matches!(
        report.verdict,
        PairVerdict::BlockedByPolicy
            | PairVerdict::PolicyNotEnforced
            | PairVerdict::PartiallyBlocked
    );
    let slot = report_slot(&report);
    let already = record.last_decided.get(slot) == Some(&report.verdict);
    let mut held = if !raises_policy_verdict || already {
        report
    } else {
        match record.reports.iter().find(|r| report_slot(r) == slot) {
            Some(last) => {
                let mut last = (**last).clone();
                // Held once already: its summary says so.
                if last.view_stale.is_empty() {
                    last.summary = format!(
                        "{} (held: the cluster view is stale, {} not watched; this probe observed {})",
                        last.summary,
                        stale,
                        report.outcome
                    )
                    .into();
                }
                last
            }
            None => {
                let mut first = report;
                first.summary = format!(
                    "{}: no verdict (the cluster view is stale, {} not watched; the prediction may rest on deleted objects)",
                    first.summary,
                    stale
                )
                .into();
                first.verdict = PairVerdict::Inconclusive;
                first.reason = Some(crate::pair::PairReason::ViewStale);
                first.meets_expectation = None;
                first
            }
        }
    };
    held.view_stale = stale;
    held
}

/// Which of a pair's reports this is, from one probe to the next: a host target's resolved
/// address; `None` for the one report of any other pair (or of a name that did not resolve).
fn report_slot(report: &PairReport) -> Option<IpAddr> {
    report.host.as_ref().and(report.ip())
}

/// The scheduler of one agent.
pub struct ProbeLoop {
    config: ProbeLoopConfig,
    view: ClusterView,
    prober: Arc<dyn PairProber>,
    out: ProbeLoopOutputs,
    timetable: Timetable,
    specs: BTreeMap<SpecRef, PlannedSpec>,
    snapshot: Option<Arc<ViewSnapshot>>,
    /// When and at which revisions the snapshot was taken.
    snapshot_at: Option<(Instant, Revisions)>,
    /// The last change-log entry turned into re-probes.
    last_change_seq: u64,
    /// The latest reports of every pair probed at least once.
    records: HashMap<PairId, PairRecord>,
    in_flight: InFlight,
    /// Reports changed since the last publish.
    unpublished: bool,
    last_publish: Option<Instant>,
    /// Times the view was planned.
    plans: u64,
}

impl fmt::Debug for ProbeLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeLoop")
            .field("config", &self.config)
            .field("pairs", &self.timetable.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl ProbeLoop {
    /// A scheduler whose timetable grid starts at `origin`.
    pub fn new(
        config: ProbeLoopConfig,
        view: ClusterView,
        prober: Arc<dyn PairProber>,
        out: ProbeLoopOutputs,
        origin: Instant,
    ) -> Self {
        let timetable = Timetable::new(origin, config.timetable.clone());
        Self {
            config,
            view,
            prober,
            out,
            timetable,
            specs: BTreeMap::new(),
            snapshot: None,
            snapshot_at: None,
            last_change_seq: 0,
            records: HashMap::new(),
            in_flight: FuturesUnordered::new(),
            unpublished: false,
            last_publish: None,
            plans: 0,
        }
    }

    /// Runs until `shutdown` turns true (or its sender goes), then waits up to the grace period
    /// for the probes in flight and publishes what they found.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut updates = self.view.subscribe();
        info!("waiting for the first sync of the cluster view");
        tokio::select! {
            () = self.view.readiness.wait() => {}
            () = super::stop_requested(&mut shutdown) => return,
        }
        info!(node = %self.config.node, concurrency = self.config.concurrency, "scheduler started");
        loop {
            let now = Now::current();
            let step = self.step(now);
            if !step.added.is_empty() || !step.removed.is_empty() || !step.reprobe.is_empty() {
                debug!(
                    added = step.added.len(),
                    removed = step.removed.len(),
                    reprobe = step.reprobe.len(),
                    pairs = self.timetable.len(),
                    "schedule updated"
                );
            }
            self.publish(now.instant, false);
            let wake = self.next_wakeup(now.instant);
            tokio::select! {
                () = super::stop_requested(&mut shutdown) => break,
                Some((id, reports)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.finish(Now::current(), id, reports);
                }
                // The sender lives in the view this scheduler holds, so this never fails.
                _ = updates.changed() => {}
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.drain().await;
    }

    /// One decision step at `now`: renews the snapshot and re-plans when the view moved, turns
    /// new change-log entries into re-probes, and starts the pairs that are due.
    pub fn step(&mut self, now: Now) -> Step {
        let mut step = Step::default();
        if let Some((snapshot, plans_stale)) = self.refresh_snapshot(now.instant) {
            // Pairs a change affects, against the pairs as they were (schedule module docs).
            let (marks, plan_change) = self.changes_since_last(&snapshot, now);
            if plans_stale {
                let (added, removed) = self.replan(&snapshot, now.instant);
                step.added = added;
                step.removed = removed;
            }
            for (ids, at) in &marks {
                self.timetable.mark_due_now(ids, *at);
                step.reprobe.extend(ids.iter().copied());
            }
            if let Some(at) = plan_change
                && !step.added.is_empty()
            {
                self.timetable.mark_due_now(&step.added, at);
            }
            step.reprobe.sort();
            step.reprobe.dedup();
        }
        step.started = self.start_due(now.instant);
        step
    }

    /// Takes one probe result in: frees its slot, measures change-to-effect, updates metrics,
    /// raises Events on transitions and keeps the reports (replacing the previous ones, whose
    /// series go when their report does not come back). `None` when the pair went away while
    /// it was probed.
    pub fn finish(&mut self, now: Now, id: PairId, reports: PairReports) -> Option<Finished> {
        self.timetable.complete(id, now.instant);
        let pair = self.timetable.pair(id)?.clone();
        let mut record = self.records.remove(&id).unwrap_or_default();
        let stale = self
            .view
            .stats
            .stale(now.wall, self.config.view_stale_after);
        let reports: Vec<Arc<PairReport>> = reports
            .into_iter()
            .map(|report| {
                let mut report = if stale.is_empty() {
                    report
                } else {
                    hold_if_stale(report, &record, stale)
                };
                report.history = Some(record.histories.observe(&report));
                Arc::new(report)
            })
            .collect();
        let transitions: Vec<Transition> = reports
            .iter()
            .map(|report| {
                let slot = report_slot(report);
                let previous = record.last_decided.get(slot).copied();
                let transition =
                    transition(report.expect.unwrap_or_default(), previous, report.verdict);
                if previous.is_some_and(|p| p != report.verdict) {
                    info!(%pair, from = ?previous, to = %report.verdict, reason = report.reason_code(), "verdict changed");
                }
                if let Some(reason) = transition.event {
                    self.notify(&pair, reason, &report.summary);
                }
                if report.verdict.is_decided() {
                    *record.last_decided.get_or_insert_with(slot, || report.verdict) = report.verdict;
                }
                transition
            })
            .collect();
        let change_to_effect = self.timetable.record_observation(
            id,
            now.instant,
            transitions.iter().any(|t| t.effect_observed),
        );
        let metrics = &self.out.metrics;
        if let Some(elapsed) = change_to_effect {
            metrics.observe_policy_change_to_effect(elapsed);
            let verdicts: Vec<&str> = reports.iter().map(|r| r.verdict.as_str()).collect();
            info!(%pair, elapsed = ?elapsed, verdict = %verdicts.join(","), "change took effect");
        }
        let keys: Vec<PairKey> = reports.iter().filter_map(|r| PairKey::of(r)).collect();
        for gone in record.reports.iter().filter_map(|r| PairKey::of(r)) {
            if !keys.contains(&gone) {
                metrics.pairs.remove(&gone);
            }
        }
        for (report, key) in reports
            .iter()
            .filter_map(|report| Some((report, PairKey::of(report)?)))
        {
            metrics.pairs.set(&key, &PairState::from(&**report));
            let latency = Duration::try_from_secs_f64(report.latency_seconds).unwrap_or_default();
            metrics.observe_attempt(
                &key.spec,
                key.protocol,
                report.outcome,
                report.not_probed_reason(),
                latency,
            );
        }
        // A host name that resolved: the addresses it no longer gives are forgotten. One that
        // did not keeps them: that probe observed nothing of them.
        if reports.iter().any(|report| report_slot(report).is_some()) {
            let slots: Vec<Option<IpAddr>> = reports.iter().map(|r| report_slot(r)).collect();
            record.last_decided.retain(&slots);
            record.histories.retain(&slots);
        }
        record.reports = reports;
        record.probes += 1;
        self.records.insert(id, record);
        self.unpublished = true;
        Some(Finished {
            transitions,
            change_to_effect,
        })
    }

    /// Publishes the pairs if they changed, at most every `publish_every` while probes are in
    /// flight (`force`: now).
    pub fn publish(&mut self, now: Instant, force: bool) {
        if !self.unpublished {
            return;
        }
        let recently = self
            .last_publish
            .is_some_and(|at| now.saturating_duration_since(at) < self.config.publish_every);
        if !force && recently && !self.in_flight.is_empty() {
            return;
        }
        let mut pairs: Vec<Arc<PairReport>> = self
            .records
            .values()
            .flat_map(|record| record.reports.iter().cloned())
            .collect();
        pairs.sort_by(|a, b| a.listing_order(b));
        self.out.pairs.send_replace(Arc::new(pairs));
        self.send_progress();
        self.unpublished = false;
        self.last_publish = Some(now);
    }

    fn send_progress(&self) {
        if let Some(progress) = &self.out.progress {
            progress.send_replace(self.progress());
        }
    }

    /// How far probing got over the pairs planned now.
    pub fn progress(&self) -> Progress {
        let probes: Vec<u64> = self
            .timetable
            .pairs()
            .map(|pair| self.records.get(&pair.id).map_or(0, |r| r.probes))
            .collect();
        Progress {
            plans: self.plans,
            pairs: probes.len(),
            probed: probes.iter().filter(|&&n| n > 0).count(),
            rounds: probes.iter().copied().min().unwrap_or(0),
        }
    }

    /// When the loop should look again: the next due time, at most `max_sleep` away; with
    /// every slot taken, only a completion (or `max_sleep`) can free one.
    fn next_wakeup(&self, now: Instant) -> Instant {
        let latest = now + self.config.max_sleep;
        if self.in_flight.len() >= self.config.concurrency {
            return latest;
        }
        let due = self.timetable.next_wakeup().unwrap_or(latest);
        // Never a busy loop, whatever the timetable says.
        due.clamp(now + Duration::from_millis(1), latest)
    }

    /// Waits up to the grace period for the probes in flight, then publishes.
    async fn drain(&mut self) {
        let deadline = Instant::now() + self.config.shutdown_grace;
        if !self.in_flight.is_empty() {
            info!(in_flight = self.in_flight.len(), grace = ?self.config.shutdown_grace, "waiting for probes in flight");
        }
        loop {
            match tokio::time::timeout_at(deadline.into(), self.in_flight.next()).await {
                Ok(Some((id, reports))) => {
                    self.finish(Now::current(), id, reports);
                }
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        abandoned = self.in_flight.len(),
                        "shutdown grace period over; abandoning probes in flight"
                    );
                    break;
                }
            }
        }
        self.publish(Instant::now(), true);
        info!("scheduler stopped");
    }

    // === Probing ===

    /// Starts every pair that is due, within the concurrency limit.
    fn start_due(&mut self, now: Instant) -> Vec<PairId> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Vec::new();
        };
        let ids = self.timetable.ready(now, self.config.concurrency);
        for &id in &ids {
            let job = self.timetable.pair(id).and_then(|pair| {
                let spec = self.specs.get(&pair.spec)?;
                Some(ProbeJob {
                    pair: pair.clone(),
                    expect: spec.summary.expect,
                    timeout: spec.timeout,
                })
            });
            let Some(job) = job else {
                // Cannot happen (ready only returns known pairs of planned specs); free the slot.
                self.timetable.complete(id, now);
                continue;
            };
            let probe = self.prober.probe(snapshot.clone(), job);
            self.in_flight
                .push(Box::pin(async move { (id, probe.await) }));
        }
        ids
    }

    /// Queues an Event on the pair's source pod (dropped, with a warning, if the queue is full).
    fn notify(&self, pair: &Pair, reason: crate::report::events::EventReason, message: &str) {
        let Some(events) = &self.out.events else {
            return;
        };
        let uid = self
            .snapshot
            .as_ref()
            .and_then(|s| s.index.pod(&pair.from))
            .map(|p| p.uid.clone())
            .filter(|uid| !uid.is_empty());
        let notice = EventNotice {
            target: EventTarget {
                pod: pair.from.clone(),
                uid,
            },
            reason,
            message: message.to_string(),
        };
        if let Err(error) = events.try_send(notice) {
            warn!(pod = %pair.from, %reason, %error, "event queue full or closed; event dropped");
        }
    }
}

mod view;

#[cfg(test)]
mod tests;

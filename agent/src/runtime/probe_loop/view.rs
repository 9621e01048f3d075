//! The scheduler's view side: snapshots of the cluster view, change-log entries turned into
//! re-probes, and plans synced into the timetable.
//!
//! ```text
//! revisions moved? ──refresh_snapshot──> ViewSnapshot (copies under the read locks)
//! ChangeLog::after(seen) ──changes_since_last──> [(affected pair ids, change instant)]
//! ProbeSpecs + ClusterProbeSpecs ──replan──> Timetable::sync per spec; vanished specs and pairs: forget
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{PlannedSpec, ProbeLoop, Revisions, SpecSummaries, SpecSummary};
use crate::cluster::SpecRef;
use crate::pair::PairId;
use crate::report::metrics::PairKey;
use crate::runtime::prober::{Now, ViewSnapshot};
use crate::runtime::transitions::{change_instant, cluster_change, may_change_plans};
use crate::schedule::{self, affected_pairs};

impl ProbeLoop {
    /// Renews the snapshot when the view moved (or it aged); returns it and whether the plans
    /// are stale (the specs or the index moved), or `None` when nothing changed.
    pub(super) fn refresh_snapshot(&mut self, now: Instant) -> Option<(Arc<ViewSnapshot>, bool)> {
        let revisions = Revisions {
            index: self.view.index.read().revision(),
            changes: self.view.changes.read().latest_seq(),
            specs: self.view.specs_revision(),
        };
        let previous = self.snapshot_at.map(|(_, r)| r);
        let age = self
            .snapshot_at
            .map(|(at, _)| now.saturating_duration_since(at));
        let renew = match (previous, age) {
            (Some(previous), Some(age)) => {
                // Policy and label changes at once (their effect is being timed); pod churn
                // at most every `min_snapshot_interval`; an unchanged view when it aged.
                previous.changes != revisions.changes
                    || (previous != revisions && age >= self.config.min_snapshot_interval)
                    || age >= self.config.max_snapshot_age
            }
            _ => true,
        };
        if !renew {
            return None;
        }
        let generation = self.snapshot.as_ref().map_or(1, |s| s.generation + 1);
        // Lock order as the watch feeds take them: index, then change log.
        let (index, changes) = {
            let index = self.view.index.read();
            let changes = self.view.changes.read();
            (index.clone(), changes.clone())
        };
        if self.snapshot.is_none() {
            // History from before the scheduler started is not a change to react to.
            self.last_change_seq = changes.latest_seq();
        }
        let snapshot = Arc::new(ViewSnapshot {
            generation,
            index,
            changes,
        });
        let plans_stale =
            previous.is_none_or(|p| p.specs != revisions.specs || p.index != revisions.index);
        self.snapshot = Some(snapshot.clone());
        self.snapshot_at = Some((now, revisions));
        Some((snapshot, plans_stale))
    }

    /// The change-log entries after the last one seen, as (affected pairs, change time), and
    /// the time of the latest change that can alter plans.
    pub(super) fn changes_since_last(
        &mut self,
        snapshot: &ViewSnapshot,
        now: Now,
    ) -> (Vec<(Vec<PairId>, Instant)>, Option<Instant>) {
        let mut marks = Vec::new();
        let mut plan_change: Option<Instant> = None;
        for change in snapshot.changes.after(self.last_change_seq) {
            let at = change_instant(change.at, now.wall, now.instant);
            if may_change_plans(&change.kind) {
                plan_change = Some(plan_change.map_or(at, |t| t.max(at)));
            }
            let Some(cluster_change) = cluster_change(&change.kind) else {
                continue;
            };
            let ids = affected_pairs(self.timetable.pairs(), &snapshot.index, &cluster_change);
            debug!(change = %change.kind.describe(), affected = ids.len(), "cluster change");
            if !ids.is_empty() {
                marks.push((ids, at));
            }
        }
        self.last_change_seq = snapshot.changes.latest_seq();
        (marks, plan_change)
    }

    /// Plans every ProbeSpec and ClusterProbeSpec for this node and syncs the timetable;
    /// returns the pairs added and removed. Specs that vanished lose their pairs and every
    /// metric series.
    pub(super) fn replan(
        &mut self,
        snapshot: &ViewSnapshot,
        now: Instant,
    ) -> (Vec<PairId>, Vec<PairId>) {
        let specs = self.view.specs();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut present = BTreeSet::new();
        for spec in specs {
            let key = spec.key.clone();
            let generation = spec.generation;
            let expect = spec.spec.expect;
            let planned = match schedule::plan(&snapshot.index, &spec, &self.config.node) {
                Ok(plan) => {
                    let sync = self.timetable.sync(&plan, now);
                    added.extend(sync.added);
                    removed.extend(sync.removed);
                    PlannedSpec {
                        timeout: plan.timeout,
                        summary: SpecSummary {
                            generation,
                            expect,
                            planned: plan.pairs.len(),
                            problem: None,
                            sources_narrowed: plan.narrowed.map(|n| n.to_string()),
                        },
                    }
                }
                Err(error) => {
                    if self
                        .specs
                        .get(&key)
                        .is_none_or(|s| s.summary.problem.is_none())
                    {
                        warn!(spec = %key, kind = key.kind(), %error, reason = error.metric_label(), "cannot plan spec");
                    }
                    removed.extend(self.timetable.remove_spec(&key));
                    PlannedSpec {
                        timeout: Duration::ZERO,
                        summary: SpecSummary {
                            generation,
                            expect,
                            planned: 0,
                            problem: Some(error.to_string()),
                            sources_narrowed: None,
                        },
                    }
                }
            };
            present.insert(key.clone());
            self.specs.insert(key, planned);
        }
        let vanished: Vec<SpecRef> = self
            .specs
            .keys()
            .filter(|key| !present.contains(*key))
            .cloned()
            .collect();
        for key in vanished {
            info!(spec = %key, kind = key.kind(), "spec gone");
            removed.extend(self.timetable.remove_spec(&key));
            self.out.metrics.remove_spec(&key.to_string());
            self.specs.remove(&key);
        }
        self.forget(&removed);
        let summaries: SpecSummaries = self
            .specs
            .iter()
            .map(|(key, spec)| (key.clone(), spec.summary.clone()))
            .collect();
        self.out.specs.send_replace(Arc::new(summaries));
        self.plans += 1;
        self.send_progress();
        (added, removed)
    }

    /// Drops the reports, metric series and remembered streaks of pairs that are gone.
    pub(super) fn forget(&mut self, removed: &[PairId]) {
        if removed.is_empty() {
            return;
        }
        for id in removed {
            if let Some(record) = self.records.remove(id) {
                for key in record.reports.iter().filter_map(|r| PairKey::of(r)) {
                    self.out.metrics.pairs.remove(&key);
                }
                self.unpublished = true;
            }
        }
        self.prober.forget(removed);
    }
}

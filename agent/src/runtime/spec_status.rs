//! The ProbeSpec and ClusterProbeSpec status writer task: every `--status-interval`, this node's share of each
//! spec's status, from the pairs the scheduler last published.
//!
//! ```text
//! scheduler ──pairs (watch)──┐
//!           ──specs (watch)──┼─> node_report(spec) ──> SpecStatusWriter::publish ──> status.nodes.<node>
//!   failing since (kept here)┘     counts by verdict, failing = !meets_expectation,    + aggregate
//!                                  last failing pairs (newest first), plan problem,
//!                                  sources narrowed
//! ```
//!
//! A spec is first reported once every pair this node plans for it has been probed (a partial
//! or empty first report would show a transient picture, or withdraw this node's entry). The writer itself skips unchanged
//! reports (except a heartbeat), so quiet specs cost no API calls.
//!
//! "Failing since" is when this writer first saw the pair failing: the probe time of the first
//! failing report it read, so it is at most one interval late and survives verdict changes
//! between failing verdicts.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use probe_spec::{FailingPair, MAX_RECENT_CHANGES, VerdictChange, VerdictCounts};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::probe_loop::{SpecSummaries, SpecSummary};
use crate::cluster::SpecRef;
use crate::cluster::model::{ObjectRef, Protocol};
use crate::cluster::watch::backoff::WatchBackoff;
use crate::pair::{PairHistory, PairReport, PublishedPairs, SharedHistory};
use crate::report::metrics::PairState;
use crate::report::status::{NodeReport, SpecStatusWriter, Written};

/// Failing pairs kept per spec in this node's report.
pub const NODE_FAILING_PAIRS: usize = 5;

/// A pair as the failing-since map knows it: spec, source, destination (a pod by name, so a
/// recreated pod keeps its streak), host name (of a host target's address), port, protocol.
type PairName = (
    SpecRef,
    ObjectRef,
    String,
    Option<Arc<str>>,
    Option<u16>,
    Option<Protocol>,
);

/// When each failing pair was first seen failing, and the status tick it was last seen in.
#[derive(Debug, Default)]
pub struct FailingSince {
    since: HashMap<PairName, (Time, u64)>,
    tick: u64,
}

impl FailingSince {
    /// When `name` started failing (`now` if it was not failing), and that it still fails
    /// in this tick.
    fn failing(&mut self, name: PairName, now: k8s_openapi::jiff::Timestamp) -> Time {
        let tick = self.tick;
        let (since, seen) = self.since.entry(name).or_insert_with(|| (Time(now), tick));
        *seen = tick;
        since.clone()
    }

    /// Ends a tick: the pairs not seen failing in it (recovered or gone) are forgotten.
    fn end_tick(&mut self) {
        let tick = self.tick;
        self.since.retain(|_, (_, seen)| *seen == tick);
        self.tick += 1;
    }
}

/// `None` for on-demand reports, which belong to no spec.
fn pair_name(report: &PairReport) -> Option<PairName> {
    Some((
        report.spec.clone()?,
        report.from.clone(),
        report.destination().to_string(),
        report.host.clone(),
        report.port(),
        report.protocol(),
    ))
}

/// This node's report for `spec` from every published pair (other specs' pairs are ignored).
pub fn node_report(
    spec: &SpecRef,
    summary: &SpecSummary,
    pairs: &[impl Borrow<PairReport>],
    failing_since: &mut FailingSince,
    max_failing: usize,
) -> NodeReport {
    let mut counts = VerdictCounts::default();
    let mut failing = 0u32;
    // The newest failing pairs first: ranked on their names, and only the first
    // `max_failing` made into status entries (at 1,000 failing pairs, making every entry to
    // keep five took half a megabyte on each tick).
    let mut candidates: Vec<(Time, String, String, Option<u16>, &PairReport)> = Vec::new();
    for report in of_spec(spec, pairs) {
        counts.add(report.verdict);
        if report.meets_expectation != Some(false) {
            continue;
        }
        failing += 1;
        let Some(name) = pair_name(report) else {
            continue;
        };
        let since = failing_since.failing(name, report.last_probe);
        candidates.push((
            since,
            report.from.to_string(),
            report.destination().to_string(),
            report.port(),
            report,
        ));
    }
    candidates.sort_by(|a, b| {
        b.0.0
            .cmp(&a.0.0)
            .then_with(|| (&a.1, &a.2, a.3).cmp(&(&b.1, &b.2, b.3)))
    });
    candidates.truncate(max_failing);
    let last_failing_pairs = candidates
        .into_iter()
        .map(|(since, from, to, port, report)| {
            let history = report.history.as_ref().map(SharedHistory::lock);
            FailingPair {
                from,
                to,
                port,
                protocol: report.protocol().map(probe_spec::Protocol::from),
                verdict: report.verdict,
                reason: report.reason.map(|reason| reason.as_str().to_string()),
                policy: Some(PairState::policy_label(&report.policies)).filter(|p| !p.is_empty()),
                since,
                recent_changes: history.as_deref().map(recent_changes).unwrap_or_default(),
                probes: history.map(|h| h.probes.by_code()).unwrap_or_default(),
            }
        })
        .collect();
    NodeReport {
        observed_generation: summary.generation,
        counts,
        failing,
        last_failing_pairs,
        problem: summary.problem.clone(),
        sources_narrowed: summary.sources_narrowed.clone(),
    }
}

/// The last [`MAX_RECENT_CHANGES`] periods of the pair's history, oldest first.
fn recent_changes(history: &PairHistory) -> Vec<VerdictChange> {
    let skip = history.periods.len().saturating_sub(MAX_RECENT_CHANGES);
    history
        .periods
        .iter()
        .skip(skip)
        .map(|p| VerdictChange {
            start: Time(p.start),
            end: p.end.map(Time),
            verdict: p.verdict,
            reason: p.reason.map(|r| r.as_str().to_string()),
        })
        .collect()
}

/// The reports of `spec`.
fn of_spec<'a>(
    spec: &'a SpecRef,
    pairs: &'a [impl Borrow<PairReport>],
) -> impl Iterator<Item = &'a PairReport> {
    pairs
        .iter()
        .map(Borrow::borrow)
        .filter(move |report| report.spec.as_ref() == Some(spec))
}

/// Whether this node's report of a spec may be written: once every planned pair has been
/// probed (`probed`, from [`probed_pairs`]; a partial first report would show a transient
/// picture), and from then on always (pairs that churn in must not hold the status back). A
/// problem or no planned pairs (the node withdraws its entry) are reported at once.
fn ready_to_report(
    summary: &SpecSummary,
    report: &NodeReport,
    probed: usize,
    reported_before: bool,
) -> bool {
    reported_before || report.problem.is_some() || probed >= summary.planned
}

/// How many planned pairs of `spec` the published reports cover: a host pair's reports (one
/// per resolved address) count once. Every other pair has exactly one report, so only host
/// reports need a set (a set of every pair's identity took a megabyte at 10,000 pairs, on
/// every status tick).
fn probed_pairs(spec: &SpecRef, pairs: &[impl Borrow<PairReport>]) -> usize {
    // Source, host name, port, protocol.
    type HostIdentity<'a> = (&'a ObjectRef, &'a str, Option<u16>, Option<Protocol>);
    let mut single = 0;
    let mut hosts: HashSet<HostIdentity<'_>> = HashSet::new();
    for report in of_spec(spec, pairs) {
        match report.host.as_deref() {
            Some(host) => {
                hosts.insert((&report.from, host, report.port(), report.protocol()));
            }
            None => single += 1,
        }
    }
    single + hosts.len()
}

/// Writes every spec's report each `interval` until `shutdown` turns true. Waits for the
/// first full sync of the view (`ready`) and one interval before the first write, so the
/// scheduler has probed.
pub async fn write_spec_statuses(
    writer: SpecStatusWriter,
    mut specs: watch::Receiver<Arc<SpecSummaries>>,
    pairs: watch::Receiver<PublishedPairs>,
    mut ready: watch::Receiver<bool>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = ready.wait_for(|ready| *ready) => {}
        () = super::stop_requested(&mut shutdown) => return,
    }
    let mut failing_since = FailingSince::default();
    let mut reported: HashSet<SpecRef> = HashSet::new();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Specs whose last write failed for a transient reason: written again (with the newest
    // report) after the write backoff, before the next tick.
    let mut retry: HashSet<SpecRef> = HashSet::new();
    let mut backoff = WatchBackoff::for_writes(WatchBackoff::seed(0x5747));
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retrying = tokio::select! {
            () = super::stop_requested(&mut shutdown) => break,
            _ = ticks.tick() => false,
            () = super::sleep_until(retry_at) => true,
        };
        let summaries = specs.borrow_and_update().clone();
        let pairs = pairs.borrow().clone();
        let mut failed: HashSet<SpecRef> = HashSet::new();
        for (spec, summary) in summaries.iter() {
            let report = node_report(
                spec,
                summary,
                &pairs,
                &mut failing_since,
                NODE_FAILING_PAIRS,
            );
            if retrying && !retry.contains(spec) {
                continue;
            }
            let probed = probed_pairs(spec, &pairs);
            if !ready_to_report(summary, &report, probed, reported.contains(spec)) {
                continue;
            }
            reported.insert(spec.clone());
            if publish(&writer, spec, &report).await == Publish::Retry {
                failed.insert(spec.clone());
            }
        }
        failing_since.end_tick();
        reported.retain(|spec| summaries.contains_key(spec));
        // Only this pass's failures are retried: a spec written since is done, and one gone
        // from the summaries is not in this pass.
        retry = failed;
        retry_at = if retry.is_empty() {
            backoff.reset();
            None
        } else {
            let delay = backoff.next_delay();
            debug!(specs = retry.len(), ?delay, "spec status writes to retry");
            Some(tokio::time::Instant::now() + delay)
        };
    }
    info!("status writer stopped");
}

/// What became of one status write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publish {
    Done,
    /// A transient failure: write it again soon.
    Retry,
}

async fn publish(writer: &SpecStatusWriter, spec: &SpecRef, report: &NodeReport) -> Publish {
    match writer.publish(spec, report).await {
        Ok(Written::Patched) => {
            debug!(%spec, kind = spec.kind(), failing = report.failing, "spec status written");
            Publish::Done
        }
        Ok(Written::Unchanged | Written::Gone) => Publish::Done,
        Err(error) if error.is_transient() => {
            warn!(%spec, kind = spec.kind(), %error, error.kind = error.metric_label(), "cannot write spec status; retrying");
            Publish::Retry
        }
        Err(error) => {
            warn!(%spec, kind = spec.kind(), %error, error.kind = error.metric_label(), "cannot write spec status");
            Publish::Done
        }
    }
}

#[cfg(test)]
mod tests;

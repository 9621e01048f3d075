//! The view metrics task: what the watchers count and what the index says about CNI agents,
//! carried into the registry every few seconds.
//!
//! ```text
//! WatchStats (atomic counters per resource) ──new restarts──> netreach_watch_restarts_total{resource}
//!            (failing since) ──longer than stale_after──> netreach_view_stale{resource}
//! Index ──cni_agents_by_node()──> netreach_cni_agent_ready{cni_node,cni_pod} (vanished agents removed)
//! ```
//!
//! Index sizes need no task: `IndexCollector` reads them at scrape time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::watch::{ClusterView, WatchStats, WatchedKind, cni_agents_by_node};
use crate::report::metrics::{CniAgentState, Metrics};

/// How often the view metrics are refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// The default of `--view-stale-after`: how long a watch may fail before the view of its
/// resource counts as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Watch restarts already carried into the counters, per resource.
#[derive(Debug, Default)]
pub struct RestartsSeen {
    seen: [u64; WatchedKind::ALL.len()],
}

impl RestartsSeen {
    /// The restarts of each resource since the last call: (resource, new restarts).
    pub fn take_new(&mut self, stats: &WatchStats) -> Vec<(WatchedKind, u64)> {
        WatchedKind::ALL
            .into_iter()
            .zip(self.seen.iter_mut())
            .filter_map(|(kind, seen)| {
                let total = stats.restarts(kind);
                let new = total.saturating_sub(*seen);
                *seen = total;
                (new > 0).then_some((kind, new))
            })
            .collect()
    }
}

/// Refreshes the view metrics until the task is aborted (or the shutdown signal's sender goes).
pub async fn refresh_view_metrics(
    view: ClusterView,
    metrics: Arc<Metrics>,
    stale_after: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let resources: Vec<&'static str> = WatchedKind::ALL.iter().map(|k| k.as_str()).collect();
    metrics.init_watch_restarts(&resources);
    let mut restarts = RestartsSeen::default();
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = super::stop_requested(&mut shutdown) => return,
            _ = ticks.tick() => {}
        }
        for (kind, new) in restarts.take_new(&view.stats) {
            for _ in 0..new {
                metrics.record_watch_restart(kind.as_str());
            }
        }
        let stale = view.stats.stale(std::time::SystemTime::now(), stale_after);
        for kind in WatchedKind::ALL {
            metrics.set_view_stale(kind.as_str(), stale.contains(kind));
        }
        let agents: Vec<CniAgentState> = cni_agents_by_node(&view.index.read(), &view.cni)
            .into_iter()
            .flat_map(|(node, agents)| {
                agents.into_iter().map(move |agent| CniAgentState {
                    node: node.clone(),
                    pod: agent.pod.to_string(),
                    ready: agent.ready,
                })
            })
            .collect();
        metrics.set_cni_agents(agents);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn new_restarts_are_taken_once() {
        let stats = WatchStats::default();
        let mut seen = RestartsSeen::default();
        assert!(seen.take_new(&stats).is_empty());
        stats
            .get(WatchedKind::Pods)
            .restarts
            .fetch_add(2, Ordering::Relaxed);
        stats
            .get(WatchedKind::ProbeSpecs)
            .restarts
            .fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            seen.take_new(&stats),
            [(WatchedKind::Pods, 2), (WatchedKind::ProbeSpecs, 1)]
        );
        assert!(seen.take_new(&stats).is_empty(), "already carried over");
        stats
            .get(WatchedKind::Pods)
            .restarts
            .fetch_add(1, Ordering::Relaxed);
        assert_eq!(seen.take_new(&stats), [(WatchedKind::Pods, 1)]);
    }
}

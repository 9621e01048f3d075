//! On-demand probes (`POST /v1/probe`, ProbeRequests) against one shared, immutable snapshot of
//! the cluster view, instead of a copy of the index and change log (and a recompiled policy
//! engine) per request.
//!
//! ```text
//! probe_once(from, target) ──LatestSnapshot::get──> reuse: the view did not move, or the
//!                                                   snapshot is younger than MIN_REFRESH and
//!                                                   holds the pods the request names
//!                                                 └ renew: copy under the read locks, build the
//!                                                   policy engine, share it (Arc) with every
//!                                                   request that follows
//!        ──> source and destination re-resolved in the snapshot ──Pipeline::probe_once_in──> report
//! ```
//!
//! A flood of requests on a quiet cluster costs one snapshot; on a churning one at most one per
//! [`MIN_REFRESH`] (plus one when a request names a pod the snapshot has not seen yet).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::prober::ViewSnapshot;
use crate::api::{BoxFuture, OnDemandProber};
use crate::cluster::model::ObjectRef;
use crate::cluster::watch::ClusterView;
use crate::pair::PairReport;
use crate::pair::PairTarget;
use crate::pipeline::{Pipeline, ProbeContext};

/// A snapshot is reused for this long while the view moves, if it holds the request's pods.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// The view revisions a snapshot was taken at: (index, change log).
pub type Revisions = (u64, u64);

/// The latest snapshot and what was built from it, shared by every on-demand probe.
#[derive(Debug)]
pub struct LatestSnapshot<C> {
    latest: Mutex<Option<Taken<C>>>,
    taken: AtomicU64,
}

#[derive(Debug)]
struct Taken<C> {
    revisions: Revisions,
    at: Instant,
    snapshot: Arc<ViewSnapshot>,
    context: Arc<C>,
}

impl<C> Default for LatestSnapshot<C> {
    fn default() -> Self {
        Self {
            latest: Mutex::new(None),
            taken: AtomicU64::new(0),
        }
    }
}

impl<C> LatestSnapshot<C> {
    /// The snapshot to probe with: the latest one when the view is still at `revisions`, or
    /// when it is younger than [`MIN_REFRESH`] and `has_what_is_needed`; otherwise a new one from
    /// `take` (called with the generation it gets).
    pub fn get(
        &self,
        revisions: Revisions,
        now: Instant,
        has_what_is_needed: impl Fn(&ViewSnapshot) -> bool,
        take: impl FnOnce(u64) -> (ViewSnapshot, C),
    ) -> (Arc<ViewSnapshot>, Arc<C>) {
        let mut latest = self.latest.lock();
        if let Some(taken) = &*latest {
            let young = now.saturating_duration_since(taken.at) < MIN_REFRESH;
            if taken.revisions == revisions || (young && has_what_is_needed(&taken.snapshot)) {
                return (taken.snapshot.clone(), taken.context.clone());
            }
        }
        let generation = self.taken.fetch_add(1, Ordering::Relaxed) + 1;
        let (snapshot, context) = take(generation);
        let taken = Taken {
            revisions,
            at: now,
            snapshot: Arc::new(snapshot),
            context: Arc::new(context),
        };
        let shared = (taken.snapshot.clone(), taken.context.clone());
        *latest = Some(taken);
        shared
    }

    /// Snapshots taken so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }
}

/// The agent's [`OnDemandProber`]: the [`Pipeline`] over the live [`ClusterView`].
pub struct ViewProber {
    pipeline: Arc<Pipeline>,
    view: ClusterView,
    latest: LatestSnapshot<ProbeContext>,
}

impl fmt::Debug for ViewProber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewProber")
            .field("snapshots_taken", &self.latest.taken())
            .finish_non_exhaustive()
    }
}

impl ViewProber {
    pub fn new(pipeline: Arc<Pipeline>, view: ClusterView) -> Self {
        Self {
            pipeline,
            view,
            latest: LatestSnapshot::default(),
        }
    }

    fn snapshot(&self, needed: &[&ObjectRef]) -> (Arc<ViewSnapshot>, Arc<ProbeContext>) {
        let revisions = (
            self.view.index.read().revision(),
            self.view.changes.read().latest_seq(),
        );
        self.latest.get(
            revisions,
            Instant::now(),
            |snapshot| needed.iter().all(|pod| snapshot.index.pod(pod).is_some()),
            |generation| {
                // Lock order as the watch feeds take them: index, then change log.
                let (index, changes) = {
                    let index = self.view.index.read();
                    let changes = self.view.changes.read();
                    (index.clone(), changes.clone())
                };
                let context = self.pipeline.context(&index, &changes);
                (
                    ViewSnapshot {
                        generation,
                        index,
                        changes,
                    },
                    context,
                )
            },
        )
    }
}

impl OnDemandProber for ViewProber {
    fn probe_once<'a>(
        &'a self,
        from: &'a ObjectRef,
        target: PairTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<PairReport, String>> {
        Box::pin(async move {
            let destination = match &target {
                PairTarget::Pod { pod, .. } => Some(pod.clone()),
                _ => None,
            };
            let needed: Vec<&ObjectRef> = std::iter::once(from).chain(&destination).collect();
            let (snapshot, context) = self.snapshot(&needed);
            let target = resolve_in(&snapshot, from, target)?;
            Ok(self
                .pipeline
                .probe_once_in(
                    &context,
                    &snapshot.index,
                    from,
                    target,
                    timeout,
                    &snapshot.changes,
                )
                .await)
        })
    }
}

/// Checks the source and re-resolves a destination pod's IP in the snapshot (the pod may have
/// gone or changed its IP since the request was checked).
fn resolve_in(
    snapshot: &ViewSnapshot,
    from: &ObjectRef,
    target: PairTarget,
) -> Result<PairTarget, String> {
    if snapshot.index.pod(from).is_none() {
        return Err(format!("source pod {from} is gone"));
    }
    Ok(match target {
        PairTarget::Pod {
            pod,
            port,
            protocol,
            ..
        } => {
            let destination = snapshot
                .index
                .pod(&pod)
                .ok_or_else(|| format!("destination pod {pod} is gone"))?;
            let ip = destination
                .ips
                .first()
                .copied()
                .ok_or_else(|| format!("destination pod {pod} has no IP"))?;
            PairTarget::Pod {
                pod,
                ip,
                port,
                protocol,
            }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Index;
    use crate::cluster::changes::ChangeLog;

    fn empty(generation: u64) -> (ViewSnapshot, ()) {
        (
            ViewSnapshot {
                generation,
                index: Index::default(),
                changes: ChangeLog::default(),
            },
            (),
        )
    }

    /// Pods gone from the snapshot are named; a destination pod's IP is the snapshot's.
    #[test]
    fn sources_and_destinations_are_resolved_in_the_snapshot() {
        let mut loaded = crate::cluster::load::Loaded::new();
        loaded.load_str(
            "cluster.yaml",
            r#"
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, uid: u1}
spec: {nodeName: node-1, containers: [{name: web, image: web}]}
status: {phase: Running, podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: gateway, namespace: payments, uid: u2}
spec: {nodeName: node-2, containers: [{name: gw, image: gw}]}
status: {phase: Running, podIP: 10.244.2.30}
---
apiVersion: v1
kind: Pod
metadata: {name: starting, namespace: payments, uid: u3}
spec: {nodeName: node-2, containers: [{name: gw, image: gw}]}
status: {phase: Pending}
"#,
        );
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let snapshot = ViewSnapshot {
            generation: 1,
            index: loaded.index,
            changes: ChangeLog::default(),
        };
        let frontend = ObjectRef::new("shop", "frontend");
        let pod = |name: &str, ip: &str| PairTarget::Pod {
            pod: ObjectRef::new("payments", name),
            ip: ip.parse().expect("ip"),
            port: 8443,
            protocol: crate::cluster::model::Protocol::Tcp,
        };
        let dns = PairTarget::Dns {
            name: "example.com".into(),
        };
        let cases: Vec<(ObjectRef, PairTarget, Result<PairTarget, &str>)> = vec![
            (
                frontend.clone(),
                pod("gateway", "10.244.9.9"),
                Ok(pod("gateway", "10.244.2.30")),
            ),
            (frontend.clone(), dns.clone(), Ok(dns.clone())),
            (
                ObjectRef::new("shop", "gone"),
                dns.clone(),
                Err("source pod shop/gone is gone"),
            ),
            (
                frontend.clone(),
                pod("gone", "10.244.2.99"),
                Err("destination pod payments/gone is gone"),
            ),
            (
                frontend.clone(),
                pod("starting", "10.244.2.98"),
                Err("destination pod payments/starting has no IP"),
            ),
        ];
        for (from, target, expected) in cases {
            let got = resolve_in(&snapshot, &from, target.clone());
            assert_eq!(got, expected.map_err(String::from), "{from} -> {target}");
        }
    }

    #[test]
    fn one_snapshot_serves_every_request_until_the_view_moves() {
        let latest = LatestSnapshot::<()>::default();
        let start = Instant::now();
        let cases: &[(Revisions, f64, bool, u64)] = &[
            // (revisions, seconds since start, snapshot has the pods, snapshots taken after)
            ((1, 1), 0.0, true, 1),
            ((1, 1), 0.1, true, 1),
            ((1, 1), 30.0, false, 1),
            // The view moved: reused while young and holding the pods...
            ((2, 1), 30.2, true, 2),
            ((3, 1), 30.3, true, 2),
            // ...renewed when a request names a pod it lacks, or once it is old.
            ((3, 1), 30.4, false, 3),
            ((4, 2), 32.0, true, 4),
            ((4, 2), 40.0, false, 4),
        ];
        for (i, (revisions, seconds, has_pods, expected)) in cases.iter().enumerate() {
            let now = start + Duration::from_secs_f64(*seconds);
            let (snapshot, _) = latest.get(*revisions, now, |_| *has_pods, empty);
            assert_eq!(latest.taken(), *expected, "case {i}");
            assert_eq!(snapshot.generation, *expected, "case {i}");
        }
    }
}

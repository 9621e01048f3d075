//! The probe call behind the scheduler: what one probe needs ([`ProbeJob`], a
//! [`ViewSnapshot`], both clocks in [`Now`]) and who runs it ([`PairProber`]).
//!
//! ```text
//! ProbeLoop ──ProbeJob + Arc<ViewSnapshot>──> PairProber::probe ──> PairReports (one, or one per
//!                                               │                     resolved address of a host)
//!                                               ├─ PipelineProber: Pipeline::probe_pair_in, with the
//!                                               │  policy engine built once per snapshot generation
//!                                               └─ tests: a closure (no netns, no root)
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use probe_spec::Expectation;

use crate::cluster::Index;
use crate::cluster::changes::ChangeLog;
use crate::pair::{Pair, PairId};
use crate::pipeline::{PairReports, Pipeline, ProbeContext};

/// One reading of both clocks: the timetable runs on `instant`, the change log stamps `wall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn current() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// The copies of the cluster view that probes run against.
#[derive(Debug)]
pub struct ViewSnapshot {
    /// Increases with every new snapshot (probers cache per-view work by it).
    pub generation: u64,
    pub index: Index,
    pub changes: ChangeLog,
}

/// One pair to probe, with its spec's intent and timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeJob {
    pub pair: Pair,
    pub expect: Expectation,
    pub timeout: Duration,
}

/// Probes one pair and diagnoses it: one report, or one per resolved address of a host target.
/// The agent uses [`PipelineProber`]; tests pass a closure
/// `Fn(Arc<ViewSnapshot>, ProbeJob) -> BoxFuture<'static, PairReports>`.
pub trait PairProber: Send + Sync + 'static {
    fn probe(&self, view: Arc<ViewSnapshot>, job: ProbeJob) -> BoxFuture<'static, PairReports>;

    /// The pairs are gone for good: drop anything remembered about them.
    fn forget(&self, _ids: &[PairId]) {}
}

impl<F> PairProber for F
where
    F: Fn(Arc<ViewSnapshot>, ProbeJob) -> BoxFuture<'static, PairReports> + Send + Sync + 'static,
{
    fn probe(&self, view: Arc<ViewSnapshot>, job: ProbeJob) -> BoxFuture<'static, PairReports> {
        self(view, job)
    }
}

/// The real prober: the [`Pipeline`], with its policy engine built once per snapshot.
pub struct PipelineProber {
    pipeline: Arc<Pipeline>,
    /// The context of the latest snapshot, by generation.
    context: Mutex<Option<(u64, Arc<ProbeContext>)>>,
}

impl fmt::Debug for PipelineProber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineProber").finish_non_exhaustive()
    }
}

impl PipelineProber {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            pipeline,
            context: Mutex::new(None),
        }
    }

    fn context_for(&self, view: &ViewSnapshot) -> Arc<ProbeContext> {
        let mut cached = self.context.lock();
        match &*cached {
            Some((generation, context)) if *generation == view.generation => context.clone(),
            _ => {
                let context = Arc::new(self.pipeline.context(&view.index, &view.changes));
                *cached = Some((view.generation, context.clone()));
                context
            }
        }
    }
}

impl PairProber for PipelineProber {
    fn probe(&self, view: Arc<ViewSnapshot>, job: ProbeJob) -> BoxFuture<'static, PairReports> {
        let context = self.context_for(&view);
        let pipeline = self.pipeline.clone();
        Box::pin(async move {
            let ProbeJob {
                pair,
                expect,
                timeout,
            } = job;
            pipeline
                .probe_pair_in(&context, &view.index, &pair, expect, timeout, &view.changes)
                .await
        })
    }

    fn forget(&self, ids: &[PairId]) {
        self.pipeline.forget_pairs(ids);
    }
}

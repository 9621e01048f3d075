//! The ProbeRequest runner: the agent on the source pod's node runs each ProbeRequest once and
//! writes the result and diagnosis to its status.
//!
//! ```text
//! view.requests ──runnable_here(node, handled UIDs)──> Runnable ──prepare(index)──┐
//!   Err(why) ──────────────────────────────────────────────────────────────────────┴─> status Failed
//!   Ok(PreparedRequest) ──> status Running ──> OnDemandProber::probe_once × count (shared snapshot)
//!                       ──summarize()──> status Succeeded (outcome, verdict, reason, summary, ...)
//!                                        or Failed when no probe could run at all
//! ```
//!
//! - **Who runs it.** Only the agent on the node of the source pod (`spec.from.pod`, in the
//!   request's namespace); the others skip it. A request whose source pod is unknown to the
//!   index is left alone: no agent can claim it, and `netreach probe` times out saying so.
//! - **Once.** A request with a terminal phase (Succeeded, Failed) is done. Every request this
//!   agent starts is remembered by UID until it leaves the store, so status writes (which move
//!   the store) never start it again. A request left `Running` by an agent that restarted is
//!   run again by the new one: nobody else would finish it.
//! - **Bounds.** At most `max_concurrent` requests run at once, each in its own task; `count`
//!   probes of one request run one after another (UDP ones 1 s apart: responders rate-limit
//!   ICMP errors per destination).
//! - **Status writes** are retried three times; a final status that still cannot be written is
//!   logged and the request stays `Running` until an agent on the node restarts.
//! - **Shutdown.** Requests in flight get the grace period, then are abandoned (still
//!   `Running`; the next agent on the node runs them again).
//! - **Memory.** The view keeps only this node's requests ([`kept_here`]: to run here, or
//!   finished here), re-checked at every scan; other nodes' requests are dropped as they arrive.
//! - **Clean-up.** A request this node finished is deleted `ttlSecondsAfterFinished` (default
//!   1 h) after it finished ([`expired`]), at most [`MAX_DELETES_PER_SCAN`] per scan, with a UID
//!   precondition.

mod decide;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use probe_spec::{ProbeRequest, ProbeRequestStatus};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use self::decide::now;
pub use self::decide::{
    PreparedRequest, Runnable, expired, failed_status, is_done, kept_here, prepare, request_uid,
    runnable_here, running_status, summarize, target_label,
};
use crate::api::OnDemandProber;
use crate::cluster::model::{ObjectRef, Protocol};
use crate::cluster::watch::backoff::WatchBackoff;
use crate::cluster::watch::{ClusterView, lookup};
use crate::pair::PairReport;
use crate::report::status::{RequestStatusWriter, Written};

/// Time between two UDP probes of one request.
pub const UDP_PROBE_SPACING: Duration = Duration::from_secs(1);
/// How often the store is scanned even when nothing wakes the runner.
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// How long the final status is retried through an API outage before it is given up (with an
/// error in the log): the requester's CLI waits at most a minute, the ProbeRequest's TTL longer.
const FINAL_STATUS_DEADLINE: Duration = Duration::from_secs(600);
/// Expired requests deleted per scan, so a backlog never floods the API server.
pub const MAX_DELETES_PER_SCAN: usize = 16;
/// A deletion that did not take is sent again after this long.
const DELETE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Settings of the runner.
#[derive(Clone, Debug)]
pub struct RequestRunnerConfig {
    /// This agent's node.
    pub node: String,
    /// Requests running at once.
    pub max_concurrent: usize,
    /// On shutdown, how long requests in flight may still take.
    pub shutdown_grace: Duration,
}

impl RequestRunnerConfig {
    pub fn new(node: impl Into<String>, shutdown_grace: Duration) -> Self {
        Self {
            node: node.into(),
            max_concurrent: 4,
            shutdown_grace,
        }
    }
}

// === impl RequestRunner ===

/// What every request task shares.
struct Shared {
    node: String,
    view: ClusterView,
    prober: Arc<dyn OnDemandProber>,
    writer: RequestStatusWriter,
}

/// Runs the ProbeRequests whose source pod is on this node.
pub struct RequestRunner {
    config: RequestRunnerConfig,
    shared: Arc<Shared>,
    /// UIDs of the requests started here and still in the store.
    handled: HashSet<String>,
    /// UIDs of expired requests whose deletion was sent, and when (tried again after
    /// [`DELETE_RETRY_AFTER`] if the request is still there).
    deleting: HashMap<String, std::time::Instant>,
}

impl fmt::Debug for RequestRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRunner")
            .field("config", &self.config)
            .field("handled", &self.handled.len())
            .finish_non_exhaustive()
    }
}

impl RequestRunner {
    pub fn new(
        config: RequestRunnerConfig,
        view: ClusterView,
        prober: Arc<dyn OnDemandProber>,
        writer: RequestStatusWriter,
    ) -> Self {
        let (index, node) = (view.index.clone(), config.node.clone());
        view.requests
            .write()
            .set_keep(move |key, request| kept_here(key, request, &index.read(), &node));
        let shared = Arc::new(Shared {
            node: config.node.clone(),
            view,
            prober,
            writer,
        });
        Self {
            config,
            shared,
            handled: HashSet::new(),
            deleting: HashMap::new(),
        }
    }

    /// Runs until `shutdown` turns true, then gives requests in flight the grace period.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut updates = self.shared.view.subscribe();
        tokio::select! {
            () = self.shared.view.readiness.wait() => {}
            () = super::stop_requested(&mut shutdown) => return,
        }
        info!("ProbeRequest runner started");
        let mut running: JoinSet<()> = JoinSet::new();
        loop {
            self.start_runnable(&mut running);
            tokio::select! {
                () = super::stop_requested(&mut shutdown) => break,
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Err(error) = done {
                        error!(%error, "a ProbeRequest task failed");
                    }
                }
                // The sender lives in the view this runner holds, so this never fails.
                _ = updates.changed() => {}
                () = tokio::time::sleep(RESCAN_EVERY) => {}
            }
        }
        if !running.is_empty() {
            info!(running = running.len(), grace = ?self.config.shutdown_grace, "waiting for ProbeRequests in flight");
            let drained = tokio::time::timeout(self.config.shutdown_grace, async {
                while running.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                warn!(
                    abandoned = running.len(),
                    "shutdown grace period over; abandoning ProbeRequests"
                );
                running.abort_all();
            }
        }
    }

    /// Starts what can run now, within `max_concurrent`, deletes what expired, and forgets
    /// requests that left.
    fn start_runnable(&mut self, running: &mut JoinSet<()>) {
        let requests: Vec<(ObjectRef, Arc<ProbeRequest>)> = {
            let mut store = self.shared.view.requests.write();
            // Source pods that were unknown may have shown up on other nodes since.
            store.retain_kept();
            store
                .iter()
                .map(|(key, request)| (key.clone(), request.clone()))
                .collect()
        };
        let present: HashSet<String> = requests
            .iter()
            .map(|(key, request)| request_uid(key, request))
            .collect();
        self.handled.retain(|uid| present.contains(uid));
        let retry_before = std::time::Instant::now().checked_sub(DELETE_RETRY_AFTER);
        self.deleting.retain(|uid, sent| {
            present.contains(uid) && retry_before.is_none_or(|before| *sent > before)
        });
        self.delete_expired(&requests, running);
        if running.len() >= self.config.max_concurrent {
            return;
        }
        let runnable = {
            let index = self.shared.view.index.read();
            runnable_here(&requests, &index, &self.config.node, &self.handled)
        };
        for Runnable { key, uid, prepared } in runnable {
            if running.len() >= self.config.max_concurrent {
                break;
            }
            self.handled.insert(uid);
            let request = requests
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, request)| request.clone());
            let span = info_span!("probe_request", request = %key);
            let shared = self.shared.clone();
            running.spawn(
                async move {
                    let prepared = match request {
                        Some(request) => fetch_and_prepare(&shared, &key, &request, prepared).await,
                        None => prepared,
                    };
                    handle(shared, key, prepared).await;
                }
                .instrument(span),
            );
        }
    }
}

impl RequestRunner {
    /// Sends the deletion of requests this node finished whose TTL ran out.
    fn delete_expired(
        &mut self,
        requests: &[(ObjectRef, Arc<ProbeRequest>)],
        running: &mut JoinSet<()>,
    ) {
        let now = now().0;
        let expired_here = requests
            .iter()
            .filter(|(_, request)| expired(request, &self.config.node, &now))
            .filter(|(key, request)| !self.deleting.contains_key(&request_uid(key, request)))
            .take(MAX_DELETES_PER_SCAN)
            .map(|(key, request)| (key.clone(), request_uid(key, request)))
            .collect::<Vec<_>>();
        for (key, uid) in expired_here {
            self.deleting.insert(uid.clone(), std::time::Instant::now());
            let shared = self.shared.clone();
            let span = info_span!("probe_request", request = %key);
            running.spawn(
                async move {
                    match shared.writer.delete(&key, &uid).await {
                        Ok(_) => info!("deleted the finished ProbeRequest (ttlSecondsAfterFinished)"),
                        Err(error) => warn!(%error, "cannot delete the finished ProbeRequest; trying again later"),
                    }
                }
                .instrument(span),
            );
        }
    }
}

/// In a node-scoped view, fetches the destination the watches do not hold (a pod, or who holds
/// an address) and resolves the request again with it; otherwise `prepared` as it is.
async fn fetch_and_prepare(
    shared: &Shared,
    key: &ObjectRef,
    request: &ProbeRequest,
    prepared: Result<PreparedRequest, String>,
) -> Result<PreparedRequest, String> {
    let Some(lookup) = shared.view.lookup() else {
        return prepared;
    };
    let missing = lookup::missing(&shared.view.index.read(), &key.namespace, &request.spec.to);
    if missing.is_none() {
        return prepared;
    }
    lookup
        .fetch_destination(&key.namespace, &request.spec.to)
        .await;
    decide::prepare(&shared.view.index.read(), key, request)
}

/// Runs one request and writes its status.
async fn handle(shared: Arc<Shared>, key: ObjectRef, prepared: Result<PreparedRequest, String>) {
    let started = now();
    let status = match prepared {
        Err(message) => {
            info!(%message, "ProbeRequest cannot run");
            failed_status(&shared.node, None, message, &started, &now())
        }
        Ok(request) => {
            // Once: the final status supersedes it, so it is not worth waiting for.
            write_status(
                &shared.writer,
                &key,
                &running_status(&shared.node, &request.target, &started),
                Duration::ZERO,
            )
            .await;
            info!(from = %request.from, target = %request.target, count = request.count, "running ProbeRequest");
            match probe_all(&shared, &request).await {
                Ok(reports) => summarize(&shared.node, &request.target, &reports, &started, &now()),
                Err(message) => {
                    info!(%message, "ProbeRequest could not run");
                    failed_status(&shared.node, None, message, &started, &now())
                }
            }
        }
    };
    write_status(&shared.writer, &key, &status, FINAL_STATUS_DEADLINE).await;
}

/// Probes `count` times (on the on-demand prober's shared snapshot); `Err` when the first
/// probe cannot run, otherwise what ran.
async fn probe_all(shared: &Shared, request: &PreparedRequest) -> Result<Vec<PairReport>, String> {
    let spacing = match request.target.port() {
        Some((_, Protocol::Udp)) => UDP_PROBE_SPACING,
        _ => Duration::ZERO,
    };
    let mut reports = Vec::with_capacity(request.count as usize);
    for probe in 0..request.count {
        if probe > 0 && !spacing.is_zero() {
            tokio::time::sleep(spacing).await;
        }
        match shared
            .prober
            .probe_once(&request.from, request.target.clone(), request.timeout)
            .await
        {
            Ok(report) => reports.push(report),
            Err(message) if reports.is_empty() => return Err(message),
            Err(message) => {
                info!(%message, done = reports.len(), "stopping the ProbeRequest's probes");
                break;
            }
        }
    }
    Ok(reports)
}

/// Writes a status; a transient failure (the API away or overloaded) is retried with the write
/// backoff (1 s doubling to 30 s, jittered) until `retry_for` has passed, then given up with an
/// error in the log, never silently. A refusal (403, 422) is not retried.
async fn write_status(
    writer: &RequestStatusWriter,
    key: &ObjectRef,
    status: &ProbeRequestStatus,
    retry_for: Duration,
) {
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut backoff =
        WatchBackoff::for_writes(WatchBackoff::seed(u64::from(key.name.len() as u32)));
    loop {
        match writer.write(key, status).await {
            Ok(Written::Gone) => {
                info!(phase = ?status.phase, "ProbeRequest deleted before its status was written");
                return;
            }
            Ok(_) => {
                info!(phase = ?status.phase, verdict = ?status.verdict, "ProbeRequest status written");
                return;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                if !error.is_transient() || tokio::time::Instant::now() + delay > deadline {
                    let level_error = !retry_for.is_zero();
                    if level_error {
                        tracing::error!(%error, error.kind = error.metric_label(), phase = ?status.phase, "cannot write ProbeRequest status; giving up");
                    } else {
                        warn!(%error, error.kind = error.metric_label(), phase = ?status.phase, "cannot write ProbeRequest status");
                    }
                    return;
                }
                warn!(%error, ?delay, "cannot write ProbeRequest status; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The runner's pure decisions: which requests this node runs ([`runnable_here`]), what each
//! one resolves to in the index ([`prepare`]), and what its status says ([`running_status`],
//! [`failed_status`], [`summarize`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use probe_spec::{ProbeRequest, ProbeRequestPhase, ProbeRequestStatus};

use crate::cluster::Index;
use crate::cluster::model::ObjectRef;
use crate::pair::{PairReport, PairTarget};
use crate::probe::Outcome;
use crate::schedule::{ResolvedRequest, resolve_request};

/// A request this node should run, with what [`prepare`] made of it.
#[derive(Debug)]
pub struct Runnable {
    pub key: ObjectRef,
    pub uid: String,
    pub prepared: Result<PreparedRequest, String>,
}

/// A request resolved against the index, ready to probe.
pub type PreparedRequest = ResolvedRequest;

/// The UID a request is remembered by (its key when the object has none, as in tests).
pub fn request_uid(key: &ObjectRef, request: &ProbeRequest) -> String {
    request
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| key.to_string())
}

/// The requests this node should start now: not done, not already started here, and with a
/// source pod on `node`; each prepared against `index`.
pub fn runnable_here(
    requests: &[(ObjectRef, Arc<ProbeRequest>)],
    index: &Index,
    node: &str,
    handled: &HashSet<String>,
) -> Vec<Runnable> {
    requests
        .iter()
        .filter(|(_, request)| !is_done(request))
        .filter(|(key, request)| {
            let from = ObjectRef::new(key.namespace.clone(), request.spec.from.pod.as_str());
            index.pod(&from).and_then(|p| p.node_name.as_deref()) == Some(node)
        })
        .filter_map(|(key, request)| {
            let uid = request_uid(key, request);
            (!handled.contains(&uid)).then(|| Runnable {
                key: key.clone(),
                uid,
                prepared: prepare(index, key, request),
            })
        })
        .collect()
}

/// Whether the request reached a terminal phase.
pub fn is_done(request: &ProbeRequest) -> bool {
    matches!(
        request.status.as_ref().map(|s| s.phase),
        Some(ProbeRequestPhase::Succeeded | ProbeRequestPhase::Failed)
    )
}

/// Checks the request and resolves its source and target in `index`
/// ([`resolve_request`], shared with `POST /v1/probe`); `Err` says, for the status message,
/// why it cannot run.
pub fn prepare(
    index: &Index,
    key: &ObjectRef,
    request: &ProbeRequest,
) -> Result<PreparedRequest, String> {
    let resolved =
        resolve_request(index, &key.namespace, &request.spec).map_err(|error| error.to_string())?;
    // The report would name the pod, its ports and its namespace's policies. Who created the
    // request is not recorded on it, so the agent cannot check that they may read pods there;
    // as `to.pod`, the chart's admission policy checks it.
    if let PairTarget::Ip { ip, .. } = &resolved.target
        && let Some(pod) = index
            .pod_by_ip(*ip)
            .filter(|pod| *pod.namespace != *key.namespace)
    {
        return Err(format!(
            "spec.to.ip {ip} is the IP of pod {}/{} in another namespace: probe it as \
             spec.to.pod (namespace {}, name {}) so that reading pods there is checked",
            pod.namespace, pod.name, pod.namespace, pod.name
        ));
    }
    Ok(resolved)
}

/// The `status.target` form: `ns/pod:8443/TCP`, `10.0.0.1:53/UDP`, or the DNS name.
pub fn target_label(target: &PairTarget) -> String {
    match target {
        PairTarget::Dns { name } => name.to_string(),
        other => other.to_string(),
    }
}

/// The status while the probes run.
pub fn running_status(node: &str, target: &PairTarget, started: &Time) -> ProbeRequestStatus {
    ProbeRequestStatus {
        phase: ProbeRequestPhase::Running,
        node: Some(node.to_string()),
        target: Some(target_label(target)),
        started_at: Some(started.clone()),
        ..ProbeRequestStatus::default()
    }
}

/// The status of a request that cannot run.
pub fn failed_status(
    node: &str,
    target: Option<&PairTarget>,
    message: String,
    started: &Time,
    completed: &Time,
) -> ProbeRequestStatus {
    ProbeRequestStatus {
        phase: ProbeRequestPhase::Failed,
        node: Some(node.to_string()),
        target: target.map(target_label),
        started_at: Some(started.clone()),
        completed_at: Some(completed.clone()),
        message: Some(message),
        ..ProbeRequestStatus::default()
    }
}

/// The final status from the reports of every probe: the most frequent outcome (ties: the
/// one seen first) with the diagnosis of its latest report, the outcome counts when there was
/// more than one probe, and the median latency. Failed when no probe could run at all.
pub fn summarize(
    node: &str,
    target: &PairTarget,
    reports: &[PairReport],
    started: &Time,
    completed: &Time,
) -> ProbeRequestStatus {
    let Some(last) = reports.last() else {
        return failed_status(
            node,
            Some(target),
            "no probe ran".into(),
            started,
            completed,
        );
    };
    if reports.iter().all(|r| r.outcome == Outcome::NotProbed) {
        let detail = Some(&*last.probe_detail)
            .filter(|detail| !detail.is_empty())
            .unwrap_or(&last.summary);
        return failed_status(
            node,
            Some(target),
            format!("the probe could not run: {detail}"),
            started,
            completed,
        );
    }
    let mut counts: BTreeMap<&'static str, u32> = BTreeMap::new();
    for report in reports {
        *counts.entry(report.outcome.as_str()).or_default() += 1;
    }
    // Most frequent; among equals, the one seen first.
    let mut most: Option<(u32, Outcome)> = None;
    for report in reports {
        let count = counts[report.outcome.as_str()];
        if most.is_none_or(|(best, _)| count > best) {
            most = Some((count, report.outcome));
        }
    }
    let outcome = most.map_or(last.outcome, |(_, outcome)| outcome);
    let representative = reports
        .iter()
        .rev()
        .find(|r| r.outcome == outcome)
        .unwrap_or(last);
    let mut latencies: Vec<f64> = reports.iter().map(|r| r.latency_seconds).collect();
    latencies.sort_by(f64::total_cmp);
    let median = match latencies.len() {
        0 => None,
        n if n % 2 == 1 => Some(latencies[n / 2]),
        n => Some((latencies[n / 2 - 1] + latencies[n / 2]) / 2.0),
    };
    ProbeRequestStatus {
        phase: ProbeRequestPhase::Succeeded,
        node: Some(node.to_string()),
        target: Some(target_label(target)),
        outcome: Some(outcome.as_str().to_string()),
        outcomes: if reports.len() > 1 {
            counts
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        } else {
            BTreeMap::new()
        },
        verdict: Some(representative.verdict),
        reason: representative
            .reason
            .map(|reason| reason.as_str().to_string()),
        direction: representative.direction,
        policies: representative
            .policies
            .iter()
            .map(ToString::to_string)
            .collect(),
        summary: Some(representative.summary.to_string()),
        explanation: Some(representative.full_explanation()).filter(|e| !e.is_empty()),
        latency_seconds: median,
        started_at: Some(started.clone()),
        completed_at: Some(completed.clone()),
        message: None,
    }
}

/// Whether this node's agent keeps `request` in its view: a request still to run whose source
/// pod runs here (or is not known yet), or one this node finished (until its TTL deletes it).
/// Other nodes' requests are dropped, so a namespace's create permission does not grow every
/// agent's memory.
pub fn kept_here(key: &ObjectRef, request: &ProbeRequest, index: &Index, node: &str) -> bool {
    if is_done(request) {
        return request.status.as_ref().and_then(|s| s.node.as_deref()) == Some(node);
    }
    let from = ObjectRef::new(key.namespace.clone(), request.spec.from.pod.as_str());
    match index.pod(&from) {
        Some(pod) => pod.node_name.as_deref() == Some(node),
        // Its pod may not have reached this view yet; decided again at every scan.
        None => true,
    }
}

/// Whether a request this node finished has outlived `ttlSecondsAfterFinished` at `now`.
pub fn expired(request: &ProbeRequest, node: &str, now: &Timestamp) -> bool {
    let Some(status) = request.status.as_ref().filter(|_| is_done(request)) else {
        return false;
    };
    if status.node.as_deref() != Some(node) {
        return false;
    }
    let finished = status
        .completed_at
        .as_ref()
        .or(status.started_at.as_ref())
        .map(|time| time.0)
        .or_else(|| request.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let Some(finished) = finished else {
        return false;
    };
    let ttl = request.spec.ttl_after_finished();
    let ttl = k8s_openapi::jiff::SignedDuration::try_from(ttl)
        .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
    finished
        .checked_add(ttl)
        .is_ok_and(|deadline| *now >= deadline)
}

pub(super) fn now() -> Time {
    Time(Timestamp::now())
}

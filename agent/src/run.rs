//! The one pipeline every mode shares: plan the pairs of each ProbeSpec, probe each from
//! inside its source pod's network namespace, predict it with the policy engine, diagnose it
//! against CNI/node/pod health, and hand back `PairReport`s for metrics, the API and output.
//!
//! ```text
//! Index + ProbeSpecs ─> schedule::plan ─> pairs ─> netns registry (source pod's netns)
//!                                           │             │
//!                                           │        probe (TCP/UDP/DNS) ─> Observation
//!                                           └─> policy::Engine ─> Verdict ─┐
//!                    CNI agents / nodes / pods ─> diagnose::Health ───────┼─> diagnose ─> PairReport
//! ```
//!
//! `agent` feeds it from kube watchers and `demo` from a testbed's snapshot; only the source
//! of objects and the node scope differ. This is the only module that wires the layers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use parking_lot::Mutex;
use probe_spec::{Expectation, ProbeSpec};
use tracing::{debug, warn};

use crate::api::PairReport;
use crate::cluster::Index;
use crate::cluster::changes::ChangeLog;
use crate::cluster::model::ObjectRef;
use crate::cluster::watch::{CniAgentMatcher, cni_agents_by_node};
use crate::diagnose::{self, CniHealth, Health, Input, Prediction};
use crate::netns::{PodNetns, PodNetnsRegistry, Resolution};
use crate::policy::{Engine, Profile};
use crate::probe::{DnsConfig, NotProbedReason, Observation, Outcome, Prober};
use crate::schedule::{self, Pair, PairId, PairTarget};

/// Which nodes' source pods a round probes: the agent's own node, or every node (the demo
/// plays all agents of its simulated cluster at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeScope {
    Node(String),
    All,
}

/// Settings of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub profile: Profile,
    /// Probes in flight at once, across all specs.
    pub concurrency: usize,
    pub cni: CniAgentMatcher,
    pub diagnose: diagnose::Config,
    /// CNI agent restarts the change log saw within this window make the agent unhealthy for
    /// the diagnosis ("restarts in the last window").
    pub cni_restart_window: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            profile: Profile::default(),
            concurrency: 64,
            cni: CniAgentMatcher::builtin(),
            diagnose: diagnose::Config::default(),
            cni_restart_window: DEFAULT_CNI_RESTART_WINDOW,
        }
    }
}

/// How far back a CNI agent restart still counts against its health.
pub const DEFAULT_CNI_RESTART_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What every probe of one cluster view shares, built once per view: the compiled policy
/// engine and the CNI agent health. Building the engine compiles every policy's selectors
/// against every pod, so a caller that probes many pairs of one view builds it once
/// ([`Pipeline::context`]) and passes it to [`Pipeline::probe_pair_in`].
#[derive(Debug)]
pub struct ProbeContext {
    engine: Engine,
    cni: Vec<CniHealth>,
}

/// What one round produced.
#[derive(Debug, Default)]
pub struct Round {
    /// Every probed pair, sorted by spec, source and destination.
    pub reports: Vec<PairReport>,
    /// Specs that could not be planned, with why (`ns/name: ...`).
    pub problems: Vec<String>,
    /// Pods left out of the plans (not Running, no IP, hostNetwork sources, ...).
    pub skipped: usize,
}

/// Probes, predicts and diagnoses pairs.
#[derive(Debug)]
pub struct Pipeline {
    prober: Prober,
    registry: PodNetnsRegistry,
    config: PipelineConfig,
    /// When each failing pair's current failure streak began (for the change hints).
    first_failures: Mutex<HashMap<PairId, SystemTime>>,
}

/// One planned pair with the context its diagnosis needs.
struct Job<'a> {
    pair: &'a Pair,
    expect: Expectation,
    timeout: Duration,
}

impl Pipeline {
    pub fn new(prober: Prober, config: PipelineConfig) -> Self {
        Self {
            prober,
            registry: PodNetnsRegistry::new(),
            config,
            first_failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn registry(&self) -> &PodNetnsRegistry {
        &self.registry
    }

    /// Plans every spec for the scope, probes every pair once and diagnoses it.
    pub async fn round(
        &self,
        index: &Index,
        specs: &[ProbeSpec],
        scope: &NodeScope,
        changes: &ChangeLog,
    ) -> Round {
        let mut round = Round::default();
        let nodes: Vec<String> = match scope {
            NodeScope::Node(name) => vec![name.clone()],
            NodeScope::All => {
                let mut names: Vec<String> =
                    index.pods().filter_map(|p| p.node_name.clone()).collect();
                names.extend(index.nodes().map(|n| n.name.clone()));
                names.sort();
                names.dedup();
                names
            }
        };
        let mut plans = Vec::new();
        for spec in specs {
            for node in &nodes {
                match schedule::plan(index, spec, node) {
                    Ok(plan) => {
                        round.skipped += plan.skipped.sources.total();
                        plans.push(plan);
                    }
                    Err(error) => {
                        let name = format!(
                            "{}/{}",
                            spec.metadata.namespace.as_deref().unwrap_or(""),
                            spec.metadata.name.as_deref().unwrap_or("")
                        );
                        round.problems.push(format!("ProbeSpec {name}: {error}"));
                        break;
                    }
                }
            }
        }
        let ProbeContext { engine, cni } = self.context(index, changes);
        let jobs: Vec<Job<'_>> = plans
            .iter()
            .flat_map(|plan| {
                plan.pairs.iter().map(move |pair| Job {
                    pair,
                    expect: plan.expect,
                    timeout: plan.timeout,
                })
            })
            .collect();
        let concurrency = self.config.concurrency.max(1);
        let mut reports: Vec<PairReport> = futures::stream::iter(jobs)
            .map(|job| self.run_job(job, index, &engine, &cni, changes))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        reports.sort_by(|a, b| {
            (&a.spec, &a.from, &a.to, &a.dns, a.port)
                .cmp(&(&b.spec, &b.from, &b.to, &b.dns, b.port))
        });
        round.reports = reports;
        round
    }

    async fn run_job(
        &self,
        job: Job<'_>,
        index: &Index,
        engine: &Engine,
        cni: &[CniHealth],
        changes: &ChangeLog,
    ) -> PairReport {
        let Job {
            pair,
            expect,
            timeout,
        } = job;
        let (observation, dns_server) = self.observe(index, pair, timeout).await;
        let prediction = diagnose::predict(engine, &pair.from, &pair.target, dns_server);
        let health = Health::gather(index, cni, &pair.from, pair.target.pod());
        let now = SystemTime::now();
        let first_failure = {
            let mut streaks = self.first_failures.lock();
            // A probe that did not run neither starts nor ends a failure streak.
            if observation.outcome == Outcome::NotProbed {
                streaks.get(&pair.id).copied()
            } else if observation.outcome.is_reachable()
                && !matches!(observation.outcome, Outcome::Refused)
            {
                streaks.remove(&pair.id);
                None
            } else {
                Some(*streaks.entry(pair.id).or_insert(now))
            }
        };
        let input = Input {
            from: &pair.from,
            target: &pair.target,
            outcome: observation.outcome,
            not_probed: observation.not_probed,
            expects_reply: observation.expects_reply,
            mesh_redirected: observation.mesh_redirected,
            rejected_by_policy: observation.rejected_by_policy,
            prediction: prediction
                .as_ref()
                .map(|(flow, verdict)| Prediction { flow, verdict }),
            health: &health,
            changes,
            expect,
            first_failure,
        };
        let diagnosis = diagnose::diagnose(&input, &self.config.diagnose);
        let reason = diagnosis.reason_code();
        let mut explanation = diagnosis.explanation;
        if !observation.detail.is_empty() {
            explanation.push_str(&format!("\nprobe: {}", observation.detail));
        }
        let mut report = report(
            pair,
            expect,
            &observation,
            prediction.as_ref().is_none_or(|(_, v)| v.allowed),
            diagnosis.verdict,
            reason,
            diagnosis.direction,
            diagnosis.policies,
            diagnosis.summary,
            explanation,
            diagnosis.hints.iter().map(ToString::to_string).collect(),
            diagnosis.meets_expectation,
        );
        report.mesh = index
            .pod(&pair.from)
            .and_then(|p| p.mesh)
            .map(|m| m.kind().to_string());
        report
    }

    /// One on-demand probe (a ProbeRequest or `POST /v1/probe`): probed, predicted and
    /// diagnosed like a ProbeSpec pair, judged against `expect: Allow`, reported without a spec.
    pub async fn probe_once(
        &self,
        index: &Index,
        from: &ObjectRef,
        target: PairTarget,
        timeout: Duration,
        changes: &ChangeLog,
    ) -> PairReport {
        let spec = ObjectRef::new("", "");
        let pair = Pair {
            id: schedule::pair_id(&spec, from, &target),
            spec,
            from: from.clone(),
            target,
        };
        let context = self.context(index, changes);
        let job = Job {
            pair: &pair,
            expect: Expectation::Allow,
            timeout,
        };
        let mut report = self
            .run_job(job, index, &context.engine, &context.cni, changes)
            .await;
        report.spec = None;
        report.expect = None;
        report
    }

    /// The policy engine and CNI health of one view, for [`Pipeline::probe_pair_in`]. Also
    /// releases the netns handles (and spare sockets) of pods the view no longer has.
    pub fn context(&self, index: &Index, changes: &ChangeLog) -> ProbeContext {
        let live: std::collections::HashSet<String> = index
            .pods()
            .map(|pod| pod.uid.to_ascii_lowercase())
            .collect();
        self.registry.retain(|uid| live.contains(uid));
        ProbeContext {
            engine: Engine::new(index, self.config.profile.clone()),
            cni: self.cni_health(index, changes),
        }
    }

    /// One scheduled pair, probed, predicted and diagnosed against its spec's `expect`. Builds
    /// the view's [`ProbeContext`] on each call; the agent's scheduler, which probes many
    /// pairs of one view, builds it once and calls [`Pipeline::probe_pair_in`].
    pub async fn probe_pair(
        &self,
        index: &Index,
        pair: &Pair,
        expect: Expectation,
        timeout: Duration,
        changes: &ChangeLog,
    ) -> PairReport {
        let context = self.context(index, changes);
        self.probe_pair_in(&context, index, pair, expect, timeout, changes)
            .await
    }

    /// [`Pipeline::probe_pair`] with a context built from the same `index` and `changes`.
    pub async fn probe_pair_in(
        &self,
        context: &ProbeContext,
        index: &Index,
        pair: &Pair,
        expect: Expectation,
        timeout: Duration,
        changes: &ChangeLog,
    ) -> PairReport {
        let job = Job {
            pair,
            expect,
            timeout,
        };
        self.run_job(job, index, &context.engine, &context.cni, changes)
            .await
    }

    /// Drops what the pipeline remembers about pairs that no longer exist (their failure
    /// streaks), so a long-running agent does not accumulate them.
    pub fn forget_pairs(&self, ids: &[PairId]) {
        let mut streaks = self.first_failures.lock();
        for id in ids {
            streaks.remove(id);
        }
    }

    /// CNI agent health per node from the pods in the index, with the restarts the change log
    /// saw within `cni_restart_window` (a snapshot's empty log: none).
    fn cni_health(&self, index: &Index, changes: &ChangeLog) -> Vec<CniHealth> {
        let since = SystemTime::now()
            .checked_sub(self.config.cni_restart_window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        cni_agents_by_node(index, &self.config.cni)
            .into_iter()
            .flat_map(|(node, agents)| {
                agents.into_iter().map(move |a| CniHealth {
                    node: node.clone(),
                    ready: a.ready,
                    restarts_in_window: changes.cni_restarts_in_window(&a.pod, since),
                    pod: a.pod,
                })
            })
            .collect()
    }

    /// Probes one pair from its source pod's netns; also returns the DNS server of a DNS
    /// probe (for the prediction of the lookup's own flow).
    async fn observe(
        &self,
        index: &Index,
        pair: &Pair,
        timeout: Duration,
    ) -> (Observation, Option<std::net::IpAddr>) {
        let pod = match self.source_netns(index, &pair.from).await {
            Ok(pod) => pod,
            Err((reason, why)) => {
                return (
                    not_probed(
                        reason,
                        format!("cannot enter the source pod's network namespace: {why}"),
                    ),
                    None,
                );
            }
        };
        let result = match &pair.target {
            PairTarget::Pod {
                ip, port, protocol, ..
            }
            | PairTarget::Ip { ip, port, protocol } => {
                let addr = SocketAddr::new(*ip, *port);
                let source = index.pod(&pair.from);
                // A pod probing its own IP goes out as itself: with the proxy's uid, Istio
                // would send that connection to the proxy's inbound listener.
                let mesh = source.filter(|p| !p.ips.contains(ip)).and_then(|p| p.mesh);
                self.prober
                    .probe_from(&pod.handle, addr, *protocol, timeout, mesh)
                    .await
            }
            PairTarget::Dns { name } => {
                let config = match DnsConfig::for_pod(&pod) {
                    Ok(config) => config,
                    Err(error) => {
                        return (
                            not_probed(
                                error.not_probed_reason(),
                                format!("reading the pod's resolv.conf: {error}"),
                            ),
                            None,
                        );
                    }
                };
                let server = config.nameservers().first().copied();
                let result = self
                    .prober
                    .probe_dns(&pod.handle, &config, name, timeout)
                    .await;
                return (result.unwrap_or_else(not_probed_by), server);
            }
            PairTarget::Host { name, .. } => {
                return (
                    not_probed(
                        NotProbedReason::ResolveFailed,
                        format!(
                            "host targets ({name}) are not probed yet; use a dns target and an ip target"
                        ),
                    ),
                    None,
                );
            }
        };
        (result.unwrap_or_else(not_probed_by), None)
    }

    async fn source_netns(
        &self,
        index: &Index,
        from: &ObjectRef,
    ) -> Result<PodNetns, (NotProbedReason, String)> {
        let pod = index.pod(from).ok_or_else(|| {
            (
                NotProbedReason::NetnsNotFound,
                format!("pod {from} is gone"),
            )
        })?;
        match self
            .registry
            .resolve(self.prober.factory(), &pod.uid, pod.ips.first().copied())
            .await
        {
            Ok(Resolution::Pod(netns)) => Ok(netns),
            Ok(Resolution::HostNetwork { .. }) => Err((
                NotProbedReason::HostNetworkSource,
                format!("pod {from} uses the host network"),
            )),
            Err(error) => {
                debug!(%from, %error, "source netns not found");
                Err((NotProbedReason::from(&error), error.to_string()))
            }
        }
    }
}

/// An observation for a probe that could not run: nothing was sent, nothing is reported
/// about the network.
fn not_probed(reason: NotProbedReason, detail: String) -> Observation {
    warn!(%reason, %detail, "probe could not run");
    Observation::not_probed(reason, detail)
}

/// The observation of a probe whose prober failed before sending.
fn not_probed_by(error: crate::probe::Error) -> Observation {
    not_probed(error.not_probed_reason(), error.to_string())
}

#[allow(clippy::too_many_arguments)]
fn report(
    pair: &Pair,
    expect: Expectation,
    observation: &Observation,
    policy_allowed: bool,
    verdict: probe_spec::PairVerdict,
    reason: &str,
    direction: Option<probe_spec::Direction>,
    policies: Vec<String>,
    summary: String,
    explanation: String,
    hints: Vec<String>,
    meets_expectation: Option<bool>,
) -> PairReport {
    let (to, ip, dns, port, protocol) = match &pair.target {
        PairTarget::Pod {
            pod,
            ip,
            port,
            protocol,
        } => (
            Some(pod.to_string()),
            Some(*ip),
            None,
            Some(*port),
            Some(*protocol),
        ),
        PairTarget::Ip { ip, port, protocol } => (
            Some(ip.to_string()),
            Some(*ip),
            None,
            Some(*port),
            Some(*protocol),
        ),
        PairTarget::Host {
            name,
            port,
            protocol,
        } => (Some(name.clone()), None, None, Some(*port), Some(*protocol)),
        PairTarget::Dns { name } => (None, None, Some(name.clone()), None, None),
    };
    PairReport {
        spec: Some(pair.spec.to_string()),
        from: pair.from.to_string(),
        mesh: None,
        to,
        ip,
        dns,
        port,
        protocol,
        outcome: observation.outcome,
        policy_allowed,
        verdict,
        reason: reason.to_string(),
        direction,
        policies,
        summary,
        explanation,
        hints,
        latency_seconds: observation.latency.as_secs_f64(),
        last_probe: k8s_openapi::jiff::Timestamp::now(),
        expect: Some(expect),
        meets_expectation,
    }
}

//! The one pipeline every mode shares: plan the pairs of each spec (a ProbeSpec or a
//! ClusterProbeSpec), probe each from inside its source pod's network namespace, predict it
//! with the policy engine, diagnose it against CNI/node/pod health, and hand back
//! `PairReport`s for metrics, the API and output.
//!
//! ```text
//! Index + Specs ─────> schedule::plan ─> pairs ─> netns registry (source pod's netns)
//!                                           │             │
//!                                           │        probe (TCP/UDP/DNS) ─> Observation
//!                                           └─> policy::Engine ─> Verdict ─┐
//!                    CNI agents / nodes / pods ─> diagnose::Health ───────┼─> diagnose ─> PairReport
//! ```
//!
//! A host pair first resolves its name from the source pod (A and AAAA, the pod's resolv.conf),
//! then probes every address ([`schedule::host_targets`]: a pod's address as that pod, any
//! other as an IP) and yields one report per address ([`PairReports`]); a name that does not
//! resolve yields one `not_probed` report, reason `resolve_failed`.
//!
//! `agent` feeds it from kube watchers and `demo` from a testbed's snapshot; only the source
//! of objects and the node scope differ. This is the only module that wires the layers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use probe_spec::Expectation;
use tracing::{debug, warn};

use crate::cluster;
use crate::cluster::changes::ChangeLog;
use crate::cluster::model::{Mesh, ObjectRef, PortRef, Protocol};
use crate::cluster::service::{ResolvedService, ServiceEndpoint};
use crate::cluster::watch::{CniAgentMatcher, cni_agents_by_node};
use crate::cluster::{Index, SpecRef};
use crate::diagnose::service::{ClusterIpProbe, EndpointVerdict};
use crate::diagnose::{self, CniHealth, Diagnosis, Health, Input, Prediction};
use crate::netns::{PodNetns, PodNetnsRegistry, Resolution};
use crate::pair::EndpointReport;
use crate::pair::{self, Pair, PairId, PairReport, PairTarget, SharedText};
use crate::policy::{Engine, Profile};
use crate::probe::{DnsConfig, NotProbedReason, Observation, Outcome, Prober};
use crate::schedule;
use probe_spec::PairVerdict;

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
    /// The explanation pieces of this view's reports, each held once.
    text: SharedText,
}

impl ProbeContext {
    /// The context of one view: the policy engine compiled with `config.profile`, CNI agent
    /// health from the index and the change log's restarts.
    pub fn new(index: &Index, changes: &ChangeLog, config: &PipelineConfig) -> Self {
        Self {
            engine: Engine::new(index, config.profile.clone()),
            cni: cni_health(index, changes, config),
            text: SharedText::default(),
        }
    }

    fn view<'a>(&'a self, index: &'a Index, changes: &'a ChangeLog) -> View<'a> {
        View {
            index,
            engine: &self.engine,
            cni: &self.cni,
            changes,
            text: &self.text,
        }
    }
}

/// Probes, predicts and diagnoses pairs.
#[derive(Debug)]
pub struct Pipeline {
    prober: Prober,
    registry: PodNetnsRegistry,
    config: PipelineConfig,
    /// When each failing pair's current failure streak began (for the change hints); a host
    /// pair's per resolved address.
    first_failures: Mutex<BTreeMap<StreakKey, SystemTime>>,
}

/// One value or more, never none: what one probe of a pair yields (one report, or for a host
/// target one per resolved address).
#[derive(Clone, Debug, PartialEq)]
pub struct OneOrMore<T> {
    first: T,
    more: Vec<T>,
}

/// The reports of one probe of a pair: one, or one per resolved address of a host target.
pub type PairReports = OneOrMore<PairReport>;

impl<T> OneOrMore<T> {
    pub fn one(first: T) -> Self {
        Self {
            first,
            more: Vec::new(),
        }
    }

    /// The values of `values`; `None` when it has none.
    pub fn from_vec(values: Vec<T>) -> Option<Self> {
        let mut values = values.into_iter();
        let first = values.next()?;
        Some(Self {
            first,
            more: values.collect(),
        })
    }

    pub fn first(&self) -> &T {
        &self.first
    }

    pub fn into_first(self) -> T {
        self.first
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        std::iter::once(&self.first).chain(&self.more)
    }

    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> OneOrMore<U> {
        OneOrMore {
            first: f(self.first),
            more: self.more.into_iter().map(f).collect(),
        }
    }

    pub fn into_vec(self) -> Vec<T> {
        let mut values = Vec::with_capacity(1 + self.more.len());
        values.push(self.first);
        values.extend(self.more);
        values
    }
}

impl<T> IntoIterator for OneOrMore<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<std::iter::Once<T>, std::vec::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.more)
    }
}

/// One planned pair with the context its diagnosis needs.
struct Job<'a> {
    pair: &'a Pair,
    expect: Expectation,
    timeout: Duration,
}

/// The cluster view one diagnosis reads.
#[derive(Clone, Copy)]
struct View<'a> {
    index: &'a Index,
    engine: &'a Engine,
    cni: &'a [CniHealth],
    changes: &'a ChangeLog,
    text: &'a SharedText,
}

/// One probe of a pair, ready to be predicted and diagnosed.
#[derive(Clone, Debug)]
struct Probed {
    /// The target as probed: the pair's own; for a host pair, one resolved address as a pod
    /// or IP target (the host target itself when its name did not resolve).
    target: PairTarget,
    /// The host name, for a host pair's probes.
    host: Option<Arc<str>>,
    observation: Observation,
    /// The nameserver a DNS probe asked (the prediction is that of the lookup's own flow).
    dns_server: Option<IpAddr>,
}

impl Probed {
    /// A probe of the pair's own target.
    fn of(pair: &Pair, observation: Observation) -> Self {
        Self {
            target: pair.target.clone(),
            host: match &pair.target {
                PairTarget::Host { name, .. } => Some(name.clone()),
                _ => None,
            },
            observation,
            dns_server: None,
        }
    }

    /// Its failure streak: the pair's, or for a host pair the address's.
    fn streak_key(&self, pair: PairId) -> StreakKey {
        (pair, self.host.as_ref().and(self.target.ip()))
    }
}

/// A failure streak: of a pair, or of one resolved address of a host pair.
type StreakKey = (PairId, Option<IpAddr>);

impl Pipeline {
    pub fn new(prober: Prober, config: PipelineConfig) -> Self {
        Self {
            prober,
            registry: PodNetnsRegistry::new(),
            config,
            first_failures: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn registry(&self) -> &PodNetnsRegistry {
        &self.registry
    }

    /// Probes one pair (a host pair: every address its name resolves to) and diagnoses each
    /// probe.
    async fn run_job(&self, job: Job<'_>, view: View<'_>) -> PairReports {
        let target = &job.pair.target;
        if let PairTarget::Service {
            service,
            port,
            protocol,
        } = target
        {
            return OneOrMore::one(
                self.run_service_job(&job, view, service, *port, *protocol)
                    .await,
            );
        }
        let Job {
            pair,
            expect,
            timeout,
        } = job;
        let probes = self.observe(view.index, pair, timeout).await;
        self.forget_vanished_addresses(pair.id, &probes);
        let now = SystemTime::now();
        probes.map(|probed| {
            let first_failure =
                self.failure_streak(probed.streak_key(pair.id), probed.observation.outcome, now);
            assess(
                pair,
                probed,
                expect,
                first_failure,
                view,
                &self.config.diagnose,
            )
        })
    }

    /// When the current failure streak began, after this outcome: a probe that did not run
    /// neither starts nor ends one; a reached destination (not a refusal) ends it.
    fn failure_streak(
        &self,
        key: StreakKey,
        outcome: Outcome,
        now: SystemTime,
    ) -> Option<SystemTime> {
        let mut streaks = self.first_failures.lock();
        if outcome == Outcome::NotProbed {
            streaks.get(&key).copied()
        } else if outcome.is_reachable() && outcome != Outcome::Refused {
            streaks.remove(&key);
            None
        } else {
            Some(*streaks.entry(key).or_insert(now))
        }
    }

    /// A host pair whose name resolved: drops the streaks of addresses it no longer resolves
    /// to (a name that did not resolve keeps them: that probe observed nothing of them).
    fn forget_vanished_addresses(&self, pair: PairId, probes: &OneOrMore<Probed>) {
        let addresses: Vec<StreakKey> = probes.iter().map(|p| p.streak_key(pair)).collect();
        if addresses.iter().all(|(_, address)| address.is_none()) {
            return;
        }
        let mut streaks = self.first_failures.lock();
        let vanished: Vec<StreakKey> = streaks
            .range((pair, None)..)
            .take_while(|((id, _), _)| *id == pair)
            .map(|(key, _)| *key)
            .filter(|key| !addresses.contains(key))
            .collect();
        for key in vanished {
            streaks.remove(&key);
        }
    }

    /// One on-demand probe (a ProbeRequest or `POST /v1/probe`): probed, predicted and
    /// diagnosed like a ProbeSpec pair, judged against `expect: Allow`, reported without a spec.
    /// On-demand targets are pods, IPs and DNS names: one report (a host target would be
    /// reported by its first address).
    pub async fn probe_once(
        &self,
        index: &Index,
        from: &ObjectRef,
        target: PairTarget,
        timeout: Duration,
        changes: &ChangeLog,
    ) -> PairReport {
        let context = self.context(index, changes);
        self.probe_once_in(&context, index, from, target, timeout, changes)
            .await
    }

    /// [`Pipeline::probe_once`] with a context built from the same `index` and `changes`
    /// (on-demand probes share one per snapshot).
    pub async fn probe_once_in(
        &self,
        context: &ProbeContext,
        index: &Index,
        from: &ObjectRef,
        target: PairTarget,
        timeout: Duration,
        changes: &ChangeLog,
    ) -> PairReport {
        // No spec: an identity no ProbeSpec or ClusterProbeSpec can have (names are not empty).
        let spec = SpecRef::Cluster("".into());
        let pair = Pair {
            id: pair::pair_id(&spec, from, &target),
            spec,
            from: from.clone(),
            target,
        };
        let job = Job {
            pair: &pair,
            expect: Expectation::Allow,
            timeout,
        };
        let mut report = self
            .run_job(job, context.view(index, changes))
            .await
            .into_first();
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
        ProbeContext::new(index, changes, &self.config)
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
    ) -> PairReports {
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
    ) -> PairReports {
        let job = Job {
            pair,
            expect,
            timeout,
        };
        self.run_job(job, context.view(index, changes)).await
    }

    /// Drops what the pipeline remembers about pairs that no longer exist (their failure
    /// streaks, a host pair's per address), so a long-running agent does not accumulate them.
    pub fn forget_pairs(&self, ids: &[PairId]) {
        let mut streaks = self.first_failures.lock();
        for &id in ids {
            let keys: Vec<StreakKey> = streaks
                .range((id, None)..)
                .take_while(|((pair, _), _)| *pair == id)
                .map(|(key, _)| *key)
                .collect();
            for key in keys {
                streaks.remove(&key);
            }
        }
    }

    /// Probes one pair from its source pod's netns: one probe, or for a host pair one per
    /// address its name resolves to.
    async fn observe(&self, index: &Index, pair: &Pair, timeout: Duration) -> OneOrMore<Probed> {
        let pod = match self.source_netns(index, &pair.from).await {
            Ok(pod) => pod,
            Err((reason, why)) => {
                return OneOrMore::one(Probed::of(
                    pair,
                    not_probed(
                        reason,
                        format!("cannot enter the source pod's network namespace: {why}"),
                    ),
                ));
            }
        };
        match &pair.target {
            PairTarget::Pod {
                ip, port, protocol, ..
            }
            | PairTarget::Ip { ip, port, protocol } => {
                let addr = SocketAddr::new(*ip, *port);
                let mesh = source_mesh(index, &pair.from, *ip);
                let observation = self
                    .probe_address(&pod, addr, *protocol, timeout, mesh)
                    .await;
                OneOrMore::one(Probed::of(pair, observation))
            }
            PairTarget::Dns { name } => {
                OneOrMore::one(self.probe_dns(pair, &pod, name, timeout).await)
            }
            PairTarget::Host {
                name,
                port,
                protocol,
            } => {
                self.probe_host(index, pair, &pod, name, *port, *protocol, timeout)
                    .await
            }
            // Probed by `run_service_job`; never observed as one address.
            PairTarget::Service { .. } => OneOrMore::one(Probed::of(
                pair,
                not_probed(
                    NotProbedReason::ProbeError,
                    "a Service pair is probed endpoint by endpoint".into(),
                ),
            )),
        }
    }

    /// A Service pair: its port resolved to the ClusterIP and the ready endpoints (each on
    /// its own targetPort), all probed at once from the source pod; each endpoint predicted
    /// and diagnosed as the pod pair it is, the whole decided by [`diagnose::service`].
    async fn run_service_job(
        &self,
        job: &Job<'_>,
        view: View<'_>,
        service: &ObjectRef,
        port: u16,
        protocol: Protocol,
    ) -> PairReport {
        let pair = job.pair;
        let unprobed = |reason, detail: String| {
            let probed = Probed::of(pair, not_probed(reason, detail));
            assess(pair, probed, job.expect, None, view, &self.config.diagnose)
        };
        let resolved = match cluster::service::resolve(
            view.index,
            service,
            &PortRef::Number(port),
            protocol,
        ) {
            Ok(resolved) => resolved,
            Err(error) => return unprobed(NotProbedReason::ResolveFailed, error.to_string()),
        };
        let pod = match self.source_netns(view.index, &pair.from).await {
            Ok(pod) => pod,
            Err((reason, why)) => {
                return unprobed(
                    reason,
                    format!("cannot enter the source pod's network namespace: {why}"),
                );
            }
        };
        let endpoints: Vec<&ServiceEndpoint> = resolved
            .endpoints
            .iter()
            .take(MAX_SERVICE_ENDPOINTS)
            .collect();
        let cluster_probe = async {
            match resolved.cluster_ip {
                Some(ip) => {
                    let mesh = source_mesh(view.index, &pair.from, ip);
                    Some(
                        self.probe_address(
                            &pod,
                            SocketAddr::new(ip, port),
                            protocol,
                            job.timeout,
                            mesh,
                        )
                        .await,
                    )
                }
                None => None,
            }
        };
        let endpoint_probes = futures::future::join_all(endpoints.iter().map(|endpoint| {
            let mesh = source_mesh(view.index, &pair.from, endpoint.ip);
            let pod = &pod;
            async move {
                self.probe_address(
                    pod,
                    SocketAddr::new(endpoint.ip, endpoint.port),
                    protocol,
                    job.timeout,
                    mesh,
                )
                .await
            }
        }));
        let (cluster, observations) = futures::join!(cluster_probe, endpoint_probes);
        let now = SystemTime::now();
        let endpoint_reports: Vec<PairReport> = endpoints
            .iter()
            .zip(observations)
            .map(|(endpoint, observation)| {
                let target = match &endpoint.pod {
                    Some(pod) if view.index.pod(pod).is_some() => PairTarget::Pod {
                        pod: pod.clone(),
                        ip: endpoint.ip,
                        port: endpoint.port,
                        protocol,
                    },
                    _ => PairTarget::Ip {
                        ip: endpoint.ip,
                        port: endpoint.port,
                        protocol,
                    },
                };
                let first_failure =
                    self.failure_streak((pair.id, Some(endpoint.ip)), observation.outcome, now);
                let probed = Probed {
                    target,
                    host: None,
                    observation,
                    dns_server: None,
                };
                assess(
                    pair,
                    probed,
                    job.expect,
                    first_failure,
                    view,
                    &self.config.diagnose,
                )
            })
            .collect();
        service_report(
            pair,
            &resolved,
            cluster,
            endpoint_reports,
            job.expect,
            view.text,
        )
    }

    /// A TCP, UDP or SCTP probe of one address from the pod's netns.
    async fn probe_address(
        &self,
        pod: &PodNetns,
        addr: SocketAddr,
        protocol: Protocol,
        timeout: Duration,
        mesh: Option<Mesh>,
    ) -> Observation {
        self.prober
            .probe_from(&pod.handle, addr, protocol, timeout, mesh)
            .await
            .unwrap_or_else(not_probed_by)
    }

    /// A DNS probe with the pod's own resolv.conf; remembers the nameserver asked.
    async fn probe_dns(
        &self,
        pair: &Pair,
        pod: &PodNetns,
        name: &str,
        timeout: Duration,
    ) -> Probed {
        let config = match DnsConfig::load(pod).await {
            Ok(config) => config,
            Err(error) => {
                return Probed::of(
                    pair,
                    not_probed(
                        error.not_probed_reason(),
                        format!("reading the pod's resolv.conf: {error}"),
                    ),
                );
            }
        };
        let dns_server = config.nameservers().first().copied();
        let observation = self
            .prober
            .probe_dns(&pod.handle, &config, name, timeout)
            .await
            .unwrap_or_else(not_probed_by);
        Probed {
            dns_server,
            ..Probed::of(pair, observation)
        }
    }

    /// A host pair: its name resolved from the source pod (A and AAAA, the pod's resolv.conf,
    /// the pair's timeout), then every address probed at once, each with the pair's timeout,
    /// as the pod or IP target it is (`schedule::host_targets`). A name that does not resolve
    /// is one probe that did not run.
    #[allow(clippy::too_many_arguments)]
    async fn probe_host(
        &self,
        index: &Index,
        pair: &Pair,
        pod: &PodNetns,
        name: &Arc<str>,
        port: u16,
        protocol: Protocol,
        timeout: Duration,
    ) -> OneOrMore<Probed> {
        let lookup = match DnsConfig::load(pod).await {
            Ok(config) => self
                .prober
                .resolve_host(&pod.handle, &config, name, timeout)
                .await
                .unwrap_or_else(not_probed_by),
            Err(error) => not_probed(
                error.not_probed_reason(),
                format!("reading the pod's resolv.conf: {error}"),
            ),
        };
        let resolved = match host_addresses(name, lookup) {
            Ok(resolved) => resolved,
            Err(unresolved) => {
                // A lookup that could not run was logged as such already.
                if unresolved.not_probed == Some(NotProbedReason::ResolveFailed) {
                    warn!(host = %name, detail = %unresolved.detail, "host name not resolved");
                }
                return OneOrMore::one(Probed::of(pair, unresolved));
            }
        };
        let targets = schedule::host_targets(index, &resolved.addresses, port, protocol);
        let mut lookup_detail = resolved.detail;
        if !targets.left_out.is_empty() {
            lookup_detail.push_str(&format!(
                "; not probed: {:?} (one address per pod, at most {})",
                targets.left_out,
                schedule::MAX_HOST_ADDRESSES
            ));
        }
        for (ip, why) in &targets.refused {
            lookup_detail.push_str(&format!("; refused {ip}: {why}, never a probe target"));
        }
        let all_refused = targets.targets.is_empty() && !targets.refused.is_empty();
        let probes = targets.targets.into_iter().filter_map(|target| {
            let ip = target.ip()?;
            let lookup_detail = &lookup_detail;
            let mesh = source_mesh(index, &pair.from, ip);
            Some(async move {
                let mut observation = self
                    .probe_address(pod, SocketAddr::new(ip, port), protocol, timeout, mesh)
                    .await;
                observation.detail = format!("{lookup_detail}; {ip}: {}", observation.detail);
                Probed {
                    target,
                    host: Some(name.clone()),
                    observation,
                    dns_server: None,
                }
            })
        });
        let probes = futures::future::join_all(probes).await;
        OneOrMore::from_vec(probes).unwrap_or_else(|| {
            // Every address was refused (loopback, metadata, ...), or none came back: the pair
            // still reports, and says nothing was probed and why.
            let reason = if all_refused {
                NotProbedReason::RefusedTarget
            } else {
                NotProbedReason::ResolveFailed
            };
            OneOrMore::one(Probed::of(
                pair,
                not_probed(
                    reason,
                    format!("host {name}: no address to probe ({lookup_detail})"),
                ),
            ))
        })
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

/// CNI agent health per node from the pods in the index, with the restarts the change log
/// saw within `cni_restart_window` (a snapshot's empty log: none).
fn cni_health(index: &Index, changes: &ChangeLog, config: &PipelineConfig) -> Vec<CniHealth> {
    let since = SystemTime::now()
        .checked_sub(config.cni_restart_window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    cni_agents_by_node(index, &config.cni)
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

/// The pure half of probing a pair: one observation of its own target predicted, diagnosed
/// and reported as the pipeline does after a probe, without a failure streak. For what has
/// no network (benchmarks, tests).
pub fn assess_observation(
    context: &ProbeContext,
    index: &Index,
    changes: &ChangeLog,
    pair: &Pair,
    observation: Observation,
    expect: Expectation,
    config: &diagnose::Config,
) -> PairReport {
    let probed = Probed::of(pair, observation);
    assess(
        pair,
        probed,
        expect,
        None,
        context.view(index, changes),
        config,
    )
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

/// A host name's addresses, resolved from the source pod.
#[derive(Clone, Debug, PartialEq)]
struct ResolvedHost {
    /// In answer order (A first, then AAAA).
    addresses: Vec<IpAddr>,
    /// The lookup's own detail (the name queried, its answers, the sockets used).
    detail: String,
}

/// A host lookup's addresses, or the observation of a host pair whose name did not resolve:
/// `resolve_failed` naming the DNS outcome (NXDOMAIN, SERVFAIL, a timeout, no address — a
/// blocked lookup too: the spec's `dns` targets report DNS itself), or the lookup's own
/// `not_probed` reason when it could not run (an unreadable resolv.conf, the agent out of
/// sockets).
fn host_addresses(name: &str, lookup: Observation) -> Result<ResolvedHost, Observation> {
    match lookup.outcome {
        Outcome::Resolved if !lookup.answers.is_empty() => Ok(ResolvedHost {
            addresses: lookup.answers,
            detail: lookup.detail,
        }),
        Outcome::NotProbed => Err(Observation {
            detail: format!("resolving host {name}: {}", lookup.detail),
            ..lookup
        }),
        outcome => Err(Observation::not_probed(
            NotProbedReason::ResolveFailed,
            format!(
                "host {name} did not resolve from the source pod ({outcome}): {}",
                lookup.detail
            ),
        )),
    }
}

/// Predicts and diagnoses one probe of `pair` and builds its report. No I/O: the start of the
/// failure streak comes in.
fn assess(
    pair: &Pair,
    probed: Probed,
    expect: Expectation,
    first_failure: Option<SystemTime>,
    view: View<'_>,
    config: &diagnose::Config,
) -> PairReport {
    let observation = &probed.observation;
    let prediction = diagnose::predict(view.engine, &pair.from, &probed.target, probed.dns_server);
    let health = Health::gather(view.index, view.cni, &pair.from, probed.target.pod());
    let input = Input {
        from: &pair.from,
        target: &probed.target,
        host: probed.host.as_deref(),
        outcome: observation.outcome,
        not_probed: observation.not_probed,
        expects_reply: observation.expects_reply,
        mesh_redirected: observation.mesh_redirected,
        rejected_by_policy: observation.rejected_by_policy,
        prediction: prediction
            .as_ref()
            .map(|(flow, verdict)| Prediction { flow, verdict }),
        destination_unknown: prediction.is_none()
            && diagnose::destination_unknown(view.index, &probed.target, probed.dns_server),
        health: &health,
        changes: view.changes,
        expect,
        first_failure,
    };
    let diagnosis = diagnose::diagnose(&input, config);
    let policy_allowed = prediction.as_ref().is_none_or(|(_, v)| v.allowed);
    let mut report = report(pair, probed, expect, policy_allowed, diagnosis, view.text);
    report.mesh = view
        .index
        .pod(&pair.from)
        .and_then(|p| p.mesh)
        .map(|m| m.kind().to_string());
    report
}

/// The most endpoints of one Service pair probed per round (the rest are named as left out).
pub const MAX_SERVICE_ENDPOINTS: usize = 16;

/// What the ClusterIP probe says, for the Service verdict. A refusal is the load balancer's
/// own reject when there is no endpoint (kube-proxy rejects a Service without endpoints), and
/// an endpoint's answer when there are some.
fn cluster_ip_state(observation: Option<&Observation>, endpoints: usize) -> ClusterIpProbe {
    match observation {
        None => ClusterIpProbe::Absent,
        Some(o) if o.outcome == Outcome::NotProbed => ClusterIpProbe::NotProbed(
            crate::pair::PairReason::NotProbed(o.not_probed.unwrap_or(NotProbedReason::ProbeError)),
        ),
        Some(o) if o.outcome == Outcome::Refused && endpoints == 0 => ClusterIpProbe::Blocked,
        Some(o) if o.outcome.is_reachable() => ClusterIpProbe::Reachable,
        Some(o) if o.outcome == Outcome::OpenOrFiltered && !o.expects_reply => {
            ClusterIpProbe::Undecided
        }
        Some(_) => ClusterIpProbe::Blocked,
    }
}

/// The report of a Service pair from its ClusterIP probe and its endpoints' reports.
fn service_report(
    pair: &Pair,
    resolved: &ResolvedService,
    cluster: Option<Observation>,
    endpoints: Vec<PairReport>,
    expect: Expectation,
    text: &SharedText,
) -> PairReport {
    let verdicts: Vec<EndpointVerdict> = endpoints
        .iter()
        .map(|r| EndpointVerdict {
            verdict: r.verdict,
            reason: r.reason,
            policies: r.policies.clone(),
        })
        .collect();
    let decided = diagnose::service::decide(
        cluster_ip_state(cluster.as_ref(), verdicts.len()),
        &verdicts,
    );
    let outcome = match &cluster {
        Some(o) => o.outcome,
        // Headless: what the endpoints saw, the first reachable one's if any.
        None => endpoints
            .iter()
            .map(|r| r.outcome)
            .find(|o| o.is_reachable())
            .or_else(|| endpoints.first().map(|r| r.outcome))
            .unwrap_or(Outcome::NotProbed),
    };
    let head = format!("{} -> {}", pair.from, pair.target);
    let total = endpoints.len();
    // "all 3 endpoints" / "its only endpoint".
    let all = if total == 1 {
        "its only endpoint".to_string()
    } else {
        format!("all {total} endpoints")
    };
    let named = |indexes: &[usize]| -> String {
        indexes
            .iter()
            .map(|&i| endpoint_name(&endpoints[i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reason = decided.reason.map_or("", crate::pair::PairReason::as_str);
    let policies: Vec<String> = decided.policies.iter().map(ToString::to_string).collect();
    let summary = match decided.verdict {
        PairVerdict::Ok => format!("{head}: ok ({outcome}; {total} endpoint(s) reachable)"),
        PairVerdict::PartiallyBlocked => format!(
            "{head} partially blocked: {} of {total} endpoints blocked by {} ({reason}): {}",
            decided.blocked.len(),
            policies.join(", "),
            named(&decided.blocked)
        ),
        PairVerdict::BlockedByPolicy => format!(
            "{head} blocked by {} ({reason}) on {all}",
            policies.join(", ")
        ),
        PairVerdict::PolicyNotEnforced => format!(
            "{head} reachable ({outcome}) although {} denies it ({reason}): not enforced",
            policies.join(", ")
        ),
        PairVerdict::UnexpectedBlock => match decided.reason {
            Some(crate::pair::PairReason::NoReadyEndpoints) => format!(
                "{head} blocked ({outcome}): the Service has no ready endpoint ({reason}{})",
                if resolved.not_ready > 0 {
                    format!("; {} not ready", resolved.not_ready)
                } else {
                    String::new()
                }
            ),
            Some(crate::pair::PairReason::ServicePathBroken) => format!(
                "{head} blocked ({outcome}) through ClusterIP {}, although {all} {} directly: the Service path is broken (kube-proxy or the eBPF load balancer; {reason})",
                resolved
                    .cluster_ip
                    .map_or("-".to_string(), |ip| ip.to_string()),
                if total == 1 { "answers" } else { "answer" }
            ),
            _ => format!("{head} blocked ({outcome}) although the policies allow it ({reason})"),
        },
        PairVerdict::NotProbed | PairVerdict::Inconclusive => {
            format!("{head}: {} ({reason})", decided.verdict)
        }
    };
    let mut explanation = format!("{summary}\n");
    match (&cluster, resolved.cluster_ip) {
        (Some(o), Some(ip)) => explanation.push_str(&format!(
            "ClusterIP {ip}:{}/{}: {}\n",
            resolved.port.port, resolved.port.protocol, o.outcome
        )),
        _ => explanation.push_str("headless: no ClusterIP\n"),
    }
    for report in &endpoints {
        explanation.push_str(&format!(
            "endpoint {}: {}\n",
            endpoint_name(report),
            report.summary
        ));
    }
    if resolved.endpoints.len() > total {
        explanation.push_str(&format!(
            "{} more endpoint(s) not probed (at most {MAX_SERVICE_ENDPOINTS} per round)\n",
            resolved.endpoints.len() - total
        ));
    }
    if resolved.not_ready > 0 {
        explanation.push_str(&format!(
            "{} endpoint(s) not ready (no traffic is sent to them)\n",
            resolved.not_ready
        ));
    }
    for &i in &decided.blocked {
        explanation.push_str(&format!("\n{}", endpoints[i].explanation));
    }
    let meets_expectation = diagnose::meets_expectation(
        expect,
        decided.verdict,
        match outcome {
            o if decided.verdict == PairVerdict::Ok && o.is_reachable() => Outcome::Open,
            o => o,
        },
    );
    let mut hints: Vec<String> = Vec::new();
    for report in &endpoints {
        for hint in &report.hints {
            if !hints.contains(hint) {
                hints.push(hint.clone());
            }
        }
    }
    let direction = decided
        .blocked
        .first()
        .and_then(|&i| endpoints[i].direction);
    let detail = cluster.as_ref().map_or(String::new(), |o| o.detail.clone());
    PairReport {
        spec: Some(pair.spec.clone()),
        from: pair.from.clone(),
        mesh: endpoints.first().and_then(|r| r.mesh.clone()),
        target: pair.target.clone(),
        host: None,
        outcome,
        policy_allowed: endpoints.iter().all(|r| r.policy_allowed),
        verdict: decided.verdict,
        reason: decided.reason,
        direction,
        policies: decided.policies,
        summary: text.piece(&summary),
        explanation: text.text(&explanation, &[0]),
        probe_detail: text.piece(&detail),
        hints,
        latency_seconds: cluster.as_ref().map_or(0.0, |o| o.latency.as_secs_f64()),
        last_probe: k8s_openapi::jiff::Timestamp::now(),
        expect: Some(expect),
        meets_expectation,
        endpoints: endpoints
            .iter()
            .map(|r| EndpointReport {
                pod: r.target.pod().cloned(),
                ip: r
                    .target
                    .ip()
                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                port: r.port().unwrap_or_default(),
                verdict: r.verdict,
                reason: r.reason,
                policies: r.policies.clone(),
            })
            .collect(),
        history: None,
        view_stale: crate::cluster::watch::WatchedKinds::default(),
    }
}

/// `shop/api-1 10.244.1.11:8080` (or the address alone, for an endpoint without a pod).
fn endpoint_name(report: &PairReport) -> String {
    match (report.target.pod(), report.target.ip(), report.port()) {
        (Some(pod), Some(ip), Some(port)) => format!("{pod} {ip}:{port}"),
        (None, Some(ip), Some(port)) => format!("{ip}:{port}"),
        _ => report.target.to_string(),
    }
}

/// The mesh whose redirect a probe from `from` to `ip` must get past: the source pod's,
/// except towards the pod's own address (with the proxy's uid, Istio would send that
/// connection to the proxy's inbound listener; as itself it goes out untouched).
fn source_mesh(index: &Index, from: &ObjectRef, ip: std::net::IpAddr) -> Option<Mesh> {
    index
        .pod(from)
        .filter(|pod| !pod.ips.contains(&ip))
        .and_then(|pod| pod.mesh)
}

fn report(
    pair: &Pair,
    probed: Probed,
    expect: Expectation,
    policy_allowed: bool,
    diagnosis: Diagnosis,
    text: &SharedText,
) -> PairReport {
    let Probed {
        target,
        host,
        observation,
        dns_server: _,
    } = probed;
    PairReport {
        spec: Some(pair.spec.clone()),
        from: pair.from.clone(),
        mesh: None,
        target,
        host,
        outcome: observation.outcome,
        policy_allowed,
        verdict: diagnosis.verdict,
        reason: diagnosis.reason,
        direction: diagnosis.direction,
        policies: diagnosis.policies,
        summary: text.piece(&diagnosis.summary),
        explanation: text.text(&diagnosis.explanation, &diagnosis.sections),
        probe_detail: text.piece(&observation.detail),
        hints: diagnosis.hints.iter().map(ToString::to_string).collect(),
        latency_seconds: observation.latency.as_secs_f64(),
        last_probe: k8s_openapi::jiff::Timestamp::now(),
        expect: Some(expect),
        meets_expectation: diagnosis.meets_expectation,
        endpoints: Vec::new(),
        history: None,
        view_stale: crate::cluster::watch::WatchedKinds::default(),
    }
}

#[cfg(test)]
mod tests;

//! Diagnosis: observed outcome x policy prediction x health -> [`Diagnosis`]. Pure: no I/O, no
//! clocks (the first-failure time is a parameter), deterministic.
//!
//! ```text
//! probe Outcome (+ ICMP admin-prohibited?) ─┐
//! policy::Engine verdict for the flow ──────┼─> classify ─> verdict + reason ─┬─> summary (one line)
//! Health (CNI agents, nodes, destination) ──┘    (table in `classify`)        ├─> explanation (policy
//! cluster ChangeLog + first failure time ───────> hints (runbook fallbacks) ──┘    render + health + hints)
//! ProbeSpec expect ─────────────────────────────> meets_expectation
//! ```
//!
//! It follows the runbook's diagnosis order: the policy explanation first (selectors, ports,
//! default deny, namespace selectors — the engine's reason code and closest rule), then CNI
//! agent health on the source and destination nodes, node conditions, destination readiness,
//! a refused listener, DNS; then the fallback hints.
//!
//! Verdicts (docs/design.md): `ok` (reachable, policy allows), `blocked_by_policy` (not reachable,
//! policy denies), `policy_not_enforced` (reachable, policy denies), `unexpected_block` (not
//! reachable, policy allows). Without a prediction (a DNS name whose server is unknown, a host
//! name that did not resolve) the verdict follows the outcome alone: `ok` or
//! `unexpected_block`. For a DNS target the prediction is that of the lookup's own flow,
//! source -> DNS server:53/UDP, so a `dns_timeout` under an egress default-deny is
//! `blocked_by_policy`. A host target's resolved address is diagnosed as the pod or IP target
//! it is (`Input::target`), with the host name beside it.
//!
//! **Refused and `not_listening`.** `refused` is reachable for the network: NetworkPolicy let
//! the connection through and the destination answered. So the verdict stays `ok` (the policy
//! side is fine), and the reason is `not_listening` (or `destination_not_ready` when the pod is
//! not Ready, which explains why nothing listens yet). The intent is judged separately:
//! `meets_expectation` is false for `expect: Allow` (the path does not work) and also false
//! for `expect: Deny` (policy does not close the path; the app merely happens to be down). This
//! keeps the "app not listening" class diagnosable (`ok` + `not_listening`, expectation not
//! met) without calling it a block, which would send the on-call engineer to the policies, and
//! without a Deny spec passing because an app crashed. `nxdomain`/`servfail` work the same way
//! (`ok` + `dns_failure`): the DNS server answered. The one exception is a refusal while the
//! policy denies: a CNI that rejects denied traffic (TCP reset, ICMP port-unreachable) looks
//! exactly like that, so it is `blocked_by_policy`, and the explanation says what else it
//! could be.
//!
//! Reason codes (bounded, [`PairReason`]): the policy engine's codes for `blocked_by_policy` and
//! `policy_not_enforced`; for `unexpected_block` the first that holds of `cni_unhealthy`,
//! `node_not_ready`, `destination_not_ready`, `not_listening`, `dns_failure`, `unknown`; none
//! for a clean `ok`. An ICMP administratively-prohibited while the policy allows points at
//! another enforcement layer and is named in the summary.

mod classify;
mod health;
mod hints;
mod render;
pub mod service;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use probe_spec::{Expectation, PairVerdict};

pub use health::{CniHealth, Health, NETWORK_UNAVAILABLE, NodeHealth, PodReadiness};
pub use hints::{Hint, PolicyOp};

use crate::cluster::Index;
use crate::cluster::changes::ChangeLog;
use crate::cluster::model::{ObjectRef, PolicyRef, Protocol};
use crate::pair::{PairReason, PairTarget};
use crate::policy::{self, Endpoint, Engine, Flow, Verdict};
use crate::probe::{NotProbedReason, Outcome};

/// The DNS port a lookup's flow uses.
pub const DNS_PORT: u16 = 53;

/// How long before the first failure a change still counts as a likely cause.
pub const DEFAULT_CHANGE_WINDOW: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Changes this long before the first failure (or less) become hints.
    pub change_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            change_window: DEFAULT_CHANGE_WINDOW,
        }
    }
}

/// The policy engine's answer for the flow the probe took.
#[derive(Clone, Copy, Debug)]
pub struct Prediction<'a> {
    /// For a DNS target: source -> DNS server:53/UDP.
    pub flow: &'a Flow,
    pub verdict: &'a Verdict,
}

/// Everything one diagnosis looks at. Independent of the probe module's `Observation` shape:
/// pass its `outcome` and `rejected_by_policy`.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub from: &'a ObjectRef,
    /// The target as probed: a host target's resolved address is a pod or IP target here.
    pub target: &'a PairTarget,
    /// The host name of a host target (named in the summary next to the address probed).
    pub host: Option<&'a str>,
    pub outcome: Outcome,
    /// Why the probe did not run; set exactly when `outcome` is `not_probed`.
    pub not_probed: Option<NotProbedReason>,
    /// The probe spoke a protocol whose server must answer (DNS on UDP 53): UDP silence is
    /// then a loss, not an ignored payload.
    pub expects_reply: bool,
    /// A mesh redirect in the source pod caught the probe and could not be bypassed: an
    /// `open` came from the local proxy.
    pub mesh_redirected: bool,
    /// An ICMP administratively-prohibited came back (the probe's classification).
    pub rejected_by_policy: bool,
    /// `None` when the engine has no prediction for the target (see [`predict`]).
    pub prediction: Option<Prediction<'a>>,
    /// The prediction is missing because the destination address is unknown to a partial
    /// view ([`destination_unknown`]): a block is then `inconclusive`, never a verdict.
    pub destination_unknown: bool,
    pub health: &'a Health,
    /// The cluster view's recent changes (fed by the watchers).
    pub changes: &'a ChangeLog,
    pub expect: Expectation,
    /// When the pair's current failure streak began (the caller tracks it; pass now for a
    /// first failure). `None`: no change hints.
    pub first_failure: Option<SystemTime>,
}

/// The diagnosis of one pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub verdict: PairVerdict,
    /// `None` only for a clean `ok`; see the module docs for `ok` with a reason.
    pub reason: Option<PairReason>,
    /// The denying direction, for `blocked_by_policy` and `policy_not_enforced`.
    pub direction: Option<probe_spec::Direction>,
    /// The denying policies (isolating NetworkPolicies or the deciding tiered policy) when
    /// the policy denies; the policies whose rules allow the flow otherwise.
    pub policies: Vec<PolicyRef>,
    /// One line; names the policy of a policy block.
    pub summary: String,
    /// Several lines: summary, observation, expectation, the policy explanation, health
    /// findings, notes and hints.
    pub explanation: String,
    /// Where the explanation's sections start (byte offsets, ascending, the first 0): the
    /// summary, the observation and expectation, each line of the policy explanation, the
    /// health, notes and hints. Many pairs share a section word for word (a source's egress
    /// line, a destination's health), so reports keep them as shared pieces.
    pub sections: Vec<usize>,
    /// Runbook fallbacks that hold; empty for a clean `ok`.
    pub hints: Vec<Hint>,
    /// Whether the pair meets the ProbeSpec's `expect` (see the module docs); `None` for
    /// `not_probed` and `inconclusive`, which decide nothing.
    pub meets_expectation: Option<bool>,
}

impl Diagnosis {
    /// The reason as a label value: `""` for a clean `ok`.
    pub fn reason_code(&self) -> &'static str {
        self.reason.map_or("", PairReason::as_str)
    }
}

/// Diagnoses one observation.
pub fn diagnose(input: &Input<'_>, config: &Config) -> Diagnosis {
    let policy = classify::Policy::of(
        input.prediction.map(|p| p.verdict),
        input.destination_unknown,
    );
    let classified = classify::classify(&classify::Observed::of(input), policy, input.health);
    let denied = matches!(
        classified.verdict,
        PairVerdict::BlockedByPolicy | PairVerdict::PolicyNotEnforced
    );
    let (direction, policies) = match input.prediction {
        Some(p) if denied => (
            p.verdict.direction.map(|d| match d {
                policy::Direction::Ingress => probe_spec::Direction::Ingress,
                policy::Direction::Egress => probe_spec::Direction::Egress,
            }),
            p.verdict.denying_policies(),
        ),
        Some(p) => (None, p.verdict.allowing_policies()),
        None => (None, Vec::new()),
    };
    let clean = classified.verdict == PairVerdict::Ok && classified.reason.is_none();
    // Runbook fallbacks explain a failure; a probe that did not run has none to explain.
    let hints = if clean || classified.verdict == PairVerdict::NotProbed {
        Vec::new()
    } else {
        hints::gather(input, config)
    };
    let meets_expectation = meets_expectation(input.expect, classified.verdict, input.outcome);
    let summary = render::summary(input, &classified);
    let (explanation, sections) =
        render::explanation(input, &classified, &summary, &hints, meets_expectation);
    Diagnosis {
        verdict: classified.verdict,
        reason: classified.reason,
        direction,
        policies,
        summary,
        explanation,
        sections,
        hints,
        meets_expectation,
    }
}

/// `Allow`: the path works end to end (open or resolved; policy_not_enforced included).
/// `Deny`: the path is blocked (`Expectation::is_met_by`); a refused or nxdomain pair is
/// reachable, so it does not meet Deny. `None` for `not_probed` and `inconclusive`.
pub fn meets_expectation(
    expect: Expectation,
    verdict: PairVerdict,
    outcome: Outcome,
) -> Option<bool> {
    let met = expect.is_met_by(verdict)?;
    Some(match expect {
        Expectation::Allow => met && matches!(outcome, Outcome::Open | Outcome::Resolved),
        Expectation::Deny => met,
    })
}

/// Whether the address `target` was probed at (a DNS target's: its nameserver) is unknown to
/// `index`: a partial view that holds no pod or node with it and had no watch answer for it.
pub fn destination_unknown(index: &Index, target: &PairTarget, dns_server: Option<IpAddr>) -> bool {
    let address = match target {
        PairTarget::Ip { ip, .. } => Some(*ip),
        PairTarget::Dns { .. } => dns_server,
        PairTarget::Pod { .. } | PairTarget::Host { .. } | PairTarget::Service { .. } => None,
    };
    address.is_some_and(|ip| !index.address_known(ip))
}

/// The flow a probe of `target` takes, and the engine's verdict for it: pod and IP targets
/// directly; a DNS target as the lookup to `dns_server`:53/UDP (the source pod's nameserver;
/// `None` when unknown). A host target's resolved addresses come here as pod or IP targets
/// (`schedule::host_targets`); its name alone, unresolved, has no address and no prediction.
/// `None` also when the engine cannot resolve an endpoint (a pod that just went away).
pub fn predict(
    engine: &Engine,
    from: &ObjectRef,
    target: &PairTarget,
    dns_server: Option<IpAddr>,
) -> Option<(Flow, Verdict)> {
    let (to, port, protocol) = match target {
        PairTarget::Pod {
            pod,
            port,
            protocol,
            ..
        } => (Endpoint::Pod(pod.clone()), *port, *protocol),
        PairTarget::Ip { ip, port, protocol } => (Endpoint::Ip(*ip), *port, *protocol),
        PairTarget::Dns { .. } => (Endpoint::Ip(dns_server?), DNS_PORT, Protocol::Udp),
        // A Service pair is predicted endpoint by endpoint (`diagnose::service`).
        PairTarget::Host { .. } | PairTarget::Service { .. } => return None,
    };
    let flow = Flow {
        from: Endpoint::Pod(from.clone()),
        to,
        port,
        protocol,
    };
    let verdict = engine.evaluate(&flow).ok()?;
    Some((flow, verdict))
}

#[cfg(test)]
mod tests;

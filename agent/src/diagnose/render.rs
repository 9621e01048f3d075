//! The one-line summary and the full explanation of a diagnosis.

use std::fmt::Write;

use probe_spec::{Expectation, PairVerdict};

use crate::cluster::model::PolicyRef;
use crate::pair::{PairReason, PairTarget};
use crate::policy::{Direction, DirectionVerdict, Verdict, explain};
use crate::probe::{NotProbedReason, Outcome};

use super::Input;
use super::classify::{Classified, Policy};
use super::hints::Hint;

/// `shop/frontend -> payments/gateway:8443/TCP blocked by ingress policy payments/default-deny (default_deny)`.
pub(super) fn summary(input: &Input<'_>, c: &Classified) -> String {
    let head = match (input.host, input.target) {
        (Some(host), target) if !matches!(target, PairTarget::Host { .. }) => {
            format!("{} -> {target} (host {host})", input.from)
        }
        _ => format!("{} -> {}", input.from, input.target),
    };
    let outcome = input.outcome;
    let reason = c.reason.map_or("", PairReason::as_str);
    match (c.verdict, c.reason) {
        (PairVerdict::Ok, None) => format!("{head}: ok ({outcome})"),
        (PairVerdict::Ok, Some(PairReason::DnsFailure)) => {
            format!("{head}: the DNS server answered {outcome} ({reason})")
        }
        (PairVerdict::Ok, Some(PairReason::DestinationNotReady)) => format!(
            "{head}: reachable, but refused: {} ({reason})",
            destination_not_ready(input)
        ),
        (PairVerdict::Ok, Some(_)) => {
            format!("{head}: reachable, but refused: nothing listens there ({reason})")
        }
        (PairVerdict::BlockedByPolicy, _) => format!(
            "{head} blocked by {} ({reason}){}",
            deciding_policies(input),
            via_dns_server(input)
        ),
        (PairVerdict::PolicyNotEnforced, _) => format!(
            "{head} reachable ({outcome}) although {} denies it ({reason}){}: not enforced",
            deciding_policies(input),
            via_dns_server(input)
        ),
        // Service pairs are summarised by `diagnose::service`; a pod pair never is partial.
        (PairVerdict::PartiallyBlocked, _) => format!(
            "{head} partly blocked by {} ({reason})",
            deciding_policies(input)
        ),
        (PairVerdict::NotProbed, _) => format!(
            "{head}: not probed ({reason}): {}",
            not_probed(c.reason.and_then(PairReason::not_probed))
        ),
        (PairVerdict::Inconclusive, Some(PairReason::MeshRedirect)) => format!(
            "{head}: inconclusive ({reason}): the source pod's service mesh redirected the probe to its local proxy, so `{outcome}` says nothing about the network; {}",
            predicted(c.policy)
        ),
        (PairVerdict::Inconclusive, Some(PairReason::DestinationUnknown)) => format!(
            "{head}: inconclusive ({reason}): blocked ({outcome}), but {} is not known to this agent's partial view of the cluster (it may be a pod the agent does not watch), so neither a policy nor a fault can be named",
            input.target
        ),
        (PairVerdict::Inconclusive, _) => format!(
            "{head}: inconclusive ({reason}): no UDP reply and no ICMP error; the service may ignore the probe's payload; {}",
            predicted(c.policy)
        ),
        (PairVerdict::UnexpectedBlock, _) => {
            let although = match c.policy {
                Policy::Unknown => "with no policy prediction",
                _ => "although the policies allow it",
            };
            format!(
                "{head} blocked ({outcome}) {although}: {} ({reason})",
                fault(input, c.reason.unwrap_or(PairReason::Unknown))
            )
        }
    }
}

/// The full text: summary, observation, expectation, policy explanation, health, notes, hints;
/// and where its sections start (see [`super::Diagnosis::sections`]).
pub(super) fn explanation(
    input: &Input<'_>,
    c: &Classified,
    summary: &str,
    hints: &[Hint],
    meets_expectation: Option<bool>,
) -> (String, Vec<usize>) {
    let mut out = String::new();
    let mut sections = vec![0];
    // The summary alone is a section: the report's summary is the same piece.
    out.push_str(summary);
    sections.push(out.len());
    out.push('\n');
    let rejected = if input.rejected_by_policy {
        ", rejected with ICMP administratively prohibited"
    } else {
        ""
    };
    let _ = writeln!(out, "observed: {}{rejected}", input.outcome);
    let _ = writeln!(
        out,
        "expect: {}: {}",
        match input.expect {
            Expectation::Allow => "Allow",
            Expectation::Deny => "Deny",
        },
        match meets_expectation {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "undecided (nothing was observed that could decide it)",
        }
    );
    match &input.prediction {
        Some(p) => {
            let label = match input.target {
                PairTarget::Dns { .. } => "policy (the lookup's flow to the DNS server):",
                _ => "policy:",
            };
            let _ = writeln!(out, "{label}");
            // Each line its own section: the flow's is the pair's, the egress one its source's,
            // the ingress one its destination's.
            for line in explain::render(p.flow, p.verdict).lines() {
                sections.push(out.len());
                let _ = writeln!(out, "  {line}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "policy: no prediction for {} (the engine needs the destination address); the verdict follows the outcome alone",
                input.target
            );
        }
    }
    sections.push(out.len());
    let health = &input.health;
    if !health.nodes().is_empty() || health.destination.is_some() {
        let _ = writeln!(out, "health:");
        for (role, node) in health.nodes() {
            let _ = writeln!(out, "  {role}: {}", node.describe());
            if node.cni.is_empty() {
                let _ = writeln!(out, "    no CNI agent pod known on {}", node.name);
            }
            for cni in &node.cni {
                let _ = writeln!(out, "    {}", cni.describe());
            }
        }
        if let Some(d) = &health.destination {
            let state = if d.ready { "ready" } else { "NOT ready" };
            let _ = writeln!(out, "  destination pod {}: {state}", d.pod);
        }
    }
    sections.push(out.len());
    let notes = notes(input, c);
    if !notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for note in notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    sections.push(out.len());
    if !hints.is_empty() {
        let _ = writeln!(out, "hints:");
        for hint in hints {
            let _ = writeln!(out, "  - {hint}");
        }
    }
    sections.dedup();
    sections.retain(|&start| start < out.len());
    (out, sections)
}

/// How to read the observation in this case.
fn notes(input: &Input<'_>, c: &Classified) -> Vec<String> {
    let mut notes = Vec::new();
    let port = input
        .target
        .port()
        .map(|(port, protocol)| format!("{port}/{protocol}"))
        .unwrap_or_default();
    match (c.verdict, input.outcome) {
        (PairVerdict::Ok, Outcome::Refused) => notes.push(format!(
            "refused is reachable for the network: policy let the connection through and the destination answered with a reset or ICMP port-unreachable; no process accepts {port} there"
        )),
        (PairVerdict::BlockedByPolicy, Outcome::Refused) => notes.push(
            "refused while the policy denies: this is how a CNI that rejects denied traffic (TCP reset, ICMP port-unreachable) looks; a CNI that drops would time out, so with a dropping CNI the destination answered and nothing listens on this port".to_string(),
        ),
        (PairVerdict::UnexpectedBlock, Outcome::OpenOrFiltered) => notes.push(
            "UDP silence where a reply was due: the probe spoke the port's protocol (a DNS query on 53), so a listening server would have answered; the datagram or its reply was lost".to_string(),
        ),
        (_, Outcome::OpenOrFiltered) => notes.push(
            "UDP silence: no reply and no ICMP error; the datagram was dropped, or the service does not answer this payload".to_string(),
        ),
        (PairVerdict::NotProbed, _) => notes.push(
            "nothing was sent, so nothing is said about the network: no Event, no blocking alert; the pair keeps being tried".to_string(),
        ),
        (_, Outcome::Error) => notes.push(
            "the kernel refused to send (EPERM/EACCES): a firewall inside the source pod's netns dropped the packet on its way out".to_string(),
        ),
        _ => {}
    }
    if input.rejected_by_policy && input.outcome == Outcome::Unreachable {
        notes.push(match c.policy {
            Policy::Denies(_) => {
                "the enforcement rejects with ICMP administratively prohibited instead of dropping".to_string()
            }
            _ => "something rejected the probe with ICMP administratively prohibited although NetworkPolicy allows it: another enforcement layer (AdminNetworkPolicy, a host or cloud firewall, a stale CNI rule)".to_string(),
        });
    }
    if c.verdict == PairVerdict::PolicyNotEnforced {
        match input.health.unhealthy_cni() {
            Some(cni) => notes.push(format!(
                "{}: policy enforcement may be inconsistent or delayed",
                cni.describe()
            )),
            None => notes.push(
                "the CNI agents look healthy: check that the CNI enforces NetworkPolicy at all (some, e.g. flannel alone, do not)".to_string(),
            ),
        }
    }
    notes
}

/// Why an unexpected block happened, for the summary.
fn fault(input: &Input<'_>, reason: PairReason) -> String {
    let health = &input.health;
    let mut text = match reason {
        PairReason::CniUnhealthy => health
            .unhealthy_cni()
            .map_or_else(String::new, |c| c.describe()),
        PairReason::NodeNotReady => health
            .unready_node()
            .map_or_else(String::new, |n| n.describe()),
        PairReason::DestinationNotReady => destination_not_ready(input),
        PairReason::NotListening => "nothing listens there".to_string(),
        PairReason::DnsFailure => match input.outcome {
            Outcome::DnsTimeout => "the DNS lookup timed out".to_string(),
            other => format!("the DNS server answered {other}"),
        },
        PairReason::CniNativePolicy => {
            let may_apply = input
                .prediction
                .and_then(|p| p.verdict.cni_policies_may_apply())
                .unwrap_or_default();
            format!("no CNI, node or destination fault found; {may_apply}")
        }
        PairReason::NoReadyEndpoints => "the Service has no ready endpoint".to_string(),
        PairReason::ServicePathBroken => {
            "its endpoints answer directly, but not through the ClusterIP".to_string()
        }
        PairReason::NotProbed(_)
        | PairReason::UdpSilence
        | PairReason::MeshRedirect
        | PairReason::DestinationUnknown
        | PairReason::ViewStale => String::new(),
        PairReason::Policy(_) | PairReason::Unknown => match input.outcome {
            _ if input.rejected_by_policy => {
                "rejected with ICMP administratively prohibited by an enforcement layer other than NetworkPolicy".to_string()
            }
            Outcome::OpenOrFiltered => "no UDP reply and no ICMP error".to_string(),
            Outcome::Error => {
                "a firewall in the source pod's network namespace refused the packet".to_string()
            }
            _ => "no CNI, node or destination fault found".to_string(),
        },
    };
    if input.rejected_by_policy && !matches!(reason, PairReason::Unknown | PairReason::Policy(_)) {
        text.push_str("; rejected with ICMP administratively prohibited");
    }
    text
}

/// What a `not_probed` reason means, for the summary.
fn not_probed(reason: Option<NotProbedReason>) -> &'static str {
    match reason {
        Some(NotProbedReason::NetnsNotFound) => {
            "the source pod's network namespace was not found on this node"
        }
        Some(NotProbedReason::HostNetworkSource) => {
            "the source pod uses the host network, which pod policy does not cover"
        }
        Some(NotProbedReason::UnsupportedProtocol) => {
            "this kernel or the pod's netns cannot make a socket of this protocol"
        }
        Some(NotProbedReason::PodFileUnreadable) => {
            "a file the probe needs (resolv.conf) could not be read safely from the pod"
        }
        Some(NotProbedReason::ResolveFailed) => "the host name did not resolve from the source pod",
        Some(NotProbedReason::RefusedTarget) => {
            "the target is an address probes never go to (loopback, link-local, multicast, broadcast)"
        }
        Some(NotProbedReason::AgentOverloaded) => {
            "the agent ran out of file descriptors, sockets or probe slots"
        }
        Some(NotProbedReason::ProbeError) | None => {
            "the probe failed locally before anything was sent"
        }
    }
}

/// The policy side of an inconclusive pair.
fn predicted(policy: Policy) -> &'static str {
    match policy {
        Policy::Allows => "the policies allow the flow",
        Policy::Denies(_) => "the policies deny the flow",
        Policy::Unknown => "no policy prediction",
        Policy::DestinationUnknown => "no policy prediction (the destination is unknown)",
    }
}

fn destination_not_ready(input: &Input<'_>) -> String {
    input.health.unready_destination().map_or_else(
        || "the destination pod is not ready".to_string(),
        |pod| format!("destination pod {pod} is not ready"),
    )
}

/// `ingress policy payments/default-deny`, or `egress policies a, b` when several isolate and
/// none has a closest rule: the closest rule's policy when there is one.
fn deciding_policies(input: &Input<'_>) -> String {
    let Some(p) = &input.prediction else {
        return "policy".to_string();
    };
    let verdict = p.verdict;
    let direction = verdict.direction.map_or("", Direction::as_str);
    let names = deciding(verdict);
    match names.as_slice() {
        [one] => format!("{direction} policy {one}"),
        many => {
            let names: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("{direction} policies {}", names.join(", "))
        }
    }
}

/// The policy whose rule came closest, else every isolating policy of the denying direction;
/// for a tier decision, the tiered policy.
pub(super) fn deciding(verdict: &Verdict) -> Vec<PolicyRef> {
    if let Some((policy, _)) = verdict.closest_rule() {
        return vec![PolicyRef::Namespaced(policy.clone())];
    }
    let part = match verdict.direction {
        Some(Direction::Ingress) => &verdict.ingress,
        Some(Direction::Egress) => &verdict.egress,
        None => return Vec::new(),
    };
    match part {
        DirectionVerdict::Denied { policies } => policies
            .iter()
            .map(|p| PolicyRef::Namespaced(p.policy.clone()))
            .collect(),
        DirectionVerdict::Tiered(hit) => vec![PolicyRef::Cluster(hit.policy.as_str().into())],
        _ => Vec::new(),
    }
}

/// ` towards DNS server 10.96.0.10:53/UDP` for DNS targets.
fn via_dns_server(input: &Input<'_>) -> String {
    match (input.target, &input.prediction) {
        (PairTarget::Dns { .. }, Some(p)) => format!(
            " towards DNS server {}:{}/{}",
            p.flow.to, p.flow.port, p.flow.protocol
        ),
        _ => String::new(),
    }
}

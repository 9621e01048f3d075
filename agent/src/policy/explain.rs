//! Rendering verdicts as text an on-call engineer reads in one glance: the verdict, each
//! direction, each isolating policy, and for each rule why it did not match.

use std::fmt::Write;

use super::engine::Flow;
use super::verdict::{
    Direction, DirectionVerdict, PeerMiss, PortMiss, RuleMiss, TierAction, Verdict,
};

/// One line: the verdict and, for a denial, the closest rule's first failing requirement.
pub fn summary(flow: &Flow, verdict: &Verdict) -> String {
    let head = format!(
        "{} -> {} {}/{}",
        flow.from, flow.to, flow.port, flow.protocol
    );
    if verdict.self_traffic {
        return format!("{head}: allowed (traffic to itself)");
    }
    if verdict.allowed {
        return format!("{head}: allowed");
    }
    let direction = verdict.direction.map_or("", Direction::as_str);
    let reason = verdict.reason.map_or("", |r| r.as_str());
    let deciding = match verdict.direction {
        Some(Direction::Ingress) => Some(&verdict.ingress),
        Some(Direction::Egress) => Some(&verdict.egress),
        None => None,
    };
    if let Some(DirectionVerdict::Tiered(hit)) = deciding {
        return format!(
            "{head}: denied ({direction}, {reason}) by {} tier {} (priority {}): rule #{} {:?}: {}",
            hit.tier,
            hit.policy,
            hit.priority,
            hit.index,
            hit.rule,
            if hit.invalid.is_some() {
                "does not validate, fails closed"
            } else {
                "Deny"
            }
        );
    }
    match verdict.closest_rule() {
        Some((policy, miss)) => {
            format!(
                "{head}: denied ({direction}, {reason}) by {policy}: rule #{}: {}",
                miss.index,
                miss_text(miss)
            )
        }
        None => format!(
            "{head}: denied ({direction}, {reason}): {} selects the pod and allows no {direction} traffic",
            verdict.policies.join(", ")
        ),
    }
}

/// The full explanation, several lines.
pub fn render(flow: &Flow, verdict: &Verdict) -> String {
    let mut out = String::new();
    let status = if verdict.self_traffic {
        "ALLOWED (self: a pod cannot block traffic to itself)".to_string()
    } else if verdict.allowed {
        "ALLOWED".to_string()
    } else {
        format!(
            "DENIED ({}, reason: {})",
            verdict.direction.map_or("", Direction::as_str),
            verdict.reason.map_or("", |r| r.as_str())
        )
    };
    let _ = writeln!(
        out,
        "{} -> {} {}/{}: {status}",
        flow.from, flow.to, flow.port, flow.protocol
    );
    if verdict.self_traffic && !verdict.rules_allowed {
        let _ = writeln!(out, "  the rules alone would deny it:");
    }
    let closest = verdict.closest_rule().map(|(p, r)| (p.clone(), r.index));
    render_direction(
        &mut out,
        "egress ",
        &flow.from.to_string(),
        &verdict.egress,
        verdict.direction == Some(Direction::Egress),
        &closest,
    );
    render_direction(
        &mut out,
        "ingress",
        &flow.to.to_string(),
        &verdict.ingress,
        verdict.direction == Some(Direction::Ingress),
        &closest,
    );
    for note in &verdict.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

fn render_direction(
    out: &mut String,
    label: &str,
    subject: &str,
    part: &DirectionVerdict,
    deciding: bool,
    closest: &Option<(crate::cluster::model::ObjectRef, usize)>,
) {
    let direction = label.trim();
    match part {
        DirectionVerdict::NotIsolated => {
            let _ = writeln!(
                out,
                "  {label} {subject}: allowed, not isolated (no policy selects it for {direction})"
            );
        }
        DirectionVerdict::NotApplicable { why } => {
            let _ = writeln!(
                out,
                "  {label} {subject}: no {direction} policy applies ({why})"
            );
        }
        DirectionVerdict::NodeLocal => {
            let _ = writeln!(
                out,
                "  {label} {subject}: allowed, traffic between a pod and its own node is always allowed"
            );
        }
        DirectionVerdict::Allowed { by, isolating, .. } => {
            let others: Vec<String> = isolating.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  {label} {subject}: allowed by {} {direction} rule #{} (selected by {})",
                by.policy,
                by.index,
                others.join(", ")
            );
        }
        DirectionVerdict::Tiered(hit) => {
            let rule = if hit.rule.is_empty() {
                format!("rule #{}", hit.index)
            } else {
                format!("rule #{} {:?}", hit.index, hit.rule)
            };
            let outcome = if hit.action == TierAction::Accept {
                "allowed"
            } else {
                "DENIED"
            };
            let _ = writeln!(
                out,
                "  {label} {subject}: {outcome} by {} tier {} (priority {}) {direction} {rule}: {}",
                hit.tier,
                hit.policy,
                hit.priority,
                hit.action.as_str()
            );
            if let Some(why) = &hit.invalid {
                let _ = writeln!(
                    out,
                    "    the rule does not validate ({why}); it fails closed and denies everything"
                );
            }
        }
        DirectionVerdict::Denied { policies } => {
            let names: Vec<String> = policies.iter().map(|p| p.policy.to_string()).collect();
            let _ = writeln!(
                out,
                "  {label} {subject}: DENIED, isolated by {} and no {direction} rule matches",
                names.join(", ")
            );
            for policy in policies {
                if policy.rules.is_empty() {
                    let _ = writeln!(
                        out,
                        "    {}: has no {direction} rules (default deny)",
                        policy.policy
                    );
                    continue;
                }
                let _ = writeln!(out, "    {}:", policy.policy);
                for miss in &policy.rules {
                    let marker = match closest {
                        Some((p, i)) if deciding && *p == policy.policy && *i == miss.index => {
                            "  <- closest"
                        }
                        _ => "",
                    };
                    let _ = writeln!(
                        out,
                        "      rule #{}: {}{marker}",
                        miss.index,
                        miss_text(miss)
                    );
                }
            }
        }
    }
}

/// Why one rule missed: the peer part and the port part, each when it failed.
pub fn miss_text(miss: &RuleMiss) -> String {
    let mut parts = Vec::new();
    if let Some(peer) = &miss.peer {
        parts.push(peer_text(peer));
    }
    if let Some(port) = &miss.port {
        parts.push(port_text(port));
    }
    let mut text = parts.join("; and ");
    match (&miss.peer, &miss.port) {
        (Some(_), None) => text.push_str(" (the port matched)"),
        (None, Some(_)) => text.push_str(" (the peer matched)"),
        _ => {}
    }
    text
}

fn port_text(miss: &PortMiss) -> String {
    match miss {
        PortMiss::NotListed {
            wanted,
            port,
            protocol,
            notes,
        } => {
            let mut s = format!("port {port}/{protocol} is not in [{}]", wanted.join(", "));
            for n in notes {
                let _ = write!(s, " ({n})");
            }
            s
        }
        PortMiss::NamedPortUnresolved {
            name,
            protocol,
            pod,
        } => match pod {
            Some(pod) => format!("named port {name}/{protocol} is not declared by pod {pod}"),
            None => {
                format!("named port {name}/{protocol} cannot resolve: the destination is not a pod")
            }
        },
        PortMiss::Invalid { reason } => {
            format!("its ports are invalid ({reason}) and match nothing")
        }
    }
}

fn peer_text(miss: &PeerMiss) -> String {
    match miss {
        PeerMiss::NamespaceSelector {
            peer,
            selector,
            namespace,
            labels,
            pod_selector,
        } => {
            let head = and_peer_head(*peer, Some(selector), pod_selector.as_deref());
            format!(
                "{head}: namespaceSelector {selector} does not match namespace {namespace} {labels}"
            )
        }
        PeerMiss::PolicyNamespaceOnly {
            peer,
            policy_namespace,
            namespace,
        } => format!(
            "peer #{peer}: podSelector without namespaceSelector selects only pods in namespace {policy_namespace}, not {namespace}"
        ),
        PeerMiss::PodSelector {
            peer,
            selector,
            pod,
            labels,
            unmet,
            namespace_selector,
        } => {
            let head = and_peer_head(*peer, namespace_selector.as_deref(), Some(selector));
            format!(
                "{head}: podSelector {selector} does not match pod {pod} {labels} (unmet: {unmet})"
            )
        }
        PeerMiss::NotAPod { peer, endpoint } => {
            format!("peer #{peer} selects pods, but the other end is {endpoint}")
        }
        PeerMiss::IpBlock {
            peer,
            blocks,
            ip,
            excepted,
            notes,
        } => {
            let mut s = if *excepted {
                format!(
                    "peer #{peer}: {ip} is in an except range of ipBlock {}",
                    blocks.join(", ")
                )
            } else {
                format!(
                    "peer #{peer}: ipBlock {} does not contain {ip}",
                    blocks.join(", ")
                )
            };
            for n in notes {
                let _ = write!(s, " ({n})");
            }
            s
        }
        PeerMiss::Invalid { reason } => {
            format!("its peers are invalid ({reason}) and match nothing")
        }
    }
}

/// `peer #N`, spelling out that a peer with both selectors needs both to match (E9).
fn and_peer_head(
    peer: usize,
    namespace_selector: Option<&str>,
    pod_selector: Option<&str>,
) -> String {
    match (namespace_selector, pod_selector) {
        (Some(ns), Some(pods)) => {
            format!("peer #{peer} requires BOTH namespaceSelector {ns} AND podSelector {pods}")
        }
        _ => format!("peer #{peer}"),
    }
}

//! Table-driven tests of the diagnosis: every outcome x policy (allow, deny, none) x the health
//! combinations that matter, then the hints (change window, overlap, CNI restarts), the change
//! log, and `predict`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::cluster::Index;
use crate::cluster::changes::{ChangeKind, ChangeLog};
use crate::cluster::cni_policy::{CniPolicy, CniPolicyKind};
use crate::cluster::index::Apply;
use crate::cluster::model::{NetworkPolicy, Node, Peer, Pod, PolicyPort, PolicyRef, PortRef, Rule};
use crate::cluster::selector::Selector;
use crate::cluster::tiered::TieredPolicy;
use crate::policy::Profile;
use crate::testing::{self, PodExt, PolicyExt, key, labels, namespace, node};

// === Fixtures ===

fn pod(ns: &str, name: &str, app: &str, ip: &str, node: &str, port: (&str, u16, Protocol)) -> Pod {
    testing::pod(ns, name, &[("app", app)], ip, node).with_port(port.0, port.1, port.2)
}

fn deny_all(ns: &str, name: &str, ingress: bool, egress: bool) -> NetworkPolicy {
    testing::policy(ns, name).types(ingress, egress)
}

/// payments/allow-frontend: gateway accepts shop's frontend on `port`/TCP.
fn allow_frontend(port: u16) -> NetworkPolicy {
    NetworkPolicy {
        pod_selector: Selector::from_labels([("app", "gateway")]),
        ingress: vec![Rule {
            ports: vec![PolicyPort::Port {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(port)),
                end_port: None,
            }],
            peers: vec![Peer::Pods {
                pod_selector: Some(Selector::from_labels([("app", "frontend")])),
                namespace_selector: Some(Selector::from_labels([("team", "shop")])),
            }],
        }],
        ..deny_all("payments", "allow-frontend", true, false)
    }
}

/// The policy set of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policies {
    /// No policies: not isolated, allowed.
    None_,
    /// payments/default-deny + payments/allow-frontend: allowed by a rule, two policies overlap.
    AllowByRule,
    /// payments/default-deny alone.
    DefaultDeny,
    /// payments/allow-frontend on 9999 only.
    PortNotAllowed,
    /// shop/deny-egress: every shop pod, egress, no rules.
    EgressDenyAll,
    /// No prediction at all (the engine is not asked).
    NoPrediction,
    /// ClusterNetworkPolicy/protect-payments: an Admin-tier Deny of shop -> payments.
    AdminDeny,
    /// payments/default-deny under ClusterNetworkPolicy/allow-shop, an Admin-tier Accept.
    AdminAcceptOverDeny,
    /// ClusterNetworkPolicy/baseline-payments: a Baseline-tier Deny of shop -> payments.
    BaselineDeny,
    /// No NetworkPolicy; CiliumNetworkPolicy payments/l7 exists (not evaluated).
    CniNative,
}

impl Policies {
    fn objects(self) -> Vec<NetworkPolicy> {
        match self {
            Policies::None_ | Policies::NoPrediction => vec![],
            Policies::AllowByRule => vec![
                deny_all("payments", "default-deny", true, false),
                allow_frontend(8443),
            ],
            Policies::DefaultDeny => vec![deny_all("payments", "default-deny", true, false)],
            Policies::PortNotAllowed => vec![allow_frontend(9999)],
            Policies::EgressDenyAll => vec![deny_all("shop", "deny-egress", false, true)],
            Policies::AdminAcceptOverDeny => {
                vec![deny_all("payments", "default-deny", true, false)]
            }
            Policies::AdminDeny | Policies::BaselineDeny | Policies::CniNative => vec![],
        }
    }

    fn tiered(self) -> Vec<TieredPolicy> {
        let cnp = |name: &str, tier: &str, action: &str| {
            TieredPolicy::try_from(&serde_json::json!({
                "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                "metadata": {"name": name},
                "spec": {"tier": tier, "priority": 10,
                         "subject": {"namespaces": {"matchLabels": {"team": "payments"}}},
                         "ingress": [{"name": "from-shop", "action": action,
                                      "from": [{"namespaces": {"matchLabels": {"team": "shop"}}}]}]}
            }))
            .expect("a valid ClusterNetworkPolicy")
        };
        match self {
            Policies::AdminDeny => vec![cnp("protect-payments", "Admin", "Deny")],
            Policies::AdminAcceptOverDeny => vec![cnp("allow-shop", "Admin", "Accept")],
            Policies::BaselineDeny => vec![cnp("baseline-payments", "Baseline", "Deny")],
            _ => vec![],
        }
    }
}

/// One edit of the healthy cluster.
#[derive(Clone, Copy, Debug)]
enum Edit {
    CniNotReady(&'static str),
    CniRestarts(&'static str, u32),
    NodeNotReady(&'static str),
    NodeProblem(&'static str, &'static str),
    PodNotReady(&'static str),
}

const HEALTHY: &[Edit] = &[];

fn cluster(policies: Policies, edits: &[Edit]) -> (Index, Vec<CniHealth>) {
    let mut index = Index::new();
    index.reset(vec![
        namespace("shop", &[("team", "shop")]),
        namespace("payments", &[("team", "payments")]),
        namespace("kube-system", &[]),
    ]);
    let mut nodes = vec![node("node-1", "192.168.0.1"), node("node-2", "192.168.0.2")];
    let mut pods = vec![
        pod(
            "shop",
            "frontend",
            "frontend",
            "10.244.1.10",
            "node-1",
            ("http", 8080, Protocol::Tcp),
        ),
        pod(
            "payments",
            "gateway",
            "gateway",
            "10.244.2.20",
            "node-2",
            ("https", 8443, Protocol::Tcp),
        ),
        pod(
            "kube-system",
            "coredns",
            "kube-dns",
            "10.244.2.53",
            "node-2",
            ("dns", 53, Protocol::Udp),
        ),
    ];
    let mut cni: Vec<CniHealth> = ["node-1", "node-2"]
        .iter()
        .map(|n| CniHealth {
            node: n.to_string(),
            pod: ObjectRef::new("kube-system", format!("cni-{n}")),
            ready: true,
            restarts_in_window: 0,
        })
        .collect();
    for edit in edits {
        match *edit {
            Edit::CniNotReady(n) => cni
                .iter_mut()
                .filter(|c| c.node == n)
                .for_each(|c| c.ready = false),
            Edit::CniRestarts(n, r) => cni
                .iter_mut()
                .filter(|c| c.node == n)
                .for_each(|c| c.restarts_in_window = r),
            Edit::NodeNotReady(n) => nodes
                .iter_mut()
                .filter(|x| x.name == n)
                .for_each(|x| x.ready = false),
            Edit::NodeProblem(n, p) => nodes
                .iter_mut()
                .filter(|x| x.name == n)
                .for_each(|x| x.problems.push(p.into())),
            Edit::PodNotReady(p) => pods
                .iter_mut()
                .filter(|x| x.key() == key(p))
                .for_each(|x| x.ready = false),
        }
    }
    index.reset(nodes);
    index.reset(pods);
    index.reset(policies.objects());
    index.reset(policies.tiered());
    if policies == Policies::CniNative {
        index.apply(CniPolicy {
            kind: CniPolicyKind::CiliumNetworkPolicy,
            namespace: Some("payments".into()),
            name: "l7".into(),
        });
    }
    (index, cni)
}

fn gateway_8443() -> PairTarget {
    PairTarget::Pod {
        pod: key("payments/gateway"),
        ip: "10.244.2.20".parse().unwrap(),
        port: 8443,
        protocol: Protocol::Tcp,
    }
}

fn dns_target() -> PairTarget {
    PairTarget::Dns {
        name: "api.shop.svc.cluster.local".into(),
    }
}

const DNS_SERVER: &str = "10.244.2.53";

/// The pod behind a target, for health and change scoping.
fn destination_pod(target: &PairTarget) -> Option<ObjectRef> {
    match target {
        PairTarget::Pod { pod, .. } => Some(pod.clone()),
        PairTarget::Dns { .. } => Some(key("kube-system/coredns")),
        _ => None,
    }
}

/// Everything a diagnosis needs, owned, so cases can borrow it.
struct World {
    from: ObjectRef,
    target: PairTarget,
    prediction: Option<(Flow, Verdict)>,
    health: Health,
    changes: ChangeLog,
}

fn world(target: PairTarget, policies: Policies, edits: &[Edit]) -> World {
    let (index, cni) = cluster(policies, edits);
    let from = key("shop/frontend");
    let prediction = match policies {
        Policies::NoPrediction => None,
        _ => {
            let engine = Engine::new(&index, Profile::UPSTREAM);
            predict(&engine, &from, &target, Some(DNS_SERVER.parse().unwrap()))
        }
    };
    let health = Health::gather(&index, &cni, &from, destination_pod(&target).as_ref());
    World {
        from,
        target,
        prediction,
        health,
        changes: ChangeLog::default(),
    }
}

fn run(
    w: &World,
    outcome: Outcome,
    rejected: bool,
    expect: Expectation,
    first_failure: Option<SystemTime>,
) -> Diagnosis {
    let input = Input {
        from: &w.from,
        target: &w.target,
        host: None,
        outcome,
        not_probed: (outcome == NotProbed).then_some(NotProbedReason::NetnsNotFound),
        expects_reply: false,
        mesh_redirected: false,
        rejected_by_policy: rejected,
        prediction: w
            .prediction
            .as_ref()
            .map(|(flow, verdict)| Prediction { flow, verdict }),
        destination_unknown: false,
        health: &w.health,
        changes: &w.changes,
        expect,
        first_failure,
    };
    diagnose(&input, &Config::default())
}

fn codes(hints: &[Hint]) -> Vec<&'static str> {
    hints.iter().map(Hint::code).collect()
}

// === The table ===

struct Case {
    name: &'static str,
    target: fn() -> PairTarget,
    outcome: Outcome,
    rejected: bool,
    policies: Policies,
    edits: &'static [Edit],
    verdict: PairVerdict,
    reason: &'static str,
    summary: &'static str,
    hints: &'static [&'static str],
    /// meets_expectation for expect Allow, and for expect Deny.
    meets: (Option<bool>, Option<bool>),
}

use Outcome::*;
use PairVerdict::{
    BlockedByPolicy, Inconclusive, NotProbed as NotProbedVerdict, Ok as OkVerdict,
    PolicyNotEnforced, UnexpectedBlock,
};

const HEAD: &str = "shop/frontend -> payments/gateway:8443/TCP";

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let c = |name, outcome, rejected, policies, edits, verdict, reason, summary, hints, meets| Case {
        name, target: gateway_8443, outcome, rejected, policies, edits, verdict, reason, summary, hints, meets,
    };
    let d = |name, outcome, policies, edits, verdict, reason, summary, hints, meets| Case {
        name, target: dns_target, outcome, rejected: false, policies, edits, verdict, reason, summary, hints, meets,
    };
    vec![
        // --- reachable ---
        c("open, not isolated", Open, false, Policies::None_, HEALTHY, OkVerdict, "",
          "shop/frontend -> payments/gateway:8443/TCP: ok (open)", &[], (Some(true), Some(false))),
        c("open, allowed by a rule (overlap is no hint on a clean ok)", Open, false, Policies::AllowByRule, HEALTHY, OkVerdict, "",
          ": ok (open)", &[], (Some(true), Some(false))),
        c("open, default deny: not enforced", Open, false, Policies::DefaultDeny, HEALTHY, PolicyNotEnforced, "default_deny",
          "shop/frontend -> payments/gateway:8443/TCP reachable (open) although ingress policy payments/default-deny denies it (default_deny): not enforced",
          &[], (Some(true), Some(false))),
        c("open, port not allowed: not enforced, CNI restarted", Open, false, Policies::PortNotAllowed, &[Edit::CniRestarts("node-2", 3)],
          PolicyNotEnforced, "port_not_allowed", "although ingress policy payments/allow-frontend denies it (port_not_allowed)",
          &["cni_restarted"], (Some(true), Some(false))),
        // --- cluster-scoped tiers ---
        c("timeout, admin-tier deny", Timeout, false, Policies::AdminDeny, HEALTHY, BlockedByPolicy, "admin_deny",
          "shop/frontend -> payments/gateway:8443/TCP blocked by ingress policy ClusterNetworkPolicy/protect-payments (admin_deny)",
          &[], (Some(false), Some(true))),
        c("open, admin-tier deny: not enforced", Open, false, Policies::AdminDeny, HEALTHY, PolicyNotEnforced, "admin_deny",
          "although ingress policy ClusterNetworkPolicy/protect-payments denies it (admin_deny): not enforced",
          &[], (Some(true), Some(false))),
        c("open, admin accept over a NetworkPolicy default deny", Open, false, Policies::AdminAcceptOverDeny, HEALTHY, OkVerdict, "",
          ": ok (open)", &[], (Some(true), Some(false))),
        c("timeout, admin accept over a NetworkPolicy deny: not a policy block", Timeout, false, Policies::AdminAcceptOverDeny, HEALTHY,
          UnexpectedBlock, "unknown", "although the policies allow it", &[], (Some(false), Some(true))),
        c("timeout, baseline-tier deny", Timeout, false, Policies::BaselineDeny, HEALTHY, BlockedByPolicy, "baseline_deny",
          "blocked by ingress policy ClusterNetworkPolicy/baseline-payments (baseline_deny)", &[], (Some(false), Some(true))),
        // --- CNI-native policies: named, not evaluated ---
        c("timeout, allowed, a CiliumNetworkPolicy may apply", Timeout, false, Policies::CniNative, HEALTHY, UnexpectedBlock, "cni_native_policy",
          "although the policies allow it: no CNI, node or destination fault found; a CNI-native policy may apply (CiliumNetworkPolicy payments/l7) (cni_native_policy)",
          &[], (Some(false), Some(true))),
        c("timeout, CNI down beats a CNI-native policy", Timeout, false, Policies::CniNative, &[Edit::CniNotReady("node-2")], UnexpectedBlock, "cni_unhealthy",
          "(cni_unhealthy)", &[], (Some(false), Some(true))),
        c("open, a CNI-native policy changes nothing when the path works", Open, false, Policies::CniNative, HEALTHY, OkVerdict, "",
          ": ok (open)", &[], (Some(true), Some(false))),
        // --- refused: reachable for the network ---
        c("refused, allowed: not listening", Refused, false, Policies::None_, HEALTHY, OkVerdict, "not_listening",
          "shop/frontend -> payments/gateway:8443/TCP: reachable, but refused: nothing listens there (not_listening)", &[], (Some(false), Some(false))),
        c("refused, allowed by rule: not listening, overlap hint", Refused, false, Policies::AllowByRule, HEALTHY, OkVerdict, "not_listening",
          "nothing listens there (not_listening)", &["overlapping_policies"], (Some(false), Some(false))),
        c("refused, destination not ready", Refused, false, Policies::None_, &[Edit::PodNotReady("payments/gateway")], OkVerdict,
          "destination_not_ready", "reachable, but refused: destination pod payments/gateway is not ready (destination_not_ready)", &[], (Some(false), Some(false))),
        c("refused, CNI down is irrelevant to a refusal", Refused, false, Policies::None_, &[Edit::CniNotReady("node-2")], OkVerdict,
          "not_listening", "(not_listening)", &[], (Some(false), Some(false))),
        c("refused, default deny: a rejecting CNI", Refused, false, Policies::DefaultDeny, HEALTHY, BlockedByPolicy, "default_deny",
          "shop/frontend -> payments/gateway:8443/TCP blocked by ingress policy payments/default-deny (default_deny)", &[], (Some(false), Some(true))),
        // --- not reachable, policy denies ---
        c("timeout, default deny", Timeout, false, Policies::DefaultDeny, HEALTHY, BlockedByPolicy, "default_deny",
          "shop/frontend -> payments/gateway:8443/TCP blocked by ingress policy payments/default-deny (default_deny)", &[], (Some(false), Some(true))),
        c("timeout, port not allowed", Timeout, false, Policies::PortNotAllowed, HEALTHY, BlockedByPolicy, "port_not_allowed",
          "blocked by ingress policy payments/allow-frontend (port_not_allowed)", &[], (Some(false), Some(true))),
        c("timeout, egress default deny on the source", Timeout, false, Policies::EgressDenyAll, HEALTHY, BlockedByPolicy, "default_deny",
          "blocked by egress policy shop/deny-egress (default_deny)", &[], (Some(false), Some(true))),
        c("admin-prohibited, default deny", Unreachable, true, Policies::DefaultDeny, HEALTHY, BlockedByPolicy, "default_deny",
          "blocked by ingress policy payments/default-deny (default_deny)", &[], (Some(false), Some(true))),
        c("unreachable, default deny, CNI down: still the policy", Unreachable, false, Policies::DefaultDeny, &[Edit::CniNotReady("node-2")],
          BlockedByPolicy, "default_deny", "(default_deny)", &[], (Some(false), Some(true))),
        c("open_or_filtered, default deny", OpenOrFiltered, false, Policies::DefaultDeny, HEALTHY, BlockedByPolicy, "default_deny",
          "blocked by ingress policy payments/default-deny", &[], (Some(false), Some(true))),
        c("error, default deny", Error, false, Policies::DefaultDeny, HEALTHY, BlockedByPolicy, "default_deny",
          "blocked by ingress policy", &[], (Some(false), Some(true))),
        // --- not reachable, policy allows: the fault chain ---
        c("timeout, allowed, healthy", Timeout, false, Policies::None_, HEALTHY, UnexpectedBlock, "unknown",
          "shop/frontend -> payments/gateway:8443/TCP blocked (timeout) although the policies allow it: no CNI, node or destination fault found (unknown)",
          &[], (Some(false), Some(true))),
        c("timeout, allowed by a rule of overlapping policies", Timeout, false, Policies::AllowByRule, HEALTHY, UnexpectedBlock, "unknown",
          "although the policies allow it", &["overlapping_policies"], (Some(false), Some(true))),
        c("timeout, CNI agent down on the destination node", Timeout, false, Policies::None_, &[Edit::CniNotReady("node-2")], UnexpectedBlock,
          "cni_unhealthy", "blocked (timeout) although the policies allow it: CNI agent kube-system/cni-node-2 on node-2 is not ready (cni_unhealthy)",
          &[], (Some(false), Some(true))),
        c("unreachable, CNI agent restarting on the source node", Unreachable, false, Policies::None_, &[Edit::CniRestarts("node-1", 2)],
          UnexpectedBlock, "cni_unhealthy", "CNI agent kube-system/cni-node-1 on node-1 restarted 2 times recently (cni_unhealthy)",
          &["cni_restarted"], (Some(false), Some(true))),
        c("timeout, CNI down and restarting", Timeout, false, Policies::None_, &[Edit::CniNotReady("node-1"), Edit::CniRestarts("node-1", 1)],
          UnexpectedBlock, "cni_unhealthy", "is not ready and restarted once recently (cni_unhealthy)", &["cni_restarted"], (Some(false), Some(true))),
        c("timeout, destination node not ready", Timeout, false, Policies::None_, &[Edit::NodeNotReady("node-2")], UnexpectedBlock,
          "node_not_ready", ": node node-2 is not ready (node_not_ready)", &[], (Some(false), Some(true))),
        c("unreachable, source node NetworkUnavailable", Unreachable, false, Policies::None_, &[Edit::NodeProblem("node-1", "NetworkUnavailable")],
          UnexpectedBlock, "node_not_ready", "node node-1 is ready (NetworkUnavailable) (node_not_ready)", &[], (Some(false), Some(true))),
        c("timeout, MemoryPressure explains nothing", Timeout, false, Policies::None_, &[Edit::NodeProblem("node-2", "MemoryPressure")],
          UnexpectedBlock, "unknown", "(unknown)", &[], (Some(false), Some(true))),
        c("timeout, destination not ready", Timeout, false, Policies::None_, &[Edit::PodNotReady("payments/gateway")], UnexpectedBlock,
          "destination_not_ready", "destination pod payments/gateway is not ready (destination_not_ready)", &[], (Some(false), Some(true))),
        c("order: CNI before node before destination", Timeout, false, Policies::None_,
          &[Edit::PodNotReady("payments/gateway"), Edit::NodeNotReady("node-2"), Edit::CniNotReady("node-2")],
          UnexpectedBlock, "cni_unhealthy", "(cni_unhealthy)", &[], (Some(false), Some(true))),
        c("order: node before destination", Timeout, false, Policies::None_,
          &[Edit::PodNotReady("payments/gateway"), Edit::NodeNotReady("node-2")],
          UnexpectedBlock, "node_not_ready", "(node_not_ready)", &[], (Some(false), Some(true))),
        c("admin-prohibited although allowed: another layer", Unreachable, true, Policies::None_, HEALTHY, UnexpectedBlock, "unknown",
          "blocked (unreachable) although the policies allow it: rejected with ICMP administratively prohibited by an enforcement layer other than NetworkPolicy (unknown)",
          &[], (Some(false), Some(true))),
        c("admin-prohibited with a CNI down", Unreachable, true, Policies::None_, &[Edit::CniNotReady("node-2")], UnexpectedBlock,
          "cni_unhealthy", "is not ready; rejected with ICMP administratively prohibited (cni_unhealthy)", &[], (Some(false), Some(true))),
        // --- silence proves nothing; a probe that did not run decides nothing ---
        c("open_or_filtered, allowed: UDP silence is inconclusive", OpenOrFiltered, false, Policies::None_, HEALTHY, Inconclusive, "udp_silence",
          "shop/frontend -> payments/gateway:8443/TCP: inconclusive (udp_silence): no UDP reply and no ICMP error", &[], (None, None)),
        c("open_or_filtered, no prediction: inconclusive", OpenOrFiltered, false, Policies::NoPrediction, HEALTHY, Inconclusive, "udp_silence",
          "no policy prediction", &[], (None, None)),
        c("open_or_filtered, CNI down: still inconclusive", OpenOrFiltered, false, Policies::None_, &[Edit::CniNotReady("node-2")], Inconclusive,
          "udp_silence", "(udp_silence)", &[], (None, None)),
        c("not probed, allowed", NotProbed, false, Policies::None_, HEALTHY, NotProbedVerdict, "netns_not_found",
          "shop/frontend -> payments/gateway:8443/TCP: not probed (netns_not_found): the source pod's network namespace was not found on this node", &[], (None, None)),
        c("not probed, default deny: never blocked_by_policy", NotProbed, false, Policies::DefaultDeny, HEALTHY, NotProbedVerdict, "netns_not_found",
          ": not probed (netns_not_found)", &[], (None, None)),
        c("not probed, CNI down: never unexpected_block", NotProbed, false, Policies::None_, &[Edit::CniNotReady("node-2")], NotProbedVerdict,
          "netns_not_found", ": not probed", &[], (None, None)),
        c("error, allowed", Error, false, Policies::None_, HEALTHY, UnexpectedBlock, "unknown",
          "a firewall in the source pod's network namespace refused the packet (unknown)", &[], (Some(false), Some(true))),
        c("timeout, no prediction", Timeout, false, Policies::NoPrediction, HEALTHY, UnexpectedBlock, "unknown",
          "blocked (timeout) with no policy prediction: no CNI, node or destination fault found (unknown)", &[], (Some(false), Some(true))),
        c("open, no prediction", Open, false, Policies::NoPrediction, HEALTHY, OkVerdict, "", ": ok (open)", &[], (Some(true), Some(false))),
        // --- DNS: the lookup's flow to the DNS server ---
        d("dns_timeout under egress default deny", DnsTimeout, Policies::EgressDenyAll, HEALTHY, BlockedByPolicy, "default_deny",
          "shop/frontend -> dns api.shop.svc.cluster.local blocked by egress policy shop/deny-egress (default_deny) towards DNS server 10.244.2.53:53/UDP",
          &[], (Some(false), Some(true))),
        d("resolved under egress default deny", Resolved, Policies::EgressDenyAll, HEALTHY, PolicyNotEnforced, "default_deny",
          "reachable (resolved) although egress policy shop/deny-egress denies it (default_deny) towards DNS server 10.244.2.53:53/UDP: not enforced",
          &[], (Some(true), Some(false))),
        d("nxdomain under egress default deny: the server answered", Nxdomain, Policies::EgressDenyAll, HEALTHY, PolicyNotEnforced,
          "default_deny", "reachable (nxdomain)", &[], (Some(false), Some(false))),
        d("resolved", Resolved, Policies::None_, HEALTHY, OkVerdict, "", "shop/frontend -> dns api.shop.svc.cluster.local: ok (resolved)", &[], (Some(true), Some(false))),
        d("nxdomain", Nxdomain, Policies::None_, HEALTHY, OkVerdict, "dns_failure",
          "shop/frontend -> dns api.shop.svc.cluster.local: the DNS server answered nxdomain (dns_failure)", &[], (Some(false), Some(false))),
        d("servfail", Servfail, Policies::None_, HEALTHY, OkVerdict, "dns_failure", "the DNS server answered servfail (dns_failure)", &[], (Some(false), Some(false))),
        d("dns_timeout, allowed", DnsTimeout, Policies::None_, HEALTHY, UnexpectedBlock, "dns_failure",
          "blocked (dns_timeout) although the policies allow it: the DNS lookup timed out (dns_failure)", &[], (Some(false), Some(true))),
        d("dns_timeout, DNS pod not ready", DnsTimeout, Policies::None_, &[Edit::PodNotReady("kube-system/coredns")], UnexpectedBlock,
          "destination_not_ready", "destination pod kube-system/coredns is not ready (destination_not_ready)", &[], (Some(false), Some(true))),
        d("dns_timeout, CNI down on the DNS node", DnsTimeout, Policies::None_, &[Edit::CniNotReady("node-2")], UnexpectedBlock,
          "cni_unhealthy", "cni-node-2 on node-2 is not ready (cni_unhealthy)", &[], (Some(false), Some(true))),
        d("dns_timeout, no prediction", DnsTimeout, Policies::NoPrediction, HEALTHY, UnexpectedBlock, "dns_failure",
          "with no policy prediction: the DNS lookup timed out (dns_failure)", &[], (Some(false), Some(true))),
    ]
}

#[test]
fn decision_table() {
    for case in cases() {
        let w = world((case.target)(), case.policies, case.edits);
        let allow = run(&w, case.outcome, case.rejected, Expectation::Allow, None);
        let deny = run(&w, case.outcome, case.rejected, Expectation::Deny, None);
        let name = case.name;
        assert_eq!(allow.verdict, case.verdict, "{name}");
        assert_eq!(allow.reason_code(), case.reason, "{name}");
        assert!(
            allow.summary.contains(case.summary),
            "{name}:\n  {}\n  wanted: {}",
            allow.summary,
            case.summary
        );
        assert!(!allow.summary.contains('\n'), "{name}: summary is one line");
        assert_eq!(codes(&allow.hints), case.hints, "{name}");
        assert_eq!(
            (allow.meets_expectation, deny.meets_expectation),
            case.meets,
            "{name}"
        );
        // The explanation starts with the summary and states the expectation.
        assert!(allow.explanation.starts_with(&allow.summary), "{name}");
        let met = match case.meets.0 {
            Some(true) => "expect: Allow: met",
            Some(false) => "expect: Allow: NOT met",
            None => "expect: Allow: undecided",
        };
        assert!(
            allow.explanation.contains(met),
            "{name}:\n{}",
            allow.explanation
        );
        // Verdict, reason and hints do not depend on the expectation.
        assert_eq!(
            (deny.verdict, deny.reason, &deny.hints),
            (allow.verdict, allow.reason, &allow.hints),
            "{name}"
        );
    }
}

/// Every outcome x {allow, deny, no prediction} x health: the invariants of docs/design.md hold.
#[test]
fn every_outcome_policy_and_health_combination() {
    let healths: &[&[Edit]] = &[
        HEALTHY,
        &[Edit::CniNotReady("node-2")],
        &[Edit::CniRestarts("node-1", 1)],
        &[Edit::NodeNotReady("node-2")],
        &[Edit::NodeProblem("node-1", "NetworkUnavailable")],
        &[Edit::PodNotReady("payments/gateway")],
    ];
    let fault_codes = [
        "cni_unhealthy",
        "node_not_ready",
        "destination_not_ready",
        "not_listening",
        "dns_failure",
        "unknown",
    ];
    let policy_codes = ["default_deny", "port_not_allowed"];
    let mut seen = std::collections::BTreeSet::new();
    for outcome in Outcome::ALL {
        for policies in [
            Policies::None_,
            Policies::DefaultDeny,
            Policies::PortNotAllowed,
            Policies::NoPrediction,
        ] {
            for edits in healths {
                for rejected in [false, true] {
                    let w = world(gateway_8443(), policies, edits);
                    let d = run(&w, outcome, rejected, Expectation::Allow, None);
                    let ctx = format!("{outcome} {policies:?} {edits:?} rejected={rejected}");
                    let denies =
                        matches!(policies, Policies::DefaultDeny | Policies::PortNotAllowed);
                    let reachable = outcome.is_reachable();
                    // Reachability decides, except a refusal under a denying policy.
                    let want = match (reachable, denies) {
                        _ if outcome == NotProbed => NotProbedVerdict,
                        (false, false) if outcome == OpenOrFiltered => Inconclusive,
                        (true, true) if outcome == Refused => BlockedByPolicy,
                        (true, true) => PolicyNotEnforced,
                        (true, false) => OkVerdict,
                        (false, true) => BlockedByPolicy,
                        (false, false) => UnexpectedBlock,
                    };
                    assert_eq!(d.verdict, want, "{ctx}");
                    let code = d.reason_code();
                    match d.verdict {
                        PairVerdict::PartiallyBlocked => {
                            panic!("{ctx}: a pod pair is never partial")
                        }
                        BlockedByPolicy | PolicyNotEnforced => {
                            assert!(policy_codes.contains(&code), "{ctx}: {code}");
                            assert!(d.direction.is_some() && !d.policies.is_empty(), "{ctx}");
                            assert!(
                                d.summary.contains("policy payments/"),
                                "{ctx}: names the policy"
                            );
                        }
                        UnexpectedBlock | OkVerdict => {
                            assert!(
                                code.is_empty() || fault_codes.contains(&code),
                                "{ctx}: {code}"
                            );
                            assert_eq!(d.direction, None, "{ctx}");
                        }
                        NotProbedVerdict | Inconclusive => {
                            assert!(
                                ["netns_not_found", "udp_silence"].contains(&code),
                                "{ctx}: {code}"
                            );
                            assert_eq!(d.direction, None, "{ctx}");
                            assert!(d.hints.is_empty() || code == "udp_silence", "{ctx}");
                        }
                    }
                    assert_eq!(
                        d.reason.is_none(),
                        d.verdict == OkVerdict && matches!(outcome, Open | Resolved),
                        "{ctx}"
                    );
                    assert!(
                        d.summary.starts_with(HEAD) && !d.summary.contains('\n'),
                        "{ctx}"
                    );
                    assert_eq!(
                        d.meets_expectation,
                        d.verdict.is_decided().then_some(
                            outcome == Open || outcome == Resolved && d.verdict.reachable()
                        ),
                        "{ctx}"
                    );
                    if d.reason.is_none() {
                        assert!(d.hints.is_empty(), "{ctx}");
                    }
                    seen.insert((d.verdict, code));
                }
            }
        }
    }
    // Every verdict and every fault reason the gateway target can produce showed up.
    for want in [
        (OkVerdict, ""),
        (OkVerdict, "not_listening"),
        (OkVerdict, "destination_not_ready"),
        (OkVerdict, "dns_failure"),
        (PolicyNotEnforced, "default_deny"),
        (BlockedByPolicy, "port_not_allowed"),
        (UnexpectedBlock, "cni_unhealthy"),
        (UnexpectedBlock, "node_not_ready"),
        (UnexpectedBlock, "destination_not_ready"),
        (UnexpectedBlock, "dns_failure"),
        (UnexpectedBlock, "unknown"),
    ] {
        assert!(seen.contains(&want), "{want:?} never produced");
    }
}

#[test]
fn blocked_by_policy_explains_the_policy_and_the_health() {
    let w = world(
        gateway_8443(),
        Policies::DefaultDeny,
        &[Edit::CniRestarts("node-2", 1)],
    );
    let d = run(&w, Timeout, false, Expectation::Allow, None);
    assert_eq!(
        d.policies,
        [PolicyRef::from(ObjectRef::new("payments", "default-deny"))]
    );
    assert_eq!(d.direction, Some(probe_spec::Direction::Ingress));
    for fragment in [
        "observed: timeout\n",
        "expect: Allow: NOT met\n",
        "policy:\n  shop/frontend -> payments/gateway 8443/TCP: DENIED (ingress, reason: default_deny)\n",
        "    payments/default-deny: has no ingress rules (default deny)\n",
        "health:\n  source node: node node-1 is ready\n    CNI agent kube-system/cni-node-1 on node-1 is ready\n",
        "  destination node: node node-2 is ready\n    CNI agent kube-system/cni-node-2 on node-2 restarted once recently\n",
        "  destination pod payments/gateway: ready\n",
        "hints:\n  - CNI agent kube-system/cni-node-2 on node-2 restarted once recently: policy enforcement may have been inconsistent or delayed\n",
    ] {
        assert!(
            d.explanation.contains(fragment),
            "missing {fragment:?} in\n{}",
            d.explanation
        );
    }
}

#[test]
fn explanations_carry_the_notes_of_ambiguous_observations() {
    let cases: &[(Policies, Outcome, bool, &str)] = &[
        (
            Policies::None_,
            Refused,
            false,
            "refused is reachable for the network",
        ),
        (
            Policies::DefaultDeny,
            Refused,
            false,
            "how a CNI that rejects denied traffic",
        ),
        (Policies::None_, OpenOrFiltered, false, "UDP silence"),
        (
            Policies::None_,
            Error,
            false,
            "firewall inside the source pod's netns",
        ),
        (
            Policies::DefaultDeny,
            Unreachable,
            true,
            "rejects with ICMP administratively prohibited instead of dropping",
        ),
        (
            Policies::None_,
            Unreachable,
            true,
            "another enforcement layer",
        ),
        (
            Policies::DefaultDeny,
            Open,
            false,
            "check that the CNI enforces NetworkPolicy at all",
        ),
        (
            Policies::NoPrediction,
            Timeout,
            false,
            "policy: no prediction for payments/gateway:8443/TCP",
        ),
    ];
    for (policies, outcome, rejected, fragment) in cases {
        let d = run(
            &world(gateway_8443(), *policies, HEALTHY),
            *outcome,
            *rejected,
            Expectation::Allow,
            None,
        );
        assert!(
            d.explanation.contains(fragment),
            "{outcome} {policies:?}: missing {fragment:?} in\n{}",
            d.explanation
        );
    }
    let d = run(
        &world(
            gateway_8443(),
            Policies::DefaultDeny,
            &[Edit::CniNotReady("node-2")],
        ),
        Open,
        false,
        Expectation::Allow,
        None,
    );
    assert!(
        d.explanation
            .contains("cni-node-2 on node-2 is not ready: policy enforcement may be inconsistent"),
        "{}",
        d.explanation
    );
    let d = run(
        &world(dns_target(), Policies::EgressDenyAll, HEALTHY),
        DnsTimeout,
        false,
        Expectation::Allow,
        None,
    );
    assert!(d.explanation.contains("policy (the lookup's flow to the DNS server):\n  shop/frontend -> 10.244.2.53 53/UDP: DENIED (egress"), "{}", d.explanation);
}

#[test]
fn policies_name_the_deciders() {
    let allowed = run(
        &world(gateway_8443(), Policies::AllowByRule, HEALTHY),
        Timeout,
        false,
        Expectation::Allow,
        None,
    );
    assert_eq!(
        allowed.policies,
        [PolicyRef::from(ObjectRef::new(
            "payments",
            "allow-frontend"
        ))],
        "the allowing rule's policy"
    );
    let overlap = &allowed.hints[0];
    assert_eq!(
        overlap,
        &Hint::OverlappingPolicies {
            pod: "payments/gateway".into(),
            direction: probe_spec::Direction::Ingress,
            policies: vec![key("payments/allow-frontend"), key("payments/default-deny")],
        }
    );
    assert_eq!(
        overlap.to_string(),
        "2 policies select payments/gateway for ingress (payments/allow-frontend, payments/default-deny): any one isolates it and only the union of their rules is allowed"
    );
    let none = run(
        &world(gateway_8443(), Policies::None_, HEALTHY),
        Open,
        false,
        Expectation::Allow,
        None,
    );
    assert!(none.policies.is_empty());
    let tier = |policies| {
        run(
            &world(gateway_8443(), policies, HEALTHY),
            Timeout,
            false,
            Expectation::Allow,
            None,
        )
    };
    let cluster = |key: &str| vec![PolicyRef::Cluster(key.into())];
    assert_eq!(
        tier(Policies::AdminDeny).policies,
        cluster("ClusterNetworkPolicy/protect-payments")
    );
    assert_eq!(
        tier(Policies::AdminAcceptOverDeny).policies,
        cluster("ClusterNetworkPolicy/allow-shop"),
        "an Accept decides the direction: it is the allowing policy"
    );
    assert_eq!(
        tier(Policies::BaselineDeny).policies,
        cluster("ClusterNetworkPolicy/baseline-payments")
    );
}

// === Change hints ===

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn ns_change(ns: &str) -> ChangeKind {
    ChangeKind::NamespaceLabels {
        namespace: ns.into(),
        before: labels(&[("team", "pay")]),
        after: labels(&[("team", ns)]),
    }
}

fn pod_change(p: &str) -> ChangeKind {
    ChangeKind::PodLabels {
        pod: key(p),
        before: labels(&[("app", "old")]),
        after: labels(&[("app", "new")]),
    }
}

fn created(p: &str) -> ChangeKind {
    ChangeKind::PolicyCreated {
        policy: key(p),
        new: None,
    }
}

fn updated(p: &str) -> ChangeKind {
    ChangeKind::PolicyUpdated {
        policy: key(p),
        old: None,
        new: None,
    }
}

fn deleted(p: &str) -> ChangeKind {
    ChangeKind::PolicyDeleted {
        policy: key(p),
        old: None,
    }
}

/// A change the log saw, `secs` after the fixture epoch.
type Seen = (u64, ChangeKind);

#[test]
fn changes_shortly_before_the_first_failure_become_hints() {
    let first_failure = at(1000);
    // (name, recorded changes, expected hints as text fragments in order)
    let cases: Vec<(&str, Vec<Seen>, Vec<&str>)> = vec![
        ("nothing changed", vec![], vec![]),
        (
            "the destination namespace's labels, 3 min before",
            vec![(820, ns_change("payments"))],
            vec![
                "the labels of namespace payments changed 3m before the first failure ({team: pay} -> {team: payments}): namespace selectors may no longer match",
            ],
        ),
        (
            "the source namespace counts too (ingress namespaceSelectors match it)",
            vec![(990, ns_change("shop"))],
            vec!["namespace shop changed 10s before"],
        ),
        (
            "another namespace does not",
            vec![(990, ns_change("monitoring"))],
            vec![],
        ),
        (
            "11 minutes before is outside the 10 min window",
            vec![(340, ns_change("payments"))],
            vec![],
        ),
        (
            "exactly 10 minutes before is inside",
            vec![(400, ns_change("payments"))],
            vec!["changed 10m before"],
        ),
        (
            "after the first failure cannot be the cause",
            vec![(1001, ns_change("payments"))],
            vec![],
        ),
        (
            "policy created in the destination namespace",
            vec![(940, created("payments/default-deny"))],
            vec!["NetworkPolicy payments/default-deny was created 1m before the first failure"],
        ),
        (
            "policy deleted in the source namespace",
            vec![(999, deleted("shop/allow-egress"))],
            vec!["NetworkPolicy shop/allow-egress was deleted 1s before"],
        ),
        (
            "policy elsewhere",
            vec![(999, updated("monitoring/x"))],
            vec![],
        ),
        (
            "the source pod's labels",
            vec![(700, pod_change("shop/frontend"))],
            vec![
                "the labels of pod shop/frontend changed 5m before the first failure ({app: old} -> {app: new}): pod selectors may no longer match",
            ],
        ),
        (
            "another pod's labels",
            vec![(700, pod_change("shop/other"))],
            vec![],
        ),
        (
            "a CNI restart in the log is no change hint (health reports it)",
            vec![(
                990,
                ChangeKind::CniAgentRestarted {
                    pod: key("kube-system/cni-node-2"),
                    node: Some("node-2".into()),
                    before: 0,
                    restarts: 1,
                },
            )],
            vec![],
        ),
        (
            "several, oldest first; one hint per object, its latest change",
            vec![
                (500, ns_change("payments")),
                (900, created("payments/a")),
                (950, updated("payments/a")),
                (960, pod_change("payments/gateway")),
            ],
            vec![
                "namespace payments changed 8m20s before",
                "payments/a was updated 50s before",
                "pod payments/gateway changed 40s before",
            ],
        ),
    ];
    for (name, changes, want) in cases {
        let mut w = world(gateway_8443(), Policies::DefaultDeny, HEALTHY);
        for (secs, kind) in changes {
            w.changes.push(at(secs), kind);
        }
        let d = run(&w, Timeout, false, Expectation::Allow, Some(first_failure));
        let texts: Vec<String> = d.hints.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), want.len(), "{name}: {texts:#?}");
        for (text, fragment) in texts.iter().zip(&want) {
            assert!(
                text.contains(fragment),
                "{name}: {text:?} lacks {fragment:?}"
            );
        }
        // Without a first-failure time there are no change hints.
        let d = run(&w, Timeout, false, Expectation::Allow, None);
        assert!(d.hints.is_empty(), "{name}");
        // Nor on a clean ok.
        let ok = run(
            &world(gateway_8443(), Policies::None_, HEALTHY),
            Open,
            false,
            Expectation::Allow,
            Some(first_failure),
        );
        assert!(ok.hints.is_empty());
    }
}

#[test]
fn change_hints_carry_time_and_object() {
    let mut w = world(gateway_8443(), Policies::DefaultDeny, HEALTHY);
    w.changes.push(at(820), ns_change("payments"));
    let d = run(&w, Timeout, false, Expectation::Allow, Some(at(1000)));
    let ChangeKind::NamespaceLabels { before, after, .. } = ns_change("payments") else {
        unreachable!()
    };
    assert_eq!(
        d.hints,
        [Hint::NamespaceLabelChanged {
            namespace: "payments".into(),
            labels_before: before,
            labels_after: after,
            at: at(820),
            before_failure: Duration::from_secs(180),
        }]
    );
    assert_eq!(d.hints[0].code(), "namespace_label_changed");
    assert!(
        d.explanation
            .contains("hints:\n  - the labels of namespace payments changed 3m before"),
        "{}",
        d.explanation
    );
    // A DNS target scopes changes by its server pod: kube-system, not payments.
    let mut dns = world(dns_target(), Policies::EgressDenyAll, HEALTHY);
    dns.changes.push(at(820), ns_change("payments"));
    dns.changes.push(at(830), created("kube-system/lockdown"));
    let d = run(&dns, DnsTimeout, false, Expectation::Allow, Some(at(1000)));
    assert_eq!(codes(&d.hints), ["policy_changed"]);
    // A shorter window drops it.
    let input = Input {
        from: &w.from,
        target: &w.target,
        host: None,
        outcome: Timeout,
        not_probed: None,
        expects_reply: false,
        mesh_redirected: false,
        rejected_by_policy: false,
        prediction: w
            .prediction
            .as_ref()
            .map(|(flow, verdict)| Prediction { flow, verdict }),
        destination_unknown: false,
        health: &w.health,
        changes: &w.changes,
        expect: Expectation::Allow,
        first_failure: Some(at(1000)),
    };
    let d = diagnose(
        &input,
        &Config {
            change_window: Duration::from_secs(60),
        },
    );
    assert!(d.hints.is_empty());
    assert_eq!(PolicyOp::Deleted.to_string(), "deleted");
}

// === predict ===

#[test]
fn predict_builds_the_flow_the_probe_takes() {
    let (index, _) = cluster(Policies::EgressDenyAll, HEALTHY);
    let engine = Engine::new(&index, Profile::UPSTREAM);
    let from = key("shop/frontend");
    let dns: IpAddr = DNS_SERVER.parse().unwrap();
    let (flow, verdict) = predict(&engine, &from, &dns_target(), Some(dns)).unwrap();
    assert_eq!(
        (flow.to.clone(), flow.port, flow.protocol),
        (Endpoint::Ip(dns), 53, Protocol::Udp)
    );
    assert!(!verdict.allowed);
    let (flow, _) = predict(&engine, &from, &gateway_8443(), None).unwrap();
    assert_eq!(flow.to, Endpoint::Pod(key("payments/gateway")));
    let ip = PairTarget::Ip {
        ip: "192.0.2.10".parse().unwrap(),
        port: 443,
        protocol: Protocol::Tcp,
    };
    assert_eq!(
        predict(&engine, &from, &ip, None).unwrap().0.to,
        Endpoint::Ip("192.0.2.10".parse().unwrap())
    );
    assert!(
        predict(&engine, &from, &dns_target(), None).is_none(),
        "DNS server unknown"
    );
    let host = PairTarget::Host {
        name: "example.com".into(),
        port: 443,
        protocol: Protocol::Tcp,
    };
    assert!(
        predict(&engine, &from, &host, Some(dns)).is_none(),
        "host address unknown"
    );
    assert!(
        predict(&engine, &key("shop/gone"), &gateway_8443(), None).is_none(),
        "unknown pod"
    );
}

#[test]
fn health_gathers_nodes_once_and_tolerates_missing_objects() {
    let (mut index, cni) = cluster(Policies::None_, HEALTHY);
    // Same node for source and destination: listed once.
    let h = Health::gather(
        &index,
        &cni,
        &key("payments/gateway"),
        Some(&key("kube-system/coredns")),
    );
    assert_eq!(h.nodes().len(), 1);
    assert_eq!(h.nodes()[0].0, "source and destination node");
    // A node without a Node object: condition unknown, never a finding.
    Apply::<Node>::delete(&mut index, &"node-2".to_string());
    let h = Health::gather(
        &index,
        &cni,
        &key("shop/frontend"),
        Some(&key("payments/gateway")),
    );
    let dst = h.destination_node.as_ref().unwrap();
    assert_eq!(dst.ready, None);
    assert!(dst.network_ready());
    assert!(dst.describe().contains("condition unknown"));
    assert!(h.unready_node().is_none());
    // A destination that is not a pod: no destination node or readiness.
    let h = Health::gather(&index, &cni, &key("shop/frontend"), None);
    assert!(h.destination.is_none() && h.destination_node.is_none());
    assert!(Health::default().unhealthy_cni().is_none());
}

/// UDP silence is a loss when the probe spoke the port's protocol, and an `open` through a
/// mesh redirect that could not be bypassed decides nothing.
#[test]
fn reply_due_silence_and_mesh_redirects() {
    let cases = [
        // (outcome, expects_reply, mesh_redirected, policies, verdict, reason)
        (
            OpenOrFiltered,
            true,
            false,
            Policies::None_,
            UnexpectedBlock,
            "unknown",
        ),
        (
            OpenOrFiltered,
            false,
            false,
            Policies::None_,
            Inconclusive,
            "udp_silence",
        ),
        (
            OpenOrFiltered,
            true,
            false,
            Policies::DefaultDeny,
            BlockedByPolicy,
            "default_deny",
        ),
        (
            Open,
            false,
            true,
            Policies::None_,
            Inconclusive,
            "mesh_redirect",
        ),
        (
            Open,
            false,
            true,
            Policies::DefaultDeny,
            Inconclusive,
            "mesh_redirect",
        ),
        // A refusal or timeout through a redirect still came from past the proxy's rules.
        (
            Timeout,
            false,
            true,
            Policies::DefaultDeny,
            BlockedByPolicy,
            "default_deny",
        ),
    ];
    for (outcome, expects_reply, mesh_redirected, policies, verdict, reason) in cases {
        let w = world(gateway_8443(), policies, HEALTHY);
        let input = Input {
            from: &w.from,
            target: &w.target,
            host: None,
            outcome,
            not_probed: None,
            expects_reply,
            mesh_redirected,
            rejected_by_policy: false,
            prediction: w
                .prediction
                .as_ref()
                .map(|(flow, verdict)| Prediction { flow, verdict }),
            destination_unknown: false,
            health: &w.health,
            changes: &w.changes,
            expect: Expectation::Allow,
            first_failure: None,
        };
        let d = diagnose(&input, &Config::default());
        let ctx = format!("{outcome} reply={expects_reply} mesh={mesh_redirected} {policies:?}");
        assert_eq!(d.verdict, verdict, "{ctx}");
        assert_eq!(d.reason_code(), reason, "{ctx}");
        assert_eq!(
            d.meets_expectation.is_none(),
            !verdict.is_decided(),
            "{ctx}"
        );
    }
}

/// A partial view (node-scoped watches) does not know who holds an address: the engine
/// withholds its prediction, and a block is inconclusive, never a verdict; reachability is
/// still what it is.
#[test]
fn an_unknown_destination_never_becomes_a_verdict() {
    use crate::cluster::index::{PodCoverage, PodOwner};

    let (mut index, _) = cluster(Policies::NoPrediction, &[]);
    index.set_coverage(PodCoverage::Partial);
    let unknown: std::net::IpAddr = "10.99.0.7".parse().unwrap();
    let target = PairTarget::Ip {
        ip: unknown,
        port: 80,
        protocol: Protocol::Tcp,
    };
    let from = key("shop/frontend");
    let engine = Engine::new(&index, Profile::UPSTREAM);
    assert!(predict(&engine, &from, &target, None).is_none());
    assert!(destination_unknown(&index, &target, None));
    let health = Health::gather(&index, &[], &from, None);
    let changes = ChangeLog::default();
    let cases = [
        (Timeout, PairVerdict::Inconclusive, "destination_unknown"),
        (
            Unreachable,
            PairVerdict::Inconclusive,
            "destination_unknown",
        ),
        (Open, PairVerdict::Ok, ""),
        (Refused, PairVerdict::Ok, "not_listening"),
    ];
    for (outcome, verdict, reason) in cases {
        let input = Input {
            from: &from,
            target: &target,
            host: None,
            outcome,
            not_probed: None,
            expects_reply: false,
            mesh_redirected: false,
            rejected_by_policy: false,
            prediction: None,
            destination_unknown: true,
            health: &health,
            changes: &changes,
            expect: Expectation::Allow,
            first_failure: None,
        };
        let d = diagnose(&input, &Config::default());
        assert_eq!(
            (d.verdict, d.reason_code()),
            (verdict, reason),
            "{outcome:?}"
        );
        if verdict == PairVerdict::Inconclusive {
            assert!(d.summary.contains("not known"), "{}", d.summary);
            assert_eq!(d.meets_expectation, None);
        }
    }

    // Once a status.podIP watch answered (no pod has it), the address is external again.
    index.mark_address_answered(PodOwner(3), unknown);
    assert!(!destination_unknown(&index, &target, None));
    let engine = Engine::new(&index, Profile::UPSTREAM);
    assert!(predict(&engine, &from, &target, None).is_some());
}

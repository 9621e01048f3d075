//! nftables rulesets: the scenario's enforcement rules (per destination pod netns, `input`
//! hook) and faults (router netns, `bridge` family). Rendering is pure; loading is
//! `ip netns exec <ns> nft -f <file>`. Each ruleset first creates then deletes its table, so
//! loading it replaces the previous version in one transaction.

use std::fmt::Write as _;

use crate::{
    plan::{FaultPlan, RulePlan},
    scenario::{Action, MeshKind, RuleProtocol},
};

/// The enforcement table in each pod netns.
pub(crate) const POD_TABLE: &str = "netreach_testbed";
/// The fault table in the router netns.
pub(crate) const FAULT_TABLE: &str = "netreach_testbed_faults";

/// The ruleset for one destination pod: `rules` in order (first match wins), after a rule that
/// lets replies of established connections through (enforcement applies to new connections, as
/// NetworkPolicy does). With no rules the table is only removed.
pub(crate) fn pod_ruleset(rules: &[&RulePlan]) -> String {
    let mut s = format!("table ip {POD_TABLE}\ndelete table ip {POD_TABLE}\n");
    if rules.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table ip {POD_TABLE} {{");
    s.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
    s.push_str("    ct state established,related accept\n");
    for r in rules {
        for line in rule_lines(r) {
            let _ = writeln!(s, "    {line} comment \"{}\"", r.label);
        }
    }
    s.push_str("  }\n}\n");
    s
}

fn rule_lines(r: &RulePlan) -> Vec<String> {
    let mut m = format!("ip saddr {}", r.src);
    match (r.protocol, r.port) {
        (RuleProtocol::Tcp, Some(p)) => {
            let _ = write!(m, " tcp dport {p}");
        }
        (RuleProtocol::Udp, Some(p)) => {
            let _ = write!(m, " udp dport {p}");
        }
        (RuleProtocol::Any, Some(p)) => {
            let _ = write!(m, " meta l4proto {{ tcp, udp }} th dport {p}");
        }
        (RuleProtocol::Tcp, None) => m.push_str(" meta l4proto tcp"),
        (RuleProtocol::Udp, None) => m.push_str(" meta l4proto udp"),
        (RuleProtocol::Any, None) => {}
    }
    let verdict = match r.action {
        Action::Drop => "drop",
        Action::Accept => "accept",
        Action::RejectIcmpAdmin => "reject with icmp type admin-prohibited",
        Action::RejectIcmpPort => "reject with icmp type port-unreachable",
        Action::RejectIcmpHost => "reject with icmp type host-unreachable",
        Action::RejectIcmpNet => "reject with icmp type net-unreachable",
        Action::RejectTcpReset => {
            return if r.protocol == RuleProtocol::Tcp {
                vec![format!("{m} counter reject with tcp reset")]
            } else {
                vec![
                    format!("{m} meta l4proto tcp counter reject with tcp reset"),
                    format!("{m} counter reject with icmp type port-unreachable"),
                ]
            };
        }
    };
    vec![format!("{m} counter {verdict}")]
}

/// The router's fault ruleset. `ports_of(node)` lists the router-side veth names of the node's
/// pods (the ports of its bridge). With no faults the table is only removed.
pub(crate) fn fault_ruleset(
    faults: &[FaultPlan],
    ports_of: impl Fn(usize) -> Vec<String>,
) -> String {
    let mut s = format!("table bridge {FAULT_TABLE}\ndelete table bridge {FAULT_TABLE}\n");
    let mut lines: Vec<(&str, String)> = Vec::new();
    for f in faults {
        let ports = ports_of(f.node);
        if ports.is_empty() {
            continue;
        }
        let set = ports
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let what = if f.all_frames { "" } else { " ether type ip" };
        lines.push(("forward", format!("iifname {{ {set} }}{what} counter drop")));
        lines.push(("forward", format!("oifname {{ {set} }}{what} counter drop")));
        lines.push(("input", format!("iifname {{ {set} }}{what} counter drop")));
        lines.push(("output", format!("oifname {{ {set} }}{what} counter drop")));
    }
    if lines.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table bridge {FAULT_TABLE} {{");
    for hook in ["forward", "input", "output"] {
        let _ = writeln!(
            s,
            "  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;"
        );
        for (_, l) in lines.iter().filter(|(h, _)| *h == hook) {
            let _ = writeln!(s, "    {l}");
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// A mesh sidecar's outbound capture in the pod's netns, as the mesh's init container writes
/// it (Istio `ISTIO_OUTPUT`, Linkerd `PROXY_INIT_OUTPUT`, ambient's in-pod rules): loopback
/// is left alone, so is the proxy's own identity (owner uid, or ztunnel's packet mark), and
/// every other TCP connection is redirected to the local proxy port.
pub(crate) fn mesh_ruleset(kind: MeshKind) -> String {
    let exempt = match kind.exempt_uid() {
        Some(uid) => format!("meta skuid {uid} return"),
        None => "meta mark & 0xfff == 0x539 return".to_string(),
    };
    format!(
        "table ip netreach_mesh {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    oifname \"lo\" return\n    {exempt}\n    meta l4proto tcp redirect to :{}\n  }}\n}}\n",
        kind.proxy_port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Ipv4Cidr;

    fn rule(action: Action, protocol: RuleProtocol, port: Option<u16>) -> RulePlan {
        RulePlan {
            label: "dataplane.rules[0]".into(),
            dst: 0,
            src: "10.244.1.10".parse::<Ipv4Cidr>().unwrap(),
            action,
            port,
            protocol,
        }
    }

    #[test]
    fn rules_render_in_order_after_established() {
        let a = rule(Action::Drop, RuleProtocol::Tcp, Some(8443));
        let b = rule(Action::RejectIcmpAdmin, RuleProtocol::Any, None);
        let s = pod_ruleset(&[&a, &b]);
        let est = s.find("ct state established").unwrap();
        let drop = s
            .find("ip saddr 10.244.1.10/32 tcp dport 8443 counter drop")
            .unwrap();
        let admin = s
            .find("ip saddr 10.244.1.10/32 counter reject with icmp type admin-prohibited")
            .unwrap();
        assert!(est < drop && drop < admin, "{s}");
        assert!(s.starts_with("table ip netreach_testbed\ndelete table ip netreach_testbed\n"));
    }

    #[test]
    fn tcp_reset_for_any_protocol_also_rejects_the_rest() {
        let r = rule(Action::RejectTcpReset, RuleProtocol::Any, Some(53));
        let lines = rule_lines(&r);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("meta l4proto tcp counter reject with tcp reset"));
        assert!(lines[1].contains("th dport 53 counter reject with icmp type port-unreachable"));
    }

    #[test]
    fn no_rules_only_removes_the_table() {
        assert_eq!(
            pod_ruleset(&[]),
            "table ip netreach_testbed\ndelete table ip netreach_testbed\n"
        );
        assert!(!fault_ruleset(&[], |_| vec![]).contains('{'));
    }

    #[test]
    fn faults_drop_on_the_node_ports() {
        let f = [
            FaultPlan {
                node: 1,
                all_frames: false,
            },
            FaultPlan {
                node: 0,
                all_frames: true,
            },
        ];
        let s = fault_ruleset(&f, |n| {
            if n == 1 {
                vec!["v2".into(), "v3".into()]
            } else {
                vec!["v0".into()]
            }
        });
        assert!(
            s.contains("iifname { \"v2\", \"v3\" } ether type ip counter drop"),
            "{s}"
        );
        assert!(s.contains("oifname { \"v0\" } counter drop"), "{s}");
        assert!(s.contains("type filter hook output priority 0"));
    }

    #[test]
    fn mesh_rulesets_exempt_the_proxy_identity_and_loopback() {
        let istio = super::mesh_ruleset(MeshKind::Istio);
        assert!(istio.contains("oifname \"lo\" return"), "{istio}");
        assert!(istio.contains("meta skuid 1337 return"), "{istio}");
        assert!(
            istio.contains("meta l4proto tcp redirect to :15001"),
            "{istio}"
        );
        let linkerd = super::mesh_ruleset(MeshKind::Linkerd);
        assert!(linkerd.contains("meta skuid 2102 return"), "{linkerd}");
        assert!(linkerd.contains("redirect to :4140"), "{linkerd}");
        let ambient = super::mesh_ruleset(MeshKind::IstioAmbient);
        assert!(
            ambient.contains("meta mark & 0xfff == 0x539 return"),
            "{ambient}"
        );
        assert!(!ambient.contains("skuid"), "{ambient}");
    }
}

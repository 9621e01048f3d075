//! From a scenario to what gets built: pods with IPs, listeners and cgroup layouts, resolved
//! enforcement rules and faults. Pure except for [`plan`], which draws random UIDs.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use serde_json::Value;

use crate::{
    Result,
    cgroup::CgroupLayout,
    scenario::{
        Action, DnsAnswer, Fault, Ipv4Cidr, MeshKind, Peer, PodRef, Protocol, Rule, RuleProtocol,
        Scenario,
    },
    services::{ServicePlan, plan_services},
};

// Defined here rather than in `scenario` so that `scenario` (the file format) never imports
// `plan` (what is built from it): the modules form no cycle.
impl Scenario {
    /// Checks the scenario without touching the system: Pods, IPs, node names, closed ports,
    /// DNS, rules and faults. The error names the offending object.
    pub fn validate(&self) -> Result<()> {
        analyze(self).map(|_| ())
    }
}

/// Everything [`Testbed::start`](crate::Testbed::start) builds.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub nodes: Vec<NodePlan>,
    /// Pods that get processes: `Running` with a known node, in object order.
    pub pods: Vec<PodPlan>,
    pub dns: Option<DnsPlan>,
    pub rules: Vec<RulePlan>,
    pub faults: Vec<FaultPlan>,
    /// ClusterIP Services and their ready endpoints.
    pub services: Vec<ServicePlan>,
    /// Services whose programming a `service-path-broken` fault removed (`namespace/name`).
    pub broken_services: BTreeSet<String>,
    /// The scenario's objects; after [`plan`] every object with metadata has a `uid`.
    pub objects: Vec<Value>,
    /// Indexes into `objects` of those that had no `metadata.uid`.
    uid_missing: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct NodePlan {
    pub name: String,
    /// 1-based; the pod CIDR is `10.244.<index>.0/24`.
    pub index: u8,
}

#[derive(Debug, Clone)]
pub(crate) struct PodPlan {
    pub pod: PodRef,
    /// Index into `Plan::objects`.
    pub object: usize,
    /// `metadata.uid`; empty until [`plan`] fills missing ones.
    pub uid: String,
    /// Index into `Plan::nodes`.
    pub node: usize,
    /// `None` for hostNetwork pods.
    pub ip: Option<Ipv4Addr>,
    pub host_network: bool,
    /// Listeners the app serves (container ports minus `closed` minus the DNS server's).
    pub listeners: Vec<(Protocol, u16)>,
    pub layout: CgroupLayout,
    /// The mesh whose redirect this pod's netns gets (`dataplane.mesh`).
    pub mesh: Option<MeshKind>,
}

#[derive(Debug, Clone)]
pub(crate) struct DnsPlan {
    /// Index into `Plan::pods`.
    pub pod: usize,
    pub ip: Ipv4Addr,
    /// Normalised names (lower case, no trailing dot).
    pub records: BTreeMap<String, DnsAnswer>,
}

/// An enforcement rule with its pods resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RulePlan {
    /// Where it came from, e.g. `dataplane.rules[2]`.
    pub label: String,
    /// Index into `Plan::pods` of the destination.
    pub dst: usize,
    pub src: Ipv4Cidr,
    pub action: Action,
    pub port: Option<u16>,
    pub protocol: RuleProtocol,
}

/// A fault with its node resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    /// Index into `Plan::nodes`.
    pub node: usize,
    /// Drop everything (ARP too) rather than IPv4 only.
    pub all_frames: bool,
}

/// Validates `scenario` and plans it, leaving missing UIDs empty.
pub(crate) fn analyze(scenario: &Scenario) -> Result<Plan> {
    let nodes = nodes(scenario)?;
    let mut uid_missing = Vec::new();
    let mut objects = scenario.objects.clone();
    for (i, obj) in objects.iter_mut().enumerate() {
        let Some(map) = obj.as_object() else {
            return Err(scenario.invalid(format!("objects[{i}]"), "is not a mapping"));
        };
        if map.get("kind").and_then(Value::as_str).is_none() {
            return Err(scenario.invalid(format!("objects[{i}]"), "has no `kind`"));
        }
        let uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
        match uid {
            Some(uid) if !uid.is_empty() => {
                let ok = uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !ok {
                    return Err(scenario.invalid(
                        object_label(obj, i),
                        format!("metadata.uid `{uid}` has characters other than [0-9a-zA-Z-]"),
                    ));
                }
            }
            _ if obj.get("metadata").is_some_and(Value::is_object) => uid_missing.push(i),
            _ => {}
        }
    }
    let mut pods = pods(scenario, &objects, &nodes)?;
    let closed = closed_ports(scenario, &objects, &pods)?;
    let dns = dns(scenario, &pods)?;
    for (i, sidecar) in scenario.dataplane.mesh.iter().enumerate() {
        let label = format!("dataplane.mesh[{i}]");
        let k = netns_pod(scenario, &pods, &label, "meshed", &sidecar.pod)?;
        if pods[k].mesh.replace(sidecar.kind).is_some() {
            return Err(scenario.invalid(label, format!("pod {} is meshed twice", sidecar.pod)));
        }
    }
    for (i, p) in pods.iter_mut().enumerate() {
        p.listeners.retain(|l| !closed.contains(&(i, *l)));
        if dns.as_ref().is_some_and(|d| d.pod == i) {
            p.listeners.retain(|(_, port)| *port != 53);
        }
    }
    let rules = resolve_rules(
        scenario,
        &pods,
        scenario.dataplane.rules.iter(),
        "dataplane.rules",
    )?;
    let faults = resolve_faults(scenario, &nodes, scenario.all_faults())?;
    let services = plan_services(scenario, &objects)?;
    let broken_services = broken_services(scenario, &services, scenario.all_faults())?;
    Ok(Plan {
        nodes,
        pods,
        dns,
        rules,
        faults,
        services,
        broken_services,
        objects,
        uid_missing,
    })
}

/// Validates and plans `scenario`, giving every object without `metadata.uid` a fresh random
/// UUID v4 (from `/proc/sys/kernel/random/uuid`).
pub(crate) fn plan(scenario: &Scenario) -> Result<Plan> {
    let mut plan = analyze(scenario)?;
    let mut fresh: HashMap<usize, String> = HashMap::new();
    for &i in &plan.uid_missing {
        let uid = crate::names::random_uuid()?;
        if let Some(meta) = plan.objects[i]
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            meta.insert("uid".into(), Value::String(uid.clone()));
        }
        fresh.insert(i, uid);
    }
    for pod in &mut plan.pods {
        if let Some(uid) = fresh.get(&pod.object) {
            pod.uid.clone_from(uid);
        }
    }
    Ok(plan)
}

fn object_label(obj: &Value, i: usize) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("object");
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    match (ns, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("objects[{i}] ({kind})"),
    }
}

fn nodes(scenario: &Scenario) -> Result<Vec<NodePlan>> {
    if scenario.nodes.is_empty() {
        return Err(scenario.invalid("nodes", "at least one node is needed"));
    }
    if scenario.nodes.len() > 254 {
        return Err(scenario.invalid("nodes", "at most 254 nodes (10.244.1-254.0/24)"));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, name) in scenario.nodes.iter().enumerate() {
        if name.is_empty() || !seen.insert(name.as_str()) {
            return Err(scenario.invalid(
                format!("nodes[{i}]"),
                format!("node name `{name}` is empty or repeated"),
            ));
        }
        let index = u8::try_from(i + 1).unwrap_or(u8::MAX);
        out.push(NodePlan {
            name: name.clone(),
            index,
        });
    }
    Ok(out)
}

fn pods(scenario: &Scenario, objects: &[Value], nodes: &[NodePlan]) -> Result<Vec<PodPlan>> {
    let mut out: Vec<PodPlan> = Vec::new();
    let mut names = BTreeSet::new();
    let mut ips: HashMap<Ipv4Addr, PodRef> = HashMap::new();
    let mut uids: HashMap<String, PodRef> = HashMap::new();
    let (mut netns_pods, mut host_pods) = (0usize, 0usize);
    for (i, obj) in objects.iter().enumerate() {
        if obj.get("kind").and_then(Value::as_str) != Some("Pod") {
            continue;
        }
        let str_at = |p: &str| obj.pointer(p).and_then(Value::as_str);
        let Some(name) = str_at("/metadata/name") else {
            return Err(scenario.invalid(format!("objects[{i}] (Pod)"), "has no metadata.name"));
        };
        let pod = PodRef::new(str_at("/metadata/namespace").unwrap_or("default"), name);
        let label = format!("Pod {pod}");
        if !names.insert(pod.clone()) {
            return Err(scenario.invalid(label, "appears twice"));
        }
        let uid = str_at("/metadata/uid").unwrap_or_default().to_string();
        if !uid.is_empty()
            && let Some(other) = uids.insert(uid.clone(), pod.clone())
        {
            return Err(scenario.invalid(label, format!("metadata.uid {uid} is also {other}'s")));
        }
        if str_at("/status/phase") != Some("Running") {
            continue;
        }
        let host_network = obj
            .pointer("/spec/hostNetwork")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(node_name) = str_at("/spec/nodeName") else {
            return Err(scenario.invalid(label, "is Running but has no spec.nodeName"));
        };
        let Some(node) = nodes.iter().position(|n| n.name == node_name) else {
            return Err(scenario.invalid(
                label,
                format!(
                    "spec.nodeName `{node_name}` is not one of the scenario's nodes {:?}",
                    scenario.nodes
                ),
            ));
        };
        let ip = if host_network {
            None
        } else {
            let cidr = Scenario::node_cidr(nodes[node].index);
            let Some(ip) = str_at("/status/podIP") else {
                return Err(scenario.invalid(label, "is Running but has no status.podIP"));
            };
            let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                return Err(scenario.invalid(label, format!("status.podIP `{ip}` is not IPv4")));
            };
            let last = ip.octets()[3];
            if !cidr.contains(ip) || last == 0 || last == 1 || last == 255 {
                return Err(scenario.invalid(
                    label,
                    format!(
                        "status.podIP {ip} is not a pod address of node {node_name}'s CIDR {cidr} (.2–.254)"
                    ),
                ));
            }
            if let Some(other) = ips.insert(ip, pod.clone()) {
                return Err(scenario.invalid(label, format!("status.podIP {ip} is also {other}'s")));
            }
            Some(ip)
        };
        let layout = if host_network {
            host_pods += 1;
            CgroupLayout::ALL[(host_pods - 1) % CgroupLayout::ALL.len()]
        } else {
            netns_pods += 1;
            CgroupLayout::ALL[(netns_pods - 1) % CgroupLayout::ALL.len()]
        };
        let listeners = if host_network {
            Vec::new()
        } else {
            container_ports(obj)
                .into_iter()
                .filter_map(|(proto, port, _)| Some((proto?, port)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        out.push(PodPlan {
            pod,
            object: i,
            uid,
            node,
            ip,
            host_network,
            listeners,
            layout,
            mesh: None,
        });
    }
    Ok(out)
}

/// `(protocol or None for SCTP/unknown, port, name)` of every container port.
fn container_ports(pod: &Value) -> Vec<(Option<Protocol>, u16, Option<String>)> {
    let mut out = Vec::new();
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for c in containers {
        let ports = c
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for p in ports {
            let Some(port) = p
                .get("containerPort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0)
            else {
                continue;
            };
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            let name = p.get("name").and_then(Value::as_str).map(str::to_string);
            out.push((proto.parse().ok(), port, name));
        }
    }
    out
}

fn closed_ports(
    scenario: &Scenario,
    objects: &[Value],
    pods: &[PodPlan],
) -> Result<BTreeSet<(usize, (Protocol, u16))>> {
    let mut out = BTreeSet::new();
    for (i, c) in scenario.dataplane.closed.iter().enumerate() {
        let label = format!("dataplane.closed[{i}]");
        let object = objects.iter().find(|o| {
            o.get("kind").and_then(Value::as_str) == Some("Pod")
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(&c.pod.name)
                && o.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    == c.pod.namespace
        });
        let Some(object) = object else {
            return Err(scenario.invalid(label, format!("unknown pod {}", c.pod)));
        };
        let declared = container_ports(object)
            .iter()
            .any(|(proto, port, _)| *proto == Some(c.protocol) && *port == c.port);
        if !declared {
            return Err(scenario.invalid(
                label,
                format!(
                    "pod {} has no container port {}/{}",
                    c.pod, c.port, c.protocol
                ),
            ));
        }
        if let Some(idx) = pods.iter().position(|p| p.pod == c.pod) {
            out.insert((idx, (c.protocol, c.port)));
        }
    }
    Ok(out)
}

/// Finds a pod that has its own netns, or says why `pod` is not one.
fn netns_pod(
    scenario: &Scenario,
    pods: &[PodPlan],
    label: &str,
    role: &str,
    pod: &PodRef,
) -> Result<usize> {
    let in_objects = scenario.objects.iter().any(|o| {
        o.get("kind").and_then(Value::as_str) == Some("Pod")
            && o.pointer("/metadata/name").and_then(Value::as_str) == Some(&pod.name)
            && o.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                == pod.namespace
    });
    match pods.iter().position(|p| &p.pod == pod) {
        Some(i) if pods[i].host_network => Err(scenario.invalid(
            label,
            format!("{role} pod {pod} is hostNetwork: it has no netns or pod IP of its own"),
        )),
        Some(i) => Ok(i),
        None if in_objects => Err(scenario.invalid(
            label,
            format!("{role} pod {pod} is not Running on a node, so it has no netns"),
        )),
        None => Err(scenario.invalid(label, format!("unknown {role} pod {pod}"))),
    }
}

fn dns(scenario: &Scenario, pods: &[PodPlan]) -> Result<Option<DnsPlan>> {
    let Some(cfg) = &scenario.dataplane.dns else {
        return Ok(None);
    };
    let pod = netns_pod(scenario, pods, "dataplane.dns", "DNS", &cfg.pod)?;
    let mut records = BTreeMap::new();
    for (name, answer) in &cfg.records {
        let norm = name.trim_end_matches('.').to_ascii_lowercase();
        let ok = !norm.is_empty()
            && norm.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            return Err(
                scenario.invalid(format!("dataplane.dns.records.{name}"), "is not a DNS name")
            );
        }
        if records.insert(norm, *answer).is_some() {
            return Err(
                scenario.invalid(format!("dataplane.dns.records.{name}"), "is listed twice")
            );
        }
    }
    let ip = pods[pod].ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    Ok(Some(DnsPlan { pod, ip, records }))
}

/// Resolves enforcement rules against the pods; `list` names them in errors (`dataplane.rules`).
pub(crate) fn resolve_rules<'a>(
    scenario: &Scenario,
    pods: &[PodPlan],
    rules: impl Iterator<Item = &'a Rule>,
    list: &str,
) -> Result<Vec<RulePlan>> {
    let mut out = Vec::new();
    for (i, r) in rules.enumerate() {
        let label = format!("{list}[{i}]");
        let dst = netns_pod(scenario, pods, &label, "destination", &r.to)?;
        let src = match &r.from {
            Peer::Cidr(c) => *c,
            Peer::Pod(p) => {
                let idx = netns_pod(scenario, pods, &label, "source", p)?;
                Ipv4Cidr {
                    addr: pods[idx].ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    prefix_len: 32,
                }
            }
        };
        if r.port == Some(0) {
            return Err(scenario.invalid(label, "port 0"));
        }
        if r.action == Action::RejectTcpReset && r.protocol == RuleProtocol::Udp {
            return Err(scenario.invalid(label, "reject-tcp-reset cannot apply to UDP"));
        }
        out.push(RulePlan {
            label,
            dst,
            src,
            action: r.action,
            port: r.port,
            protocol: r.protocol,
        });
    }
    Ok(out)
}

/// Resolves faults against the nodes.
/// The Services `service-path-broken` faults name; each must be a planned ClusterIP Service.
pub(crate) fn broken_services<'a>(
    scenario: &Scenario,
    services: &[ServicePlan],
    faults: impl Iterator<Item = &'a Fault>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for (i, f) in faults.enumerate() {
        if let Fault::ServicePathBroken { service } = f {
            if !services.iter().any(|s| s.key == *service) {
                let known: Vec<&str> = services.iter().map(|s| s.key.as_str()).collect();
                return Err(scenario.invalid(
                    format!("faults[{i}] (service-path-broken)"),
                    format!(
                        "service `{service}` is not a ClusterIP Service of the scenario (Services: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ),
                ));
            }
            out.insert(service.clone());
        }
    }
    Ok(out)
}

pub(crate) fn resolve_faults<'a>(
    scenario: &Scenario,
    nodes: &[NodePlan],
    faults: impl Iterator<Item = &'a Fault>,
) -> Result<Vec<FaultPlan>> {
    let mut out = Vec::new();
    for (i, f) in faults.enumerate() {
        let Some(wanted) = f.node() else {
            continue;
        };
        let Some(node) = nodes.iter().position(|n| n.name == wanted) else {
            return Err(scenario.invalid(
                format!("faults[{i}] ({f:?})"),
                format!("unknown node `{wanted}`"),
            ));
        };
        out.push(FaultPlan {
            node,
            all_frames: matches!(f, Fault::BridgeDropAll { .. }),
        });
    }
    Ok(out)
}

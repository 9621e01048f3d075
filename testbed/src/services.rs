//! Services: each ClusterIP programmed as kube-proxy's nftables mode programs it.
//!
//! ```text
//! Service (ClusterIP in 10.244.255.0/24, ports) + its EndpointSlices (ready endpoints, the port
//! each slice resolved the targetPort to)  ──plan_services──> ServicePlan
//!   ──services_ruleset──> table ip netreach_services, in every pod netns:
//!     output (nat):  ip daddr VIP tcp dport P goto svc-chain
//!     svc-chain:     numgen random mod N vmap { 0 : goto ep-chain-0, ... }   (spread)
//!     ep-chain-i:    dnat ip to ENDPOINT:TARGETPORT
//!     filter output: a Service port without ready endpoints is rejected (ICMP port unreachable)
//! ```
//!
//! kube-proxy translates a ClusterIP in the node's own network namespace, the first place a
//! pod's packets meet netfilter; here that place is the source pod's netns (same-node traffic
//! is bridged in the testbed and never crosses the router's IP layer, so translating in the
//! router would break the replies of same-node endpoints, or need a masquerade that hides the
//! source from the destination's policy). On the wire the effect is kube-proxy's: the packet
//! leaves with the pod's address towards one endpoint, the reply is un-NATed by conntrack.
//! A Service without EndpointSlices gets its endpoints from its selector (ready, Running pods,
//! named targetPorts resolved on their container ports), as the EndpointSlice controller would.
//! The fault `service-path-broken` leaves one Service out: its ClusterIP is routed to the
//! router, which has no route for it (ICMP network unreachable), as when kube-proxy lost it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::Value;

use crate::error::Result;
use crate::scenario::Scenario;

/// The table in each pod netns.
pub(crate) const SERVICE_TABLE: &str = "netreach_services";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceProtocol {
    Tcp,
    Udp,
}

impl ServiceProtocol {
    fn as_str(self) -> &'static str {
        match self {
            ServiceProtocol::Tcp => "tcp",
            ServiceProtocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePortPlan {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: ServiceProtocol,
    /// Ready endpoints: address and the targetPort resolved for it.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePlan {
    /// `namespace/name`.
    pub key: String,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<ServicePortPlan>,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn namespace_of(v: &Value) -> &str {
    text(v, "/metadata/namespace").unwrap_or("default")
}

fn protocol_of(v: &Value, label: &str, scenario: &Scenario) -> Result<ServiceProtocol> {
    match v.get("protocol").and_then(Value::as_str) {
        None | Some("TCP") => Ok(ServiceProtocol::Tcp),
        Some("UDP") => Ok(ServiceProtocol::Udp),
        Some(other) => Err(scenario.invalid(
            label,
            format!("protocol `{other}`: the testbed programs TCP and UDP Services"),
        )),
    }
}

fn port_of(v: Option<&Value>) -> Option<u16> {
    v.and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// The ClusterIP Services of the scenario and their ready endpoints. Headless and ExternalName
/// Services are left alone (nothing to program).
pub(crate) fn plan_services(scenario: &Scenario, objects: &[Value]) -> Result<Vec<ServicePlan>> {
    let mut out = Vec::new();
    for (i, service) in objects.iter().enumerate() {
        if service.get("kind").and_then(Value::as_str) != Some("Service")
            || service.get("apiVersion").and_then(Value::as_str) != Some("v1")
        {
            continue;
        }
        let ns = namespace_of(service);
        let name = text(service, "/metadata/name").unwrap_or_default();
        let label = format!("objects[{i}] (Service {ns}/{name})");
        let Some(ip_text) = text(service, "/spec/clusterIP") else {
            return Err(scenario.invalid(label, "spec.clusterIP is required in a scenario"));
        };
        if ip_text == "None" || text(service, "/spec/type") == Some("ExternalName") {
            continue;
        }
        let cluster_ip: Ipv4Addr = ip_text.parse().map_err(|_| {
            scenario.invalid(
                &label,
                format!("spec.clusterIP `{ip_text}` is not an IPv4 address"),
            )
        })?;
        if cluster_ip.octets()[..3] != [10, 244, 255] {
            return Err(scenario.invalid(
                &label,
                format!("spec.clusterIP {cluster_ip} is outside 10.244.255.0/24, the testbed's Service range"),
            ));
        }
        let slices: Vec<&Value> = objects
            .iter()
            .filter(|o| {
                o.get("kind").and_then(Value::as_str) == Some("EndpointSlice")
                    && namespace_of(o) == ns
                    && text(o, "/metadata/labels/kubernetes.io~1service-name") == Some(name)
            })
            .collect();
        let mut ports = Vec::new();
        for (j, port) in service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let port_label = format!("{label}.spec.ports[{j}]");
            let number = port_of(port.get("port"))
                .ok_or_else(|| scenario.invalid(&port_label, "port is not a port number"))?;
            let protocol = protocol_of(port, &port_label, scenario)?;
            let port_name = port.get("name").and_then(Value::as_str).map(str::to_string);
            let endpoints = if slices.is_empty() {
                selector_endpoints(objects, service, port, number, protocol)
            } else {
                slice_endpoints(&slices, port_name.as_deref(), protocol)
            };
            ports.push(ServicePortPlan {
                name: port_name,
                port: number,
                protocol,
                endpoints,
            });
        }
        out.push(ServicePlan {
            key: format!("{ns}/{name}"),
            cluster_ip,
            ports,
        });
    }
    Ok(out)
}

/// The ready endpoints of `slices` on the slice port named `name` (each slice's own number).
fn slice_endpoints(
    slices: &[&Value],
    name: Option<&str>,
    protocol: ServiceProtocol,
) -> Vec<(Ipv4Addr, u16)> {
    let mut out = BTreeSet::new();
    for slice in slices {
        let number = slice
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|ports| {
                ports.iter().find(|p| {
                    p.get("name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        == name
                        && matches!(
                            (p.get("protocol").and_then(Value::as_str), protocol),
                            (None | Some("TCP"), ServiceProtocol::Tcp)
                                | (Some("UDP"), ServiceProtocol::Udp)
                        )
                })
            })
            .and_then(|p| port_of(p.get("port")));
        let Some(number) = number else { continue };
        for endpoint in slice
            .get("endpoints")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if endpoint
                .pointer("/conditions/ready")
                .and_then(Value::as_bool)
                == Some(false)
            {
                continue;
            }
            let address = endpoint
                .get("addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<Ipv4Addr>().ok());
            if let Some(address) = address {
                out.insert((address, number));
            }
        }
    }
    out.into_iter().collect()
}

/// The endpoints the EndpointSlice controller would pick: ready Running pods the selector
/// matches, the targetPort resolved on each.
fn selector_endpoints(
    objects: &[Value],
    service: &Value,
    port: &Value,
    number: u16,
    protocol: ServiceProtocol,
) -> Vec<(Ipv4Addr, u16)> {
    let Some(selector) = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
    else {
        return Vec::new();
    };
    let ns = namespace_of(service);
    let mut out = BTreeSet::new();
    for pod in objects {
        if pod.get("kind").and_then(Value::as_str) != Some("Pod") || namespace_of(pod) != ns {
            continue;
        }
        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
        let selected = selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        let running = text(pod, "/status/phase") == Some("Running");
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            });
        let Some(ip) = text(pod, "/status/podIP").and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        if !(selected && running && ready) {
            continue;
        }
        let target = match port.get("targetPort") {
            None => Some(number),
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(name)) => named_port(pod, name, protocol),
            Some(_) => None,
        };
        if let Some(target) = target {
            out.insert((ip, target));
        }
    }
    out.into_iter().collect()
}

fn named_port(pod: &Value, name: &str, protocol: ServiceProtocol) -> Option<u16> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|p| {
            p.get("name").and_then(Value::as_str) == Some(name)
                && matches!(
                    (p.get("protocol").and_then(Value::as_str), protocol),
                    (None | Some("TCP"), ServiceProtocol::Tcp)
                        | (Some("UDP"), ServiceProtocol::Udp)
                )
        })
        .and_then(|p| port_of(p.get("containerPort")))
}

/// The Services' ruleset for a pod netns; `broken` Services (`namespace/name`) are left out.
/// With nothing to program the table is only removed.
pub(crate) fn services_ruleset(services: &[ServicePlan], broken: &BTreeSet<String>) -> String {
    let mut s = format!("table ip {SERVICE_TABLE}\ndelete table ip {SERVICE_TABLE}\n");
    let programmed: Vec<(usize, &ServicePlan)> = services
        .iter()
        .enumerate()
        .filter(|(_, svc)| !broken.contains(&svc.key))
        .collect();
    if programmed.is_empty() {
        return s;
    }
    let mut nat = Vec::new();
    let mut reject = Vec::new();
    let mut chains = String::new();
    for (i, svc) in programmed {
        for (j, port) in svc.ports.iter().enumerate() {
            let proto = port.protocol.as_str();
            let matcher = format!("ip daddr {} {proto} dport {}", svc.cluster_ip, port.port);
            if port.endpoints.is_empty() {
                reject.push(format!("{matcher} counter reject comment \"{}\"", svc.key));
                continue;
            }
            let chain = format!("svc-{i}-{j}");
            nat.push(format!(
                "{matcher} counter goto {chain} comment \"{}\"",
                svc.key
            ));
            let map = (0..port.endpoints.len())
                .map(|e| format!("{e} : goto {chain}-ep-{e}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                chains,
                "  chain {chain} {{\n    numgen random mod {} vmap {{ {map} }}\n  }}",
                port.endpoints.len()
            );
            for (e, (ip, target)) in port.endpoints.iter().enumerate() {
                let _ = writeln!(
                    chains,
                    "  chain {chain}-ep-{e} {{\n    meta l4proto {proto} dnat ip to {ip}:{target}\n  }}"
                );
            }
        }
    }
    let _ = writeln!(s, "table ip {SERVICE_TABLE} {{");
    s.push_str(&chains);
    s.push_str("  chain output {\n    type nat hook output priority -110; policy accept;\n");
    for line in &nat {
        let _ = writeln!(s, "    {line}");
    }
    s.push_str("  }\n");
    s.push_str("  chain no-endpoints {\n    type filter hook output priority 0; policy accept;\n");
    for line in &reject {
        let _ = writeln!(s, "    {line}");
    }
    s.push_str("  }\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scenario(objects: Vec<Value>) -> Scenario {
        Scenario {
            name: "svc".into(),
            nodes: vec!["n1".into()],
            objects,
            dataplane: Default::default(),
            faults: vec![],
            expect: vec![],
        }
    }

    fn pod(name: &str, ip: &str, port: u16, ready: bool) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "api"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn endpoints_come_from_slices_or_the_selector_and_render_as_kube_proxy_chains() {
        let objects = vec![
            pod("a", "10.244.1.11", 8080, true),
            pod("b", "10.244.1.12", 9090, true),
            pod("c", "10.244.1.13", 8080, false),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"},
                   "spec": {"clusterIP": "10.244.255.10", "selector": {"app": "api"},
                            "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sliced", "namespace": "shop"},
                   "spec": {"clusterIP": "10.244.255.11", "ports": [{"name": "web", "port": 80}]}}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "sliced-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "sliced"}},
                   "addressType": "IPv4", "ports": [{"name": "web", "port": 7070}],
                   "endpoints": [{"addresses": ["10.244.1.11"]}, {"addresses": ["10.244.1.13"], "conditions": {"ready": false}}]}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty", "namespace": "shop"},
                   "spec": {"clusterIP": "10.244.255.12", "selector": {"app": "none"}, "ports": [{"port": 53, "protocol": "UDP"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "peers", "namespace": "shop"},
                   "spec": {"clusterIP": "None", "selector": {"app": "api"}}}),
        ];
        let s = scenario(objects.clone());
        let plans = plan_services(&s, &objects).unwrap();
        let summary: Vec<(String, Vec<(Ipv4Addr, u16)>)> = plans
            .iter()
            .map(|p| (p.key.clone(), p.ports[0].endpoints.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "shop/api".to_string(),
                    vec![
                        ("10.244.1.11".parse().unwrap(), 8080),
                        ("10.244.1.12".parse().unwrap(), 9090)
                    ]
                ),
                (
                    "shop/sliced".to_string(),
                    vec![("10.244.1.11".parse().unwrap(), 7070)]
                ),
                ("shop/empty".to_string(), vec![]),
            ]
        );
        let rules = services_ruleset(&plans, &BTreeSet::new());
        for line in [
            "ip daddr 10.244.255.10 tcp dport 80 counter goto svc-0-0",
            "numgen random mod 2 vmap { 0 : goto svc-0-0-ep-0, 1 : goto svc-0-0-ep-1 }",
            "meta l4proto tcp dnat ip to 10.244.1.12:9090",
            "ip daddr 10.244.255.12 udp dport 53 counter reject",
        ] {
            assert!(rules.contains(line), "{line} in\n{rules}");
        }
        let broken = services_ruleset(&plans, &BTreeSet::from(["shop/api".to_string()]));
        assert!(!broken.contains("10.244.255.10"), "{broken}");
        assert!(broken.contains("10.244.255.11"));
    }

    #[test]
    fn cluster_ips_outside_the_service_range_are_refused() {
        let objects = vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x", "namespace": "a"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}})];
        let error = plan_services(&scenario(objects.clone()), &objects)
            .unwrap_err()
            .to_string();
        assert!(error.contains("outside 10.244.255.0/24"), "{error}");
    }
}

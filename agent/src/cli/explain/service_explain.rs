//! `netreach explain --to svc/NS/NAME`: a Service port, its ready endpoints, and the policy
//! verdict of the flow to each (NetworkPolicy meets the connection after kube-proxy or the
//! eBPF load balancer translated the ClusterIP to one endpoint, so each endpoint is a flow).

use std::fmt::Write;

use anyhow::bail;
use serde_json::{Value, json};

use crate::cli::input::{PortArg, PortValue};
use crate::cluster::service::{self, EndpointSource, ResolvedService, ServiceKind};
use crate::cluster::{Index, ObjectRef, PortRef};
use crate::policy::{Endpoint, Engine, Flow, Verdict, explain};

/// One endpoint's flow and verdict.
pub struct EndpointExplained {
    pub pod: Option<ObjectRef>,
    pub flow: Flow,
    pub verdict: Verdict,
}

/// The Service port, and every ready endpoint's verdict.
pub struct ServiceExplained {
    pub from: Endpoint,
    pub resolved: ResolvedService,
    pub endpoints: Vec<EndpointExplained>,
}

/// The offline verdict of a Service flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceFlowVerdict {
    Allowed,
    Denied,
    PartiallyDenied,
    NoReadyEndpoints,
}

impl ServiceFlowVerdict {
    /// The verdict of a Service port with `endpoints` ready endpoints, `allowed` of them
    /// allowed.
    pub fn of(endpoints: usize, allowed: usize) -> Self {
        match (endpoints, allowed) {
            (0, _) => ServiceFlowVerdict::NoReadyEndpoints,
            (n, a) if a == n => ServiceFlowVerdict::Allowed,
            (_, 0) => ServiceFlowVerdict::Denied,
            _ => ServiceFlowVerdict::PartiallyDenied,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceFlowVerdict::Allowed => "allowed",
            ServiceFlowVerdict::Denied => "denied",
            ServiceFlowVerdict::PartiallyDenied => "partially_denied",
            ServiceFlowVerdict::NoReadyEndpoints => "no_ready_endpoints",
        }
    }
}

pub fn explain(
    engine: &Engine,
    index: &Index,
    from: &Endpoint,
    service: &ObjectRef,
    port: &PortArg,
) -> anyhow::Result<ServiceExplained> {
    let port_ref = match &port.port {
        PortValue::Number(n) => PortRef::Number(*n),
        PortValue::Name(name) => PortRef::Name(name.clone()),
    };
    let resolved = match service::resolve(index, service, &port_ref, port.protocol) {
        Ok(resolved) => resolved,
        Err(error @ service::ServiceError::UnknownService(_)) => {
            let known: Vec<String> = index
                .services()
                .filter(|s| s.namespace == *service.namespace)
                .take(10)
                .map(|s| s.name.clone())
                .collect();
            if known.is_empty() {
                bail!(
                    "{error} (no Services loaded in namespace {})",
                    service.namespace
                );
            }
            bail!(
                "{error} (Services in {}: {})",
                service.namespace,
                known.join(", ")
            );
        }
        Err(error) => bail!("{error}"),
    };
    let mut endpoints = Vec::new();
    for endpoint in &resolved.endpoints {
        // A pod the dump does not hold is evaluated by its address.
        let to = match &endpoint.pod {
            Some(pod) if engine.pod_id(pod).is_some() => Endpoint::Pod(pod.clone()),
            _ => Endpoint::Ip(endpoint.ip),
        };
        let flow = Flow {
            from: from.clone(),
            to,
            port: endpoint.port,
            protocol: port.protocol,
        };
        let verdict = engine.evaluate(&flow).map_err(|e| anyhow::anyhow!("{e}"))?;
        endpoints.push(EndpointExplained {
            pod: endpoint.pod.clone(),
            flow,
            verdict,
        });
    }
    Ok(ServiceExplained {
        from: from.clone(),
        resolved,
        endpoints,
    })
}

impl ServiceExplained {
    pub fn verdict(&self) -> ServiceFlowVerdict {
        let allowed = self.endpoints.iter().filter(|e| e.verdict.allowed).count();
        ServiceFlowVerdict::of(self.endpoints.len(), allowed)
    }

    pub fn all_allowed(&self) -> bool {
        self.verdict() == ServiceFlowVerdict::Allowed
    }

    /// The policies that deny some endpoint, each once.
    pub fn denying_policies(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for endpoint in &self.endpoints {
            for policy in endpoint.verdict.denying_policies() {
                let name = policy.to_string();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }

    fn heading(&self) -> String {
        let r = &self.resolved;
        let port = &r.port;
        let name = port
            .name
            .as_deref()
            .map_or(String::new(), |n| format!("{n}, "));
        let via = match (r.kind, r.cluster_ip) {
            (ServiceKind::Headless, _) => "headless".to_string(),
            (_, Some(ip)) => format!("ClusterIP {ip}"),
            (_, None) => "no ClusterIP".to_string(),
        };
        format!(
            "{} -> svc {} {}/{} ({name}targetPort {}; {via})",
            self.from, r.service, port.port, port.protocol, port.target_port
        )
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let total = self.endpoints.len();
        let allowed = self.endpoints.iter().filter(|e| e.verdict.allowed).count();
        let status = match self.verdict() {
            ServiceFlowVerdict::NoReadyEndpoints => "NO READY ENDPOINTS".to_string(),
            ServiceFlowVerdict::Allowed => format!("ALLOWED to all {total} endpoints"),
            verdict => format!(
                "{} ({} of {total} endpoints denied; policies: {})",
                if verdict == ServiceFlowVerdict::Denied {
                    "DENIED"
                } else {
                    "PARTIALLY DENIED"
                },
                total - allowed,
                self.denying_policies().join(", ")
            ),
        };
        let _ = writeln!(out, "{}: {status}", self.heading());
        for endpoint in &self.endpoints {
            let pod = endpoint
                .pod
                .as_ref()
                .map_or(String::new(), |p| format!("{p} "));
            let _ = writeln!(
                out,
                "  endpoint {pod}{}:{}: {}",
                self.resolved
                    .endpoints
                    .iter()
                    .find(|e| e.pod == endpoint.pod && e.port == endpoint.flow.port)
                    .map_or(endpoint.flow.to.to_string(), |e| e.ip.to_string()),
                endpoint.flow.port,
                {
                    // The flow is on this line already: keep the verdict part.
                    let summary = explain::summary(&endpoint.flow, &endpoint.verdict);
                    summary
                        .split_once(": ")
                        .map_or(summary.clone(), |(_, verdict)| verdict.to_string())
                }
            );
            if !endpoint.verdict.allowed {
                for line in explain::render(&endpoint.flow, &endpoint.verdict)
                    .lines()
                    .skip(1)
                {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        if self.resolved.not_ready > 0 {
            let _ = writeln!(
                out,
                "  {} endpoint(s) not ready: no traffic is sent to them",
                self.resolved.not_ready
            );
        }
        if self.resolved.source == EndpointSource::Selector {
            let _ = writeln!(
                out,
                "  note: no EndpointSlice of this Service was loaded; its endpoints are the Running pods its selector picks"
            );
        }
        out
    }

    pub fn json(&self) -> Value {
        let r = &self.resolved;
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .zip(&r.endpoints)
            .map(|(e, resolved)| {
                json!({
                    "pod": e.pod.as_ref().map(ToString::to_string),
                    "ip": resolved.ip,
                    "port": e.flow.port,
                    "allowed": e.verdict.allowed,
                    "reason": e.verdict.reason,
                    "direction": e.verdict.direction,
                    "policies": e.verdict.policies,
                    "summary": explain::summary(&e.flow, &e.verdict),
                    "explanation": explain::render(&e.flow, &e.verdict),
                })
            })
            .collect();
        json!({
            "from": self.from.to_string(),
            "service": r.service.to_string(),
            "port": r.port.port,
            "port_name": r.port.name,
            "protocol": r.port.protocol,
            "target_port": r.port.target_port.to_string(),
            "cluster_ip": r.cluster_ip,
            "verdict": self.verdict().as_str(),
            "allowed": self.all_allowed(),
            "policies": self.denying_policies(),
            "endpoints": endpoints,
            "not_ready": r.not_ready,
            "endpoint_source": match r.source {
                EndpointSource::EndpointSlices => "endpoint_slices",
                EndpointSource::Selector => "selector",
            },
        })
    }
}

//! `netreach explain`: one flow, its verdict and why.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use super::input::{PortArg, PortValue, Sources, incomplete_line};
use super::{EXIT_DENIED, Format};
use crate::cluster::ObjectRef;
use crate::policy::{Endpoint, Engine, Flow, explain};

mod service_explain;

pub(super) use service_explain::ServiceFlowVerdict;

/// What `--to` names: a pod or an address, or a Service.
#[derive(Clone, Debug)]
pub enum Destination {
    Endpoint(Endpoint),
    Service(ObjectRef),
}

impl std::str::FromStr for Destination {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `svc/x` alone is pod x of a namespace called svc.
        match s.strip_prefix("svc/").filter(|rest| rest.contains('/')) {
            Some(rest) => rest
                .parse::<ObjectRef>()
                .map(Destination::Service)
                .map_err(|_| format!("expected svc/NAMESPACE/NAME, got {s:?}")),
            None => s.parse().map(Destination::Endpoint),
        }
    }
}

/// Explain whether one flow is allowed, direction by direction, down to the rule and selector.
///
/// Example: netreach explain -f cluster.yaml --from shop/frontend --to payments/gateway --port 8443
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sources: Sources,
    /// Source: `namespace/pod`, or an IP address (a pod's, a node's or an external one).
    #[arg(long, value_name = "NS/POD|IP")]
    from: Endpoint,
    /// Destination: `namespace/pod`, an IP address, or a Service `svc/NAMESPACE/NAME` (each
    /// of its ready endpoints is evaluated: NetworkPolicy applies after the ClusterIP is
    /// translated to an endpoint).
    #[arg(long, value_name = "NS/POD|IP|svc/NS/NAME")]
    to: Destination,
    /// Destination port: a number or a container-port name of the destination pod (for a
    /// Service: its port number or name), with an optional protocol (`8443`, `53/UDP`,
    /// `http`). Default protocol TCP.
    #[arg(long, value_name = "PORT[/PROTO]")]
    port: PortArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit with status 1 when the flow is denied (for scripts and CI checks).
    #[arg(long)]
    exit_code: bool,
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Self {
            sources,
            from,
            to,
            port,
            format,
            exit_code,
        } = self;
        if format == Format::Table {
            bail!("--format table is for matrix; explain prints text or json");
        }
        let loaded = sources.load()?;
        let skipped = loaded.parse_errors.len();
        let engine = Engine::new(&loaded.index, sources.options.profile.clone());
        let to = match to {
            Destination::Endpoint(to) => to,
            Destination::Service(service) => {
                let explained =
                    service_explain::explain(&engine, &loaded.index, &from, &service, &port)?;
                let mut stdout = std::io::stdout().lock();
                match format {
                    Format::Json => {
                        let mut value = explained.json();
                        value["incomplete"] = json!(skipped > 0);
                        value["profile"] = json!(engine.profile().name);
                        serde_json::to_writer_pretty(&mut stdout, &value)?;
                        writeln!(stdout)?;
                    }
                    _ => {
                        if skipped > 0 {
                            writeln!(stdout, "{}", incomplete_line(skipped))?;
                        }
                        write!(stdout, "{}", explained.render())?;
                    }
                }
                stdout.flush()?;
                return Ok(if exit_code && !explained.all_allowed() {
                    ExitCode::from(EXIT_DENIED)
                } else {
                    ExitCode::SUCCESS
                });
            }
        };
        let number = match &port.port {
            PortValue::Number(n) => *n,
            PortValue::Name(name) => resolve_port_name(&engine, &to, name, port.protocol)?,
        };
        let flow = Flow {
            from,
            to,
            port: number,
            protocol: port.protocol,
        };
        let verdict = engine
            .evaluate(&flow)
            .map_err(|e| anyhow::anyhow!("{e}{}", suggest(&engine, &e)))?;

        let mut stdout = std::io::stdout().lock();
        match format {
            Format::Json => {
                let value = json!({
                    "incomplete": skipped > 0,
                    "from": flow.from.to_string(),
                    "to": flow.to.to_string(),
                    "port": flow.port,
                    "protocol": flow.protocol,
                    "allowed": verdict.allowed,
                    "self": verdict.self_traffic,
                    "rules_allowed": verdict.rules_allowed,
                    "reason": verdict.reason,
                    "direction": verdict.direction,
                    "policies": verdict.policies,
                    "profile": engine.profile().name,
                    "summary": explain::summary(&flow, &verdict),
                    "explanation": explain::render(&flow, &verdict),
                    "verdict": {
                        "egress": verdict.egress,
                        "ingress": verdict.ingress,
                        "notes": verdict.notes,
                    },
                });
                serde_json::to_writer_pretty(&mut stdout, &value)?;
                writeln!(stdout)?;
            }
            _ => {
                if skipped > 0 {
                    writeln!(stdout, "{}", incomplete_line(skipped))?;
                }
                write!(stdout, "{}", explain::render(&flow, &verdict))?;
            }
        }
        stdout.flush()?;
        Ok(if exit_code && !verdict.allowed {
            ExitCode::from(EXIT_DENIED)
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// Resolves `--port NAME` on the destination pod's container ports.
fn resolve_port_name(
    engine: &Engine,
    to: &Endpoint,
    name: &str,
    protocol: crate::cluster::Protocol,
) -> anyhow::Result<u16> {
    let Endpoint::Pod(key) = to else {
        bail!("--port {name}: a port name needs a destination pod, not an IP address");
    };
    let id = engine
        .pod_id(key)
        .with_context(|| format!("pod {key} is not in the loaded objects"))?;
    let pod = &engine.pods()[id];
    pod.resolve_named_port(name, protocol).with_context(|| {
        let declared: Vec<String> = pod
            .ports
            .iter()
            .filter_map(|p| {
                p.name
                    .as_ref()
                    .map(|n| format!("{n}={}/{}", p.port, p.protocol))
            })
            .collect();
        format!(
            "pod {key} declares no {protocol} port named {name:?} (named ports: {})",
            if declared.is_empty() {
                "none".into()
            } else {
                declared.join(", ")
            }
        )
    })
}

/// A hint for an unknown pod: pods with the same name elsewhere, or the namespace's pods.
fn suggest(engine: &Engine, error: &crate::policy::ResolveError) -> String {
    let crate::policy::ResolveError::UnknownPod(ObjectRef { namespace, name }) = error else {
        return String::new();
    };
    let same_name: Vec<String> = engine
        .pods()
        .iter()
        .filter(|p| *p.name == **name)
        .map(|p| p.key().to_string())
        .collect();
    if !same_name.is_empty() {
        return format!(" (did you mean {}?)", same_name.join(" or "));
    }
    let in_ns: Vec<String> = engine
        .pods()
        .iter()
        .filter(|p| *p.namespace == **namespace)
        .take(10)
        .map(|p| p.name.clone())
        .collect();
    if in_ns.is_empty() {
        format!(
            " (no pods loaded in namespace {namespace}; {} pods loaded in all)",
            engine.pods().len()
        )
    } else {
        format!(" (pods in {namespace}: {})", in_ns.join(", "))
    }
}

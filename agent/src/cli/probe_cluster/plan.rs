//! Cluster-mode flags into a ProbeRequest, checked before any API call: `--from` (and
//! `--namespace`) name the source pod and the request's namespace; `--to NS/POD|IP` with
//! `--port PORT[/PROTO]`, or `--dns NAME`, the target. Problems name the flag to fix.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use probe_spec::{
    PodRef, ProbeRequest, ProbeRequestSpec, RequestSource, RequestTarget, format_duration,
};

use crate::cli::Format;
use crate::cli::input::{PortArg, PortValue};
use crate::cluster::model::ObjectRef;

/// The prefix of the names of the ProbeRequests the CLI creates.
pub const GENERATE_NAME: &str = "netreach-probe-";
/// The label that marks ProbeRequests created by `netreach probe`.
const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";

/// The cluster-mode flags of `netreach probe`.
#[derive(Clone, Debug)]
pub(in crate::cli) struct ClusterArgs {
    /// `NS/POD`, or `POD` in `--namespace` (or the kubeconfig's namespace).
    pub from: String,
    pub namespace: Option<String>,
    /// `NS/POD` or an IP address.
    pub to: Option<String>,
    pub port: Option<PortArg>,
    pub dns: Option<String>,
    pub count: u32,
    pub timeout: Option<Duration>,
    pub wait_timeout: Duration,
    pub format: Format,
}

/// A ProbeRequest to create, checked before any API call.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::cli) struct Plan {
    /// The source pod's namespace, when `--from` or `--namespace` names it.
    pub namespace: Option<String>,
    pub spec: ProbeRequestSpec,
}

impl Plan {
    pub fn parse(args: &ClusterArgs) -> anyhow::Result<Self> {
        let (namespace, pod) = source(&args.from, args.namespace.as_deref())?;
        let to = target(args.to.as_deref(), args.port.as_ref(), args.dns.as_deref())?;
        let spec = ProbeRequestSpec {
            from: RequestSource { pod },
            to,
            timeout: args
                .timeout
                .map_or_else(|| "2s".to_string(), format_duration),
            count: args.count,
            ttl_seconds_after_finished: probe_spec::DEFAULT_TTL_SECONDS_AFTER_FINISHED,
        };
        if let Err(errors) = spec.validate() {
            let problems: Vec<String> = errors
                .errors()
                .iter()
                .map(|e| format!("{}: {}", flag_of(&e.path), e.message))
                .collect();
            bail!("{}", problems.join("; "));
        }
        Ok(Self { namespace, spec })
    }

    /// The source pod, with `default_namespace` (the kubeconfig's) when no flag named one.
    pub fn source(&self, default_namespace: &str) -> ObjectRef {
        let namespace = self.namespace.as_deref().unwrap_or(default_namespace);
        ObjectRef::new(namespace, self.spec.from.pod.as_str())
    }

    /// The ProbeRequest to create in the source pod's namespace.
    pub fn request(&self, default_namespace: &str) -> ProbeRequest {
        let source = self.source(default_namespace);
        let mut request = ProbeRequest::new("", self.spec.clone());
        request.metadata = ObjectMeta {
            generate_name: Some(GENERATE_NAME.into()),
            namespace: Some(source.namespace.to_string()),
            labels: Some([(CREATED_BY_LABEL.to_string(), "netreach-probe".to_string())].into()),
            ..ObjectMeta::default()
        };
        request
    }

    /// The target as the user gave it, for the first line of the output.
    pub fn target_label(&self) -> String {
        let to = &self.spec.to;
        let port = match &to.port {
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(name)) => name.clone(),
            None => String::new(),
        };
        if let Some(service) = &to.service {
            return format!(
                "svc {}/{}:{port}/{}",
                service.namespace.as_deref().unwrap_or(""),
                service.name,
                to.protocol
            );
        }
        match (&to.pod, &to.ip, &to.dns) {
            (Some(pod), _, _) => format!(
                "{}/{}:{port}/{}",
                pod.namespace.as_deref().unwrap_or(""),
                pod.name,
                to.protocol
            ),
            (_, Some(ip), _) => format!("{ip}:{port}/{}", to.protocol),
            (_, _, Some(name)) => format!("dns {name}"),
            _ => String::new(),
        }
    }
}

/// `--from` (and `--namespace`) into the source's namespace, if named, and pod name.
fn source(from: &str, namespace: Option<&str>) -> anyhow::Result<(Option<String>, String)> {
    let Some(_) = from.split_once('/') else {
        return Ok((namespace.map(str::to_string), from.to_string()));
    };
    let pod: ObjectRef = from
        .parse()
        .map_err(|_| anyhow::anyhow!("--from {from}: expected NS/POD or POD"))?;
    if let Some(namespace) = namespace
        && *namespace != *pod.namespace
    {
        bail!(
            "--namespace {namespace} does not match --from {from}: a ProbeRequest lives in its source pod's namespace"
        );
    }
    Ok((Some(pod.namespace.to_string()), pod.name.to_string()))
}

/// `--to` with `--port`, or `--dns`, into a ProbeRequest target.
fn target(
    to: Option<&str>,
    port: Option<&PortArg>,
    dns: Option<&str>,
) -> anyhow::Result<RequestTarget> {
    let to = match (to, dns) {
        (None, Some(name)) => {
            if port.is_some() {
                bail!("--port goes with --to; a --dns probe takes no port");
            }
            return Ok(RequestTarget {
                dns: Some(name.to_string()),
                ..RequestTarget::default()
            });
        }
        (Some(to), None) => to,
        (Some(_), Some(_)) => bail!("give one target: --to or --dns, not both"),
        (None, None) => bail!("give a target: --to NS/POD|IP with --port, or --dns NAME"),
    };
    // The local-mode form `IP:PORT[/PROTO]`.
    let address = to.split_once('/').map_or(to, |(address, _)| address);
    if let Ok(address) = address.parse::<SocketAddr>() {
        bail!(
            "--to {to}: with --from, --to is NS/POD or an IP and the port goes in --port (e.g. --to {} --port {}/TCP)",
            address.ip(),
            address.port(),
        );
    }
    let port = port.with_context(|| {
        format!(
            "--to {to} needs --port PORT[/PROTO] (e.g. --port 8443, --port 53/UDP, --port http)"
        )
    })?;
    let protocol = probe_spec::Protocol::from(port.protocol);
    if let Ok(ip) = to.parse::<IpAddr>() {
        let PortValue::Number(number) = &port.port else {
            bail!(
                "--port {}: a port name needs a pod target (--to NS/POD); give a number for an IP",
                port_text(port)
            );
        };
        return Ok(RequestTarget {
            ip: Some(ip.to_string()),
            port: Some(IntOrString::Int(i32::from(*number))),
            protocol,
            ..RequestTarget::default()
        });
    }
    if let Some(service) = to.strip_prefix("svc/") {
        let service: ObjectRef = service
            .parse()
            .map_err(|_| anyhow::anyhow!("--to {to}: expected svc/NAMESPACE/NAME"))?;
        return Ok(RequestTarget {
            service: Some(probe_spec::ServiceRef {
                namespace: Some(service.namespace.to_string()),
                name: service.name.to_string(),
            }),
            port: Some(match &port.port {
                PortValue::Number(n) => IntOrString::Int(i32::from(*n)),
                PortValue::Name(name) => IntOrString::String(name.clone()),
            }),
            protocol,
            ..RequestTarget::default()
        });
    }
    let pod: ObjectRef = to.parse().map_err(|_| {
        anyhow::anyhow!("--to {to}: expected NS/POD, svc/NAMESPACE/NAME or an IP address")
    })?;
    Ok(RequestTarget {
        pod: Some(PodRef {
            namespace: Some(pod.namespace.to_string()),
            name: pod.name.to_string(),
        }),
        port: Some(match &port.port {
            PortValue::Number(n) => IntOrString::Int(i32::from(*n)),
            PortValue::Name(name) => IntOrString::String(name.clone()),
        }),
        protocol,
        ..RequestTarget::default()
    })
}

fn port_text(port: &PortArg) -> String {
    match &port.port {
        PortValue::Number(n) => n.to_string(),
        PortValue::Name(name) => name.clone(),
    }
}

/// The flag a ProbeRequest field path comes from.
fn flag_of(path: &str) -> &'static str {
    let path = path.strip_prefix("spec.").unwrap_or(path);
    if path.starts_with("from") {
        "--from"
    } else if path.starts_with("to.port") {
        "--port"
    } else if path.starts_with("to.dns") {
        "--dns"
    } else if path.starts_with("to") {
        "--to"
    } else if path.starts_with("timeout") {
        "--timeout"
    } else if path.starts_with("count") {
        "--count"
    } else {
        "ProbeRequest"
    }
}

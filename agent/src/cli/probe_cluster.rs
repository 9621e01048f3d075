//! `netreach probe --from NS/POD ...` (cluster mode): asks the agent on the source pod's node
//! for one probe through a ProbeRequest, waits for its answer and prints the diagnosis.
//!
//! ```text
//! flags ──Plan::parse──> ProbeRequestSpec (checked before any API call)
//!   ──kubeconfig──> GET the source pod (its node, best effort; 404 stops here)
//!   ──> POST proberequests (generateName netreach-probe-)
//!   ──> GET it every 500ms until status.phase is Succeeded or Failed, or --wait-timeout
//!   ──> the diagnosis on stdout (text, or the status as JSON); progress on stderr
//! ```
//!
//! Kubernetes RBAC on `proberequests` decides who may probe from which namespace; the agent on
//! the source pod's node runs the probe and writes `status`. Each failure says what to fix: no
//! cluster, credentials, RBAC, the CRD, the namespace or pod, or no agent on the node. The
//! ProbeRequest stays in the cluster afterwards as the record of the run (`kubectl get nrpr`).
//!
//! The kube calls are small functions over a [`Client`] ([`source_node`], [`create`],
//! [`wait_for_result`]) with a typed [`Error`], tested against a mocked API server.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::{Api, Client};
use probe_spec::{
    PodRef, ProbeRequest, ProbeRequestPhase, ProbeRequestSpec, ProbeRequestStatus, RequestSource,
    RequestTarget, format_duration,
};
use tokio::time::Instant;
use tracing::debug;

use super::Format;
use super::input::{PortArg, PortValue};
use crate::cluster::model::{ObjectRef, Protocol};

/// The prefix of the names of the ProbeRequests the CLI creates.
pub const GENERATE_NAME: &str = "netreach-probe-";
/// How often the CLI reads the ProbeRequest while it waits.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The label that marks ProbeRequests created by `netreach probe`.
const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a cluster-mode probe could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach a cluster: {0}")]
    Unreachable(#[source] kube::Error),
    #[error("the cluster did not accept your credentials: {0}")]
    Unauthorized(String),
    #[error("not allowed to create proberequests in namespace {namespace}: {message}")]
    CreateForbidden { namespace: String, message: String },
    #[error(
        "not allowed to read proberequests in namespace {namespace}, so the result cannot be shown \
         (ProbeRequest {request} was created): {message}"
    )]
    ReadForbidden {
        namespace: String,
        request: ObjectRef,
        message: String,
    },
    #[error("the ProbeRequest CRD is not installed: kubectl apply -f charts/netreach/crds/")]
    CrdMissing,
    #[error("namespace {0} not found")]
    NamespaceNotFound(String),
    #[error("source pod {0} not found")]
    SourceNotFound(ObjectRef),
    #[error("the cluster rejected the ProbeRequest: {0}")]
    Invalid(String),
    #[error("ProbeRequest {0} was deleted before an agent answered")]
    Deleted(ObjectRef),
    #[error(
        "no agent answered within {}: is netreach running on the source pod's node?{}",
        format_duration(*waited),
        node_hint(node.as_deref(), request)
    )]
    NoAgent {
        waited: Duration,
        request: ObjectRef,
        node: Option<String>,
    },
    #[error(
        "the agent{} started ProbeRequest {request} but did not finish within {}",
        node.as_deref().map(|n| format!(" on node {n}")).unwrap_or_default(),
        format_duration(*waited)
    )]
    Unfinished {
        waited: Duration,
        request: ObjectRef,
        node: Option<String>,
    },
    #[error("the Kubernetes API failed: {0}")]
    Api(#[source] kube::Error),
}

impl Error {
    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Unreachable(_) => "unreachable",
            Error::Unauthorized(_) => "unauthorized",
            Error::CreateForbidden { .. } => "create_forbidden",
            Error::ReadForbidden { .. } => "read_forbidden",
            Error::CrdMissing => "crd_missing",
            Error::NamespaceNotFound(_) => "namespace_not_found",
            Error::SourceNotFound(_) => "source_not_found",
            Error::Invalid(_) => "invalid",
            Error::Deleted(_) => "deleted",
            Error::NoAgent { .. } => "no_agent",
            Error::Unfinished { .. } => "unfinished",
            Error::Api(_) => "api",
        }
    }
}

fn node_hint(node: Option<&str>, request: &ObjectRef) -> String {
    match node {
        Some(node) => format!(" (node {node}; ProbeRequest {request} is left in place)"),
        None => format!(" (ProbeRequest {request} is left in place)"),
    }
}

/// The HTTP status and message of an API error; `None` when the API did not answer at all.
fn api_status(error: &kube::Error) -> Option<(u16, &kube::core::Status)> {
    match error {
        kube::Error::Api(status) => Some((status.code, status)),
        _ => None,
    }
}

/// Errors every call maps the same way: no answer, or rejected credentials.
fn common(error: kube::Error) -> Error {
    match api_status(&error) {
        None => match error {
            kube::Error::SerdeError(_) => Error::Api(error),
            error => Error::Unreachable(error),
        },
        Some((401, status)) => Error::Unauthorized(status.message.clone()),
        Some(_) => Error::Api(error),
    }
}

// === Flags ===

/// The cluster-mode flags of `netreach probe`.
#[derive(Clone, Debug)]
pub(super) struct ClusterArgs {
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
pub(super) struct Plan {
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
        ObjectRef::new(namespace, &self.spec.from.pod)
    }

    /// The ProbeRequest to create in the source pod's namespace.
    pub fn request(&self, default_namespace: &str) -> ProbeRequest {
        let source = self.source(default_namespace);
        let mut request = ProbeRequest::new("", self.spec.clone());
        request.metadata = ObjectMeta {
            generate_name: Some(GENERATE_NAME.into()),
            namespace: Some(source.namespace),
            labels: Some([(CREATED_BY_LABEL.to_string(), "netreach-probe".to_string())].into()),
            ..ObjectMeta::default()
        };
        request
    }

    /// The target as the user gave it, for the first line of the output.
    fn target_label(&self) -> String {
        let to = &self.spec.to;
        let port = match &to.port {
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(name)) => name.clone(),
            None => String::new(),
        };
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
        && namespace != pod.namespace
    {
        bail!(
            "--namespace {namespace} does not match --from {from}: a ProbeRequest lives in its source pod's namespace"
        );
    }
    Ok((Some(pod.namespace), pod.name))
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
    let port = port.with_context(|| {
        format!("--to {to} needs --port PORT[/PROTO] (e.g. --port 8443, --port 53/UDP, --port http)")
    })?;
    let protocol = spec_protocol(port.protocol);
    if let Ok(ip) = to.parse::<IpAddr>() {
        let PortValue::Number(number) = &port.port else {
            bail!("--port {}: a port name needs a pod target (--to NS/POD); give a number for an IP", port_text(port));
        };
        return Ok(RequestTarget {
            ip: Some(ip.to_string()),
            port: Some(IntOrString::Int(i32::from(*number))),
            protocol,
            ..RequestTarget::default()
        });
    }
    let address = to.split_once('/').map_or(to, |(address, _)| address);
    if address.parse::<SocketAddr>().is_ok() {
        bail!(
            "--to {to}: with --from, --to is NS/POD or an IP and the port goes in --port (e.g. --to {} --port {}/TCP)",
            address.rsplit_once(':').map_or(address, |(ip, _)| ip).trim_matches(['[', ']']),
            address.rsplit_once(':').map_or("80", |(_, port)| port),
        );
    }
    let pod: ObjectRef = to
        .parse()
        .map_err(|_| anyhow::anyhow!("--to {to}: expected NS/POD or an IP address"))?;
    Ok(RequestTarget {
        pod: Some(PodRef {
            namespace: Some(pod.namespace),
            name: pod.name,
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

fn spec_protocol(protocol: Protocol) -> probe_spec::Protocol {
    match protocol {
        Protocol::Tcp => probe_spec::Protocol::Tcp,
        Protocol::Udp => probe_spec::Protocol::Udp,
        Protocol::Sctp => probe_spec::Protocol::Sctp,
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

// === Kube calls ===

/// The node the source pod runs on: `Ok(None)` when it is not scheduled yet or the caller may
/// not read pods (the probe still goes ahead); an error when the pod does not exist or the
/// cluster does not answer.
pub async fn source_node(client: &Client, pod: &ObjectRef) -> Result<Option<String>> {
    match Api::<Pod>::namespaced(client.clone(), &pod.namespace)
        .get(&pod.name)
        .await
    {
        Ok(found) => Ok(found.spec.and_then(|spec| spec.node_name)),
        Err(error) => match api_status(&error) {
            Some((404, _)) => Err(Error::SourceNotFound(pod.clone())),
            Some((401, _)) | None => Err(common(error)),
            Some((code, status)) => {
                debug!(%pod, code, message = %status.message, "cannot read the source pod; going ahead");
                Ok(None)
            }
        },
    }
}

/// Creates `request`; returns it as the API server stored it (with its generated name).
pub async fn create(client: &Client, request: &ProbeRequest) -> Result<ProbeRequest> {
    let namespace = request.metadata.namespace.clone().unwrap_or_default();
    Api::<ProbeRequest>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), request)
        .await
        .map_err(|error| match api_status(&error) {
            Some((403, status)) => Error::CreateForbidden {
                namespace,
                message: status.message.clone(),
            },
            // The API server answers a resource it does not serve with a plain-text 404; a
            // missing namespace is a `Status` naming it.
            Some((404, status)) => match &status.details {
                Some(details) if details.kind == "namespaces" => Error::NamespaceNotFound(namespace),
                _ => Error::CrdMissing,
            },
            Some((400 | 422, status)) => Error::Invalid(status.message.clone()),
            _ => common(error),
        })
}

/// How long to wait for the agent, and how often to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub timeout: Duration,
    pub poll: Duration,
}

/// Where the wait stands, for the progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress<'a> {
    pub elapsed: Duration,
    /// The node whose agent should answer: from the status once it names one, else the source
    /// pod's.
    pub node: Option<&'a str>,
    pub phase: ProbeRequestPhase,
}

impl Progress<'_> {
    /// `waiting for the agent on node node-1 ... 3s`.
    pub fn line(&self) -> String {
        let node = match self.node {
            Some(node) => format!("on node {node}"),
            None => "on the source pod's node".to_string(),
        };
        let what = match self.phase {
            ProbeRequestPhase::Running => format!("the agent {node} is probing"),
            _ => format!("waiting for the agent {node}"),
        };
        format!("{what} ... {}s", self.elapsed.as_secs())
    }
}

/// The finished status of ProbeRequest `request` (phase Succeeded or Failed), reading it every
/// `wait.poll` until `wait.timeout`. Server errors and dropped connections are retried until
/// then; `progress` hears about every look.
pub async fn wait_for_result(
    client: &Client,
    request: &ObjectRef,
    node: Option<&str>,
    wait: Wait,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<ProbeRequestStatus> {
    let api = Api::<ProbeRequest>::namespaced(client.clone(), &request.namespace);
    let started = Instant::now();
    let deadline = started + wait.timeout;
    let mut node = node.map(str::to_string);
    let mut phase = ProbeRequestPhase::Pending;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, api.get(&request.name)).await {
            Ok(Ok(found)) => {
                if let Some(status) = found.status {
                    if let Some(name) = &status.node {
                        node = Some(name.clone());
                    }
                    if matches!(
                        status.phase,
                        ProbeRequestPhase::Succeeded | ProbeRequestPhase::Failed
                    ) {
                        return Ok(status);
                    }
                    phase = status.phase;
                }
            }
            Ok(Err(error)) => match api_status(&error) {
                Some((404, _)) => return Err(Error::Deleted(request.clone())),
                Some((403, status)) => {
                    return Err(Error::ReadForbidden {
                        namespace: request.namespace.clone(),
                        request: request.clone(),
                        message: status.message.clone(),
                    });
                }
                Some((401, _)) => return Err(common(error)),
                _ => debug!(%request, %error, "reading the ProbeRequest failed; retrying"),
            },
            Err(_elapsed) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            let waited = wait.timeout;
            let request = request.clone();
            return Err(match phase {
                ProbeRequestPhase::Running => Error::Unfinished {
                    waited,
                    request,
                    node,
                },
                _ => Error::NoAgent {
                    waited,
                    request,
                    node,
                },
            });
        }
        progress(&Progress {
            elapsed: now - started,
            node: node.as_deref(),
            phase,
        });
        tokio::time::sleep(wait.poll.min(deadline - now)).await;
    }
}

/// What a finished run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// The ProbeRequest, `namespace/name`.
    pub request: ObjectRef,
    pub status: ProbeRequestStatus,
}

/// Looks up the source's node, creates the ProbeRequest and waits for its result.
pub(super) async fn execute(
    client: &Client,
    plan: &Plan,
    wait: Wait,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<Finished> {
    let default_namespace = client.default_namespace().to_string();
    let source = plan.source(&default_namespace);
    let node = source_node(client, &source).await?;
    let created = create(client, &plan.request(&default_namespace)).await?;
    let request = ObjectRef::new(
        source.namespace,
        created.metadata.name.clone().unwrap_or_default(),
    );
    debug!(%request, "created the ProbeRequest");
    let status = wait_for_result(client, &request, node.as_deref(), wait, progress).await?;
    Ok(Finished { request, status })
}

// === Output ===

/// The diagnosis for humans: a headline, then one field per line, then the explanation.
pub fn render_text(from: &ObjectRef, requested: &str, finished: &Finished) -> String {
    let status = &finished.status;
    let dash = || "-".to_string();
    let target = status.target.clone().unwrap_or_else(|| requested.to_string());
    let mut out = format!("{from} -> {target}\n");
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("  {name:<12} {value}\n"));
    };
    if status.phase == ProbeRequestPhase::Failed {
        field("phase", "Failed (the probe could not run)".into());
        field("message", status.message.clone().unwrap_or_else(dash));
    }
    field("summary", status.summary.clone().unwrap_or_else(dash));
    field(
        "verdict",
        status.verdict.map_or_else(dash, |v| v.to_string()),
    );
    let reason = match (status.reason.as_deref(), status.direction) {
        (Some(reason), Some(direction)) if !reason.is_empty() => format!("{reason} ({direction})"),
        (Some(reason), None) if !reason.is_empty() => reason.to_string(),
        _ => dash(),
    };
    field("reason", reason);
    field(
        "policies",
        if status.policies.is_empty() {
            dash()
        } else {
            status.policies.join(", ")
        },
    );
    let mut outcome = status.outcome.clone().unwrap_or_else(dash);
    if status.outcomes.len() > 1 || status.outcomes.values().any(|n| *n > 1) {
        let counts: Vec<String> = status
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        outcome.push_str(&format!(" ({})", counts.join(", ")));
    }
    field("outcome", outcome);
    field(
        "latency",
        status
            .latency_seconds
            .map_or_else(dash, |s| format!("{:.3} ms", s * 1000.0)),
    );
    field("node", status.node.clone().unwrap_or_else(dash));
    field("request", finished.request.to_string());
    if let Some(explanation) = status.explanation.as_deref().filter(|e| !e.is_empty()) {
        out.push_str("explanation:\n");
        for line in explanation.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// Prints the progress line on stderr: refreshed in place on a terminal, once otherwise.
struct StderrProgress {
    terminal: bool,
    shown: bool,
}

impl StderrProgress {
    fn show(&mut self, progress: &Progress<'_>) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r{}\x1b[K", progress.line());
        } else if !self.shown {
            let _ = writeln!(stderr, "{}", progress.line());
        }
        self.shown = true;
    }

    fn finish(&self) {
        if self.terminal && self.shown {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

/// Runs cluster mode: create, wait, print. Exit 0 when the probe ran, whatever its outcome.
pub(super) fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::parse(&args)?;
    let wait = Wait {
        timeout: args.wait_timeout,
        poll: POLL_INTERVAL,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut printer = StderrProgress {
        terminal: std::io::stderr().is_terminal(),
        shown: false,
    };
    let (from, finished) = runtime.block_on(async {
        let client = Client::try_default().await.map_err(Error::Unreachable)?;
        let from = plan.source(client.default_namespace());
        let finished = execute(&client, &plan, wait, &mut |p| printer.show(p)).await;
        printer.finish();
        Ok::<_, Error>((from, finished?))
    })?;

    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &finished.status)?;
            writeln!(out)?;
        }
        Format::Text | Format::Table => {
            write!(
                out,
                "{}",
                render_text(&from, &plan.target_label(), &finished)
            )?;
        }
    }
    out.flush()?;
    if finished.status.phase == ProbeRequestPhase::Failed {
        bail!(
            "the agent{} could not run the probe: {}",
            finished
                .status
                .node
                .as_deref()
                .map(|n| format!(" on node {n}"))
                .unwrap_or_default(),
            finished
                .status
                .message
                .as_deref()
                .unwrap_or("no reason given")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;

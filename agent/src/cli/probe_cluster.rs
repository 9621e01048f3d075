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
//! [`plan`] turns the flags into a ProbeRequest; [`api`] holds the kube calls, small functions
//! over a `kube::Client` with a typed [`Error`], tested against a mocked API server; this
//! module runs them and prints.

mod api;
mod plan;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use kube::Client;
use probe_spec::ProbeRequestPhase;

use self::api::{Error, Finished, POLL_INTERVAL, Progress, Wait, execute};
pub(super) use self::plan::ClusterArgs;
use self::plan::Plan;
use super::Format;
use crate::cluster::model::ObjectRef;

/// The diagnosis for humans: a headline, then one field per line, then the explanation.
pub fn render_text(from: &ObjectRef, requested: &str, finished: &Finished) -> String {
    let status = &finished.status;
    let dash = || "-".to_string();
    let target = status
        .target
        .clone()
        .unwrap_or_else(|| requested.to_string());
    let mut out = format!("{from} -> {target}\n");
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("  {name:<12} {value}\n"));
    };
    if status.phase == ProbeRequestPhase::Failed {
        field("phase", "Failed (the probe could not run)".into());
        field("message", status.message.clone().unwrap_or_else(dash));
        field("node", status.node.clone().unwrap_or_else(dash));
        field("request", finished.request.to_string());
        return out;
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

/// Prints the progress line on stderr: refreshed in place on a terminal, once (without the
/// seconds) otherwise.
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
            let _ = writeln!(stderr, "{} ...", progress.what());
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

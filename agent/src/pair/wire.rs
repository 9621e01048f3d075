//! The JSON form of a [`PairReport`] (`GET /v1/pairs`, `POST /v1/probe`, `netreach demo
//! --format json`): a contract scripts and alerts rely on (docs/design.md, "CLI contracts"),
//! so it is spelled out here field by field and converted at this edge, once each way.
//!
//! ```text
//! PairReport ──From──> PairReportWire ──serde──> {"spec":"ns/name","from":"ns/pod","to":"ns/pod"|"10.0.0.1"|"host",
//!            <─TryFrom─               <─serde──   "ip","dns","port","protocol","reason":"default_deny"|"",...}
//! ```
//!
//! The typed target becomes `to`/`ip`/`dns`/`port`/`protocol` (a DNS probe has `dns` instead of
//! `to` and `port`), the probe's own detail a trailing `probe:` line of `explanation`.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use probe_spec::{Direction, Expectation, PairVerdict};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::history::{self, PairHistory, SharedHistory, VerdictPeriod};
use super::report::PROBE_LINE;
use super::{Destination, EndpointReport, PairReason, PairReport, PairTarget, UnknownReason};
use crate::cluster::SpecRef;
use crate::cluster::model::{ObjectRef, PolicyRef, Protocol};
use crate::probe::Outcome;

/// One diagnosed pair as JSON has it. DNS lookups carry `dns` instead of `to`/`port`/
/// `protocol`. A host target gives one report per address its name resolved to, each with
/// `host`; a name that did not resolve gives one `not_probed` report with `to` and `host` the
/// name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairReportWire {
    /// The spec: a ProbeSpec as `namespace/name`, a ClusterProbeSpec as `name`; absent for
    /// on-demand probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// The source pod, `namespace/name`.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// The destination: a pod's `namespace/name` or an IP address (for a host target, the pod
    /// that holds the resolved address, else the address); a host name that did not resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A Service pair's Service, `namespace/name` (then `port` is the Service port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The address probed, when known (a pod target's IP, an IP target, a resolved host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The name looked up, for DNS probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// What the probe observed: `open`, `refused`, `timeout`, ...
    #[serde(with = "outcome_code")]
    pub outcome: Outcome,
    pub policy_allowed: bool,
    pub verdict: PairVerdict,
    /// The bounded reason code (`default_deny`, `cni_unhealthy`, ...); empty for `ok`.
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The deciding policies, `namespace/name`.
    #[serde(default)]
    pub policies: Vec<String>,
    pub summary: String,
    /// The diagnosis's explanation, then the probe's own detail on a `probe:` line.
    #[serde(default)]
    pub explanation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    pub latency_seconds: f64,
    pub last_probe: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meets_expectation: Option<bool>,
    /// A Service pair's ready endpoints, each probed directly on its resolved targetPort.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointWire>,
    /// The pair's verdict periods and probe counts since the agent started probing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryWire>,
    /// The resources whose watch had been failing too long: the prediction rests on a stale
    /// view, and a new policy verdict was held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub view_stale: Vec<String>,
}

/// A pair's outage history: `{"since", "probes": {"open": 41, "timeout": 3},
/// "periods": [{"start", "end", "verdict", "reason", "policies"}]}`, oldest period first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryWire {
    pub since: Timestamp,
    /// Probes by outcome (only the outcomes seen).
    pub probes: std::collections::BTreeMap<String, u64>,
    pub periods: Vec<PeriodWire>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodWire {
    pub start: Timestamp,
    /// Absent while the period lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    pub verdict: PairVerdict,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
}

impl From<&PairHistory> for HistoryWire {
    fn from(history: &PairHistory) -> Self {
        Self {
            since: history.since,
            probes: history.probes.by_code(),
            periods: history
                .periods
                .iter()
                .map(|p| PeriodWire {
                    start: p.start,
                    end: p.end,
                    verdict: p.verdict,
                    reason: p.reason.map_or("", PairReason::as_str).to_string(),
                    policies: p.policies.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }
}

impl TryFrom<HistoryWire> for PairHistory {
    type Error = WireError;
    fn try_from(wire: HistoryWire) -> Result<Self, WireError> {
        let mut history = PairHistory::new(wire.since);
        for (code, n) in wire.probes {
            let outcome = Outcome::from_code(&code).ok_or(WireError::Outcome(code))?;
            history.probes.set(outcome, n);
        }
        for p in wire.periods.into_iter().take(history::MAX_PERIODS) {
            history.periods.push_back(VerdictPeriod {
                start: p.start,
                end: p.end,
                verdict: p.verdict,
                reason: reason_from_wire(&p.reason)?,
                policies: policies_from_wire(&p.policies)?,
            });
        }
        Ok(history)
    }
}

/// One endpoint of a Service pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub ip: IpAddr,
    pub port: u16,
    pub verdict: PairVerdict,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub policies: Vec<String>,
}

impl From<&EndpointReport> for EndpointWire {
    fn from(e: &EndpointReport) -> Self {
        Self {
            pod: e.pod.as_ref().map(ToString::to_string),
            ip: e.ip,
            port: e.port,
            verdict: e.verdict,
            reason: e.reason.map_or("", PairReason::as_str).to_string(),
            policies: e.policies.iter().map(ToString::to_string).collect(),
        }
    }
}

impl TryFrom<EndpointWire> for EndpointReport {
    type Error = WireError;
    fn try_from(e: EndpointWire) -> Result<Self, WireError> {
        Ok(Self {
            pod: e
                .pod
                .map(|pod| pod.parse::<ObjectRef>())
                .transpose()
                .map_err(WireError::Source)?,
            ip: e.ip,
            port: e.port,
            verdict: e.verdict,
            reason: reason_from_wire(&e.reason)?,
            policies: policies_from_wire(&e.policies)?,
        })
    }
}

/// A reason code as the JSON writes it: `""` for none.
fn reason_from_wire(code: &str) -> Result<Option<PairReason>, WireError> {
    if code.is_empty() {
        return Ok(None);
    }
    Ok(Some(code.parse::<PairReason>()?))
}

/// Policies as the JSON names them (`ns/name`, or a tiered policy's key).
fn policies_from_wire(names: &[String]) -> Result<Vec<PolicyRef>, WireError> {
    names
        .iter()
        .map(|name| name.parse())
        .collect::<Result<_, _>>()
        .map_err(WireError::Policy)
}

/// Why a JSON pair is not a [`PairReport`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("spec: {0}")]
    Spec(String),
    #[error("from: {0}")]
    Source(String),
    #[error("policies: {0}")]
    Policy(String),
    #[error("reason: {0}")]
    Reason(#[from] UnknownReason),
    #[error("history: unknown outcome {0:?}")]
    Outcome(String),
    #[error("none of to, service and dns is set")]
    NoDestination,
    #[error("to {0:?} has no port")]
    NoPort(String),
    #[error("to {0:?} is a pod but no ip is given")]
    NoPodAddress(String),
}

impl From<&PairReport> for PairReportWire {
    fn from(report: &PairReport) -> Self {
        Self {
            spec: report.spec.as_ref().map(ToString::to_string),
            from: report.from.to_string(),
            mesh: report.mesh.clone(),
            to: report
                .to()
                .filter(|to| !matches!(to, Destination::Service(_)))
                .map(|to| to.to_string()),
            host: report.host.as_ref().map(ToString::to_string),
            service: report.target.service().map(ToString::to_string),
            ip: report.ip(),
            dns: report.dns().map(str::to_string),
            port: report.port(),
            protocol: report.protocol(),
            outcome: report.outcome,
            policy_allowed: report.policy_allowed,
            verdict: report.verdict,
            reason: report.reason_code().to_string(),
            direction: report.direction,
            policies: report.policies.iter().map(ToString::to_string).collect(),
            summary: report.summary.to_string(),
            explanation: report.full_explanation(),
            hints: report.hints.clone(),
            latency_seconds: report.latency_seconds,
            last_probe: report.last_probe,
            expect: report.expect,
            meets_expectation: report.meets_expectation,
            endpoints: report.endpoints.iter().map(EndpointWire::from).collect(),
            history: report
                .history
                .as_ref()
                .map(|h| HistoryWire::from(&*h.lock())),
            view_stale: report.view_stale.names().map(str::to_string).collect(),
        }
    }
}

impl TryFrom<PairReportWire> for PairReport {
    type Error = WireError;

    fn try_from(wire: PairReportWire) -> Result<Self, WireError> {
        let PairReportWire {
            spec,
            from,
            mesh,
            to,
            host,
            service,
            ip,
            dns,
            port,
            protocol,
            outcome,
            policy_allowed,
            verdict,
            reason,
            direction,
            policies,
            summary,
            explanation,
            hints,
            latency_seconds,
            last_probe,
            expect,
            meets_expectation,
            endpoints,
            history,
            view_stale,
        } = wire;
        let target = match (dns, service, to) {
            (Some(name), _, _) => PairTarget::Dns { name: name.into() },
            (None, Some(service), _) => PairTarget::Service {
                port: port.ok_or_else(|| WireError::NoPort(service.clone()))?,
                service: service.parse().map_err(WireError::Source)?,
                protocol: protocol.unwrap_or(Protocol::Tcp),
            },
            (None, None, Some(to)) => target(to, ip, port, protocol)?,
            (None, None, None) => return Err(WireError::NoDestination),
        };
        let (explanation, probe_detail) = explanation
            .rsplit_once(PROBE_LINE)
            .unwrap_or((&explanation, ""));
        Ok(Self {
            spec: spec
                .map(|spec| spec.parse::<SpecRef>())
                .transpose()
                .map_err(WireError::Spec)?,
            from: from.parse().map_err(WireError::Source)?,
            mesh,
            target,
            host: host.map(Arc::from),
            outcome,
            policy_allowed,
            verdict,
            reason: reason_from_wire(&reason)?,
            direction,
            policies: policies_from_wire(&policies)?,
            summary: summary.into(),
            explanation: explanation.into(),
            probe_detail: probe_detail.into(),
            hints,
            latency_seconds,
            last_probe,
            expect,
            meets_expectation,
            endpoints: endpoints
                .into_iter()
                .map(EndpointReport::try_from)
                .collect::<Result<_, _>>()?,
            history: history
                .map(PairHistory::try_from)
                .transpose()?
                .map(SharedHistory::new),
            view_stale: view_stale
                .iter()
                .filter_map(|name| {
                    crate::cluster::watch::WatchedKind::ALL
                        .into_iter()
                        .find(|known| known.as_str() == name.as_str())
                })
                .collect(),
        })
    }
}

/// A destination other than a DNS name: a pod (`ns/name`, at `ip`), an address, else a host
/// name that did not resolve. Without a protocol it is TCP, as a probe request's is.
fn target(
    to: String,
    ip: Option<IpAddr>,
    port: Option<u16>,
    protocol: Option<Protocol>,
) -> Result<PairTarget, WireError> {
    let Some(port) = port else {
        return Err(WireError::NoPort(to));
    };
    let protocol = protocol.unwrap_or(Protocol::Tcp);
    if let Ok(pod) = to.parse::<ObjectRef>() {
        let ip = ip.ok_or(WireError::NoPodAddress(to))?;
        return Ok(PairTarget::Pod {
            pod,
            ip,
            port,
            protocol,
        });
    }
    Ok(match to.parse::<IpAddr>() {
        Ok(ip) => PairTarget::Ip { ip, port, protocol },
        Err(_) => PairTarget::Host {
            name: to.into(),
            port,
            protocol,
        },
    })
}

impl Serialize for PairReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PairReportWire::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PairReport {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = PairReportWire::deserialize(deserializer)?;
        PairReport::try_from(wire).map_err(serde::de::Error::custom)
    }
}

/// `Outcome` as its snake_case code.
mod outcome_code {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Outcome;

    pub(super) fn serialize<S: Serializer>(
        outcome: &Outcome,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(outcome.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Outcome, D::Error> {
        let code = String::deserialize(deserializer)?;
        Outcome::from_code(&code)
            .ok_or_else(|| D::Error::custom(format!("unknown outcome {code:?}")))
    }
}

#[cfg(test)]
mod tests;

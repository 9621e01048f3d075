//! `GET /v1/pairs`: this node's pairs with their diagnoses, as the agent last published them,
//! filtered by the query string.
//!
//! [`PairReport`] is the wire form of one diagnosed pair; the agent fills it from the schedule's
//! pair, the probe's observation and the diagnosis, and publishes the list through a
//! `tokio::sync::watch` channel. It also yields the pair's metric key and state, so metrics and
//! the API show the same thing.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use k8s_openapi::jiff::Timestamp;
use probe_spec::{Direction, Expectation, PairVerdict};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::cluster::model::Protocol;
use crate::probe::{NotProbedReason, Outcome};
use crate::report::metrics::{PairKey, PairState, ProtocolLabel};

/// One diagnosed pair. DNS lookups carry `dns` instead of `to`/`port`/`protocol`. A host
/// target gives one report per address its name resolved to, each with `host`; a name that
/// did not resolve gives one `not_probed` report with `to` and `host` the name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairReport {
    /// The spec: a ProbeSpec as `namespace/name`, a ClusterProbeSpec as `name`; absent for
    /// on-demand probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// The source pod, `namespace/name`.
    pub from: String,
    /// The source pod's service mesh (`istio`, `linkerd`, `istio-ambient`): TCP probes were
    /// made with the identity its redirect exempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// The destination: a pod's `namespace/name` or an IP address (for a host target, the pod
    /// that holds the resolved address, else the address); a host name that did not resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The host name of a host target (`to` is what it resolved to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
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
    /// The live NetworkPolicy set allows the flow.
    pub policy_allowed: bool,
    pub verdict: PairVerdict,
    /// The bounded reason code (`default_deny`, `cni_unhealthy`, ...); empty for `ok`.
    #[serde(default)]
    pub reason: String,
    /// The side whose policy decided, when a policy did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The deciding policies, `namespace/name`.
    #[serde(default)]
    pub policies: Vec<String>,
    /// One line for humans.
    pub summary: String,
    /// The full explanation: policies, rules, selectors, health checks.
    #[serde(default)]
    pub explanation: String,
    /// The runbook's fallback hints that hold (recent label or policy changes, overlapping
    /// policies, a restarted CNI agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// The probe's latency (the timeout when nothing came back).
    pub latency_seconds: f64,
    /// When the pair was last probed.
    pub last_probe: Timestamp,
    /// The spec's intent; absent for on-demand probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectation>,
    /// Whether the verdict meets `expect`; absent without an intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meets_expectation: Option<bool>,
}

impl PairReport {
    /// The pair's metric labels; `None` for on-demand probes, which have no series.
    pub fn metric_key(&self) -> Option<PairKey> {
        let spec = self.spec.clone()?;
        let (dst, protocol) = match (&self.dns, &self.to, self.protocol) {
            (Some(name), _, _) => (name.clone(), ProtocolLabel::Dns),
            (None, Some(to), protocol) => (to.clone(), protocol.unwrap_or(Protocol::Tcp).into()),
            (None, None, _) => return None,
        };
        Some(PairKey {
            spec,
            src: self.from.clone(),
            dst,
            host: self.host.clone(),
            port: if self.dns.is_some() { None } else { self.port },
            protocol,
        })
    }

    /// The order pairs are listed in: by spec, source, destination, host name, port.
    #[allow(clippy::type_complexity)]
    pub fn sort_key(
        &self,
    ) -> (
        &Option<String>,
        &str,
        &Option<String>,
        &Option<String>,
        &Option<String>,
        Option<u16>,
    ) {
        (
            &self.spec, &self.from, &self.to, &self.dns, &self.host, self.port,
        )
    }

    /// The pair's metric state.
    pub fn metric_state(&self) -> PairState {
        PairState {
            verdict: self.verdict,
            reason: self.reason.clone(),
            direction: self.direction,
            policy: PairState::policy_label(&self.policies),
            policy_allowed: self.policy_allowed,
            // On-demand probes have no series; a spec pair without a decision has none either.
            expectation_met: if self.spec.is_some() {
                self.meets_expectation
            } else {
                Some(true)
            },
        }
    }

    /// Why the pair was not probed, for a `not_probed` report.
    pub fn not_probed_reason(&self) -> Option<NotProbedReason> {
        (self.outcome == Outcome::NotProbed).then(|| {
            NotProbedReason::from_code(&self.reason).unwrap_or(NotProbedReason::ProbeError)
        })
    }

    /// The destination's namespace, for pod targets.
    fn destination_namespace(&self) -> Option<&str> {
        let to = self.to.as_deref()?;
        let (namespace, name) = to.split_once('/')?;
        (!name.is_empty()).then_some(namespace)
    }

    fn source_namespace(&self) -> &str {
        self.from
            .split_once('/')
            .map_or("", |(namespace, _)| namespace)
    }
}

/// The body of `GET /v1/pairs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairsResponse {
    /// The node this agent runs on.
    pub node: String,
    pub pairs: Vec<PairReport>,
}

/// The filters of `GET /v1/pairs`; every given filter must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairsQuery {
    /// The spec: `namespace/name` for a ProbeSpec, `name` for a ClusterProbeSpec.
    pub spec: Option<String>,
    /// A verdict code: `ok`, `blocked_by_policy`, `policy_not_enforced`, `unexpected_block`,
    /// `not_probed`, `inconclusive`.
    pub verdict: Option<String>,
    /// The source pod, `namespace/name`.
    pub from: Option<String>,
    /// The destination: a pod's `namespace/name`, an IP, a host or a DNS name (a host name
    /// lists every pair of its resolved addresses).
    pub to: Option<String>,
    /// Pairs whose source or destination pod is in this namespace.
    pub namespace: Option<String>,
}

/// A [`PairsQuery`] with its verdict parsed.
struct PairFilter {
    query: PairsQuery,
    verdict: Option<PairVerdict>,
}

impl PairFilter {
    fn new(query: PairsQuery) -> Result<Self, ApiError> {
        let verdict = query
            .verdict
            .as_deref()
            .map(|code| {
                PairVerdict::ALL
                    .into_iter()
                    .find(|verdict| verdict.as_str() == code)
                    .ok_or_else(|| {
                        let known: Vec<&str> =
                            PairVerdict::ALL.iter().map(|v| v.as_str()).collect();
                        ApiError::InvalidQuery(format!(
                            "unknown verdict {code:?} (expected one of {})",
                            known.join(", ")
                        ))
                    })
            })
            .transpose()?;
        Ok(Self { query, verdict })
    }

    fn matches(&self, pair: &PairReport) -> bool {
        let query = &self.query;
        let is = |wanted: &Option<String>, actual: Option<&str>| {
            wanted
                .as_deref()
                .is_none_or(|wanted| actual == Some(wanted))
        };
        // A host target's pairs answer to their host name as well as to what it resolved to.
        let to = [
            pair.to.as_deref(),
            pair.dns.as_deref(),
            pair.host.as_deref(),
        ];
        is(&query.spec, pair.spec.as_deref())
            && self.verdict.is_none_or(|verdict| pair.verdict == verdict)
            && is(&query.from, Some(&pair.from))
            && query
                .to
                .as_deref()
                .is_none_or(|wanted| to.contains(&Some(wanted)))
            && query.namespace.as_deref().is_none_or(|namespace| {
                pair.source_namespace() == namespace
                    || pair.destination_namespace() == Some(namespace)
            })
    }
}

pub(super) async fn list_pairs(
    State(state): State<AppState>,
    query: Result<Query<PairsQuery>, QueryRejection>,
) -> Result<Json<PairsResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
    let filter = PairFilter::new(query)?;
    let published: Arc<Vec<PairReport>> = state.pairs.borrow().clone();
    let pairs = published
        .iter()
        .filter(|pair| filter.matches(pair))
        .cloned()
        .collect();
    Ok(Json(PairsResponse {
        node: state.node.to_string(),
        pairs,
    }))
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
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == code)
            .ok_or_else(|| D::Error::custom(format!("unknown outcome {code:?}")))
    }
}

#[cfg(test)]
mod tests {
    use probe_spec::PairVerdict;

    use super::*;
    use crate::agent::fixtures::report;

    #[test]
    fn a_host_pair_is_found_by_its_host_name_and_by_what_it_resolved_to() {
        let mut pair = report("shop/hosts", "shop/web", "shop/api", PairVerdict::Ok, true);
        pair.host = Some("api.example".into());
        let cases = [
            ("api.example", true),
            ("shop/api", true),
            ("other.example", false),
        ];
        for (to, listed) in cases {
            let filter = PairFilter::new(PairsQuery {
                to: Some(to.into()),
                ..PairsQuery::default()
            })
            .expect("valid query");
            assert_eq!(filter.matches(&pair), listed, "?to={to}");
        }
    }
}

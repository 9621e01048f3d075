//! The ProbeSpec pairs a change would flip: each spec's pairs planned on today's objects (what
//! the agents probe now), each predicted before and after the change.

use std::collections::BTreeSet;

use probe_spec::{ClusterProbeSpec, ProbeSpec};
use serde::Serialize;
use serde_json::Value;

use crate::cli::explain::ServiceFlowVerdict;
use crate::cluster::model::{PortRef, Protocol};
use crate::cluster::service::resolve;
use crate::cluster::{Index, ObjectRef, Spec};
use crate::diagnose::predict;
use crate::pair::{Pair, PairTarget};
use crate::policy::{Endpoint, Engine, Flow};
use crate::schedule::plan;

/// A ProbeSpec pair whose predicted verdict the change flips.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecPairChange {
    /// `ProbeSpec ns/name` or `ClusterProbeSpec name`.
    pub spec: String,
    pub from: String,
    /// The target as the agent names it (`ns/pod:port/PROTO`, `svc/ns/name:port/PROTO`).
    pub to: String,
    pub before: Prediction,
    pub after: Prediction,
    /// The policies that deny after the change (or allow, when it becomes allowed).
    pub policies: Vec<String>,
}

impl SpecPairChange {
    pub fn newly_denied(&self) -> bool {
        self.before == Prediction::Allowed && self.after != Prediction::Allowed
    }
}

/// A pair's predicted verdict: that of a Service port for a Service pair, never
/// `NoReadyEndpoints` (such a pair has no prediction).
pub type Prediction = ServiceFlowVerdict;

/// What the spec pass found.
#[derive(Clone, Debug, Default)]
pub struct SpecPairs {
    pub specs: usize,
    /// Pairs planned, over every spec.
    pub pairs: usize,
    /// Pairs with no prediction (DNS and host names, Services without ready endpoints).
    pub not_predicted: usize,
    pub changes: Vec<SpecPairChange>,
    /// Specs that could not be read or planned, each naming the spec and why.
    pub problems: Vec<String>,
}

/// Plans every ProbeSpec and ClusterProbeSpec among `objects` on `before` and predicts each pair
/// with both engines.
pub fn spec_pair_changes(
    objects: &[(String, Value)],
    before: &Index,
    after: &Index,
    engines: (&Engine, &Engine),
) -> SpecPairs {
    let mut out = SpecPairs::default();
    let nodes: BTreeSet<&str> = before
        .pods()
        .filter_map(|pod| pod.node_name.as_deref())
        .collect();
    for (source, object) in objects {
        let spec = match read_spec(object) {
            Some(Ok(spec)) => spec,
            Some(Err(message)) => {
                out.problems.push(format!("{source}: {message}"));
                continue;
            }
            None => continue,
        };
        out.specs += 1;
        for node in &nodes {
            let planned = match plan(before, &spec, node) {
                Ok(planned) => planned,
                Err(error) => {
                    out.problems.push(format!("{}: {error}", spec.key));
                    break;
                }
            };
            for pair in &planned.pairs {
                out.pairs += 1;
                let (Some(was), Some(is)) = (
                    predict_pair(engines.0, before, pair),
                    predict_pair(engines.1, after, pair),
                ) else {
                    out.not_predicted += 1;
                    continue;
                };
                if was.0 != is.0 {
                    out.changes.push(SpecPairChange {
                        spec: format!("{} {}", spec.key.kind(), spec.key),
                        from: pair.from.to_string(),
                        to: match &pair.target {
                            PairTarget::Service {
                                service,
                                port,
                                protocol,
                            } => format!("svc/{service}:{port}/{protocol}"),
                            target => target.to_string(),
                        },
                        before: was.0,
                        after: is.0,
                        policies: is.1,
                    });
                }
            }
        }
    }
    out
}

/// A ProbeSpec or ClusterProbeSpec; `None` for other `netreach.dev` kinds.
fn read_spec(object: &Value) -> Option<Result<Spec, String>> {
    let kind = object.get("kind").and_then(Value::as_str)?;
    let spec = match kind {
        "ProbeSpec" => serde_json::from_value::<ProbeSpec>(object.clone())
            .map_err(|e| e.to_string())
            .and_then(|spec| Spec::try_from(&spec).map_err(|e| e.to_string())),
        "ClusterProbeSpec" => serde_json::from_value::<ClusterProbeSpec>(object.clone())
            .map_err(|e| e.to_string())
            .and_then(|spec| Spec::try_from(&spec).map_err(|e| e.to_string())),
        _ => return None,
    };
    Some(spec.map_err(|message| format!("{kind} is not read: {message}")))
}

/// The prediction of one pair and the policies behind it; `None` when there is none.
fn predict_pair(engine: &Engine, index: &Index, pair: &Pair) -> Option<(Prediction, Vec<String>)> {
    let verdicts = match &pair.target {
        PairTarget::Service {
            service,
            port,
            protocol,
        } => service_verdicts(engine, index, &pair.from, service, *port, *protocol)?,
        target => vec![predict(engine, &pair.from, target, None)?.1],
    };
    let allowed = verdicts.iter().filter(|v| v.allowed).count();
    let prediction = Prediction::of(verdicts.len(), allowed);
    let mut policies: Vec<String> = Vec::new();
    for verdict in &verdicts {
        let refs = if prediction == Prediction::Allowed {
            verdict.allowing_policies()
        } else {
            verdict.denying_policies()
        };
        for name in refs.iter().map(ToString::to_string) {
            if !policies.contains(&name) {
                policies.push(name);
            }
        }
    }
    Some((prediction, policies))
}

/// The verdict at each ready endpoint of a Service port; `None` without any.
fn service_verdicts(
    engine: &Engine,
    index: &Index,
    from: &ObjectRef,
    service: &ObjectRef,
    port: u16,
    protocol: Protocol,
) -> Option<Vec<crate::policy::Verdict>> {
    let resolved = resolve(index, service, &PortRef::Number(port), protocol).ok()?;
    let verdicts: Vec<_> = resolved
        .endpoints
        .iter()
        .filter_map(|endpoint| {
            let to = match &endpoint.pod {
                Some(pod) => Endpoint::Pod(pod.clone()),
                None => Endpoint::Ip(endpoint.ip),
            };
            engine
                .evaluate(&Flow {
                    from: Endpoint::Pod(from.clone()),
                    to,
                    port: endpoint.port,
                    protocol,
                })
                .ok()
        })
        .collect();
    (!verdicts.is_empty()).then_some(verdicts)
}

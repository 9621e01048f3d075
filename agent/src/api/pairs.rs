//! `GET /v1/pairs`: this node's pairs with their diagnoses, as the agent last published them
//! (a `tokio::sync::watch` channel of [`PairReport`]s), filtered by the query string.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use probe_spec::PairVerdict;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::cluster::SpecRef;
use crate::cluster::model::ObjectRef;
use crate::pair::{PairReport, PublishedPairs};

/// The body of `GET /v1/pairs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairsResponse {
    /// The node this agent runs on.
    pub node: String,
    pub pairs: Vec<Arc<PairReport>>,
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

/// A [`PairsQuery`] parsed: a filter value that cannot name anything (a spec or source that
/// is not a valid key) matches no pair.
struct PairFilter {
    spec: Option<Option<SpecRef>>,
    verdict: Option<PairVerdict>,
    from: Option<Option<ObjectRef>>,
    to: Option<String>,
    namespace: Option<String>,
}

impl PairFilter {
    fn new(query: PairsQuery) -> Result<Self, ApiError> {
        let PairsQuery {
            spec,
            verdict,
            from,
            to,
            namespace,
        } = query;
        let verdict = verdict
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
        Ok(Self {
            spec: spec.map(|spec| spec.parse().ok()),
            verdict,
            from: from.map(|from| from.parse().ok()),
            to,
            namespace,
        })
    }

    fn matches(&self, pair: &PairReport) -> bool {
        wanted(&self.spec, pair.spec.as_ref())
            && self.verdict.is_none_or(|verdict| pair.verdict == verdict)
            && wanted(&self.from, Some(&pair.from))
            // A host target's pairs answer to their host name as well as to what it resolved to.
            && self.to.as_deref().is_none_or(|wanted| {
                pair.destination().is(wanted) || pair.host.as_deref() == Some(wanted)
            })
            && self
                .namespace
                .as_deref()
                .is_none_or(|namespace| pair.involves_namespace(namespace))
    }
}

/// Whether a filter value (`Some(None)`: one that names nothing) admits `actual`.
fn wanted<T: PartialEq>(wanted: &Option<Option<T>>, actual: Option<&T>) -> bool {
    match wanted {
        None => true,
        Some(wanted) => wanted.is_some() && wanted.as_ref() == actual,
    }
}

pub(super) async fn list_pairs(
    State(state): State<AppState>,
    query: Result<Query<PairsQuery>, QueryRejection>,
) -> Result<Json<PairsResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
    let filter = PairFilter::new(query)?;
    let published: PublishedPairs = state.pairs.borrow().clone();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fixtures::report;

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

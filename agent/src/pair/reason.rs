//! [`PairReason`]: the bounded reason code of a pair's verdict, used in JSON, metric labels,
//! alerts and ProbeSpec status. It gathers the codes of three layers: the policy engine's
//! (why a policy denies), the diagnosis's own (why an allowed path failed, why a probe was
//! inconclusive) and the prober's (why a probe could not run).

use std::fmt;
use std::str::FromStr;

use crate::policy;
use crate::probe::NotProbedReason;

/// A bounded reason code; a clean `ok` has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairReason {
    /// The policy engine's reason (for `blocked_by_policy` and `policy_not_enforced`).
    Policy(policy::Reason),
    CniUnhealthy,
    NodeNotReady,
    DestinationNotReady,
    /// The destination refused: nothing listens on the port.
    NotListening,
    DnsFailure,
    /// `unexpected_block`: no fault found, and a CNI-native policy (Cilium, Calico, Antrea),
    /// which netreach does not evaluate, may select the source or the destination.
    CniNativePolicy,
    /// A Service pair: the Service has no ready endpoint (the KubeServiceNotReady case).
    NoReadyEndpoints,
    /// A Service pair: its endpoints are reachable directly but not through the ClusterIP
    /// (a kube-proxy or eBPF load-balancer fault).
    ServicePathBroken,
    Unknown,
    /// `not_probed`: why the probe could not run.
    NotProbed(NotProbedReason),
    /// `inconclusive`: UDP silence where the policies allow and no application protocol
    /// obliges the destination to answer.
    UdpSilence,
    /// `inconclusive`: a service-mesh redirect in the source pod caught the probe and could
    /// not be bypassed, so what answered was the local proxy, not the destination.
    MeshRedirect,
    /// `inconclusive`: the probe was blocked, and the destination address is not known to the
    /// agent's partial view (node-scoped watches), so no policy prediction can say why.
    DestinationUnknown,
    /// `inconclusive`: the prediction came from a stale view (a watch of the API has been
    /// failing) and would have raised a policy verdict the pair never had.
    ViewStale,
}

impl PairReason {
    /// The diagnosis's own reasons (the policy engine's and the prober's come on top).
    const OWN: [PairReason; 13] = [
        PairReason::NoReadyEndpoints,
        PairReason::ServicePathBroken,
        PairReason::CniUnhealthy,
        PairReason::NodeNotReady,
        PairReason::DestinationNotReady,
        PairReason::NotListening,
        PairReason::DnsFailure,
        PairReason::CniNativePolicy,
        PairReason::Unknown,
        PairReason::UdpSilence,
        PairReason::MeshRedirect,
        PairReason::DestinationUnknown,
        PairReason::ViewStale,
    ];

    /// Every reason, each code once.
    pub fn all() -> impl Iterator<Item = PairReason> {
        policy::Reason::ALL
            .into_iter()
            .map(PairReason::Policy)
            .chain(Self::OWN)
            .chain(NotProbedReason::ALL.into_iter().map(PairReason::NotProbed))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PairReason::Policy(reason) => reason.as_str(),
            PairReason::CniUnhealthy => "cni_unhealthy",
            PairReason::NodeNotReady => "node_not_ready",
            PairReason::DestinationNotReady => "destination_not_ready",
            PairReason::NotListening => "not_listening",
            PairReason::DnsFailure => "dns_failure",
            PairReason::CniNativePolicy => "cni_native_policy",
            PairReason::NoReadyEndpoints => "no_ready_endpoints",
            PairReason::ServicePathBroken => "service_path_broken",
            PairReason::Unknown => "unknown",
            PairReason::NotProbed(reason) => reason.as_str(),
            PairReason::UdpSilence => "udp_silence",
            PairReason::MeshRedirect => "mesh_redirect",
            PairReason::DestinationUnknown => "destination_unknown",
            PairReason::ViewStale => "view_stale",
        }
    }

    /// Why the probe did not run, for a `not_probed` reason.
    pub fn not_probed(self) -> Option<NotProbedReason> {
        match self {
            PairReason::NotProbed(reason) => Some(reason),
            _ => None,
        }
    }
}

impl fmt::Display for PairReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason code that none of the layers has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason code {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for PairReason {
    type Err = UnknownReason;

    /// The reason whose code is `code` (the codes are unique across the layers).
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        PairReason::all()
            .find(|reason| reason.as_str() == code)
            .ok_or_else(|| UnknownReason(code.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_unique_and_reads_back_as_its_reason() {
        let mut seen = HashSet::new();
        for reason in PairReason::all() {
            assert!(seen.insert(reason.as_str()), "{reason} twice");
            assert_eq!(reason.as_str().parse::<PairReason>(), Ok(reason));
        }
    }

    #[test]
    fn codes_of_each_layer_read_back() {
        let cases = [
            (
                "default_deny",
                Some(PairReason::Policy(policy::Reason::DefaultDeny)),
            ),
            ("cni_unhealthy", Some(PairReason::CniUnhealthy)),
            (
                "netns_not_found",
                Some(PairReason::NotProbed(NotProbedReason::NetnsNotFound)),
            ),
            ("mesh_redirect", Some(PairReason::MeshRedirect)),
            ("", None),
            ("Default_Deny", None),
        ];
        for (code, reason) in cases {
            assert_eq!(code.parse::<PairReason>().ok(), reason, "{code:?}");
        }
    }
}

//! [`PairReport`]: one diagnosed probe of a pair, the agent's main result. Typed throughout
//! (the spec, the pods and policies as keys, the target as probed, the reason as a code);
//! its JSON form lives in [`super::wire`].

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use probe_spec::{Direction, Expectation, PairVerdict};

use super::{PairReason, PairTarget, Text};
use crate::cluster::SpecRef;
use crate::cluster::model::{ObjectRef, PolicyRef, Protocol};
use crate::probe::{NotProbedReason, Outcome};

/// One diagnosed probe of a pair. A host target gives one report per address its name
/// resolved to, each with `host`; a name that did not resolve gives one `not_probed` report
/// whose target is the host target itself.
#[derive(Clone, Debug, PartialEq)]
pub struct PairReport {
    /// The ProbeSpec or ClusterProbeSpec; `None` for on-demand probes.
    pub spec: Option<SpecRef>,
    /// The source pod.
    pub from: ObjectRef,
    /// The source pod's service mesh (`istio`, `linkerd`, `istio-ambient`): TCP probes were
    /// made with the identity its redirect exempts.
    pub mesh: Option<String>,
    /// The target as probed: the pair's own; for a host target, the pod or IP one resolved
    /// address is (the host target itself when its name did not resolve).
    pub target: PairTarget,
    /// The host name of a host target.
    pub host: Option<Arc<str>>,
    /// What the probe observed.
    pub outcome: Outcome,
    /// The live NetworkPolicy set allows the flow.
    pub policy_allowed: bool,
    pub verdict: PairVerdict,
    /// `None` only for a clean `ok`.
    pub reason: Option<PairReason>,
    /// The side whose policy decided, when a policy did.
    pub direction: Option<Direction>,
    /// The deciding policies (the allowing ones for an allowed flow).
    pub policies: Vec<PolicyRef>,
    /// One line for humans (also the explanation's first line: they share it).
    pub summary: Arc<str>,
    /// The diagnosis's explanation: policies, rules, selectors, health checks; its sections are
    /// shared with other reports that have them ([`super::SharedText`]).
    pub explanation: Text,
    /// What the prober itself said (sockets, ICMP details, the lookup's answers); the JSON
    /// appends it to the explanation as a `probe:` line.
    pub probe_detail: Arc<str>,
    /// The runbook's fallback hints that hold (recent label or policy changes, overlapping
    /// policies, a restarted CNI agent).
    pub hints: Vec<String>,
    /// The probe's latency (the timeout when nothing came back).
    pub latency_seconds: f64,
    /// When the pair was probed.
    pub last_probe: Timestamp,
    /// The spec's intent; `None` for on-demand probes.
    pub expect: Option<Expectation>,
    /// Whether the verdict meets `expect`; `None` without an intent or a decision.
    pub meets_expectation: Option<bool>,
    /// A Service pair's ready endpoints, each probed directly (empty for other pairs).
    pub endpoints: Vec<EndpointReport>,
    /// The pair's verdict periods and probe counts, as the agent that probes it keeps them
    /// (shared with its record, which updates it; `None` for one-off probes).
    pub history: Option<super::SharedHistory>,
    /// The resources whose watch had been failing for too long when this report was made
    /// (`pods`, `networkpolicies`, ...): its prediction rests on a stale view.
    pub view_stale: crate::cluster::watch::WatchedKinds,
}

/// One endpoint of a Service pair: where it was probed, and its own verdict as a pod pair.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointReport {
    pub pod: Option<ObjectRef>,
    pub ip: IpAddr,
    /// The targetPort resolved for this endpoint.
    pub port: u16,
    pub verdict: PairVerdict,
    pub reason: Option<PairReason>,
    pub policies: Vec<PolicyRef>,
}

/// A node's pairs as last published (`/v1/pairs`, the status writer): the reports are shared
/// with whoever keeps them (the scheduler's records), not copied.
pub type PublishedPairs = Arc<Vec<Arc<PairReport>>>;

/// Where the probe's detail starts in the full explanation.
pub(super) const PROBE_LINE: &str = "\nprobe: ";

/// What a report names as its destination: the `to` of its JSON (DNS lookups have none) and
/// the `dst` of its metric series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination<'a> {
    Pod(&'a ObjectRef),
    Ip(IpAddr),
    /// A host name that did not resolve, or the name a DNS probe looked up.
    Name(&'a str),
    /// A Service (`svc/namespace/name`).
    Service(&'a ObjectRef),
}

impl Destination<'_> {
    /// Whether `text` names this destination (`ns/name`, an address in any notation, a name).
    pub fn is(&self, text: &str) -> bool {
        match self {
            Destination::Pod(pod) => text
                .parse::<ObjectRef>()
                .is_ok_and(|wanted| wanted == **pod),
            Destination::Ip(ip) => text.parse::<IpAddr>().is_ok_and(|wanted| wanted == *ip),
            Destination::Name(name) => *name == text,
            Destination::Service(service) => text
                .strip_prefix("svc/")
                .and_then(|t| t.parse::<ObjectRef>().ok())
                .is_some_and(|wanted| wanted == **service),
        }
    }
}

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Pod(pod) => pod.fmt(f),
            Destination::Ip(ip) => ip.fmt(f),
            Destination::Name(name) => f.write_str(name),
            Destination::Service(service) => write!(f, "svc/{service}"),
        }
    }
}

impl PairReport {
    /// The destination other than a DNS name: the pod, the address, or a host name that did
    /// not resolve.
    pub fn to(&self) -> Option<Destination<'_>> {
        match &self.target {
            PairTarget::Pod { pod, .. } => Some(Destination::Pod(pod)),
            PairTarget::Ip { ip, .. } => Some(Destination::Ip(*ip)),
            PairTarget::Host { name, .. } => Some(Destination::Name(name)),
            PairTarget::Service { service, .. } => Some(Destination::Service(service)),
            PairTarget::Dns { .. } => None,
        }
    }

    /// The destination, a DNS probe's name included.
    pub fn destination(&self) -> Destination<'_> {
        match &self.target {
            PairTarget::Dns { name } => Destination::Name(name),
            _ => self.to().unwrap_or(Destination::Name("")),
        }
    }

    /// The name a DNS probe looked up.
    pub fn dns(&self) -> Option<&str> {
        match &self.target {
            PairTarget::Dns { name } => Some(name),
            _ => None,
        }
    }

    /// The address probed, when known.
    pub fn ip(&self) -> Option<IpAddr> {
        self.target.ip()
    }

    /// The port probed; `None` for DNS probes.
    pub fn port(&self) -> Option<u16> {
        self.target.port().map(|(port, _)| port)
    }

    /// The protocol probed; `None` for DNS probes.
    pub fn protocol(&self) -> Option<Protocol> {
        self.target.port().map(|(_, protocol)| protocol)
    }

    /// Why the pair was not probed, for a `not_probed` report.
    pub fn not_probed_reason(&self) -> Option<NotProbedReason> {
        (self.outcome == Outcome::NotProbed).then(|| {
            self.reason
                .and_then(PairReason::not_probed)
                .unwrap_or(NotProbedReason::ProbeError)
        })
    }

    /// The explanation as JSON and status show it: the diagnosis's, then the probe's own
    /// detail on a `probe:` line.
    pub fn full_explanation(&self) -> String {
        let mut text = self.explanation.to_string();
        if !self.probe_detail.is_empty() {
            text.push_str(PROBE_LINE);
            text.push_str(&self.probe_detail);
        }
        text
    }

    /// The reason as a label value: `""` for a clean `ok`.
    pub fn reason_code(&self) -> &'static str {
        self.reason.map_or("", PairReason::as_str)
    }

    /// Whether the source or the destination pod is in `namespace`.
    pub fn involves_namespace(&self, namespace: &str) -> bool {
        *self.from.namespace == *namespace
            || self
                .target
                .pod()
                .is_some_and(|pod| *pod.namespace == *namespace)
    }

    /// The order reports are listed in: by spec, source, destination (DNS lookups first, then
    /// pods, addresses and host names), DNS name, host name, port.
    pub fn listing_order(&self, other: &Self) -> Ordering {
        self.listing_key().cmp(&other.listing_key())
    }

    fn listing_key(&self) -> ListingKey<'_> {
        (
            self.spec.as_ref(),
            &self.from,
            self.to(),
            self.dns(),
            self.host.as_deref(),
            self.port(),
        )
    }
}

/// Spec, source, destination, DNS name, host name, port.
type ListingKey<'a> = (
    Option<&'a SpecRef>,
    &'a ObjectRef,
    Option<Destination<'a>>,
    Option<&'a str>,
    Option<&'a str>,
    Option<u16>,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_answers_to_its_names() {
        let pod = ObjectRef::new("shop", "api");
        let cases = [
            (Destination::Pod(&pod), "shop/api", true),
            (Destination::Pod(&pod), "shop/ap", false),
            (Destination::Pod(&pod), "shop/api/x", false),
            (
                Destination::Ip("fd00::1".parse().expect("ip")),
                "fd00:0::1",
                true,
            ),
            (
                Destination::Ip("10.0.0.1".parse().expect("ip")),
                "10.0.0.2",
                false,
            ),
            (Destination::Name("api.example"), "api.example", true),
            (Destination::Name("api.example"), "API.example", false),
        ];
        for (destination, text, is) in cases {
            assert_eq!(destination.is(text), is, "{destination} is {text}?");
        }
    }

    #[test]
    fn reports_list_by_spec_source_then_destination() {
        use crate::runtime::fixtures::{report, report_to};
        use probe_spec::PairVerdict::Ok;
        let dns = PairTarget::Dns {
            name: "a.example".into(),
        };
        let mut reports = [
            report("shop/b", "shop/web", "shop/api", Ok, true),
            report("shop/a", "shop/web", "shop/db", Ok, true),
            report_to("shop/a", "shop/web", dns, Ok, true),
            report("shop/a", "shop/web", "shop/api", Ok, true),
            report("shop/a", "shop/cart", "shop/api", Ok, true),
        ];
        reports.sort_by(PairReport::listing_order);
        let listed: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.spec.as_ref().expect("spec"),
                    r.from,
                    r.destination()
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                "shop/a shop/cart shop/api",
                "shop/a shop/web a.example",
                "shop/a shop/web shop/api",
                "shop/a shop/web shop/db",
                "shop/b shop/web shop/api",
            ]
        );
        assert!(reports[0].involves_namespace("shop"));
        assert!(!reports[0].involves_namespace("payments"));
    }
}

//! CNI profiles: the behaviours the NetworkPolicy API leaves to the implementation.

use std::fmt;
use std::str::FromStr;

/// Settings for behaviour the API leaves to the CNI. Explanations that depend on one of them
/// say "implementation-defined" and name the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// ipBlock peers match pod IPs too (E19). The upstream e2e suite requires it.
    pub ip_block_matches_pod_ips: bool,
    /// `endPort` ranges are honoured; when not, only `port` matches (E16).
    pub end_port: bool,
    /// hostNetwork pods are not selected by selectors and their traffic counts as the node's
    /// (E22, "the most common implementation").
    pub host_network_as_node: bool,
    /// SCTP is enforced (E15). When false SCTP is still never treated as TCP.
    pub sctp: bool,
}

impl Profile {
    /// The behaviour the upstream Kubernetes e2e suite checks (the default).
    pub const UPSTREAM: Profile = Profile {
        name: "upstream",
        ip_block_matches_pod_ips: true,
        end_port: true,
        host_network_as_node: true,
        sctp: true,
    };
    /// A CNI that matches ipBlock only against addresses outside the cluster's pods.
    pub const IPBLOCK_EXTERNAL_ONLY: Profile = Profile {
        name: "ipblock-external-only",
        ip_block_matches_pod_ips: false,
        ..Self::UPSTREAM
    };
    /// A CNI without endPort support: a range matches only its first port.
    pub const NO_END_PORT: Profile = Profile {
        name: "no-endport",
        end_port: false,
        ..Self::UPSTREAM
    };

    pub const ALL: [Profile; 3] = [
        Self::UPSTREAM,
        Self::IPBLOCK_EXTERNAL_ONLY,
        Self::NO_END_PORT,
    ];
}

impl Default for Profile {
    fn default() -> Self {
        Self::UPSTREAM
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.name == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.name).collect();
            format!("unknown profile {s:?} (known: {})", names.join(", "))
        })
    }
}

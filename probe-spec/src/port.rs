//! Ports and protocols, shared by ProbeSpec targets and ProbeRequests.
//!
//! A port is a number (1..65535) or the name of a container port on the destination pod, which
//! the agent resolves per pod like NetworkPolicy does. On the wire it is an `IntOrString`; the
//! schema (`crate::schema::port`) bounds numbers and names separately.

use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::Problems;

/// The pattern of a container-port name (IANA service name): lowercase letters, digits and
/// single inner hyphens, with at least one letter.
pub const PORT_NAME_PATTERN: &str = "^([a-z0-9]+-)*[a-z0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$";

/// The longest container-port name.
pub const PORT_NAME_MAX_LENGTH: usize = 15;

/// A transport protocol, as NetworkPolicy spells it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Protocol {
    /// TCP: a connect that completes is reachable.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP: a reply is open, ICMP port-unreachable is refused, silence is open_or_filtered.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP: the agent may report it unsupported where the node lacks SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// The protocol as NetworkPolicy and the CLI write it: `TCP`, `UDP`, `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port to probe on a target, with its protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Port number (1..65535), or the name of a container port on the destination pods (pod targets only), resolved on each destination pod.
    #[schemars(schema_with = "crate::schema::port")]
    pub port: IntOrString,
    /// Transport protocol: TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Why `name` is not a valid container-port name, or `None` when it is one.
///
/// Same rule as Kubernetes' `IsValidPortName`.
pub fn port_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a port name must not be empty".into());
    }
    if name.len() > PORT_NAME_MAX_LENGTH {
        return Some(format!(
            "port name {name:?} is longer than {PORT_NAME_MAX_LENGTH} characters"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "{name:?} is a quoted number; write the port number without quotes, or name a container port"
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !name.chars().all(allowed)
        || !name.chars().any(|c| c.is_ascii_lowercase())
        || name.starts_with('-')
        || name.ends_with('-')
        || name.contains("--")
    {
        return Some(format!(
            "port name {name:?} is invalid: use lowercase letters, digits and single inner hyphens, \
             with at least one letter"
        ));
    }
    None
}

/// Checks one port: numbers in range, names well-formed; `names_allowed` is false where a named
/// port cannot be resolved (IP and host targets).
pub(crate) fn check_port(
    port: &IntOrString,
    names_allowed: bool,
    path: &str,
    problems: &mut Problems,
) {
    match port {
        IntOrString::Int(number) if !(1..=65535).contains(number) => {
            problems.push(path, format!("{number} is out of range 1..65535"));
        }
        IntOrString::Int(_) => {}
        IntOrString::String(name) => {
            if let Some(problem) = port_name_problem(name) {
                problems.push(path, problem);
            } else if !names_allowed {
                problems.push(
                    path,
                    format!("named port {name:?} needs a pod target; give a number for IP, host and DNS targets"),
                );
            }
        }
    }
}

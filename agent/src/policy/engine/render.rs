//! The sentences of an explanation: why a pod is not subject, why a port missed.

use super::*;

impl Engine {
    pub(super) fn not_subject_why(&self, side: &Side) -> String {
        match side {
            Side::HostPod(id) => format!(
                "{} uses the host network; implementation-defined: profile {} treats it as its node",
                self.pods[*id].key(),
                self.profile
            ),
            Side::Node { name, ip } => format!("{ip} is node {name}"),
            Side::External(ip) => format!("{ip} is not a pod in the cluster"),
            Side::Pod(id) => format!("{} is a pod", self.pods[*id].key()),
        }
    }

    /// Why no port entry covers the flow; only called when `ports_match` is false.
    pub(super) fn port_miss(
        &self,
        ports: &[PolicyPort],
        port: u16,
        protocol: Protocol,
        dst_pod: Option<usize>,
    ) -> PortMiss {
        let mut unresolved = None;
        let mut invalid = None;
        let mut any_valid = false;
        let mut notes = Vec::new();
        for entry in ports {
            match entry {
                PolicyPort::Invalid { reason } => {
                    invalid.get_or_insert_with(|| reason.clone());
                }
                PolicyPort::Port {
                    protocol: p,
                    port: want,
                    end_port,
                } => {
                    any_valid = true;
                    if *p != protocol {
                        continue;
                    }
                    match (want, end_port) {
                        (Some(PortRef::Number(n)), Some(end))
                            if !self.profile.end_port && (*n..=*end).contains(&port) =>
                        {
                            notes.push(format!(
                                "implementation-defined: profile {} ignores endPort, so {n}-{end} matches only {n}",
                                self.profile
                            ));
                        }
                        (Some(PortRef::Name(name)), _)
                            if dst_pod
                                .and_then(|d| self.named_port_of(d, name, protocol))
                                .is_none() =>
                        {
                            unresolved.get_or_insert_with(|| name.clone());
                        }
                        _ => {}
                    }
                }
            }
        }
        if !any_valid {
            return PortMiss::Invalid {
                reason: invalid.unwrap_or_default(),
            };
        }
        if let Some(name) = unresolved {
            return PortMiss::NamedPortUnresolved {
                name,
                protocol,
                pod: dst_pod.map(|d| self.pods[d].key()),
            };
        }
        let wanted = ports.iter().map(|p| self.render_port(p, dst_pod)).collect();
        PortMiss::NotListed {
            wanted,
            port,
            protocol,
            notes,
        }
    }

    pub(super) fn render_port(&self, entry: &PolicyPort, dst_pod: Option<usize>) -> String {
        match entry {
            PolicyPort::Invalid { reason } => format!("invalid ({reason})"),
            PolicyPort::Port {
                protocol,
                port: None,
                ..
            } => format!("any {protocol} port"),
            PolicyPort::Port {
                protocol,
                port: Some(PortRef::Number(n)),
                end_port: Some(e),
            } => format!("{n}-{e}/{protocol}"),
            PolicyPort::Port {
                protocol,
                port: Some(PortRef::Number(n)),
                end_port: None,
            } => format!("{n}/{protocol}"),
            PolicyPort::Port {
                protocol,
                port: Some(PortRef::Name(name)),
                ..
            } => match dst_pod.and_then(|d| self.named_port_of(d, name, *protocol)) {
                Some(n) => format!("{name}/{protocol} (= {n})"),
                None => format!("{name}/{protocol}"),
            },
        }
    }
}

//! Compiling the index into the engine's match caches, and resolving endpoints to sides.

use super::*;

/// Interns selectors and computes each one's match set once.
struct SelectorCache<'a> {
    ids: HashMap<&'a Selector, usize>,
    matches: Vec<BitSet>,
}

impl<'a> SelectorCache<'a> {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            matches: Vec::new(),
        }
    }

    fn intern(&mut self, selector: &'a Selector, labels: &[&Labels]) -> usize {
        if let Some(&id) = self.ids.get(selector) {
            return id;
        }
        let mut set = BitSet::empty(labels.len());
        for (i, l) in labels.iter().enumerate() {
            if selector.matches(l) {
                set.insert(i);
            }
        }
        let id = self.matches.len();
        self.matches.push(set);
        self.ids.insert(selector, id);
        id
    }
}

fn compile_rules<'a>(
    rules: &'a [Rule],
    pod_cache: &mut SelectorCache<'a>,
    ns_cache: &mut SelectorCache<'a>,
    pod_labels: &[&Labels],
    ns_labels: &[&Labels],
) -> Vec<Vec<CompiledPeer>> {
    rules
        .iter()
        .map(|rule| {
            rule.peers
                .iter()
                .map(|peer| match peer {
                    Peer::Pods {
                        pod_selector,
                        namespace_selector,
                    } => CompiledPeer::Pods {
                        pod_selector: pod_selector
                            .as_ref()
                            .map(|s| pod_cache.intern(s, pod_labels)),
                        namespace_selector: namespace_selector
                            .as_ref()
                            .map(|s| ns_cache.intern(s, ns_labels)),
                    },
                    Peer::IpBlock(_) => CompiledPeer::IpBlock,
                    Peer::Invalid { .. } => CompiledPeer::Invalid,
                })
                .collect()
        })
        .collect()
}

impl Engine {
    pub fn new(index: &Index, profile: Profile) -> Self {
        let namespaces = index.namespace_names();
        let ns_ids: HashMap<String, usize> = namespaces
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let namespace_labels: Vec<Labels> = namespaces
            .iter()
            .map(|n| index.namespace_labels(n))
            .collect();
        let pods: Vec<Pod> = index.pods().cloned().collect();
        let pod_ids = pods.iter().enumerate().map(|(i, p)| (p.key(), i)).collect();
        let pod_namespace: Vec<usize> = pods.iter().map(|p| ns_ids[&p.namespace]).collect();
        let policies_src: Vec<&NetworkPolicy> = index.policies().collect();

        let pod_labels: Vec<&Labels> = pods.iter().map(|p| &p.labels).collect();
        let ns_labels: Vec<&Labels> = namespace_labels.iter().collect();
        let mut pod_cache = SelectorCache::new();
        let mut ns_cache = SelectorCache::new();
        let mut policies = Vec::with_capacity(policies_src.len());
        let mut subject_selector = Vec::with_capacity(policies_src.len());
        for policy in &policies_src {
            subject_selector.push(pod_cache.intern(&policy.pod_selector, &pod_labels));
            let ingress = compile_rules(
                &policy.ingress,
                &mut pod_cache,
                &mut ns_cache,
                &pod_labels,
                &ns_labels,
            );
            let egress = compile_rules(
                &policy.egress,
                &mut pod_cache,
                &mut ns_cache,
                &pod_labels,
                &ns_labels,
            );
            policies.push(CompiledPolicy {
                policy: (*policy).clone(),
                namespace: ns_ids[&policy.namespace],
                ingress,
                egress,
            });
        }

        let mut ingress_policies = vec![Vec::new(); pods.len()];
        let mut egress_policies = vec![Vec::new(); pods.len()];
        for (pid, compiled) in policies.iter().enumerate() {
            let selected = &pod_cache.matches[subject_selector[pid]];
            for (i, pod) in pods.iter().enumerate() {
                // E2: a policy's podSelector never reaches outside its namespace; E22:
                // hostNetwork pods are not subjects in the default profile.
                if pod_namespace[i] != compiled.namespace || !selected.contains(i) {
                    continue;
                }
                if pod.host_network && profile.host_network_as_node {
                    continue;
                }
                if compiled.policy.isolates_ingress {
                    ingress_policies[i].push(pid);
                }
                if compiled.policy.isolates_egress {
                    egress_policies[i].push(pid);
                }
            }
        }

        let (tiered, tier_subject_of, tier_peer_pods) =
            Self::compile_tiered(index, &pods, &pod_namespace, &namespace_labels);
        let namespace_warnings = namespaces
            .iter()
            .map(|ns| {
                index
                    .unloadable_policies_in(ns)
                    .map(|(key, why)| {
                        format!("warning: policy {key} could not be loaded ({why}); it may select this pod, so this verdict may be wrong")
                    })
                    .collect()
            })
            .collect();
        let namespace_cni_policies = namespaces
            .iter()
            .map(|ns| {
                index
                    .cni_policies_for(ns)
                    .map(ToString::to_string)
                    .collect()
            })
            .collect();
        Self {
            profile,
            pods,
            pod_namespace,
            pod_ids,
            namespaces,
            namespace_labels,
            namespace_warnings,
            namespace_cni_policies,
            nodes: index.nodes().cloned().collect(),
            partial_view: index.answered_addresses(),
            policies,
            pod_selector_matches: pod_cache.matches,
            namespace_selector_matches: ns_cache.matches,
            ingress_policies,
            egress_policies,
            tiered,
            tier_subject_of,
            tier_peer_pods,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Pods in key order; matrix cells refer to them by position.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub fn pod_id(&self, key: &ObjectRef) -> Option<usize> {
        self.pod_ids.get(key).copied()
    }

    /// The policies that select a pod and isolate it, ingress then egress, by name.
    pub fn policies_selecting(&self, pod: usize) -> (Vec<ObjectRef>, Vec<ObjectRef>) {
        let names = |ids: &[usize]| ids.iter().map(|&i| self.policies[i].policy.key()).collect();
        (
            names(&self.ingress_policies[pod]),
            names(&self.egress_policies[pod]),
        )
    }

    pub(crate) fn resolve(&self, endpoint: &Endpoint) -> Result<Side, ResolveError> {
        match endpoint {
            Endpoint::Pod(key) => {
                let id = self
                    .pod_id(key)
                    .ok_or_else(|| ResolveError::UnknownPod(key.clone()))?;
                let pod = &self.pods[id];
                if !pod.is_endpoint() {
                    return Err(ResolveError::NotAnEndpoint(
                        key.clone(),
                        format!("{:?}", pod.phase),
                    ));
                }
                Ok(self.side_of_pod(id))
            }
            Endpoint::Ip(ip) => {
                if let Some(id) = self
                    .pods
                    .iter()
                    .position(|p| p.is_endpoint() && !p.host_network && p.ips.contains(ip))
                {
                    return Ok(Side::Pod(id));
                }
                if let Some(node) = self.nodes.iter().find(|n| n.addresses.contains(ip)) {
                    return Ok(Side::Node {
                        name: node.name.clone(),
                        ip: *ip,
                    });
                }
                // No Node object owns it (offline files often omit nodes): a hostNetwork pod's
                // address is still its node's (E21, E22).
                if let Some(id) = self
                    .pods
                    .iter()
                    .position(|p| p.is_endpoint() && p.host_network && p.ips.contains(ip))
                {
                    return Ok(self.side_of_pod(id));
                }
                if let Some(answered) = &self.partial_view
                    && !answered.contains(ip)
                    && !crate::cluster::index::never_a_pod(*ip)
                {
                    return Err(ResolveError::UnknownAddress(*ip));
                }
                Ok(Side::External(*ip))
            }
        }
    }

    pub(crate) fn side_of_pod(&self, id: usize) -> Side {
        if self.pods[id].host_network && self.profile.host_network_as_node {
            Side::HostPod(id)
        } else {
            Side::Pod(id)
        }
    }
}

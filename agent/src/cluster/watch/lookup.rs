//! On-demand destinations for a partial view: a ProbeRequest or `POST /v1/probe` may name any
//! pod or address, and a node-scoped agent does not watch every pod.
//!
//! ```text
//! request to pod ns/name ──not held──> GET /api/v1/namespaces/ns/pods/name ─┬─> index (owner ON_DEMAND)
//! request to ip          ──unknown───> LIST pods fieldSelector status.podIP ─┘   + address answered
//!                          404 / empty list: the pod does not exist / the address is no pod's
//!                          an API error: nothing is added; the request then fails naming the pod,
//!                          or the address stays unknown (inconclusive/destination_unknown)
//! ```
//!
//! Fetched pods are not watched, so every request fetches again what it names (a fresh copy
//! at request time); the index keeps at most [`MAX_FETCHED`] of them, oldest out first.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as corev1;
use kube::api::ListParams;
use kube::{Api, Client};
use parking_lot::{Mutex, RwLock};
use probe_spec::{RequestTarget, RequestTargetKind};
use tracing::{debug, warn};

use crate::cluster::index::{Index, PodCoverage, PodOwner};
use crate::cluster::model::{ObjectRef, Pod};

use super::feed::Strip;

/// Pods and addresses fetched on demand, at most this many each.
pub const MAX_FETCHED: usize = 256;

/// The owner of the pods fetched on demand.
pub const ON_DEMAND: PodOwner = PodOwner(u32::MAX);

/// Why a destination could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("reading pod {pod}: {source}")]
    Get {
        pod: ObjectRef,
        #[source]
        source: kube::Error,
    },
    #[error("listing the pods with IP {ip}: {source}")]
    List {
        ip: IpAddr,
        #[source]
        source: kube::Error,
    },
}

/// Fetches the destinations a partial view lacks.
pub struct PodLookup {
    client: Client,
    index: Arc<RwLock<Index>>,
    fetched: Mutex<Fetched>,
}

#[derive(Debug, Default)]
struct Fetched {
    pods: VecDeque<ObjectRef>,
    addresses: VecDeque<IpAddr>,
}

impl fmt::Debug for PodLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodLookup")
            .field("fetched", &*self.fetched.lock())
            .finish_non_exhaustive()
    }
}

/// What a request's destination needs from the API, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    Pod(ObjectRef),
    Address(IpAddr),
}

/// What `to`, requested in `namespace`, needs fetched into `index` (pure): a pod the index
/// does not hold, or an address it does not know; nothing in a complete index.
pub fn missing(index: &Index, namespace: &str, to: &RequestTarget) -> Option<Missing> {
    if index.coverage() == PodCoverage::Complete {
        return None;
    }
    match to.kind()? {
        RequestTargetKind::Pod { pod, .. } => {
            let key = ObjectRef::new(
                pod.namespace.as_deref().unwrap_or(namespace),
                pod.name.as_str(),
            );
            // A watched pod is current; a fetched one is fetched again.
            let watched = index.owners_of(&key).iter().any(|o| *o != ON_DEMAND);
            (!watched).then_some(Missing::Pod(key))
        }
        RequestTargetKind::Ip { ip, .. } if !index.address_known(ip) => Some(Missing::Address(ip)),
        // Services and EndpointSlices are watched cluster-wide; an endpoint pod the partial
        // view lacks is predicted by its address.
        RequestTargetKind::Ip { .. }
        | RequestTargetKind::Dns(_)
        | RequestTargetKind::Service { .. } => None,
    }
}

impl PodLookup {
    pub fn new(client: Client, index: Arc<RwLock<Index>>) -> Self {
        Self {
            client,
            index,
            fetched: Mutex::default(),
        }
    }

    /// Fetches what `to` needs (see [`missing`]); logs and swallows API errors (the request
    /// then resolves against what the view holds: never a guess).
    pub async fn fetch_destination(&self, namespace: &str, to: &RequestTarget) {
        let wanted = missing(&self.index.read(), namespace, to);
        let fetched = match wanted {
            None => return,
            Some(Missing::Pod(key)) => self.pod(&key).await,
            Some(Missing::Address(ip)) => self.address(ip).await,
        };
        if let Err(error) = fetched {
            warn!(%error, "cannot fetch an on-demand destination; resolving without it");
        }
    }

    /// GETs `key` into the index (a pod that is gone leaves it).
    pub async fn pod(&self, key: &ObjectRef) -> Result<(), LookupError> {
        let api: Api<corev1::Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let pod = api
            .get_opt(&key.name)
            .await
            .map_err(|source| LookupError::Get {
                pod: key.clone(),
                source,
            })?;
        match pod.as_ref().and_then(convert) {
            Some(pod) => self.hold(pod),
            None => {
                self.index.write().remove_pod_from(ON_DEMAND, key);
            }
        }
        Ok(())
    }

    /// LISTs the pods holding `ip` into the index, and records that the address is answered
    /// for (no pod: an external address).
    pub async fn address(&self, ip: IpAddr) -> Result<(), LookupError> {
        let api: Api<corev1::Pod> = Api::all(self.client.clone());
        let params = ListParams::default().fields(&format!("status.podIP={ip}"));
        let pods = api
            .list(&params)
            .await
            .map_err(|source| LookupError::List { ip, source })?;
        for pod in pods.items.iter().filter_map(convert) {
            self.hold(pod);
        }
        debug!(%ip, "address answered on demand");
        let forgotten = remember_bounded(&mut self.fetched.lock().addresses, ip);
        let mut index = self.index.write();
        index.mark_address_answered(ON_DEMAND, ip);
        if let Some(old) = forgotten {
            index.forget_address(ON_DEMAND, old);
        }
        Ok(())
    }

    fn hold(&self, pod: Pod) {
        let evicted = remember_bounded(&mut self.fetched.lock().pods, pod.key());
        let mut index = self.index.write();
        index.apply_pod_from(ON_DEMAND, pod);
        if let Some(old) = evicted {
            index.remove_pod_from(ON_DEMAND, &old);
        }
    }
}

/// Moves `item` to the back of `queue`; returns the oldest item when that makes the queue
/// longer than [`MAX_FETCHED`].
fn remember_bounded<T: PartialEq>(queue: &mut VecDeque<T>, item: T) -> Option<T> {
    queue.retain(|old| *old != item);
    queue.push_back(item);
    if queue.len() > MAX_FETCHED {
        queue.pop_front()
    } else {
        None
    }
}

/// A fetched pod as the watches would have stored it.
fn convert(pod: &corev1::Pod) -> Option<Pod> {
    let mut pod = pod.clone();
    pod.strip();
    Pod::try_from(&pod).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_partial_view_fetches_and_only_what_it_lacks() {
        let target = |yaml: &str| -> RequestTarget { serde_yaml_ng::from_str(yaml).unwrap() };
        let mut index = Index::new();
        let to_pod = target("{pod: {name: api, namespace: pay}, port: 80}");
        let to_ip = target("{ip: 10.0.0.9, port: 80}");
        assert_eq!(missing(&index, "shop", &to_pod), None, "complete view");
        index.set_coverage(PodCoverage::Partial);
        let cases = [
            (
                to_pod.clone(),
                Some(Missing::Pod(ObjectRef::new("pay", "api"))),
            ),
            (
                target("{pod: {name: web}, port: 80}"),
                Some(Missing::Pod(ObjectRef::new("shop", "web"))),
            ),
            (
                to_ip.clone(),
                Some(Missing::Address("10.0.0.9".parse().unwrap())),
            ),
            (target("{dns: example.com}"), None),
        ];
        for (to, want) in cases {
            assert_eq!(missing(&index, "shop", &to), want, "{to:?}");
        }
        index.mark_address_answered(ON_DEMAND, "10.0.0.9".parse().unwrap());
        assert_eq!(missing(&index, "shop", &to_ip), None);
    }

    /// Against the fake API: a pod by name, an address by field selector, a pod that does not
    /// exist and an address that is no pod's.
    #[tokio::test]
    async fn destinations_are_fetched_into_the_index() {
        use serde_json::json;

        let api = crate::cluster::fake_api::FakeApi::new();
        api.apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "gw", "namespace": "pay", "uid": "u1", "labels": {"app": "gw"}},
            "spec": {"nodeName": "node-2", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.0.2.3", "podIPs": [{"ip": "10.0.2.3"}]}}));
        let index = Arc::new(RwLock::new(Index::new()));
        index.write().set_coverage(PodCoverage::Partial);
        let lookup = PodLookup::new(Client::new(api.router(), "default"), index.clone());
        let target = |yaml: &str| -> RequestTarget { serde_yaml_ng::from_str(yaml).unwrap() };

        lookup
            .fetch_destination(
                "shop",
                &target("{pod: {name: gw, namespace: pay}, port: 80}"),
            )
            .await;
        assert!(index.read().pod(&ObjectRef::new("pay", "gw")).is_some());
        lookup
            .fetch_destination("shop", &target("{pod: {name: gone}, port: 80}"))
            .await;
        assert!(index.read().pod(&ObjectRef::new("shop", "gone")).is_none());

        let external: IpAddr = "192.0.2.77".parse().unwrap();
        assert!(!index.read().address_known(external));
        lookup
            .fetch_destination("shop", &target("{ip: 192.0.2.77, port: 443}"))
            .await;
        assert!(
            index.read().address_known(external),
            "answered: no pod has it"
        );
        assert!(
            api.requests()
                .contains(&"GET /api/v1/pods?fieldSelector=status.podIP=192.0.2.77".to_string())
        );
        assert!(
            api.requests()
                .contains(&"GET /api/v1/namespaces/pay/pods/gw".to_string())
        );
    }
}

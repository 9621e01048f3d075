//! [`PodNetnsRegistry`]: the open netns handle of each local pod, keyed by pod UID.
//!
//! Data flow: `resolve(uid, pod_ip)` -> cached handle, or [`resolve_pod`] on the blocking pool
//! (file reads only, never setns) -> the pod IP bound inside the new handle (catches a stale
//! namespace after sandbox recreation) -> cached. The pod informer calls `forget(uid)` on delete
//! (or `retain` on resync); dropping the handle releases the namespace.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::RwLock;
use tracing::{debug, info};

use super::scan::resolve_pod;
use super::{Error, PodNetns, Resolution, Result, SocketFactory};

/// Open pod namespaces, by pod UID. HostNetwork pods are not cached (nothing to pin).
#[derive(Debug, Default)]
pub struct PodNetnsRegistry {
    pods: RwLock<HashMap<String, PodNetns>>,
}

impl PodNetnsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached namespace of `uid`, if any.
    pub fn get(&self, uid: &str) -> Option<PodNetns> {
        self.pods.read().get(uid).cloned()
    }

    /// The cached namespace of `uid`, or a fresh scan. With `pod_ip`, a freshly found handle is
    /// validated by binding that IP inside it before it is cached.
    pub async fn resolve(
        &self,
        factory: &SocketFactory,
        uid: &str,
        pod_ip: Option<IpAddr>,
    ) -> Result<Resolution> {
        if let Some(found) = self.get(uid) {
            return Ok(Resolution::Pod(found));
        }
        let scan_uid = uid.to_string();
        let resolution = tokio::task::spawn_blocking(move || resolve_pod(&scan_uid))
            .await
            .map_err(|_| Error::ScanFailed)??;
        if let Resolution::Pod(pod) = &resolution {
            if let Some(ip) = pod_ip {
                factory.check_address_is_local(&pod.handle, ip).await?;
            }
            info!(%uid, sandbox_pid = pod.sandbox_pid, netns = %pod.handle, "pod netns opened");
            self.insert(pod.clone());
        }
        Ok(resolution)
    }

    /// Caches a namespace found elsewhere (tests, `--pid`).
    pub fn insert(&self, pod: PodNetns) {
        self.pods.write().insert(pod.uid.clone(), pod);
    }

    /// Drops the handle of a deleted pod. Returns whether one was cached.
    pub fn forget(&self, uid: &str) -> bool {
        let removed = self.pods.write().remove(uid).is_some();
        if removed {
            debug!(%uid, "pod netns handle dropped");
        }
        removed
    }

    /// Keeps only the pods for which `keep(uid)` holds (resync after a watch gap).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.pods.write().retain(|uid, _| keep(uid));
    }

    pub fn len(&self) -> usize {
        self.pods.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.read().is_empty()
    }
}

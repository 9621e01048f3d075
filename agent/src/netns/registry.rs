//! [`PodNetnsRegistry`]: the open netns handle of each local pod, keyed by pod UID.
//!
//! Data flow: `resolve(uid, pod_ip)` -> cached handle (re-checked at most every
//! [`REVALIDATE_EVERY`]: the sandbox process must be the same process, by PID and start time,
//! in the same namespace, else the entry is evicted) or [`resolve_pod`] on the blocking pool
//! (file reads only, never setns) -> the pod IP bound inside the new handle (catches a stale
//! namespace after sandbox recreation) -> cached. The pipeline calls `retain` with the pods of
//! each new cluster view, so a deleted pod's handle, and its spare sockets, are released;
//! dropping the handle releases the namespace.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::{debug, info};

use super::scan::{resolve_pod, sandbox_unchanged};
use super::{Error, PodNetns, Resolution, Result, SocketFactory};

/// How long a cached handle is trusted before its sandbox process is checked again.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(2);

/// Open pod namespaces, by pod UID. HostNetwork pods are not cached (nothing to pin).
#[derive(Debug, Default)]
pub struct PodNetnsRegistry {
    pods: RwLock<HashMap<String, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    pod: PodNetns,
    /// When the sandbox was last found unchanged.
    checked: Instant,
}

impl PodNetnsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached namespace of `uid`, if any.
    pub fn get(&self, uid: &str) -> Option<PodNetns> {
        self.pods.read().get(uid).map(|entry| entry.pod.clone())
    }

    /// The cached namespace of `uid` if it is still the pod's: re-checked when older than
    /// [`REVALIDATE_EVERY`], evicted when its sandbox changed or went away.
    async fn current(&self, uid: &str) -> Option<PodNetns> {
        let entry = self.pods.read().get(uid).cloned()?;
        if entry.checked.elapsed() < REVALIDATE_EVERY {
            return Some(entry.pod);
        }
        let pod = entry.pod.clone();
        let unchanged = tokio::task::spawn_blocking(move || sandbox_unchanged(&pod))
            .await
            .unwrap_or(false);
        let mut pods = self.pods.write();
        if unchanged {
            if let Some(cached) = pods.get_mut(uid) {
                cached.checked = Instant::now();
            }
            Some(entry.pod)
        } else {
            // Only evict the entry we checked, not one a concurrent resolve just put there.
            if pods
                .get(uid)
                .is_some_and(|cached| cached.pod.handle.same_netns(&entry.pod.handle))
            {
                pods.remove(uid);
            }
            info!(%uid, sandbox_pid = entry.pod.sandbox_pid, netns = %entry.pod.handle, "pod sandbox changed or gone; netns handle dropped");
            None
        }
    }

    /// The cached namespace of `uid`, or a fresh scan. With `pod_ip`, a freshly found handle is
    /// validated by binding that IP inside it before it is cached.
    pub async fn resolve(
        &self,
        factory: &SocketFactory,
        uid: &str,
        pod_ip: Option<IpAddr>,
    ) -> Result<Resolution> {
        if let Some(found) = self.current(uid).await {
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
        let entry = Entry {
            pod,
            checked: Instant::now(),
        };
        self.pods.write().insert(entry.pod.uid.clone(), entry);
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

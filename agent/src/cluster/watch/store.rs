//! Small stores for the netreach custom resources (ProbeSpecs, ClusterProbeSpecs,
//! ProbeRequests).
//!
//! The [`crate::cluster::Index`] holds only core objects; the CRs are already typed by
//! `probe-spec`, so they are kept as they arrive (stripped of metadata the agent does not use)
//! behind an `Arc`, keyed by namespace/name (by name for a cluster-scoped kind). The revision
//! moves only when an object really changes, so status writes by the agents themselves do not
//! wake the scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::model::ObjectRef;

/// The objects of one custom resource kind, by `Key`: [`ObjectRef`] for a namespaced kind,
/// the name for a cluster-scoped one.
#[derive(Debug)]
pub struct SpecStore<K, Key = ObjectRef> {
    items: BTreeMap<Key, Arc<K>>,
    revision: u64,
}

impl<K, Key> Default for SpecStore<K, Key> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            revision: 0,
        }
    }
}

impl<K: PartialEq, Key: Ord> SpecStore<K, Key> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bumped on every change of content.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, key: &Key) -> Option<&Arc<K>> {
        self.items.get(key)
    }

    /// Every object, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Arc<K>)> {
        self.items.iter()
    }

    /// Adds or replaces an object; returns whether anything changed.
    pub fn insert(&mut self, key: Key, obj: K) -> bool {
        if self.items.get(&key).is_some_and(|old| **old == obj) {
            return false;
        }
        self.items.insert(key, Arc::new(obj));
        self.revision += 1;
        true
    }

    /// Removes an object; returns whether it was there.
    pub fn remove(&mut self, key: &Key) -> bool {
        let removed = self.items.remove(key).is_some();
        if removed {
            self.revision += 1;
        }
        removed
    }

    /// Replaces the whole content (a relist).
    pub fn replace(&mut self, items: impl IntoIterator<Item = (Key, K)>) {
        let items: BTreeMap<Key, Arc<K>> =
            items.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        let same = items.len() == self.items.len()
            && items
                .iter()
                .zip(&self.items)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && v1 == v2);
        if !same {
            self.revision += 1;
        }
        self.items = items;
    }
}

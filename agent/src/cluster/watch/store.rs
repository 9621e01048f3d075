//! Small stores for the netreach custom resources (ProbeSpecs, ClusterProbeSpecs,
//! ProbeRequests).
//!
//! The [`crate::cluster::Index`] holds only core objects; the CRs are already typed by
//! `probe-spec`, so they are kept as they arrive (stripped of metadata the agent does not use)
//! behind an `Arc`, keyed by namespace/name (by name for a cluster-scoped kind). The revision
//! moves only when an object really changes, so status writes by the agents themselves do not
//! wake the scheduler.
//!
//! A store may be given a `keep` rule ([`SpecStore::set_keep`]): objects it rejects are not
//! stored (the agent keeps only its own node's ProbeRequests), and [`SpecStore::retain_kept`]
//! re-applies it when what it depends on moved.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::cluster::model::ObjectRef;

/// Which objects a store keeps.
pub type KeepRule<K, Key> = Arc<dyn Fn(&Key, &K) -> bool + Send + Sync>;

/// The objects of one custom resource kind, by `Key`: [`ObjectRef`] for a namespaced kind,
/// the name for a cluster-scoped one.
pub struct SpecStore<K, Key = ObjectRef> {
    items: BTreeMap<Key, Arc<K>>,
    revision: u64,
    keep: Option<KeepRule<K, Key>>,
}

impl<K, Key> fmt::Debug for SpecStore<K, Key> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecStore")
            .field("items", &self.items.len())
            .field("revision", &self.revision)
            .field("filtered", &self.keep.is_some())
            .finish()
    }
}

impl<K, Key> Default for SpecStore<K, Key> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            revision: 0,
            keep: None,
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

    /// From now on, stores only the objects `keep` accepts (and drops the others at once).
    pub fn set_keep(&mut self, keep: impl Fn(&Key, &K) -> bool + Send + Sync + 'static) {
        self.keep = Some(Arc::new(keep));
        self.retain_kept();
    }

    /// Drops the objects the keep rule no longer accepts; returns how many.
    pub fn retain_kept(&mut self) -> usize {
        let Some(keep) = self.keep.clone() else {
            return 0;
        };
        let before = self.items.len();
        self.items.retain(|key, obj| keep(key, obj));
        let dropped = before - self.items.len();
        if dropped > 0 {
            self.revision += 1;
        }
        dropped
    }

    fn kept(&self, key: &Key, obj: &K) -> bool {
        self.keep.as_ref().is_none_or(|keep| keep(key, obj))
    }

    /// Adds or replaces an object (removes it when the keep rule rejects it); returns whether
    /// anything changed.
    pub fn insert(&mut self, key: Key, obj: K) -> bool {
        if !self.kept(&key, &obj) {
            return self.remove(&key);
        }
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
        let items: BTreeMap<Key, Arc<K>> = items
            .into_iter()
            .filter(|(k, v)| self.kept(k, v))
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keep_rule_filters_inserts_relists_and_what_is_already_there() {
        let mut store: SpecStore<u32> = SpecStore::new();
        let key = |name: &str| ObjectRef::new("ns", name);
        store.insert(key("a"), 1);
        store.insert(key("b"), 2);
        // Odd numbers only: b goes at once.
        store.set_keep(|_, value| value % 2 == 1);
        assert_eq!(store.len(), 1);
        let revision = store.revision();
        assert!(
            !store.insert(key("c"), 4),
            "rejected and not there: no change"
        );
        assert_eq!(store.revision(), revision);
        assert!(store.insert(key("a"), 2), "an update it rejects removes it");
        assert!(store.get(&key("a")).is_none());
        store.replace([(key("d"), 3), (key("e"), 6)]);
        let kept: Vec<_> = store
            .iter()
            .map(|(k, v)| (k.name.to_string(), **v))
            .collect();
        assert_eq!(kept, [("d".to_string(), 3)]);
    }
}

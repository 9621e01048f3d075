//! A fixed-size bit set over dense ids (pods, namespaces), for the selector caches and the
//! matrix: 1,000 pods fit in 16 words, so unions and lookups are a few instructions.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub(crate) fn empty(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    pub(crate) fn full(len: usize) -> Self {
        let mut set = Self::empty(len);
        for i in 0..len {
            set.insert(i);
        }
        set
    }

    pub(crate) fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(crate) fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    pub(crate) fn intersect_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut a = BitSet::empty(130);
        a.insert(0);
        a.insert(129);
        assert!(a.contains(129) && a.contains(0) && !a.contains(64) && !a.contains(500));
        let mut b = BitSet::empty(130);
        b.insert(64);
        b.insert(129);
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u.count(), 3);
        a.intersect_with(&b);
        assert_eq!(a.count(), 1);
        assert_eq!(BitSet::full(130).count(), 130);
        a.clear();
        assert_eq!(a.count(), 0);
    }
}

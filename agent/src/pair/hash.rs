//! A stable 64-bit hash for pair identities, sampling ranks, phases and jitter.
//!
//! Every agent must compute the same value for the same pair, across processes, hosts and
//! agent versions (during a rollout two versions rank pairs side by side), so `std`'s
//! `DefaultHasher`, whose algorithm may change between Rust releases, is not an option. This is
//! FNV-1a over a length-prefixed encoding, finished with the murmur3 `fmix64` avalanche step so
//! that low bits (used for phases) and order (used for ranks) are both well spread.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Builds one stable hash from a sequence of fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StableHasher(u64);

impl StableHasher {
    pub(crate) fn new(domain: &str) -> Self {
        let mut hasher = Self(FNV_OFFSET);
        hasher.str(domain);
        hasher
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    /// A string, length-prefixed so `("ab", "c")` and `("a", "bc")` differ.
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
        self
    }

    pub(crate) fn u64(&mut self, n: u64) -> &mut Self {
        self.bytes(&n.to_le_bytes());
        self
    }

    pub(crate) fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// Combines two finished hashes into one, order-sensitively.
pub(crate) fn combine(a: u64, b: u64) -> u64 {
    fmix64(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b)
}

/// murmur3's 64-bit finalizer: every input bit affects every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_pinned_so_agents_of_different_versions_agree() {
        // If this changes, every cluster's sample and phases reshuffle on upgrade: bump the
        // domain string on purpose, never by accident.
        let mut h = StableHasher::new("netreach/test");
        h.str("shop").str("frontend").u64(8080);
        assert_eq!(h.finish(), PINNED);
    }

    #[test]
    fn length_prefix_separates_fields() {
        let mut a = StableHasher::new("d");
        a.str("ab").str("c");
        let mut b = StableHasher::new("d");
        b.str("a").str("bc");
        assert_ne!(a.finish(), b.finish());
        assert_ne!(combine(1, 2), combine(2, 1));
    }

    const PINNED: u64 = 11_957_194_927_481_161_829;
}

//! Report texts stored as shared pieces. An agent keeps one report per pair, and most of their
//! explanations repeat across thousands of pairs word for word: `observed: open` and `expect:
//! Allow: met`, the egress line of a source, the ingress line and the health of a destination.
//! A [`Text`] holds its pieces (the diagnosis's sections) as `Arc<str>`s, and [`SharedText`]
//! hands out one `Arc` per distinct piece, so a report pays for its own pieces (its summary, its
//! flow) and a pointer for each of the rest.
//!
//! ```text
//! "s\nobserved: open\n  a -> b\n" + section starts [0, 1, 17] ──SharedText::text──>
//!     Text [Arc("s"), Arc("\nobserved: open\n"), Arc("  a -> b\n")] ──Display──> the same text
//!                      └── the same Arc in every text that has this piece
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// A text kept as consecutive pieces; written out, they are the text exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(Box<[Arc<str>]>);

impl Text {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the text contains `pattern` (which may span pieces).
    pub fn contains(&self, pattern: &str) -> bool {
        self.to_string().contains(pattern)
    }

    /// `text` cut at `starts` (byte offsets; out of range or off a char boundary are skipped),
    /// each piece from `piece`.
    fn cut(text: &str, starts: &[usize], mut piece: impl FnMut(&str) -> Arc<str>) -> Self {
        let mut bounds: Vec<usize> = starts
            .iter()
            .copied()
            .filter(|&at| at > 0 && at < text.len() && text.is_char_boundary(at))
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        let mut pieces = Vec::with_capacity(bounds.len() + 1);
        let mut from = 0;
        for at in bounds.into_iter().chain([text.len()]) {
            if at > from {
                pieces.push(piece(&text[from..at]));
            }
            from = at;
        }
        Self(pieces.into_boxed_slice())
    }
}

/// A text in one piece, shared with nothing.
impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self::cut(text, &[], |piece| Arc::from(piece))
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|piece| f.write_str(piece))
    }
}

/// One `Arc` per distinct string: what asks for a string it already holds gets that one.
#[derive(Debug, Default)]
pub struct StrPool(HashSet<Arc<str>>);

impl StrPool {
    /// `s`, shared with every earlier caller that asked for the same string.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.0.insert(shared.clone());
        shared
    }

    /// Lets go of the strings nothing but the pool holds any more.
    pub fn prune(&mut self) {
        self.0.retain(|s| Arc::strong_count(s) > 1);
    }

    /// How many distinct strings are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `Arc` per distinct piece, for texts built concurrently. Pieces live as long as a text
/// or the cache holds them; build a new cache with each view (the pipeline's context does), so
/// pieces of old views go with their reports.
#[derive(Debug, Default)]
pub struct SharedText {
    pieces: Mutex<StrPool>,
}

impl SharedText {
    /// `piece`, shared with every earlier caller that asked for the same piece.
    pub fn piece(&self, piece: &str) -> Arc<str> {
        self.pieces.lock().get(piece)
    }

    /// `text` cut at `starts` (byte offsets where its sections start), its pieces shared.
    pub fn text(&self, text: &str, starts: &[usize]) -> Text {
        let mut pieces = self.pieces.lock();
        Text::cut(text, starts, |piece| pieces.get(piece))
    }

    /// How many distinct pieces are held.
    pub fn len(&self) -> usize {
        self.pieces.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_reads_back_exactly_however_it_is_cut() {
        let cases: [(&str, &[usize]); 6] = [
            ("", &[]),
            ("one piece", &[]),
            ("ends with a newline\n", &[0, 4]),
            ("two\nlines", &[4]),
            ("out of range", &[0, 99, 5, 5]),
            ("ünïcode", &[1, 2, 3]),
        ];
        let shared = SharedText::default();
        for (text, starts) in cases {
            assert_eq!(Text::from(text).to_string(), text, "{text:?}");
            assert_eq!(
                shared.text(text, starts).to_string(),
                text,
                "{text:?} at {starts:?}"
            );
        }
        assert!(Text::from("").is_empty());
    }

    #[test]
    fn repeated_pieces_are_held_once() {
        let shared = SharedText::default();
        let a = shared.text("summary a\nobserved: open\n", &[0, 9]);
        let b = shared.text("summary b\nobserved: open\n", &[0, 9]);
        assert_eq!(shared.len(), 3, "two summaries, one shared piece");
        assert!(Arc::ptr_eq(&a.0[1], &b.0[1]));
        assert!(!Arc::ptr_eq(&a.0[0], &b.0[0]));
        assert!(Arc::ptr_eq(&a.0[0], &shared.piece("summary a")));
    }

    #[test]
    fn a_pool_lets_go_of_what_only_it_holds() {
        let mut pool = StrPool::default();
        let kept = pool.get("shop/web");
        drop(pool.get("shop/gone"));
        assert!(Arc::ptr_eq(&kept, &pool.get("shop/web")));
        assert_eq!(pool.len(), 2);
        pool.prune();
        assert_eq!(pool.len(), 1);
    }
}

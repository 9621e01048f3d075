//! Report texts stored by shared lines. An agent keeps one report per pair, and most lines of
//! their explanations repeat across thousands of pairs: `observed: open`, `expect: Allow: met`,
//! the egress line of a source, the ingress and health lines of a destination. A [`Text`] holds
//! its lines as `Arc<str>`s, and [`SharedLines`] hands out one `Arc` per distinct line, so a
//! report pays for its own lines (its summary, its flow) and a pointer for each of the rest.
//!
//! ```text
//! "a\nb\n" ──SharedLines::text──> Text [Arc("a"), Arc("b"), Arc("")] ──Display──> "a\nb\n"
//!                                        └── "b" is the same Arc in every text that has it
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// A text kept as its lines (split at `\n`, so joining them gives it back exactly).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(Box<[Arc<str>]>);

impl Text {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text's lines; the last one is empty when the text ends with a newline.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|line| &**line)
    }

    /// Whether the text contains `pattern` (which may span lines).
    pub fn contains(&self, pattern: &str) -> bool {
        self.to_string().contains(pattern)
    }

    fn split(text: &str, line: impl FnMut(&str) -> Arc<str>) -> Self {
        if text.is_empty() {
            return Self::default();
        }
        Self(text.split('\n').map(line).collect())
    }
}

/// A text with no line shared with another.
impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self::split(text, |line| Arc::from(line))
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, line) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            f.write_str(line)?;
        }
        Ok(())
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

/// One `Arc` per distinct line, for texts built concurrently. Lines live as long as a text or
/// the cache holds them; build a new cache with each view (the pipeline's context does), so
/// lines of old views go with their reports.
#[derive(Debug, Default)]
pub struct SharedLines {
    lines: Mutex<StrPool>,
}

impl SharedLines {
    /// `line`, shared with every earlier caller that asked for the same line.
    pub fn line(&self, line: &str) -> Arc<str> {
        self.lines.lock().get(line)
    }

    /// `text`, its lines shared.
    pub fn text(&self, text: &str) -> Text {
        let mut lines = self.lines.lock();
        Text::split(text, |line| lines.get(line))
    }

    /// How many distinct lines are held.
    pub fn len(&self) -> usize {
        self.lines.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_reads_back_exactly() {
        let cases = [
            "",
            "one line",
            "ends with a newline\n",
            "two\nlines",
            "\n",
            "blank\n\nline\n",
        ];
        let shared = SharedLines::default();
        for text in cases {
            assert_eq!(Text::from(text).to_string(), text, "{text:?}");
            assert_eq!(shared.text(text).to_string(), text, "{text:?}");
        }
        assert!(Text::from("").is_empty());
    }

    #[test]
    fn repeated_lines_are_held_once() {
        let shared = SharedLines::default();
        let a = shared.text("summary a\nobserved: open\nexpect: Allow: met\n");
        let b = shared.text("summary b\nobserved: open\nexpect: Allow: met\n");
        // Two summaries, two shared lines and the empty last line.
        assert_eq!(shared.len(), 5);
        let line = |text: &Text, n: usize| text.0[n].clone();
        assert!(Arc::ptr_eq(&line(&a, 1), &line(&b, 1)));
        assert!(!Arc::ptr_eq(&line(&a, 0), &line(&b, 0)));
        assert_eq!(a.lines().nth(2), Some("expect: Allow: met"));
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

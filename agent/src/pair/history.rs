//! A pair's outage history: its verdict periods (start, end, verdict, reason, policies) and
//! its probes counted by outcome since the agent started, so a path that flapped stays
//! visible after it recovered.
//!
//! Bounded twice: at most [`MAX_PERIODS`] periods, and periods that ended more than
//! [`MAX_AGE`] ago are dropped; the current period is always kept. Every verdict is a period,
//! `not_probed` and `inconclusive` too (they say when nothing could be observed, never that
//! traffic was blocked). A pair's record and its reports share one history
//! ([`SharedHistory`]), updated in place by each probe: copying it on every probe, because the
//! published report still held the old one, kept a second history per pair alive between
//! publishes.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use parking_lot::{Mutex, MutexGuard};
use probe_spec::PairVerdict;

use super::{PairReason, PairReport};
use crate::cluster::model::PolicyRef;
use crate::probe::Outcome;

/// Verdict periods kept per pair.
pub const MAX_PERIODS: usize = 20;
/// How long an ended period is kept.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Policies named per period.
pub const MAX_POLICIES: usize = 3;

/// One stretch of time a pair had the same verdict and reason.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictPeriod {
    /// The first probe that found it.
    pub start: Timestamp,
    /// The first probe that found something else; `None` while it lasts.
    pub end: Option<Timestamp>,
    pub verdict: PairVerdict,
    pub reason: Option<PairReason>,
    /// The deciding policies (at most [`MAX_POLICIES`]).
    pub policies: Vec<PolicyRef>,
}

/// Probes counted by outcome, in [`Outcome::ALL`] order. 32 bits each: a pair probed every
/// second takes 136 years to fill one, and every pair holds these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeCounts([u32; Outcome::ALL.len()]);

impl OutcomeCounts {
    pub fn add(&mut self, outcome: Outcome) {
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.0[i] = self.0[i].saturating_add(1);
        }
    }

    pub fn set(&mut self, outcome: Outcome, count: u64) {
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.0[i] = u32::try_from(count).unwrap_or(u32::MAX);
        }
    }

    /// The outcomes seen, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        Outcome::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| (*o, u64::from(n)))
    }

    /// The counts by outcome code (`{"open": 41, "timeout": 3}`), as the JSON and the
    /// ProbeSpec status show them.
    pub fn by_code(&self) -> std::collections::BTreeMap<String, u64> {
        self.iter()
            .map(|(outcome, n)| (outcome.as_str().to_string(), n))
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|&n| u64::from(n)).sum()
    }
}

/// The history of one pair (one report slot: a host target keeps one per resolved address).
#[derive(Clone, Debug, PartialEq)]
pub struct PairHistory {
    /// The first probe this agent made of the pair.
    pub since: Timestamp,
    pub probes: OutcomeCounts,
    /// Oldest first; the last one is the current verdict.
    pub periods: VecDeque<VerdictPeriod>,
}

impl PairHistory {
    pub fn new(since: Timestamp) -> Self {
        Self {
            since,
            probes: OutcomeCounts::default(),
            periods: VecDeque::new(),
        }
    }

    /// Takes one probe in: counts its outcome, and starts a period when the verdict or the
    /// reason changed (ending the current one at this probe).
    pub fn observe(&mut self, report: &PairReport) {
        let at = report.last_probe;
        self.probes.add(report.outcome);
        let same = self
            .periods
            .back()
            .is_some_and(|p| p.verdict == report.verdict && p.reason == report.reason);
        if !same {
            if let Some(current) = self.periods.back_mut() {
                current.end = Some(at);
            }
            // Exactly one more: most pairs hold one period all their life, and every pair
            // has a history.
            self.periods.reserve_exact(1);
            self.periods.push_back(VerdictPeriod {
                start: at,
                end: None,
                verdict: report.verdict,
                reason: report.reason,
                policies: report.policies.iter().take(MAX_POLICIES).cloned().collect(),
            });
        }
        self.trim(at);
    }

    /// Drops the oldest periods beyond [`MAX_PERIODS`] and those that ended before `now` -
    /// [`MAX_AGE`]; the current one stays.
    fn trim(&mut self, now: Timestamp) {
        while self.periods.len() > MAX_PERIODS {
            self.periods.pop_front();
        }
        let Ok(max_age) = SignedDuration::try_from(MAX_AGE) else {
            return;
        };
        let Ok(oldest) = now.checked_sub(max_age) else {
            return;
        };
        while self
            .periods
            .front()
            .and_then(|p| p.end)
            .is_some_and(|end| end < oldest)
        {
            self.periods.pop_front();
        }
    }

    /// Periods whose verdict is `blocked_by_policy`, `unexpected_block`,
    /// `policy_not_enforced` or `partially_blocked` (whatever the spec expected).
    #[cfg(test)]
    pub fn outages(&self) -> usize {
        self.periods
            .iter()
            .filter(|p| {
                matches!(
                    p.verdict,
                    PairVerdict::BlockedByPolicy
                        | PairVerdict::UnexpectedBlock
                        | PairVerdict::PolicyNotEnforced
                        | PairVerdict::PartiallyBlocked
                )
            })
            .count()
    }
}

/// One pair's history, shared by its record (which updates it in place at each probe) and its
/// reports (which read it when they are shown). A published report may thus show a probe more
/// than its own, for the second at most until the next publish; it never shows one less.
#[derive(Clone)]
pub struct SharedHistory(Arc<Mutex<PairHistory>>);

impl SharedHistory {
    pub fn new(history: PairHistory) -> Self {
        Self(Arc::new(Mutex::new(history)))
    }

    /// The history as it is now; hold the guard briefly (the scheduler waits for it).
    pub fn lock(&self) -> MutexGuard<'_, PairHistory> {
        self.0.lock()
    }
}

impl PartialEq for SharedHistory {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.lock() == *other.lock()
    }
}

impl fmt::Debug for SharedHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lock().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fixtures::report_at;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("a time")
    }

    #[test]
    fn periods_start_on_each_change_and_end_at_the_next() {
        use PairVerdict::*;
        let mut history = PairHistory::new(at(0));
        let probes = [
            (0, Ok, Outcome::Open),
            (10, Ok, Outcome::Open),
            (20, UnexpectedBlock, Outcome::Timeout),
            (30, UnexpectedBlock, Outcome::Timeout),
            (40, NotProbed, Outcome::NotProbed),
            (50, Ok, Outcome::Open),
        ];
        for (t, verdict, outcome) in probes {
            history.observe(&report_at(at(t), verdict, outcome));
        }
        let periods: Vec<(i64, Option<i64>, PairVerdict)> = history
            .periods
            .iter()
            .map(|p| {
                (
                    p.start.as_second() - at(0).as_second(),
                    p.end.map(|e| e.as_second() - at(0).as_second()),
                    p.verdict,
                )
            })
            .collect();
        assert_eq!(
            periods,
            [
                (0, Some(20), Ok),
                (20, Some(40), UnexpectedBlock),
                (40, Some(50), NotProbed),
                (50, None, Ok),
            ]
        );
        assert_eq!(history.outages(), 1);
        let counts: Vec<(Outcome, u64)> = history.probes.iter().collect();
        assert_eq!(
            counts,
            [
                (Outcome::Open, 3),
                (Outcome::Timeout, 2),
                (Outcome::NotProbed, 1)
            ]
        );
        assert_eq!(history.probes.total(), 6);
    }

    #[test]
    fn bounded_by_count_and_by_age_keeping_the_current_period() {
        let mut history = PairHistory::new(at(0));
        for i in 0..(MAX_PERIODS as i64 + 15) {
            let verdict = if i % 2 == 0 {
                PairVerdict::Ok
            } else {
                PairVerdict::UnexpectedBlock
            };
            history.observe(&report_at(at(i * 60), verdict, Outcome::Open));
        }
        assert_eq!(history.periods.len(), MAX_PERIODS);
        assert_eq!(
            history.periods.back().map(|p| p.start),
            Some(at((MAX_PERIODS as i64 + 14) * 60))
        );
        // Eight days later, one more probe with the same verdict: every ended period is older
        // than seven days and goes; the current one stays, however old.
        let last = history.periods.back().map(|p| p.verdict).expect("a period");
        history.observe(&report_at(at(8 * 24 * 3600), last, Outcome::Open));
        assert_eq!(history.periods.len(), 1);
        assert_eq!(history.periods[0].end, None);
    }
}

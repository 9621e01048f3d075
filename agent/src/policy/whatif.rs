//! What a change to the objects would flip: the matrix of two engines (before and after the
//! change) walked port by port, compared pair by pair by pod key.
//!
//! ```text
//! per port:  before walk ──> allowed / present bits, (source, destination) in before's ids
//!            after walk  ──> each non-self cell, its pods mapped to before's ids by key
//!                            ──> present on both sides and verdicts differ: a Flip
//! ```
//!
//! Pods are matched by `namespace/name`, so a relabelled pod is the same pod (its pairs may
//! flip); a pod added or removed by the change has pairs on one side only, which are counted,
//! never reported as flips. Memory is two bit sets of pods² per port, not the cells.

use crate::cluster::model::ObjectRef;

use super::bitset::BitSet;
use super::engine::Engine;
use super::matrix::{MatrixCell, MatrixPort, MatrixWalk};

/// One ordered pod pair on one port whose verdict the change flips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flip {
    /// The cell in the before engine's pod ids.
    pub before: MatrixCell,
    /// The cell in the after engine's pod ids.
    pub after: MatrixCell,
}

impl Flip {
    /// An allowed pair that the change denies: what a CI gate fails on.
    pub fn newly_denied(&self) -> bool {
        self.before.allowed && !self.after.allowed
    }
}

/// The pairs compared and the flips among them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Flips in order of port, then source and destination key.
    pub flips: Vec<Flip>,
    /// Non-self pairs (per port) present before and after the change.
    pub compared: usize,
    /// Non-self pairs only before the change (a pod or port it removed).
    pub only_before: usize,
    /// Non-self pairs only after the change (a pod or port it added).
    pub only_after: usize,
    /// Ports walked.
    pub ports: usize,
}

impl Comparison {
    pub fn newly_denied(&self) -> usize {
        self.flips.iter().filter(|f| f.newly_denied()).count()
    }

    pub fn newly_allowed(&self) -> usize {
        self.flips.len() - self.newly_denied()
    }
}

/// Rows (one source on one port, on one side) walked so far and in all, for progress output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

/// Compares every ordered pod pair on `ports` before and after; with no ports, each
/// destination on each of its own container ports (on each side, so a port the change adds to
/// or removes from a pod gives pairs on one side only).
pub fn compare(
    before: &Engine,
    after: &Engine,
    ports: &[MatrixPort],
    mut progress: impl FnMut(Progress),
) -> Comparison {
    let per_destination = ports.is_empty();
    let ports: Vec<MatrixPort> = if per_destination {
        let mut all = before.container_ports();
        all.extend(after.container_ports());
        all.sort_unstable();
        all.dedup();
        all
    } else {
        ports.to_vec()
    };
    let before_walk = MatrixWalk::new(before);
    let after_walk = MatrixWalk::new(after);
    let after_to_before: Vec<Option<usize>> = after
        .pods()
        .iter()
        .map(|pod| before.pod_id(&pod.key()))
        .collect();

    let n = before.pods().len();
    let mut allowed = BitSet::empty(n * n);
    let mut present = BitSet::empty(n * n);
    let rows = before_walk.endpoints().len() + after_walk.endpoints().len();
    let mut progress_of = Progress {
        done: 0,
        total: rows * ports.len(),
    };
    let mut comparison = Comparison {
        ports: ports.len(),
        ..Comparison::default()
    };
    for &port in &ports {
        allowed.clear();
        present.clear();
        let mut present_count = 0usize;
        let mut rows = Rows::new(&mut progress_of, before_walk.endpoints().len());
        let _ = before_walk.try_for_each_on_port(port, per_destination, &mut |cell| {
            rows.see(cell.from, &mut progress);
            if !cell.self_traffic {
                let at = cell.from * n + cell.to;
                present.insert(at);
                present_count += 1;
                if cell.allowed {
                    allowed.insert(at);
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
        rows.finish(&mut progress);
        let mut matched = 0usize;
        let mut flipped: Vec<(MatrixCell, usize, usize)> = Vec::new();
        let mut rows = Rows::new(&mut progress_of, after_walk.endpoints().len());
        let _ = after_walk.try_for_each_on_port(port, per_destination, &mut |cell| {
            rows.see(cell.from, &mut progress);
            if cell.self_traffic {
                return Ok::<(), std::convert::Infallible>(());
            }
            let at = match (after_to_before[cell.from], after_to_before[cell.to]) {
                (Some(from), Some(to)) if present.contains(from * n + to) => (from, to),
                _ => {
                    comparison.only_after += 1;
                    return Ok(());
                }
            };
            matched += 1;
            if allowed.contains(at.0 * n + at.1) != cell.allowed {
                flipped.push((cell, at.0, at.1));
            }
            Ok(())
        });
        rows.finish(&mut progress);
        comparison.compared += matched;
        comparison.only_before += present_count - matched;
        comparison
            .flips
            .extend(flipped.into_iter().map(|(cell, from, to)| Flip {
                before: MatrixCell {
                    from,
                    to,
                    port,
                    allowed: !cell.allowed,
                    self_traffic: false,
                    rules_allowed: !cell.allowed,
                },
                after: cell,
            }));
    }
    comparison
}

/// Progress through one walk: a row is one source's cells on one port.
struct Rows<'p> {
    progress: &'p mut Progress,
    start: usize,
    len: usize,
    current: Option<usize>,
}

impl<'p> Rows<'p> {
    fn new(progress: &'p mut Progress, len: usize) -> Self {
        let start = progress.done;
        Self {
            progress,
            start,
            len,
            current: None,
        }
    }

    fn see(&mut self, source: usize, report: &mut impl FnMut(Progress)) {
        if self.current != Some(source) {
            if self.current.is_some() {
                self.progress.done += 1;
                report(*self.progress);
            }
            self.current = Some(source);
        }
    }

    /// Every row of the walk counts as done, even those without cells (a port that no
    /// destination declares has none).
    fn finish(self, report: &mut impl FnMut(Progress)) {
        self.progress.done = self.start + self.len;
        report(*self.progress);
    }
}

/// The pod keys of a flip's pair (from the after engine).
pub fn flip_keys(after: &Engine, flip: &Flip) -> (ObjectRef, ObjectRef) {
    let pods = after.pods();
    (pods[flip.after.from].key(), pods[flip.after.to].key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Index;
    use crate::cluster::index::Apply;
    use crate::cluster::model::Protocol::Tcp;
    use crate::cluster::model::{NetworkPolicy, Pod};
    use crate::cluster::tiered::TieredPolicy;
    use crate::policy::Profile;
    use crate::testing::*;

    /// shop/db (5432) and shop/api (8080) and web/ui (80); db admits only api.
    fn cluster() -> Index {
        let mut index = Index::new();
        index.apply(namespace("shop", &[("team", "shop")]));
        index.apply(namespace("web", &[("team", "web")]));
        index.apply(
            pod("shop", "db", &[("app", "db")], "10.0.1.1", "n1").with_port("pg", 5432, Tcp),
        );
        index.apply(
            pod("shop", "api", &[("app", "api")], "10.0.1.2", "n1").with_port("http", 8080, Tcp),
        );
        index
            .apply(pod("web", "ui", &[("app", "ui")], "10.0.2.1", "n2").with_port("http", 80, Tcp));
        index.apply(db_policy(5432));
        index
    }

    fn db_policy(port: u16) -> NetworkPolicy {
        policy("shop", "db-ingress")
            .select(sel(&[("app", "db")]))
            .ingress(rule().peer(pods(sel(&[("app", "api")]))).port(tcp(port)))
    }

    fn flips(before: &Index, after: &Index, ports: &[MatrixPort]) -> (Vec<String>, Comparison) {
        let (before, after) = (
            Engine::new(before, Profile::UPSTREAM),
            Engine::new(after, Profile::UPSTREAM),
        );
        let comparison = compare(&before, &after, ports, |_| {});
        let lines = comparison
            .flips
            .iter()
            .map(|flip| {
                let (from, to) = flip_keys(&after, flip);
                let word = |allowed| if allowed { "allow" } else { "deny" };
                format!(
                    "{from} -> {to} {}: {} -> {}",
                    flip.after.port.port,
                    word(flip.before.allowed),
                    word(flip.after.allowed)
                )
            })
            .collect();
        (lines, comparison)
    }

    type Change = fn(&mut Index);

    #[test]
    fn what_a_change_flips() {
        let on_5432 = [MatrixPort {
            port: 5432,
            protocol: Tcp,
        }];
        let cases: &[(&str, Change, &[MatrixPort], &[&str])] = &[
            ("nothing changes", |_| {}, &[], &[]),
            (
                "a deleted policy opens the db to everyone",
                |index| {
                    Apply::<NetworkPolicy>::delete(index, &key("shop/db-ingress"));
                },
                &[],
                &["web/ui -> shop/db 5432: deny -> allow"],
            ),
            (
                "an edited rule moves the allowed port",
                |index| index.apply(db_policy(6432)),
                &[],
                &["shop/api -> shop/db 5432: allow -> deny"],
            ),
            (
                "a relabelled pod loses its access",
                |index| {
                    index.apply(
                        pod("shop", "api", &[("app", "other")], "10.0.1.2", "n1")
                            .with_port("http", 8080, Tcp),
                    );
                },
                &[],
                &["shop/api -> shop/db 5432: allow -> deny"],
            ),
            (
                "a policy that admits what was already admitted flips nothing",
                |index| {
                    index.apply(
                        policy("shop", "also-api")
                            .select(sel(&[("app", "db")]))
                            .ingress(rule().peer(pods(sel(&[("app", "api")])))),
                    )
                },
                &on_5432,
                &[],
            ),
            (
                "on a given port, every pair counts, not just declared ports",
                |index| {
                    Apply::<NetworkPolicy>::delete(index, &key("shop/db-ingress"));
                },
                &on_5432,
                &["web/ui -> shop/db 5432: deny -> allow"],
            ),
            (
                "a rule that admits a namespace instead of a pod",
                |index| {
                    index.apply(
                        policy("shop", "db-ingress")
                            .select(sel(&[("app", "db")]))
                            .ingress(rule().peer(nss(sel(&[("team", "web")])))),
                    )
                },
                &[],
                &[
                    "shop/api -> shop/db 5432: allow -> deny",
                    "web/ui -> shop/db 5432: deny -> allow",
                ],
            ),
            (
                "an admin tier deny closes what NetworkPolicy left open",
                |index| {
                    index.apply(
                        TieredPolicy::try_from(&serde_json::json!({
                            "apiVersion": "policy.networking.k8s.io/v1alpha2",
                            "kind": "ClusterNetworkPolicy",
                            "metadata": {"name": "no-web"},
                            "spec": {"tier": "Admin", "priority": 1,
                                     "subject": {"namespaces": {"matchLabels": {"team": "shop"}}},
                                     "ingress": [{"name": "web", "action": "Deny",
                                       "from": [{"namespaces": {"matchLabels": {"team": "web"}}}]}]}
                        }))
                        .unwrap(),
                    )
                },
                &[],
                &["web/ui -> shop/api 8080: allow -> deny"],
            ),
        ];
        for (name, change, ports, want) in cases {
            let before = cluster();
            let mut after = before.clone();
            change(&mut after);
            let (got, comparison) = flips(&before, &after, ports);
            assert_eq!(got, *want, "{name}");
            assert_eq!(comparison.only_before + comparison.only_after, 0, "{name}");
            assert!(comparison.compared > 0, "{name}");
        }
    }

    #[test]
    fn pods_on_one_side_only_are_counted_not_flipped() {
        let before = cluster();
        let mut after = before.clone();
        Apply::<Pod>::delete(&mut after, &key("web/ui"));
        after.apply(
            pod("web", "new", &[("app", "ui")], "10.0.2.9", "n2").with_port("http", 80, Tcp),
        );
        let (got, comparison) = flips(&before, &after, &[]);
        assert!(got.is_empty(), "{got:?}");
        // ui was a source to db and api and a destination of db and api (port 80).
        assert_eq!(comparison.only_before, 4);
        assert_eq!(comparison.only_after, 4);
        // db <-> api on their own ports.
        assert_eq!(comparison.compared, 2);
        assert_eq!(comparison.ports, 3);
    }

    #[test]
    fn progress_reaches_the_total() {
        let index = cluster();
        let engine = Engine::new(&index, Profile::UPSTREAM);
        let mut last = None;
        compare(&engine, &engine, &[], |p| last = Some(p));
        assert_eq!(
            last,
            Some(Progress {
                done: 18,
                total: 18
            })
        );
    }
}

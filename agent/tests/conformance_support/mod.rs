//! What the two conformance tests (NetworkPolicy, cluster-scoped tiers) check the same way:
//! the case's matrix against `evaluate`, cell by cell.

use std::collections::HashMap;

use netreach::cluster::Protocol;
use netreach::policy::{Engine, MatrixPort};

/// The distinct (port, protocol) pairs of a case's rows, sorted.
pub fn ports_of<'a>(rows: impl Iterator<Item = (u16, &'a str)>) -> Vec<MatrixPort> {
    let mut ports: Vec<MatrixPort> = rows
        .map(|(port, protocol)| MatrixPort {
            port,
            protocol: protocol.parse::<Protocol>().expect("protocol"),
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// The matrix of `ports`, keyed (from, to, port) -> allowed, after checking every cell of it
/// and of the per-destination matrix against `evaluate`: the deny codes the JSON matrix prints
/// (`cell_denial`) and `rules_allowed`. Disagreements go to `mismatches`; returns the matrix
/// and how many cells were compared.
pub fn checked_matrix(
    case: &str,
    engine: &Engine,
    ports: &[MatrixPort],
    mismatches: &mut Vec<String>,
) -> (HashMap<(String, String, MatrixPort), bool>, usize) {
    let cells = engine.matrix(ports);
    let mut compared = 0;
    for cell in cells.iter().chain(&engine.matrix(&[])) {
        let verdict = engine.evaluate_cell(cell);
        let cheap = engine
            .cell_denial(cell)
            .map(|d| (d.reason, d.direction, d.policy_names(engine)));
        let full = verdict
            .reason
            .zip(verdict.direction)
            .map(|(reason, direction)| (reason, direction, verdict.policies.clone()));
        compared += 1;
        if cheap != full {
            mismatches.push(format!(
                "{case}: {cell:?}: cell_denial {cheap:?}, verdict {full:?}"
            ));
        }
        if cell.rules_allowed != verdict.rules_allowed {
            mismatches.push(format!(
                "{case}: {cell:?}: matrix rules_allowed {}, verdict {}",
                cell.rules_allowed, verdict.rules_allowed
            ));
        }
    }
    let key = |id: usize| engine.pods()[id].key().to_string();
    let matrix = cells
        .into_iter()
        .map(|c| ((key(c.from), key(c.to), c.port), c.allowed))
        .collect();
    (matrix, compared)
}

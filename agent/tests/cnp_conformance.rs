//! The cluster-scoped policy conformance cases (ClusterNetworkPolicy v1alpha2, AdminNetworkPolicy
//! and BaselineAdminNetworkPolicy v1alpha1, copied from the upstream network-policy-api suite
//! into tests/data/cnp-conformance): the policy engine's verdict on every row, counted
//! separately for the rows the suite asserts and the derived ones.
//!
//! Every row must match, through `evaluate` and through the matrix; every matrix cell's deny
//! codes (`cell_denial`, what the JSON matrix prints) must equal its full verdict's.
//!
//! ```sh
//! cargo test -p netreach --test cnp_conformance -- --nocapture
//! ```

use std::path::{Path, PathBuf};

use netreach::cluster::load::load_paths;
use netreach::cluster::{ObjectRef, Protocol};
use netreach::policy::{Endpoint, Engine, Flow, MatrixPort, Profile};
use serde::Deserialize;

mod conformance_support;

#[derive(Debug, Deserialize)]
struct Expect {
    #[serde(default)]
    undecidable: bool,
    cases: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    from: String,
    to: String,
    port: u16,
    protocol: String,
    allowed: bool,
    #[serde(rename = "self", default)]
    self_pair: bool,
    #[serde(default)]
    derived: bool,
    rules_verdict: Option<bool>,
}

/// Matched / total, for one kind of row.
#[derive(Debug, Default)]
struct Count {
    matched: usize,
    rows: usize,
}

impl Count {
    fn add(&mut self, matched: bool) {
        self.rows += 1;
        self.matched += usize::from(matched);
    }
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cnp-conformance")
}

#[test]
fn cluster_scoped_conformance_rows() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("cnp conformance data")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("expect.yaml").exists())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 125, "the 125 upstream cases");

    let (mut asserted, mut derived, mut own) =
        (Count::default(), Count::default(), Count::default());
    let mut undecidable_cases = 0;
    let mut first_misses = Vec::new();
    let mut denial_mismatches = Vec::new();
    for dir in &dirs {
        let case = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = load_paths(&[dir.join("objects.yaml")]).expect("load objects");
        assert!(
            loaded.parse_errors.is_empty(),
            "{case}: objects must parse: {:?}",
            loaded.parse_errors
        );
        let engine = Engine::new(&loaded.index, Profile::UPSTREAM);
        let text = std::fs::read_to_string(dir.join("expect.yaml")).expect("expect.yaml");
        let expect: Expect = serde_yaml_ng::from_str(&text).expect("expect.yaml parses");
        undecidable_cases += usize::from(expect.undecidable);
        let ports = conformance_support::ports_of(
            expect.cases.iter().map(|r| (r.port, r.protocol.as_str())),
        );
        let (matrix, _) =
            conformance_support::checked_matrix(&case, &engine, &ports, &mut denial_mismatches);
        for row in &expect.cases {
            let protocol: Protocol = row.protocol.parse().expect("protocol");
            let flow = Flow {
                from: Endpoint::Pod(row.from.parse::<ObjectRef>().expect("ns/name")),
                to: Endpoint::Pod(row.to.parse::<ObjectRef>().expect("ns/name")),
                port: row.port,
                protocol,
            };
            let verdict = engine.evaluate(&flow).expect("flow resolves");
            let from_matrix = matrix
                .get(&(
                    row.from.clone(),
                    row.to.clone(),
                    MatrixPort {
                        port: row.port,
                        protocol,
                    },
                ))
                .copied();
            let mut matched = verdict.allowed == row.allowed
                && verdict.self_traffic == row.self_pair
                && from_matrix == Some(row.allowed);
            if let Some(rules) = row.rules_verdict {
                matched &= verdict.rules_allowed == rules;
            }
            let count = if row.self_pair {
                &mut own
            } else if row.derived {
                &mut derived
            } else {
                &mut asserted
            };
            count.add(matched);
            if !matched && first_misses.len() < 10 {
                first_misses.push(format!(
                    "{case}: {} -> {} {}/{}: want allowed={} (rules {:?}), got allowed={} rules={}",
                    row.from,
                    row.to,
                    row.port,
                    row.protocol,
                    row.allowed,
                    row.rules_verdict,
                    verdict.allowed,
                    verdict.rules_allowed
                ));
            }
        }
    }
    let matched = asserted.matched + derived.matched + own.matched;
    let rows = asserted.rows + derived.rows + own.rows;
    println!(
        "cnp conformance: {matched}/{rows} rows matched across {} cases ({undecidable_cases} with undecidable node-peer assertions left out upstream): asserted {}/{}, derived {}/{}, self {}/{}",
        dirs.len(),
        asserted.matched,
        asserted.rows,
        derived.matched,
        derived.rows,
        own.matched,
        own.rows,
    );
    assert_eq!(rows, 19_776, "every row of the data is read");
    assert!(
        denial_mismatches.is_empty(),
        "{} matrix cells disagree with their verdict:\n{}",
        denial_mismatches.len(),
        denial_mismatches[..denial_mismatches.len().min(10)].join("\n")
    );
    assert_eq!(
        matched,
        rows,
        "{} rows did not match; first misses:\n{}",
        rows - matched,
        first_misses.join("\n")
    );
}

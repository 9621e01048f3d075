//! Runs the policy engine on the upstream NetworkPolicy conformance cases (copied from the
//! e2e suite into tests/data/netpol-conformance) and requires every row to match: the final
//! verdict (`allowed`, self pairs allowed) and, for self pairs, what the rules alone say.
//! Each row is checked through `evaluate` and through the matrix, and every matrix cell's deny
//! codes (`cell_denial`, what the JSON matrix prints) against its full verdict.

use std::path::{Path, PathBuf};

use netreach::cluster::load::load_paths;
use netreach::cluster::{ObjectRef, Protocol};
use netreach::policy::{Endpoint, Engine, Flow, MatrixPort, Profile};
use serde::Deserialize;

mod conformance_support;

#[derive(Debug, Deserialize)]
struct Expect {
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
    rules_verdict: Option<bool>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/netpol-conformance")
}

#[test]
fn every_conformance_row_matches() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("conformance data")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("expect.yaml").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 64,
        "expected the 64 upstream cases, found {}",
        dirs.len()
    );

    let (mut rows, mut matched, mut denials, mut failures) = (0usize, 0usize, 0usize, Vec::new());
    for dir in &dirs {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let loaded = load_paths(&[dir.join("objects.yaml")]).expect("load objects");
        assert!(
            loaded.problems.is_empty() && loaded.parse_errors.is_empty(),
            "{case}: objects must load cleanly: {:?} {:?}",
            loaded.problems,
            loaded.parse_errors
        );
        let engine = Engine::new(&loaded.index, Profile::UPSTREAM);
        let expect: Expect =
            serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("expect.yaml")).unwrap())
                .unwrap();

        // The matrix of every port the case checks, keyed for lookup; the JSON matrix's deny
        // codes, taken without the explanation, are the verdict's.
        let ports = conformance_support::ports_of(
            expect.cases.iter().map(|r| (r.port, r.protocol.as_str())),
        );
        let (matrix, compared) =
            conformance_support::checked_matrix(&case, &engine, &ports, &mut failures);
        denials += compared;

        for row in &expect.cases {
            rows += 1;
            let protocol: Protocol = row.protocol.parse().unwrap();
            let flow = Flow {
                from: Endpoint::Pod(row.from.parse::<ObjectRef>().unwrap()),
                to: Endpoint::Pod(row.to.parse::<ObjectRef>().unwrap()),
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
            let mut ok = verdict.allowed == row.allowed
                && verdict.self_traffic == row.self_pair
                && from_matrix == Some(row.allowed);
            if let Some(rules) = row.rules_verdict {
                ok &= verdict.rules_allowed == rules;
            }
            if ok {
                matched += 1;
            } else {
                failures.push(format!(
                    "{case}: {} -> {} {}/{}: want allowed={} (rules {:?}), got allowed={} rules={} matrix={:?}",
                    row.from, row.to, row.port, row.protocol, row.allowed, row.rules_verdict, verdict.allowed, verdict.rules_allowed, from_matrix
                ));
            }
        }
    }
    println!(
        "conformance: {matched}/{rows} rows matched across {} cases; deny codes of {denials} matrix cells compared",
        dirs.len()
    );
    assert!(
        failures.is_empty(),
        "{} rows did not match:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(matched, rows);
}

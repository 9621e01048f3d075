//! The committed CRD YAML under charts/netreach/crds/ must match what the types generate.
//!
//! Regenerate it with `cargo run -p netreach -- crd > charts/netreach/crds/netreach.dev_crds.yaml`,
//! or run this test with `UPDATE_CRDS=1` to rewrite the file in place.

use std::path::PathBuf;

const REGENERATE: &str =
    "cargo run -p netreach -- crd > charts/netreach/crds/netreach.dev_crds.yaml";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/netreach/crds/netreach.dev_crds.yaml")
}

#[test]
fn committed_crds_match_the_types() {
    let generated = probe_spec::crds_yaml();
    let path = committed_path();

    if std::env::var_os("UPDATE_CRDS").is_some_and(|value| value == "1") {
        std::fs::write(&path, &generated).expect("write the CRD YAML");
        return;
    }

    let committed = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {}: {error}\nGenerate it from the repository root with:\n    {REGENERATE}\n\
             (or UPDATE_CRDS=1 cargo test -p probe-spec --test crd_drift)",
            path.display()
        )
    });
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(committed, generated)| committed != generated)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date with the probe-spec types (first difference at line {}).\n\
             Regenerate it from the repository root with:\n    {REGENERATE}\n\
             (or UPDATE_CRDS=1 cargo test -p probe-spec --test crd_drift)",
            path.display(),
            first_difference + 1,
        );
    }
}

//! Suite end check (named to run after the other test binaries of this crate): no testbed run
//! left anything behind. Leftovers found are removed, and the check fails. For the whole
//! workspace, CI runs `cargo run -p testbed --bin testbed-cleanup -- --check` after the tests.

#[test]
fn no_testbed_leftovers() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP no_testbed_leftovers: needs root (CI runs as root)");
        return;
    }
    let found = testbed::scan_leftovers();
    let report = testbed::cleanup_leftovers();
    assert!(
        found.is_empty(),
        "leftovers of dead testbed runs (now removed: {report:?}): {found:?}"
    );
}

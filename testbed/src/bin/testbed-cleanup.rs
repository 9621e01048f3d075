//! `testbed-cleanup`: removes the leftovers of dead testbed runs (netns, cgroups, processes,
//! `/etc/netns` dirs, run dirs). Runs of live processes are never touched.
//!
//! ```text
//! testbed-cleanup            remove leftovers, list what was removed
//! testbed-cleanup --check    the same, but exit 1 if there was anything (a test-suite end check)
//! testbed-cleanup --dry-run  only list them
//! ```
#![allow(clippy::print_stdout)] // a command-line tool's report

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dry_run = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "--dry-run" => dry_run = true,
            "-h" | "--help" => {
                println!("usage: testbed-cleanup [--check] [--dry-run]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("testbed-cleanup: unknown argument `{other}` (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    if dry_run {
        let found = testbed::scan_leftovers();
        for l in &found {
            println!("leftover {} ({})", l.path.display(), l.prefix);
        }
        println!("{} leftover(s) of dead testbed runs", found.len());
        return if check && !found.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match testbed::cleanup_leftovers() {
        Ok(report) => {
            for l in &report.removed {
                println!("removed {} ({})", l.path.display(), l.prefix);
            }
            if !report.killed.is_empty() {
                println!("killed pids {:?}", report.killed);
            }
            println!(
                "{} leftover(s) of {} dead testbed run(s) removed",
                report.removed.len(),
                report.prefixes.len()
            );
            if check && !report.removed.is_empty() {
                eprintln!(
                    "testbed-cleanup --check: a testbed run left things behind (removed now)"
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("testbed-cleanup: {e}");
            ExitCode::FAILURE
        }
    }
}

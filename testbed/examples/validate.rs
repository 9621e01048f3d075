//! Validates scenario files without building anything (no root needed):
//!
//! ```sh
//! cargo run -p testbed --example validate -- SCENARIO.yaml...
//! ```
#![allow(clippy::print_stdout)] // an example's job is to print

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut ok = true;
    for path in std::env::args().skip(1) {
        match testbed::Scenario::from_file(&path).and_then(|s| s.validate().map(|()| s)) {
            Ok(s) => println!(
                "{path}: ok ({} nodes, {} objects)",
                s.nodes.len(),
                s.objects.len()
            ),
            Err(e) => {
                println!("{path}: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

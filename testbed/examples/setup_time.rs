//! Builds the 10-pod, 2-node reference scenario, prints how long setup and teardown took, and
//! tears it down. Needs root:
//!
//! ```sh
//! cargo run -p testbed --example setup_time [-- SCENARIO.yaml] [--runs N]
//! ```
#![allow(clippy::print_stdout)] // an example's job is to print

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    testbed::install_signal_teardown()?;
    let mut path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ten-pods.yaml").to_string();
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().ok_or("--runs needs a number")?.parse()?;
        } else {
            path = a;
        }
    }
    let scenario = testbed::Scenario::from_file(&path)?;
    for run in 1..=runs.clamp(1, 20) {
        let tb = testbed::Testbed::start(&scenario)?;
        let setup = tb.setup_time();
        let pods = tb.pods().len();
        let nodes = tb.nodes().len();
        let t = Instant::now();
        tb.teardown()?;
        println!(
            "run {run}: {pods} pods on {nodes} nodes: setup {:.0} ms, teardown {:.0} ms",
            setup.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

//! `netreach crd`: prints the CRD YAML generated from the probe-spec types.

use std::io::Write;
use std::process::ExitCode;

/// Print the ProbeSpec and ProbeRequest CustomResourceDefinitions as YAML.
///
/// The committed copy lives in charts/netreach/crds/; regenerate it with
/// `cargo run -p netreach -- crd > charts/netreach/crds/netreach.dev_crds.yaml`.
#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Self {} = self;
        std::io::stdout()
            .lock()
            .write_all(probe_spec::crds_yaml().as_bytes())?;
        Ok(ExitCode::SUCCESS)
    }
}

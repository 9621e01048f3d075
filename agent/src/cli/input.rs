//! Shared input handling of the offline commands: loading object files with a progress line,
//! failing closed on input that does not parse, reporting invalid objects, and parsing ports.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};

use crate::cluster::Protocol;
use crate::cluster::load::{Loaded, load_paths};
use crate::policy::Profile;

/// Flags every offline command shares.
#[derive(Debug, clap::Args)]
pub struct Sources {
    /// YAML or JSON files or folders of Kubernetes objects (Namespaces, Pods, Nodes,
    /// NetworkPolicies): multi-document files, `kind: List`, `kubectl get -A -o yaml` output.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub options: LoadOptions,
}

/// How objects are loaded and their problems reported, whatever they are read from.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadOptions {
    /// Fail (exit 2) when any object is invalid, instead of loading the valid ones.
    #[arg(long)]
    pub strict: bool,
    /// Skip files and documents that do not parse (invalid YAML or JSON, not UTF-8, unreadable,
    /// nested too deep, YAML alias bombs) instead of failing with exit code 2. Each one is
    /// reported on stderr and the result is marked incomplete (a line in the text output,
    /// "incomplete": true in JSON): a NetworkPolicy in a skipped document is missing from it.
    #[arg(long)]
    pub keep_going: bool,
    /// How the CNI treats what the API leaves open: upstream (the e2e suite's behaviour),
    /// ipblock-external-only, no-endport.
    #[arg(long, default_value = "upstream", value_parser = Profile::from_str)]
    pub profile: Profile,
    /// Do not print the load summary and object problems on stderr (documents that do not
    /// parse are still reported).
    #[arg(short, long)]
    pub quiet: bool,
}

impl Sources {
    /// Loads the objects, printing a summary and every problem on stderr. Input that does not
    /// parse is an error unless `--keep-going`: what it held is unknown, so any answer could
    /// call a denied pair allowed.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let loaded = load_paths(&self.paths).context("reading Kubernetes objects")?;
        self.options.check(&loaded, "loaded")?;
        Ok(loaded)
    }
}

impl LoadOptions {
    /// Reports what a load found on stderr (`what` starts the summary line: `loaded`,
    /// `applied`) and refuses input that did not parse (unless `--keep-going`) or, with
    /// `--strict`, invalid objects.
    pub fn check(&self, loaded: &Loaded, what: &str) -> anyhow::Result<()> {
        let mut stderr = std::io::stderr().lock();
        // Always shown, even with --quiet: they are why the result is refused or incomplete.
        for error in &loaded.parse_errors {
            let level = if self.keep_going { "warning" } else { "error" };
            let _ = writeln!(stderr, "{level}: {error}");
        }
        if !self.quiet || self.strict {
            for problem in &loaded.problems {
                let level = if self.strict { "error" } else { "warning" };
                let _ = writeln!(stderr, "{level}: {problem}");
            }
        }
        if !self.quiet {
            let _ = writeln!(stderr, "{what} {}", loaded.summary);
        }
        if let (false, Some(first)) = (self.keep_going, loaded.parse_errors.first()) {
            bail!(
                "{} document(s) could not be parsed (first: {}); refusing to answer without them, \
                 as a NetworkPolicy in them would be missing (--keep-going skips them and marks \
                 the result incomplete)",
                loaded.parse_errors.len(),
                first.location()
            );
        }
        if self.strict && !loaded.problems.is_empty() {
            bail!(
                "{} invalid object(s) and --strict is set",
                loaded.problems.len()
            );
        }
        Ok(())
    }
}

/// The line that marks a result computed without the documents `--keep-going` skipped.
pub fn incomplete_line(skipped: usize) -> String {
    format!("incomplete: {skipped} document(s) could not be parsed; results may miss policies")
}

/// `80`, `80/TCP`, `53/udp`, or a named port (`http`, `http/TCP`) where names are allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg {
    pub port: PortValue,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortValue {
    Number(u16),
    Name(String),
}

impl FromStr for PortArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, protocol) = match s.split_once('/') {
            Some((p, proto)) => (p, proto.parse::<Protocol>()?),
            None => (s, Protocol::Tcp),
        };
        let port = match port.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => PortValue::Number(n as u16),
            Ok(n) => return Err(format!("port {n} is out of range 1-65535")),
            Err(_) if is_port_name(port) => PortValue::Name(port.to_string()),
            Err(_) => return Err(format!("{port:?} is neither a port number nor a port name")),
        };
        Ok(Self { port, protocol })
    }
}

fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn require_numeric(arg: &PortArg) -> anyhow::Result<(u16, Protocol)> {
    match &arg.port {
        PortValue::Number(n) => Ok((*n, arg.protocol)),
        PortValue::Name(name) => bail!(
            "--port {name}: a port name is only allowed with explain (it resolves on the destination pod)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_arg_table() {
        let cases: &[(&str, Option<PortArg>)] = &[
            (
                "80",
                Some(PortArg {
                    port: PortValue::Number(80),
                    protocol: Protocol::Tcp,
                }),
            ),
            (
                "53/udp",
                Some(PortArg {
                    port: PortValue::Number(53),
                    protocol: Protocol::Udp,
                }),
            ),
            (
                "8443/TCP",
                Some(PortArg {
                    port: PortValue::Number(8443),
                    protocol: Protocol::Tcp,
                }),
            ),
            (
                "http",
                Some(PortArg {
                    port: PortValue::Name("http".into()),
                    protocol: Protocol::Tcp,
                }),
            ),
            (
                "serve-80-sctp/SCTP",
                Some(PortArg {
                    port: PortValue::Name("serve-80-sctp".into()),
                    protocol: Protocol::Sctp,
                }),
            ),
            ("0", None),
            ("70000", None),
            ("80/ICMP", None),
            ("Bad_Name", None),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<PortArg>().ok(), *want, "{input}");
        }
    }
}

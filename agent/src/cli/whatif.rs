//! `netreach whatif`: which pod pairs a policy change would flip, before it is merged.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::input::{LoadOptions, PortArg, incomplete_line, require_numeric};
use super::progress::Progress;
use super::{EXIT_DENIED, Format};
use crate::cluster::load::{Loaded, load_paths};
use crate::policy::whatif::{Comparison, Flip, compare, flip_keys};
use crate::policy::{Endpoint, Engine, Flow, MatrixPort, Verdict, explain};
use change::{DeleteRef, after_change};
use specs::{SpecPairs, spec_pair_changes};

mod change;
mod live;
mod specs;

/// Show which pod pairs a change would flip between allowed and denied, before you make it.
///
/// The objects of today come from dumps (-f) or a live cluster (--kubeconfig, read-only). The
/// change is objects applied (--apply: created, or replacing the object of the same kind,
/// namespace and name, as `kubectl apply` would; a pod manifest keeps the running pod's IP)
/// and objects deleted (--delete KIND/NS/NAME, or KIND/NAME for cluster-scoped kinds; a
/// namespace takes its pods, policies and Services with it). Every ordered pod pair (not a pod
/// to itself) is compared on --port, or each destination on its own container ports, and the
/// pairs whose verdict flips are listed with the explanation of the new verdict. ProbeSpecs in
/// the input (or the cluster) get their planned pairs predicted before and after too.
///
/// Example: netreach whatif -f cluster.yaml --apply new-policy.yaml --exit-code
///
/// Example: netreach whatif --kubeconfig ~/.kube/config --delete networkpolicy/shop/allow-web
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["paths", "kubeconfig"])))]
pub struct Args {
    /// YAML or JSON files or folders of today's objects (`kubectl get
    /// namespaces,pods,networkpolicies -A -o yaml`; Services, EndpointSlices, cluster-scoped
    /// policies and ProbeSpecs too).
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1..)]
    paths: Vec<PathBuf>,
    /// Read today's objects from the cluster of this kubeconfig instead (list requests only).
    #[arg(long, value_name = "PATH", conflicts_with = "paths")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    context: Option<String>,
    /// Files or folders of objects to apply: each creates its object or replaces the one of the
    /// same kind, namespace and name.
    #[arg(long = "apply", value_name = "FILE", num_args = 1..)]
    apply: Vec<PathBuf>,
    /// An object to delete: `networkpolicy/NS/NAME`, `pod/NS/NAME`, `service/NS/NAME`,
    /// `namespace/NAME`, `clusternetworkpolicy/NAME`, `adminnetworkpolicy/NAME`, ... (kubectl's
    /// kind names, plurals and short names); repeatable.
    #[arg(long = "delete", value_name = "KIND/[NS/]NAME", num_args = 1..)]
    delete: Vec<DeleteRef>,
    /// A port to compare every pair on (`80`, `80/TCP`, `53/UDP`); repeatable. Default: each
    /// destination on its own container ports.
    #[arg(long = "port", value_name = "PORT[/PROTO]")]
    ports: Vec<PortArg>,
    /// Output format: text (each flip with the explanation of its new verdict) or json.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit with status 1 when any allowed pair (or ProbeSpec pair) would become denied: a CI
    /// gate for policy pull requests.
    #[arg(long)]
    exit_code: bool,
    /// Text output: explain at most this many flips in full (the rest get one line each).
    #[arg(long, value_name = "N", default_value_t = 20)]
    max_explanations: usize,
    #[command(flatten)]
    options: LoadOptions,
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if self.format == Format::Table {
            bail!("--format table is for matrix; whatif prints text or json");
        }
        if self.apply.is_empty() && self.delete.is_empty() {
            bail!("nothing to change: give --apply FILE or --delete KIND/NS/NAME");
        }
        let ports: Vec<MatrixPort> = self
            .ports
            .iter()
            .map(|p| require_numeric(p).map(|(port, protocol)| MatrixPort { port, protocol }))
            .collect::<anyhow::Result<_>>()?;
        let before = self.load_today()?;
        self.options.check(&before, "loaded")?;
        let applied = load_paths(&self.apply).context("reading the objects to apply")?;
        if !self.apply.is_empty() {
            // What is applied must parse: a policy lost to a typo would read as "nothing flips".
            LoadOptions {
                keep_going: false,
                ..self.options.clone()
            }
            .check(&applied, "applying")?;
        }
        let (after, applied_summary) = after_change(&before.index, &applied, &self.delete)?;
        if !self.options.quiet {
            eprintln!(
                "change: {} created, {} replaced, {} deleted",
                applied_summary.created, applied_summary.replaced, applied_summary.deleted
            );
        }

        let profile = self.options.profile.clone();
        let (engine_before, engine_after) = (
            Engine::new(&before.index, profile.clone()),
            Engine::new(&after, profile),
        );
        let mut bar: Option<Progress> = None;
        let comparison = compare(&engine_before, &engine_after, &ports, |p| {
            bar.get_or_insert_with(|| Progress::new(p.total, "comparing", self.options.quiet))
                .set(p.done);
        });
        if let Some(bar) = bar {
            bar.finish();
        }
        let spec_pairs = spec_pair_changes(
            &before.custom_objects,
            &before.index,
            &after,
            (&engine_before, &engine_after),
        );
        for problem in &spec_pairs.problems {
            eprintln!("warning: {problem}");
        }

        let report = Report {
            before: &engine_before,
            after: &engine_after,
            comparison: &comparison,
            spec_pairs: &spec_pairs,
            incomplete: !before.parse_errors.is_empty(),
        };
        let mut out = BufWriter::new(std::io::stdout().lock());
        match self.format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &report.json())?;
                writeln!(out)?;
            }
            _ => {
                if report.incomplete {
                    writeln!(out, "{}", incomplete_line(before.parse_errors.len()))?;
                }
                report.write_text(&mut out, self.max_explanations)?;
            }
        }
        out.flush()?;
        if !self.options.quiet {
            eprintln!("{}", report.summary());
        }
        let newly_denied = comparison.newly_denied()
            + spec_pairs
                .changes
                .iter()
                .filter(|c| c.newly_denied())
                .count();
        Ok(if self.exit_code && newly_denied > 0 {
            ExitCode::from(EXIT_DENIED)
        } else {
            ExitCode::SUCCESS
        })
    }

    /// Today's objects, from the dumps or the cluster.
    fn load_today(&self) -> anyhow::Result<Loaded> {
        let Some(kubeconfig) = &self.kubeconfig else {
            return load_paths(&self.paths).context("reading Kubernetes objects");
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(async {
            let client = super::kube_client::client(Some(kubeconfig), self.context.clone()).await?;
            live::load(&client).await
        })
    }
}

/// Everything whatif found, for either output.
struct Report<'a> {
    before: &'a Engine,
    after: &'a Engine,
    comparison: &'a Comparison,
    spec_pairs: &'a SpecPairs,
    incomplete: bool,
}

impl Report<'_> {
    /// The flow of a flip and its new verdict (the old one, when needed, is
    /// `self.before.evaluate_cell(&flip.before)`).
    fn verdict(&self, flip: &Flip) -> (Flow, Verdict) {
        let (from, to) = flip_keys(self.after, flip);
        let flow = Flow {
            from: Endpoint::Pod(from),
            to: Endpoint::Pod(to),
            port: flip.after.port.port,
            protocol: flip.after.port.protocol,
        };
        (flow, self.after.evaluate_cell(&flip.after))
    }

    fn json(&self) -> Value {
        let changes: Vec<Value> = self
            .comparison
            .flips
            .iter()
            .map(|flip| {
                let (flow, is) = self.verdict(flip);
                let mut change = json!({
                    "from": flow.from.to_string(),
                    "to": flow.to.to_string(),
                    "port": flow.port,
                    "protocol": flow.protocol,
                    "before": flip.before.allowed,
                    "after": is.allowed,
                    "reason": is.reason,
                    "direction": is.direction,
                    "policies": policies_of(&is),
                    "summary": explain::summary(&flow, &is),
                });
                if !flip.before.allowed {
                    let was = self.before.evaluate_cell(&flip.before);
                    change["previous"] = json!({
                        "reason": was.reason,
                        "direction": was.direction,
                        "policies": policies_of(&was),
                    });
                }
                change
            })
            .collect();
        json!({
            "incomplete": self.incomplete,
            "profile": self.after.profile().name,
            "compared": self.comparison.compared,
            "ports": self.comparison.ports,
            "only_before": self.comparison.only_before,
            "only_after": self.comparison.only_after,
            "newly_denied": self.comparison.newly_denied(),
            "newly_allowed": self.comparison.newly_allowed(),
            "changes": changes,
            "probespecs": {
                "specs": self.spec_pairs.specs,
                "pairs": self.spec_pairs.pairs,
                "not_predicted": self.spec_pairs.not_predicted,
                "changes": self.spec_pairs.changes,
            },
        })
    }

    fn write_text(&self, out: &mut impl Write, max_explanations: usize) -> anyhow::Result<()> {
        let comparison = self.comparison;
        if comparison.flips.is_empty() {
            writeln!(out, "No pair flips. {}", self.compared())?;
        } else {
            writeln!(
                out,
                "{}: {} allowed -> denied, {} denied -> allowed. {}",
                count(comparison.flips.len(), "pair flips", "pairs flip"),
                comparison.newly_denied(),
                comparison.newly_allowed(),
                self.compared()
            )?;
        }
        // What a reviewer must see first: the paths the change closes.
        let ordered = comparison
            .flips
            .iter()
            .filter(|f| f.newly_denied())
            .chain(comparison.flips.iter().filter(|f| !f.newly_denied()));
        for (i, flip) in ordered.enumerate() {
            let (flow, is) = self.verdict(flip);
            let change = if is.allowed {
                "DENIED -> ALLOWED"
            } else {
                "ALLOWED -> DENIED"
            };
            writeln!(out)?;
            if i < max_explanations {
                let explanation = explain::render(&flow, &is);
                let mut lines = explanation.lines();
                writeln!(out, "{change}  {}", lines.next().unwrap_or_default())?;
                for line in lines {
                    writeln!(out, "  {line}")?;
                }
            } else {
                writeln!(out, "{change}  {}", explain::summary(&flow, &is))?;
            }
        }
        let specs = self.spec_pairs;
        if specs.specs > 0 {
            writeln!(out)?;
            let mut line = format!(
                "ProbeSpec pairs: {} of {} planned would change ({})",
                specs.changes.len(),
                specs.pairs,
                count(specs.specs, "spec", "specs")
            );
            if specs.not_predicted > 0 {
                line.push_str(&format!(
                    "; {} no prediction (DNS, host names)",
                    count(specs.not_predicted, "pair has", "pairs have")
                ));
            }
            writeln!(out, "{line}")?;
            for change in &specs.changes {
                writeln!(
                    out,
                    "  {}  {} -> {}  {} -> {}{}",
                    change.spec,
                    change.from,
                    change.to,
                    change.before.as_str(),
                    change.after.as_str(),
                    if change.policies.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", change.policies.join(", "))
                    }
                )?;
            }
        }
        Ok(())
    }

    /// `N pairs compared on M ports`, with the pairs only one side has.
    fn compared(&self) -> String {
        let c = self.comparison;
        let mut text = format!(
            "{} pairs compared on {}",
            c.compared,
            count(c.ports, "port", "ports")
        );
        if c.only_before + c.only_after > 0 {
            text.push_str(&format!(
                " ({} only before the change, {} only after: pods or ports it removes or adds)",
                c.only_before, c.only_after
            ));
        }
        text.push('.');
        text
    }

    /// The one-line summary on stderr.
    fn summary(&self) -> String {
        let c = self.comparison;
        let mut line = format!(
            "whatif: {} pairs compared, {} allowed -> denied, {} denied -> allowed",
            c.compared,
            c.newly_denied(),
            c.newly_allowed()
        );
        if self.spec_pairs.specs > 0 {
            line.push_str(&format!(
                "; {} of {} ProbeSpec pairs change",
                self.spec_pairs.changes.len(),
                self.spec_pairs.pairs
            ));
        }
        line
    }
}

/// `1 spec`, `2 specs`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The policies behind a verdict: those that deny it, or those that allow it.
fn policies_of(verdict: &Verdict) -> Vec<String> {
    let refs = if verdict.allowed {
        verdict.allowing_policies()
    } else {
        verdict.denying_policies()
    };
    refs.iter().map(ToString::to_string).collect()
}

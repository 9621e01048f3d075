//! `netreach matrix`: every ordered pod pair on the given ports.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use super::Format;
use super::input::{PortArg, Sources, incomplete_line, require_numeric};
use super::progress::Progress;
use crate::policy::{Engine, MatrixCell, MatrixPort};
use json::JsonMatrixWriter;

mod json;

/// Print the allowed/denied verdict of every ordered pod pair (self included).
///
/// Without --port, each destination is checked on each of its own container ports.
/// Example: netreach matrix -f cluster.yaml --port 80/TCP --format table
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sources: Sources,
    /// A port to check every pair on (`80`, `80/TCP`, `53/UDP`); repeatable.
    #[arg(long = "port", value_name = "PORT[/PROTO]")]
    ports: Vec<PortArg>,
    /// Output format: table (a grid per port) or json (the contract's fields); text = table.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Self {
            sources,
            ports,
            format,
        } = self;
        let ports: Vec<MatrixPort> = ports
            .iter()
            .map(|p| require_numeric(p).map(|(port, protocol)| MatrixPort { port, protocol }))
            .collect::<anyhow::Result<_>>()?;
        let loaded = sources.load()?;
        let skipped = loaded.parse_errors.len();
        let engine = Engine::new(&loaded.index, sources.options.profile.clone());
        let stdout = std::io::stdout().lock();
        let mut rows = Rows::new(&engine, &ports, sources.options.quiet);
        let counts = match format {
            Format::Json => write_json(stdout, &engine, &ports, skipped > 0, &mut rows)?,
            Format::Table | Format::Text => {
                let mut cells = Vec::new();
                engine.for_each_cell(&ports, |cell| {
                    rows.see(&cell);
                    cells.push(cell);
                });
                rows.finish();
                let mut out = BufWriter::new(stdout);
                if skipped > 0 {
                    writeln!(out, "{}", incomplete_line(skipped))?;
                }
                write_tables(&mut out, &engine, &cells)?;
                out.flush()?;
                PairCounts {
                    pairs: cells.len(),
                    denied: cells.iter().filter(|c| !c.allowed).count(),
                }
            }
        };
        if !sources.options.quiet {
            eprintln!(
                "{} pairs, {} allowed, {} denied",
                counts.pairs,
                counts.pairs - counts.denied,
                counts.denied
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Progress through the matrix: a row is one source's cells on one port.
struct Rows {
    bar: Progress,
    done: usize,
    last: Option<(MatrixPort, usize)>,
}

impl Rows {
    fn new(engine: &Engine, ports: &[MatrixPort], quiet: bool) -> Self {
        let ports = if ports.is_empty() {
            engine.container_ports().len()
        } else {
            ports.len()
        };
        Self {
            bar: Progress::new(ports * engine.endpoint_ids().len(), "matrix", quiet),
            done: 0,
            last: None,
        }
    }

    fn see(&mut self, cell: &MatrixCell) {
        let row = (cell.port, cell.from);
        if self.last != Some(row) {
            self.last = Some(row);
            self.done += 1;
            self.bar.set(self.done);
        }
    }

    fn finish(&mut self) {
        std::mem::replace(&mut self.bar, Progress::hidden()).finish();
    }
}

/// For the summary line on stderr.
struct PairCounts {
    pairs: usize,
    denied: usize,
}

/// Streams the JSON contract: the cells go out as the engine produces them, never collected
/// (1,000 pods on 4 ports are 4,000,000 of them).
fn write_json(
    out: impl Write,
    engine: &Engine,
    ports: &[MatrixPort],
    incomplete: bool,
    rows: &mut Rows,
) -> anyhow::Result<PairCounts> {
    let mut counts = PairCounts {
        pairs: 0,
        denied: 0,
    };
    let mut writer = JsonMatrixWriter::begin(engine, out, incomplete);
    engine.try_for_each_cell(ports, |cell| {
        rows.see(&cell);
        counts.pairs += 1;
        counts.denied += usize::from(!cell.allowed);
        writer.row(&cell)
    })?;
    writer.finish()?.flush()?;
    rows.finish();
    Ok(counts)
}

fn write_tables(out: &mut impl Write, engine: &Engine, cells: &[MatrixCell]) -> anyhow::Result<()> {
    let pods = engine.pods();
    let mut start = 0;
    while start < cells.len() {
        let port = cells[start].port;
        let end = start + cells[start..].iter().take_while(|c| c.port == port).count();
        let group = &cells[start..end];
        start = end;

        let mut sources: Vec<usize> = group.iter().map(|c| c.from).collect();
        sources.dedup();
        let mut destinations: Vec<usize> = group.iter().map(|c| c.to).collect();
        destinations.sort_unstable();
        destinations.dedup();
        let allowed = group
            .iter()
            .filter(|c| c.allowed && !c.self_traffic)
            .count();
        let denied = group.iter().filter(|c| !c.allowed).count();
        writeln!(
            out,
            "{}/{}: {allowed} allowed, {denied} denied, {} self   (A allowed, . denied, S self)",
            port.port,
            port.protocol,
            group.len() - allowed - denied
        )?;

        let width = sources
            .iter()
            .chain(&destinations)
            .map(|&i| pods[i].key().to_string().len())
            .max()
            .unwrap_or(0);
        let index_width = destinations.len().to_string().len().max(2);
        write!(out, "{:>w$}  ", "from \\ to", w = width + 5)?;
        for (j, _) in destinations.iter().enumerate() {
            write!(out, "{:>iw$}", j, iw = index_width + 1)?;
        }
        writeln!(out)?;
        for (row, chunk) in sources.iter().zip(group.chunks(destinations.len())) {
            let marker = destinations
                .iter()
                .position(|&d| d == *row)
                .map_or("   ".to_string(), |j| format!("{j:>3}"));
            write!(
                out,
                "{marker} {:<w$}  ",
                pods[*row].key().to_string(),
                w = width + 1
            )?;
            for cell in chunk {
                let symbol = if cell.self_traffic {
                    "S"
                } else if cell.allowed {
                    "A"
                } else {
                    "."
                };
                write!(out, "{:>iw$}", symbol, iw = index_width + 1)?;
            }
            writeln!(out)?;
        }
        if sources.len() != destinations.len()
            || sources.iter().zip(&destinations).any(|(a, b)| a != b)
        {
            writeln!(out, "  columns:")?;
            for (j, d) in destinations.iter().enumerate() {
                writeln!(out, "  {j:>3} {}", pods[*d].key())?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

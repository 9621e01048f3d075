//! What the demo prints: the pairs (a table or JSON), the Events and ProbeSpec statuses the
//! writers put into the in-memory API, and in live mode a new picture whenever a round
//! completes or a verdict changes.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use super::super::Format;
use crate::pair::PairReport;
use crate::report::memory_api::MemoryApi;

/// Events shown under a live table (the newest).
const LIVE_EVENTS: usize = 10;

/// What was printed last, so live mode prints only news.
pub(super) struct Printed {
    format: Format,
    /// Clear the terminal before each table.
    refresh: bool,
    rounds: u64,
    /// Each pair's verdict and reason as last printed.
    picture: Option<Vec<(String, String)>>,
    /// Events printed so far (the in-memory API's sequence).
    events_seen: u64,
    recent_events: Vec<Value>,
}

impl Printed {
    pub(super) fn new(format: Format, refresh: bool) -> Self {
        Self {
            format,
            refresh,
            rounds: 0,
            picture: None,
            events_seen: 0,
            recent_events: Vec::new(),
        }
    }

    /// Prints everything once: the pairs, problems, Events and statuses.
    pub(super) fn print(
        &mut self,
        pairs: &[PairReport],
        problems: &[String],
        events: &[Value],
        api: &MemoryApi,
    ) -> anyhow::Result<()> {
        let statuses = statuses(api);
        let mut out = std::io::stdout().lock();
        if self.format == Format::Json {
            let events: Vec<Value> = events.iter().map(event_json).collect();
            serde_json::to_writer_pretty(
                &mut out,
                &json!({ "pairs": pairs, "problems": problems, "events": events, "statuses": statuses }),
            )?;
            writeln!(out)?;
            return Ok(());
        }
        if self.refresh {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write_table(&mut out, pairs, problems)?;
        let lines: Vec<String> = events.iter().map(event_line).collect();
        let shown = &lines[lines.len().saturating_sub(LIVE_EVENTS)..];
        if !shown.is_empty() {
            writeln!(out, "\nevents ({} written, newest last):", lines.len())?;
            for line in shown {
                writeln!(out, "  {line}")?;
            }
        }
        if !statuses.is_empty() {
            writeln!(out, "\nstatus:")?;
            for status in &statuses {
                writeln!(out, "  {}", status_line(status))?;
            }
        }
        Ok(())
    }

    /// Live mode, every tick: prints when a round completed or a verdict changed (with the
    /// newest Events), once the first round is in.
    pub(super) fn live(
        &mut self,
        rounds: Option<u64>,
        pairs: &[PairReport],
        problems: &[String],
        api: &MemoryApi,
    ) -> anyhow::Result<()> {
        let (events, seq) = api.events_after(self.events_seen);
        self.events_seen = seq;
        self.recent_events.extend(events);
        let keep = self.recent_events.len().saturating_sub(LIVE_EVENTS);
        self.recent_events.drain(..keep);
        let Some(rounds) = rounds.filter(|&n| n >= 1) else {
            return Ok(());
        };
        let picture: Vec<(String, String)> = pairs
            .iter()
            .map(|r| {
                (
                    format!(
                        "{} {} {:?} {}",
                        r.from,
                        r.target,
                        r.spec,
                        r.host.as_deref().unwrap_or("")
                    ),
                    format!("{} {}", r.verdict, r.reason_code()),
                )
            })
            .collect();
        if rounds <= self.rounds && self.picture.as_ref() == Some(&picture) {
            return Ok(());
        }
        self.rounds = rounds.max(self.rounds);
        self.picture = Some(picture);
        let recent = std::mem::take(&mut self.recent_events);
        let printed = self.print(pairs, problems, &recent, api);
        self.recent_events = recent;
        printed
    }
}

/// "applied Pod shop/api, NetworkPolicy shop/deny; deleted ProbeSpec shop/x".
pub(super) fn edit_summary(applied: &[String], deleted: &[String]) -> String {
    let mut parts = Vec::new();
    if !applied.is_empty() {
        parts.push(format!("applied {}", applied.join(", ")));
    }
    if !deleted.is_empty() {
        parts.push(format!("deleted {}", deleted.join(", ")));
    }
    parts.join("; ")
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn event_json(event: &Value) -> Value {
    json!({
        "pod": format!("{}/{}", text(event, "/regarding/namespace"), text(event, "/regarding/name")),
        "type": text(event, "/type"),
        "reason": text(event, "/reason"),
        "note": text(event, "/note"),
        "count": event.pointer("/series/count").and_then(Value::as_i64).unwrap_or(1),
        "reportingInstance": text(event, "/reportingInstance"),
    })
}

fn event_line(event: &Value) -> String {
    format!(
        "{} {} pod {}/{}: {}",
        text(event, "/type"),
        text(event, "/reason"),
        text(event, "/regarding/namespace"),
        text(event, "/regarding/name"),
        text(event, "/note"),
    )
}

/// Each spec's status as the writers left it: kind, name, status.
fn statuses(api: &MemoryApi) -> Vec<Value> {
    ["probespecs", "clusterprobespecs"]
        .iter()
        .flat_map(|resource| api.list(resource))
        .map(|object| {
            let name = match object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
            {
                Some(ns) => format!("{ns}/{}", text(&object, "/metadata/name")),
                None => text(&object, "/metadata/name").to_string(),
            };
            json!({
                "kind": text(&object, "/kind"),
                "name": name,
                "status": object.get("status").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn status_line(status: &Value) -> String {
    let counts: Vec<String> = status
        .pointer("/status/counts")
        .and_then(Value::as_object)
        .map(|counts| {
            counts
                .iter()
                .filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0))
                .map(|(verdict, n)| format!("{verdict}={n}"))
                .collect()
        })
        .unwrap_or_default();
    let conditions: Vec<String> = status
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|conditions| {
            conditions
                .iter()
                .map(|c| format!("{}={}", text(c, "/type"), text(c, "/status")))
                .collect()
        })
        .unwrap_or_default();
    let counts = if counts.is_empty() {
        "not written yet".to_string()
    } else {
        counts.join(" ")
    };
    format!(
        "{} {}: {}{}",
        text(status, "/kind"),
        text(status, "/name"),
        counts,
        if conditions.is_empty() {
            String::new()
        } else {
            format!("  ({})", conditions.join(", "))
        }
    )
}

fn write_table(
    out: &mut impl Write,
    reports: &[PairReport],
    problems: &[String],
) -> anyhow::Result<()> {
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            let mut to = r.target.to_string();
            // A host target's address: which name it came from (not when it did not resolve:
            // the target is the name then).
            if let Some(host) = r.host.as_ref().filter(|_| r.target.name().is_none()) {
                to.push_str(&format!(" (host {host})"));
            }
            [
                format!("{} -> {to}", r.from),
                r.verdict.as_str().to_string(),
                r.reason.map_or("-", |reason| reason.as_str()).to_string(),
                if r.policies.is_empty() {
                    "-".into()
                } else {
                    let names: Vec<String> = r.policies.iter().map(ToString::to_string).collect();
                    names.join(",")
                },
                r.outcome.as_str().to_string(),
                format!("{:.2} ms", r.latency_seconds * 1000.0),
                match r.meets_expectation {
                    Some(false) => "NO".into(),
                    Some(true) => "yes".into(),
                    // not_probed / inconclusive decide nothing.
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let header = [
        "PAIR",
        "VERDICT",
        "REASON",
        "POLICY",
        "OUTCOME",
        "LATENCY",
        "MEETS EXPECT",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        *counts.entry(r.verdict.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
    writeln!(out, "\n{} pairs: {}", reports.len(), summary.join(", "))?;
    for r in reports
        .iter()
        .filter(|r| r.meets_expectation == Some(false))
    {
        writeln!(out, "  {}", r.summary)?;
    }
    for problem in problems {
        writeln!(out, "problem: {problem}")?;
    }
    Ok(())
}

//! The JSON contract of `netreach matrix`, written as the engine streams the cells out.
//!
//! 1,000 pods on 4 ports are 4,000,000 rows (~800 MB), so the per-row cost is the whole cost:
//! each pod's key and isolating policies are escaped once up front, a row is a few byte copies
//! into one large buffer, and a denied row takes its codes from [`Engine::cell_denial`] instead
//! of a full explanation. The bytes are those serde_json writes for the contract's row struct
//! (the tests compare the two).

use std::io::{self, Write};

use crate::policy::{Direction, Engine, MatrixCell, MatrixPort};

/// Bytes gathered before one write to the output: few syscalls, bounded memory.
const FLUSH_AT: usize = 1 << 20;

/// Writes `{"incomplete":…,"pairs":[…]}` one row at a time.
pub(super) struct JsonMatrixWriter<'e, W: Write> {
    engine: &'e Engine,
    out: W,
    buffer: Vec<u8>,
    /// By pod id: the pieces of its rows that never change, JSON-escaped once.
    pods: Vec<PodFields>,
    /// The port of the previous row and its `,"port":…,"protocol":"…"` fields.
    port_fields: Option<(MatrixPort, String)>,
    /// By tiered policy id: its `"Kind/name"`, JSON-escaped once.
    tier_keys: Vec<String>,
    rows: usize,
}

struct PodFields {
    /// `{"from":"ns/name","to":` for the rows from this pod.
    row_start: String,
    /// `"ns/name"`, for the rows to this pod.
    key: String,
    /// The policies that isolate the pod, as JSON strings joined by commas: what `policies`
    /// lists when its egress (as the source) or its ingress (as the destination) denies.
    egress_policies: String,
    ingress_policies: String,
}

impl<'e, W: Write> JsonMatrixWriter<'e, W> {
    /// Starts the document; `incomplete` marks a result computed without skipped documents.
    pub(super) fn begin(engine: &'e Engine, out: W, incomplete: bool) -> Self {
        let mut buffer = Vec::with_capacity(FLUSH_AT + 4096);
        buffer.extend_from_slice(b"{\"incomplete\":");
        buffer.extend_from_slice(json_bool(incomplete));
        buffer.extend_from_slice(b",\"pairs\":[");
        let pods = (0..engine.pods().len())
            .map(|id| {
                let key = json_string(&engine.pods()[id].key());
                let (ingress, egress) = engine.policies_selecting(id);
                PodFields {
                    row_start: format!("{{\"from\":{key},\"to\":"),
                    key,
                    egress_policies: json_strings(&egress),
                    ingress_policies: json_strings(&ingress),
                }
            })
            .collect();
        let tier_keys = (0..engine.tiered_count())
            .map(|id| json_string(&engine.tiered_key(id)))
            .collect();
        Self {
            engine,
            out,
            buffer,
            pods,
            port_fields: None,
            tier_keys,
            rows: 0,
        }
    }

    /// Appends one pair; rows go out in the order given.
    pub(super) fn row(&mut self, cell: &MatrixCell) -> io::Result<()> {
        let port_fields = match &self.port_fields {
            Some((port, fields)) if *port == cell.port => fields,
            _ => {
                let fields = format!(
                    ",\"port\":{},\"protocol\":\"{}\"",
                    cell.port.port,
                    cell.port.protocol.as_str()
                );
                &self.port_fields.insert((cell.port, fields)).1
            }
        };
        let (from, to) = (&self.pods[cell.from], &self.pods[cell.to]);
        let b = &mut self.buffer;
        if self.rows > 0 {
            b.push(b',');
        }
        b.push(b'\n');
        b.extend_from_slice(from.row_start.as_bytes());
        b.extend_from_slice(to.key.as_bytes());
        b.extend_from_slice(port_fields.as_bytes());
        b.extend_from_slice(verdict_fields(cell));
        // Only pairs the rules deny carry why (self pairs included: `allowed` is still true).
        let denial = if cell.rules_allowed {
            None
        } else {
            self.engine.cell_denial(cell)
        };
        if let Some(denial) = denial {
            b.extend_from_slice(b",\"reason\":\"");
            b.extend_from_slice(denial.reason.as_str().as_bytes());
            b.extend_from_slice(b"\",\"direction\":\"");
            b.extend_from_slice(denial.direction.as_str().as_bytes());
            b.extend_from_slice(b"\",\"policies\":[");
            // Egress first, as `Verdict::policies` lists them; a denying side isolates, so
            // its list is not empty.
            let egress = denial.denies(Direction::Egress);
            if egress {
                match denial.tiered_policy(Direction::Egress) {
                    Some(id) => b.extend_from_slice(self.tier_keys[id].as_bytes()),
                    None => b.extend_from_slice(from.egress_policies.as_bytes()),
                }
            }
            if denial.denies(Direction::Ingress) {
                if egress {
                    b.push(b',');
                }
                match denial.tiered_policy(Direction::Ingress) {
                    Some(id) => b.extend_from_slice(self.tier_keys[id].as_bytes()),
                    None => b.extend_from_slice(to.ingress_policies.as_bytes()),
                }
            }
            b.push(b']');
        }
        b.push(b'}');
        self.rows += 1;
        if self.buffer.len() >= FLUSH_AT {
            self.out.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Closes the document and hands the output back (unflushed).
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.buffer.extend_from_slice(b"\n]}\n");
        self.out.write_all(&self.buffer)?;
        Ok(self.out)
    }
}

/// `,"allowed":…,"self":…,"rules_allowed":…` in one copy.
fn verdict_fields(cell: &MatrixCell) -> &'static [u8] {
    match (cell.allowed, cell.self_traffic, cell.rules_allowed) {
        (true, false, true) => b",\"allowed\":true,\"self\":false,\"rules_allowed\":true",
        (false, false, false) => b",\"allowed\":false,\"self\":false,\"rules_allowed\":false",
        (true, true, true) => b",\"allowed\":true,\"self\":true,\"rules_allowed\":true",
        (true, true, false) => b",\"allowed\":true,\"self\":true,\"rules_allowed\":false",
        // Not produced by the engine (allowed = rules_allowed || self), written all the same.
        (true, false, false) => b",\"allowed\":true,\"self\":false,\"rules_allowed\":false",
        (false, false, true) => b",\"allowed\":false,\"self\":false,\"rules_allowed\":true",
        (false, true, true) => b",\"allowed\":false,\"self\":true,\"rules_allowed\":true",
        (false, true, false) => b",\"allowed\":false,\"self\":true,\"rules_allowed\":false",
    }
}

fn json_bool(value: bool) -> &'static [u8] {
    if value { b"true" } else { b"false" }
}

/// A value's text as a JSON string, escaped as serde_json escapes it.
fn json_string(value: &impl std::fmt::Display) -> String {
    serde_json::to_string(&value.to_string()).unwrap_or_default()
}

/// JSON strings joined by commas, the inside of an array.
fn json_strings(values: &[impl std::fmt::Display]) -> String {
    values.iter().map(json_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests;

//! Reading Kubernetes objects from files and folders: the snapshot source of the offline CLI
//! (`matrix`, `explain`), the demo and the benchmarks.
//!
//! Data flow: paths -> files (folders walked recursively in sorted order, `*.yaml`, `*.yml`,
//! `*.json`, hidden entries skipped) -> documents (YAML split on `---`, or a JSON value stream)
//! -> `serde_json::Value` -> dispatch on `apiVersion`/`kind` (`List` and `*List` unwrapped,
//! recursively) -> the `k8s_openapi` type via `serde_path_to_error`, so a type error names its
//! field -> [`super::convert`] -> [`Index`] through [`Apply`].
//!
//! Two kinds of trouble are kept apart, because they call for opposite handling:
//! - a file or document that does not parse (unreadable, not UTF-8, invalid YAML or JSON, nested
//!   too deep, a YAML alias bomb) becomes a [`ParseError`]. What it held is unknown, so a
//!   NetworkPolicy in it would silently vanish and its pairs read "allowed": the offline
//!   commands refuse to answer unless told to keep going (fail closed).
//! - an object that parsed but is invalid becomes an [`ObjectProblem`] naming the file,
//!   document, object and field. Invalid NetworkPolicies whose podSelector is valid load in
//!   their fail-closed degraded form, and the others mark their namespace as unreliable.
//!
//! Neither stops the load: every other document still loads. Only a missing path or a folder
//! that cannot be listed is a [`LoadError`]. When two documents define the same object, the
//! last one wins.
//!
//! Hostile input is bounded: JSON and YAML nesting stops at the parsers' recursion limit (128),
//! Lists are followed 16 deep, and a YAML document may expand through aliases to at most one
//! value per byte plus [`ALIAS_EXPANSION_SLACK`]; each is a [`ParseError`], never a hang or a
//! stack overflow.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::networking::v1 as netv1;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::cni_policy::{CniPolicy, CniPolicyKind};
use super::convert::{ConvertError, DEFAULT_NAMESPACE, MESH_ANNOTATIONS};
use super::index::{Apply, Index};
use super::model::{Namespace, NetworkPolicy, Node, Pod};
use super::service::{EndpointSlice, Service};
use super::tiered::{TieredKind, TieredPolicy};

pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// `apiVersion` prefix of netreach's own resources (ProbeSpec, ...), kept raw for later.
pub const CUSTOM_API_GROUP: &str = "netreach.dev/";
/// The path that means standard input.
pub const STDIN_PATH: &str = "-";
/// `List`s nested deeper than this are not followed: a [`ParseError`], as their items are unknown.
const MAX_LIST_DEPTH: usize = 16;
/// Folders nested deeper than this are not walked.
const MAX_DIR_DEPTH: usize = 64;
/// Values a YAML document may hold beyond one per byte of its text. Without aliases every
/// value takes text of its own, so only alias expansion (a "billion laughs" bomb, or the
/// quadratic one serde_yaml_ng's repetition limit lets through) can reach the bound; it keeps
/// memory linear in the input.
pub const ALIAS_EXPANSION_SLACK: usize = 100_000;

// === Errors and results ===

/// A path that cannot be read at all: missing, or a folder that cannot be listed. A file that
/// cannot be read is a [`ParseError`], everything else an [`ObjectProblem`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LoadError {
    fn from_io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            LoadError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            LoadError::Unreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            LoadError::NotFound { path } | LoadError::Unreadable { path, .. } => path,
        }
    }

    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            LoadError::NotFound { .. } => "not_found",
            LoadError::Unreadable { .. } => "unreadable",
        }
    }
}

/// A file or document that did not parse: the objects in it, if any, are unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.location())]
pub struct ParseError {
    /// The file as given (`<stdin>` for standard input).
    pub file: String,
    /// 1-based index of the document in the file (a YAML document or a JSON value), counted
    /// even when the file has only one; `None` when the whole file failed (unreadable).
    pub document: Option<usize>,
    /// 1-based line in the file: where the parser stopped, else where the document starts.
    pub line: Option<usize>,
    pub kind: ParseErrorKind,
    pub message: String,
}

impl ParseError {
    /// `cluster.yaml (document 2, line 9)`.
    pub fn location(&self) -> String {
        match (self.document, self.line) {
            (Some(d), Some(l)) => format!("{} (document {d}, line {l})", self.file),
            (Some(d), None) => format!("{} (document {d})", self.file),
            (None, Some(l)) => format!("{} (line {l})", self.file),
            (None, None) => self.file.clone(),
        }
    }
}

/// Why a file or document did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The file could not be read (permissions, I/O error, a folder given to `load_file`).
    Unreadable,
    /// The document holds bytes that are not UTF-8.
    NotUtf8,
    /// YAML syntax, or YAML with no JSON equivalent (a number out of range, a custom tag).
    Yaml,
    /// JSON syntax; a JSON stream cannot resynchronise, so the rest of the file is lost too.
    Json,
    /// Nested past the parser's recursion limit (128), or Lists nested more than 16 deep.
    TooDeep,
    /// YAML aliases expand past the bound: an alias bomb.
    AliasExpansion,
}

/// Something wrong with one object that parsed; the load went on without it (or with its
/// degraded form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectProblem {
    /// The file, plus the document number when the file has several and the item path inside
    /// Lists: `policies.yaml (document 3, items[2])`.
    pub source: String,
    /// The absolute line in the file, when the parser reported one.
    pub line: Option<usize>,
    /// `NetworkPolicy shop/deny`, when the document got as far as naming an object.
    pub object: Option<String>,
    /// Path of the offending field from the object root, e.g. `spec.ingress[0].from[0]`.
    pub field: Option<String>,
    pub message: String,
    /// The object was still loaded, with its invalid entries matching nothing (fail closed).
    pub loaded_degraded: bool,
}

impl fmt::Display for ObjectProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Counts of what a load read and kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadSummary {
    pub files: usize,
    /// Non-empty documents (YAML documents or JSON values), before unwrapping Lists.
    pub documents: usize,
    /// Distinct objects loaded per kind (duplicates are counted in `duplicates`).
    pub namespaces: usize,
    pub pods: usize,
    pub nodes: usize,
    pub policies: usize,
    /// ClusterNetworkPolicies, AdminNetworkPolicies and BaselineAdminNetworkPolicies.
    pub cluster_policies: usize,
    /// Cilium, Calico and Antrea policies: named where they may apply, not evaluated.
    pub cni_policies: usize,
    pub services: usize,
    pub endpoint_slices: usize,
    /// Objects of other kinds, by kind (`Service`, `ProbeSpec`, `NetworkPolicy (extensions/v1beta1)`).
    pub ignored_by_kind: BTreeMap<String, usize>,
    pub problems: usize,
    /// Files and documents that did not parse ([`ParseError`]s).
    pub unparsed: usize,
    /// Objects that replaced an earlier definition of the same kind and name (last one wins).
    pub duplicates: usize,
}

impl fmt::Display for LoadSummary {
    /// One line: `2 files, 9 documents: 2 namespaces, 4 pods, 1 node, 3 policies; ignored 1 Service; 1 problem`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{}, {}: {}, {}, {}, {}",
            count(self.files, "file", "files"),
            count(self.documents, "document", "documents"),
            count(self.namespaces, "namespace", "namespaces"),
            count(self.pods, "pod", "pods"),
            count(self.nodes, "node", "nodes"),
            count(self.policies, "policy", "policies"),
        )?;
        if self.cluster_policies > 0 {
            write!(
                f,
                ", {}",
                count(
                    self.cluster_policies,
                    "cluster-scoped policy",
                    "cluster-scoped policies"
                )
            )?;
        }
        if self.services > 0 {
            write!(f, ", {}", count(self.services, "service", "services"))?;
        }
        if self.endpoint_slices > 0 {
            write!(
                f,
                ", {}",
                count(self.endpoint_slices, "endpoint slice", "endpoint slices")
            )?;
        }
        if self.cni_policies > 0 {
            write!(
                f,
                ", {} (not evaluated)",
                count(
                    self.cni_policies,
                    "CNI-native policy",
                    "CNI-native policies"
                )
            )?;
        }
        if !self.ignored_by_kind.is_empty() {
            let ignored: Vec<String> = self
                .ignored_by_kind
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            write!(f, "; ignored {}", ignored.join(", "))?;
        }
        if self.problems > 0 {
            write!(f, "; {}", count(self.problems, "problem", "problems"))?;
        }
        if self.unparsed > 0 {
            write!(
                f,
                "; {} not parsed",
                count(self.unparsed, "document", "documents")
            )?;
        }
        if self.duplicates > 0 {
            write!(f, "; {}", count(self.duplicates, "duplicate", "duplicates"))?;
        }
        Ok(())
    }
}

/// Everything a load produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub index: Index,
    pub problems: Vec<ObjectProblem>,
    /// Files and documents that did not parse, in reading order.
    pub parse_errors: Vec<ParseError>,
    pub summary: LoadSummary,
    /// Raw `netreach.dev/*` objects (ProbeSpecs, ...) with their source, for later stages.
    pub custom_objects: Vec<(String, Value)>,
}

/// Loads every path (files, folders, `-` for stdin) into a fresh [`Loaded`].
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    let mut visited_dirs = HashSet::new();
    for path in paths {
        collect_files(path, 0, &mut visited_dirs, &mut files)?;
    }
    for file in &files {
        loaded.load_file(file)?;
    }
    Ok(loaded)
}

/// Loads one in-memory source (a file's text) into `into`; `source_name` labels problems and
/// picks the format (`*.json` is JSON, anything else YAML unless it starts with `{`).
pub fn load_str(source_name: &str, text: &str, into: &mut Loaded) {
    into.load_str(source_name, text);
}

// === Files and folders ===

/// Expands `path` into the files to read: a file as given, a folder walked recursively.
fn collect_files(
    path: &Path,
    depth: usize,
    visited_dirs: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    if path.as_os_str() == STDIN_PATH {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let meta = fs::metadata(path).map_err(|e| LoadError::from_io(path, e))?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    // Symlinked folders can form loops; walk each real folder once.
    let real = fs::canonicalize(path).map_err(|e| LoadError::from_io(path, e))?;
    if depth > MAX_DIR_DEPTH || !visited_dirs.insert(real) {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| LoadError::from_io(path, e))? {
        let entry = entry.map_err(|e| LoadError::from_io(path, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            entries.push(entry.path());
        }
    }
    entries.sort();
    for entry in entries {
        let meta = fs::metadata(&entry).map_err(|e| LoadError::from_io(&entry, e))?;
        if meta.is_dir() {
            collect_files(&entry, depth + 1, visited_dirs, out)?;
        } else if has_object_extension(&entry) {
            out.push(entry);
        }
    }
    Ok(())
}

fn has_object_extension(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    matches!(ext.as_deref(), Some("yaml" | "yml" | "json"))
}

impl Loaded {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one file (or stdin for `-`) whatever its extension. A file that exists but cannot
    /// be read is a [`ParseError`], so the other files still load; a missing one is an error.
    pub fn load_file(&mut self, path: &Path) -> Result<()> {
        let (name, bytes) = if path.as_os_str() == STDIN_PATH {
            let mut bytes = Vec::new();
            let read = io::stdin().read_to_end(&mut bytes).map(|_| bytes);
            ("<stdin>".to_string(), read)
        } else {
            (path.display().to_string(), fs::read(path))
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LoadError::from_io(path, e));
            }
            Err(e) => {
                self.summary.files += 1;
                self.push_parse_error(ParseError {
                    file: name,
                    document: None,
                    line: None,
                    kind: ParseErrorKind::Unreadable,
                    message: format!("cannot read: {e}"),
                });
                return Ok(());
            }
        };
        self.load_bytes(&name, bytes);
        Ok(())
    }

    /// Loads the documents of one source's bytes; a document holding bytes that are not UTF-8
    /// is a [`ParseError`], the others still load.
    pub fn load_bytes(&mut self, source_name: &str, bytes: Vec<u8>) {
        match String::from_utf8(bytes) {
            Ok(text) => self.load_text(source_name, &text, &[]),
            Err(e) => {
                let (text, invalid) = decode_lossy(e.as_bytes());
                self.load_text(source_name, &text, &invalid);
            }
        }
    }

    /// Loads the documents of one source's text.
    pub fn load_str(&mut self, source_name: &str, text: &str) {
        self.load_text(source_name, text, &[]);
    }

    /// Loads the documents of `text`, failing those that hold one of the `invalid` bytes.
    fn load_text(&mut self, source_name: &str, text: &str, invalid: &[InvalidUtf8]) {
        self.summary.files += 1;
        let full_len = text.len();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // Document spans are offsets into `text`, after the BOM.
        let bom = full_len - text.len();
        let documents = match detect_format(source_name, text) {
            Format::Json => json_documents(text),
            Format::Yaml => yaml_documents(text),
            // Unnamed input that starts like JSON may still be YAML flow style.
            Format::Sniffed => match json_documents(text) {
                documents
                    if matches!(
                        documents.first(),
                        Some(Document {
                            body: Body::Failed(_),
                            ..
                        })
                    ) =>
                {
                    yaml_documents(text)
                }
                documents => documents,
            },
        };
        let numbered = documents.len() > 1;
        let mut lines = LineCounter::default();
        for (i, document) in documents.into_iter().enumerate() {
            self.summary.documents += 1;
            let origin = Origin {
                file: source_name,
                index: i + 1,
                document: numbered.then_some(i + 1),
                items: String::new(),
            };
            // Documents and invalid bytes both come in text order: search, do not scan.
            let after_bom = |b: &InvalidUtf8| b.at.saturating_sub(bom);
            let first = invalid.partition_point(|b| after_bom(b) < document.span.start);
            let bad_byte = invalid
                .get(first)
                .map(|b| (after_bom(b), b))
                .filter(|(at, _)| document.span.contains(at));
            let parsed = match bad_byte {
                Some((at, b)) => Err(Failure {
                    kind: ParseErrorKind::NotUtf8,
                    message: format!(
                        "not UTF-8 text: invalid byte 0x{:02X} at offset {} of the file",
                        b.byte, b.file_offset
                    ),
                    line: Some(lines.line_at(text, at)),
                }),
                None => document.parse(),
            };
            match parsed {
                Ok(value) => self.load_origin(&origin, value, 0),
                Err(Failure {
                    kind,
                    message,
                    line,
                }) => self.push_parse_error(ParseError {
                    file: source_name.to_string(),
                    document: Some(i + 1),
                    line,
                    kind,
                    message,
                }),
            }
        }
    }

    /// Loads one already-parsed object (or List), e.g. an entry of a scenario file.
    pub fn load_value(&mut self, source: &str, value: Value) {
        let origin = Origin {
            file: source,
            index: 1,
            document: None,
            items: String::new(),
        };
        self.load_origin(&origin, value, 0);
    }

    fn push_problem(&mut self, problem: ObjectProblem) {
        tracing::debug!(%problem, "object problem");
        self.summary.problems += 1;
        self.problems.push(problem);
    }

    fn push_parse_error(&mut self, error: ParseError) {
        tracing::debug!(%error, "parse error");
        self.summary.unparsed += 1;
        self.parse_errors.push(error);
    }
}

/// A byte that is not UTF-8, kept so that only the document holding it fails.
struct InvalidUtf8 {
    /// Offset of its U+FFFD stand-in in the decoded text.
    at: usize,
    /// Offset in the file, for the message.
    file_offset: usize,
    byte: u8,
}

/// Decodes like `String::from_utf8_lossy`, remembering where each invalid sequence was.
fn decode_lossy(bytes: &[u8]) -> (String, Vec<InvalidUtf8>) {
    let mut text = String::with_capacity(bytes.len());
    let mut invalid = Vec::new();
    let mut file_offset = 0;
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        file_offset += chunk.valid().len();
        if let Some(&byte) = chunk.invalid().first() {
            invalid.push(InvalidUtf8 {
                at: text.len(),
                file_offset,
                byte,
            });
            text.push(char::REPLACEMENT_CHARACTER);
            file_offset += chunk.invalid().len();
        }
    }
    (text, invalid)
}

/// Line numbers of offsets asked in increasing order, counted once through the text (a file
/// of a million bad documents must not be rescanned a million times).
#[derive(Default)]
struct LineCounter {
    offset: usize,
    /// Newlines before `offset`.
    newlines: usize,
}

impl LineCounter {
    /// 1-based line of byte `offset` in `text`.
    fn line_at(&mut self, text: &str, offset: usize) -> usize {
        if offset < self.offset {
            *self = Self::default();
        }
        let between = text.get(self.offset..offset).unwrap_or_default();
        self.newlines += between.bytes().filter(|&b| b == b'\n').count();
        self.offset = offset;
        self.newlines + 1
    }
}

// === Documents ===

/// Where an object came from, rendered as `file (document 2, items[3])`.
struct Origin<'a> {
    file: &'a str,
    /// 1-based index of the document in the file, for parse errors.
    index: usize,
    /// The index as shown in object problems: only when the file has several documents.
    document: Option<usize>,
    /// Path inside Lists: `items[3]`, `items[3].items[0]`.
    items: String,
}

impl Origin<'_> {
    fn item(&self, i: usize) -> Self {
        let items = if self.items.is_empty() {
            format!("items[{i}]")
        } else {
            format!("{}.items[{i}]", self.items)
        };
        Origin {
            file: self.file,
            index: self.index,
            document: self.document,
            items,
        }
    }
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file)?;
        match (self.document, self.items.is_empty()) {
            (None, true) => Ok(()),
            (Some(n), true) => write!(f, " (document {n})"),
            (None, false) => write!(f, " ({})", self.items),
            (Some(n), false) => write!(f, " (document {n}, {})", self.items),
        }
    }
}

/// One document of a source, parsed lazily so a large stream is not held twice.
struct Document<'a> {
    /// Its bytes in the source text, to tell which document holds a byte that is not UTF-8.
    span: Range<usize>,
    body: Body<'a>,
}

enum Body<'a> {
    Yaml {
        text: Cow<'a, str>,
        first_line: usize,
    },
    Parsed(Value),
    Failed(Failure),
}

/// A [`ParseError`] before it knows its file and document.
struct Failure {
    kind: ParseErrorKind,
    message: String,
    line: Option<usize>,
}

impl Document<'_> {
    fn parse(self) -> Result<Value, Failure> {
        match self.body {
            Body::Parsed(value) => Ok(value),
            Body::Failed(failure) => Err(failure),
            Body::Yaml { text, first_line } => parse_yaml(&text, first_line),
        }
    }
}

/// Parses one YAML document into a JSON value, within the alias expansion bound.
fn parse_yaml(text: &str, first_line: usize) -> Result<Value, Failure> {
    let budget = ValueBudget::new(text.len().saturating_add(ALIAS_EXPANSION_SLACK));
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    Budgeted(&budget).deserialize(deserializer).map_err(|e| {
        // Positions are relative to the document; make them relative to the file.
        let offset = first_line.saturating_sub(1);
        let line = Some(e.location().map_or(first_line, |l| l.line() + offset));
        let detail = shift_line_numbers(&e.to_string(), offset);
        // serde_yaml_ng reports its own alias and depth limits only by message.
        let (kind, message) = if budget.exceeded.get() {
            (
                ParseErrorKind::AliasExpansion,
                format!(
                    "invalid YAML: aliases expand the document past {} values (an alias bomb?)",
                    budget.limit
                ),
            )
        } else if detail.contains("repetition limit exceeded") {
            (
                ParseErrorKind::AliasExpansion,
                format!("invalid YAML: aliases expand too far (an alias bomb?): {detail}"),
            )
        } else if detail.contains("recursion limit exceeded") {
            (
                ParseErrorKind::TooDeep,
                format!("invalid YAML: nested too deep: {detail}"),
            )
        } else {
            (ParseErrorKind::Yaml, format!("invalid YAML: {detail}"))
        };
        Failure {
            kind,
            message,
            line,
        }
    })
}

/// How many values a YAML document may still expand to (see [`ALIAS_EXPANSION_SLACK`]).
struct ValueBudget {
    limit: usize,
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

impl ValueBudget {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            left: Cell::new(limit),
            exceeded: Cell::new(false),
        }
    }

    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom(format_args!(
                    "more than {} values after alias expansion",
                    self.limit
                )))
            }
        }
    }
}

/// Builds a `serde_json::Value` the way its own `Deserialize` does, charging every value and
/// key to the budget: expansion stops at the bound instead of exhausting memory.
#[derive(Clone, Copy)]
struct Budgeted<'b>(&'b ValueBudget);

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.0.take()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Number::deserialize(de::value::I128Deserializer::new(v)).map(Value::Number)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Number::deserialize(de::value::U128Deserializer::new(v)).map(Value::Number)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.take()?;
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

enum Format {
    Json,
    Yaml,
    /// No telling extension, and the text starts with `{`: JSON, or YAML if that fails.
    Sniffed,
}

fn detect_format(source_name: &str, text: &str) -> Format {
    let lower = source_name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        Format::Json
    } else if lower.ends_with(".yaml")
        || lower.ends_with(".yml")
        || !text.trim_start().starts_with('{')
    {
        Format::Yaml
    } else {
        Format::Sniffed
    }
}

/// A stream of JSON values; a syntax error ends it (JSON cannot resynchronise).
fn json_documents(text: &str) -> Vec<Document<'static>> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0;
    while let Some(value) = stream.next() {
        let end = stream.byte_offset();
        match value {
            Ok(value) => documents.push(Document {
                span: start..end,
                body: Body::Parsed(value),
            }),
            Err(e) => {
                let detail = e.to_string();
                // serde_json reports its depth limit only by message.
                let (kind, message) = if detail.contains("recursion limit exceeded") {
                    (
                        ParseErrorKind::TooDeep,
                        format!("invalid JSON: nested too deep: {detail}"),
                    )
                } else {
                    (ParseErrorKind::Json, format!("invalid JSON: {detail}"))
                };
                documents.push(Document {
                    span: start..text.len(),
                    body: Body::Failed(Failure {
                        kind,
                        message: format!("{message} (the rest of the file is not read)"),
                        line: Some(e.line()),
                    }),
                });
                break;
            }
        }
        start = end;
    }
    documents
}

/// Splits a YAML stream on `---` / `...` marker lines, so a malformed document does not hide
/// the ones after it. Documents with nothing but comments and blank lines are dropped.
fn yaml_documents(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    // The current document: byte offset where its span starts (its `---` line when content
    // follows the marker), where its lines start, its 1-based first line, and the content that
    // followed a `---` on the marker line itself.
    let mut span_start = 0;
    let mut start = 0;
    let mut first_line = 1;
    let mut inline: Option<&str> = None;
    let mut offset = 0;
    let mut push = |span: Range<usize>, start: usize, first_line: usize, inline: Option<&str>| {
        let body = text.get(start..span.end).unwrap_or_default();
        let text = match inline {
            None => Cow::Borrowed(body),
            Some(head) => Cow::Owned(format!("{head}\n{body}")),
        };
        if !is_blank_yaml(&text) {
            documents.push(Document {
                span,
                body: Body::Yaml { text, first_line },
            });
        }
    };
    for (line_index, line) in text.split_inclusive('\n').enumerate() {
        if let Some(marker) = marker(line) {
            push(span_start..offset, start, first_line, inline);
            start = offset + line.len();
            (span_start, first_line, inline) = match marker {
                Marker::Start(Some(head)) => (offset, line_index + 1, Some(head)),
                Marker::Start(None) | Marker::End => (start, line_index + 2, None),
            };
        }
        offset += line.len();
    }
    push(span_start..text.len(), start, first_line, inline);
    documents
}

enum Marker<'a> {
    /// `---`, with the content that follows it on the same line.
    Start(Option<&'a str>),
    /// `...`
    End,
}

fn marker(line: &str) -> Option<Marker<'_>> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (is_start, rest) = match (line.strip_prefix("---"), line.strip_prefix("...")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return None,
    };
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim();
    Some(match (is_start, rest.is_empty() || rest.starts_with('#')) {
        (true, true) => Marker::Start(None),
        (true, false) => Marker::Start(Some(rest)),
        (false, _) => Marker::End,
    })
}

/// Only blank lines, comments and directives: no document at all.
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l.starts_with('%')
    })
}

/// Adds `offset` to every `line N column M` in a parser message.
fn shift_line_numbers(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len() + 8);
    let mut rest = message;
    while let Some(pos) = rest.find("line ") {
        let (before, after) = rest.split_at(pos + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = after.split_at(digits);
        match number.parse::<usize>() {
            Ok(n) if tail.starts_with(" column ") => {
                out.push_str(&n.saturating_add(offset).to_string())
            }
            _ => out.push_str(number),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

// === Objects ===

impl Loaded {
    /// Dispatches one value on apiVersion/kind.
    fn load_origin(&mut self, origin: &Origin<'_>, value: Value, depth: usize) {
        let mut map = match value {
            Value::Object(map) => map,
            Value::Null => return, // an empty document or List item
            other => {
                let message = format!(
                    "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                    type_name(&other)
                );
                self.push_problem(problem(origin.to_string(), None, None, message));
                return;
            }
        };
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if api_version.is_empty() || kind.is_empty() {
            let missing = if kind.is_empty() {
                "kind"
            } else {
                "apiVersion"
            };
            let object = (!kind.is_empty())
                .then(|| describe(&kind, !matches!(kind.as_str(), "Namespace" | "Node"), &map));
            let message = "is missing or not a string".to_string();
            self.push_problem(problem(
                origin.to_string(),
                object,
                Some(missing.to_string()),
                message,
            ));
            return;
        }
        if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
            self.load_list(origin, &api_version, &kind, &mut map, depth);
            return;
        }
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Namespace") => self.load_object::<Namespace>(origin, map),
            ("v1", "Node") => self.load_object::<Node>(origin, map),
            ("v1", "Pod") => self.load_object::<Pod>(origin, map),
            ("networking.k8s.io/v1", "NetworkPolicy") => {
                self.load_object::<NetworkPolicy>(origin, map)
            }
            ("v1", "Service") => self.load_object::<Service>(origin, map),
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                self.load_object::<EndpointSlice>(origin, map)
            }
            (api_version, kind) if TieredKind::of(api_version, kind).is_some() => {
                self.load_tiered(origin, Value::Object(map));
            }
            (api_version, kind) if CniPolicyKind::of(api_version, kind).is_some() => {
                let object = Value::Object(map);
                match CniPolicy::from_object(&object, None) {
                    Ok(policy) => {
                        if self.index.cni_policies().any(|p| *p == policy) {
                            self.summary.duplicates += 1;
                        } else {
                            self.summary.cni_policies += 1;
                        }
                        self.index.apply(policy);
                    }
                    Err(error) => {
                        let name = object.pointer("/metadata/name").and_then(Value::as_str);
                        self.push_problem(problem(
                            origin.to_string(),
                            Some(format!("{kind}/{}", name.unwrap_or("<unnamed>"))),
                            Some(error.field().to_string()),
                            error.to_string(),
                        ));
                    }
                }
            }
            _ => {
                let key = match kind.as_str() {
                    // Same kind name, another API (e.g. Calico's NetworkPolicy): say which.
                    "Namespace" | "Node" | "Pod" | "NetworkPolicy" => {
                        format!("{kind} ({api_version})")
                    }
                    _ => kind,
                };
                *self.summary.ignored_by_kind.entry(key).or_default() += 1;
                if api_version.starts_with(CUSTOM_API_GROUP) {
                    self.custom_objects
                        .push((origin.to_string(), Value::Object(map)));
                }
            }
        }
    }

    /// `kind: List` (items carry their own kind) or `PodList`-style lists (items may omit
    /// apiVersion/kind, as API list responses do).
    fn load_list(
        &mut self,
        origin: &Origin<'_>,
        api_version: &str,
        kind: &str,
        map: &mut Map<String, Value>,
        depth: usize,
    ) {
        if depth >= MAX_LIST_DEPTH {
            let at = if origin.items.is_empty() {
                String::new()
            } else {
                format!(" at {}", origin.items)
            };
            self.push_parse_error(ParseError {
                file: origin.file.to_string(),
                document: Some(origin.index),
                line: None,
                kind: ParseErrorKind::TooDeep,
                message: format!(
                    "{kind}{at}: Lists nested more than {MAX_LIST_DEPTH} deep are not read"
                ),
            });
            return;
        }
        let items = match map.remove("items") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                let message = format!("expected a list, found {}", type_name(&other));
                self.push_problem(problem(
                    origin.to_string(),
                    Some(kind.to_string()),
                    Some("items".into()),
                    message,
                ));
                return;
            }
        };
        let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
        for (i, mut item) in items.into_iter().enumerate() {
            if let (Some(item_kind), Value::Object(obj)) = (item_kind, &mut item) {
                obj.entry("kind").or_insert_with(|| item_kind.into());
                obj.entry("apiVersion")
                    .or_insert_with(|| api_version.into());
            }
            self.load_origin(&origin.item(i), item, depth + 1);
        }
    }

    /// A ClusterNetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy; one that does
    /// not validate is a problem naming the field, and is not loaded.
    fn load_tiered(&mut self, origin: &Origin<'_>, object: Value) {
        match TieredPolicy::try_from(&object) {
            Ok(policy) => {
                if self
                    .index
                    .tiered_policies()
                    .any(|p| p.key() == policy.key())
                {
                    self.summary.duplicates += 1;
                } else {
                    self.summary.cluster_policies += 1;
                }
                for (direction, rules) in [("ingress", &policy.ingress), ("egress", &policy.egress)]
                {
                    for (i, rule) in rules.iter().enumerate() {
                        if let Some(why) = &rule.invalid {
                            let message = format!(
                                "{why}; the rule fails closed ({})",
                                if rule.action == crate::cluster::tiered::TierAction::Accept {
                                    "it accepts nothing"
                                } else {
                                    "it denies everything"
                                }
                            );
                            self.push_problem(problem(
                                origin.to_string(),
                                Some(policy.key()),
                                Some(format!("spec.{direction}[{i}]")),
                                message,
                            ));
                        }
                    }
                }
                self.index.apply(policy);
            }
            Err(error) => {
                let kind = object
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("<unnamed>");
                self.push_problem(problem(
                    origin.to_string(),
                    Some(format!("{kind}/{name}")),
                    Some(error.field),
                    format!("{}; the policy is not loaded", error.message),
                ));
            }
        }
    }

    fn load_object<T: LoadKind>(&mut self, origin: &Origin<'_>, mut map: Map<String, Value>)
    where
        Index: Apply<T>,
    {
        strip_unused_metadata(&mut map);
        let object = describe(T::KIND, T::NAMESPACED, &map);
        let policy_key = (T::KIND == "NetworkPolicy").then(|| policy_key_of(&map));
        let api: T::Api = match serde_path_to_error::deserialize(Value::Object(map)) {
            Ok(api) => api,
            Err(e) => {
                let field = Some(e.path().to_string()).filter(|p| p != ".");
                let message = e.into_inner().to_string();
                if let Some(key) = policy_key {
                    self.index.mark_unloadable_policy(key, message.clone());
                }
                self.push_problem(problem(origin.to_string(), Some(object), field, message));
                return;
            }
        };
        let converted = match T::convert(&api) {
            Ok(converted) => Some(converted),
            Err(mut error) => {
                let degraded = T::take_degraded(&mut error);
                let summary = error.to_string();
                for p in error.problems {
                    let mut problem = problem(
                        origin.to_string(),
                        Some(object.clone()),
                        Some(p.field),
                        p.message,
                    );
                    problem.loaded_degraded = degraded.is_some();
                    self.push_problem(problem);
                }
                if let (None, Some(key)) = (&degraded, policy_key) {
                    self.index.mark_unloadable_policy(key, summary);
                }
                degraded
            }
        };
        let Some(converted) = converted else { return };
        if converted.is_in(&self.index) {
            self.summary.duplicates += 1;
        } else {
            *T::counter(&mut self.summary) += 1;
        }
        self.index.apply(converted);
    }
}

/// `namespace/name` of a policy from its raw metadata (namespace defaults to `default`).
fn policy_key_of(map: &serde_json::Map<String, Value>) -> crate::cluster::model::ObjectRef {
    let meta = map.get("metadata");
    let field = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    crate::cluster::model::ObjectRef::new(
        field("namespace").unwrap_or("default"),
        field("name").unwrap_or("<unnamed>"),
    )
}

/// The kinds that go into the index.
trait LoadKind: Sized {
    const KIND: &'static str;
    const NAMESPACED: bool;
    type Api: DeserializeOwned;
    fn convert(api: &Self::Api) -> Result<Self, ConvertError>;
    /// The fail-closed form of an object that failed conversion, if it has one.
    fn take_degraded(_error: &mut ConvertError) -> Option<Self> {
        None
    }
    fn is_in(&self, index: &Index) -> bool;
    fn counter(summary: &mut LoadSummary) -> &mut usize;
}

impl LoadKind for Service {
    const KIND: &'static str = "Service";
    const NAMESPACED: bool = true;
    type Api = corev1::Service;
    fn convert(api: &Self::Api) -> Result<Self, ConvertError> {
        Self::try_from(api)
    }
    fn is_in(&self, index: &Index) -> bool {
        index.service(&self.key()).is_some()
    }
    fn counter(summary: &mut LoadSummary) -> &mut usize {
        &mut summary.services
    }
}

impl LoadKind for EndpointSlice {
    const KIND: &'static str = "EndpointSlice";
    const NAMESPACED: bool = true;
    type Api = k8s_openapi::api::discovery::v1::EndpointSlice;
    fn convert(api: &Self::Api) -> Result<Self, ConvertError> {
        Self::try_from(api)
    }
    fn is_in(&self, index: &Index) -> bool {
        index.endpoint_slices().any(|s| s.key() == self.key())
    }
    fn counter(summary: &mut LoadSummary) -> &mut usize {
        &mut summary.endpoint_slices
    }
}

impl LoadKind for Namespace {
    const KIND: &'static str = "Namespace";
    const NAMESPACED: bool = false;
    type Api = corev1::Namespace;
    fn convert(api: &Self::Api) -> Result<Self, ConvertError> {
        Self::try_from(api)
    }
    fn is_in(&self, index: &Index) -> bool {
        index.namespace(&self.name).is_some()
    }
    fn counter(summary: &mut LoadSummary) -> &mut usize {
        &mut summary.namespaces
    }
}

impl LoadKind for Node {
    const KIND: &'static str = "Node";
    const NAMESPACED: bool = false;
    type Api = corev1::Node;
    fn convert(api: &Self::Api) -> Result<Self, ConvertError> {
        Self::try_from(api)
    }
    fn is_in(&self, index: &Index) -> bool {
        index.node(&self.name).is_some()
    }
    fn counter(summary: &mut LoadSummary) -> &mut usize {
        &mut summary.nodes
    }
}

impl LoadKind for Pod {
    const KIND: &'static str = "Pod";
    const NAMESPACED: bool = true;
    type Api = corev1::Pod;
    fn convert(api: &Self::Api) -> Result<Self, ConvertError> {
        Self::try_from(api)
    }
    fn is_in(&self, index: &Index) -> bool {
        index.pod(&self.key()).is_some()
    }
    fn counter(summary: &mut LoadSummary) -> &mut usize {
        &mut summary.pods
    }
}

impl LoadKind for NetworkPolicy {
    const KIND: &'static str = "NetworkPolicy";
    const NAMESPACED: bool = true;
    type Api = netv1::NetworkPolicy;
    fn convert(api: &Self::Api) -> Result<Self, ConvertError> {
        Self::try_from(api)
    }
    fn take_degraded(error: &mut ConvertError) -> Option<Self> {
        error.degraded.take().map(|policy| *policy)
    }
    fn is_in(&self, index: &Index) -> bool {
        index.policy(&self.key()).is_some()
    }
    fn counter(summary: &mut LoadSummary) -> &mut usize {
        &mut summary.policies
    }
}

/// Drops metadata nothing downstream reads (managedFields, annotations such as
/// last-applied-configuration, all but the few mesh detection reads): less to deserialize
/// and nothing to fail on.
fn strip_unused_metadata(map: &mut Map<String, Value>) {
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        meta.remove("managedFields");
        let keep = match meta.remove("annotations") {
            Some(Value::Object(mut annotations)) => {
                annotations.retain(|key, _| MESH_ANNOTATIONS.contains(&key.as_str()));
                (!annotations.is_empty()).then_some(Value::Object(annotations))
            }
            _ => None,
        };
        if let Some(annotations) = keep {
            meta.insert("annotations".into(), annotations);
        }
    }
}

/// `Pod shop/web` (`default` when the namespace is left out, E24), `Node node-1`.
fn describe(kind: &str, namespaced: bool, map: &Map<String, Value>) -> String {
    let meta = map.get("metadata");
    let field = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = field("name").unwrap_or("<unnamed>");
    if namespaced {
        format!(
            "{kind} {}/{name}",
            field("namespace").unwrap_or(DEFAULT_NAMESPACE)
        )
    } else {
        format!("{kind} {name}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn problem(
    source: String,
    object: Option<String>,
    field: Option<String>,
    message: String,
) -> ObjectProblem {
    ObjectProblem {
        source,
        line: None,
        object,
        field,
        message,
        loaded_degraded: false,
    }
}

#[cfg(test)]
mod tests;

//! A small fake Kubernetes API for tests and benchmarks: LIST, WATCH and GET of the kinds the
//! agent watches, with `labelSelector` and `fieldSelector` applied like the API server does.
//!
//! ```text
//! FakeApi::apply / delete ──> objects (JSON, by collection) ──┬─> LIST  (one body, filtered)
//!                                                             └─> WATCH (ADDED / MODIFIED /
//!                                                                 DELETED lines to every open
//!                                                                 watch whose filter matched the
//!                                                                 old or the new object)
//! FakeApi::router() ──> an axum Router: kube::Client::new(router, ..) in-process, or axum::serve
//!                       on 127.0.0.1 for a client in another process
//! ```
//!
//! Every request is logged (method, path, decoded query) and every byte sent is counted, so a
//! test asserts which watches an agent opened and a benchmark reports what they cost. Watches
//! start at "now" (the requested resourceVersion is not replayed) and never end by themselves.
//! Lists honour `limit` and `continue` (the token is an offset) like the API server's paginated
//! lists, so a client's peak memory is what it would be against a real one. Not a conformance
//! fake: no bookmarks, no resourceVersion semantics.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One page of a list: at most `limit` objects from the `offset`-th match on.
#[derive(Clone, Copy, Debug)]
struct Page {
    limit: Option<usize>,
    offset: usize,
}

/// What one open watch wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: Vec<LabelTerm>,
    pub fields: Vec<(String, String)>,
}

/// One term of a label selector in the API syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelTerm {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelTerm {
    fn matches(&self, labels: &serde_json::Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        match self {
            LabelTerm::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelTerm::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelTerm::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|w| w == v)),
            LabelTerm::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|w| w == v)),
            LabelTerm::Exists(k) => get(k).is_some(),
            LabelTerm::DoesNotExist(k) => get(k).is_none(),
        }
    }
}

/// Parses `app=web,tier in (a,b),!canary` (the API's label selector syntax).
pub fn parse_label_selector(text: &str) -> Result<Vec<LabelTerm>, String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    let mut parts = Vec::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("{part:?}: expected (values)"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let term = if let Some(key) = part.strip_prefix('!') {
            LabelTerm::DoesNotExist(key.trim().to_string())
        } else if let Some((key, rest)) = part.split_once(" notin ") {
            LabelTerm::NotIn(key.trim().to_string(), set(rest)?)
        } else if let Some((key, rest)) = part.split_once(" in ") {
            LabelTerm::In(key.trim().to_string(), set(rest)?)
        } else if let Some((key, value)) = part.split_once("!=") {
            LabelTerm::NotEquals(key.trim().to_string(), value.trim().to_string())
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            LabelTerm::Equals(key.trim().to_string(), value.trim().to_string())
        } else {
            LabelTerm::Exists(part.to_string())
        };
        terms.push(term);
    }
    Ok(terms)
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                != Some(ns)
        {
            return false;
        }
        let empty = serde_json::Map::new();
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if !self.labels.iter().all(|t| t.matches(labels)) {
            return false;
        }
        self.fields
            .iter()
            .all(|(field, want)| field_value(object, field).as_deref() == Some(want.as_str()))
    }
}

/// The value of a field selector's field (`spec.nodeName`, `status.podIP`, `metadata.name`).
fn field_value(object: &Value, field: &str) -> Option<String> {
    let pointer = format!("/{}", field.replace('.', "/"));
    Some(match object.pointer(&pointer)? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// One open watch.
#[derive(Debug)]
struct Subscriber {
    collection: String,
    filter: Filter,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Debug, Default)]
struct State {
    /// Collection (`pods`, `namespaces`, ...) -> key (`ns/name` or `name`) -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    resource_version: u64,
    subscribers: Vec<Subscriber>,
    requests: Vec<String>,
    /// Custom kinds served beside the built-in ones, with discovery documents.
    served: Vec<ServedKind>,
    /// Down: every request is answered 503, as by an API server that is restarting.
    down: bool,
    /// Watches from a resourceVersion below this get 410 Gone: the history a restarted API
    /// server no longer has.
    history_floor: u64,
    /// Added before every answer.
    latency: std::time::Duration,
}

impl State {
    /// Where an object goes: a built-in collection, or a served custom kind's.
    fn collection_of(&self, object: &Value) -> Option<String> {
        if let Some(builtin) = builtin_collection(object) {
            return Some(builtin.to_string());
        }
        let api_version = object.get("apiVersion").and_then(Value::as_str)?;
        let kind = object.get("kind").and_then(Value::as_str)?;
        self.served
            .iter()
            .find(|s| s.api_version == api_version && s.kind == kind)
            .map(ServedKind::collection)
    }

    /// The discovery document of `group_version`, when it serves anything.
    fn discovery(&self, group_version: &str) -> Option<Value> {
        let resources: Vec<Value> = self
            .served
            .iter()
            .filter(|s| s.api_version == group_version)
            .map(|s| {
                json!({"name": s.plural, "singularName": "", "namespaced": s.namespaced,
                       "kind": s.kind, "verbs": ["get", "list", "watch"]})
            })
            .collect();
        (!resources.is_empty()).then(|| {
            json!({"kind": "APIResourceList", "apiVersion": "v1",
                   "groupVersion": group_version, "resources": resources})
        })
    }

    /// Whether a collection a request names exists.
    fn serves(&self, collection: &str) -> bool {
        !collection.contains('.') || self.served.iter().any(|s| s.collection() == collection)
    }
}

/// Bytes and objects sent, for benchmarks.
#[derive(Debug, Default)]
pub struct Sent {
    pub list_bytes: AtomicU64,
    pub listed_objects: AtomicU64,
    pub watch_bytes: AtomicU64,
    pub watch_events: AtomicU64,
}

/// A snapshot of [`Sent`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SentCounts {
    pub list_bytes: u64,
    pub listed_objects: u64,
    pub watch_bytes: u64,
    pub watch_events: u64,
}

/// The fake API server's state; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    sent: Arc<Sent>,
}

/// The groups whose collections are named by their plural alone (the kinds the agent always
/// watches); any other group's collection is `plural.group`, as kubectl names resources.
const PLAIN_GROUPS: &[&str] = &["", "networking.k8s.io", "netreach.dev", "discovery.k8s.io"];

/// The collection of a built-in kind, as it appears in URLs.
fn builtin_collection(object: &Value) -> Option<&'static str> {
    Some(match object.get("kind")?.as_str()? {
        "Pod" => "pods",
        "Namespace" => "namespaces",
        "Node" => "nodes",
        "NetworkPolicy"
            if object.get("apiVersion").and_then(Value::as_str) == Some("networking.k8s.io/v1") =>
        {
            "networkpolicies"
        }
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "ProbeSpec" => "probespecs",
        "ClusterProbeSpec" => "clusterprobespecs",
        "ProbeRequest" => "proberequests",
        _ => return None,
    })
}

/// A custom kind the fake serves (see [`FakeApi::serve_kind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServedKind {
    api_version: String,
    kind: String,
    plural: String,
    namespaced: bool,
}

impl ServedKind {
    fn collection(&self) -> String {
        let group = self.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        format!("{}.{group}", self.plural)
    }
}

fn list_kind(collection: &str) -> (&'static str, &'static str) {
    match collection {
        "pods" => ("v1", "PodList"),
        "namespaces" => ("v1", "NamespaceList"),
        "nodes" => ("v1", "NodeList"),
        "networkpolicies" => ("networking.k8s.io/v1", "NetworkPolicyList"),
        "probespecs" => ("netreach.dev/v1alpha1", "ProbeSpecList"),
        "clusterprobespecs" => ("netreach.dev/v1alpha1", "ClusterProbeSpecList"),
        "proberequests" => ("netreach.dev/v1alpha1", "ProbeRequestList"),
        _ => ("v1", "List"),
    }
}

fn key_of(object: &Value) -> String {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Asked {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
}

/// `/api/v1/pods`, `/api/v1/namespaces/shop/pods/web`, `/apis/netreach.dev/v1alpha1/probespecs`.
fn parse_path(path: &str) -> Option<Asked> {
    let rest = path
        .strip_prefix("/api/v1/")
        .map(|rest| ("", rest))
        .or_else(|| {
            let rest = path.strip_prefix("/apis/")?;
            let mut it = rest.splitn(3, '/');
            let (group, _version, rest) = (it.next()?, it.next()?, it.next()?);
            Some((group, rest))
        })?;
    let (group, rest) = (rest.0, rest.1.trim_end_matches('/'));
    let qualify = |plural: &str| {
        if PLAIN_GROUPS.contains(&group) {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        }
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let (namespace, tail) = match segments.as_slice() {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        other => (None, other),
    };
    match tail {
        [collection] => Some(Asked {
            collection: qualify(collection),
            namespace,
            name: None,
        }),
        [collection, name] => Some(Asked {
            collection: qualify(collection),
            namespace,
            name: Some(name.to_string()),
        }),
        _ => None,
    }
}

/// `/apis/<group>/<version>`: a discovery request.
fn discovery_path(path: &str) -> Option<&str> {
    let group_version = path.strip_prefix("/apis/")?.trim_end_matches('/');
    (group_version.split('/').count() == 2).then_some(group_version)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn not_found(what: &str) -> Response {
    let status = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404,
    });
    json_response(StatusCode::NOT_FOUND, status.to_string().into_bytes())
}

/// The watch event an API server sends for a resourceVersion it no longer has.
fn gone_event(current: u64) -> Bytes {
    let event = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
        "status": "Failure", "reason": "Expired", "code": 410,
        "message": format!("too old resource version (current {current})")}});
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves a custom kind (a CRD installed): its discovery document lists it, and objects of
    /// it can be applied, listed and watched.
    pub fn serve_kind(&self, api_version: &str, kind: &str, plural: &str, namespaced: bool) {
        let served = ServedKind {
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        };
        let mut state = self.state.lock();
        if !state.served.contains(&served) {
            state.served.push(served);
        }
    }

    /// Stops serving a custom kind (its CRD deleted): its objects go, its watches end.
    pub fn unserve_kind(&self, api_version: &str, kind: &str) {
        let mut state = self.state.lock();
        let gone: Vec<String> = state
            .served
            .iter()
            .filter(|s| s.api_version == api_version && s.kind == kind)
            .map(ServedKind::collection)
            .collect();
        state
            .served
            .retain(|s| !(s.api_version == api_version && s.kind == kind));
        for collection in gone {
            state.objects.remove(&collection);
            state.subscribers.retain(|sub| sub.collection != collection);
        }
    }

    /// Adds or replaces an object (its `kind` says where it goes), notifying open watches.
    /// Objects of a custom kind not served are dropped, as the API server would refuse them.
    pub fn apply(&self, mut object: Value) {
        let mut state = self.state.lock();
        let Some(collection) = state.collection_of(&object) else {
            return;
        };
        state.resource_version += 1;
        let rv = state.resource_version.to_string();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv));
        }
        let key = key_of(&object);
        let old = state
            .objects
            .entry(collection.clone())
            .or_default()
            .insert(key, object.clone());
        self.notify(&mut state, &collection, old.as_ref(), Some(&object));
    }

    /// Deletes an object (by `kind`, namespace and name), notifying open watches.
    pub fn delete(&self, object: &Value) {
        let mut state = self.state.lock();
        let Some(collection) = state.collection_of(object) else {
            return;
        };
        let old = state
            .objects
            .get_mut(&collection)
            .and_then(|objects| objects.remove(&key_of(object)));
        if let Some(old) = old {
            state.resource_version += 1;
            self.notify(&mut state, &collection, Some(&old), None);
        }
    }

    fn notify(
        &self,
        state: &mut State,
        collection: &str,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let mut sent = 0u64;
        let mut events = 0u64;
        state.subscribers.retain(|sub| {
            if sub.collection != collection {
                return true;
            }
            let was = old.is_some_and(|o| sub.filter.matches(o));
            let is = new.is_some_and(|n| sub.filter.matches(n));
            let event = match (was, is, new) {
                (false, true, Some(n)) => json!({"type": "ADDED", "object": n}),
                (true, true, Some(n)) => json!({"type": "MODIFIED", "object": n}),
                // Left the selector, or deleted: the API server says DELETED either way.
                (true, false, _) => json!({"type": "DELETED", "object": new.or(old)}),
                _ => return true,
            };
            let mut line = event.to_string().into_bytes();
            line.push(b'\n');
            sent += line.len() as u64;
            events += 1;
            sub.tx.send(Bytes::from(line)).is_ok()
        });
        self.sent.watch_bytes.fetch_add(sent, Ordering::Relaxed);
        self.sent.watch_events.fetch_add(events, Ordering::Relaxed);
    }

    /// Every request so far: `GET /api/v1/pods?fieldSelector=spec.nodeName=n1&watch=true`
    /// (query parameters decoded and sorted, `resourceVersion`, `timeoutSeconds`,
    /// `allowWatchBookmarks` and `limit` left out so tests can compare).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().requests.clone()
    }

    /// How many objects of a collection the fake holds.
    pub fn len(&self, collection: &str) -> usize {
        self.state
            .lock()
            .objects
            .get(collection)
            .map_or(0, BTreeMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.state.lock().objects.values().all(BTreeMap::is_empty)
    }

    /// Watches open right now.
    pub fn open_watches(&self) -> usize {
        self.state
            .lock()
            .subscribers
            .iter()
            .filter(|s| !s.tx.is_closed())
            .count()
    }

    pub fn sent(&self) -> SentCounts {
        SentCounts {
            list_bytes: self.sent.list_bytes.load(Ordering::Relaxed),
            listed_objects: self.sent.listed_objects.load(Ordering::Relaxed),
            watch_bytes: self.sent.watch_bytes.load(Ordering::Relaxed),
            watch_events: self.sent.watch_events.load(Ordering::Relaxed),
        }
    }

    /// The router serving the fake (also `GET /fake/sent`: [`SentCounts`] as JSON).
    pub fn router(&self) -> Router {
        let api = self.clone();
        Router::new().fallback(move |request: Request| {
            let api = api.clone();
            async move {
                let latency = api.state.lock().latency;
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                Ok::<_, Infallible>(api.serve(request))
            }
        })
    }

    // === Faults ===

    /// The API server goes away: open watches end, and every request gets 503 until
    /// [`FakeApi::come_back`].
    pub fn go_down(&self) {
        let mut state = self.state.lock();
        state.down = true;
        state.subscribers.clear();
    }

    /// The API server is back. `history_lost`: like a restarted one, it has no watch history,
    /// so a watch from an earlier resourceVersion gets 410 Gone (and the client relists).
    pub fn come_back(&self, history_lost: bool) {
        let mut state = self.state.lock();
        state.down = false;
        if history_lost {
            state.history_floor = state.resource_version;
        }
    }

    /// Every open watch gets a 410 Gone error event and ends (a compacted history).
    pub fn expire_watches(&self) {
        let mut state = self.state.lock();
        let event = gone_event(state.resource_version);
        for subscriber in state.subscribers.drain(..) {
            let _ = subscriber.tx.send(event.clone());
        }
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state.lock().latency = latency;
    }

    fn serve(&self, request: Request) -> Response {
        let path = request.uri().path().to_string();
        if path == "/fake/sent" {
            let body = serde_json::to_vec(&self.sent()).unwrap_or_default();
            return json_response(StatusCode::OK, body);
        }
        let params = query_params(request.uri().query().unwrap_or(""));
        self.log(request.method(), &path, &params);
        if self.state.lock().down {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "the server is currently unable to handle the request",
                "reason": "ServiceUnavailable", "code": 503});
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                status.to_string().into_bytes(),
            );
        }
        if request.method() != http::Method::GET {
            return json_response(StatusCode::METHOD_NOT_ALLOWED, b"{}".to_vec());
        }
        if let Some(group_version) = discovery_path(&path) {
            return match self.state.lock().discovery(group_version) {
                Some(document) => json_response(StatusCode::OK, document.to_string().into_bytes()),
                None => not_found(&path),
            };
        }
        let Some(asked) = parse_path(&path) else {
            return not_found(&path);
        };
        if !self.state.lock().serves(&asked.collection) {
            return not_found(&path);
        }
        let filter = match self.filter(&asked, &params) {
            Ok(filter) => filter,
            Err(message) => {
                let status = json!({"kind": "Status", "status": "Failure", "message": message,
                    "reason": "BadRequest", "code": 400});
                return json_response(StatusCode::BAD_REQUEST, status.to_string().into_bytes());
            }
        };
        if let Some(name) = &asked.name {
            let key = match &asked.namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            };
            let state = self.state.lock();
            return match state
                .objects
                .get(&asked.collection)
                .and_then(|o| o.get(&key))
            {
                Some(object) => json_response(StatusCode::OK, object.to_string().into_bytes()),
                None => not_found(&key),
            };
        }
        let watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
        if watch {
            let from: Option<u64> = params.get("resourceVersion").and_then(|rv| rv.parse().ok());
            let floor = self.state.lock().history_floor;
            if from.is_some_and(|rv| rv < floor) {
                let body = gone_event(floor);
                return Response::builder()
                    .status(StatusCode::OK)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap_or_default();
            }
            self.watch(asked.collection, filter)
        } else {
            let page = Page {
                limit: params
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .filter(|l| *l > 0),
                offset: params
                    .get("continue")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
            };
            self.list(&asked.collection, &filter, page)
        }
    }

    fn log(&self, method: &http::Method, path: &str, params: &BTreeMap<String, String>) {
        const NOISE: &[&str] = &[
            "resourceVersion",
            "timeoutSeconds",
            "allowWatchBookmarks",
            "limit",
            "continue",
        ];
        let query: Vec<String> = params
            .iter()
            .filter(|(k, _)| !NOISE.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let line = if query.is_empty() {
            format!("{method} {path}")
        } else {
            format!("{method} {path}?{}", query.join("&"))
        };
        self.state.lock().requests.push(line);
    }

    fn filter(&self, asked: &Asked, params: &BTreeMap<String, String>) -> Result<Filter, String> {
        let labels = parse_label_selector(params.get("labelSelector").map_or("", String::as_str))?;
        let mut fields = Vec::new();
        for term in params
            .get("fieldSelector")
            .map_or("", String::as_str)
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (field, value) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| format!("field selector term {term:?} is not field=value"))?;
            fields.push((field.to_string(), value.to_string()));
        }
        Ok(Filter {
            namespace: asked.namespace.clone(),
            labels,
            fields,
        })
    }

    fn list(&self, collection: &str, filter: &Filter, page: Page) -> Response {
        let state = self.state.lock();
        let (api_version, kind) = list_kind(collection);
        let mut items = Vec::new();
        let mut count = 0u64;
        let mut next = None;
        let matching = state
            .objects
            .get(collection)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|object| filter.matches(object))
            .enumerate()
            .skip(page.offset);
        for (position, object) in matching {
            if page.limit.is_some_and(|limit| count as usize >= limit) {
                next = Some(position);
                break;
            }
            if count > 0 {
                items.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut items, object);
            count += 1;
        }
        let continue_token = next.map_or_else(String::new, |n| format!(r#","continue":"{n}""#));
        let mut body = format!(
            r#"{{"apiVersion":"{api_version}","kind":"{kind}","metadata":{{"resourceVersion":"{}"{continue_token}}},"items":["#,
            state.resource_version
        )
        .into_bytes();
        body.extend_from_slice(&items);
        body.extend_from_slice(b"]}");
        self.sent
            .list_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.sent.listed_objects.fetch_add(count, Ordering::Relaxed);
        json_response(StatusCode::OK, body)
    }

    fn watch(&self, collection: String, filter: Filter) -> Response {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        self.state.lock().subscribers.push(Subscriber {
            collection,
            filter,
            tx,
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, Infallible>(chunk), rx))
        });
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_parse_and_match_like_the_api_server() {
        let labels = json!({"app": "web", "tier": "a"});
        let labels = labels.as_object().unwrap();
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web,tier=b", false),
            ("app!=web", false),
            ("tier in (a,b)", true),
            ("tier notin (a, b)", false),
            ("missing notin (x)", true),
            ("app,!canary", true),
            ("canary", false),
        ];
        for (selector, want) in cases {
            let terms = parse_label_selector(selector).unwrap();
            assert_eq!(terms.iter().all(|t| t.matches(labels)), want, "{selector}");
        }
    }

    #[test]
    fn paths_name_collections_namespaces_and_objects() {
        let cases = [
            ("/api/v1/pods", ("pods", None, None)),
            ("/api/v1/namespaces", ("namespaces", None, None)),
            ("/api/v1/namespaces/shop/pods", ("pods", Some("shop"), None)),
            (
                "/api/v1/namespaces/shop/pods/web",
                ("pods", Some("shop"), Some("web")),
            ),
            (
                "/apis/netreach.dev/v1alpha1/probespecs",
                ("probespecs", None, None),
            ),
            (
                "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies",
                ("networkpolicies", Some("a"), None),
            ),
            (
                "/apis/crd.projectcalico.org/v1/namespaces/a/networkpolicies",
                ("networkpolicies.crd.projectcalico.org", Some("a"), None),
            ),
            (
                "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies/x",
                (
                    "clusternetworkpolicies.policy.networking.k8s.io",
                    None,
                    Some("x"),
                ),
            ),
        ];
        for (path, (collection, ns, name)) in cases {
            assert_eq!(
                parse_path(path),
                Some(Asked {
                    collection: collection.into(),
                    namespace: ns.map(Into::into),
                    name: name.map(Into::into),
                }),
                "{path}"
            );
        }
        assert_eq!(decode("spec.nodeName%3Dn1+x"), "spec.nodeName=n1 x");
        assert_eq!(discovery_path("/apis/cilium.io/v2"), Some("cilium.io/v2"));
        assert_eq!(
            discovery_path("/apis/cilium.io/v2/ciliumnetworkpolicies"),
            None
        );
    }

    #[test]
    fn custom_kinds_exist_only_while_served() {
        let api = FakeApi::new();
        let cnp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy", "metadata": {"name": "a"}});
        api.apply(cnp.clone());
        let collection = "clusternetworkpolicies.policy.networking.k8s.io";
        assert_eq!(api.len(collection), 0, "not served: refused");
        api.serve_kind(
            "policy.networking.k8s.io/v1alpha2",
            "ClusterNetworkPolicy",
            "clusternetworkpolicies",
            false,
        );
        assert!(
            api.state
                .lock()
                .discovery("policy.networking.k8s.io/v1alpha2")
                .is_some()
        );
        api.apply(cnp);
        assert_eq!(api.len(collection), 1);
        api.unserve_kind("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy");
        assert_eq!(api.len(collection), 0);
        assert!(
            api.state
                .lock()
                .discovery("policy.networking.k8s.io/v1alpha2")
                .is_none()
        );
    }
}

//! An in-memory Kubernetes API for the writers of this module: the demo's Events and
//! ProbeSpec statuses go through the real [`EventRecorder`](super::events::EventRecorder) and
//! [`SpecStatusWriter`](super::status::SpecStatusWriter) into it (a `kube::Client` over a tower
//! service), and the demo prints what they wrote.
//!
//! ```text
//! writers ──kube::Client──> MemoryApi (tower service)
//!   GET    …/{resource}/{name}              the stored object, or 404
//!   POST   …/{resource}                     create (409 when it exists)
//!   PATCH  …/{resource}/{name}[/status]     JSON merge patch (RFC 7386); a metadata.resourceVersion
//!                                           in the patch is a precondition (409 when stale);
//!                                           on /status only the status is taken
//!   DELETE …/{resource}/{name}              delete (a uid precondition is honoured)
//! ```
//!
//! Only what the writers use is served; anything else is a 404 `Status` as the API server
//! would send. Stored objects are bounded ([`MAX_OBJECTS`]): past it, the oldest Events go
//! first, and creating anything else is refused (429).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

/// The most objects the store holds (Events included).
pub const MAX_OBJECTS: usize = 10_000;
/// The largest request body read.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Where an object lives: API group (empty for the core group), resource, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectPath {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectPath {
    /// The path of a kind the demo stores, from an object's `apiVersion`, `kind` and
    /// metadata; `None` for other kinds.
    pub fn of(object: &Value) -> Option<Self> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let (group, resource, namespaced) = match (api_version, object.get("kind")?.as_str()?) {
            (v, "ProbeSpec") if v.starts_with("netreach.dev/") => {
                ("netreach.dev", "probespecs", true)
            }
            (v, "ClusterProbeSpec") if v.starts_with("netreach.dev/") => {
                ("netreach.dev", "clusterprobespecs", false)
            }
            (v, "ProbeRequest") if v.starts_with("netreach.dev/") => {
                ("netreach.dev", "proberequests", true)
            }
            _ => return None,
        };
        let name = object.pointer("/metadata/name")?.as_str()?.to_string();
        let namespace = namespaced.then(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        });
        Some(Self {
            group: group.into(),
            resource: resource.into(),
            namespace,
            name,
        })
    }
}

/// A request path split up: `/api/v1/...` or `/apis/{group}/{version}/...`, then
/// `[namespaces/{ns}/]{resource}[/{name}[/{subresource}]]`.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    group: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_string()), rest),
        _ => (None, rest),
    };
    let owned = |s: &&str| (*s).to_string();
    match rest {
        [resource] => Some(Route {
            group,
            namespace,
            resource: owned(resource),
            name: None,
            subresource: None,
        }),
        [resource, name] => Some(Route {
            group,
            namespace,
            resource: owned(resource),
            name: Some(owned(name)),
            subresource: None,
        }),
        [resource, name, sub] => Some(Route {
            group,
            namespace,
            resource: owned(resource),
            name: Some(owned(name)),
            subresource: Some(owned(sub)),
        }),
        _ => None,
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<ObjectPath, Value>,
    /// Event paths, oldest first (what goes when the store is full).
    events: VecDeque<ObjectPath>,
    /// Every Event written (created or updated), in order: `(sequence, object)`.
    event_log: VecDeque<(u64, Value)>,
    next_event_seq: u64,
    resource_version: u64,
    uid: u64,
    /// The most objects held ([`MAX_OBJECTS`] unless a test says otherwise).
    capacity: usize,
}

impl Store {
    fn bump(&mut self, object: &mut Value) {
        self.resource_version += 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                Value::String(self.resource_version.to_string()),
            );
        }
    }

    fn log_event(&mut self, object: &Value) {
        self.next_event_seq += 1;
        self.event_log
            .push_back((self.next_event_seq, object.clone()));
        while self.event_log.len() > self.capacity {
            self.event_log.pop_front();
        }
    }
}

/// The in-memory API; cheap to clone (one shared store).
#[derive(Clone, Debug)]
pub struct MemoryApi {
    store: Arc<Mutex<Store>>,
}

type Reply = Response<Body>;

fn reply(status: StatusCode, body: &Value) -> Reply {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn failure(status: StatusCode, reason: &str, message: String) -> Reply {
    reply(
        status,
        &json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": message, "reason": reason, "code": status.as_u16(),
        }),
    )
}

impl Default for MemoryApi {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryApi {
    pub fn new() -> Self {
        Self::with_capacity(MAX_OBJECTS)
    }

    /// An API that holds at most `capacity` objects.
    pub fn with_capacity(capacity: usize) -> Self {
        let store = Store {
            capacity,
            ..Store::default()
        };
        Self {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// A client whose every request this API answers.
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Makes the stored objects of the kinds [`ObjectPath::of`] knows exactly `objects`:
    /// new ones are created, changed ones get the new spec and keep their status (as the API
    /// server keeps it across spec updates), missing ones are deleted.
    pub fn sync(&self, objects: &[Value]) {
        let mut store = self.store.lock();
        let wanted: BTreeMap<ObjectPath, &Value> = objects
            .iter()
            .filter_map(|o| Some((ObjectPath::of(o)?, o)))
            .collect();
        store
            .objects
            .retain(|path, _| path.resource == "events" || wanted.contains_key(path));
        for (path, object) in wanted {
            let mut object = object.clone();
            if let Some(status) = store.objects.get(&path).and_then(|o| o.get("status")) {
                object["status"] = status.clone();
            } else if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
            if store.objects.get(&path).is_some_and(|old| {
                old.get("spec") == object.get("spec")
                    && old.pointer("/metadata/labels") == object.pointer("/metadata/labels")
            }) {
                continue;
            }
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.entry("namespace")
                    .or_insert_with(|| path.namespace.clone().map_or(Value::Null, Value::String));
                if path.namespace.is_none() {
                    meta.remove("namespace");
                }
                meta.insert("generation".into(), json!(1));
            }
            store.bump(&mut object);
            store.objects.insert(path, object);
        }
    }

    /// A stored object.
    pub fn get(&self, path: &ObjectPath) -> Option<Value> {
        self.store.lock().objects.get(path).cloned()
    }

    /// Every stored object of `resource` (e.g. `probespecs`), in path order.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        self.store
            .lock()
            .objects
            .iter()
            .filter(|(path, _)| path.resource == resource)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// The Events written (created, or their series updated) after sequence `after`, with
    /// the newest sequence number.
    pub fn events_after(&self, after: u64) -> (Vec<Value>, u64) {
        let store = self.store.lock();
        let events = store
            .event_log
            .iter()
            .filter(|(seq, _)| *seq > after)
            .map(|(_, event)| event.clone())
            .collect();
        (events, store.next_event_seq)
    }

    /// Answers one request as the API server would (see the module's table).
    pub async fn handle(&self, request: Request<Body>) -> Reply {
        let (parts, body) = request.into_parts();
        let Some(route) = route(parts.uri.path()) else {
            return failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} is not served here", parts.uri.path()),
            );
        };
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(message) => return failure(StatusCode::BAD_REQUEST, "BadRequest", message),
        };
        let mut store = self.store.lock();
        match (parts.method, route.name.clone()) {
            (Method::GET, Some(name)) if route.subresource.is_none() => {
                let path = object_path(&route, name);
                match store.objects.get(&path) {
                    Some(object) => reply(StatusCode::OK, object),
                    None => not_found(&path),
                }
            }
            (Method::POST, None) => create(&mut store, &route, body),
            (Method::PATCH, Some(name)) => {
                let status_only = match route.subresource.as_deref() {
                    None => false,
                    Some("status") => true,
                    Some(other) => {
                        return failure(
                            StatusCode::NOT_FOUND,
                            "NotFound",
                            format!("subresource {other} is not served here"),
                        );
                    }
                };
                patch(&mut store, object_path(&route, name), &body, status_only)
            }
            (Method::DELETE, Some(name)) if route.subresource.is_none() => {
                delete(&mut store, object_path(&route, name), &body)
            }
            (method, _) => failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method} {} is not served here", parts.uri.path()),
            ),
        }
    }
}

async fn read_body(body: Body) -> Result<Value, String> {
    let bytes = http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the body is not JSON: {e}"))
}

fn object_path(route: &Route, name: String) -> ObjectPath {
    ObjectPath {
        group: route.group.clone(),
        resource: route.resource.clone(),
        namespace: route.namespace.clone(),
        name,
    }
}

fn not_found(path: &ObjectPath) -> Reply {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} {:?} not found", path.resource, path.name),
    )
}

fn create(store: &mut Store, route: &Route, mut object: Value) -> Reply {
    let Some(name) = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value".into(),
        );
    };
    let path = object_path(route, name);
    if store.objects.contains_key(&path) {
        return failure(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} {:?} already exists", path.resource, path.name),
        );
    }
    let is_event = path.resource == "events";
    if store.objects.len() >= store.capacity {
        let Some(oldest) = is_event.then(|| store.events.pop_front()).flatten() else {
            return failure(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!("the in-memory API holds at most {} objects", store.capacity),
            );
        };
        store.objects.remove(&oldest);
    }
    store.uid += 1;
    let uid = format!("memory-{}", store.uid);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("uid".into(), Value::String(uid));
    }
    store.bump(&mut object);
    if is_event {
        store.events.push_back(path.clone());
        store.log_event(&object);
    }
    store.objects.insert(path, object.clone());
    reply(StatusCode::CREATED, &object)
}

fn patch(store: &mut Store, path: ObjectPath, body: &Value, status_only: bool) -> Reply {
    let Some(current) = store.objects.get(&path) else {
        return not_found(&path);
    };
    if let Some(wanted) = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != Some(wanted)
    {
        return failure(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {:?}: the object has been modified",
                path.resource, path.name
            ),
        );
    }
    let mut object = current.clone();
    if status_only {
        // Stored objects are JSON objects (create and sync only take those).
        if let Some(status) = body.get("status") {
            merge_patch(&mut object["status"], status);
        }
    } else {
        let mut body = body.clone();
        // The precondition is not part of the change.
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        merge_patch(&mut object, &body);
    }
    store.bump(&mut object);
    if path.resource == "events" {
        store.log_event(&object);
    }
    store.objects.insert(path, object.clone());
    reply(StatusCode::OK, &object)
}

fn delete(store: &mut Store, path: ObjectPath, body: &Value) -> Reply {
    let Some(current) = store.objects.get(&path) else {
        return not_found(&path);
    };
    if let Some(uid) = body.pointer("/preconditions/uid").and_then(Value::as_str)
        && current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
    {
        return failure(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Precondition failed: UID in precondition: {uid}"),
        );
    }
    store.events.retain(|p| *p != path);
    store.objects.remove(&path);
    reply(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
    )
}

#[cfg(test)]
mod tests;

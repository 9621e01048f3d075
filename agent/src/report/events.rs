//! Kubernetes Events on the source pod, so `kubectl describe pod` (the runbook's step 2) shows
//! why its paths break.
//!
//! ```text
//! pair verdict changes ──reason_for()──> EventReason ──EventRecorder::publish──┬─ dedupe (pod, reason, message)
//!                                                                               ├─ token bucket per source pod
//!                                                                               └─> POST events.k8s.io/v1 Event
//!                                                                                   PATCH its series on a repeat
//! ```
//!
//! - **API.** `events.k8s.io/v1`: it has `regarding`, `reportingController`/`reportingInstance`
//!   and `series`, and the apiserver serves the same objects through `core/v1` with
//!   `involvedObject`, so `kubectl describe pod` and `kubectl get events` list them.
//! - **Reasons.** Warning `NetworkPolicyDenied` when a pair of an `expect: Allow` spec becomes
//!   `blocked_by_policy` (the note is the diagnosis summary, which names the policy), Warning
//!   `ProbeFailed` when a pair becomes `unexpected_block` (whatever the expectation: a data-plane
//!   fault is news either way). See [`reason_for`].
//! - **Dedupe.** The same pod, reason and message within `dedupe_window` is counted, not sent.
//!   When it recurs after the window, the existing Event's `series` is patched (count and
//!   `lastObservedTime`, the events.k8s.io way); if that Event expired (404), a new one is made.
//! - **Rate limit.** A token bucket per source pod (`burst`, one token per `refill_every`)
//!   bounds what a flapping pod can write; excess events are dropped and reported as such.
//! - **Errors.** API errors are returned, never panics; a 404 on create (the pod's namespace is
//!   gone) is [`Published::PodGone`], not an error.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use parking_lot::Mutex;
use probe_spec::{Expectation, PairVerdict};
use serde_json::json;
use tracing::debug;

use crate::cluster::model::ObjectRef;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The controller name in `reportingController`.
pub const REPORTING_CONTROLLER: &str = "netreach.dev/agent";
/// The `action` of every event: what the agent was doing.
pub const ACTION: &str = "Probe";
/// events.k8s.io limits `note` to 1 kB.
pub const MAX_NOTE_BYTES: usize = 1024;

/// Why an Event could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating event {reason} on pod {pod}: {source}")]
    Create {
        pod: ObjectRef,
        reason: EventReason,
        #[source]
        source: kube::Error,
    },
    #[error("updating event series {event} on pod {pod}: {source}")]
    UpdateSeries {
        pod: ObjectRef,
        event: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Whether publishing again later may succeed (the API was away or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Create { source, .. } | Error::UpdateSeries { source, .. } => {
                crate::cluster::watch::backoff::is_transient(source)
            }
        }
    }

    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Create { .. } => "create",
            Error::UpdateSeries { .. } => "update_series",
        }
    }
}

/// The reasons netreach reports (bounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// A pair became `blocked_by_policy` although its spec expects it open.
    NetworkPolicyDenied,
    /// A pair became `unexpected_block`: the policy allows it, but it is not reachable.
    ProbeFailed,
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::NetworkPolicyDenied => "NetworkPolicyDenied",
            EventReason::ProbeFailed => "ProbeFailed",
        }
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event a verdict transition deserves, if any: only on *becoming* blocked (the previous
/// verdict differs), `NetworkPolicyDenied` only where `expect: Allow`.
pub fn reason_for(
    expect: Expectation,
    previous: Option<PairVerdict>,
    current: PairVerdict,
) -> Option<EventReason> {
    if previous == Some(current) {
        return None;
    }
    match (current, expect) {
        (PairVerdict::BlockedByPolicy | PairVerdict::PartiallyBlocked, Expectation::Allow) => {
            Some(EventReason::NetworkPolicyDenied)
        }
        (PairVerdict::UnexpectedBlock, _) => Some(EventReason::ProbeFailed),
        _ => None,
    }
}

/// The pod an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventTarget {
    pub pod: ObjectRef,
    /// The pod's UID, so the event does not attach to a later pod of the same name.
    pub uid: Option<String>,
}

/// What [`EventRecorder::publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// A new Event was created.
    Created,
    /// An existing Event's series was bumped to `count` occurrences.
    SeriesUpdated { count: i32 },
    /// Seen within the dedupe window: counted, not sent.
    Deduplicated,
    /// The pod's token bucket is empty: dropped.
    RateLimited,
    /// The API answered 404: the pod's namespace is gone.
    PodGone,
}

/// Dedupe and rate-limit settings.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// `reportingInstance`: this agent, e.g. `netreach-node-1`.
    pub instance: String,
    /// A repeat within this window is not sent.
    pub dedupe_window: Duration,
    /// How long a sent Event is remembered for series updates (the apiserver keeps Events
    /// for an hour by default).
    pub series_ttl: Duration,
    /// Events a pod may get in a burst.
    pub burst: u32,
    /// One more token per this much time.
    pub refill_every: Duration,
}

impl EventsConfig {
    pub fn for_node(node: &str) -> Self {
        Self {
            instance: truncate(&format!("netreach-{node}"), 128).to_string(),
            dedupe_window: Duration::from_secs(10 * 60),
            series_ttl: Duration::from_secs(55 * 60),
            burst: 5,
            refill_every: Duration::from_secs(60),
        }
    }
}

// === impl EventRecorder ===

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    pod: ObjectRef,
    reason: EventReason,
    message: String,
}

#[derive(Debug)]
struct Sent {
    /// The Event's name, for series updates.
    name: String,
    /// When it was last written to the API.
    last_sent: SystemTime,
    /// Occurrences so far, including deduplicated ones.
    count: i32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: SystemTime,
}

#[derive(Debug, Default)]
struct State {
    sent: HashMap<Key, Sent>,
    buckets: HashMap<ObjectRef, Bucket>,
}

/// Writes deduplicated, rate-limited Warning Events on source pods.
pub struct EventRecorder {
    client: Client,
    config: EventsConfig,
    state: Mutex<State>,
}

impl fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRecorder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What to do, decided under the lock.
enum Plan {
    Done(Published),
    Create { name: String },
    Series { name: String, count: i32 },
}

impl EventRecorder {
    pub fn new(client: Client, config: EventsConfig) -> Self {
        Self {
            client,
            config,
            state: Mutex::default(),
        }
    }

    /// Publishes a Warning `reason` with `message` on `target`'s pod.
    pub async fn publish(
        &self,
        target: &EventTarget,
        reason: EventReason,
        message: &str,
    ) -> Result<Published> {
        self.publish_at(target, reason, message, SystemTime::now())
            .await
    }

    /// [`Self::publish`] at a given time (tests drive the clock).
    pub async fn publish_at(
        &self,
        target: &EventTarget,
        reason: EventReason,
        message: &str,
        now: SystemTime,
    ) -> Result<Published> {
        let note = truncate(message, MAX_NOTE_BYTES);
        let key = Key {
            pod: target.pod.clone(),
            reason,
            message: note.to_string(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &target.pod.namespace);
        match self.plan(&key, now) {
            Plan::Done(published) => Ok(published),
            Plan::Series { name, count } => {
                let patch = json!({
                    "series": {"count": count, "lastObservedTime": micro_time(now)},
                });
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(Published::SeriesUpdated { count }),
                    // The Event expired: start a new one.
                    Err(e) if is_not_found(&e) => {
                        debug!(event = %name, "event expired; creating a new one");
                        let name = event_name(&target.pod, now);
                        self.remember(&key, &name, now);
                        self.create(&api, target, reason, note, &key, name, now)
                            .await
                    }
                    Err(source) => {
                        self.not_sent(&key);
                        Err(Error::UpdateSeries {
                            pod: target.pod.clone(),
                            event: name,
                            source,
                        })
                    }
                }
            }
            Plan::Create { name } => {
                self.create(&api, target, reason, note, &key, name, now)
                    .await
            }
        }
    }

    /// Decides under the lock (no `.await`), and reserves the key so a concurrent publish of
    /// the same event deduplicates instead of racing.
    fn plan(&self, key: &Key, now: SystemTime) -> Plan {
        let mut state = self.state.lock();
        let ttl = self.config.series_ttl;
        state.sent.retain(|_, s| elapsed(s.last_sent, now) < ttl);
        if let Some(sent) = state.sent.get_mut(key)
            && elapsed(sent.last_sent, now) < self.config.dedupe_window
        {
            sent.count = sent.count.saturating_add(1);
            return Plan::Done(Published::Deduplicated);
        }
        if !self.take_token(&mut state, &key.pod, now) {
            return Plan::Done(Published::RateLimited);
        }
        match state.sent.get_mut(key) {
            Some(sent) => {
                sent.count = sent.count.saturating_add(1);
                sent.last_sent = now;
                Plan::Series {
                    name: sent.name.clone(),
                    count: sent.count,
                }
            }
            None => {
                let name = event_name(&key.pod, now);
                state.sent.insert(
                    key.clone(),
                    Sent {
                        name: name.clone(),
                        last_sent: now,
                        count: 1,
                    },
                );
                Plan::Create { name }
            }
        }
    }

    fn take_token(&self, state: &mut State, pod: &ObjectRef, now: SystemTime) -> bool {
        let burst = f64::from(self.config.burst.max(1));
        let per_sec = 1.0 / self.config.refill_every.as_secs_f64().max(f64::EPSILON);
        // Full buckets are the same as absent ones: drop them so the map stays small.
        state
            .buckets
            .retain(|_, b| b.tokens + elapsed(b.updated, now).as_secs_f64() * per_sec < burst);
        let bucket = state.buckets.entry(pod.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens =
            (bucket.tokens + elapsed(bucket.updated, now).as_secs_f64() * per_sec).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back the token a write that did not happen took.
    /// Undoes what [`Self::plan`] reserved for a write that failed: the next attempt tries
    /// again instead of deduplicating, and the token goes back (an outage must not use up the
    /// pod's budget, or the Event would be rate limited away once the API is back).
    fn not_sent(&self, key: &Key) {
        let burst = f64::from(self.config.burst.max(1));
        let mut state = self.state.lock();
        state.sent.remove(key);
        if let Some(bucket) = state.buckets.get_mut(&key.pod) {
            bucket.tokens = (bucket.tokens + 1.0).min(burst);
        }
    }

    fn remember(&self, key: &Key, name: &str, now: SystemTime) {
        let mut state = self.state.lock();
        let sent = state.sent.entry(key.clone()).or_insert(Sent {
            name: name.to_string(),
            last_sent: now,
            count: 0,
        });
        sent.name = name.to_string();
        sent.last_sent = now;
        sent.count = 1;
    }

    fn forget(&self, key: &Key) {
        self.state.lock().sent.remove(key);
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        api: &Api<Event>,
        target: &EventTarget,
        reason: EventReason,
        note: &str,
        key: &Key,
        name: String,
        now: SystemTime,
    ) -> Result<Published> {
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(target.pod.namespace.to_string()),
                ..ObjectMeta::default()
            },
            event_time: Some(micro_time(now)),
            type_: Some("Warning".into()),
            reason: Some(reason.as_str().into()),
            action: Some(ACTION.into()),
            note: Some(note.to_string()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(target.pod.namespace.to_string()),
                name: Some(target.pod.name.to_string()),
                uid: target.uid.clone(),
                ..ObjectReference::default()
            }),
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            reporting_instance: Some(self.config.instance.clone()),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => Ok(Published::Created),
            Err(e) if is_not_found(&e) => {
                self.forget(key);
                Ok(Published::PodGone)
            }
            Err(source) => {
                self.not_sent(key);
                Err(Error::Create {
                    pod: target.pod.clone(),
                    reason,
                    source,
                })
            }
        }
    }
}

// === Helpers ===

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or(Duration::ZERO)
}

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn micro_time(t: SystemTime) -> MicroTime {
    MicroTime(timestamp(t))
}

/// `<pod>.<hex nanoseconds>`, like kubectl and client-go name events (names are ≤ 253).
fn event_name(pod: &ObjectRef, now: SystemTime) -> String {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    format!("{}.{nanos:x}", truncate(&pod.name, 253 - 17))
}

/// The longest prefix of `s` within `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;

//! The Event publisher task: the scheduler queues an [`EventNotice`] on each verdict transition
//! that deserves one; this task writes them through the deduplicating, rate-limited
//! [`EventRecorder`], so a slow API server never stalls probing.
//!
//! ```text
//! ProbeLoop::finish ──reason_for()──> EventNotice ──mpsc (bounded; full: dropped, warned)──> pending
//!   (one per pod and reason, newest message, at most 256) ──EventRecorder::publish──> API
//!   a transient failure: the same one again after the write backoff (1 s .. 30 s, jittered)
//! ```

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::cluster::watch::backoff::WatchBackoff;
use crate::report::events::{EventReason, EventRecorder, EventTarget, Published};

/// How many Events may wait for the API server before new ones are dropped.
pub const EVENT_QUEUE: usize = 256;

/// One Event to publish on a source pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNotice {
    pub target: EventTarget,
    pub reason: EventReason,
    /// The diagnosis summary (it names the policy).
    pub message: String,
}

/// Publishes queued Events until the queue's senders are gone (the scheduler stopped).
///
/// An Event the API could not take for a transient reason (down, overloaded) waits in a
/// bounded list of pending Events, deduplicated by pod and reason (the newest message wins),
/// and is published again after the write backoff (1 s doubling to 30 s, jittered); once one
/// goes through, the rest follow one at a time through the recorder's rate limit, never as a
/// burst. Past [`EVENT_QUEUE`] pending, the oldest is dropped with a warning.
pub async fn publish_events(recorder: EventRecorder, mut queue: mpsc::Receiver<EventNotice>) {
    let mut pending = Pending::default();
    let mut backoff = WatchBackoff::for_writes(WatchBackoff::seed(0xE7E7));
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut open = true;
    while open || !pending.is_empty() {
        if retry_at.is_none_or(|at| at <= tokio::time::Instant::now()) {
            retry_at = None;
            while let Some(notice) = pending.front() {
                match publish(&recorder, notice).await {
                    Outcome::Done => {
                        pending.pop_front();
                        backoff.reset();
                    }
                    Outcome::Retry => {
                        let delay = backoff.next_delay();
                        debug!(pending = pending.len(), ?delay, "events to retry");
                        retry_at = Some(tokio::time::Instant::now() + delay);
                        break;
                    }
                }
            }
        }
        if !open {
            // The scheduler stopped: what is still pending is given up, and said.
            if !pending.is_empty() {
                warn!(
                    pending = pending.len(),
                    "stopping with events not published"
                );
            }
            return;
        }
        tokio::select! {
            notice = queue.recv() => match notice {
                Some(notice) => {
                    if let Some(dropped) = pending.push(notice) {
                        warn!(pod = %dropped.target.pod, reason = %dropped.reason, "event dropped: too many pending while the API is away");
                    }
                }
                None => open = false,
            },
            () = super::sleep_until(retry_at), if retry_at.is_some() => {}
        }
    }
}

/// What became of one publish.
enum Outcome {
    Done,
    Retry,
}

async fn publish(recorder: &EventRecorder, notice: &EventNotice) -> Outcome {
    let EventNotice {
        target,
        reason,
        message,
    } = notice;
    match recorder.publish(target, *reason, message).await {
        Ok(Published::RateLimited) => {
            debug!(pod = %target.pod, %reason, "event rate limited");
            Outcome::Done
        }
        Ok(published) => {
            debug!(pod = %target.pod, %reason, ?published, "event");
            Outcome::Done
        }
        Err(error) if error.is_transient() => {
            warn!(pod = %target.pod, %reason, %error, error.kind = error.metric_label(), "cannot publish event; will retry");
            Outcome::Retry
        }
        Err(error) => {
            warn!(pod = %target.pod, %reason, %error, error.kind = error.metric_label(), "cannot publish event");
            Outcome::Done
        }
    }
}

/// Events waiting for the API, oldest first, one per pod and reason, at most [`EVENT_QUEUE`].
#[derive(Debug, Default)]
struct Pending {
    notices: std::collections::VecDeque<EventNotice>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.notices.is_empty()
    }

    fn len(&self) -> usize {
        self.notices.len()
    }

    fn front(&self) -> Option<&EventNotice> {
        self.notices.front()
    }

    fn pop_front(&mut self) {
        self.notices.pop_front();
    }

    /// Adds `notice`, or replaces the pending one of its pod and reason (keeping its place);
    /// returns the oldest notice if the list was full.
    fn push(&mut self, notice: EventNotice) -> Option<EventNotice> {
        if let Some(same) = self
            .notices
            .iter_mut()
            .find(|n| n.target.pod == notice.target.pod && n.reason == notice.reason)
        {
            *same = notice;
            return None;
        }
        let dropped = (self.notices.len() >= EVENT_QUEUE)
            .then(|| self.notices.pop_front())
            .flatten();
        self.notices.push_back(notice);
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectRef;

    fn notice(pod: &str, reason: EventReason, message: &str) -> EventNotice {
        EventNotice {
            target: EventTarget {
                pod: pod.parse::<ObjectRef>().expect("ns/name"),
                uid: None,
            },
            reason,
            message: message.into(),
        }
    }

    #[test]
    fn pending_events_are_deduplicated_and_bounded() {
        let mut pending = Pending::default();
        assert!(
            pending
                .push(notice("shop/a", EventReason::NetworkPolicyDenied, "first"))
                .is_none()
        );
        assert!(
            pending
                .push(notice("shop/a", EventReason::NetworkPolicyDenied, "newest"))
                .is_none()
        );
        assert!(
            pending
                .push(notice("shop/a", EventReason::ProbeFailed, "other reason"))
                .is_none()
        );
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.front().map(|n| n.message.as_str()), Some("newest"));
        for i in 0..EVENT_QUEUE {
            pending.push(notice(&format!("shop/p{i}"), EventReason::ProbeFailed, "x"));
        }
        assert_eq!(pending.len(), EVENT_QUEUE);
        assert_eq!(
            pending.front().map(|n| n.target.pod.to_string()),
            Some("shop/p0".to_string()),
            "the oldest two went"
        );
    }

    /// Events queued while the API is down are published once it is back: deduplicated, the
    /// retries spaced by the backoff (a handful of attempts in a minute, not one per Event).
    #[tokio::test(start_paused = true)]
    async fn events_survive_an_outage_deduplicated_and_spaced() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

        use axum::routing::post;

        use crate::report::events::EventsConfig;

        let down = Arc::new(AtomicBool::new(true));
        let (attempts, created) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let router = {
            let (down, attempts, created) = (down.clone(), attempts.clone(), created.clone());
            axum::Router::new().route(
                "/apis/events.k8s.io/v1/namespaces/{namespace}/events",
                post(move |body: axum::body::Bytes| {
                    let (down, attempts, created) = (down.clone(), attempts.clone(), created.clone());
                    async move {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        if down.load(Ordering::Relaxed) {
                            return (
                                http::StatusCode::SERVICE_UNAVAILABLE,
                                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503}"#.to_string(),
                            );
                        }
                        created.fetch_add(1, Ordering::Relaxed);
                        (http::StatusCode::CREATED, String::from_utf8_lossy(&body).into_owned())
                    }
                }),
            )
        };
        let client = kube::Client::new(router, "default");
        let recorder = EventRecorder::new(client, EventsConfig::for_node("node-1"));
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let task = tokio::spawn(publish_events(recorder, rx));
        for n in [
            notice(
                "shop/a",
                EventReason::NetworkPolicyDenied,
                "denied by shop/deny",
            ),
            notice(
                "shop/a",
                EventReason::NetworkPolicyDenied,
                "denied by shop/deny (again)",
            ),
            notice("shop/b", EventReason::ProbeFailed, "blocked"),
        ] {
            tx.send(n).await.expect("queued");
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let during = attempts.load(Ordering::Relaxed);
        assert_eq!(created.load(Ordering::Relaxed), 0);
        // 1 s doubling to 30 s: about six attempts in a minute, one Event at a time.
        assert!(
            (3..=8).contains(&during),
            "{during} attempts during the outage"
        );

        down.store(false, Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_secs(31)).await;
        assert_eq!(
            created.load(Ordering::Relaxed),
            2,
            "both pods' Events, once each"
        );
        drop(tx);
        task.await.expect("the publisher ends with its queue");
    }
}

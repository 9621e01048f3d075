//! The Event publisher task: the scheduler queues an [`EventNotice`] on each verdict transition
//! that deserves one; this task writes them through the deduplicating, rate-limited
//! [`EventRecorder`], so a slow API server never stalls probing.
//!
//! ```text
//! ProbeLoop::finish ──reason_for()──> EventNotice ──mpsc (bounded; full: dropped, warned)──> EventRecorder::publish
//! ```

use tokio::sync::mpsc;
use tracing::{debug, warn};

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
pub async fn publish_events(recorder: EventRecorder, mut queue: mpsc::Receiver<EventNotice>) {
    while let Some(notice) = queue.recv().await {
        let EventNotice {
            target,
            reason,
            message,
        } = notice;
        match recorder.publish(&target, reason, &message).await {
            Ok(Published::RateLimited) => {
                debug!(pod = %target.pod, %reason, "event rate limited");
            }
            Ok(published) => debug!(pod = %target.pod, %reason, ?published, "event"),
            Err(error) => {
                warn!(pod = %target.pod, %reason, %error, error.kind = error.metric_label(), "cannot publish event");
            }
        }
    }
}

//! Tests of the event recorder against a mocked API server: the exact requests, dedupe,
//! series updates, rate limiting and error handling.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;
use crate::report::status::tests::{MERGE_PATCH, api_error, mock_client};

const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn target(name: &str) -> EventTarget {
    EventTarget {
        pod: ObjectRef::new("shop", name),
        uid: Some(format!("uid-{name}")),
    }
}

fn config() -> EventsConfig {
    EventsConfig {
        burst: 2,
        ..EventsConfig::for_node("node-1")
    }
}

const SUMMARY: &str = "shop/frontend -> pay/gateway:8443/TCP blocked by policy pay/default-deny (default_deny, ingress)";

#[test]
fn events_only_on_becoming_blocked() {
    use Expectation::{Allow, Deny};
    use PairVerdict::*;
    let cases = [
        (
            Allow,
            None,
            BlockedByPolicy,
            Some(EventReason::NetworkPolicyDenied),
        ),
        (
            Allow,
            Some(Ok),
            BlockedByPolicy,
            Some(EventReason::NetworkPolicyDenied),
        ),
        (Allow, Some(BlockedByPolicy), BlockedByPolicy, None),
        (Deny, Some(Ok), BlockedByPolicy, None),
        (
            Allow,
            Some(Ok),
            UnexpectedBlock,
            Some(EventReason::ProbeFailed),
        ),
        (Deny, None, UnexpectedBlock, Some(EventReason::ProbeFailed)),
        (Allow, Some(UnexpectedBlock), UnexpectedBlock, None),
        (Allow, Some(BlockedByPolicy), Ok, None),
        (Allow, None, PolicyNotEnforced, None),
    ];
    for (expect, previous, current, want) in cases {
        assert_eq!(
            reason_for(expect, previous, current),
            want,
            "{expect:?} {previous:?} -> {current:?}"
        );
    }
}

#[tokio::test]
async fn creates_a_warning_event_on_the_source_pod() {
    let (client, mut server) = mock_client();
    let recorder = EventRecorder::new(client, config());
    let frontend = target("frontend");
    let (result, post) = tokio::join!(
        recorder.publish_at(&frontend, EventReason::NetworkPolicyDenied, SUMMARY, at(0)),
        server.respond(201, json!({}))
    );
    assert_eq!(result.unwrap(), Published::Created);
    assert_eq!(post.method, http::Method::POST);
    assert_eq!(post.path, EVENTS_PATH);
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    let mut body = post.body;
    let name = body["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("frontend."), "{name}");
    body["metadata"]["name"] = json!("<name>");
    assert_eq!(
        body,
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "<name>", "namespace": "shop"},
            "eventTime": "2027-01-15T08:00:00.000000Z",
            "type": "Warning",
            "reason": "NetworkPolicyDenied",
            "action": "Probe",
            "note": SUMMARY,
            "regarding": {
                "apiVersion": "v1", "kind": "Pod", "namespace": "shop",
                "name": "frontend", "uid": "uid-frontend",
            },
            "reportingController": "netreach.dev/agent",
            "reportingInstance": "netreach-node-1",
        })
    );
}

#[tokio::test]
async fn repeats_are_deduplicated_then_counted_in_the_series() {
    let (client, mut server) = mock_client();
    let recorder = EventRecorder::new(client, config());
    let frontend = target("frontend");
    let publish = |secs| {
        recorder.publish_at(
            &frontend,
            EventReason::NetworkPolicyDenied,
            SUMMARY,
            at(secs),
        )
    };
    let (result, post) = tokio::join!(publish(0), server.respond(201, json!({})));
    assert_eq!(result.unwrap(), Published::Created);
    let name = post.body["metadata"]["name"].as_str().unwrap().to_string();

    // Within the window: counted locally, nothing sent.
    assert_eq!(publish(60).await.unwrap(), Published::Deduplicated);
    assert_eq!(publish(120).await.unwrap(), Published::Deduplicated);
    server.expect_none().await;
    // A different message is a different event.
    let (result, _) = tokio::join!(
        recorder.publish_at(&frontend, EventReason::ProbeFailed, "other", at(130)),
        server.respond(201, json!({}))
    );
    assert_eq!(result.unwrap(), Published::Created);

    // After the window: the series of the first event is bumped.
    let (result, patch) = tokio::join!(publish(700), server.respond(200, json!({})));
    assert_eq!(result.unwrap(), Published::SeriesUpdated { count: 4 });
    assert_eq!(patch.method, http::Method::PATCH);
    assert_eq!(patch.path, format!("{EVENTS_PATH}/{name}"));
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(
        patch.body,
        json!({"series": {"count": 4, "lastObservedTime": "2027-01-15T08:11:40.000000Z"}})
    );

    // Later still, the event has expired on the server: a new one is created.
    let (result, (patch, post)) = tokio::join!(publish(1400), async {
        let patch = server.respond(404, api_error(404, "NotFound")).await;
        let post = server.respond(201, json!({})).await;
        (patch, post)
    });
    assert_eq!(result.unwrap(), Published::Created);
    assert_eq!(patch.method, http::Method::PATCH);
    assert_eq!(
        (post.method, post.path.as_str()),
        (http::Method::POST, EVENTS_PATH)
    );
    assert_ne!(post.body["metadata"]["name"], json!(name));
}

#[tokio::test]
async fn a_token_bucket_per_pod_limits_the_rate() {
    let (client, mut server) = mock_client();
    let recorder = EventRecorder::new(client, config()); // burst 2, one token a minute
    let publish = |pod: &'static str, msg: &'static str, secs| {
        let target = target(pod);
        let recorder = &recorder;
        async move {
            recorder
                .publish_at(&target, EventReason::ProbeFailed, msg, at(secs))
                .await
        }
    };
    for msg in ["a", "b"] {
        let (result, _) = tokio::join!(publish("frontend", msg, 0), server.respond(201, json!({})));
        assert_eq!(result.unwrap(), Published::Created);
    }
    assert_eq!(
        publish("frontend", "c", 1).await.unwrap(),
        Published::RateLimited
    );
    server.expect_none().await;
    // Another pod has its own bucket.
    let (result, _) = tokio::join!(publish("api", "c", 1), server.respond(201, json!({})));
    assert_eq!(result.unwrap(), Published::Created);
    // A minute later, one more token.
    let (result, _) = tokio::join!(publish("frontend", "c", 61), server.respond(201, json!({})));
    assert_eq!(result.unwrap(), Published::Created);
    assert_eq!(
        publish("frontend", "d", 62).await.unwrap(),
        Published::RateLimited
    );
}

/// A series update that fails gives its token back, as a failed creation does: failures
/// during an outage do not use up the pod's budget.
#[tokio::test]
async fn a_failed_write_gives_its_token_back() {
    let (client, mut server) = mock_client();
    let recorder = EventRecorder::new(client, config()); // burst 2, one token a minute
    let frontend = target("frontend");
    let publish = |msg: &'static str, secs| {
        recorder.publish_at(&frontend, EventReason::ProbeFailed, msg, at(secs))
    };
    let (result, _) = tokio::join!(publish("a", 0), server.respond(201, json!({})));
    assert_eq!(result.unwrap(), Published::Created);
    // Past the dedupe window (the bucket full again) the series is bumped, and that fails.
    let (result, patch) = tokio::join!(
        publish("a", 700),
        server.respond(503, api_error(503, "ServiceUnavailable"))
    );
    assert_eq!(result.unwrap_err().metric_label(), "update_series");
    assert_eq!(patch.method, http::Method::PATCH);
    // Both tokens are still there (the failed update was not sent, so "a" is a new Event).
    for msg in ["a", "b"] {
        let (result, _) = tokio::join!(publish(msg, 702), server.respond(201, json!({})));
        assert_eq!(result.unwrap(), Published::Created, "{msg}");
    }
    assert_eq!(publish("c", 703).await.unwrap(), Published::RateLimited);
}

#[tokio::test]
async fn api_errors_are_returned_and_a_vanished_namespace_is_tolerated() {
    let (client, mut server) = mock_client();
    let recorder = EventRecorder::new(
        client,
        EventsConfig {
            burst: 10,
            ..config()
        },
    );
    let frontend = target("frontend");
    let publish =
        |secs| recorder.publish_at(&frontend, EventReason::ProbeFailed, SUMMARY, at(secs));
    let (result, _) = tokio::join!(
        publish(0),
        server.respond(500, api_error(500, "InternalError"))
    );
    let err = result.unwrap_err();
    assert_eq!(err.metric_label(), "create");
    assert!(err.to_string().contains("shop/frontend"), "{err}");

    // The failed event was not remembered: the retry is sent, not deduplicated.
    let (result, _) = tokio::join!(publish(1), server.respond(404, api_error(404, "NotFound")));
    assert_eq!(result.unwrap(), Published::PodGone);

    let (result, _) = tokio::join!(publish(2), server.respond(201, json!({})));
    assert_eq!(result.unwrap(), Published::Created);
}

#[test]
fn long_notes_are_truncated_on_a_char_boundary() {
    let long = "é".repeat(600); // 1200 bytes
    let cut = truncate(&long, MAX_NOTE_BYTES);
    assert_eq!(cut.len(), 1024);
    assert!(cut.chars().all(|c| c == 'é'));
    assert_eq!(truncate("short", 10), "short");
}

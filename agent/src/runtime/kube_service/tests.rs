//! Tests of [`KubeProbeService`] against a mocked API server: the exact TokenReview and
//! SubjectAccessReview requests, their outcomes (denied, allowed, API error), the probe target
//! mapping with a fake prober, and `POST /v1/probe` through the router.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use parking_lot::{Mutex, RwLock};
use prometheus::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::api::{AppState, ErrorBody, ProbeCallTarget, router};
use crate::cluster::Index;
use crate::cluster::load::Loaded;
use crate::cluster::model::ObjectRef;
use crate::cluster::model::Protocol;
use crate::pair::PairTarget;
use crate::testing::mock_api::{ApiServer, api_error, mock_client};

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

// === Fixtures ===

/// shop/frontend on node-1 (the agent's node), payments/gateway on node-2 with `https` 8443.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: payments}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, uid: 7d3c0a52-0000-4000-8000-000000000001, labels: {app: frontend}}
spec:
  nodeName: node-1
  containers: [{name: web, image: web, ports: [{name: http, containerPort: 8080}]}]
status: {phase: Running, podIP: 10.244.1.10, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: gateway, namespace: payments, uid: 7d3c0a52-0000-4000-8000-000000000002, labels: {app: gateway}}
spec:
  nodeName: node-2
  containers: [{name: gateway, image: gateway, ports: [{name: https, containerPort: 8443}]}]
status: {phase: Running, podIP: 10.244.2.30, conditions: [{type: Ready, status: "True"}]}
"#;

fn index() -> Arc<RwLock<Index>> {
    let mut loaded = Loaded::new();
    loaded.load_str("cluster.yaml", CLUSTER);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert!(loaded.parse_errors.is_empty(), "{:?}", loaded.parse_errors);
    Arc::new(RwLock::new(loaded.index))
}

fn report() -> PairReport {
    serde_json::from_value(json!({
        "from": "shop/frontend", "to": "payments/gateway", "ip": "10.244.2.30",
        "port": 8443, "protocol": "TCP", "outcome": "open", "policy_allowed": true,
        "verdict": "ok", "reason": "", "policies": [],
        "summary": "shop/frontend -> payments/gateway:8443/TCP is open",
        "explanation": "no policy isolates either side", "latency_seconds": 0.001,
        "last_probe": "2025-06-01T12:05:00Z",
    }))
    .unwrap()
}

/// Records every probe and answers with [`report`].
#[derive(Default)]
struct FakeProber {
    calls: Mutex<Vec<(ObjectRef, PairTarget, Duration)>>,
}

/// Pods named `gone` have left the prober's view.
impl OnDemandProber for FakeProber {
    fn probe_once<'a>(
        &'a self,
        from: &'a ObjectRef,
        target: PairTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<PairReport, String>> {
        Box::pin(async move {
            if &*from.name == "gone" {
                return Err(format!("source pod {from} is gone"));
            }
            self.calls.lock().push((from.clone(), target, timeout));
            Ok(report())
        })
    }
}

fn service() -> (KubeProbeService, ApiServer, Arc<FakeProber>) {
    let (client, server) = mock_client();
    let prober = Arc::new(FakeProber::default());
    let service = KubeProbeService::new(client, prober.clone());
    (service, server, prober)
}

fn alice() -> UserInfo {
    UserInfo {
        username: "alice".into(),
        uid: Some("uid-alice".into()),
        groups: vec!["devs".into(), "system:authenticated".into()],
        extra: BTreeMap::from([("scopes".to_string(), vec!["probe".to_string()])]),
    }
}

fn token_review(status: Value) -> Value {
    json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "metadata": {}, "spec": {"token": "redacted"}, "status": status,
    })
}

fn authenticated_alice() -> Value {
    token_review(json!({
        "authenticated": true,
        "audiences": ["netreach"],
        "user": {
            "username": "alice", "uid": "uid-alice",
            "groups": ["devs", "system:authenticated"],
            "extra": {"scopes": ["probe"]},
        },
    }))
}

fn access_review(allowed: bool) -> Value {
    json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "metadata": {}, "spec": {}, "status": {"allowed": allowed, "reason": "test"},
    })
}

// === TokenReview ===

#[tokio::test]
async fn token_review_request_and_allowed_user() {
    let (service, mut server, _) = service();
    let (user, request) = tokio::join!(
        service.authenticate("secret-token", TokenUse::Probe),
        server.respond(201, authenticated_alice()),
    );
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.path, TOKEN_REVIEWS);
    assert_eq!(request.body["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(request.body["kind"], "TokenReview");
    assert_eq!(
        request.body["spec"],
        json!({"token": "secret-token", "audiences": ["netreach"]})
    );
    assert_eq!(user.unwrap(), Some(alice()));
}

/// A token the API server accepts but not for `netreach` (the pod's own API token, a token
/// for another service), or an API server that ignores audiences: not authenticated.
#[tokio::test]
async fn token_review_needs_the_netreach_audience_confirmed() {
    let (service, mut server, _) = service();
    let user = json!({"username": "alice"});
    let cases = [
        (json!(["https://kubernetes.default.svc"]), None),
        (json!([]), None),
        (Value::Null, None),
        (json!(["other", "netreach"]), Some("alice")),
    ];
    for (audiences, expected) in cases {
        let mut status = json!({"authenticated": true, "user": user});
        if !audiences.is_null() {
            status["audiences"] = audiences.clone();
        }
        let (reviewed, _) = tokio::join!(
            service.authenticate("some-token", TokenUse::Probe),
            server.respond(201, token_review(status)),
        );
        let username = reviewed.unwrap().map(|user| user.username);
        assert_eq!(username.as_deref(), expected, "audiences {audiences}");
    }

    // Configured audiences are asked for; none at all asks for none and trusts the answer.
    let (client, mut server) = mock_client();
    let service = KubeProbeService::new(client, Arc::new(FakeProber::default()))
        .with_audiences(vec![], vec![]);
    let (reviewed, request) = tokio::join!(
        service.authenticate("some-token", TokenUse::Probe),
        server.respond(
            201,
            token_review(json!({"authenticated": true, "user": user}))
        ),
    );
    assert!(request.body["spec"].get("audiences").is_none());
    assert!(reviewed.unwrap().is_some());

    // Reads (Prometheus's own service-account token) default to the API server's audience.
    let (client, mut server) = mock_client();
    let service = KubeProbeService::new(client, Arc::new(FakeProber::default()));
    let (reviewed, request) = tokio::join!(
        service.authenticate("prometheus-token", TokenUse::Read),
        server.respond(
            201,
            token_review(json!({"authenticated": true, "user": user}))
        ),
    );
    assert_eq!(request.body["spec"], json!({"token": "prometheus-token"}));
    assert!(reviewed.unwrap().is_some());
}

#[tokio::test]
async fn token_review_denied_is_none() {
    let (service, mut server, _) = service();
    let denied = token_review(json!({"authenticated": false, "error": "invalid bearer token"}));
    let (user, _) = tokio::join!(
        service.authenticate("bad", TokenUse::Probe),
        server.respond(201, denied)
    );
    assert_eq!(user.unwrap(), None);

    // Authenticated without a username is no usable identity either.
    let nameless = token_review(json!({"authenticated": true, "user": {"groups": ["x"]}}));
    let (user, _) = tokio::join!(
        service.authenticate("odd", TokenUse::Probe),
        server.respond(201, nameless)
    );
    assert_eq!(user.unwrap(), None);
}

#[tokio::test]
async fn token_review_api_error_is_unavailable() {
    let (service, mut server, _) = service();
    let (user, _) = tokio::join!(
        service.authenticate("secret-token", TokenUse::Probe),
        server.respond(500, api_error(500, "InternalError", "etcd is down")),
    );
    let error = user.unwrap_err();
    assert!(matches!(error, ServiceError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("TokenReview failed"), "{error}");
}

// === SubjectAccessReview ===

#[tokio::test]
async fn access_review_request_and_allowed() {
    let (service, mut server, _) = service();
    let user = alice();
    let access = create_in("shop");
    let (allowed, request) = tokio::join!(
        service.authorize(&user, &access),
        server.respond(201, access_review(true)),
    );
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.path, ACCESS_REVIEWS);
    assert_eq!(request.body["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(request.body["kind"], "SubjectAccessReview");
    assert_eq!(
        request.body["spec"],
        json!({
            "user": "alice",
            "uid": "uid-alice",
            "groups": ["devs", "system:authenticated"],
            "extra": {"scopes": ["probe"]},
            "resourceAttributes": {
                "group": "netreach.dev",
                "resource": "proberequests",
                "verb": "create",
                "namespace": "shop",
            },
        })
    );
    assert!(allowed.unwrap());
}

fn create_in(namespace: &str) -> Access {
    Access::CreateProbeRequests {
        namespace: namespace.into(),
    }
}

#[tokio::test]
async fn access_reviews_ask_for_each_kind_of_access() {
    let (service, mut server, _) = service();
    let user = UserInfo {
        username: "bob".into(),
        ..UserInfo::default()
    };
    let cases = [
        (
            Access::GetPods {
                namespace: "payments".into(),
            },
            json!({"resourceAttributes": {"group": "", "resource": "pods", "verb": "get", "namespace": "payments"}}),
        ),
        (
            Access::GetUrl { path: "/metrics" },
            json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}),
        ),
        (
            Access::GetUrl { path: "/v1/pairs" },
            json!({"nonResourceAttributes": {"path": "/v1/pairs", "verb": "get"}}),
        ),
    ];
    for (access, attributes) in cases {
        let (allowed, request) = tokio::join!(
            service.authorize(&user, &access),
            server.respond(201, access_review(true)),
        );
        let mut expected = json!({"user": "bob"});
        for (key, value) in attributes.as_object().expect("object") {
            expected[key] = value.clone();
        }
        assert_eq!(request.body["spec"], expected, "{access}");
        assert!(allowed.unwrap());
    }
}

#[tokio::test]
async fn access_review_denied() {
    let (service, mut server, _) = service();
    let user = UserInfo {
        username: "bob".into(),
        ..UserInfo::default()
    };
    let access = create_in("payments");
    let (allowed, request) = tokio::join!(
        service.authorize(&user, &access),
        server.respond(201, access_review(false)),
    );
    // A user without uid, groups or extra sends only the name.
    assert_eq!(request.body["spec"]["user"], "bob");
    assert!(request.body["spec"].get("groups").is_none());
    assert!(request.body["spec"].get("uid").is_none());
    assert_eq!(
        request.body["spec"]["resourceAttributes"]["namespace"],
        "payments"
    );
    assert!(!allowed.unwrap());
}

#[tokio::test]
async fn access_review_api_error_is_unavailable() {
    let (service, mut server, _) = service();
    let user = alice();
    for (code, reason) in [(500, "InternalError"), (403, "Forbidden")] {
        let access = create_in("shop");
        let (allowed, _) = tokio::join!(
            service.authorize(&user, &access),
            server.respond(code, api_error(code, reason, "no")),
        );
        let error = allowed.unwrap_err();
        assert!(matches!(error, ServiceError::Unavailable(_)), "{error:?}");
        assert!(
            error.to_string().contains("SubjectAccessReview failed"),
            "{error}"
        );
    }
}

// === probe ===

fn call(target: ProbeCallTarget) -> ProbeCall {
    ProbeCall {
        requested_by: "alice".into(),
        from: ObjectRef::new("shop", "frontend"),
        target,
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn probe_maps_call_targets_to_pair_targets() {
    let (service, _server, prober) = service();
    let gateway = ObjectRef::new("payments", "gateway");
    let cases = [
        (
            // The prober re-resolves the pod's current IP in its snapshot.
            ProbeCallTarget::Pod {
                pod: gateway.clone(),
                ip: "10.244.9.9".parse().unwrap(),
                port: 8443,
                protocol: Protocol::Tcp,
            },
            PairTarget::Pod {
                pod: gateway.clone(),
                ip: "10.244.9.9".parse().unwrap(),
                port: 8443,
                protocol: Protocol::Tcp,
            },
        ),
        (
            ProbeCallTarget::Ip {
                ip: "192.0.2.10".parse().unwrap(),
                port: 53,
                protocol: Protocol::Udp,
            },
            PairTarget::Ip {
                ip: "192.0.2.10".parse().unwrap(),
                port: 53,
                protocol: Protocol::Udp,
            },
        ),
        (
            ProbeCallTarget::Dns {
                name: "api.shop.svc.cluster.local".into(),
            },
            PairTarget::Dns {
                name: "api.shop.svc.cluster.local".into(),
            },
        ),
    ];
    for (target, want) in cases {
        let got = service.probe(call(target)).await.unwrap();
        assert_eq!(got, report());
        let (from, target, timeout) = prober.calls.lock().pop().unwrap();
        assert_eq!(from, ObjectRef::new("shop", "frontend"));
        assert_eq!(target, want);
        assert_eq!(timeout, Duration::from_secs(2));
    }
}

#[tokio::test]
async fn probes_that_cannot_run_are_rejected_with_the_probers_reason() {
    let (service, _server, prober) = service();
    let mut from_gone = call(ProbeCallTarget::Dns {
        name: "example.com".into(),
    });
    from_gone.from = ObjectRef::new("shop", "gone");
    let error = service.probe(from_gone).await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::Rejected(m) if m == "source pod shop/gone is gone"),
        "{error:?}"
    );
    assert!(prober.calls.lock().is_empty());
}

// === POST /v1/probe through the router ===

struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    fn error(&self) -> ErrorBody {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn app(service: KubeProbeService) -> axum::Router {
    let (_, ready) = watch::channel(true);
    let (_, pairs) = watch::channel(Arc::new(Vec::new()));
    let state = AppState::new(
        "node-1",
        Arc::new(Registry::new()),
        index(),
        ready,
        pairs,
        Arc::new(service),
    );
    router(state)
}

async fn post_probe(app: axum::Router, token: &str, body: Value) -> Reply {
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/v1/probe")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(AxumBody::from(body.to_string()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body: body.to_vec(),
    }
}

fn probe_body() -> Value {
    json!({"from": "shop/frontend", "to": "payments/gateway", "port": "https"})
}

#[tokio::test]
async fn router_unauthenticated_token_is_401() {
    let (service, mut server, prober) = service();
    let (reply, review) = tokio::join!(
        post_probe(app(service), "stolen", probe_body()),
        server.respond(
            201,
            token_review(json!({"authenticated": false, "error": "token expired"}))
        ),
    );
    assert_eq!(review.path, TOKEN_REVIEWS);
    assert_eq!(review.body["spec"]["token"], "stolen");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error().error, "invalid_token");
    assert!(prober.calls.lock().is_empty());
}

#[tokio::test]
async fn router_access_denied_is_403() {
    let (service, mut server, prober) = service();
    let api = async {
        let token = server.respond(201, authenticated_alice()).await;
        let access = server.respond(201, access_review(false)).await;
        (token, access)
    };
    let (reply, (token, access)) =
        tokio::join!(post_probe(app(service), "alice-token", probe_body()), api);
    assert_eq!(token.path, TOKEN_REVIEWS);
    assert_eq!(access.path, ACCESS_REVIEWS);
    assert_eq!(access.body["spec"]["user"], "alice");
    assert_eq!(
        access.body["spec"]["resourceAttributes"]["namespace"],
        "shop"
    );
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let error = reply.error();
    assert_eq!(error.error, "forbidden");
    assert!(error.message.contains("alice"), "{}", error.message);
    assert!(prober.calls.lock().is_empty());
}

#[tokio::test]
async fn router_destination_namespace_denied_is_403_naming_the_permission() {
    let (service, mut server, prober) = service();
    let api = async {
        server.respond(201, authenticated_alice()).await;
        server.respond(201, access_review(true)).await;
        server.respond(201, access_review(false)).await;
    };
    let (reply, ()) = tokio::join!(post_probe(app(service), "alice-token", probe_body()), api);
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.error().message,
        "alice may not get pods in namespace payments"
    );
    assert!(prober.calls.lock().is_empty());
}

#[tokio::test]
async fn router_api_error_is_503() {
    let (service, mut server, _) = service();
    let (reply, _) = tokio::join!(
        post_probe(app(service), "alice-token", probe_body()),
        server.respond(500, api_error(500, "InternalError", "etcd is down")),
    );
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.error().error, "auth_unavailable");
}

#[tokio::test]
async fn router_allowed_probe_runs() {
    let (service, mut server, prober) = service();
    let api = async {
        server.respond(201, authenticated_alice()).await;
        server.respond(201, access_review(true)).await;
        server.respond(201, access_review(true)).await
    };
    let (reply, pods_review) =
        tokio::join!(post_probe(app(service), "alice-token", probe_body()), api);
    // The destination is in another namespace: its pods must be readable to the caller.
    assert_eq!(
        pods_review.body["spec"]["resourceAttributes"],
        json!({"group": "", "resource": "pods", "verb": "get", "namespace": "payments"})
    );
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let got: PairReport = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(got, report());
    let calls = prober.calls.lock();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].1,
        PairTarget::Pod {
            pod: ObjectRef::new("payments", "gateway"),
            ip: "10.244.2.30".parse().unwrap(),
            port: 8443,
            protocol: Protocol::Tcp,
        }
    );
}

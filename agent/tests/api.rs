//! The HTTP API through `router(state).oneshot(request)`: every route, the `/v1/pairs` filters,
//! and each way `POST /v1/probe` answers, with a fake `ProbeService` and the JSON fixtures under
//! `tests/data/api/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use netreach::api::{
    Access, ApiLimits, AppState, AuthMode, BoxFuture, ErrorBody, PairsResponse, ProbeCall,
    ProbeCallTarget, ProbeService, RateLimit, ServiceError, TokenUse, UserInfo, router,
};
use netreach::cluster::SpecRef;
use netreach::cluster::load::load_paths;
use netreach::cluster::model::{ObjectRef, Protocol};
use netreach::pair::{PairReport, PublishedPairs};
use netreach::report::metrics::{Exposition, IndexCollector, Metrics, PairKey, PairState};
use parking_lot::{Mutex, RwLock};
use prometheus::Registry;
use tokio::sync::watch;
use tower::ServiceExt;

// === Fixtures ===

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/api")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(data(name)).expect("fixture readable")
}

fn published_pairs() -> Vec<Arc<PairReport>> {
    serde_json::from_str(&fixture("pairs.json")).expect("pairs.json parses")
}

/// The fake Kubernetes API and prober.
///
/// Tokens: `alice-token` and `dave-token` may probe from `shop`; alice may read pods in
/// every namespace, dave only in `shop`; `bob-token` may do nothing; `reader-token` (and
/// alice) may read `/metrics` and `/v1/pairs`; `carol-token` authenticates but
/// SubjectAccessReview fails; `apiserver-down` makes TokenReview fail; `slow-bogus` takes a
/// second to be found invalid. DNS targets `unavailable.example`, `rejected.example` and
/// `slow.example` make the probe fail, be refused, or hang.
struct FakeProbes {
    calls: Mutex<Vec<ProbeCall>>,
    token_reviews: AtomicUsize,
    access_reviews: Mutex<Vec<Access>>,
    result: PairReport,
}

impl FakeProbes {
    fn new() -> Self {
        Self {
            calls: Mutex::default(),
            token_reviews: AtomicUsize::new(0),
            access_reviews: Mutex::default(),
            result: serde_json::from_str(&fixture("probe-result.json")).expect("result parses"),
        }
    }

    fn token_reviews(&self) -> usize {
        self.token_reviews.load(Ordering::SeqCst)
    }

    fn access_reviews(&self) -> Vec<Access> {
        self.access_reviews.lock().clone()
    }

    fn calls(&self) -> Vec<ProbeCall> {
        self.calls.lock().clone()
    }
}

fn user(name: &str) -> UserInfo {
    UserInfo {
        username: name.into(),
        uid: Some(format!("uid-{name}")),
        groups: vec!["system:authenticated".into()],
        ..UserInfo::default()
    }
}

impl ProbeService for FakeProbes {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        token_use: TokenUse,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, ServiceError>> {
        Box::pin(async move {
            self.token_reviews.fetch_add(1, Ordering::SeqCst);
            match token {
                "alice-token" => Ok(Some(user("alice"))),
                // Prometheus's own service-account token: for the API server, not netreach.
                "reader-token" if token_use == TokenUse::Read => Ok(Some(user("reader"))),
                "slow-bogus" => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(None)
                }
                "bob-token" => Ok(Some(user("bob"))),
                "carol-token" => Ok(Some(user("carol"))),
                "dave-token" => Ok(Some(user("dave"))),
                "apiserver-down" => {
                    Err(ServiceError::unavailable("TokenReview: connection refused"))
                }
                _ => Ok(None),
            }
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<bool, ServiceError>> {
        Box::pin(async move {
            self.access_reviews.lock().push(access.clone());
            match (user.username.as_str(), access) {
                ("carol", _) => Err(ServiceError::unavailable(
                    "SubjectAccessReview: 500 Internal Server Error",
                )),
                ("alice" | "dave", Access::CreateProbeRequests { namespace }) => {
                    Ok(namespace == "shop")
                }
                ("alice", Access::GetPods { .. }) => Ok(true),
                ("dave", Access::GetPods { namespace }) => Ok(namespace == "shop"),
                ("alice" | "reader", Access::GetUrl { .. }) => Ok(true),
                _ => Ok(false),
            }
        })
    }

    fn probe(&self, call: ProbeCall) -> BoxFuture<'_, Result<PairReport, ServiceError>> {
        Box::pin(async move {
            self.calls.lock().push(call.clone());
            match &call.target {
                ProbeCallTarget::Dns { name } if &**name == "unavailable.example" => Err(
                    ServiceError::unavailable("no network namespace for shop/frontend"),
                ),
                ProbeCallTarget::Dns { name } if &**name == "rejected.example" => Err(
                    ServiceError::Rejected("the agent does not probe SCTP on this node".into()),
                ),
                ProbeCallTarget::Dns { name } if &**name == "slow.example" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(self.result.clone())
                }
                _ => Ok(self.result.clone()),
            }
        })
    }
}

/// A router over the test cluster (the agent runs on node-1) and the handles to drive it.
struct Harness {
    state: AppState,
    ready: watch::Sender<bool>,
    pairs: watch::Sender<PublishedPairs>,
    metrics: Arc<Metrics>,
    probes: Arc<FakeProbes>,
}

impl Harness {
    fn new() -> Self {
        let loaded = load_paths(&[data("cluster.yaml")]).expect("cluster.yaml loads");
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert!(loaded.parse_errors.is_empty(), "{:?}", loaded.parse_errors);
        let index = Arc::new(RwLock::new(loaded.index));
        let registry = Arc::new(Registry::new());
        let metrics = Arc::new(Metrics::register(&registry).expect("metrics register"));
        IndexCollector::register(&registry, index.clone()).expect("collector registers");
        let (ready, ready_rx) = watch::channel(false);
        let (pairs, pairs_rx) = watch::channel(Arc::new(Vec::new()));
        let probes = Arc::new(FakeProbes::new());
        // Most tests send more requests than one caller's default bucket holds.
        let state = AppState::new(
            "node-1",
            Exposition::new(registry, &metrics),
            index,
            ready_rx,
            pairs_rx,
            probes.clone(),
        )
        .with_limits(ApiLimits {
            rate_limit: RateLimit {
                burst: 1000,
                window: Duration::from_secs(1),
            },
            ..ApiLimits::default()
        });
        Self {
            state,
            ready,
            pairs,
            metrics,
            probes,
        }
    }

    fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.state = self.state.with_limits(limits);
        self
    }

    fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// A GET as `reader`, who may read `/metrics` and `/v1/pairs`.
    async fn get(&self, uri: &str) -> Reply {
        self.get_as(Some("reader-token"), uri).await
    }

    async fn get_as(&self, token: Option<&str>, uri: &str) -> Reply {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        send(
            self.router(),
            request.body(Body::empty()).expect("request builds"),
        )
        .await
    }

    async fn probe(&self, token: Option<&str>, body: impl Into<Body>) -> Reply {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/v1/probe")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        send(
            self.router(),
            request.body(body.into()).expect("request builds"),
        )
        .await
    }

    async fn probe_fixture(&self, token: &str, name: &str) -> Reply {
        self.probe(Some(token), fixture(name)).await
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", self.text()))
    }

    /// Asserts a JSON error with this status and code.
    fn assert_error(&self, status: StatusCode, code: &str) -> ErrorBody {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header(header::CONTENT_TYPE), Some("application/json"));
        let error: ErrorBody = self.json();
        assert_eq!(error.error, code, "{}", error.message);
        assert!(!error.message.is_empty());
        error
    }
}

async fn send(app: Router, request: Request<Body>) -> Reply {
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body collects")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

// === Health, readiness, metrics ===

#[tokio::test]
async fn healthz_answers_ok() {
    let reply = Harness::new().get("/healthz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "ok");
}

#[tokio::test]
async fn readyz_waits_for_the_first_full_sync() {
    let harness = Harness::new();
    let reply = harness.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.text().contains("first full sync"));

    harness.ready.send(true).expect("receiver alive");
    let reply = harness.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "ok");
}

#[tokio::test]
async fn metrics_render_the_registry() {
    let harness = Harness::new();
    for pair in published_pairs() {
        let key = PairKey::of(&pair).expect("spec pairs have a key");
        harness.metrics.pairs.set(&key, &PairState::from(&*pair));
    }
    let reply = harness.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header(header::CONTENT_TYPE),
        Some(prometheus::TEXT_FORMAT)
    );
    let text = reply.text();
    for expected in [
        r#"netreach_pair_verdict{direction="ingress",dst="payments/gateway",host="",policy="payments/default-deny",port="8443",protocol="TCP",reason="default_deny",service="",spec="shop/frontend-paths",src="shop/frontend",verdict="blocked_by_policy"} 1"#,
        r#"netreach_pair_up{dst="payments/gateway",host="",port="8443",protocol="TCP",service="",spec="shop/batch-paths",src="shop/batch"} 0"#,
        r#"netreach_spec_pairs{spec="shop/frontend-paths",verdict="ok"} 2"#,
        r#"netreach_spec_pairs{spec="shop/batch-paths",verdict="unexpected_block"} 1"#,
        r#"netreach_index_objects{kind="pods"} 7"#,
        r#"netreach_index_objects{kind="nodes"} 2"#,
        "# TYPE netreach_build_info gauge",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    // Healthy pairs are counted in netreach_spec_pairs, with no series of their own
    // (`--pair-metrics exceptions`, the default).
    assert!(
        !text.contains(r#"dst="api.shop.svc.cluster.local""#),
        "an ok pair has series:\n{text}"
    );
}

// === GET /v1/pairs ===

#[tokio::test]
async fn pairs_lists_what_the_agent_published() {
    let harness = Harness::new();
    let empty: PairsResponse = harness.get("/v1/pairs").await.json();
    assert_eq!(empty.node, "node-1");
    assert!(empty.pairs.is_empty());

    harness
        .pairs
        .send(Arc::new(published_pairs()))
        .expect("receiver alive");
    let reply = harness.get("/v1/pairs").await;
    assert_eq!(reply.status, StatusCode::OK);
    let listed: PairsResponse = reply.json();
    assert_eq!(listed.pairs, published_pairs());

    // The wire form keeps the contract's snake_case names and omits what does not apply: the
    // typed reports serialize back to exactly the JSON they were read from.
    let raw: serde_json::Value = reply.json();
    let fixture: serde_json::Value =
        serde_json::from_str(&fixture("pairs.json")).expect("pairs.json parses");
    assert_eq!(raw["pairs"], fixture);
    let dns_pair = &raw["pairs"][2];
    assert_eq!(dns_pair["dns"], "api.shop.svc.cluster.local");
    assert!(dns_pair.get("to").is_none() && dns_pair.get("port").is_none());
    assert_eq!(raw["pairs"][0]["last_probe"], "2025-06-01T12:00:00Z");
    assert_eq!(raw["pairs"][0]["outcome"], "timeout");
}

#[tokio::test]
async fn pairs_filters_combine() {
    let harness = Harness::new();
    harness
        .pairs
        .send(Arc::new(published_pairs()))
        .expect("receiver alive");
    let cases: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "payments/gateway",
                "shop/api",
                "api.shop.svc.cluster.local",
                "payments/gateway",
            ],
        ),
        ("?spec=shop/batch-paths", &["payments/gateway"]),
        ("?verdict=blocked_by_policy", &["payments/gateway"]),
        ("?verdict=ok", &["shop/api", "api.shop.svc.cluster.local"]),
        ("?from=shop/batch", &["payments/gateway"]),
        (
            "?to=payments/gateway",
            &["payments/gateway", "payments/gateway"],
        ),
        (
            "?to=api.shop.svc.cluster.local",
            &["api.shop.svc.cluster.local"],
        ),
        (
            "?namespace=payments",
            &["payments/gateway", "payments/gateway"],
        ),
        (
            "?namespace=shop",
            &[
                "payments/gateway",
                "shop/api",
                "api.shop.svc.cluster.local",
                "payments/gateway",
            ],
        ),
        ("?namespace=kube-system", &[]),
        (
            "?spec=shop/frontend-paths&verdict=blocked_by_policy",
            &["payments/gateway"],
        ),
        ("?spec=shop/frontend-paths&verdict=unexpected_block", &[]),
    ];
    for (query, expected) in cases {
        let reply = harness.get(&format!("/v1/pairs{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
        let listed: PairsResponse = reply.json();
        let destinations: Vec<String> = listed
            .pairs
            .iter()
            .map(|pair| pair.destination().to_string())
            .collect();
        assert_eq!(destinations, *expected, "{query}");
    }
}

/// A ClusterProbeSpec's pairs carry its bare name as `spec`; a ProbeSpec's `namespace/name`.
/// `?spec=` takes either form, and the metric label is the same string.
#[tokio::test]
async fn pairs_and_metrics_name_a_cluster_probe_spec_by_its_bare_name() {
    let harness = Harness::new();
    let mut pairs = published_pairs();
    let mut cluster_pair = PairReport::clone(&pairs[0]);
    cluster_pair.spec = Some(SpecRef::Cluster("frontend-paths".into()));
    let cluster_pair = Arc::new(cluster_pair);
    pairs.push(cluster_pair.clone());
    for pair in &pairs {
        let key = PairKey::of(pair).expect("spec pairs have a key");
        harness.metrics.pairs.set(&key, &PairState::from(&**pair));
    }
    harness.pairs.send(Arc::new(pairs)).expect("receiver alive");

    let cases: &[(&str, usize)] = &[
        ("?spec=frontend-paths", 1),
        ("?spec=shop/frontend-paths", 3),
        ("?spec=paths", 0),
    ];
    for (query, count) in cases {
        let listed: PairsResponse = harness.get(&format!("/v1/pairs{query}")).await.json();
        assert_eq!(listed.pairs.len(), *count, "{query}");
    }
    let listed: PairsResponse = harness.get("/v1/pairs?spec=frontend-paths").await.json();
    assert_eq!(listed.pairs, [cluster_pair]);

    let reply = harness.get("/metrics").await;
    let text = reply.text();
    for expected in [
        r#"netreach_spec_pairs{spec="frontend-paths",verdict="blocked_by_policy"} 1"#,
        r#"netreach_spec_pairs{spec="shop/frontend-paths",verdict="blocked_by_policy"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
}

#[tokio::test]
async fn pairs_rejects_bad_filters() {
    let harness = Harness::new();
    let error = harness
        .get("/v1/pairs?verdict=blocked")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    assert!(
        error.message.contains("blocked_by_policy"),
        "{}",
        error.message
    );
    harness
        .get("/v1/pairs?node=node-2")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn unknown_routes_are_json_404s() {
    Harness::new()
        .get("/v1/nothing")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

// === POST /v1/probe: success ===

#[tokio::test]
async fn probe_runs_from_a_local_pod_to_a_pod() {
    let harness = Harness::new();
    let reply = harness.probe_fixture("alice-token", "probe-pod.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let report: PairReport = reply.json();
    assert_eq!(report, FakeProbes::new().result);
    assert_eq!(
        harness.probes.calls(),
        [ProbeCall {
            requested_by: "alice".into(),
            from: ObjectRef::new("shop", "frontend"),
            target: ProbeCallTarget::Pod {
                pod: ObjectRef::new("payments", "gateway"),
                ip: "10.244.2.30".parse().expect("ip"),
                port: 8443,
                protocol: Protocol::Tcp,
            },
            timeout: Duration::from_secs(2),
        }]
    );
}

#[tokio::test]
async fn probe_resolves_named_ports_and_takes_ip_and_dns_targets() {
    let harness = Harness::new();
    for name in ["probe-named-port.json", "probe-ip.json", "probe-dns.json"] {
        let reply = harness.probe_fixture("alice-token", name).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
    }
    let targets: Vec<(ProbeCallTarget, Duration)> = harness
        .probes
        .calls()
        .into_iter()
        .map(|call| (call.target, call.timeout))
        .collect();
    assert_eq!(
        targets,
        [
            (
                ProbeCallTarget::Pod {
                    pod: ObjectRef::new("payments", "gateway"),
                    ip: "10.244.2.30".parse().expect("ip"),
                    port: 8443,
                    protocol: Protocol::Tcp,
                },
                Duration::from_millis(500),
            ),
            (
                ProbeCallTarget::Ip {
                    ip: "192.0.2.10".parse().expect("ip"),
                    port: 443,
                    protocol: Protocol::Tcp,
                },
                Duration::from_secs(2),
            ),
            (
                ProbeCallTarget::Dns {
                    name: "api.shop.svc.cluster.local".into(),
                },
                Duration::from_secs(2),
            ),
        ]
    );
}

// === POST /v1/probe: authentication and authorization ===

#[tokio::test]
async fn probe_without_a_bearer_token_is_401() {
    let harness = Harness::new();
    let reply = harness.probe(None, fixture("probe-pod.json")).await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some("Bearer"));

    let basic = Request::post("/v1/probe")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Basic YWxpY2U6c2VjcmV0")
        .body(Body::from(fixture("probe-pod.json")))
        .expect("request builds");
    send(harness.router(), basic)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    assert!(harness.probes.calls().is_empty());
}

#[tokio::test]
async fn probe_with_an_invalid_token_is_401() {
    let harness = Harness::new();
    harness
        .probe_fixture("stolen-token", "probe-pod.json")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(harness.probes.calls().is_empty());
}

#[tokio::test]
async fn probe_is_checked_before_the_body_is_read() {
    // Without a token, neither an oversized body nor a source that does not exist is
    // looked at.
    let harness = Harness::new();
    let oversized = format!(r#"{{"from": "shop/{}"}}"#, "x".repeat(32 * 1024));
    harness
        .probe(None, oversized)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    // Authorization comes before the index: bob learns nothing about shop/ghost.
    harness
        .probe_fixture("bob-token", "probe-source-missing.json")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn probe_needs_create_proberequests_in_the_source_namespace() {
    let harness = Harness::new();
    let error = harness
        .probe_fixture("bob-token", "probe-pod.json")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(error.message.contains("bob"), "{}", error.message);
    assert!(
        error.message.contains("namespace shop"),
        "{}",
        error.message
    );

    // alice may probe from shop, but not from payments (the destination's namespace does not
    // matter; the source's does).
    let error = harness
        .probe_fixture("alice-token", "probe-other-namespace.json")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        error.message.contains("namespace payments"),
        "{}",
        error.message
    );
    assert!(harness.probes.calls().is_empty());
}

#[tokio::test]
async fn probe_is_503_when_the_kubernetes_api_fails() {
    let harness = Harness::new();
    let error = harness
        .probe_fixture("apiserver-down", "probe-pod.json")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable");
    assert!(error.message.contains("TokenReview"), "{}", error.message);
    let error = harness
        .probe_fixture("carol-token", "probe-pod.json")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable");
    assert!(
        error.message.contains("SubjectAccessReview"),
        "{}",
        error.message
    );
    assert!(harness.probes.calls().is_empty());
}

// === POST /v1/probe: sources and targets ===

#[tokio::test]
async fn probe_sources_must_be_probeable_pods_of_this_node() {
    let harness = Harness::new();
    let cases = [
        (
            "probe-source-missing.json",
            StatusCode::NOT_FOUND,
            "source_not_found",
        ),
        (
            "probe-source-elsewhere.json",
            StatusCode::CONFLICT,
            "source_not_on_this_node",
        ),
        (
            "probe-source-pending.json",
            StatusCode::CONFLICT,
            "source_not_probeable",
        ),
        (
            "probe-source-host-network.json",
            StatusCode::CONFLICT,
            "source_not_probeable",
        ),
        (
            "probe-destination-missing.json",
            StatusCode::NOT_FOUND,
            "destination_not_found",
        ),
        (
            "probe-destination-finished.json",
            StatusCode::CONFLICT,
            "destination_not_probeable",
        ),
        (
            "probe-undeclared-port.json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "port_not_declared",
        ),
        // Refused addresses fail the request's own validation, which names why.
        (
            "probe-multicast-ip.json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (name, status, code) in cases {
        let reply = harness.probe_fixture("alice-token", name).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.text());
        reply.assert_error(status, code);
    }
    let error = harness
        .probe_fixture("alice-token", "probe-source-elsewhere.json")
        .await
        .assert_error(StatusCode::CONFLICT, "source_not_on_this_node");
    assert!(error.message.contains("node-2"), "{}", error.message);
    assert!(harness.probes.calls().is_empty());
}

#[tokio::test]
async fn probe_rejects_malformed_bodies() {
    let harness = Harness::new();
    let error = harness
        .probe_fixture("alice-token", "probe-two-targets.json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(error.message.starts_with("to: "), "{}", error.message);
    harness
        .probe_fixture("alice-token", "probe-unknown-field.json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    harness
        .probe(Some("alice-token"), "{not json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let error = harness
        .probe(
            Some("alice-token"),
            r#"{"from": "shop/frontend", "ip": "10.0.0.1", "port": 70000}"#,
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(error.message.starts_with("port: "), "{}", error.message);
    harness
        .probe(
            Some("alice-token"),
            r#"{"from": "frontend", "dns": "api.shop.svc.cluster.local"}"#,
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");

    let untyped = Request::post("/v1/probe")
        .header(header::AUTHORIZATION, "Bearer alice-token")
        .body(Body::from(fixture("probe-pod.json")))
        .expect("request builds");
    send(harness.router(), untyped)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert!(harness.probes.calls().is_empty());
}

#[tokio::test]
async fn probe_bodies_over_16_kib_are_413() {
    let harness = Harness::new();
    let oversized = format!(
        r#"{{"from": "shop/frontend", "dns": "api.shop.svc.cluster.local", "timeout": "{}"}}"#,
        " ".repeat(16 * 1024)
    );
    let error = harness
        .probe(Some("alice-token"), oversized)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(error.message.contains("16384"), "{}", error.message);
    assert!(harness.probes.calls().is_empty());
}

// === POST /v1/probe: limits and failures ===

#[tokio::test]
async fn probe_is_rate_limited_per_caller() {
    // The default: 5 requests at once, then one every 2 s.
    let harness = Harness::new().with_limits(ApiLimits::default());
    for _ in 0..5 {
        let reply = harness.probe_fixture("alice-token", "probe-dns.json").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let reply = harness.probe_fixture("alice-token", "probe-dns.json").await;
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(reply.header(header::RETRY_AFTER), Some("2"));
    // Another caller has a bucket of its own.
    let reply = harness.probe_fixture("dave-token", "probe-dns.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(harness.probes.calls().len(), 6);

    // A slower limit says so in Retry-After.
    let harness = Harness::new().with_limits(ApiLimits {
        rate_limit: RateLimit {
            burst: 1,
            window: Duration::from_secs(60),
        },
        ..ApiLimits::default()
    });
    harness.probe_fixture("alice-token", "probe-dns.json").await;
    let reply = harness.probe_fixture("alice-token", "probe-dns.json").await;
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(reply.header(header::RETRY_AFTER), Some("60"));
}

#[tokio::test]
async fn probe_is_503_when_too_many_are_in_flight() {
    let harness = Harness::new().with_limits(ApiLimits {
        max_concurrent_probes: 0,
        ..ApiLimits::default()
    });
    let reply = harness.probe_fixture("alice-token", "probe-pod.json").await;
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(reply.header(header::RETRY_AFTER), Some("1"));
}

#[tokio::test]
async fn probe_failures_of_the_prober_are_reported() {
    let harness = Harness::new().with_limits(ApiLimits {
        probe_deadline_margin: Duration::from_millis(50),
        ..ApiLimits::default()
    });
    let dns =
        |name: &str| format!(r#"{{"from": "shop/frontend", "dns": "{name}", "timeout": "10ms"}}"#);
    let error = harness
        .probe(Some("alice-token"), dns("unavailable.example"))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "probe_unavailable");
    assert!(
        error.message.contains("no network namespace"),
        "{}",
        error.message
    );
    harness
        .probe(Some("alice-token"), dns("rejected.example"))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "target_not_allowed");
    harness
        .probe(Some("alice-token"), dns("slow.example"))
        .await
        .assert_error(StatusCode::GATEWAY_TIMEOUT, "probe_timeout");
}

// === Who may call: issue 9's attacks, each reproduced and refused ===

/// `/metrics` and `/v1/pairs` name pods, IPs and policies: a token and `get` on the URL.
#[tokio::test]
async fn reading_metrics_and_pairs_needs_a_token_and_get_on_the_url() {
    let harness = Harness::new();
    for uri in ["/metrics", "/v1/pairs"] {
        harness
            .get_as(None, uri)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
        harness
            .get_as(Some("stolen-token"), uri)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        let error = harness
            .get_as(Some("bob-token"), uri)
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(error.message, format!("bob may not get {uri}"));
        let reply = harness.get_as(Some("reader-token"), uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    }
    assert!(
        harness
            .probes
            .access_reviews()
            .contains(&Access::GetUrl { path: "/v1/pairs" })
    );
    // The kubelet's checks stay open.
    for uri in ["/healthz", "/readyz"] {
        let reply = harness.get_as(None, uri).await;
        assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
}

#[tokio::test]
async fn review_answers_are_cached() {
    let harness = Harness::new();
    for _ in 0..5 {
        let reply = harness.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(harness.probes.token_reviews(), 1);
    assert_eq!(harness.probes.access_reviews().len(), 1);
    // A bad token is remembered too, so repeating it costs no more TokenReviews.
    for _ in 0..5 {
        harness.get_as(Some("stolen-token"), "/metrics").await;
    }
    assert_eq!(harness.probes.token_reviews(), 2);
}

#[tokio::test]
async fn with_auth_disabled_nobody_is_checked() {
    let mut harness = Harness::new();
    harness.state = harness.state.clone().with_auth(AuthMode::Disabled);
    for uri in ["/metrics", "/v1/pairs"] {
        let reply = harness.get_as(None, uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    }
    let reply = harness.probe(None, fixture("probe-pod.json")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(harness.probes.calls()[0].requested_by, "system:anonymous");
    assert_eq!(harness.probes.token_reviews(), 0);
    assert!(harness.probes.access_reviews().is_empty());
}

/// Before: 8 requests with bogus tokens held the 8 probe slots during their TokenReviews, and
/// every valid request got 503. Now a slot is taken only after authentication.
#[tokio::test]
async fn bogus_tokens_never_take_probe_slots() {
    let harness = Harness::new();
    let bogus: Vec<_> = (0..8)
        .map(|_| {
            let router = harness.router();
            tokio::spawn(async move {
                let request = Request::post("/v1/probe")
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::AUTHORIZATION, "Bearer slow-bogus")
                    .body(Body::from(fixture("probe-pod.json")))
                    .expect("request builds");
                send(router, request).await
            })
        })
        .collect();
    // Give the bogus requests time to be in their TokenReviews.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = harness.probe_fixture("alice-token", "probe-pod.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    for request in bogus {
        request
            .await
            .expect("task")
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
}

/// Before: the body was read before authentication, so a body that never arrives held the
/// connection for anyone. Now an unauthenticated request is answered without reading it,
/// and an authenticated caller gets 408 after the body timeout.
#[tokio::test]
async fn a_body_that_never_arrives_is_not_waited_for() {
    let harness = Harness::new().with_limits(ApiLimits {
        body_timeout: Duration::from_millis(100),
        ..ApiLimits::default()
    });
    let stalled = || Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        harness.probe(Some("stolen-token"), stalled()),
    )
    .await
    .expect("answered without reading the body");
    reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        harness.probe(Some("alice-token"), stalled()),
    )
    .await
    .expect("the body timeout answers");
    reply.assert_error(StatusCode::REQUEST_TIMEOUT, "request_timeout");
    assert!(harness.probes.calls().is_empty());
}

#[tokio::test]
async fn every_request_is_answered_within_the_request_timeout() {
    let harness = Harness::new().with_limits(ApiLimits {
        request_timeout: Duration::from_millis(200),
        ..ApiLimits::default()
    });
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        harness.probe(
            Some("alice-token"),
            r#"{"from": "shop/frontend", "dns": "slow.example", "timeout": "10s"}"#,
        ),
    )
    .await
    .expect("answered");
    reply.assert_error(StatusCode::REQUEST_TIMEOUT, "request_timeout");
}

/// Before: a caller allowed to probe from `shop` learned a `payments` pod's IP, ports and
/// policies. Now that needs `get pods` in `payments`, for a pod target and for a pod's IP.
#[tokio::test]
async fn probing_a_pod_in_another_namespace_needs_get_pods_there() {
    let harness = Harness::new();
    let to_pod = fixture("probe-pod.json");
    let to_pod_ip = r#"{"from": "shop/frontend", "ip": "10.244.2.30", "port": 8443}"#;
    for body in [to_pod.as_str(), to_pod_ip] {
        let error = harness
            .probe(Some("dave-token"), body.to_string())
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(
            error.message, "dave may not get pods in namespace payments",
            "{body}"
        );
        let reply = harness.probe(Some("alice-token"), body.to_string()).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}: {}", reply.text());
    }
    // Within the source's namespace, and to addresses that are no pod's, no extra check.
    let reply = harness
        .probe(
            Some("dave-token"),
            r#"{"from": "shop/frontend", "dns": "api.shop.svc.cluster.local"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(harness.probes.calls().len(), 3);
}

// === The web page ===

#[tokio::test]
async fn the_web_page_is_served_without_data_and_its_data_keeps_the_token_check() {
    let harness = Harness::new();
    let cases = [
        ("/", "text/html; charset=utf-8", "<title>netreach</title>"),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "fetch(\"v1/pairs\"",
        ),
        (
            "/ui/app.css",
            "text/css; charset=utf-8",
            ".v-blocked_by_policy",
        ),
    ];
    for (uri, content_type, contains) in cases {
        let reply = harness.get_as(None, uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert_eq!(
            reply.header(header::CONTENT_TYPE),
            Some(content_type),
            "{uri}"
        );
        assert!(reply.text().contains(contains), "{uri}");
        let policy = reply
            .header(header::CONTENT_SECURITY_POLICY)
            .expect("a Content-Security-Policy");
        assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"));
        assert_eq!(
            reply.header(header::X_CONTENT_TYPE_OPTIONS),
            Some("nosniff")
        );
        // No pair, pod or policy name is in the page itself.
        assert!(!reply.text().contains("shop/"), "{uri}");
    }
    // The page's assets are small enough to embed.
    let total: usize = netreach::api::ui::assets().iter().map(|(_, n)| n).sum();
    assert!(total < 48 * 1024, "{total} bytes");
    // What the page reads still needs a token.
    harness
        .get_as(None, "/v1/pairs")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    // Paths under /ui/ other than the two assets are 404s, not files.
    harness
        .get_as(None, "/ui/../../etc/passwd")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

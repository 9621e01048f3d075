use std::time::Duration;

use super::*;

fn config() -> AgentConfig {
    AgentConfig {
        node_name: "node-1".into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        profile: Profile::default(),
        concurrency: 4,
        cni_selector: None,
        events: true,
        view_stale_after: Duration::from_secs(30),
        status_interval: Duration::from_secs(30),
        termination_log: std::env::temp_dir().join("netreach-agent-test-termination-log"),
        shutdown_grace: Duration::from_secs(1),
        pair_metrics: PairSeries::default(),
        watch_scope: Default::default(),
        api: ApiServing::self_signed(vec!["node-1".into()], "127.0.0.1:0".parse().expect("addr")),
    }
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_agent_before_it_needs_a_cluster() {
    let missing = std::env::temp_dir().join("netreach-agent-test-missing.crt");
    let mut config = config();
    config.api.tls = TlsSource::Files {
        cert: missing.clone(),
        key: missing.clone(),
    };
    let error = run(config).await.expect_err("missing certificate");
    assert_eq!(error.metric_label(), "tls");
    let message = error.to_string();
    assert!(message.contains(&*missing.to_string_lossy()), "{message}");
}

#[tokio::test]
async fn a_bad_cni_selector_stops_the_agent_before_it_needs_a_cluster() {
    let config = AgentConfig {
        cni_selector: Some("kube-system/not-a-selector".into()),
        ..config()
    };
    let error = run(config).await.expect_err("invalid selector");
    assert_eq!(error.metric_label(), "cni_selector");
    let message = error.to_string();
    assert!(message.contains("not-a-selector"), "{message}");
}

#[test]
fn fatal_task_ends_name_the_task_and_the_reason() {
    let error = Error::TaskEnded(TaskExit {
        task: "watchers",
        reason: "the pods watch ended".into(),
    });
    assert_eq!(
        error.to_string(),
        "critical task watchers ended: the pods watch ended"
    );
    assert_eq!(error.metric_label(), "task_ended");
}

/// No probing or API work on this path: answers that a slow API must never hold up.
struct NoProbes;

impl ProbeService for NoProbes {
    fn authenticate<'a>(
        &'a self,
        _token: &'a str,
        _token_use: crate::api::TokenUse,
    ) -> crate::api::BoxFuture<'a, Result<Option<crate::api::UserInfo>, crate::api::ServiceError>>
    {
        Box::pin(async { Ok(None) })
    }

    fn authorize<'a>(
        &'a self,
        _user: &'a crate::api::UserInfo,
        _access: &'a crate::api::Access,
    ) -> crate::api::BoxFuture<'a, Result<bool, crate::api::ServiceError>> {
        Box::pin(async { Ok(false) })
    }

    fn probe(
        &self,
        _call: crate::api::ProbeCall,
    ) -> crate::api::BoxFuture<'_, Result<crate::pair::PairReport, crate::api::ServiceError>> {
        Box::pin(async { Err(crate::api::ServiceError::unavailable("not in this test")) })
    }
}

/// While every answer of the API server takes 3 s (lists, watches, relists after a 410), the
/// agent's own /healthz and /metrics answer within a second: nothing on their path waits for
/// the API or holds a lock across a call to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_within_a_second_while_the_api_takes_three() {
    use tower::ServiceExt;

    use crate::cluster::fake_api::FakeApi;
    use crate::cluster::watch::{CniAgentMatcher, Watchers};

    let api = FakeApi::new();
    api.apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop"}}));
    api.set_latency(Duration::from_secs(3));
    let view = ClusterView::new(CniAgentMatcher::builtin());
    let run =
        tokio::spawn(Watchers::new(kube::Client::new(api.router(), "default"), view.clone()).run());
    let registry = Arc::new(prometheus::Registry::new());
    let metrics = Metrics::register(&registry).expect("metrics");
    let exposition = crate::report::metrics::Exposition::new(registry, &metrics);
    let (_pairs_tx, pairs) = watch::channel(Arc::new(Vec::new()));
    let state = AppState::new(
        "node-1",
        exposition,
        view.index.clone(),
        view.readiness.subscribe(),
        pairs,
        Arc::new(NoProbes),
    )
    .with_auth(AuthMode::Disabled);
    let app = crate::api::router(state);

    let start = std::time::Instant::now();
    let mut worst = Duration::ZERO;
    let mut asked = 0;
    let mut expired = false;
    while start.elapsed() < Duration::from_secs(8) {
        if !expired && start.elapsed() > Duration::from_secs(4) {
            // A 410 on every watch: the relists take 3 s each too.
            api.expire_watches();
            expired = true;
        }
        for uri in ["/healthz", "/metrics"] {
            let asked_at = std::time::Instant::now();
            let request = http::Request::get(uri)
                .body(axum::body::Body::empty())
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), http::StatusCode::OK, "{uri}");
            worst = worst.max(asked_at.elapsed());
            asked += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(asked >= 40, "{asked} requests");
    assert!(
        worst < Duration::from_secs(1),
        "the slowest answer took {worst:?}"
    );
    run.abort();
}

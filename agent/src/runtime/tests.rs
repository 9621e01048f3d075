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

//! Tests of cluster mode: flag parsing into a ProbeRequest, and the kube calls against a mocked
//! API server (create, wait for the status, RBAC, a missing CRD, timeouts, no cluster).

use std::time::Duration;

use serde_json::{Value, json};

use probe_spec::ProbeRequestStatus;

use super::api::*;
use super::plan::*;
use super::*;
use crate::testing::mock_api::{ApiServer, api_error, mock_client};

const REQUESTS: &str = "/apis/netreach.dev/v1alpha1/namespaces/shop/proberequests";

// === Fixtures ===

fn args(from: &str) -> ClusterArgs {
    ClusterArgs {
        from: from.into(),
        namespace: None,
        to: None,
        port: None,
        dns: None,
        count: 1,
        timeout: None,
        wait_timeout: Duration::from_secs(30),
        format: Format::Text,
    }
}

fn to(to: &str, port: Option<&str>) -> ClusterArgs {
    ClusterArgs {
        to: Some(to.into()),
        port: port.map(|p| p.parse().unwrap()),
        ..args("shop/frontend")
    }
}

fn plan() -> Plan {
    Plan::parse(&to("payments/gateway", Some("8443"))).unwrap()
}

fn stored(name: &str, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeRequest",
        "metadata": {"name": name, "namespace": "shop", "generateName": GENERATE_NAME},
        "spec": {
            "from": {"pod": "frontend"},
            "to": {"pod": {"namespace": "payments", "name": "gateway"}, "port": 8443, "protocol": "TCP"},
            "timeout": "2s", "count": 1,
        },
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn blocked() -> Value {
    json!({
        "phase": "Succeeded", "node": "node-1", "target": "payments/gateway:8443/TCP",
        "outcome": "timeout", "verdict": "blocked_by_policy", "reason": "default_deny",
        "direction": "ingress", "policies": ["payments/default-deny"],
        "summary": "shop/frontend -> payments/gateway:8443/TCP blocked by payments/default-deny",
        "explanation": "payments/default-deny selects payments/gateway for ingress\nand has no ingress rules.",
        "latencySeconds": 2.0,
    })
}

fn request_ref() -> ObjectRef {
    ObjectRef::new("shop", "netreach-probe-x7k2p")
}

const FAST: Wait = Wait {
    timeout: Duration::from_millis(300),
    poll: Duration::from_millis(10),
};

/// Answers every request with `status` and `reply` until the client is done.
async fn answer_forever(server: &mut ApiServer, status: u16, reply: Value) {
    loop {
        server.respond(status, reply.clone()).await;
    }
}

// === Flags ===

#[test]
fn plan_targets_from_flags() {
    let pod = Plan::parse(&to("payments/gateway", Some("https"))).unwrap();
    assert_eq!(pod.namespace.as_deref(), Some("shop"));
    assert_eq!(pod.spec.from.pod, "frontend");
    assert_eq!(
        serde_json::to_value(&pod.spec.to).unwrap(),
        json!({"pod": {"namespace": "payments", "name": "gateway"}, "port": "https", "protocol": "TCP"})
    );
    assert_eq!(pod.spec.timeout, "2s");

    let service = Plan::parse(&to("svc/shop/api", Some("web"))).unwrap();
    assert_eq!(
        serde_json::to_value(&service.spec.to).unwrap(),
        json!({"service": {"namespace": "shop", "name": "api"}, "port": "web", "protocol": "TCP"})
    );
    assert_eq!(service.target_label(), "svc shop/api:web/TCP");
    service.spec.validate().expect("a valid request");

    let ip = Plan::parse(&to("10.244.1.3", Some("53/UDP"))).unwrap();
    assert_eq!(
        serde_json::to_value(&ip.spec.to).unwrap(),
        json!({"ip": "10.244.1.3", "port": 53, "protocol": "UDP"})
    );

    let dns = Plan::parse(&ClusterArgs {
        dns: Some("api.shop.svc.cluster.local".into()),
        count: 5,
        timeout: Some(Duration::from_millis(500)),
        ..args("frontend")
    })
    .unwrap();
    assert_eq!(dns.namespace, None, "the kubeconfig's namespace decides");
    assert_eq!(
        dns.spec.to.dns.as_deref(),
        Some("api.shop.svc.cluster.local")
    );
    assert_eq!((dns.spec.count, dns.spec.timeout.as_str()), (5, "500ms"));
    assert_eq!(dns.source("team-a"), ObjectRef::new("team-a", "frontend"));

    let named = Plan::parse(&ClusterArgs {
        namespace: Some("shop".into()),
        ..to("10.0.0.1", Some("80"))
    })
    .unwrap();
    assert_eq!(named.source("default"), ObjectRef::new("shop", "frontend"));
}

#[test]
fn plan_errors_name_the_flag() {
    let cases: Vec<(ClusterArgs, &str)> = vec![
        (
            to("10.244.1.3:80/TCP", None),
            "the port goes in --port (e.g. --to 10.244.1.3 --port 80/TCP)",
        ),
        (
            to("[fd00::3]:443", Some("443")),
            "--to fd00::3 --port 443/TCP",
        ),
        (
            to("payments/gateway", None),
            "--to payments/gateway needs --port",
        ),
        (
            to("gateway", Some("80")),
            "--to gateway: expected NS/POD, svc/NAMESPACE/NAME or an IP address",
        ),
        (
            to("10.0.0.1", Some("http")),
            "a port name needs a pod target",
        ),
        (
            ClusterArgs {
                dns: Some("example.com".into()),
                port: Some("53".parse().unwrap()),
                ..args("shop/frontend")
            },
            "a --dns probe takes no port",
        ),
        (
            ClusterArgs {
                namespace: Some("payments".into()),
                ..to("10.0.0.1", Some("80"))
            },
            "--namespace payments does not match --from shop/frontend",
        ),
        (
            ClusterArgs {
                count: 101,
                ..to("10.0.0.1", Some("80"))
            },
            "--count: 101 is out of range",
        ),
        (
            ClusterArgs {
                timeout: Some(Duration::from_secs(120)),
                ..to("10.0.0.1", Some("80"))
            },
            "--timeout:",
        ),
        (
            ClusterArgs {
                from: "shop/".into(),
                ..to("10.0.0.1", Some("80"))
            },
            "--from shop/: expected NS/POD or POD",
        ),
        (
            ClusterArgs {
                from: "Bad_Name".into(),
                ..to("10.0.0.1", Some("80"))
            },
            "--from:",
        ),
        (to("payments/Bad_Pod", Some("80")), "--to:"),
    ];
    for (args, want) in cases {
        let error = Plan::parse(&args).expect_err(want).to_string();
        assert!(error.contains(want), "{args:?}: {error}");
    }
}

#[test]
fn plan_builds_a_generated_name_request_in_the_source_namespace() {
    let request = serde_json::to_value(plan().request("default")).unwrap();
    assert_eq!(request["apiVersion"], "netreach.dev/v1alpha1");
    assert_eq!(request["kind"], "ProbeRequest");
    assert_eq!(request["metadata"]["generateName"], GENERATE_NAME);
    assert_eq!(request["metadata"]["namespace"], "shop");
    assert!(request["metadata"].get("name").is_none(), "{request}");
    assert_eq!(request["spec"]["from"], json!({"pod": "frontend"}));
}

// === Kube calls ===

#[tokio::test]
async fn create_posts_the_request_and_returns_its_name() {
    let (client, mut server) = mock_client();
    let request = plan().request("default");
    let (created, recorded) = tokio::join!(
        create(&client, &request),
        server.respond(201, stored("netreach-probe-x7k2p", None)),
    );
    assert_eq!(recorded.method, http::Method::POST);
    assert_eq!(recorded.path, REQUESTS);
    assert_eq!(recorded.body["metadata"]["generateName"], GENERATE_NAME);
    assert_eq!(
        recorded.body["spec"]["to"],
        json!({"pod": {"namespace": "payments", "name": "gateway"}, "port": 8443, "protocol": "TCP"})
    );
    assert_eq!(
        created.unwrap().metadata.name.as_deref(),
        Some("netreach-probe-x7k2p")
    );
}

#[tokio::test]
async fn create_forbidden_names_the_namespace() {
    let (client, mut server) = mock_client();
    let denied = api_error(
        403,
        "Forbidden",
        r#"proberequests.netreach.dev is forbidden: User "bob" cannot create resource "proberequests" in API group "netreach.dev" in the namespace "shop""#,
    );
    let request = plan().request("default");
    let (created, _) = tokio::join!(create(&client, &request), server.respond(403, denied));
    let error = created.unwrap_err();
    assert!(matches!(error, Error::CreateForbidden { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("not allowed to create proberequests in namespace shop"),
        "{message}"
    );
    assert!(message.contains(r#"User "bob""#), "{message}");
}

#[tokio::test]
async fn create_404_is_a_missing_crd_or_namespace() {
    let (client, mut server) = mock_client();
    let request = plan().request("default");
    let (created, _) = tokio::join!(
        create(&client, &request),
        server.respond_raw(404, "text/plain", "404 page not found"),
    );
    let error = created.unwrap_err();
    assert!(matches!(error, Error::CrdMissing), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the ProbeRequest CRD is not installed: kubectl apply -f charts/netreach/crds/"
    );

    let mut missing = api_error(404, "NotFound", r#"namespaces "shop" not found"#);
    missing["details"] = json!({"name": "shop", "kind": "namespaces"});
    let (created, _) = tokio::join!(create(&client, &request), server.respond(404, missing));
    let error = created.unwrap_err();
    assert_eq!(error.to_string(), "namespace shop not found");
}

#[tokio::test]
async fn create_without_an_api_server_cannot_reach_a_cluster() {
    let (client, server) = mock_client();
    drop(server);
    let error = create(&client, &plan().request("default"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unreachable(_)), "{error:?}");
    assert!(
        error.to_string().starts_with("cannot reach a cluster: "),
        "{error}"
    );
}

#[tokio::test]
async fn source_node_reads_the_pod() {
    let (client, mut server) = mock_client();
    let pod = ObjectRef::new("shop", "frontend");
    let found = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "frontend", "namespace": "shop"},
        "spec": {"nodeName": "node-1", "containers": []},
    });
    let (node, recorded) = tokio::join!(source_node(&client, &pod), server.respond(200, found));
    assert_eq!(recorded.method, http::Method::GET);
    assert_eq!(recorded.path, "/api/v1/namespaces/shop/pods/frontend");
    assert_eq!(node.unwrap().as_deref(), Some("node-1"));

    // May not read pods: go ahead without the node.
    let (node, _) = tokio::join!(
        source_node(&client, &pod),
        server.respond(403, api_error(403, "Forbidden", "no"))
    );
    assert_eq!(node.unwrap(), None);

    let (node, _) = tokio::join!(
        source_node(&client, &pod),
        server.respond(
            404,
            api_error(404, "NotFound", r#"pods "frontend" not found"#)
        )
    );
    assert_eq!(
        node.unwrap_err().to_string(),
        "source pod shop/frontend not found"
    );

    let (node, _) = tokio::join!(
        source_node(&client, &pod),
        server.respond(401, api_error(401, "Unauthorized", "Unauthorized"))
    );
    assert!(matches!(node, Err(Error::Unauthorized(_))), "{node:?}");
}

#[tokio::test]
async fn wait_reads_until_the_phase_is_final() {
    let (client, mut server) = mock_client();
    let request = request_ref();
    let mut lines = Vec::new();
    let wait = Wait {
        timeout: Duration::from_secs(5),
        poll: Duration::from_millis(10),
    };
    let api = async {
        let first = server
            .respond(200, stored("netreach-probe-x7k2p", None))
            .await;
        server
            .respond(
                200,
                stored(
                    "netreach-probe-x7k2p",
                    Some(json!({"phase": "Running", "node": "node-7"})),
                ),
            )
            .await;
        server
            .respond(200, stored("netreach-probe-x7k2p", Some(blocked())))
            .await;
        first
    };
    let mut record = |p: &Progress<'_>| lines.push(p.line());
    let (status, first) = tokio::join!(
        wait_for_result(&client, &request, Some("node-1"), wait, &mut record),
        api
    );
    assert_eq!(first.method, http::Method::GET);
    assert_eq!(first.path, format!("{REQUESTS}/netreach-probe-x7k2p"));
    let status = status.unwrap();
    assert_eq!(status.phase, ProbeRequestPhase::Succeeded);
    assert_eq!(status.reason.as_deref(), Some("default_deny"));
    assert_eq!(
        lines,
        [
            "waiting for the agent on node node-1 ... 0s",
            "the agent on node node-7 is probing ... 0s",
        ]
    );
}

#[tokio::test]
async fn wait_retries_server_errors_and_stops_on_deletion() {
    let (client, mut server) = mock_client();
    let request = request_ref();
    let mut quiet = |_: &Progress<'_>| {};
    let api = async {
        server
            .respond(500, api_error(500, "InternalError", "etcd"))
            .await;
        server
            .respond(
                404,
                api_error(
                    404,
                    "NotFound",
                    "proberequests \"netreach-probe-x7k2p\" not found",
                ),
            )
            .await;
    };
    let (status, ()) = tokio::join!(
        wait_for_result(&client, &request, None, FAST, &mut quiet),
        api
    );
    assert_eq!(
        status.unwrap_err().to_string(),
        "ProbeRequest shop/netreach-probe-x7k2p was deleted before an agent answered"
    );
}

#[tokio::test]
async fn wait_times_out_when_no_agent_answers() {
    let (client, mut server) = mock_client();
    let request = request_ref();
    let mut quiet = |_: &Progress<'_>| {};
    let pending = stored("netreach-probe-x7k2p", Some(json!({"phase": "Pending"})));
    let mut looks = 0;
    let mut count = |_: &Progress<'_>| looks += 1;
    let status = tokio::select! {
        status = wait_for_result(&client, &request, Some("node-1"), FAST, &mut count) => status,
        () = answer_forever(&mut server, 200, pending) => unreachable!(),
    };
    let error = status.unwrap_err();
    assert!(matches!(error, Error::NoAgent { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "no agent answered within 300ms: is netreach running on the source pod's node?"
        ),
        "{message}"
    );
    assert!(message.contains("node-1"), "{message}");
    assert!(looks > 1, "progress was reported {looks} times");

    // An agent that started but did not finish is a different problem.
    let running = stored(
        "netreach-probe-x7k2p",
        Some(json!({"phase": "Running", "node": "node-1"})),
    );
    let status = tokio::select! {
        status = wait_for_result(&client, &request, None, FAST, &mut quiet) => status,
        () = answer_forever(&mut server, 200, running) => unreachable!(),
    };
    assert_eq!(
        status.unwrap_err().to_string(),
        "the agent on node node-1 started ProbeRequest shop/netreach-probe-x7k2p but did not finish within 300ms"
    );
}

#[tokio::test]
async fn wait_read_forbidden_says_the_request_exists() {
    let (client, mut server) = mock_client();
    let request = request_ref();
    let mut quiet = |_: &Progress<'_>| {};
    let (status, _) = tokio::join!(
        wait_for_result(&client, &request, None, FAST, &mut quiet),
        server.respond(403, api_error(403, "Forbidden", "cannot get"))
    );
    let message = status.unwrap_err().to_string();
    assert!(
        message.starts_with("not allowed to read proberequests in namespace shop"),
        "{message}"
    );
    assert!(message.contains("shop/netreach-probe-x7k2p"), "{message}");
}

#[tokio::test]
async fn execute_looks_up_the_node_creates_and_waits() {
    let (client, mut server) = mock_client();
    let plan = plan();
    let mut quiet = |_: &Progress<'_>| {};
    let api = async {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "frontend", "namespace": "shop"},
            "spec": {"nodeName": "node-1", "containers": []},
        });
        let mut paths = vec![server.respond(200, pod).await.path];
        paths.push(
            server
                .respond(201, stored("netreach-probe-x7k2p", None))
                .await
                .path,
        );
        paths.push(
            server
                .respond(200, stored("netreach-probe-x7k2p", Some(blocked())))
                .await
                .path,
        );
        paths
    };
    let (finished, paths) = tokio::join!(execute(&client, &plan, FAST, &mut quiet), api);
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/shop/pods/frontend".to_string(),
            REQUESTS.to_string(),
            format!("{REQUESTS}/netreach-probe-x7k2p"),
        ]
    );
    let finished = finished.unwrap();
    assert_eq!(finished.request, request_ref());

    let text = render_text(
        &ObjectRef::new("shop", "frontend"),
        &plan.target_label(),
        &finished,
    );
    for want in [
        "shop/frontend -> payments/gateway:8443/TCP\n",
        "  summary      shop/frontend -> payments/gateway:8443/TCP blocked by payments/default-deny\n",
        "  verdict      blocked_by_policy\n",
        "  reason       default_deny (ingress)\n",
        "  policies     payments/default-deny\n",
        "  outcome      timeout\n",
        "  latency      2000.000 ms\n",
        "  node         node-1\n",
        "  request      shop/netreach-probe-x7k2p\n",
        "explanation:\n  payments/default-deny selects payments/gateway for ingress\n  and has no ingress rules.\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn render_text_shows_why_a_request_failed_and_counts() {
    let failed = Finished {
        request: request_ref(),
        status: ProbeRequestStatus {
            phase: ProbeRequestPhase::Failed,
            message: Some("source pod shop/frontend is not Running".into()),
            ..ProbeRequestStatus::default()
        },
    };
    let text = render_text(
        &ObjectRef::new("shop", "frontend"),
        "dns example.com",
        &failed,
    );
    assert!(
        text.starts_with("shop/frontend -> dns example.com\n"),
        "{text}"
    );
    assert!(
        text.contains("  phase        Failed (the probe could not run)\n"),
        "{text}"
    );
    assert!(
        text.contains("  message      source pod shop/frontend is not Running\n"),
        "{text}"
    );
    assert!(
        text.ends_with("  request      shop/netreach-probe-x7k2p\n"),
        "{text}"
    );
    assert!(
        !text.contains("verdict"),
        "no diagnosis without a probe: {text}"
    );

    let counted = Finished {
        request: request_ref(),
        status: ProbeRequestStatus {
            phase: ProbeRequestPhase::Succeeded,
            outcome: Some("open".into()),
            outcomes: [("open".to_string(), 4), ("timeout".to_string(), 1)].into(),
            ..ProbeRequestStatus::default()
        },
    };
    let text = render_text(&ObjectRef::new("shop", "frontend"), "x", &counted);
    assert!(
        text.contains("  outcome      open (open 4, timeout 1)\n"),
        "{text}"
    );
}

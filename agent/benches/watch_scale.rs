//! What one agent's watches cost in a 5,000-node, 150,000-pod cluster: the node-scoped design
//! (`--watch-scope node`) against the cluster-wide one (`--watch-scope cluster`).
//!
//! ```text
//! watch_scale ──spawns──> watch_scale serve      the fake API (cluster::fake_api) on 127.0.0.1,
//!      │                                         holding the generated cluster
//!      ├──spawns──> watch_scale agent cluster URL ─┐ each design in a process of its own: the
//!      └──spawns──> watch_scale agent node URL ────┘ agent's watch layer until ready, then one
//!                                                    JSON line: objects held, allocated bytes,
//!                                                    RSS delta, bytes and objects listed
//! ```
//!
//! Run: `cargo bench -p netreach --bench watch_scale` (minutes: the dev build took 9 minutes
//! at 5,000 nodes, most of it the cluster-wide design's list; the fake server holds the cluster
//! as JSON values, a few GiB). Sizes: `WATCH_SCALE_NODES` (default 5000),
//! `WATCH_SCALE_PODS_PER_NODE` (30).
#![allow(clippy::print_stdout)]
// The counting allocator is the one unsafe part: it forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use netreach::cluster::fake_api::{FakeApi, SentCounts};
use netreach::cluster::watch::{ClusterView, CniAgentMatcher, PodScope, Watchers};
use serde_json::{Value, json};

/// Bytes currently allocated by the process.
struct Counting;

static ALLOCATED: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

// === The generated cluster ===

const APPS: usize = 40;
const NAMESPACES: usize = 500;
const POLICIES: usize = 3000;

/// A pod as the API server sends it (managedFields, env, volumes and statuses included: the
/// agent strips them after decoding, but they travel).
fn pod(i: usize, node: usize) -> Value {
    let ns = i % NAMESPACES;
    let app = (i / NAMESPACES) % APPS;
    let ip = format!("10.{}.{}.{}", 64 + i / 65_536, (i / 256) % 256, i % 256);
    let tier = ["web", "api", "db"][i % 3];
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("app-{app}-{i}"), "namespace": format!("ns-{ns}"),
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "labels": {"app": format!("app-{app}"), "tier": tier,
                       "pod-template-hash": format!("{:x}", i * 7919 % 1_000_000)},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("app-{app}-rs"), "uid": "11111111-0000-4000-8000-000000000000",
                "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}],
        },
        "spec": {
            "nodeName": format!("node-{node}"),
            "containers": [{
                "name": "main", "image": format!("registry.example/app-{app}:1.2.3"),
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "APP", "value": "x"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/token"}],
            }],
            "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken":
                {"path": "token", "expirationSeconds": 3607}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": format!("172.16.{}.{}", node / 256, node % 256),
            "conditions": [
                {"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"}, {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                "image": format!("registry.example/app-{app}:1.2.3"), "imageID": "sha256:abc",
                "containerID": format!("containerd://{i:064x}"),
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}],
        },
    })
}

fn cni_pod(node: usize) -> Value {
    let mut pod = pod(10_000_000 + node, node);
    pod["metadata"]["name"] = json!(format!("calico-node-{node}"));
    pod["metadata"]["namespace"] = json!("kube-system");
    pod["metadata"]["labels"] = json!({"k8s-app": "calico-node"});
    pod["spec"]["hostNetwork"] = json!(true);
    pod
}

fn node(n: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{n}"), "labels": {"kubernetes.io/hostname": format!("node-{n}")}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": format!("172.16.{}.{}", n / 256, n % 256)}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn policy(i: usize) -> Value {
    let ns = i % NAMESPACES;
    let app = i % APPS;
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("pol-{i}"), "namespace": format!("ns-{ns}")},
        "spec": {
            "podSelector": {"matchLabels": {"app": format!("app-{app}")}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}},
                                  {"namespaceSelector": {"matchLabels": {"team": "t1"}}}],
                         "ports": [{"port": 8080}]}],
        },
    })
}

/// A handful of specs as teams write them: sources and destinations by app label in their own
/// namespace, one across namespaces, a DNS check and an ip target.
fn specs() -> Vec<Value> {
    let spec = |ns: usize, name: &str, from: usize, to: Value| {
        json!({
            "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
            "metadata": {"name": name, "namespace": format!("ns-{ns}"), "generation": 1},
            "spec": {"from": {"podSelector": {"matchLabels": {"app": format!("app-{from}")}}},
                     "to": to, "maxPairs": 1000},
        })
    };
    vec![
        spec(
            1,
            "web-to-api",
            1,
            json!([{"podSelector": {"matchLabels": {"app": "app-2"}}, "ports": [{"port": 8080}]}]),
        ),
        spec(
            2,
            "api-to-db",
            3,
            json!([{"podSelector": {"matchLabels": {"app": "app-4"}}, "ports": [{"port": 8080}]}]),
        ),
        spec(
            3,
            "to-payments",
            5,
            json!([{"namespaceSelector": {"matchLabels": {"team": "t3"}},
            "podSelector": {"matchLabels": {"app": "app-6"}}, "ports": [{"port": "http"}]}]),
        ),
        spec(
            4,
            "dns",
            7,
            json!([{"dns": "kubernetes.default.svc.cluster.local"}]),
        ),
        spec(
            5,
            "egress-ip",
            9,
            json!([{"ip": "192.0.2.10", "ports": [{"port": 443}]}]),
        ),
    ]
}

fn generate(api: &FakeApi, nodes: usize, pods_per_node: usize) {
    for ns in 0..NAMESPACES {
        api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{ns}"), "labels": {"team": format!("t{}", ns % 10)}}}));
    }
    api.apply(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    for n in 0..nodes {
        api.apply(node(n));
        api.apply(cni_pod(n));
        for p in 0..pods_per_node {
            api.apply(pod(n * pods_per_node + p, n));
        }
    }
    for i in 0..POLICIES {
        api.apply(policy(i));
    }
    for spec in specs() {
        api.apply(spec);
    }
}

// === The three roles ===

/// One worker thread, as the agent's share of a node would be.
fn one_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn client(url: &str) -> kube::Client {
    kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client")
}

fn serve(nodes: usize, pods_per_node: usize) {
    one_worker_runtime().block_on(async {
        let api = FakeApi::new();
        generate(&api, nodes, pods_per_node);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        println!("{port}");
        std::io::stdout().flush().ok();
        let server = axum::serve(listener, api.router());
        // The orchestrator closes stdin when it is done: stop then, whatever happens.
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        });
        tokio::select! {
            _ = server => {}
            _ = stdin_closed => {}
        }
    });
}

async fn sent(url: &str) -> SentCounts {
    let client = client(url);
    let request = http::Request::get("/fake/sent")
        .body(Vec::new())
        .expect("request");
    client.request(request).await.expect("GET /fake/sent")
}

fn agent(scope: &str, url: &str) {
    one_worker_runtime().block_on(async {
        let before_sent = sent(url).await;
        let client = client(url);
        let (rss_before, allocated_before) = (rss_bytes(), ALLOCATED.load(Ordering::Relaxed));
        let view = ClusterView::new(CniAgentMatcher::builtin());
        let pod_scope = match scope {
            "node" => PodScope::node("node-17"),
            _ => PodScope::cluster(),
        };
        let started = Instant::now();
        let watchers = Watchers::new(client, view.clone()).with_pod_scope(pod_scope);
        let run = tokio::spawn(watchers.run());
        tokio::time::timeout(Duration::from_secs(600), view.readiness.wait())
            .await
            .expect("the watches did not sync within 10 minutes");
        let ready_after = started.elapsed();
        // Let the buffers of the initial lists go.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let counts = view.index.read().counts();
        let specs = view.specs().len();
        let after_sent = sent(url).await;
        let result = json!({
            "scope": scope,
            "pods": counts.pods, "namespaces": counts.namespaces, "nodes": counts.nodes,
            "policies": counts.policies, "specs": specs,
            "objects": counts.pods + counts.namespaces + counts.nodes + counts.policies,
            "allocated_bytes": ALLOCATED.load(Ordering::Relaxed) - allocated_before,
            "rss_delta_bytes": rss_bytes().saturating_sub(rss_before),
            "rss_bytes": rss_bytes(),
            "list_bytes": after_sent.list_bytes - before_sent.list_bytes,
            "listed_objects": after_sent.listed_objects - before_sent.listed_objects,
            "ready_seconds": ready_after.as_secs_f64(),
        });
        println!("{result}");
        run.abort();
    });
}

fn mib(v: &Value) -> String {
    format!("{:.1} MiB", v.as_f64().unwrap_or(0.0) / 1_048_576.0)
}

fn main() {
    let nodes = env_usize("WATCH_SCALE_NODES", 5000);
    let pods_per_node = env_usize("WATCH_SCALE_PODS_PER_NODE", 30);
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => return serve(nodes, pods_per_node),
        Some("agent") => return agent(&args[2], &args[3]),
        _ => {}
    }
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let mut server = Command::new(&exe)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the fake API");
    let mut port = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("the fake API's port");
    let url = format!("http://127.0.0.1:{}", port.trim());
    println!(
        "fake API: {nodes} nodes, {} pods, {NAMESPACES} namespaces, {POLICIES} policies, {} ProbeSpecs (generated in {:.1}s)",
        nodes * pods_per_node + nodes,
        specs().len(),
        started.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for scope in ["cluster", "node"] {
        let output = Command::new(&exe)
            .args(["agent", scope, &url])
            .output()
            .expect("run an agent");
        let line = String::from_utf8_lossy(&output.stdout);
        let result: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| {
            panic!(
                "agent {scope} printed no result: {line} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        results.push(result);
    }
    drop(server.stdin.take());
    let _ = server.wait();

    println!(
        "\n{:<34} {:>16} {:>16}",
        "per agent", "--watch-scope cluster", "--watch-scope node"
    );
    let row = |name: &str, f: &dyn Fn(&Value) -> String| {
        println!("{name:<34} {:>21} {:>18}", f(&results[0]), f(&results[1]));
    };
    let num = |key: &'static str| move |v: &Value| v[key].to_string();
    row("pods held", &num("pods"));
    row("objects held (pods+ns+nodes+pol)", &num("objects"));
    row("index + view bytes (allocated)", &|v| {
        mib(&v["allocated_bytes"])
    });
    row("RSS delta", &|v| mib(&v["rss_delta_bytes"]));
    row("RSS", &|v| mib(&v["rss_bytes"]));
    row("bytes listed (initial sync)", &|v| mib(&v["list_bytes"]));
    row("objects listed", &num("listed_objects"));
    row("specs served", &num("specs"));
    row("ready after (s)", &|v| {
        format!("{:.1}", v["ready_seconds"].as_f64().unwrap_or(0.0))
    });
    println!("\ntotal {:.0}s", started.elapsed().as_secs_f64());
}

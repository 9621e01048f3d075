//! A pod's sandbox recreated under the same UID, end to end on the testbed (root): the
//! pipeline's first probe opens the pod's netns; the testbed then kills the holder and app,
//! deletes the netns (its eth0 with it) and brings up a new one with the same IP, holder and
//! app in new container cgroups; the next probe, once the cached handle is due for its
//! re-check, runs in the NEW netns and reads open. With the old handle kept, the probe would
//! run in a namespace whose eth0 is gone: a false block.

mod netns_support;

use std::path::PathBuf;
use std::time::Duration;

use netreach::cluster::SpecRef;
use netreach::cluster::changes::ChangeLog;
use netreach::cluster::load::Loaded;
use netreach::cluster::model::{ObjectRef, Protocol};
use netreach::netns::{REVALIDATE_EVERY, SocketFactory, netns_inode};
use netreach::pair::{Pair, PairTarget, pair_id};
use netreach::pipeline::{Pipeline, PipelineConfig};
use netreach::probe::{Outcome, Prober};
use probe_spec::{Expectation, PairVerdict};
use testbed::Testbed;

const SCENARIO: &str = "name: sandbox-restart
nodes: [node-1, node-2]
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
  - apiVersion: v1
    kind: Pod
    metadata: {name: client, namespace: shop}
    spec: {nodeName: node-1, containers: [{name: c}]}
    status: {phase: Running, podIP: 10.244.1.10, conditions: [{type: Ready, status: \"True\"}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: server, namespace: shop}
    spec: {nodeName: node-2, containers: [{name: s, ports: [{containerPort: 8080}]}]}
    status: {phase: Running, podIP: 10.244.2.10, conditions: [{type: Ready, status: \"True\"}]}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_probe_after_a_sandbox_restart_runs_in_the_new_netns() {
    if !netns_support::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("netreach-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join("scenario.yaml");
    std::fs::write(&path, SCENARIO).expect("scenario");
    let mut tb = Testbed::start_file(&path).expect("testbed starts");
    let _ = std::fs::remove_dir_all(&dir);

    let mut loaded = Loaded::new();
    for object in tb.objects() {
        loaded.load_value("scenario", object);
    }
    let index = loaded.index;
    let pipeline = Pipeline::new(
        Prober::new(SocketFactory::start().expect("factory")),
        PipelineConfig::default(),
    );
    let client = ObjectRef::new("shop", "client");
    let target = PairTarget::Pod {
        pod: ObjectRef::new("shop", "server"),
        ip: "10.244.2.10".parse().expect("ip"),
        port: 8080,
        protocol: Protocol::Tcp,
    };
    let spec = SpecRef::Namespaced(ObjectRef::new("shop", "paths"));
    let pair = Pair {
        id: pair_id(&spec, &client, &target),
        spec,
        from: client.clone(),
        target,
    };
    let changes = ChangeLog::default();
    let probe = || {
        pipeline.probe_pair(
            &index,
            &pair,
            Expectation::Allow,
            Duration::from_millis(500),
            &changes,
        )
    };
    let uid = tb.pod("shop", "client").expect("client").uid.clone();

    let before = probe().await;
    assert_eq!(
        before.first().verdict,
        PairVerdict::Ok,
        "{:#?}",
        before.first()
    );
    let old_inode = pipeline
        .registry()
        .get(&uid)
        .expect("cached")
        .handle
        .inode();

    let new_pod = tb
        .recreate_pod_sandbox("shop", "client")
        .expect("sandbox recreated");
    let new_inode = netns_inode(new_pod.netns_path.as_ref().expect("netns")).expect("inode");
    assert_ne!(old_inode, new_inode, "a new namespace");
    tokio::time::sleep(REVALIDATE_EVERY + Duration::from_millis(100)).await;

    let after = probe().await;
    let report = after.first();
    assert_eq!(report.outcome, Outcome::Open, "{report:#?}");
    assert_eq!(report.verdict, PairVerdict::Ok, "{report:#?}");
    let cached = pipeline.registry().get(&uid).expect("cached again");
    assert_eq!(
        cached.handle.inode(),
        new_inode,
        "probed from the new netns"
    );
    assert_eq!(cached.sandbox_pid, new_pod.pause_pid);
    tb.teardown().expect("teardown");
}

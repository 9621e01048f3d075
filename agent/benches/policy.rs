//! Policy-engine benchmarks on the synthetic cluster of the foundation issue: 1,000 pods in 50
//! namespaces with 200 policies using the whole feature set.
//!
//! Targets: loading the objects < 200 ms; one explain < 100 µs; the full matrix on one port
//! (1,000,000 flows) < 1 s on one core. Run with `make bench` (or
//! `cargo bench -p netreach --bench policy`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netreach::cluster::load::Loaded;
use netreach::cluster::synthetic::{SyntheticSpec, cluster_yaml};
use netreach::cluster::{Protocol, load};
use netreach::policy::{Endpoint, Engine, Flow, MatrixPort, Profile};

fn load_cluster(yaml: &str) -> Loaded {
    let mut loaded = Loaded::default();
    load::load_str("synthetic.yaml", yaml, &mut loaded);
    loaded
}

/// A fixed sample of flows, most of them into isolated pods so explanations are full.
fn sample_flows(engine: &Engine, count: usize) -> Vec<Flow> {
    let pods = engine.pods();
    let n = pods.len();
    (0..count)
        .map(|i| {
            let from = &pods[(i * 7919) % n];
            let to = &pods[(i * 104_729 + 13) % n];
            Flow {
                from: Endpoint::Pod(from.key()),
                to: Endpoint::Pod(to.key()),
                port: 8080,
                protocol: Protocol::Tcp,
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let yaml = cluster_yaml(SyntheticSpec::BENCH);
    let loaded = load_cluster(&yaml);
    assert!(
        loaded.problems.is_empty() && loaded.parse_errors.is_empty(),
        "synthetic cluster must load cleanly: {:?} {:?}",
        loaded.problems.first(),
        loaded.parse_errors.first()
    );
    assert_eq!(loaded.index.counts().pods, 1000);
    assert_eq!(loaded.index.counts().policies, 200);
    let engine = Engine::new(&loaded.index, Profile::UPSTREAM);

    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("parse+convert 1000 pods/50 ns/200 policies", |b| {
        b.iter(|| load_cluster(black_box(&yaml)))
    });
    group.bench_function("compile engine", |b| {
        b.iter(|| Engine::new(black_box(&loaded.index), Profile::UPSTREAM))
    });
    group.finish();

    let flows = sample_flows(&engine, 1000);
    let denied = flows
        .iter()
        .filter(|f| !engine.evaluate(f).map(|v| v.allowed).unwrap_or(true))
        .count();
    eprintln!("explain sample: {} flows, {denied} denied", flows.len());
    let mut group = c.benchmark_group("explain");
    group.throughput(Throughput::Elements(flows.len() as u64));
    group.bench_function("1000 sampled flows (per-element time = one explain)", |b| {
        b.iter(|| {
            for flow in &flows {
                black_box(engine.evaluate(black_box(flow)).ok());
            }
        })
    });
    // The slowest single flow of the sample, measured alone.
    let worst = flows
        .iter()
        .max_by_key(|f| {
            let start = std::time::Instant::now();
            for _ in 0..20 {
                black_box(engine.evaluate(f).ok());
            }
            start.elapsed()
        })
        .cloned()
        .expect("flows");
    group.throughput(Throughput::Elements(1));
    group.bench_function("slowest flow of the sample", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(&worst)).ok()))
    });
    group.finish();

    let port = [MatrixPort {
        port: 8080,
        protocol: Protocol::Tcp,
    }];
    let mut group = c.benchmark_group("matrix");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(
        (engine.endpoint_ids().len() * engine.endpoint_ids().len()) as u64,
    ));
    group.bench_function("1000x1000 pods on 8080/TCP (1,000,000 flows)", |b| {
        b.iter(|| {
            let mut allowed = 0usize;
            engine.for_each_cell(black_box(&port), |cell| {
                allowed += usize::from(cell.allowed)
            });
            allowed
        })
    });
    group.finish();
}

criterion_group!(policy, benches);
criterion_main!(policy);

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::Args;
use crate::api::AuthMode;
use crate::api::tls::TlsSource;
use crate::report::metrics::PairSeries;
use crate::runtime::AgentConfig;

/// `netreach agent` alone, so tests parse its flags without the other subcommands.
#[derive(Debug, Parser)]
struct AgentCli {
    #[command(flatten)]
    args: Args,
}

fn parse(argv: &[&str]) -> Result<AgentConfig, clap::Error> {
    let argv = std::iter::once("agent").chain(argv.iter().copied());
    AgentCli::try_parse_from(argv).map(|cli| cli.args.into_config())
}

#[test]
fn every_flag_reads_an_environment_variable() {
    let command = AgentCli::command();
    let mut checked = 0;
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("--{id} has no environment variable"));
        let env = env.to_string_lossy();
        let expected = if id == "node_name" || id == "pod_ip" {
            id.to_ascii_uppercase()
        } else {
            format!("NETREACH_{}", id.to_ascii_uppercase())
        };
        assert_eq!(env, expected, "--{id}");
        assert!(arg.get_help().is_some(), "--{id} has no help");
        checked += 1;
    }
    assert_eq!(checked, 21, "every AgentConfig field has a flag");
}

#[test]
fn defaults_match_the_contract() {
    let config = parse(&["--node-name", "node-1"]).expect("parses");
    assert_eq!(config.node_name, "node-1");
    assert_eq!(
        config.listen,
        "0.0.0.0:9464".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(config.profile.name, "upstream");
    assert_eq!(config.concurrency, 64);
    assert_eq!(config.cni_selector, None);
    assert!(config.events);
    assert_eq!(config.status_interval, Duration::from_secs(30));
    assert_eq!(config.view_stale_after, Duration::from_secs(30));
    assert_eq!(
        config.termination_log,
        PathBuf::from("/dev/termination-log")
    );
    assert_eq!(config.shutdown_grace, Duration::from_secs(5));
    assert_eq!(config.pair_metrics, PairSeries::Exceptions);
    assert_eq!(config.watch_scope, crate::cluster::watch::WatchScope::Node);
    assert_eq!(
        config.api.health_listen,
        "127.0.0.1:9465".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(config.api.auth, AuthMode::Enabled);
    assert_eq!(config.api.audiences, ["netreach"]);
    assert!(config.api.read_audiences.is_empty());
    assert_eq!(config.api.max_connections, 256);
    assert_eq!(
        config.api.tls,
        TlsSource::SelfSigned {
            names: vec!["node-1".into()]
        }
    );
}

#[test]
fn api_serving_flags() {
    let config = parse(&[
        "--node-name=node-1",
        "--listen=10.244.0.5:9464",
        "--pod-ip=10.244.0.5",
        "--api-auth=false",
        "--api-audiences=netreach, other",
        "--read-audiences=netreach",
        "--api-max-connections=32",
        "--health-listen=127.0.0.1:8081",
    ])
    .expect("parses");
    assert_eq!(config.api.auth, AuthMode::Disabled);
    assert_eq!(config.api.audiences, ["netreach", "other"]);
    assert_eq!(config.api.read_audiences, ["netreach"]);
    assert_eq!(config.api.max_connections, 32);
    assert_eq!(config.api.health_listen.port(), 8081);
    assert_eq!(
        config.api.tls,
        TlsSource::SelfSigned {
            names: vec!["node-1".into(), "10.244.0.5".into(), "10.244.0.5".into()]
        }
    );

    let config = parse(&[
        "--node-name=node-1",
        "--tls-cert-file=/certs/tls.crt",
        "--tls-key-file=/certs/tls.key",
    ])
    .expect("parses");
    assert_eq!(
        config.api.tls,
        TlsSource::Files {
            cert: "/certs/tls.crt".into(),
            key: "/certs/tls.key".into()
        }
    );
}

#[test]
fn flags_parse_into_the_config() {
    let config = parse(&[
        "--node-name=node-2",
        "--listen=127.0.0.1:9000",
        "--concurrency=8",
        "--cni-selector=kube-system/app=my-cni",
        "--events=false",
        "--status-interval=1m",
        "--termination-log=/tmp/why",
        "--shutdown-grace=500ms",
    ])
    .expect("parses");
    assert_eq!(config.node_name, "node-2");
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.concurrency, 8);
    assert_eq!(
        config.cni_selector.as_deref(),
        Some("kube-system/app=my-cni")
    );
    assert!(!config.events);
    assert_eq!(config.status_interval, Duration::from_secs(60));
    assert_eq!(config.termination_log, PathBuf::from("/tmp/why"));
    assert_eq!(config.shutdown_grace, Duration::from_millis(500));
}

#[test]
fn events_flag_forms() {
    let cases: &[(&[&str], Option<bool>)] = &[
        (&[], Some(true)),
        (&["--events"], Some(true)),
        (&["--events=true"], Some(true)),
        (&["--events=false"], Some(false)),
        (&["--events=no"], Some(false)),
        (&["--events=0"], Some(false)),
        (&["--events=maybe"], None),
    ];
    for (flags, expected) in cases {
        let mut argv = vec!["--node-name=n"];
        argv.extend_from_slice(flags);
        let got = parse(&argv).ok().map(|c| c.events);
        assert_eq!(got, *expected, "{flags:?}");
    }
}

#[test]
fn invalid_values_are_rejected() {
    let cases: &[&[&str]] = &[
        &[],
        &["--node-name=n", "--concurrency=0"],
        &["--node-name=n", "--status-interval=0s"],
        &["--node-name=n", "--status-interval=soon"],
        &["--node-name=n", "--shutdown-grace=5"],
        &["--node-name=n", "--profile=nonsense"],
        &["--node-name=n", "--listen=localhost"],
        &["--node-name=n", "--tls-cert-file=/c.crt"],
        &["--node-name=n", "--tls-key-file=/c.key"],
        &["--node-name=n", "--api-max-connections=0"],
        &["--node-name=n", "--api-auth=sometimes"],
        &["--node-name=n", "--pair-metrics=some"],
    ];
    for argv in cases {
        assert!(parse(argv).is_err(), "{argv:?} should be rejected");
    }
}

#[test]
fn an_empty_cni_selector_means_none() {
    let config = parse(&["--node-name=n", "--cni-selector="]).expect("parses");
    assert_eq!(config.cni_selector, None);
}

#[test]
fn error_chains_fit_on_one_line_without_repeats() {
    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Quoting(#[source] std::io::Error);
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Wrapping(#[source] std::io::Error);
    let cause = || std::io::Error::other("root cause");
    assert_eq!(super::error_chain(&Quoting(cause())), "outer: root cause");
    assert_eq!(super::error_chain(&Wrapping(cause())), "outer: root cause");
}

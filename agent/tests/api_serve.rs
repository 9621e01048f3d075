//! The API server's connection bounds over real sockets: the connection cap against an idle
//! flood, the header-read timeout against a half-sent request, TLS with a certificate from
//! files (and plain HTTP refused on it).
//!
//! Each case runs inside a network namespace the test creates (loopback only), by running this
//! test binary again under `ip netns exec` with [`INSIDE`] set; the inner tests are ignored
//! otherwise. Needs root and iproute2; skipped without them.

mod netns_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use netns_support::{Netns, unique_prefix};
use netreach::api::serve::{ConnectionMetrics, ServeConfig, serve};
use netreach::api::tls::{TlsSource, server_config};
use prometheus::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Set when the inner tests run inside the test's network namespace.
const INSIDE: &str = "NETREACH_API_SERVE_TEST_NETNS";

const INNER_TESTS: &[&str] = &[
    "inner_an_idle_flood_is_capped",
    "inner_half_sent_requests_and_idle_connections_are_closed",
    "inner_tls_from_files_and_plain_http_refused",
];

#[test]
fn api_server_bounds_inside_a_test_netns() {
    require_root!();
    let netns = Netns::create(unique_prefix());
    let exe = std::env::current_exe().expect("test binary");
    for test in INNER_TESTS {
        let status = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .arg(&exe)
            .args(["--exact", test, "--ignored", "--nocapture"])
            .env(INSIDE, "1")
            .status()
            .expect("run the inner test");
        assert!(status.success(), "{test} failed inside {}", netns.name);
    }
}

fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

// === Fixtures ===

struct Server {
    addr: SocketAddr,
    registry: Registry,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(config: ServeConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let registry = Registry::new();
        let metrics = ConnectionMetrics::register(&registry).expect("metrics");
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, router, config, metrics, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            registry,
            stop: Some(stop),
            task,
        }
    }

    /// A sample of the connection metrics, e.g. `closed{reason="over_limit"}` or `open`.
    fn metric(&self, name: &str, reason: Option<&str>) -> f64 {
        for family in self.registry.gather() {
            if family.name() != name {
                continue;
            }
            for metric in family.get_metric() {
                let matches = reason.is_none_or(|reason| {
                    metric
                        .get_label()
                        .iter()
                        .any(|l| l.name() == "reason" && l.value() == reason)
                });
                if matches {
                    return if family.name().ends_with("_total") {
                        metric.get_counter().get_value()
                    } else {
                        metric.get_gauge().get_value()
                    };
                }
            }
        }
        panic!("no {name} {reason:?}");
    }

    fn open(&self) -> f64 {
        self.metric("netreach_api_connections_open", None)
    }

    fn closed(&self, reason: &str) -> f64 {
        self.metric("netreach_api_connections_closed_total", Some(reason))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .expect("task")
            .expect("served");
    }
}

/// Waits (bounded) until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Reads until the peer closes (Ok) or `limit` passes (Err).
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Result<(), ()> {
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .map_err(|_| ())
}

async fn get_healthz(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("response within 5s")
        .expect("read response");
    String::from_utf8_lossy(&response).into_owned()
}

// === Inner tests ===

/// Before: 3,000 idle connections took the agent from 22 to 1,302 descriptors. Now at most
/// `max_connections` are held; the rest are closed as they arrive and counted.
#[tokio::test]
#[ignore = "runs inside a test netns, started by api_server_bounds_inside_a_test_netns"]
async fn inner_an_idle_flood_is_capped() {
    if !inside() {
        return;
    }
    let server = Server::start(ServeConfig {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(30),
        ..ServeConfig::default()
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    eventually("300 connections accepted", || {
        server.open() + server.closed("over_limit") >= 300.0
    })
    .await;
    assert_eq!(server.open(), 16.0);
    assert_eq!(server.closed("over_limit"), 284.0);
    // The refused ones really are closed.
    let mut refused = 0;
    for stream in &mut flood {
        if closed_within(stream, Duration::from_millis(20))
            .await
            .is_ok()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 284);

    // Once the flood leaves, the server answers again.
    drop(flood);
    eventually("the flood's connections closed", || server.open() == 0.0).await;
    let mut client = TcpStream::connect(server.addr).await.expect("connect");
    let response = get_healthz(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.stop().await;
}

/// Before: a connection that sent half a request line stayed open for ever.
#[tokio::test]
#[ignore = "runs inside a test netns, started by api_server_bounds_inside_a_test_netns"]
async fn inner_half_sent_requests_and_idle_connections_are_closed() {
    if !inside() {
        return;
    }
    let server = Server::start(ServeConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ServeConfig::default()
    })
    .await;
    let mut half = TcpStream::connect(server.addr).await.expect("connect");
    half.write_all(b"GET /heal").await.expect("write");
    closed_within(&mut half, Duration::from_secs(5))
        .await
        .expect("a half-sent request is closed after the header timeout");

    // A keep-alive connection that goes quiet after a request is closed the same way.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 64];
    let read = idle.read(&mut first).await.expect("response");
    assert!(first[..read].starts_with(b"HTTP/1.1 200"));
    closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    eventually("both connections counted closed", || server.open() == 0.0).await;
    server.stop().await;
}

/// HTTPS with a certificate (from a test CA) read from files; a plain-HTTP request and a
/// client that never starts the handshake are both dropped.
#[tokio::test]
#[ignore = "runs inside a test netns, started by api_server_bounds_inside_a_test_netns"]
async fn inner_tls_from_files_and_plain_http_refused() {
    if !inside() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("{}-tls", unique_prefix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_pem = write_ca_signed_pair(&dir);
    let tls = server_config(&TlsSource::Files {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    })
    .expect("TLS from files");
    let server = Server::start(ServeConfig {
        handshake_timeout: Duration::from_millis(300),
        tls: Some(tls),
        ..ServeConfig::default()
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls_pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).expect("CA parses"),
        )
        .expect("CA added");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let response = get_healthz(&mut tls).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200"),
        "plain HTTP answered"
    );

    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("a client that never shakes hands is dropped");
    eventually("failed handshakes counted", || {
        server.closed("handshake_failed") >= 2.0
    })
    .await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes `tls.crt` and `tls.key` for localhost, signed by a fresh CA; returns the CA's PEM.
fn write_ca_signed_pair(dir: &Path) -> String {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    std::fs::write(dir.join("tls.crt"), leaf.pem()).expect("write cert");
    std::fs::write(dir.join("tls.key"), leaf_key.serialize_pem()).expect("write key");
    ca.pem()
}

//! Serving a [`Router`] on a socket the network can reach, with every connection bounded.
//!
//! ```text
//! accept ─> connection slot (at most `max_connections`, else closed at once and counted)
//!        ─> TLS handshake (within `handshake_timeout`)
//!        ─> HTTP/1.1: each request head within `header_read_timeout` (an idle keep-alive
//!           connection is closed after it), head buffer at most `max_header_bytes`
//!        ─> the router (its own request timeout, see `ApiLimits::request_timeout`)
//!        ─> closed gracefully after `max_connection_age`, or at shutdown
//! ```
//!
//! axum's own `serve` exposes none of these bounds, so this is a small accept loop over hyper.
//! An idle flood costs at most `max_connections` descriptors, which the agent's probe sockets
//! never compete for beyond that.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::report::metrics::NAMESPACE;

/// The bounds on connections.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Open connections at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// The largest request head, in bytes.
    pub max_header_bytes: usize,
    /// A connection is closed gracefully after this long, however busy.
    pub max_connection_age: Duration,
    /// How long open connections may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connection_age: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Connection counters: `netreach_api_connections_open` and
/// `netreach_api_connections_closed_total{reason}`.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    open: IntGauge,
    closed: IntCounterVec,
}

/// The `reason` label of `netreach_api_connections_closed_total`.
pub const CLOSE_REASONS: &[&str] = &["over_limit", "handshake_failed", "error", "done"];

impl ConnectionMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGauge::with_opts(
            Opts::new(
                "api_connections_open",
                "Connections open to the agent's HTTP API.",
            )
            .namespace(NAMESPACE),
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "api_connections_closed_total",
                "Connections to the agent's HTTP API that ended, by why: over_limit (refused at \
                 accept because max connections were open), handshake_failed, error, done.",
            )
            .namespace(NAMESPACE),
            &["reason"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        for reason in CLOSE_REASONS {
            closed.with_label_values(&[*reason]);
        }
        Ok(Self { open, closed })
    }

    /// Counters that no registry gathers, for callers that do not export them.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry accepts the connection metrics")
    }

    fn closed(&self, reason: &str) {
        self.closed.with_label_values(&[reason]).inc();
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections finish
/// within `config.shutdown_grace`. Only an error of the listener itself ends it early.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let acceptor = config.tls.clone().map(TlsAcceptor::from);
    let (closing_tx, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_transient_accept_error(&error) => {
                // Out of descriptors or a connection reset before accept: back off rather than
                // spin, and keep serving.
                warn!(%error, "accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "connection refused: too many open");
            metrics.closed("over_limit");
            drop(stream);
            continue;
        };
        let (config, acceptor, router, metrics, closing) = (
            config.clone(),
            acceptor.clone(),
            router.clone(),
            metrics.clone(),
            closing_rx.clone(),
        );
        tokio::spawn(async move {
            metrics.open.inc();
            let reason = serve_connection(stream, acceptor, router, &config, closing).await;
            metrics.open.dec();
            metrics.closed(reason);
            drop(slot);
        });
    }
    closing_tx.send_replace(true);
    // Every connection returns its slot when it ends; wait for all of them, within the grace.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(config.shutdown_grace, slots.acquire_many(all)).await;
    if drained.is_err() {
        warn!("connections still open after the shutdown grace; closing them");
    }
    Ok(())
}

/// Errors after which the listener still works.
fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// One connection, from handshake to close; returns the `reason` it closed with.
async fn serve_connection(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    config: &ServeConfig,
    closing: watch::Receiver<bool>,
) -> &'static str {
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => serve_http(stream, router, config, closing).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(config.handshake_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => serve_http(tls, router, config, closing).await,
                Ok(Err(error)) => {
                    debug!(%error, "TLS handshake failed");
                    "handshake_failed"
                }
                Err(_) => {
                    debug!("TLS handshake timed out");
                    "handshake_failed"
                }
            }
        }
    }
}

async fn serve_http<S>(
    stream: S,
    router: Router,
    config: &ServeConfig,
    mut closing: watch::Receiver<bool>,
) -> &'static str
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let age = tokio::time::sleep(config.max_connection_age);
    tokio::pin!(age);
    // Set once the connection is asked to close: a client that neither finishes nor reads its
    // response is dropped when it runs out.
    let mut hard_stop: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let closing_asked = hard_stop.is_some();
        tokio::select! {
            result = connection.as_mut() => {
                return match result {
                    Ok(()) => "done",
                    Err(error) => {
                        debug!(%error, "connection ended with an error");
                        "error"
                    }
                };
            }
            () = &mut age, if !closing_asked => {
                connection.as_mut().graceful_shutdown();
                hard_stop = Some(Box::pin(tokio::time::sleep(config.shutdown_grace)));
            }
            changed = closing.changed(), if !closing_asked => {
                if changed.is_err() || *closing.borrow() {
                    connection.as_mut().graceful_shutdown();
                    hard_stop = Some(Box::pin(tokio::time::sleep(config.shutdown_grace)));
                }
            }
            () = async { hard_stop.as_mut().expect("guarded by closing_asked").await }, if closing_asked => {
                debug!("connection did not close within the grace; dropping it");
                return "error";
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_accept_errors_keep_the_listener() {
        let cases = [
            (io::Error::from_raw_os_error(libc::EMFILE), true),
            (io::Error::from_raw_os_error(libc::ENFILE), true),
            (io::Error::from(io::ErrorKind::ConnectionAborted), true),
            (io::Error::from_raw_os_error(libc::EBADF), false),
            (io::Error::from_raw_os_error(libc::EINVAL), false),
        ];
        for (error, transient) in cases {
            assert_eq!(is_transient_accept_error(&error), transient, "{error}");
        }
    }
}

//! `netreach ui`: the agents' web page on this workstation, with every node's pairs gathered
//! through the API server.
//!
//! ```text
//! browser ──> 127.0.0.1:9480  /            the page (the agent's own, embedded)
//!                             /v1/pairs    ──> list the agent pods (kubeconfig)
//!                                          ──> each agent's /v1/pairs through the API server's
//!                                              pod proxy, the token in X-Netreach-Authorization
//!                                          <── merged: every pair (with its node), and which
//!                                              nodes did not answer
//! ```
//!
//! The API server removes `Authorization` from what its proxy forwards, so the agents'
//! reader token travels in `X-Netreach-Authorization` (the agent checks it like any token).
//! The caller needs `get pods/proxy` on the agent pods (the API server checks) and a token the
//! agents accept for `/v1/pairs`: minted here for a ServiceAccount bound to
//! `netreach-pairs-reader` (TokenRequest, 10 minutes, renewed), or read from a file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::routing::get;

use crate::api;

mod gather;

pub use gather::{Agents, Gathered, TokenSource, gather};

/// Serve the web page on this workstation with every node's pairs, gathered through the API
/// server (read-only).
///
/// Needs a kubeconfig whose user may list pods and `get pods/proxy` in the agents' namespace,
/// and a token the agents accept for /v1/pairs: by default one minted for the ServiceAccount
/// --service-account (create serviceaccounts/token), or --token-file.
///
/// Example: netreach ui   (then open the printed URL)
///
/// Example: netreach ui --once > pairs.json
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kubeconfig (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    context: Option<String>,
    /// The namespace the agents run in.
    #[arg(long, short = 'n', default_value = "netreach")]
    namespace: String,
    /// The label selector of the agent pods.
    #[arg(long, default_value = "app.kubernetes.io/name=netreach")]
    selector: String,
    /// The agents' API port (the chart's agent.port).
    #[arg(long, default_value_t = 9464)]
    agent_port: u16,
    /// A ServiceAccount bound to netreach-pairs-reader, `namespace/name`: a 10-minute token is
    /// minted for it (TokenRequest) and renewed.
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "netreach/netreach-pairs-reader"
    )]
    service_account: String,
    /// A file holding the token to present to the agents instead (re-read on every gather).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Where to serve the page: a loopback address (the page itself needs no token).
    #[arg(long, default_value = "127.0.0.1:9480")]
    listen: SocketAddr,
    /// Gather once, print the merged JSON (as the page's /v1/pairs) and exit.
    #[arg(long)]
    once: bool,
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if !self.listen.ip().is_loopback() {
            bail!(
                "--listen {}: the page is served without authentication, so only on a loopback address",
                self.listen
            );
        }
        let token = match &self.token_file {
            Some(path) => TokenSource::File(path.clone()),
            None => TokenSource::service_account(&self.service_account)?,
        };
        let agents = Agents {
            namespace: self.namespace.clone(),
            selector: self.selector.clone(),
            port: self.agent_port,
        };
        let runtime = super::runtime("netreach-ui").context("starting the async runtime")?;
        runtime.block_on(async {
            let client =
                super::kube_client::client(self.kubeconfig.as_deref(), self.context.clone())
                    .await?;
            let state = Arc::new(UiState::new(client, agents, token));
            if self.once {
                let gathered = state.gathered().await?.gathered;
                let mut stdout = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut stdout, &gathered.json())?;
                writeln!(stdout)?;
                eprintln!("{}", gathered.summary());
                return Ok(ExitCode::SUCCESS);
            }
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .with_context(|| format!("listening on {}", self.listen))?;
            eprintln!("web page: http://{}/ (Ctrl-C to stop)", self.listen);
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("serving the page")?;
            Ok(ExitCode::SUCCESS)
        })
    }
}

/// What the local server shares.
pub struct UiState {
    pub client: kube::Client,
    pub agents: Agents,
    pub token: TokenSource,
    /// The last gather, when, and its JSON as served: a page refresh within [`REUSE_FOR`]
    /// reuses it, and one gather runs at a time whatever the number of open tabs.
    last: tokio::sync::Mutex<Option<LastGather>>,
}

#[derive(Clone)]
struct LastGather {
    at: std::time::Instant,
    gathered: Arc<Gathered>,
    json: axum::body::Bytes,
}

/// How long a gather answers page refreshes.
const REUSE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

impl UiState {
    pub fn new(client: kube::Client, agents: Agents, token: TokenSource) -> Self {
        Self {
            client,
            agents,
            token,
            last: tokio::sync::Mutex::new(None),
        }
    }

    async fn gathered(&self) -> anyhow::Result<LastGather> {
        let mut last = self.last.lock().await;
        if let Some(reused) = last.as_ref().filter(|l| l.at.elapsed() < REUSE_FOR) {
            return Ok(reused.clone());
        }
        let gathered = gather(&self.client, &self.agents, &self.token).await?;
        let fresh = LastGather {
            at: std::time::Instant::now(),
            json: serde_json::to_vec(&gathered.json())?.into(),
            gathered: Arc::new(gathered),
        };
        *last = Some(fresh.clone());
        Ok(fresh)
    }
}

impl std::fmt::Debug for UiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiState")
            .field("agents", &self.agents)
            .finish_non_exhaustive()
    }
}

/// The page, and `/v1/pairs` answered with every node's pairs.
pub fn router(state: Arc<UiState>) -> axum::Router {
    api::ui::routes(axum::Router::new())
        .route("/v1/pairs", get(pairs))
        .with_state(state)
}

async fn pairs(
    State(state): State<Arc<UiState>>,
) -> Result<impl axum::response::IntoResponse, (http::StatusCode, Json<serde_json::Value>)> {
    match state.gathered().await {
        // Rendered once per gather, not per refresh of each tab.
        Ok(last) => Ok((
            [(http::header::CONTENT_TYPE, "application/json")],
            last.json,
        )),
        Err(error) => Err((
            http::StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"error": "gather_failed", "message": format!("{error:#}")})),
        )),
    }
}

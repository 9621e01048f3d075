//! Gathering every agent's pairs through the API server's pod proxy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use http_body_util::{BodyExt, LengthLimitError};
use serde_json::{Value, json};

use crate::api::auth::PROXIED_AUTHORIZATION;
use crate::cluster::ObjectRef;

/// Agents asked at once.
const CONCURRENCY: usize = 8;
/// How long one agent may take to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer taken from one agent (10,000 pairs with explanations are about 30 MB).
const MAX_AGENT_BYTES: usize = 64 * 1024 * 1024;
/// How long a minted token lives, and when it is renewed.
const TOKEN_SECONDS: u64 = 600;
const RENEW_AFTER: Duration = Duration::from_secs(480);

/// Where the agents run.
#[derive(Clone, Debug)]
pub struct Agents {
    pub namespace: String,
    pub selector: String,
    pub port: u16,
}

/// The token presented to the agents.
#[derive(Debug)]
pub enum TokenSource {
    File(PathBuf),
    ServiceAccount {
        account: ObjectRef,
        minted: tokio::sync::Mutex<Option<(Instant, String)>>,
    },
}

impl TokenSource {
    /// `namespace/name` of a ServiceAccount.
    pub fn service_account(text: &str) -> anyhow::Result<Self> {
        let account = text
            .parse::<ObjectRef>()
            .map_err(|_| anyhow::anyhow!("--service-account {text:?}: expected NAMESPACE/NAME"))?;
        Ok(Self::ServiceAccount {
            account,
            minted: tokio::sync::Mutex::new(None),
        })
    }

    async fn token(&self, client: &kube::Client) -> anyhow::Result<String> {
        match self {
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token file {}", path.display()))?;
                let token = text.trim().to_string();
                if token.is_empty() {
                    bail!("the token file {} is empty", path.display());
                }
                Ok(token)
            }
            TokenSource::ServiceAccount { account, minted } => {
                let mut minted = minted.lock().await;
                if let Some((at, token)) = minted.as_ref()
                    && at.elapsed() < RENEW_AFTER
                {
                    return Ok(token.clone());
                }
                let token = mint(client, account).await?;
                *minted = Some((Instant::now(), token.clone()));
                Ok(token)
            }
        }
    }
}

/// A short-lived token for `account` (TokenRequest).
async fn mint(client: &kube::Client, account: &ObjectRef) -> anyhow::Result<String> {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": TOKEN_SECONDS},
    });
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{}/serviceaccounts/{}/token",
        account.namespace, account.name
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(serde_json::to_vec(&body)?)?;
    let answer = client.request_text(request).await.with_context(|| {
        format!(
            "minting a token for ServiceAccount {account} (needs create serviceaccounts/token; \
             or give --token-file)"
        )
    })?;
    let value: Value = serde_json::from_str(&answer).context("the TokenRequest answer")?;
    value
        .pointer("/status/token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .context("the TokenRequest answer has no status.token")
}

/// One agent's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeResult {
    pub node: String,
    pub pod: String,
    pub pairs: usize,
    pub error: Option<String>,
}

/// Every node's pairs, merged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gathered {
    pub nodes: Vec<NodeResult>,
    /// The agents' pair objects as they sent them, each with `"node"` added.
    pub pairs: Vec<Value>,
}

impl Gathered {
    /// The page's `/v1/pairs`: `{"node": "3 of 3 nodes", "pairs", "nodes": [{"node", "pod",
    /// "pairs", "error"}], "incomplete"}`.
    pub fn json(&self) -> Value {
        let answered = self.nodes.iter().filter(|n| n.error.is_none()).count();
        json!({
            "node": format!("{answered} of {} nodes", self.nodes.len()),
            "incomplete": answered < self.nodes.len(),
            "nodes": self.nodes.iter().map(|n| json!({
                "node": n.node, "pod": n.pod, "pairs": n.pairs, "error": n.error,
            })).collect::<Vec<_>>(),
            "pairs": self.pairs,
        })
    }

    pub fn summary(&self) -> String {
        let failed: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| Some(format!("{} ({})", n.node, n.error.as_deref()?)))
            .collect();
        let mut line = format!(
            "{} pairs from {} of {} nodes",
            self.pairs.len(),
            self.nodes.len() - failed.len(),
            self.nodes.len()
        );
        if !failed.is_empty() {
            line.push_str(&format!("; no answer from {}", failed.join(", ")));
        }
        line
    }
}

/// Lists the agent pods and asks each for its pairs (at most [`CONCURRENCY`] at once); an
/// agent that does not answer is named in the result, never silently left out.
pub async fn gather(
    client: &kube::Client,
    agents: &Agents,
    token: &TokenSource,
) -> anyhow::Result<Gathered> {
    let pods = agent_pods(client, agents).await?;
    if pods.is_empty() {
        bail!(
            "no agent pods in namespace {} with labels {} (--namespace, --selector)",
            agents.namespace,
            agents.selector
        );
    }
    let token = token.token(client).await?;
    let results: Vec<(NodeResult, Vec<Value>)> = futures::stream::iter(pods)
        .map(|(pod, node)| {
            let token = token.clone();
            async move {
                let answer =
                    tokio::time::timeout(AGENT_TIMEOUT, pairs_of(client, agents, &pod, &token))
                        .await
                        .unwrap_or_else(|_| {
                            Err(anyhow::anyhow!("no answer within {AGENT_TIMEOUT:?}"))
                        });
                match answer {
                    Ok(pairs) => (
                        NodeResult {
                            node: node.clone(),
                            pod,
                            pairs: pairs.len(),
                            error: None,
                        },
                        pairs
                            .into_iter()
                            .map(|mut pair| {
                                if let Value::Object(map) = &mut pair {
                                    map.insert("node".into(), Value::String(node.clone()));
                                }
                                pair
                            })
                            .collect(),
                    ),
                    Err(error) => (
                        NodeResult {
                            node,
                            pod,
                            pairs: 0,
                            error: Some(format!("{error:#}")),
                        },
                        Vec::new(),
                    ),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut gathered = Gathered::default();
    for (node, pairs) in results {
        gathered.nodes.push(node);
        gathered.pairs.extend(pairs);
    }
    gathered.nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(gathered)
}

/// The Running agent pods with their node names.
async fn agent_pods(
    client: &kube::Client,
    agents: &Agents,
) -> anyhow::Result<Vec<(String, String)>> {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), &agents.namespace);
    let list = api
        .list(&kube::api::ListParams::default().labels(&agents.selector))
        .await
        .with_context(|| {
            format!(
                "listing the agent pods in namespace {} (labels {})",
                agents.namespace, agents.selector
            )
        })?;
    Ok(list
        .items
        .into_iter()
        .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|pod| {
            let name = pod.metadata.name?;
            let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
            Some((name, node))
        })
        .collect())
}

/// One agent's pairs through the pod proxy.
async fn pairs_of(
    client: &kube::Client,
    agents: &Agents,
    pod: &str,
    token: &str,
) -> anyhow::Result<Vec<Value>> {
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{}/pods/https:{pod}:{}/proxy/v1/pairs",
        agents.namespace, agents.port
    ))
    .header(PROXIED_AUTHORIZATION, format!("Bearer {token}"))
    .body(kube::client::Body::from(Vec::new()))?;
    let response = client.send(request).await?;
    let status = response.status();
    // Read at most the limit: an agent's answer is hostile input like any other.
    let body = http_body_util::Limited::new(response.into_body(), MAX_AGENT_BYTES)
        .collect()
        .await
        .map_err(|error| match error.downcast::<LengthLimitError>() {
            Ok(_) => anyhow::anyhow!("answer over the limit of {MAX_AGENT_BYTES} bytes"),
            Err(error) => anyhow::anyhow!("reading the answer: {error}"),
        })?
        .to_bytes();
    if !status.is_success() {
        // The API server's (or the agent's) Status, as kube's own requests report it.
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        bail!("{message} ({})", status.as_u16());
    }
    let mut value: Value = serde_json::from_slice(&body).context("the answer is not JSON")?;
    match value.get_mut("pairs").map(Value::take) {
        Some(Value::Array(pairs)) => Ok(pairs),
        _ => bail!("the answer has no pairs"),
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::Path;
    use axum::routing::{get, post};
    use http::HeaderMap;
    use tower::ServiceExt;

    use super::*;
    use crate::cluster::fake_api::FakeApi;

    fn agent_pod(name: &str, node: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "netreach",
                         "labels": {"app.kubernetes.io/name": "netreach"}},
            "spec": {"nodeName": node, "containers": [{"name": "agent"}]},
            "status": {"phase": "Running", "podIP": "10.244.9.9"}})
    }

    /// A fake API with two agents (one of them down) behind its pod proxy, and TokenRequest.
    fn cluster() -> (FakeApi, axum::Router) {
        let api = FakeApi::new();
        api.apply(agent_pod("netreach-a", "node-a"));
        api.apply(agent_pod("netreach-b", "node-b"));
        let proxy = axum::Router::new()
            .route(
                "/api/v1/namespaces/netreach/pods/{target}/proxy/v1/pairs",
                get(|Path(target): Path<String>, headers: HeaderMap| async move {
                    let token = headers
                        .get(PROXIED_AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    if headers.contains_key(http::header::AUTHORIZATION)
                        || token != Some("Bearer minted-token")
                    {
                        return (http::StatusCode::UNAUTHORIZED, "{}".to_string());
                    }
                    match target.as_str() {
                        "https:netreach-a:9464" => (
                            http::StatusCode::OK,
                            json!({"node": "node-a", "pairs": [
                                {"from": "shop/web", "to": "shop/db", "verdict": "ok"},
                                {"from": "shop/web", "to": "pay/gw", "verdict": "blocked_by_policy"}]})
                            .to_string(),
                        ),
                        _ => (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            json!({"kind": "Status", "code": 503, "message": "connection refused",
                                   "status": "Failure", "reason": "ServiceUnavailable"})
                            .to_string(),
                        ),
                    }
                }),
            )
            .route(
                "/api/v1/namespaces/netreach/serviceaccounts/pairs-reader/token",
                post(|| async {
                    axum::Json(json!({"kind": "TokenRequest",
                        "status": {"token": "minted-token", "expirationTimestamp": "2030-01-01T00:00:00Z"}}))
                }),
            );
        let router = proxy.merge(api.router());
        (api, router)
    }

    fn agents() -> Agents {
        Agents {
            namespace: "netreach".into(),
            selector: "app.kubernetes.io/name=netreach".into(),
            port: 9464,
        }
    }

    #[tokio::test]
    async fn every_agent_is_asked_and_one_that_does_not_answer_is_named() {
        let (_api, router) = cluster();
        let client = kube::Client::new(router, "default");
        let token = TokenSource::service_account("netreach/pairs-reader").unwrap();
        let gathered = gather(&client, &agents(), &token).await.unwrap();
        assert_eq!(gathered.pairs.len(), 2);
        assert!(gathered.pairs.iter().all(|p| p["node"] == "node-a"));
        assert_eq!(gathered.nodes.len(), 2);
        assert_eq!(gathered.nodes[0].error, None);
        let down = gathered.nodes[1].error.as_deref().unwrap_or_default();
        assert!(down.contains("connection refused"), "{down}");
        let json = gathered.json();
        assert_eq!(json["node"], "1 of 2 nodes");
        assert_eq!(json["incomplete"], true);
        assert_eq!(
            gathered.summary(),
            "2 pairs from 1 of 2 nodes; no answer from node-b (connection refused (503))"
        );
    }

    #[tokio::test]
    async fn the_local_page_serves_the_merged_pairs() {
        let (_api, router) = cluster();
        let client = kube::Client::new(router, "default");
        let state = std::sync::Arc::new(super::super::UiState::new(
            client,
            agents(),
            TokenSource::service_account("netreach/pairs-reader").unwrap(),
        ));
        let app = super::super::router(state);
        let page = app
            .clone()
            .oneshot(
                http::Request::get("/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(page.status(), http::StatusCode::OK);
        let pairs = app
            .oneshot(
                http::Request::get("/v1/pairs")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(pairs.status(), http::StatusCode::OK);
        let body = http_body_util::BodyExt::collect(pairs.into_body())
            .await
            .unwrap()
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["pairs"].as_array().map(Vec::len), Some(2));
        assert_eq!(value["nodes"][1]["node"], "node-b");
    }

    #[tokio::test]
    async fn no_agents_and_a_token_file_that_is_empty_are_errors() {
        let api = FakeApi::new();
        let client = kube::Client::new(api.router(), "default");
        let token = TokenSource::File("/nonexistent".into());
        let error = gather(&client, &agents(), &token).await.unwrap_err();
        assert!(format!("{error:#}").contains("no agent pods"), "{error:#}");
        let dir = std::env::temp_dir().join(format!("netreach-ui-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "\n").unwrap();
        let empty = TokenSource::File(dir.join("token"));
        let (_api, router) = cluster();
        let client = kube::Client::new(router, "default");
        let error = gather(&client, &agents(), &empty).await.unwrap_err();
        assert!(format!("{error:#}").contains("is empty"), "{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

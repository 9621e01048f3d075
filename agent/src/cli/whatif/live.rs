//! `whatif --kubeconfig`: today's objects read from a live cluster, read-only (list requests
//! only), into the same [`Loaded`] a dump gives.
use anyhow::{Context, bail};
use kube::Client;
use serde_json::Value;

use crate::cluster::cni_policy::CniPolicyKind;
use crate::cluster::load::Loaded;
use crate::cluster::tiered::TieredKind;

/// Objects per list page: big clusters come in pages, as `kubectl get` reads them.
const PAGE: usize = 500;
/// Pages per collection at most (5,000,000 objects): a server that never stops paging is cut
/// off, and the result says so.
const MAX_PAGES: usize = 10_000;

/// A collection to list: its path, and whether a 404 means "not installed" (optional kinds).
struct Collection {
    path: String,
    optional: bool,
}

fn collections() -> Vec<Collection> {
    let core = |path: &str| Collection {
        path: path.to_string(),
        optional: false,
    };
    let mut all = vec![
        core("/api/v1/namespaces"),
        core("/api/v1/nodes"),
        core("/api/v1/pods"),
        core("/apis/networking.k8s.io/v1/networkpolicies"),
        core("/api/v1/services"),
        core("/apis/discovery.k8s.io/v1/endpointslices"),
    ];
    let served = TieredKind::ALL
        .iter()
        .flat_map(|kind| kind.served_as())
        .chain(CniPolicyKind::ALL.iter().flat_map(|kind| kind.served_as()));
    for served in served {
        all.push(Collection {
            path: format!("/apis/{}/{}", served.api_version(), served.plural),
            optional: true,
        });
    }
    for plural in ["probespecs", "clusterprobespecs"] {
        all.push(Collection {
            path: format!("/apis/netreach.dev/v1alpha1/{plural}"),
            optional: true,
        });
    }
    all
}

/// Lists every collection whatif reads. A required one that fails is an error (a missing
/// NetworkPolicy would make any answer wrong); an optional kind that is not installed (404)
/// is skipped.
pub async fn load(client: &Client) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded::default();
    for collection in collections() {
        list(client, &collection, &mut loaded).await?;
    }
    Ok(loaded)
}

async fn list(client: &Client, collection: &Collection, into: &mut Loaded) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut uri = format!("{}?limit={PAGE}", collection.path);
        if let Some(token) = &token {
            uri.push_str("&continue=");
            uri.push_str(&percent_encode(token));
        }
        let request = http::Request::get(&uri).body(Vec::new())?;
        let text = match client.request_text(request).await {
            Ok(text) => text,
            Err(kube::Error::Api(status)) if collection.optional && status.code == 404 => {
                return Ok(());
            }
            Err(kube::Error::Api(status)) => bail!(
                "listing {}: {} ({}); whatif needs to read it",
                collection.path,
                status.message,
                status.code
            ),
            Err(error) => {
                return Err(error).with_context(|| format!("listing {}", collection.path));
            }
        };
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("listing {}: the answer is not JSON", collection.path))?;
        token = value
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .map(str::to_string);
        into.load_value(&collection.path, value);
        if token.is_none() {
            return Ok(());
        }
    }
    bail!(
        "listing {}: more than {MAX_PAGES} pages of {PAGE}; refusing a partial view",
        collection.path
    )
}

/// Percent-encodes a continue token for a query string (it is base64, so `+`, `/`, `=`).
fn percent_encode(token: &str) -> String {
    token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::fake_api::FakeApi;

    #[tokio::test]
    async fn lists_a_cluster_page_by_page_and_skips_kinds_not_installed() {
        let api = FakeApi::new();
        api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": "shop"}}}));
        for i in 0..(PAGE + 3) {
            api.apply(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{i}"), "namespace": "shop", "labels": {"app": "x"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": "10.244.0.9"}}));
        }
        api.apply(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "shop"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        );
        api.serve_kind(
            "policy.networking.k8s.io/v1alpha2",
            "ClusterNetworkPolicy",
            "clusternetworkpolicies",
            false,
        );
        api.apply(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy", "metadata": {"name": "a"},
            "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                     "ingress": []}}));
        let client = Client::new(api.router(), "default");
        let loaded = load(&client).await.unwrap();
        assert_eq!(loaded.summary.namespaces, 1);
        assert_eq!(loaded.summary.pods, PAGE + 3);
        assert_eq!(loaded.summary.policies, 1);
        assert_eq!(loaded.summary.cluster_policies, 1);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let requests = api.requests();
        // Two pages of pods.
        let pod_lists = requests.iter().filter(|r| *r == "GET /api/v1/pods").count();
        assert_eq!(pod_lists, 2, "{requests:?}");
        // Only list requests: whatif never writes.
        assert!(
            requests.iter().all(|r| r.starts_with("GET")),
            "{requests:?}"
        );
    }
}

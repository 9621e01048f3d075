//! The Kubernetes client of the workstation commands (`whatif --kubeconfig`, `ui`).

use std::path::Path;

use anyhow::Context;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for `kubeconfig` (its current context, or `context`); without one, kube's
/// default ($KUBECONFIG, then ~/.kube/config, then in-cluster).
pub async fn client(kubeconfig: Option<&Path>, context: Option<String>) -> anyhow::Result<Client> {
    let Some(kubeconfig) = kubeconfig else {
        return Client::try_default()
            .await
            .context("no kubeconfig found (--kubeconfig, $KUBECONFIG, ~/.kube/config)");
    };
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .with_context(|| format!("kubeconfig {}", kubeconfig.display()))?;
    Client::try_from(config).context("building a client from the kubeconfig")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kubeconfig_context_is_chosen_by_name() {
        let dir = std::env::temp_dir().join(format!("netreach-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters:\n- name: c\n  cluster: {server: 'http://10.244.250.1:6443'}\n\
             users:\n- name: u\n  user: {token: t}\n\
             contexts:\n- name: a\n  context: {cluster: c, user: u}\n\
             - name: b\n  context: {cluster: c, user: u, namespace: shop}\n",
        )
        .unwrap();
        assert_eq!(
            client(Some(&path), None).await.unwrap().default_namespace(),
            "default"
        );
        assert_eq!(
            client(Some(&path), Some("b".into()))
                .await
                .unwrap()
                .default_namespace(),
            "shop"
        );
        let Err(missing) = client(Some(&path), Some("nope".into())).await else {
            panic!("a context that is not there")
        };
        assert!(format!("{missing:#}").contains("nope"), "{missing:#}");
        let Err(unreadable) = client(Some(&dir.join("absent")), None).await else {
            panic!("a kubeconfig that is not there")
        };
        assert!(format!("{unreadable:#}").contains("reading kubeconfig"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

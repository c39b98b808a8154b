//! The `sim` command's function: it writes a kubeconfig kube-rs and kubectl can use and says
//! where it listens.

use std::net::SocketAddr;

use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kubesim::cli::{SimArgs, start};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

#[tokio::test]
async fn sim_writes_a_working_kubeconfig_for_every_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    let cli = Cli::parse_from([
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--kubeconfig",
        path.to_str().unwrap(),
        "--tls",
        "--user",
        "alice=secret",
    ]);
    let (handle, banner) = start(&cli.sim).await.unwrap();
    assert!(
        banner.contains(&handle.url()) && banner.contains("export KUBECONFIG="),
        "{banner}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    for context in ["admin@kubesim", "alice@kubesim"] {
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let options = kube::config::KubeConfigOptions {
            context: Some(context.into()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let nss: Api<Namespace> = Api::all(client);
        assert!(nss.get("default").await.is_ok(), "{context}");
    }
    let addr: SocketAddr = handle.addr();
    assert!(addr.ip().is_loopback());
    assert!(Cli::try_parse_from(["sim", "--kubeconfig", "x", "--user", "nopass"]).is_err());
}

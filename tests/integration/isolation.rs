//! One destination's trouble stays its own (issue #12): a repository that starts to accept
//! connections and never answer, with its worker's and its destination's queues full, delays no
//! other destination's commits, never blocks the main loop, and does not hold shutdown past its
//! grace.

use crate::support::agent_env::*;
use crate::support::git_servers::GitServer;
use gitops_reverser::agent::runtime::{AgentError, Queues};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A TCP proxy on 127.0.0.1 in front of `upstream` that, once `silence` is set, accepts every
/// new connection and never answers (nor closes it): a repository that hangs.
async fn proxy(upstream: u16, silence: Arc<AtomicBool>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut client, _)) = listener.accept().await {
            if silence.load(Ordering::SeqCst) {
                held.push(client);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_repository_delays_no_other_destination_nor_shutdown() {
    let env = Env::new().await;
    env.namespace("slow", json!({})).await;
    let daemon = GitServer::daemon().expect("git daemon");
    let upstream: u16 = daemon
        .url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .expect("the daemon's port");
    let silence = Arc::new(AtomicBool::new(false));
    let (port, server) = proxy(upstream, silence.clone()).await;
    // `shop` writes to the test repository; `slow` to a repository that never answers.
    env.configure().await;
    for object in [
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitRepoConfig", "metadata": {"name": "stuck", "namespace": "slow"},
            "spec": {"url": format!("git://127.0.0.1:{port}/repo.git"), "commit": {"window": {"quiet": "0s"}}}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "GitDestination", "metadata": {"name": "stuck", "namespace": "slow"},
            "spec": {"repoRef": {"name": "stuck"}, "branch": "main", "folder": "clusters/slow"}}),
        json!({"apiVersion": "configbutler.ai/v1alpha1", "kind": "WatchRule", "metadata": {"name": "stuck", "namespace": "slow"},
            "spec": {"destinationRef": {"name": "stuck"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"]}]}}),
    ] {
        apply(&env.client, object).await;
    }
    let grace = Duration::from_secs(3);
    let agent = env.start_tuned("state", |options| {
        options.queues = Queues {
            destination: 4,
            worker: 2,
        };
        options.shutdown_grace = grace;
    });

    agent.ready().await;
    // Now its repository hangs, and it gets far more changes than its queues hold.
    silence.store(true, Ordering::SeqCst);
    for i in 0..40 {
        env.put_configmap("slow", &format!("cm-{i}"), "1").await;
    }
    let overflowed = Instant::now() + Duration::from_secs(30);
    while agent.agent.metrics.destination_overflows("slow/stuck") == 0 {
        assert!(
            Instant::now() < overflowed,
            "the hanging destination's queue never filled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Meanwhile the other destination's change lands promptly.
    let started = Instant::now();
    env.put_configmap("shop", "settings", "1").await;
    until("the other destination's commit", || {
        env.file("shop", "settings").is_some()
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the other destination waited {took:?}"
    );
    env.put_configmap("shop", "settings", "2").await;
    until("its next commit", || {
        env.file("shop", "settings")
            .is_some_and(|f| f.contains("value: \"2\""))
    })
    .await;

    // Shutdown ends within its grace although a push hangs, and says what was not pushed.
    let stopping = Instant::now();
    let result = agent.running.stop().await;
    let took = stopping.elapsed();
    assert!(
        took < grace + Duration::from_secs(5),
        "shutdown took {took:?}"
    );
    match result {
        Err(AgentError::NotFlushed { .. }) => {}
        other => panic!("expected NotFlushed, got {other:?}"),
    }
    server.abort();
}

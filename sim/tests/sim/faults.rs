//! Fault knobs: the next N requests fail with 500 or 429, latency is added.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::support::*;

#[tokio::test]
async fn the_next_requests_fail_then_recover() {
    let sim = sim().await;
    sim.faults().fail_next(2, 500);
    for _ in 0..2 {
        let (code, b) = raw(
            &sim,
            "GET",
            "/api/v1/namespaces/default/configmaps",
            ADMIN,
            "",
            "",
        )
        .await;
        assert_eq!(code, 500);
        assert_eq!(b["reason"], "InternalError");
        assert_eq!(b["kind"], "Status");
    }
    let (code, _) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        "",
        "",
    )
    .await;
    assert_eq!(code, 200);

    sim.faults().fail_next(1, 429);
    let (code, b) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        "",
        "",
    )
    .await;
    assert_eq!(code, 429);
    assert_eq!(b["reason"], "TooManyRequests");
    assert_eq!(b["details"]["retryAfterSeconds"], 1);

    // kube-rs sees the 500 as an API error.
    sim.faults().fail_next(1, 500);
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let err = api.list(&Default::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 500));
    assert!(api.list(&Default::default()).await.is_ok());
}

#[tokio::test]
async fn latency_delays_every_request() {
    let sim = sim().await;
    sim.faults().set_latency(Duration::from_millis(200));
    let start = Instant::now();
    let (code, _) = raw(&sim, "GET", "/api/v1/namespaces", ADMIN, "", "").await;
    assert_eq!(code, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));
    sim.faults().set_latency(Duration::ZERO);
}

//! `kubectl create <kind>`, `run`, `expose` and `autoscale`: kubectl's typed clients send these as
//! protobuf, and kubesim decodes every built-in kind.

use kubesim::SimConfig;
use serde_json::Value;

use crate::support::*;

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("kubectl printed invalid JSON ({e}): {s}"))
}

#[tokio::test]
async fn kubectl_create_of_each_kind_reaches_the_server_whole() {
    let sim = sim_with(SimConfig::default().with_tls()).await;
    let Some(k) = Kubectl::new(&sim, "admin") else {
        return;
    };
    let commands: &[&[&str]] = &[
        &["create", "namespace", "demo"],
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "demo",
            "--image=nginx:1.27",
            "--replicas=0",
            "--port=80",
        ],
        &[
            "create",
            "service",
            "clusterip",
            "web",
            "-n",
            "demo",
            "--tcp=80:8080",
        ],
        &[
            "create",
            "service",
            "nodeport",
            "np",
            "-n",
            "demo",
            "--tcp=80:8080",
        ],
        &[
            "create",
            "job",
            "once",
            "-n",
            "demo",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ],
        &[
            "create",
            "cronjob",
            "nightly",
            "-n",
            "demo",
            "--image=busybox:1.36",
            "--schedule=0 3 * * *",
        ],
        &[
            "create",
            "role",
            "reader",
            "-n",
            "demo",
            "--verb=get,list",
            "--resource=pods",
        ],
        &[
            "create",
            "rolebinding",
            "reader",
            "-n",
            "demo",
            "--role=reader",
            "--user=alice",
        ],
        &[
            "create",
            "clusterrole",
            "viewer",
            "--verb=get",
            "--resource=deployments.apps",
        ],
        &[
            "create",
            "clusterrolebinding",
            "viewer",
            "--clusterrole=viewer",
            "--group=devs",
        ],
        &[
            "create",
            "quota",
            "q",
            "-n",
            "demo",
            "--hard=pods=10,requests.cpu=2000m",
        ],
        &[
            "create",
            "priorityclass",
            "high",
            "--value=1000",
            "--description=important",
        ],
        &[
            "create",
            "poddisruptionbudget",
            "pdb",
            "-n",
            "demo",
            "--selector=app=web",
            "--min-available=1",
        ],
        &[
            "create",
            "ingress",
            "web",
            "-n",
            "demo",
            "--rule=example.com/=web:80",
        ],
        &[
            "create",
            "secret",
            "generic",
            "s",
            "-n",
            "demo",
            "--from-literal=password=hunter2",
        ],
        &["create", "serviceaccount", "robot", "-n", "demo"],
        &[
            "run",
            "pod",
            "-n",
            "demo",
            "--image=nginx:1.27",
            "--labels=app=pod",
        ],
        &[
            "expose",
            "deployment",
            "web",
            "-n",
            "demo",
            "--name=exposed",
            "--port=8080",
            "--target-port=80",
        ],
        &[
            "autoscale",
            "deployment",
            "web",
            "-n",
            "demo",
            "--min=2",
            "--max=5",
            "--cpu-percent=70",
        ],
    ];
    for args in commands {
        k.ok(args).await;
    }
    let get = |kind: &'static str, name: &'static str| {
        let k = &k;
        async move { json_of(&k.ok(&["get", kind, name, "-n", "demo", "-o", "json"]).await) }
    };
    let d = get("deployment", "web").await;
    assert_eq!(d["spec"]["replicas"], 0, "an explicit zero survives: {d}");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let svc = get("service", "web").await;
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(get("service", "np").await["spec"]["type"], "NodePort");
    let job = get("job", "once").await;
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    assert_eq!(
        get("cronjob", "nightly").await["spec"]["schedule"],
        "0 3 * * *"
    );
    let role = get("role", "reader").await;
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    assert_eq!(
        get("rolebinding", "reader").await["subjects"][0]["name"],
        "alice"
    );
    assert_eq!(get("quota", "q").await["spec"]["hard"]["requests.cpu"], "2");
    assert_eq!(get("pdb", "pdb").await["spec"]["minAvailable"], 1);
    assert_eq!(
        get("ingress", "web").await["spec"]["rules"][0]["host"],
        "example.com"
    );
    assert_eq!(get("secret", "s").await["data"]["password"], "aHVudGVyMg==");
    assert_eq!(get("pod", "pod").await["metadata"]["labels"]["app"], "pod");
    assert_eq!(
        get("service", "exposed").await["spec"]["ports"][0]["targetPort"],
        80
    );
    let hpa = get("hpa", "web").await;
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    let v1 = json_of(
        &k.ok(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "-n",
            "demo",
            "-o",
            "json",
        ])
        .await,
    );
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
    let cluster = json_of(
        &k.ok(&["get", "clusterrolebinding", "viewer", "-o", "json"])
            .await,
    );
    assert_eq!(cluster["subjects"][0]["name"], "devs");
    let pc = json_of(&k.ok(&["get", "priorityclass", "high", "-o", "json"]).await);
    assert_eq!(pc["value"], 1000);
}

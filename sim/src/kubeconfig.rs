//! Kubeconfig files that point kubectl and kube-rs at a running simulator: one cluster (with the
//! CA when serving TLS), a user per token, a context per user.

use base64::Engine;

use crate::auth::User;

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A kubeconfig whose current context is `current` (one of `users`).
pub fn render(server: &str, ca_pem: Option<&str>, users: &[&User], current: &str) -> String {
    let mut out =
        String::from("apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n");
    out.push_str(&format!("    server: {}\n", q(server)));
    if let Some(ca) = ca_pem {
        let data = base64::engine::general_purpose::STANDARD.encode(ca);
        out.push_str(&format!("    certificate-authority-data: {data}\n"));
    }
    out.push_str("users:\n");
    for u in users {
        out.push_str(&format!(
            "- name: {}\n  user:\n    token: {}\n",
            q(&u.name),
            q(&u.token)
        ));
    }
    out.push_str("contexts:\n");
    for u in users {
        out.push_str(&format!(
            "- name: {}\n  context:\n    cluster: kubesim\n    user: {}\n    namespace: default\n",
            q(&format!("{}@kubesim", u.name)),
            q(&u.name)
        ));
    }
    out.push_str(&format!(
        "current-context: {}\n",
        q(&format!("{current}@kubesim"))
    ));
    out
}

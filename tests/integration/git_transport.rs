//! The `git` CLI transport against real servers on 127.0.0.1 (file://, git daemon, smart HTTP
//! with basic auth, sshd): probe, fetch, leased push, rejections, and the failure kinds.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitops_reverser::git::credentials::{Credentials, SecretString};
use gitops_reverser::git::transport::{
    GitCli, PushOutcome, Remote, RemoteInfo, Transport, TransportError,
};

use crate::support::git_servers::{GitServer, Scratch, free_port, read_all, tracing_git_wrapper};

fn cli() -> GitCli {
    GitCli::new().with_timeout(Duration::from_secs(30))
}

/// The life of a branch on `server`: probe empty, fetch missing, create, fetch back, leased
/// pushes, another writer moving the branch, stale and must-not-exist leases rejected, rebuild.
fn round_trip(server: &GitServer) {
    let name = server.name;
    let cli = cli();
    let remote = server.remote();

    let info = cli.probe(&remote).unwrap();
    assert!(info.empty, "{name}: {info:?}");

    let cache = Scratch::new();
    assert_eq!(
        cli.fetch_branch(cache.path(), &remote, "main").unwrap(),
        None,
        "{name}"
    );

    let c1 = cache.repo.commit(None, &[("app.yaml", "v: 1\n")], "first");
    let pushed = cli.push(cache.path(), &remote, "main", c1, None).unwrap();
    assert_eq!(pushed, PushOutcome::Pushed, "{name}");
    assert_eq!(server.repo.tip("main"), Some(c1), "{name}");
    assert_eq!(
        cli.probe(&remote).unwrap(),
        RemoteInfo {
            default_branch: Some("main".into()),
            empty: false
        },
        "{name}"
    );

    // Another writer (a second cache, as another cluster would have) fetches it back.
    let other = Scratch::new();
    assert_eq!(
        cli.fetch_branch(other.path(), &remote, "main").unwrap(),
        Some(c1),
        "{name}"
    );
    assert_eq!(
        other.repo.tip("refs/remotes/origin/main"),
        Some(c1),
        "{name}"
    );
    assert_eq!(
        other.repo.show(&c1.to_string(), "app.yaml"),
        "v: 1",
        "{name}"
    );

    // A second commit with the right lease.
    let c2 = cache
        .repo
        .commit(Some(c1), &[("app.yaml", "v: 2\n")], "second");
    let pushed = cli
        .push(cache.path(), &remote, "main", c2, Some(c1))
        .unwrap();
    assert_eq!(pushed, PushOutcome::Pushed, "{name}");

    // The other writer moves the branch.
    assert_eq!(
        cli.fetch_branch(other.path(), &remote, "main").unwrap(),
        Some(c2),
        "{name}"
    );
    let c3 = other.repo.commit(
        Some(c2),
        &[("app.yaml", "v: 3\n")],
        "third, by another writer",
    );
    assert_eq!(
        cli.push(other.path(), &remote, "main", c3, Some(c2))
            .unwrap(),
        PushOutcome::Pushed,
        "{name}"
    );

    // Our push with the now stale lease is rejected, and changes nothing.
    let c4 = cache
        .repo
        .commit(Some(c2), &[("app.yaml", "v: 4\n")], "fourth, stale");
    match cli
        .push(cache.path(), &remote, "main", c4, Some(c2))
        .unwrap()
    {
        PushOutcome::Rejected { reason } => {
            assert!(reason.contains("stale info"), "{name}: {reason}")
        }
        other => panic!("{name}: stale lease pushed: {other:?}"),
    }
    // "Must not exist" on an existing branch is rejected too.
    assert!(
        matches!(
            cli.push(cache.path(), &remote, "main", c4, None).unwrap(),
            PushOutcome::Rejected { .. }
        ),
        "{name}"
    );
    assert_eq!(server.repo.tip("main"), Some(c3), "{name}");

    // Fetch, rebuild on the new tip, push.
    assert_eq!(
        cli.fetch_branch(cache.path(), &remote, "main").unwrap(),
        Some(c3),
        "{name}"
    );
    let c5 = cache
        .repo
        .commit(Some(c3), &[("app.yaml", "v: 5\n")], "fifth, rebuilt");
    assert_eq!(
        cli.push(cache.path(), &remote, "main", c5, Some(c3))
            .unwrap(),
        PushOutcome::Pushed,
        "{name}"
    );
    assert_eq!(server.repo.show("main", "app.yaml"), "v: 5", "{name}");
    assert_eq!(
        server.repo.log("main"),
        [
            "fifth, rebuilt",
            "third, by another writer",
            "second",
            "first"
        ],
        "{name}"
    );
    // Pushing what is already there is fine.
    assert_eq!(
        cli.push(cache.path(), &remote, "main", c5, Some(c5))
            .unwrap(),
        PushOutcome::Pushed,
        "{name}"
    );

    // A missing branch fetches as None, and a tracking ref of a deleted branch goes away.
    assert_eq!(
        cli.fetch_branch(cache.path(), &remote, "nope").unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        cli.push(cache.path(), &remote, "feature/x", c1, None)
            .unwrap(),
        PushOutcome::Pushed,
        "{name}"
    );
    assert_eq!(
        cli.fetch_branch(cache.path(), &remote, "feature/x")
            .unwrap(),
        Some(c1),
        "{name}"
    );
    crate::support::git_servers::git(
        &server.repo.path,
        &["update-ref", "-d", "refs/heads/feature/x"],
        None,
    );
    assert_eq!(
        cli.fetch_branch(cache.path(), &remote, "feature/x")
            .unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        cache.repo.tip("refs/remotes/origin/feature/x"),
        None,
        "{name}"
    );
}

#[test]
fn file_remote_round_trip() {
    round_trip(&GitServer::file());
}

#[test]
fn git_daemon_round_trip() {
    let Some(server) = GitServer::daemon() else {
        return;
    };
    round_trip(&server);
}

#[test]
fn smart_http_with_basic_auth_round_trip() {
    let Some(server) = GitServer::http() else {
        return;
    };
    round_trip(&server);
}

#[test]
fn ssh_with_key_and_known_hosts_round_trip() {
    let Some(server) = GitServer::ssh() else {
        return;
    };
    round_trip(&server);
}

#[test]
fn http_wrong_password_is_an_authentication_error_without_the_password() {
    let Some(server) = GitServer::http() else {
        return;
    };
    let wrong = "Wr0ng-pass-7Q";
    let remote = Remote::new(
        server.url.clone(),
        Some(Credentials::Basic {
            username: "alice".into(),
            password: SecretString::new(wrong),
        }),
    );
    let cache = Scratch::new();
    let commit = cache.repo.commit(None, &[("a", "a\n")], "a");
    let errors = [
        cli().probe(&remote).unwrap_err(),
        cli()
            .fetch_branch(cache.path(), &remote, "main")
            .unwrap_err(),
        cli()
            .push(cache.path(), &remote, "main", commit, None)
            .unwrap_err(),
    ];
    for err in errors {
        assert!(
            matches!(err, TransportError::Authentication { .. }),
            "{err:?}"
        );
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(wrong), "{text}");
            assert!(text.contains(&server.url), "{text}");
        }
    }
    assert_eq!(server.repo.tip("main"), None);

    // The same with the password in the URL itself, which git echoes back.
    let (user, _) = server.basic_auth.clone().unwrap();
    let url = server
        .url
        .replace("http://", &format!("http://{user}:{wrong}@"));
    let err = cli().probe(&Remote::new(url, None)).unwrap_err();
    assert!(
        matches!(err, TransportError::Authentication { .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "{text}");
}

#[test]
fn http_missing_repository_is_not_found() {
    let Some(server) = GitServer::http() else {
        return;
    };
    let mut remote = server.remote();
    remote.url = server.url.replace("repo.git", "nope.git");
    let err = cli().probe(&remote).unwrap_err();
    assert!(matches!(err, TransportError::NotFound { .. }), "{err:?}");

    let err = cli()
        .probe(&Remote::new("file:///nonexistent/repo.git", None))
        .unwrap_err();
    assert!(matches!(err, TransportError::NotFound { .. }), "{err:?}");
}

/// The password goes to git only through the environment: not into any command line git
/// starts (checked with GIT_TRACE, which logs every command with its arguments), not into
/// errors, not into tracing output.
#[test]
fn basic_auth_password_never_in_arguments_errors_or_logs() {
    let Some(server) = GitServer::http() else {
        return;
    };
    let (_, password) = server.basic_auth.clone().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let (wrapper, args_log, trace) = (
        dir.path().join("git"),
        dir.path().join("args.log"),
        dir.path().join("trace.log"),
    );
    tracing_git_wrapper(&wrapper, &args_log, &trace);
    let cli = cli().with_git_binary(&wrapper);

    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = logs.clone();
        move || LogWriter(logs.clone())
    };
    // While a single dispatcher exists, tracing-core caches each callsite's interest from the
    // subscriber of whichever thread hits it first (other tests run in parallel threads); a
    // second registered dispatcher makes it ask every live one.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer)
        .with_ansi(false)
        .finish();

    let cache = Scratch::new();
    let commit = cache.repo.commit(None, &[("a", "a\n")], "a");
    let wrong = Remote::new(
        server.url.clone(),
        Some(Credentials::Basic {
            username: "alice".into(),
            password: SecretString::new("not-the-Password-9"),
        }),
    );
    let (pushed, failed) = tracing::subscriber::with_default(subscriber, || {
        (
            cli.push(cache.path(), &server.remote(), "main", commit, None),
            cli.push(cache.path(), &wrong, "main", commit, None),
        )
    });
    assert_eq!(pushed.unwrap(), PushOutcome::Pushed);
    assert_eq!(server.repo.tip("main"), Some(commit));
    let failed = failed.unwrap_err();
    assert!(
        matches!(failed, TransportError::Authentication { .. }),
        "{failed:?}"
    );

    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let commands = read_all(&[&args_log, &trace]);
    assert!(
        commands.contains("remote-http"),
        "the trace covers git's children: {commands}"
    );
    assert!(
        commands.contains("askpass"),
        "the trace covers the askpass call: {commands}"
    );
    assert!(logs.contains("git command finished"), "{logs}");
    for (what, text) in [
        ("command lines", commands),
        ("tracing output", logs),
        ("error", format!("{failed} {failed:?}")),
    ] {
        assert!(!text.contains(&password), "password in {what}: {text}");
        assert!(
            !text.contains("not-the-Password-9"),
            "password in {what}: {text}"
        );
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn ssh_wrong_known_hosts_is_a_host_key_error() {
    let Some(server) = GitServer::ssh() else {
        return;
    };
    let Some(Credentials::Ssh { private_key, .. }) = server.credentials.clone() else {
        panic!("ssh credentials");
    };
    let remote = Remote::new(
        server.url.clone(),
        Some(Credentials::Ssh {
            private_key: private_key.clone(),
            known_hosts: server.wrong_known_hosts.clone().unwrap(),
            user: None,
            passphrase: None,
        }),
    );
    let cache = Scratch::new();
    let commit = cache.repo.commit(None, &[("a", "a\n")], "a");
    let err = cli()
        .push(cache.path(), &remote, "main", commit, None)
        .unwrap_err();
    let port = server
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    match &err {
        TransportError::HostKey { host, .. } => assert_eq!(host, &format!("[127.0.0.1]:{port}")),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "host key verification failed for [127.0.0.1]:{port}"
        )),
        "{text}"
    );
    assert!(
        !text.contains(private_key.expose().lines().nth(1).unwrap()),
        "{text}"
    );
    assert_eq!(server.repo.tip("main"), None);

    // No credentials at all: the host key is still checked (against nothing), never trusted.
    let err = cli()
        .probe(&Remote::new(server.url.clone(), None))
        .unwrap_err();
    assert!(matches!(err, TransportError::HostKey { .. }), "{err:?}");
}

#[test]
fn ssh_unauthorized_key_is_an_authentication_error() {
    let Some(server) = GitServer::ssh() else {
        return;
    };
    let Some(Credentials::Ssh { known_hosts, .. }) = server.credentials.clone() else {
        panic!("ssh credentials");
    };
    let key = server.dir().join("ssh/wrong_host_key"); // a valid key that is not authorized
    let remote = Remote::new(
        server.url.clone(),
        Some(Credentials::Ssh {
            private_key: SecretString::new(std::fs::read_to_string(key).unwrap()),
            known_hosts,
            user: None,
            passphrase: None,
        }),
    );
    let err = cli().probe(&remote).unwrap_err();
    assert!(
        matches!(err, TransportError::Authentication { .. }),
        "{err:?}"
    );
}

#[test]
fn closed_port_is_unreachable_promptly() {
    let port = free_port();
    let cache = Scratch::new();
    for url in [
        format!("git://127.0.0.1:{port}/repo.git"),
        format!("http://alice:pw-in-url@127.0.0.1:{port}/repo.git"),
        format!("ssh://git@127.0.0.1:{port}/repo.git"),
    ] {
        let started = Instant::now();
        let remote = Remote::new(url.clone(), None);
        for err in [
            cli().probe(&remote).unwrap_err(),
            cli()
                .fetch_branch(cache.path(), &remote, "main")
                .unwrap_err(),
        ] {
            assert!(
                matches!(err, TransportError::Unreachable { .. }),
                "{url}: {err:?}"
            );
            assert!(err.is_transient());
            assert!(!err.to_string().contains("pw-in-url"), "{err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn silent_server_times_out_and_git_is_killed() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let timeout = Duration::from_secs(2);
    let cli = GitCli::new().with_timeout(timeout);
    for url in [
        format!("git://127.0.0.1:{port}/repo.git"),
        format!("http://127.0.0.1:{port}/repo.git"),
    ] {
        let started = Instant::now();
        let err = cli.probe(&Remote::new(url.clone(), None)).unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(err, TransportError::Timeout { .. }),
            "{url}: {err:?}"
        );
        assert!(err.is_transient());
        assert!(
            elapsed >= timeout && elapsed < timeout * 4,
            "{url}: {elapsed:?}"
        );
    }
    drop(listener);
}

/// The credential shapes users already have, each against a server that requires it: a bearer
/// token (`bearerToken`), a token alone in `password` (any username), and an SSH key encrypted
/// with a passphrase next to it (`password`, as Flux stores it). Each round-trips a push; a
/// wrong token and a wrong passphrase fail as authentication, naming neither.
#[test]
fn every_credential_shape_users_have_reaches_a_server_that_requires_it() {
    use std::collections::BTreeMap;
    let from = |pairs: &[(&str, &str)]| {
        let data: BTreeMap<String, Vec<u8>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        Credentials::from_secret_data(&data).expect("a credentials shape")
    };
    let cli = cli();
    let push_one = |server: &GitServer, credentials: Credentials| {
        let remote = Remote::new(server.url.clone(), Some(credentials));
        let cache = Scratch::new();
        cache.repo.commit(None, &[("a.yaml", "a: 1\n")], "first");
        let head = cache.repo.tip("HEAD").or_else(|| cache.repo.tip("main"));
        let commit = cache.repo.commit(head, &[("b.yaml", "b: 1\n")], "second");
        cli.push(
            cache.path(),
            &remote,
            "main",
            commit,
            server.repo.tip("main"),
        )
    };

    let tokens = GitServer::http_token().expect("git http-backend");
    let Some(Credentials::Bearer { token }) = tokens.credentials.clone() else {
        panic!("a token server")
    };
    let token = token.expose().to_string();
    assert_eq!(
        push_one(&tokens, from(&[("bearerToken", &token)])).expect("bearer"),
        PushOutcome::Pushed
    );
    assert_eq!(
        push_one(&tokens, from(&[("password", &token)])).expect("token alone"),
        PushOutcome::Pushed
    );
    let wrong = push_one(&tokens, from(&[("bearerToken", "not-the-token")])).unwrap_err();
    assert!(
        matches!(wrong, TransportError::Authentication { .. })
            && !wrong.to_string().contains("not-the-token"),
        "{wrong}"
    );

    let ssh = GitServer::ssh().expect("sshd");
    let (key, passphrase) = ssh.encrypted_key.clone().expect("an encrypted key");
    let Some(Credentials::Ssh { known_hosts, .. }) = ssh.credentials.clone() else {
        panic!("ssh credentials")
    };
    let with = |pass: &str| {
        from(&[
            ("identity", key.as_str()),
            ("known_hosts", known_hosts.as_str()),
            ("password", pass),
        ])
    };
    assert_eq!(
        push_one(&ssh, with(&passphrase)).expect("passphrase"),
        PushOutcome::Pushed
    );
    let wrong = push_one(&ssh, with("not-the-passphrase")).unwrap_err();
    assert!(
        matches!(wrong, TransportError::Authentication { .. })
            && !wrong.to_string().contains("not-the-passphrase"),
        "{wrong}"
    );
}

/// HTTPS whose certificate a private CA signed: refused without the CA (a clear message, no
/// retry of a permanent error), accepted with the CA bundle from the Secret (`ca.crt`, Flux's
/// `caFile`), and accepted without verification only when `insecureSkipTlsVerify` says so.
#[test]
fn a_private_ca_is_trusted_through_the_secrets_ca_bundle() {
    use gitops_reverser::agent::remotes::Access;
    use gitops_reverser::git::transport::TlsSettings;
    use std::collections::BTreeMap;
    let (server, ca_pem) = GitServer::https().expect("git http-backend");
    let (username, password) = server.basic_auth.clone().expect("basic auth");
    let cli = cli();
    let push = |remote: &Remote| {
        let cache = Scratch::new();
        let commit = cache.repo.commit(None, &[("a.yaml", "a: 1\n")], "first");
        cli.push(
            cache.path(),
            remote,
            "main",
            commit,
            server.repo.tip("main"),
        )
    };
    let plain = server.remote();
    let refused = push(&plain).unwrap_err();
    assert!(
        matches!(refused, TransportError::Certificate { .. }) && refused.is_permanent(),
        "{refused}"
    );
    assert!(refused.to_string().contains("caFile"), "{refused}");

    for key in ["ca.crt", "caFile"] {
        let data: BTreeMap<String, Vec<u8>> = [
            ("username", username.as_str()),
            ("password", password.as_str()),
            (key, ca_pem.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        let access = Access::from_secret_data(&data).expect("credentials and a CA");
        let remote = Remote::new(server.url.clone(), access.credentials).with_tls(TlsSettings {
            ca_bundle: access.ca_bundle,
            insecure_skip_verify: false,
        });
        assert_eq!(push(&remote).expect(key), PushOutcome::Pushed);
    }
    let insecure = server.remote().with_tls(TlsSettings {
        ca_bundle: None,
        insecure_skip_verify: true,
    });
    assert_eq!(push(&insecure).expect("insecure"), PushOutcome::Pushed);
}

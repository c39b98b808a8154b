//! Talking to remotes through the `git` CLI (gix has no push): fetch, push with a lease, and a
//! cheap reachability probe, in a clean environment with credentials that never reach arguments.
//! What a remote is and how talking to it fails are in `git::remote` (re-exported here).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gix::ObjectId;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::credentials::Credentials;
pub use super::remote::{
    PushOutcome, Remote, RemoteInfo, TlsSettings, TransportError, is_contention,
};
use super::url::redact;

/// The remote side of the Git engine. Blocking: call it from `spawn_blocking`.
pub trait Transport: Send + Sync + 'static {
    /// Fetch `branch` from the remote into the bare repository at `repo` as
    /// `refs/remotes/origin/<branch>`; returns the remote tip, or None if the branch does not
    /// exist (a stale `refs/remotes/origin/<branch>` is then deleted).
    fn fetch_branch(
        &self,
        repo: &Path,
        remote: &Remote,
        branch: &str,
    ) -> Result<Option<ObjectId>, TransportError>;

    /// The remote's default branch (HEAD symref) and whether the repository is empty (no refs).
    fn probe(&self, remote: &Remote) -> Result<RemoteInfo, TransportError>;

    /// Push `new` (which must be in `repo`) to `refs/heads/<branch>`, only if the remote branch is
    /// at `expected` (`None`: the branch must not exist yet).
    fn push(
        &self,
        repo: &Path,
        remote: &Remote,
        branch: &str,
        new: ObjectId,
        expected: Option<ObjectId>,
    ) -> Result<PushOutcome, TransportError>;
}

/// The default time one `git` command may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const USERNAME_ENV: &str = "GITOPS_REVERSER_GIT_USERNAME";
const PASSWORD_ENV: &str = "GITOPS_REVERSER_GIT_PASSWORD";
const ASKPASS_SCRIPT: &str = "#!/bin/sh\n\
    case \"$1\" in\n\
    [Uu]sername*) printf '%s\\n' \"$GITOPS_REVERSER_GIT_USERNAME\" ;;\n\
    *) printf '%s\\n' \"$GITOPS_REVERSER_GIT_PASSWORD\" ;;\n\
    esac\n";
/// The environment variables of up to three settings given to git through the environment.
const CONFIG_KEYS: [&str; 3] = ["GIT_CONFIG_KEY_0", "GIT_CONFIG_KEY_1", "GIT_CONFIG_KEY_2"];
const CONFIG_VALUES: [&str; 3] = [
    "GIT_CONFIG_VALUE_0",
    "GIT_CONFIG_VALUE_1",
    "GIT_CONFIG_VALUE_2",
];
/// At most this many lines of git's stderr go into an error.
const DETAIL_LINES: usize = 8;

/// [`Transport`] through the `git` binary, each command in a clean environment (no system or
/// user configuration, no terminal prompt, a private `HOME`) and killed after a timeout.
#[derive(Debug, Clone)]
pub struct GitCli {
    git: PathBuf,
    timeout: Duration,
    path: OsString,
}

impl Default for GitCli {
    fn default() -> Self {
        Self::new()
    }
}

impl GitCli {
    /// `git` from `PATH`, [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            git: PathBuf::from("git"),
            timeout: DEFAULT_TIMEOUT,
            path: std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
        }
    }

    /// The time one `git` command may take; it is killed (with its children) after that.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `git` binary to run.
    pub fn with_git_binary(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Transport for GitCli {
    fn fetch_branch(
        &self,
        repo: &Path,
        remote: &Remote,
        branch: &str,
    ) -> Result<Option<ObjectId>, TransportError> {
        const OP: &str = "fetch";
        check_branch(remote, branch)?;
        let session = Session::new(OP, remote, self.timeout)?;
        let tracking = format!("refs/remotes/origin/{branch}");
        let mut args = session.repo_args(repo)?;
        args.extend(
            [
                "fetch",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--",
            ]
            .map(OsString::from),
        );
        args.push(session.git_url.clone());
        args.push(format!("+refs/heads/{branch}:{tracking}").into());
        let out = self.run(&session, &args)?;
        if !out.success {
            if out.stderr.contains("couldn't find remote ref") {
                let mut delete = session.repo_args(repo)?;
                delete.extend(["update-ref", "-d", &tracking].map(OsString::from));
                let deleted = self.run(&session, &delete)?;
                if !deleted.success {
                    return Err(session.git_error(&deleted.stderr));
                }
                return Ok(None);
            }
            return Err(session.classify(&out.stderr));
        }
        let mut rev_parse = session.repo_args(repo)?;
        rev_parse.extend(["rev-parse", "--verify", &tracking].map(OsString::from));
        let tip = self.run(&session, &rev_parse)?;
        if !tip.success {
            return Err(session.git_error(&tip.stderr));
        }
        parse_oid(tip.stdout.trim())
            .map(Some)
            .ok_or_else(|| session.unexpected(&tip.stdout))
    }

    fn probe(&self, remote: &Remote) -> Result<RemoteInfo, TransportError> {
        const OP: &str = "ls-remote";
        let session = Session::new(OP, remote, self.timeout)?;
        let args = ["ls-remote", "--symref", "--"]
            .map(OsString::from)
            .into_iter()
            .chain([session.git_url.clone()])
            .collect::<Vec<_>>();
        let out = self.run(&session, &args)?;
        if !out.success {
            return Err(session.classify(&out.stderr));
        }
        parse_ls_remote(&out.stdout).ok_or_else(|| session.unexpected(&out.stdout))
    }

    fn push(
        &self,
        repo: &Path,
        remote: &Remote,
        branch: &str,
        new: ObjectId,
        expected: Option<ObjectId>,
    ) -> Result<PushOutcome, TransportError> {
        const OP: &str = "push";
        check_branch(remote, branch)?;
        let session = Session::new(OP, remote, self.timeout)?;
        let target = format!("refs/heads/{branch}");
        let lease = expected.map(|oid| oid.to_string()).unwrap_or_default();
        let mut args = session.repo_args(repo)?;
        args.extend(["push", "--porcelain", "--atomic", "--no-verify"].map(OsString::from));
        args.push(format!("--force-with-lease={target}:{lease}").into());
        args.push("--".into());
        args.push(session.git_url.clone());
        args.push(format!("{new}:{target}").into());
        let out = self.run(&session, &args)?;
        match parse_push_status(&out.stdout, &target) {
            Some(('!', summary)) => {
                let reason = session.scrub(summary);
                if summary.contains("[remote rejected]") && !is_contention(summary) {
                    Err(TransportError::RemoteRejected {
                        url: session.url.clone(),
                        branch: branch.to_string(),
                        reason,
                    })
                } else {
                    tracing::debug!(url = %session.url, branch, %reason, "push rejected");
                    Ok(PushOutcome::Rejected { reason })
                }
            }
            Some(_) if out.success => Ok(PushOutcome::Pushed),
            _ if !out.success => Err(session.classify(&out.stderr)),
            _ => Err(session.unexpected(&out.stdout)),
        }
    }
}

/// The captured result of one `git` command; `stderr` already scrubbed.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// What one operation needs: a private directory (HOME, key files, askpass script) removed on
/// drop, the environment that carries the credentials, and the secrets to scrub from output.
struct Session<'a> {
    op: &'static str,
    url: String,
    raw_url: &'a str,
    /// The URL as git gets it: a relative local path made absolute (git runs in `dir`).
    git_url: OsString,
    timeout: Duration,
    dir: tempfile::TempDir,
    env: Vec<(&'static str, OsString)>,
    secrets: Vec<String>,
}

impl<'a> Session<'a> {
    fn new(
        op: &'static str,
        remote: &'a Remote,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let url = redact(&remote.url);
        let setup = |source| TransportError::Setup {
            op,
            url: url.clone(),
            source,
        };
        let dir = super::private_dir::create("git").map_err(setup)?;
        let connect_timeout = timeout.as_secs().clamp(1, 30);
        // An encrypted key's passphrase comes from the askpass script (never a prompt, never
        // an argument); BatchMode would forbid asking it at all.
        let batch = match &remote.credentials {
            Some(Credentials::Ssh {
                passphrase: Some(_),
                ..
            }) => "no",
            _ => "yes",
        };
        let mut ssh = format!(
            "ssh -F /dev/null -o BatchMode={batch} -o StrictHostKeyChecking=yes \
             -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o IdentityAgent=none \
             -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
             -o ConnectTimeout={connect_timeout}"
        );
        let mut env: Vec<(&'static str, OsString)> = Vec::new();
        // Configuration from the environment (git 2.31+): never an argument, never a file.
        let mut config: Vec<(&'static str, OsString)> = Vec::new();
        let mut secrets = Vec::new();
        if let Some(bundle) = &remote.tls.ca_bundle {
            let ca = dir.path().join("ca.pem");
            write_private(&ca, bundle.as_bytes(), 0o600).map_err(setup)?;
            config.push(("http.sslCAInfo", ca.into()));
        }
        if remote.tls.insecure_skip_verify {
            config.push(("http.sslVerify", "false".into()));
        }
        match &remote.credentials {
            Some(Credentials::Ssh {
                private_key,
                known_hosts,
                user,
                passphrase,
            }) => {
                if let Some(passphrase) = passphrase {
                    let askpass = dir.path().join("askpass");
                    write_private(&askpass, ASKPASS_SCRIPT.as_bytes(), 0o700).map_err(setup)?;
                    env.push(("SSH_ASKPASS", askpass.into()));
                    env.push(("SSH_ASKPASS_REQUIRE", "force".into()));
                    env.push(("DISPLAY", "none".into()));
                    env.push((PASSWORD_ENV, passphrase.expose().into()));
                    secrets.push(passphrase.expose().to_string());
                }
                let key = dir.path().join("identity");
                let hosts = dir.path().join("known_hosts");
                write_private(&key, private_key.expose().as_bytes(), 0o600).map_err(setup)?;
                write_private(&hosts, known_hosts.as_bytes(), 0o600).map_err(setup)?;
                ssh.push_str(&format!(
                    " -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={}",
                    shell_quote(&key.to_string_lossy()),
                    shell_quote(&hosts.to_string_lossy())
                ));
                if let Some(user) = user.as_deref().filter(|_| url_user(&remote.url).is_none()) {
                    ssh.push_str(&format!(" -l {}", shell_quote(user)));
                }
                secrets.push(private_key.expose().to_string());
            }
            Some(Credentials::Basic { username, password }) => {
                let askpass = dir.path().join("askpass");
                write_private(&askpass, ASKPASS_SCRIPT.as_bytes(), 0o700).map_err(setup)?;
                env.push(("GIT_ASKPASS", askpass.into()));
                env.push((USERNAME_ENV, username.into()));
                env.push((PASSWORD_ENV, password.expose().into()));
                secrets.push(password.expose().to_string());
            }
            Some(Credentials::Bearer { token }) => {
                config.push((
                    "http.extraHeader",
                    format!("Authorization: Bearer {}", token.expose()).into(),
                ));
                secrets.push(token.expose().to_string());
                ssh.push_str(" -o UserKnownHostsFile=/dev/null");
            }
            None => {
                ssh.push_str(" -o UserKnownHostsFile=/dev/null");
            }
        }
        if !config.is_empty() {
            env.push(("GIT_CONFIG_COUNT", config.len().to_string().into()));
            for (i, (key, value)) in config.into_iter().enumerate() {
                env.push((CONFIG_KEYS[i], key.into()));
                env.push((CONFIG_VALUES[i], value));
            }
        }
        env.push(("GIT_SSH_COMMAND", ssh.into()));
        env.push(("GIT_SSH_VARIANT", "ssh".into()));
        // The URL comes from a resource: no `ext::` or other command-running transports.
        env.push(("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh".into()));
        // A password inside the URL itself is a secret too.
        if let Some(password) = url_password(&remote.url) {
            secrets.push(password.to_string());
        }
        let git_url = local_path_url(&remote.url).map_err(setup)?;
        Ok(Self {
            op,
            url,
            raw_url: &remote.url,
            git_url,
            timeout,
            dir,
            env,
            secrets,
        })
    }

    /// `--git-dir=<repo>` (absolute: git runs in the private directory) and settings that keep
    /// git from starting maintenance of its own.
    fn repo_args(&self, repo: &Path) -> Result<Vec<OsString>, TransportError> {
        let repo = std::path::absolute(repo).map_err(|source| TransportError::Setup {
            op: self.op,
            url: self.url.clone(),
            source,
        })?;
        let mut dir = OsString::from("--git-dir=");
        dir.push(repo.as_os_str());
        Ok(vec![
            dir,
            "-c".into(),
            "gc.auto=0".into(),
            "-c".into(),
            "maintenance.auto=false".into(),
        ])
    }

    /// `text` with every secret (raw and percent-encoded) and every URL's user-info replaced.
    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }

    fn detail(&self, stderr: &str) -> String {
        relevant_lines(stderr)
    }

    /// Turns a failed network command's stderr into the matching error.
    fn classify(&self, stderr: &str) -> TransportError {
        let (op, url, detail) = (self.op, self.url.clone(), self.detail(stderr));
        let has = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
        if has(&[
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
            "host key is known for",
            "Host key for ",
        ]) {
            return TransportError::HostKey {
                op,
                host: ssh_host(self.raw_url),
                url,
                detail,
            };
        }
        if has(&[
            "SSL certificate problem",
            "server certificate verification failed",
            "certificate verify failed",
        ]) {
            return TransportError::Certificate { op, url, detail };
        }
        if has(&[
            "Authentication failed",
            "Permission denied (",
            "could not read Username",
            "could not read Password",
            "terminal prompts disabled",
            "returned error: 401",
            "returned error: 403",
            "Invalid username or password",
        ]) {
            return TransportError::Authentication { op, url, detail };
        }
        if has(&[
            "Connection refused",
            "Could not resolve host",
            "Could not resolve hostname",
            "Name or service not known",
            "Temporary failure in name resolution",
            "unable to look up",
            "timed out",
            "No route to host",
            "Network is unreachable",
            "Failed to connect to",
            "Couldn't connect to server",
            "unable to connect to",
            "Connection reset by peer",
            // A server busy updating refs may answer 5xx or drop the connection.
            "returned error: 5",
            "The remote end hung up unexpectedly",
            "remote end hung up unexpectedly",
        ]) {
            return TransportError::Unreachable { op, url, detail };
        }
        if has(&[
            "does not appear to be a git repository",
            "not found",
            "returned error: 404",
            "repository not exported",
            "No such file or directory",
        ]) {
            return TransportError::NotFound { op, url, detail };
        }
        TransportError::Git { op, url, detail }
    }

    fn git_error(&self, stderr: &str) -> TransportError {
        TransportError::Git {
            op: self.op,
            url: self.url.clone(),
            detail: self.detail(stderr),
        }
    }

    fn unexpected(&self, stdout: &str) -> TransportError {
        TransportError::UnexpectedOutput {
            op: self.op,
            url: self.url.clone(),
            detail: relevant_lines(&self.scrub(stdout)),
        }
    }
}

impl GitCli {
    /// The command for `args` in the session's clean environment; credentials only in `env`.
    fn command(&self, session: &Session<'_>, args: &[OsString]) -> Command {
        let home = session.dir.path();
        let mut cmd = Command::new(&self.git);
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .envs(session.env.iter().map(|(k, v)| (k, v)))
            .current_dir(home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills ssh and git-remote-http too.
            .process_group(0);
        cmd
    }

    /// Runs git, kills its process group when it outlives the timeout.
    fn run(&self, session: &Session<'_>, args: &[OsString]) -> Result<Output, TransportError> {
        let started = Instant::now();
        let mut child =
            self.command(session, args)
                .spawn()
                .map_err(|source| TransportError::Spawn {
                    op: session.op,
                    url: session.url.clone(),
                    git: self.git.display().to_string(),
                    source,
                })?;
        let stdout = read_in_background(child.stdout.take());
        let stderr = read_in_background(child.stderr.take());
        let timed_out = !wait_for_exit(&child, session.timeout);
        if timed_out {
            let pid = rustix::process::Pid::from_child(&child);
            // The group may be gone already; the wait below tells.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let status = child.wait();
        let stdout = stdout.join().unwrap_or_default();
        let stderr = session.scrub(&stderr.join().unwrap_or_default());
        tracing::debug!(
            op = session.op,
            url = %session.url,
            elapsed_ms = started.elapsed().as_millis() as u64,
            timed_out,
            "git command finished"
        );
        if timed_out {
            return Err(TransportError::Timeout {
                op: session.op,
                url: session.url.clone(),
                after: session.timeout,
            });
        }
        let status = status.map_err(|source| TransportError::Spawn {
            op: session.op,
            url: session.url.clone(),
            git: self.git.display().to_string(),
            source,
        })?;
        Ok(Output {
            success: status.success(),
            stdout,
            stderr,
        })
    }
}

/// Waits until `child` exits without reaping it (so its pid stays its own and can be signalled
/// safely); false when `timeout` passed first.
fn wait_for_exit(child: &Child, timeout: Duration) -> bool {
    let pid = rustix::process::Pid::from_child(child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        while let Err(rustix::io::Errno::INTR) = waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {}
        let _ = tx.send(());
    });
    !matches!(
        rx.recv_timeout(timeout),
        Err(mpsc::RecvTimeoutError::Timeout)
    )
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn write_private(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// `url`, or the absolute form of a relative local path (`../srv/repo.git`).
fn local_path_url(url: &str) -> io::Result<OsString> {
    let scp_like = url
        .split_once(':')
        .is_some_and(|(before, _)| !before.contains('/'));
    if url.contains("://") || scp_like || url.starts_with('/') {
        return Ok(url.into());
    }
    Ok(std::path::absolute(url)?.into_os_string())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A branch name that is safe in a refspec and a lease (a subset of `git check-ref-format`).
fn check_branch(remote: &Remote, branch: &str) -> Result<(), TransportError> {
    let bad = branch.is_empty()
        || branch.starts_with(['-', '/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch.contains("/.")
        || branch == "@"
        || branch
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        return Err(TransportError::InvalidBranch {
            url: redact(&remote.url),
            branch: branch.to_string(),
        });
    }
    Ok(())
}

fn parse_oid(hex: &str) -> Option<ObjectId> {
    ObjectId::from_hex(hex.as_bytes()).ok()
}

/// `git ls-remote --symref` output: `ref: refs/heads/main<TAB>HEAD` and `<oid><TAB><ref>` lines.
fn parse_ls_remote(stdout: &str) -> Option<RemoteInfo> {
    let mut default_branch = None;
    let mut refs = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let (left, name) = line.split_once('\t')?;
        if let Some(target) = left.strip_prefix("ref: ") {
            if name == "HEAD" {
                default_branch = target.strip_prefix("refs/heads/").map(str::to_string);
            }
            continue;
        }
        parse_oid(left)?;
        refs += 1;
    }
    Some(RemoteInfo {
        default_branch,
        empty: refs == 0,
    })
}

/// The flag and summary of `target` in `git push --porcelain` output
/// (`<flag>\t<from>:<to>\t<summary>`).
fn parse_push_status<'a>(stdout: &'a str, target: &str) -> Option<(char, &'a str)> {
    stdout.lines().find_map(|line| {
        let mut fields = line.splitn(3, '\t');
        let flag = fields.next()?;
        let refs = fields.next()?;
        let summary = fields.next().unwrap_or_default();
        let flag = match flag.chars().collect::<Vec<_>>()[..] {
            [c] => c,
            _ => return None,
        };
        (refs.rsplit_once(':')?.1 == target).then_some((flag, summary))
    })
}

/// The lines of git's stderr that say what went wrong, joined; hints and blank lines dropped.
fn relevant_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:") && !l.chars().all(|c| c == '@'))
        .collect();
    let start = lines.len().saturating_sub(DETAIL_LINES);
    let text = lines[start..].join("; ");
    if text.is_empty() {
        "git printed no message".to_string()
    } else {
        text
    }
}

/// `text` with every secret (raw and percent-encoded) and the user-info of every URL in it
/// replaced by `***`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), "***");
        let encoded = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
        if encoded != *secret {
            out = out.replace(&encoded, "***");
        }
        // A key may reach a message line by line.
        for line in secret.lines().map(str::trim).filter(|l| l.len() >= 16) {
            out = out.replace(line, "***");
        }
    }
    redact_urls_in(&out)
}

/// Every `scheme://...` in `text` passed through [`redact`].
fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let scheme_start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[pos..]
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| pos + i);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The user-info part of a `scheme://` URL's authority.
fn url_userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
}

/// The user a URL names (`ssh://git@host/x`, `git@host:x`).
fn url_user(url: &str) -> Option<&str> {
    if url.contains("://") {
        return url_userinfo(url).map(|u| u.split_once(':').map_or(u, |(user, _)| user));
    }
    let (before_colon, _) = url.split_once(':')?;
    before_colon.rsplit_once('@').map(|(user, _)| user)
}

fn url_password(url: &str) -> Option<&str> {
    url_userinfo(url)?
        .split_once(':')
        .map(|(_, password)| password)
}

/// The host as ssh names it in `known_hosts`: `host`, or `[host]:port` for another port.
fn ssh_host(url: &str) -> String {
    let authority = match url.split_once("://") {
        Some((_, rest)) => rest.split('/').next().unwrap_or_default(),
        // scp-style `user@host:path`
        None => url.split_once(':').map_or(url, |(host, _)| host),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        // `[::1]:2222` or `[::1]`
        return match bracketed.split_once(']') {
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) if port != "22" => format!("[{host}]:{port}"),
                _ => host.to_string(),
            },
            None => host_port.to_string(),
        };
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if url.contains("://") && port != "22" && !port.is_empty() => {
            format!("[{host}]:{port}")
        }
        Some((host, _)) if url.contains("://") => host.to_string(),
        _ => host_port.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::credentials::SecretString;

    fn basic_remote(url: &str, password: &str) -> Remote {
        Remote::new(
            url,
            Some(Credentials::Basic {
                username: "alice".into(),
                password: SecretString::new(password),
            }),
        )
    }

    /// Every spelling of "another writer moved or holds the branch" is contention (fetch,
    /// replay, push again); a protected branch or a hook's refusal is not.
    #[test]
    fn contention_spellings_are_retried_and_refusals_are_not() {
        for reason in [
            "[rejected] (stale info)",
            "[rejected] (fetch first)",
            "[rejected] (non-fast-forward)",
            "[remote rejected] (atomic transaction failed)",
            "[remote rejected] (cannot lock ref 'refs/heads/main': is at 1234 but expected 5678)",
            "[remote rejected] (failed to update ref)",
            "[remote rejected] (incorrect old value provided)",
        ] {
            assert!(is_contention(reason), "{reason}");
        }
        for reason in [
            "[remote rejected] (protected branch hook declined)",
            "[remote rejected] (pre-receive hook declined)",
            "[remote rejected] (shallow update not allowed)",
        ] {
            assert!(!is_contention(reason), "{reason}");
        }
        let permanent = TransportError::RemoteRejected {
            url: "u".into(),
            branch: "main".into(),
            reason: "protected".into(),
        };
        assert!(permanent.is_permanent() && !permanent.is_transient());
        let away = TransportError::Unreachable {
            op: "push",
            url: "u".into(),
            detail: "The requested URL returned error: 503".into(),
        };
        assert!(away.is_transient() && !away.is_permanent());
    }

    #[test]
    fn scrub_removes_secrets_and_userinfo() {
        let secrets = vec!["p@ss w0rd!".to_string()];
        let text = "fatal: unable to access 'https://alice:p%40ss%20w0rd%21@host/repo.git/': \
                    error; echo p@ss w0rd! and http://bob:other@x:8080/y and git@host:org/r";
        let clean = scrub(text, &secrets);
        assert!(!clean.contains("p@ss"), "{clean}");
        assert!(!clean.contains("p%40ss"), "{clean}");
        assert!(!clean.contains("other"), "{clean}");
        assert!(
            clean.contains("https://alice:***@host/repo.git/"),
            "{clean}"
        );
        assert!(clean.contains("http://bob:***@x:8080/y"), "{clean}");
        assert!(clean.contains("git@host:org/r"), "{clean}");
    }

    #[test]
    fn classification_of_git_messages() {
        let remote = basic_remote("https://alice:inurl@git.example/org/repo", "hunter2");
        let session = Session::new("push", &remote, DEFAULT_TIMEOUT).unwrap();
        let cases: &[(&str, &str)] = &[
            (
                "fatal: Authentication failed for 'https://alice:inurl@git.example/org/repo/'",
                "Authentication",
            ),
            (
                "git@host: Permission denied (publickey).\nfatal: Could not read from remote repository.",
                "Authentication",
            ),
            (
                "fatal: could not read Username for 'https://git.example': terminal prompts disabled",
                "Authentication",
            ),
            (
                "Host key verification failed.\nfatal: Could not read from remote repository.",
                "HostKey",
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.",
                "HostKey",
            ),
            (
                "fatal: unable to access 'https://git.example/': Could not resolve host: git.example",
                "Unreachable",
            ),
            (
                "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused",
                "Unreachable",
            ),
            (
                "ssh: connect to host 10.0.0.1 port 22: Connection timed out",
                "Unreachable",
            ),
            (
                "fatal: repository 'https://git.example/org/nope/' not found",
                "NotFound",
            ),
            (
                "fatal: '/srv/nope.git' does not appear to be a git repository",
                "NotFound",
            ),
            (
                "fatal: remote error: access denied or repository not exported: /nope.git",
                "NotFound",
            ),
            ("error: object file is empty", "Git"),
        ];
        for (stderr, want) in cases {
            let err = session.classify(&session.scrub(stderr));
            let got = format!("{err:?}");
            assert!(got.starts_with(want), "{stderr} → {got}");
            let text = err.to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("inurl"),
                "{text}"
            );
        }
        match session.classify("Host key verification failed.") {
            TransportError::HostKey { host, .. } => assert_eq!(host, "git.example"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credentials_only_in_the_environment() {
        let remote = basic_remote("https://git.example/org/repo", "hunter2");
        let session = Session::new("push", &remote, DEFAULT_TIMEOUT).unwrap();
        let cli = GitCli::new();
        let cmd = cli.command(&session, &["ls-remote".into(), remote.url.clone().into()]);
        for arg in cmd.get_args() {
            assert!(!arg.to_string_lossy().contains("hunter2"));
        }
        let envs: Vec<_> = cmd.get_envs().collect();
        let with_secret: Vec<_> = envs
            .iter()
            .filter(|(_, v)| v.is_some_and(|v| v.to_string_lossy().contains("hunter2")))
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(with_secret, [PASSWORD_ENV]);
        let askpass = session.dir.path().join("askpass");
        let script = std::fs::read_to_string(&askpass).unwrap();
        assert!(!script.contains("hunter2"));
        assert!(format!("{remote:?}").contains("***"));
    }

    #[test]
    fn ssh_key_files_are_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let remote = Remote::new(
            "ssh://git@host:2222/org/repo",
            Some(Credentials::Ssh {
                private_key: SecretString::new("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"),
                known_hosts: "[host]:2222 ssh-ed25519 AAAA\n".into(),
                user: Some("deploy".into()),
                passphrase: None,
            }),
        );
        let session = Session::new("fetch", &remote, DEFAULT_TIMEOUT).unwrap();
        let dir = session.dir.path().to_path_buf();
        for name in ["identity", "known_hosts"] {
            let mode = std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let ssh = session
            .env
            .iter()
            .find(|(k, _)| *k == "GIT_SSH_COMMAND")
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .unwrap();
        assert!(ssh.contains("-o StrictHostKeyChecking=yes"), "{ssh}");
        assert!(ssh.contains("-o IdentitiesOnly=yes"), "{ssh}");
        assert!(!ssh.contains("OPENSSH"), "{ssh}");
        // The URL names a user, so the Secret's user is not forced on it.
        assert!(!ssh.contains("-l "), "{ssh}");
        drop(session);
        assert!(!dir.exists());
    }

    #[test]
    fn porcelain_and_ls_remote_parsing() {
        let out = "To file:///srv/x.git\n!\tc5f5a5c626cd82016f82575ccf341fee4bf183fa:refs/heads/main\t[rejected] (stale info)\nDone\n";
        assert_eq!(
            parse_push_status(out, "refs/heads/main"),
            Some(('!', "[rejected] (stale info)"))
        );
        let out = "To x\n*\ta1a8f51f5563416e5bf0a8ff66dfcde329eca310:refs/heads/main\t[new branch]\nDone\n";
        assert_eq!(
            parse_push_status(out, "refs/heads/main").map(|s| s.0),
            Some('*')
        );
        let out = "To x\n \ta1:refs/heads/main\ta1a8f51..0bd85af\nDone\n";
        assert_eq!(
            parse_push_status(out, "refs/heads/main").map(|s| s.0),
            Some(' ')
        );
        assert_eq!(parse_push_status(out, "refs/heads/other"), None);

        let oid = "a1a8f51f5563416e5bf0a8ff66dfcde329eca310";
        let listing =
            format!("ref: refs/heads/trunk\tHEAD\n{oid}\tHEAD\n{oid}\trefs/heads/trunk\n");
        assert_eq!(
            parse_ls_remote(&listing),
            Some(RemoteInfo {
                default_branch: Some("trunk".into()),
                empty: false
            })
        );
        assert_eq!(
            parse_ls_remote(""),
            Some(RemoteInfo {
                default_branch: None,
                empty: true
            })
        );
        assert_eq!(parse_ls_remote("garbage\tHEAD\n"), None);
    }

    #[test]
    fn branch_names() {
        let remote = Remote::new("file:///x", None);
        for good in ["main", "feature/x", "release-1.2", "a_b"] {
            assert!(check_branch(&remote, good).is_ok(), "{good}");
        }
        for bad in [
            "", "-f", "a..b", "a:b", "a b", "x.lock", "/a", "a/", "a^", "a~1", "a*", "@", "a@{1}",
            ".hidden", "a/.b",
        ] {
            assert!(check_branch(&remote, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_local_paths_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            local_path_url("srv/repo.git").unwrap(),
            cwd.join("srv/repo.git").into_os_string()
        );
        for kept in [
            "/srv/repo.git",
            "file:///srv/r",
            "git@host:org/r",
            "https://h/r",
        ] {
            assert_eq!(local_path_url(kept).unwrap(), OsString::from(kept));
        }
    }

    #[test]
    fn hosts_and_users_of_urls() {
        let cases = [
            (
                "ssh://git@127.0.0.1:2222/srv/r.git",
                "[127.0.0.1]:2222",
                Some("git"),
            ),
            ("ssh://git@github.com/org/r", "github.com", Some("git")),
            ("ssh://github.com:22/org/r", "github.com", None),
            ("git@github.com:org/r.git", "github.com", Some("git")),
            ("ssh://[::1]:2222/r", "[::1]:2222", None),
            (
                "https://alice:pw@git.example/r",
                "git.example",
                Some("alice"),
            ),
        ];
        for (url, host, user) in cases {
            assert_eq!(ssh_host(url), host, "{url}");
            assert_eq!(url_user(url), user, "{url}");
        }
        assert_eq!(url_password("https://alice:pw@git.example/r"), Some("pw"));
        assert_eq!(url_password("ssh://git@host/r"), None);
    }
}

//! The live view of the queues: [`StatusReport`] (what `/status.json` returns) and its HTML
//! page (`/status`: one self-contained document, no external scripts, styles or fonts, that
//! reloads itself every few seconds). Pure: the agent builds the report from its workers' and
//! destinations' snapshots; this module only shapes and renders it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How often the page reloads itself, in seconds.
pub const REFRESH_SECONDS: u32 = 3;

/// Builds a report when `/status` or `/status.json` is asked for. Must not wait for workers.
pub trait StatusSource: Send + Sync {
    fn report(&self) -> StatusReport;
}

/// Everything the status page shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// When the report was made (RFC 3339, UTC).
    pub generated_at: String,
    /// `None` when ready, else why not (as `/readyz` says).
    pub not_ready: Option<String>,
    /// One per repository and branch.
    pub workers: Vec<WorkerStatus>,
    /// One per GitDestination the plan resolved.
    pub destinations: Vec<DestinationStatus>,
    /// Events of every destination by decision, since the start.
    pub events: BTreeMap<String, u64>,
}

/// A queue's fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Fill {
    pub depth: usize,
    pub capacity: usize,
}

/// One repository worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// Normalized URL and branch (never credentials).
    pub repository: String,
    pub queue: Fill,
    pub open_windows: Vec<WindowStatus>,
    /// Commits waiting to be pushed (closed windows and snapshots) and the files in them.
    pub waiting_commits: usize,
    pub waiting_files: usize,
    pub last_push: Option<PushStatus>,
    pub last_failure: Option<FailureStatus>,
    /// From the destinations' `RepositoryReachable` (`None`: not known yet).
    pub reachable: Option<bool>,
    pub commits: u64,
    pub pushes: u64,
    pub push_failures: u64,
}

/// One open commit window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowStatus {
    pub author: String,
    pub destination: String,
    pub folder: String,
    pub age_seconds: u64,
    pub files: usize,
}

/// The last push that reached the remote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushStatus {
    pub at: String,
    pub commit: String,
    pub took_ms: u64,
}

/// The last failed push round (cleared by the next push).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FailureStatus {
    pub at: String,
    pub error: String,
}

/// A condition as `kubectl get -o yaml` shows it, in short.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConditionStatus {
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// One GitDestination.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    /// `namespace/name`.
    pub name: String,
    /// The GitRepoConfig's URL as configured (a password or token in it shown as `***`), and
    /// the worker it shares ([`WorkerStatus`]'s
    /// `repository`).
    pub url: String,
    pub repository: String,
    pub branch: String,
    pub folder: String,
    /// `Record` or `Observe`.
    pub mode: String,
    pub suspended: bool,
    pub ready: Option<ConditionStatus>,
    pub reachable: Option<ConditionStatus>,
    /// The task's queue (`None` while suspended or not started).
    pub queue: Option<Fill>,
    /// Events by decision, since the destination started.
    pub events: BTreeMap<String, u64>,
    /// Changes waiting for their author (audit or admission fact).
    pub awaiting_attribution: u64,
    /// In `Observe` mode: what would have been written.
    pub would_write: Option<WouldWriteStatus>,
}

/// What an observing destination would have written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WouldWriteStatus {
    /// Changes decided since the destination started (the reconcile not counted).
    pub changes: u64,
    /// The latest, newest first.
    pub recent: Vec<WouldWriteChange>,
    /// What the last reconcile would have committed (`reconcile: N added, …`), if it ran.
    pub reconcile: Option<String>,
}

/// One change an observing destination would have committed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WouldWriteChange {
    pub at: String,
    /// The commit subject it would have had (`update v1 ConfigMap shop/web`).
    pub summary: String,
    pub path: String,
}

impl StatusReport {
    /// The JSON of `/status.json`.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The HTML of `/status`.
    pub fn to_html(&self) -> String {
        let mut page = String::with_capacity(8192);
        let _ = write_page(&mut page, self);
        page
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;\
text-align:left;vertical-align:top}th{background:#f3f3f3}.bad{color:#b00020}.ok{color:#1b5e20}\
.muted{color:#777}code{font-family:monospace}meter{width:8em}";

fn write_page(out: &mut String, report: &StatusReport) -> std::fmt::Result {
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\"><head><meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
    )?;
    writeln!(out, "<title>gitops-reverser status</title>")?;
    writeln!(out, "<style>{STYLE}</style></head><body>")?;
    writeln!(out, "<h1>gitops-reverser</h1>")?;
    let readiness = match &report.not_ready {
        None => "<span class=\"ok\">ready</span>".to_string(),
        Some(why) => format!("<span class=\"bad\">not ready: {}</span>", escape(why)),
    };
    writeln!(
        out,
        "<p id=\"summary\">{readiness} · {} workers · {} destinations · as of <time>{}</time> \
         (reloads every {REFRESH_SECONDS} s; <a href=\"status.json\">JSON</a>)</p>",
        report.workers.len(),
        report.destinations.len(),
        escape(&report.generated_at)
    )?;
    write_workers(out, &report.workers)?;
    write_destinations(out, &report.destinations)?;
    writeln!(out, "<h2>Events by decision</h2>")?;
    write_counts(out, "events", &report.events)?;
    writeln!(out, "</body></html>")
}

fn fill(out: &mut String, fill: Fill) -> std::fmt::Result {
    write!(
        out,
        "<meter min=\"0\" max=\"{}\" value=\"{}\"></meter> {} / {}",
        fill.capacity.max(1),
        fill.depth,
        fill.depth,
        fill.capacity
    )
}

fn reachable(out: &mut String, reachable: Option<bool>) -> std::fmt::Result {
    match reachable {
        Some(true) => write!(out, "<span class=\"ok\">yes</span>"),
        Some(false) => write!(out, "<span class=\"bad\">no</span>"),
        None => write!(out, "<span class=\"muted\">not known yet</span>"),
    }
}

fn write_workers(out: &mut String, workers: &[WorkerStatus]) -> std::fmt::Result {
    writeln!(out, "<h2>Repository workers</h2>")?;
    if workers.is_empty() {
        return writeln!(out, "<p class=\"muted\">No worker is running.</p>");
    }
    writeln!(
        out,
        "<table id=\"workers\"><tr><th>repository</th><th>queue</th><th>open windows</th>\
         <th>waiting to push</th><th>last push</th><th>reachable</th><th>totals</th></tr>"
    )?;
    for w in workers {
        write!(
            out,
            "<tr class=\"worker\"><td class=\"repository\"><code>{}</code></td><td>",
            escape(&w.repository)
        )?;
        fill(out, w.queue)?;
        write!(out, "</td><td class=\"windows\">")?;
        if w.open_windows.is_empty() {
            write!(out, "<span class=\"muted\">none</span>")?;
        }
        for window in &w.open_windows {
            write!(
                out,
                "<div class=\"window\"><span class=\"author\">{}</span>: {} file{} in <code>{}</code>, \
                 open {} s</div>",
                escape(&window.author),
                window.files,
                if window.files == 1 { "" } else { "s" },
                escape(&window.folder),
                window.age_seconds
            )?;
        }
        write!(
            out,
            "</td><td>{} commit{} ({} files)</td><td class=\"last-push\">",
            w.waiting_commits,
            if w.waiting_commits == 1 { "" } else { "s" },
            w.waiting_files
        )?;
        match &w.last_push {
            Some(push) => write!(
                out,
                "<code class=\"commit\">{}</code> at <time>{}</time> in {} ms",
                escape(&push.commit),
                escape(&push.at),
                push.took_ms
            )?,
            None => write!(out, "<span class=\"muted\">none yet</span>")?,
        }
        if let Some(failure) = &w.last_failure {
            write!(
                out,
                "<div class=\"bad\">failed at <time>{}</time>: {}</div>",
                escape(&failure.at),
                escape(&failure.error)
            )?;
        }
        write!(out, "</td><td>")?;
        reachable(out, w.reachable)?;
        writeln!(
            out,
            "</td><td>{} commits, {} pushes, {} failed rounds</td></tr>",
            w.commits, w.pushes, w.push_failures
        )?;
    }
    writeln!(out, "</table>")
}

fn condition(out: &mut String, c: &Option<ConditionStatus>) -> std::fmt::Result {
    match c {
        Some(c) => write!(
            out,
            "<span class=\"{}\" title=\"{}\">{} ({})</span>",
            if c.status == "True" { "ok" } else { "bad" },
            escape(&c.message),
            escape(&c.status),
            escape(&c.reason)
        ),
        None => write!(out, "<span class=\"muted\">-</span>"),
    }
}

fn write_destinations(out: &mut String, destinations: &[DestinationStatus]) -> std::fmt::Result {
    writeln!(out, "<h2>Destinations</h2>")?;
    if destinations.is_empty() {
        return writeln!(
            out,
            "<p class=\"muted\">No GitDestination is configured.</p>"
        );
    }
    writeln!(
        out,
        "<table id=\"destinations\"><tr><th>destination</th><th>repository</th><th>mode</th>\
         <th>ready</th><th>reachable</th><th>queue</th><th>awaiting author</th>\
         <th>events</th></tr>"
    )?;
    for d in destinations {
        write!(
            out,
            "<tr class=\"destination\"><td class=\"name\">{}</td><td><code>{}</code> {} \
             <code>{}</code></td><td class=\"mode\">{}{}</td><td>",
            escape(&d.name),
            escape(&d.url),
            escape(&d.branch),
            escape(&d.folder),
            escape(&d.mode),
            if d.suspended { ", suspended" } else { "" }
        )?;
        condition(out, &d.ready)?;
        write!(out, "</td><td>")?;
        condition(out, &d.reachable)?;
        write!(out, "</td><td>")?;
        match d.queue {
            Some(q) => fill(out, q)?,
            None => write!(out, "<span class=\"muted\">stopped</span>")?,
        }
        write!(out, "</td><td>{}</td><td>", d.awaiting_attribution)?;
        let nonzero: BTreeMap<String, u64> = d
            .events
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        if nonzero.is_empty() {
            write!(out, "<span class=\"muted\">none</span>")?;
        }
        for (decision, n) in &nonzero {
            write!(out, "{}: {n}<br>", escape(decision))?;
        }
        writeln!(out, "</td></tr>")?;
        if let Some(would) = &d.would_write {
            write!(
                out,
                "<tr class=\"would-write\"><td colspan=\"8\">Observe: would have written {} \
                 change{}",
                would.changes,
                if would.changes == 1 { "" } else { "s" }
            )?;
            if let Some(reconcile) = &would.reconcile {
                write!(
                    out,
                    "; the reconcile would commit <q>{}</q>",
                    escape(reconcile)
                )?;
            }
            write!(out, "<ul>")?;
            for change in &would.recent {
                write!(
                    out,
                    "<li><time>{}</time> {} (<code>{}</code>)</li>",
                    escape(&change.at),
                    escape(&change.summary),
                    escape(&change.path)
                )?;
            }
            writeln!(out, "</ul></td></tr>")?;
        }
    }
    writeln!(out, "</table>")
}

fn write_counts(out: &mut String, id: &str, counts: &BTreeMap<String, u64>) -> std::fmt::Result {
    write!(out, "<table id=\"{id}\"><tr>")?;
    for decision in counts.keys() {
        write!(out, "<th>{}</th>", escape(decision))?;
    }
    write!(out, "</tr><tr>")?;
    for n in counts.values() {
        write!(out, "<td>{n}</td>")?;
    }
    writeln!(out, "</tr></table>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            generated_at: "2026-12-04T20:00:00Z".into(),
            not_ready: None,
            workers: vec![WorkerStatus {
                repository: "https://git.example.com/shop.git@main".into(),
                queue: Fill {
                    depth: 3,
                    capacity: 10_000,
                },
                open_windows: vec![WindowStatus {
                    author: "Alice <alice@example.com>".into(),
                    destination: "shop/dev".into(),
                    folder: "clusters/dev".into(),
                    age_seconds: 2,
                    files: 1,
                }],
                waiting_commits: 1,
                waiting_files: 4,
                last_push: Some(PushStatus {
                    at: "2026-12-04T19:59:58Z".into(),
                    commit: "0123456789abcdef0123456789abcdef01234567".into(),
                    took_ms: 42,
                }),
                last_failure: None,
                reachable: Some(true),
                commits: 5,
                pushes: 4,
                push_failures: 0,
            }],
            destinations: vec![DestinationStatus {
                name: "shop/dev".into(),
                url: "https://git.example.com/shop".into(),
                repository: "https://git.example.com/shop.git@main".into(),
                branch: "main".into(),
                folder: "clusters/dev".into(),
                mode: "Observe".into(),
                suspended: false,
                would_write: Some(WouldWriteStatus {
                    changes: 1,
                    recent: vec![WouldWriteChange {
                        at: "2026-12-04T19:59:59Z".into(),
                        summary: "create v1 ConfigMap shop/<web>".into(),
                        path: "clusters/dev/shop/core/configmaps/web.yaml".into(),
                    }],
                    reconcile: Some("reconcile: 2 added, 0 updated, 0 removed".into()),
                }),
                ..DestinationStatus::default()
            }],
            events: [("written".to_string(), 3)].into(),
        }
    }

    #[test]
    fn the_page_is_self_contained_reloads_and_shows_the_queues() {
        let html = report().to_html();
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"3\">"));
        for external in ["<script", "<link", "src=", "@import", "url(", "http://"] {
            assert!(!html.contains(external), "{external} in the page");
        }
        assert!(html.contains("https://git.example.com/shop.git@main"));
        assert!(html.contains("0123456789abcdef0123456789abcdef01234567"));
        assert!(html.contains("Alice &lt;alice@example.com&gt;</span>: 1 file in"));
        assert!(html.contains("3 / 10000"));
        assert!(html.contains("would have written 1 change;"));
        assert!(
            html.contains("create v1 ConfigMap shop/&lt;web&gt;"),
            "text is escaped"
        );
        assert!(html.contains("reconcile: 2 added"));
    }

    #[test]
    fn the_json_has_the_same_data_in_camel_case() {
        let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(json["workers"][0]["queue"]["capacity"], 10_000);
        assert_eq!(
            json["workers"][0]["openWindows"][0]["author"],
            "Alice <alice@example.com>"
        );
        assert_eq!(json["workers"][0]["lastPush"]["tookMs"], 42);
        assert_eq!(json["destinations"][0]["wouldWrite"]["changes"], 1);
        assert_eq!(json["events"]["written"], 3);
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}

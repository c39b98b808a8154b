//! Commit windows: changes grouped per (author, destination folder) until a quiet period, a
//! maximum age or a maximum count closes them, or another author touches one of their files.

use super::change::{Change, FileChange};
use crate::identity::Author;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::time::Duration;

/// When windows close. `quiet == 0` makes every change its own commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    pub quiet: Duration,
    pub max_age: Duration,
    pub max_changes: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            quiet: Duration::from_secs(3),
            max_age: Duration::from_secs(60),
            max_changes: 200,
        }
    }
}

/// Why a window closed (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    Quiet,
    MaxAge,
    MaxChanges,
    /// Another author touched a file in this window; it closes first so each person's change
    /// stays their own commit and the file's history keeps its order.
    OtherAuthor,
    Flush,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Quiet => "quiet",
            CloseReason::MaxAge => "max-age",
            CloseReason::MaxChanges => "max-changes",
            CloseReason::OtherAuthor => "other-author",
            CloseReason::Flush => "flush",
        }
    }
}

/// A closed window: one future commit. `changes` holds the last state of each file, in the
/// order each file was first touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub changes: Vec<Change>,
    pub reason: CloseReason,
}

impl Closed {
    /// The author date of the commit: when the last change in it was received.
    pub fn author_date(&self) -> Option<Timestamp> {
        self.changes.iter().map(|c| c.received).max()
    }

    pub fn author(&self) -> Option<&Author> {
        self.changes.first().map(|c| &c.author)
    }

    pub fn files(&self) -> impl Iterator<Item = &FileChange> {
        self.changes.iter().map(|c| &c.file)
    }
}

struct Window {
    author: Author,
    folder: String,
    /// Last state per object (or file), in first-touch order.
    changes: Vec<Change>,
    index: HashMap<String, usize>,
    /// How many changes arrived, counting repeats of a path.
    count: usize,
    opened: Timestamp,
    last: Timestamp,
}

impl Window {
    fn quiet_deadline(&self, config: &WindowConfig) -> Timestamp {
        self.last
            .saturating_add(signed(config.quiet))
            .unwrap_or(Timestamp::MAX)
    }

    fn deadline(&self, config: &WindowConfig) -> Timestamp {
        let age = self
            .opened
            .saturating_add(signed(config.max_age))
            .unwrap_or(Timestamp::MAX);
        self.quiet_deadline(config).min(age)
    }

    fn close(self, reason: CloseReason) -> Closed {
        Closed {
            changes: self.changes,
            reason,
        }
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// The open windows of one worker. Time is whatever the caller says it is: the wall clock for
/// the live agent, the changes' own timestamps for `replay`, so both group the same way.
pub struct Windows {
    config: WindowConfig,
    /// Open windows in the order they opened.
    open: Vec<Window>,
}

impl Windows {
    pub fn new(config: WindowConfig) -> Self {
        Self {
            config,
            open: Vec::new(),
        }
    }

    pub fn config(&self) -> WindowConfig {
        self.config
    }

    /// Number of open windows and of changes waiting in them.
    pub fn open_counts(&self) -> (usize, usize) {
        (
            self.open.len(),
            self.open.iter().map(|w| w.changes.len()).sum(),
        )
    }

    /// The open windows, oldest first, for the status page.
    pub fn open_windows(&self) -> Vec<super::progress::OpenWindow> {
        self.open
            .iter()
            .map(|w| super::progress::OpenWindow {
                author: format!("{} <{}>", w.author.name, w.author.email),
                folder: w.folder.clone(),
                destination: w
                    .changes
                    .first()
                    .map(|c| c.destination.clone())
                    .unwrap_or_default(),
                opened: w.opened,
                files: w.changes.len(),
            })
            .collect()
    }

    /// Adds a change; returns the windows this closed, in the order their commits must be made.
    /// Windows already due at the change's time close first; then any other author's window in
    /// the same folder that holds this file; a full window closes after the change joins it.
    pub fn add(&mut self, change: Change) -> Vec<Closed> {
        let mut closed = self.due(change.received);
        let mut i = 0;
        while i < self.open.len() {
            let w = &self.open[i];
            if w.folder == change.folder
                && w.author != change.author
                && w.index.contains_key(&change.file.key())
            {
                closed.push(self.open.remove(i).close(CloseReason::OtherAuthor));
            } else {
                i += 1;
            }
        }
        let position = self
            .open
            .iter()
            .position(|w| w.author == change.author && w.folder == change.folder);
        let position = position.unwrap_or_else(|| {
            self.open.push(Window {
                author: change.author.clone(),
                folder: change.folder.clone(),
                changes: Vec::new(),
                index: HashMap::new(),
                count: 0,
                opened: change.received,
                last: change.received,
            });
            self.open.len() - 1
        });
        let window = &mut self.open[position];
        window.last = window.last.max(change.received);
        window.count += 1;
        match window.index.get(&change.file.key()) {
            Some(&at) => window.changes[at] = change,
            None => {
                window.index.insert(change.file.key(), window.changes.len());
                window.changes.push(change);
            }
        }
        if self.config.quiet.is_zero() {
            closed.push(self.open.remove(position).close(CloseReason::Quiet));
        } else if window.count >= self.config.max_changes.max(1) {
            closed.push(self.open.remove(position).close(CloseReason::MaxChanges));
        }
        closed
    }

    /// Closes every window whose quiet period or maximum age has passed at `now`, earliest
    /// deadline first.
    pub fn due(&mut self, now: Timestamp) -> Vec<Closed> {
        let config = self.config;
        let (mut due, open): (Vec<Window>, Vec<Window>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|w| w.deadline(&config) <= now);
        self.open = open;
        due.sort_by_key(|w| w.deadline(&config));
        due.into_iter()
            .map(|w| {
                let reason = if w.quiet_deadline(&config) <= now {
                    CloseReason::Quiet
                } else {
                    CloseReason::MaxAge
                };
                w.close(reason)
            })
            .collect()
    }

    /// When the next window becomes due, if any is open.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.open.iter().map(|w| w.deadline(&self.config)).min()
    }

    /// Closes every open window, oldest first (shutdown, end of a replay).
    pub fn flush(&mut self) -> Vec<Closed> {
        self.open
            .drain(..)
            .map(|w| w.close(CloseReason::Flush))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str) -> Author {
        Author {
            name: name.to_string(),
            email: format!("{name}@example.com"),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn change(who: &str, path: &str, seconds: i64) -> Change {
        Change {
            folder: "apps".into(),
            destination: "shop/apps".into(),
            author: person(who),
            user: Some(who.to_string()),
            impersonator: None,
            audit_id: None,
            received: at(seconds),
            file: FileChange {
                path: format!("apps/{path}"),
                content: Some(format!("{who} {seconds}").into_bytes().into()),
                hash: None,
                summary: format!("update v1 ConfigMap shop/{path}"),
                namespace: Some("shop".into()),
                live: None,
                object: None,
                bundle: false,
            },
        }
    }

    fn paths(closed: &Closed) -> Vec<&str> {
        closed.files().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn a_burst_by_one_author_is_one_window_closed_by_the_quiet_period() {
        let mut w = Windows::new(WindowConfig::default());
        for (i, p) in ["a", "b", "a", "c"].iter().enumerate() {
            assert!(w.add(change("alice", p, i as i64)).is_empty());
        }
        assert_eq!(w.next_deadline(), Some(at(3 + 3)));
        assert!(w.due(at(5)).is_empty());
        let closed = w.due(at(6));
        assert_eq!(closed.len(), 1);
        assert_eq!(paths(&closed[0]), ["apps/a", "apps/b", "apps/c"]);
        // The last state of `a` wins.
        assert_eq!(closed[0].changes[0].received, at(2));
        assert_eq!(closed[0].reason, CloseReason::Quiet);
        assert_eq!(closed[0].author_date(), Some(at(3)));
    }

    #[test]
    fn interleaving_authors_keep_separate_windows() {
        let mut w = Windows::new(WindowConfig::default());
        w.add(change("alice", "a", 0));
        w.add(change("bob", "b", 1));
        w.add(change("alice", "c", 2));
        w.add(change("bob", "d", 2));
        let closed = w.flush();
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].author().unwrap().name, "alice");
        assert_eq!(paths(&closed[0]), ["apps/a", "apps/c"]);
        assert_eq!(paths(&closed[1]), ["apps/b", "apps/d"]);
    }

    #[test]
    fn another_author_touching_a_file_in_an_open_window_closes_it_first() {
        let mut w = Windows::new(WindowConfig::default());
        w.add(change("alice", "a", 0));
        w.add(change("alice", "b", 1));
        let closed = w.add(change("bob", "a", 2));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].reason, CloseReason::OtherAuthor);
        assert_eq!(paths(&closed[0]), ["apps/a", "apps/b"]);
        let rest = w.flush();
        assert_eq!(rest[0].author().unwrap().name, "bob");
    }

    #[test]
    fn open_windows_list_author_folder_age_and_files_for_the_status_page() {
        let mut w = Windows::new(WindowConfig::default());
        w.add(change("alice", "a", 0));
        w.add(change("alice", "a", 1));
        w.add(change("bob", "b", 2));
        let open = w.open_windows();
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].author, "alice <alice@example.com>");
        assert_eq!(open[0].files, 1, "a file changed twice counts once");
        assert_eq!(open[0].opened, at(0));
        assert_eq!(open[0].destination, "shop/apps");
        assert_eq!(open[1].author, "bob <bob@example.com>");
        w.flush();
        assert!(w.open_windows().is_empty());
    }

    #[test]
    fn max_age_max_changes_and_zero_quiet() {
        let config = WindowConfig {
            quiet: Duration::from_secs(3),
            max_age: Duration::from_secs(10),
            max_changes: 3,
        };
        let mut w = Windows::new(config);
        // A steady stream, one change every 2 s, never quiet: max age closes it at 10 s.
        let mut closed = Vec::new();
        for s in (0..12).step_by(2) {
            closed.extend(w.add(change("alice", &format!("f{}", s % 3), s)));
        }
        assert_eq!(closed.len(), 2, "{closed:?}");
        assert_eq!(closed[0].reason, CloseReason::MaxChanges);

        let mut w = Windows::new(WindowConfig {
            max_changes: 1000,
            ..config
        });
        let mut closed = Vec::new();
        for s in (0..12).step_by(2) {
            closed.extend(w.add(change("alice", "same", s)));
        }
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].reason, CloseReason::MaxAge);

        let mut w = Windows::new(WindowConfig {
            quiet: Duration::ZERO,
            ..config
        });
        assert_eq!(w.add(change("alice", "a", 0)).len(), 1);
        assert_eq!(w.add(change("alice", "a", 0)).len(), 1);
        assert_eq!(w.open_counts(), (0, 0));
    }
}

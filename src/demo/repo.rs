//! Reading the demo's bare repository with the `git` CLI: the tip, files, commits since a
//! revision, the history printed at the end.

use super::*;

/// Runs `git` in `cwd`; fails when it exits non-zero.
pub(super) fn git(cwd: &Path, args: &[&str]) -> Result<String, DemoError> {
    match git_status(cwd, args)? {
        Ok(text) => Ok(text),
        Err(problem) => Err(DemoError::Git {
            args: args.join(" "),
            problem,
        }),
    }
}

/// Runs `git` in `cwd`: `Ok(stdout)` or `Err(stderr)` by its exit status; an error when it
/// cannot run at all.
pub(super) fn git_status(cwd: &Path, args: &[&str]) -> Result<Result<String, String>, DemoError> {
    let output = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(|e| DemoError::Git {
            args: args.join(" "),
            problem: format!("cannot run git (is it installed?): {e}"),
        })?;
    if output.status.success() {
        Ok(Ok(String::from_utf8_lossy(&output.stdout).into_owned()))
    } else {
        Ok(Err(String::from_utf8_lossy(&output.stderr)
            .trim()
            .to_string()))
    }
}

/// Pat, who reviews the folder in Git, edits one file by hand: a clone, `edit` on the file's
/// text, a commit as Pat, a push to `main`.
pub(super) fn commit_by_hand(
    repo: &Path,
    path: &str,
    message: &str,
    edit: impl FnOnce(&str) -> String,
) -> Result<(), DemoError> {
    let dir = |source| DemoError::Dir {
        path: repo.display().to_string(),
        source,
    };
    let scratch = tempfile::TempDir::new().map_err(dir)?;
    let url = format!("file://{}", repo.display());
    git(scratch.path(), &["clone", "-q", &url, "hand"])?;
    let work = scratch.path().join("hand");
    let file = work.join(path);
    let text = std::fs::read_to_string(&file).map_err(dir)?;
    std::fs::write(&file, edit(&text)).map_err(dir)?;
    git(
        &work,
        &[
            "-c",
            "user.name=Pat",
            "-c",
            "user.email=pat@example.com",
            "commit",
            "-q",
            "-a",
            "-m",
            message,
        ],
    )?;
    git(&work, &["push", "-q", "origin", "HEAD:main"])?;
    Ok(())
}

pub(super) fn git_dir_args<'a>(repo: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--git-dir", repo];
    all.extend_from_slice(args);
    all
}

pub(super) fn repo_str(repo: &Path) -> String {
    repo.display().to_string()
}

/// The commit `main` points at, if the branch exists.
pub(super) fn tip(repo: &Path) -> Result<Option<String>, DemoError> {
    let dir = repo_str(repo);
    Ok(git_status(
        repo,
        &git_dir_args(&dir, &["rev-parse", "--verify", "-q", "refs/heads/main"]),
    )?
    .ok()
    .map(|text| text.trim().to_string()))
}

/// A file of `main`, if it exists.
pub(super) fn file(repo: &Path, path: &str) -> Result<Option<String>, DemoError> {
    let dir = repo_str(repo);
    let spec = format!("refs/heads/main:{path}");
    Ok(git_status(repo, &git_dir_args(&dir, &["show", &spec]))?.ok())
}

/// The commits on `main` after `before` (all of them without it), oldest first.
pub(super) fn commits_since(repo: &Path, before: Option<&str>) -> Result<Vec<Commit>, DemoError> {
    if tip(repo)?.is_none() {
        return Ok(Vec::new());
    }
    let dir = repo_str(repo);
    let range = match before {
        Some(commit) => format!("{commit}..refs/heads/main"),
        None => "refs/heads/main".to_string(),
    };
    // A tab cannot occur in an author name (Git identities have no control characters).
    let text = git(
        repo,
        &git_dir_args(&dir, &["log", "--reverse", "--format=%an%x09%s", &range]),
    )?;
    Ok(text
        .lines()
        .map(|line| {
            let (author, subject) = line.split_once('\t').unwrap_or(("", line));
            Commit {
                author: author.to_string(),
                subject: subject.to_string(),
            }
        })
        .collect())
}

/// `(status, path)` of every object file that differs between `before` and `main` (the
/// ownership marker is left out: the agent refreshes it along with other changes).
pub(super) fn changed_files(
    repo: &Path,
    before: Option<&str>,
) -> Result<Vec<(String, String)>, DemoError> {
    let dir = repo_str(repo);
    let text = match before {
        Some(commit) => git(
            repo,
            &git_dir_args(
                &dir,
                &[
                    "diff",
                    "--name-status",
                    commit,
                    "refs/heads/main",
                    "--",
                    FOLDER,
                ],
            ),
        )?,
        None => folder_files(repo)?
            .into_iter()
            .map(|path| format!("A\t{path}\n"))
            .collect(),
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, path)| !path.ends_with(MARKER_FILE))
        .map(|(status, path)| (status.to_string(), path.to_string()))
        .collect())
}

/// The object files of the demo folder on `main`.
pub(super) fn folder_files(repo: &Path) -> Result<Vec<String>, DemoError> {
    if tip(repo)?.is_none() {
        return Ok(Vec::new());
    }
    let dir = repo_str(repo);
    let text = git(
        repo,
        &git_dir_args(
            &dir,
            &[
                "ls-tree",
                "-r",
                "--name-only",
                "refs/heads/main",
                "--",
                FOLDER,
            ],
        ),
    )?;
    Ok(text
        .lines()
        .filter(|path| path.ends_with(".yaml"))
        .map(str::to_string)
        .collect())
}

/// The history of `main` like `git log --stat`, newest first, a blank line between commits.
pub(super) fn history(repo: &Path) -> Result<String, DemoError> {
    if tip(repo)?.is_none() {
        return Ok(String::new());
    }
    let dir = repo_str(repo);
    let text = git(
        repo,
        &git_dir_args(
            &dir,
            &[
                "log",
                "--stat",
                "--no-color",
                "--date=iso",
                "--format=commit %h%nAuthor: %an <%ae>%nDate:   %ad%n%n    %s",
                "refs/heads/main",
            ],
        ),
    )?;
    let mut out = String::with_capacity(text.len() + 64);
    for (index, line) in text.lines().enumerate() {
        if index > 0 && line.starts_with("commit ") {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

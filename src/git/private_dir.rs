//! Private temporary directories for what the Git transport and signing hand to `git`, `ssh`
//! and `ssh-keygen` (key files, `known_hosts`, askpass scripts): created 0700, removed after
//! each command. Under a root the process chooses (`run` and `replay` use `<state-dir>/tmp`),
//! leftovers of a killed run are removed when the root is set, at the next start.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Uses `root` for every private directory from now on (the first call wins) and removes what
/// a killed process left in it. Returns how many leftovers were removed.
pub fn set_root(root: &Path) -> std::io::Result<usize> {
    let removed = prepare(root)?;
    let _ = ROOT.set(root.to_path_buf());
    Ok(removed)
}

/// Creates `root` (0700) and removes the private directories a killed process left in it.
fn prepare(root: &Path) -> std::io::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    let mut removed = 0;
    for entry in std::fs::read_dir(root)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

const PREFIX: &str = "gitops-reverser-";

/// A new private directory (mode 0700), removed on drop, named `gitops-reverser-<what>-…`.
pub fn create(what: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let mut builder = tempfile::Builder::new();
    let prefix = format!("{PREFIX}{what}-");
    builder
        .prefix(&prefix)
        .permissions(std::fs::Permissions::from_mode(0o700));
    match ROOT.get() {
        Some(root) => builder.tempdir_in(root),
        None => builder.tempdir(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_private_and_leftovers_go_at_the_next_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = create("test").unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("gitops-reverser-git-abc")).unwrap();
        std::fs::write(root.path().join("gitops-reverser-git-abc/identity"), b"k").unwrap();
        std::fs::create_dir(root.path().join("someone-else")).unwrap();
        assert_eq!(prepare(root.path()).unwrap(), 1);
        assert!(!root.path().join("gitops-reverser-git-abc").exists());
        assert!(root.path().join("someone-else").exists());
    }
}

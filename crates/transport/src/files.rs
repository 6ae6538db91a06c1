//! Files that hold secrets: written owner-only, checked for looser modes.

use std::fs;
use std::io::Write as _;
use std::path::Path;

/// Writes `data` to `path` with mode 0600, through a temporary file so a
/// crash never leaves half a key behind.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Group and other permission bits of `path`, if it has any.
#[cfg(unix)]
fn shared_bits(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode)
}

/// Warns when a secret file (a private key) is readable by other users.
pub fn warn_if_readable(path: &Path) {
    #[cfg(unix)]
    if shared_bits(path).is_some() {
        tracing::warn!(path = %path.display(), "private key file is readable by other users; run: chmod 600 {}", path.display());
    }
}

/// Takes group and other permissions off a secret file Burrow made.
pub fn tighten(path: &Path) {
    #[cfg(unix)]
    if let Some(mode) = shared_bits(path) {
        use std::os::unix::fs::PermissionsExt as _;
        if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700)) {
            tracing::warn!(path = %path.display(), error = %e, "secret file is readable by other users and could not be made private");
        }
    }
}

/// Warns when a data directory can be read or entered by other users:
/// its files are private, but their names and new files' contents are
/// not guarded by the directory.
pub fn warn_if_shared_dir(dir: &Path) {
    #[cfg(unix)]
    if let Some(mode) = shared_bits(dir) {
        tracing::warn!(event = crate::event::DATA_DIR_OPEN, path = %dir.display(), mode = %format!("{:o}", mode & 0o777), "the data directory is readable by other users; run: chmod 700 {}", dir.display());
    }
}

/// A directory this process cannot create or write: what, where, this
/// process's uid:gid and the fix, in one message (the OS error is in it,
/// not chained after it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirError(String);

/// Creates `dir` (mode 0700) if it is missing and checks that this
/// process can write in it, so a wrong owner is one clear error at start
/// (naming the path, this process's uid:gid and the fix) rather than a
/// failure on first write. `what` names it in the message.
pub fn ensure_writable_dir(dir: &Path, what: &'static str) -> Result<(), DirError> {
    let probe = || -> std::io::Result<()> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)?;
        let tmp = dir.join(format!(".burrow-write-check-{}", std::process::id()));
        fs::File::create(&tmp)?;
        fs::remove_file(&tmp)
    };
    probe().map_err(|source| {
        let (uid, gid) = process_ids();
        #[cfg(unix)]
        let (owner, owner_ids) = {
            use std::os::unix::fs::MetadataExt as _;
            match fs::metadata(dir) {
                Ok(m) => (
                    format!(" and the directory belongs to {}:{}", m.uid(), m.gid()),
                    format!("{}:{}", m.uid(), m.gid()),
                ),
                Err(_) => (String::new(), format!("{uid}:{gid}")),
            }
        };
        #[cfg(not(unix))]
        let (owner, owner_ids) = (String::new(), format!("{uid}:{gid}"));
        DirError(format!(
            "cannot write the {what} {path} ({source}): this process runs as uid:gid {uid}:{gid}{owner}; make it writable by that user, e.g. `chown -R {uid}:{gid} {path}`, or run as its owner (in a container: `user: \"{owner_ids}\"`)",
            path = dir.display()
        ))
    })
}

/// This process's real uid and gid, from /proc (`?` where there is none).
fn process_ids() -> (String, String) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    };
    (field("Uid:"), field("Gid:"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_the_way_is_a_clear_error_naming_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let blocker = d.path().join("data");
        fs::write(&blocker, b"x").unwrap();
        let e = ensure_writable_dir(&blocker, "data directory")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot write the data directory"), "{e}");
        assert!(e.contains(&blocker.display().to_string()), "{e}");
        assert!(e.contains("chown -R"), "{e}");
        let ok = d.path().join("a/b");
        ensure_writable_dir(&ok, "data directory").unwrap();
        assert!(ok.is_dir());
    }
}

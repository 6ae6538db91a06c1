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

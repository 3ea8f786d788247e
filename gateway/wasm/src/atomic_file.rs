//! Atomic writes of private files: temporary file, fsync, rename, so a crash never leaves a
//! half-written file; owner-only modes on Unix.
//!
//! Here, in the lowest crate that writes files, because two layers need the same thing: the
//! plugin host (its compilation cache and the KMS key file) and the gateway's state store
//! (`sluice::state`, which re-exports these). One copy keeps the permission rules in one place.

use std::io::Write;
use std::path::Path;

/// Creates `dir` and its missing parents, mode 0700 on Unix.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `bytes` to `path` atomically; `private` makes the file readable by the owner only
/// (mode 0600 on Unix, set when the temporary file is created, so the content is never
/// readable by others, not even before the rename). Missing directories are created 0700.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options.open(&tmp)?;
        #[cfg(unix)]
        if private {
            // A temporary file left by a crash keeps its mode when reopened.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

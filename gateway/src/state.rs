//! The gateway's persistent state behind one trait: resource documents (interceptors, ...),
//! plugin blobs by content hash, and a cache of compiled plugins.
//!
//! The embedded backend is a directory (`--state-dir`) written atomically (temporary file,
//! fsync, rename), so a crash never leaves a half-written document.
//!
//! The directory holds secrets (SCRAM credentials, KMS keys, interceptor configs), so on Unix
//! it is private to the gateway's user: directories are created mode 0700 and files 0600, and
//! [`FileStore::open`] tightens what an older version or an operator left more open.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

// Atomic, private file writes are shared with the plugin host (its compilation cache and KMS
// key file live in this state directory).
use sluice_wasm::atomic_file::{create_private_dir, write_atomic};

/// State kept in memory only, gone with the process: for tests, the fuzz driver and
/// embedders that load their resources from elsewhere. The stores validate and keep
/// resources exactly as over a [`FileStore`].
#[derive(Default)]
pub struct MemoryStore {
    docs: std::sync::Mutex<std::collections::BTreeMap<(String, String), Value>>,
    blobs: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

impl StateStore for MemoryStore {
    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let mut blobs = self.blobs.lock().expect("blob lock");
        blobs.insert(sha256.to_string(), bytes.to_vec());
        Ok(())
    }
    fn get_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.blobs.lock().expect("blob lock").get(sha256).cloned())
    }
    fn delete_blob(&self, sha256: &str) -> Result<()> {
        self.blobs.lock().expect("blob lock").remove(sha256);
        Ok(())
    }
    fn put_doc(&self, kind: &str, name: &str, doc: &Value) -> Result<()> {
        let mut docs = self.docs.lock().expect("document lock");
        docs.insert((kind.into(), name.into()), doc.clone());
        Ok(())
    }
    fn delete_doc(&self, kind: &str, name: &str) -> Result<()> {
        let mut docs = self.docs.lock().expect("document lock");
        docs.remove(&(kind.into(), name.into()));
        Ok(())
    }
    fn list_docs(&self, kind: &str) -> Result<Vec<(String, Value)>> {
        let docs = self.docs.lock().expect("document lock");
        Ok(docs
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, n), v)| (n.clone(), v.clone()))
            .collect())
    }
    fn cache_dir(&self) -> Option<PathBuf> {
        None
    }
    fn root(&self) -> Option<PathBuf> {
        None
    }
}

/// Where the gateway keeps its state.
pub trait StateStore: Send + Sync {
    /// Stores a blob under its SHA-256.
    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<()>;
    /// The blob with this SHA-256, if stored.
    fn get_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
    /// Removes a blob.
    fn delete_blob(&self, sha256: &str) -> Result<()>;
    /// Stores document `name` of `kind`.
    fn put_doc(&self, kind: &str, name: &str, doc: &Value) -> Result<()>;
    /// Removes document `name` of `kind` (absent is fine).
    fn delete_doc(&self, kind: &str, name: &str) -> Result<()>;
    /// Every document of `kind`, sorted by name.
    fn list_docs(&self, kind: &str) -> Result<Vec<(String, Value)>>;
    /// A directory for caches local to this instance (compiled plugins), if any.
    fn cache_dir(&self) -> Option<PathBuf>;
    /// Root directory, if file-backed (secrets such as KMS keys live there).
    fn root(&self) -> Option<PathBuf>;
}

/// A fresh directory for one test's state: unique per process and per call, so tests
/// running in parallel never share one.
#[cfg(test)]
pub(crate) fn test_dir(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "sluice-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Checks a resource name: 1-63 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        bail!("invalid name `{name}`: use 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit");
    }
    Ok(())
}

/// Makes `dir` and everything under it private to the owner on Unix (directories 0700, files
/// 0600), without following symbolic links; returns how many entries were tightened.
pub fn tighten_permissions(dir: &Path) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(dir)?;
        let mut changed = 0;
        let want = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            0o600
        } else {
            return Ok(0); // a symbolic link or a special file: left alone
        };
        if meta.permissions().mode() & 0o777 != want {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(want))?;
            changed += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(dir)? {
                changed += tighten_permissions(&entry?.path())?;
            }
        }
        Ok(changed)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(0)
    }
}

/// State in a directory: `<kind>/<name>.json`, `blobs/<sha256>.wasm`, `cache/`.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating, mode 0700) a state directory and makes what it holds private to the
    /// owner (directories 0700, files 0600).
    pub fn open(dir: &Path) -> Result<FileStore> {
        create_private_dir(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        let tightened = tighten_permissions(dir).with_context(|| {
            format!(
                "making the state directory {} private to its owner",
                dir.display()
            )
        })?;
        if tightened > 0 {
            tracing::warn!(
                dir = %dir.display(),
                entries = tightened,
                "state directory entries were readable by other users; made private (0700/0600)"
            );
        }
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    fn doc_path(&self, kind: &str, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(kind).join(format!("{name}.json")))
    }

    fn blob_path(&self, sha256: &str) -> Result<PathBuf> {
        if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("bad blob id {sha256}");
        }
        Ok(self.dir.join("blobs").join(format!("{sha256}.wasm")))
    }
}

impl StateStore for FileStore {
    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let path = self.blob_path(sha256)?;
        if !path.exists() {
            write_atomic(&path, bytes, true)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn get_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(sha256)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn delete_blob(&self, sha256: &str) -> Result<()> {
        let path = self.blob_path(sha256)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    fn put_doc(&self, kind: &str, name: &str, doc: &Value) -> Result<()> {
        let path = self.doc_path(kind, name)?;
        let text = serde_json::to_vec_pretty(doc)?;
        write_atomic(&path, &text, true).with_context(|| format!("writing {}", path.display()))
    }

    fn delete_doc(&self, kind: &str, name: &str) -> Result<()> {
        let path = self.doc_path(kind, name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    fn list_docs(&self, kind: &str) -> Result<Vec<(String, Value)>> {
        let dir = self.dir.join(kind);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut docs = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if name.starts_with('.') {
                continue; // a temporary file left by a crash
            }
            let text =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let doc = serde_json::from_slice(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            docs.push((name.to_string(), doc));
        }
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(docs)
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        Some(self.dir.join("cache"))
    }

    fn root(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_and_blobs() {
        let dir = std::env::temp_dir().join(format!("sluice-state-{}", std::process::id()));
        let store = FileStore::open(&dir).unwrap();
        store
            .put_doc("interceptors", "b", &json!({"x": 2}))
            .unwrap();
        store
            .put_doc("interceptors", "a", &json!({"x": 1}))
            .unwrap();
        let docs = store.list_docs("interceptors").unwrap();
        assert_eq!(
            docs,
            vec![("a".into(), json!({"x": 1})), ("b".into(), json!({"x": 2}))]
        );
        store.delete_doc("interceptors", "a").unwrap();
        store.delete_doc("interceptors", "a").unwrap();
        assert_eq!(store.list_docs("interceptors").unwrap().len(), 1);
        assert!(store
            .put_doc("interceptors", "../evil", &json!({}))
            .is_err());
        let sha = "ab".repeat(32);
        assert_eq!(store.get_blob(&sha).unwrap(), None);
        store.put_blob(&sha, b"wasm").unwrap();
        assert_eq!(store.get_blob(&sha).unwrap().unwrap(), b"wasm");
        assert!(store.get_blob("../../etc/passwd").is_err());
        assert!(store.list_docs("nothing").unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn state_is_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = test_dir("state-modes");
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        store
            .put_doc("service-accounts", "alice", &json!({"storedKey": "x"}))
            .unwrap();
        store.put_blob(&"cd".repeat(32), b"wasm").unwrap();
        assert_eq!(mode(&dir.join("service-accounts")), 0o700);
        assert_eq!(
            mode(&dir.join("service-accounts").join("alice.json")),
            0o600
        );
        assert_eq!(mode(&dir.join("blobs")), 0o700);
        assert_eq!(
            mode(&dir.join("blobs").join(format!("{}.wasm", "cd".repeat(32)))),
            0o600
        );
        // Replacing a document (temporary file and rename) keeps it private, even when a
        // temporary file left by a crash was readable by others.
        let stale = dir
            .join("service-accounts")
            .join(format!(".alice.json.tmp-{}", std::process::id()));
        std::fs::write(&stale, b"{}").unwrap();
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
        store
            .put_doc("service-accounts", "alice", &json!({"storedKey": "y"}))
            .unwrap();
        assert_eq!(
            mode(&dir.join("service-accounts").join("alice.json")),
            0o600
        );
        // What an older version left open is tightened when the directory is opened.
        let open_file = dir.join("service-accounts").join("bob.json");
        std::fs::write(&open_file, b"{}").unwrap();
        std::fs::set_permissions(&open_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        for d in [&dir, &dir.join("service-accounts")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        FileStore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("service-accounts")), 0o700);
        assert_eq!(mode(&open_file), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names() {
        for ok in ["a", "mask-pii", "v1.2_x"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-a", "A", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}

//! The checkpoint store every plugin gets: small values a plugin must find again after a reload
//! or a restart (an offset, a counter, a cursor).
//!
//! iLogtail keeps them in a LevelDB under `<LoongcollectorSysConfDir>/checkpoint`, keyed
//! `configName^key`. Tailrace keeps one file per key under
//! `<data dir>/plugin_base/checkpoint/<config>/<plugin>/<key>`: a plugin writes a few values at
//! stop, not a stream, so a file each is simple, and every write is atomic (temp file, fsync,
//! rename; files 0600, directories 0700), so a crash leaves the old value or the new one, never
//! half of one. Names are escaped (`%XX` for anything but `[A-Za-z0-9_.-]`), so a key cannot
//! leave its plugin's directory.
//!
//! The namespace is the pipeline's real name (suffix `/1` or `/2` stripped, as iLogtail's
//! checkpoints use it) and the plugin's id in its pipeline, so that a reloaded pipeline's new
//! instance of the same plugin finds what the old one saved.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where checkpoints live under the data dir.
const CHECKPOINT_DIR: &str = "plugin_base/checkpoint";

/// The whole store: a directory.
#[derive(Debug)]
pub struct CheckpointStore {
    root: PathBuf,
}

impl CheckpointStore {
    /// The store under `data_dir`; nothing is created until a value is saved.
    pub fn under(data_dir: &Path) -> CheckpointStore {
        CheckpointStore {
            root: data_dir.join(CHECKPOINT_DIR),
        }
    }

    fn path(&self, config: &str, plugin: &str, key: &str) -> PathBuf {
        self.root
            .join(escape(config))
            .join(escape(plugin))
            .join(escape(key))
    }

    /// Saves `value` under config/plugin/key, atomically. The error names the file.
    pub fn save(&self, config: &str, plugin: &str, key: &str, value: &[u8]) -> Result<(), String> {
        let path = self.path(config, plugin, key);
        write_atomically(&path, value).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The value saved under config/plugin/key; None when nothing was saved.
    pub fn get(&self, config: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let path = self.path(config, plugin, key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Forgets config/plugin/key (nothing to do when it was not saved).
    pub fn delete(&self, config: &str, plugin: &str, key: &str) -> Result<(), String> {
        let path = self.path(config, plugin, key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", path.display()))
            }
            _ => Ok(()),
        }
    }
}

/// One plugin's view of the store: its keys only.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    store: Arc<CheckpointStore>,
    config: String,
    plugin: String,
}

impl Checkpoints {
    pub fn new(store: Arc<CheckpointStore>, config: &str, plugin: &str) -> Checkpoints {
        Checkpoints {
            store,
            config: config.to_owned(),
            plugin: plugin.to_owned(),
        }
    }

    pub fn save_checkpoint(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.store.save(&self.config, &self.plugin, key, value)
    }

    pub fn get_checkpoint(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store.get(&self.config, &self.plugin, key)
    }

    pub fn delete_checkpoint(&self, key: &str) -> Result<(), String> {
        self.store.delete(&self.config, &self.plugin, key)
    }

    /// Saves `value` as JSON.
    pub fn save_typed<T: Serialize>(&self, key: &str, value: &T) -> Result<(), String> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| format!("checkpoint {key:?}: cannot serialize: {e}"))?;
        self.save_checkpoint(key, &bytes)
    }

    /// The JSON value saved under `key`; an error (naming the key) when it does not parse as `T`.
    pub fn get_typed<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get_checkpoint(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("checkpoint {key:?} of {}: {e}", self.plugin)),
        }
    }
}

/// `[A-Za-z0-9_.-]` as is, every other byte as `%XX`; "." and ".." are escaped too, so a name
/// is always one plain path component.
fn escape(name: &str) -> String {
    if name.is_empty() || name == "." || name == ".." {
        return name.bytes().fold("%".to_owned(), |mut s, b| {
            s.push_str(&format!("{b:02X}"));
            s
        });
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Temp file (0600) in the same directory, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().expect("a checkpoint path has a parent");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(value)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn values_are_namespaced_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::under(dir.path()));
        let a = Checkpoints::new(store.clone(), "cfg", "metric_mock/1");
        let b = Checkpoints::new(store.clone(), "cfg", "metric_mock/2");
        a.save_checkpoint("k", b"one").unwrap();
        assert_eq!(a.get_checkpoint("k").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(b.get_checkpoint("k").unwrap(), None);
        a.save_checkpoint("k", b"two").unwrap();
        assert_eq!(a.get_checkpoint("k").unwrap().as_deref(), Some(&b"two"[..]));
        let file = dir
            .path()
            .join("plugin_base/checkpoint/cfg/metric_mock%2F1/k");
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let parent_mode = fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(parent_mode, 0o700);
        assert!(!file.with_file_name("k.tmp").exists());
        a.delete_checkpoint("k").unwrap();
        assert_eq!(a.get_checkpoint("k").unwrap(), None);
        a.delete_checkpoint("k").unwrap();
    }

    #[test]
    fn a_key_cannot_leave_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::under(dir.path()));
        let c = Checkpoints::new(store, "..", "../x");
        c.save_checkpoint("../../../escape", b"v").unwrap();
        assert!(!dir.path().join("escape").exists());
        assert_eq!(
            c.get_checkpoint("../../../escape").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn typed_values_round_trip_and_bad_ones_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::under(dir.path()));
        let c = Checkpoints::new(store, "cfg", "p");
        c.save_typed("index", &42i64).unwrap();
        assert_eq!(c.get_typed::<i64>("index").unwrap(), Some(42));
        c.save_checkpoint("index", b"not json").unwrap();
        let err = c.get_typed::<i64>("index").unwrap_err();
        assert!(err.contains("\"index\""), "{err}");
    }
}

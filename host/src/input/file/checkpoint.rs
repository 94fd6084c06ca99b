//! File checkpoints: for each pipeline and file, how far its data has been *delivered*. They
//! are advanced only when a flusher acknowledged the data (or the plugin base accepted it), and
//! written atomically (temp file, fsync, rename), so a crash at any moment resumes at a point
//! whose data was delivered: at least once, duplicates only for batches in flight.
//!
//! The files are 0600 and their directory 0700 whatever the umask: paths and offsets of the logs
//! a host collects are nobody else's business. Each write uses a temp file of its own name, and
//! one daemon per data dir is enforced by main's lock, so two writers never share a temp file.
//! Whether the last save failed is kept in a [`SaveHealth`] that main also holds: `--once` must
//! exit non-zero when its checkpoints could not be saved.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::input::file::identity::{DevInode, Signature};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub pipeline: String,
    pub path: PathBuf,
    pub id: DevInode,
    pub signature: Signature,
    /// Everything before this offset was delivered.
    pub offset: u64,
}

type Key = (String, DevInode);

/// Mode of checkpoint files.
const FILE_MODE: u32 = 0o600;
/// Mode of the checkpoint directory.
const DIR_MODE: u32 = 0o700;

/// Numbers temp files within the process (with the PID, a unique name per write).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The outcome of the last save, shared between the store (on the file-server thread) and
/// whoever must report it (main, after the server stopped).
#[derive(Clone, Debug, Default)]
pub struct SaveHealth(Arc<Mutex<Option<String>>>);

impl SaveHealth {
    /// Why the last save failed; `None` when it succeeded (or there was nothing to save yet).
    pub fn last_error(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, error: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// Every file checkpoint, kept in one JSON file under the data dir.
pub struct CheckpointStore {
    file: PathBuf,
    entries: BTreeMap<Key, FileCheckpoint>,
    dirty: bool,
    health: SaveHealth,
}

/// The directory of the checkpoints under `data_dir`.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints")
}

/// Creates (or tightens) the checkpoint directory as 0700 and checks that a file can be
/// written there, so that a data dir where checkpoints cannot be kept is an error at start
/// rather than a surprise at the first save.
pub fn prepare_dir(data_dir: &Path) -> std::io::Result<()> {
    let dir = dir_of(data_dir);
    create_private_dir(&dir)?;
    let probe = temp_name(&dir.join("files.json"));
    let written = create_private_file(&probe).and_then(|mut f| f.write_all(b"{}"));
    let _ = fs::remove_file(&probe);
    written
}

/// `dir` (and missing parents) created 0700; an existing `dir` is set to 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o7777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// A new file, 0600 whatever the umask (the mode given to open is masked by it; an explicit
/// chmod is not).
fn create_private_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// `files.json.tmp.<pid>.<n>`: never the name of another write in flight.
fn temp_name(file: &Path) -> PathBuf {
    let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    file.with_file_name(name)
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<FileCheckpoint>,
}

impl CheckpointStore {
    /// Loads `<data_dir>/checkpoints/files.json`. An unreadable or corrupt file is set aside (so
    /// that it can be inspected) and collection starts without checkpoints, with an error log.
    pub fn load(data_dir: &Path) -> CheckpointStore {
        let file = dir_of(data_dir).join("files.json");
        let mut store = CheckpointStore {
            file,
            entries: BTreeMap::new(),
            dirty: false,
            health: SaveHealth::default(),
        };
        store.remove_stale_temps();
        match fs::read(&store.file) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(on_disk) => {
                    for cp in on_disk.files {
                        store.entries.insert((cp.pipeline.clone(), cp.id), cp);
                    }
                }
                Err(e) => {
                    let aside = store.file.with_extension("json.corrupt");
                    tracing::error!(
                        "{}: not a checkpoint file ({e}); moved to {} and starting without checkpoints",
                        store.file.display(),
                        aside.display()
                    );
                    let _ = fs::rename(&store.file, aside);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!("{}: cannot read checkpoints: {e}", store.file.display()),
        }
        store
    }

    /// Reports every later save's outcome to `health`.
    pub fn with_health(mut self, health: SaveHealth) -> CheckpointStore {
        self.health = health;
        self
    }

    /// Temp files left by a daemon that died mid-write. Only one daemon uses a data dir (main
    /// holds its lock), so any temp file there is a leftover.
    fn remove_stale_temps(&self) {
        let (Some(dir), Some(name)) = (self.file.parent(), self.file.file_name()) else {
            return;
        };
        let mut prefix = name.to_os_string();
        prefix.push(".tmp.");
        let prefix = prefix.to_string_lossy().into_owned();
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    pub fn get(&self, pipeline: &str, id: DevInode) -> Option<&FileCheckpoint> {
        self.entries.get(&(pipeline.to_owned(), id))
    }

    /// The checkpoints of a pipeline.
    pub fn of_pipeline<'a>(
        &'a self,
        pipeline: &'a str,
    ) -> impl Iterator<Item = &'a FileCheckpoint> + 'a {
        self.entries
            .values()
            .filter(move |cp| cp.pipeline == pipeline)
    }

    pub fn put(&mut self, cp: FileCheckpoint) {
        let key = (cp.pipeline.clone(), cp.id);
        if self.entries.get(&key) != Some(&cp) {
            self.entries.insert(key, cp);
            self.dirty = true;
        }
    }

    pub fn remove(&mut self, pipeline: &str, id: DevInode) {
        if self.entries.remove(&(pipeline.to_owned(), id)).is_some() {
            self.dirty = true;
        }
    }

    /// Writes the checkpoints if they changed: temp file, fsync, rename, fsync of the dir. The
    /// outcome goes to the [`SaveHealth`]; after a failure the checkpoints stay dirty, so the next
    /// save tries again.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let result = self.write();
        match &result {
            Ok(()) => {
                self.dirty = false;
                self.health.set(None);
            }
            Err(e) => self
                .health
                .set(Some(format!("{}: {e}", self.file.display()))),
        }
        result
    }

    fn write(&self) -> std::io::Result<()> {
        let dir = self.file.parent().expect("the checkpoint file has a dir");
        create_private_dir(dir)?;
        let tmp = temp_name(&self.file);
        let on_disk = OnDisk {
            version: 1,
            files: self.entries.values().cloned().collect(),
        };
        let written = (|| {
            let mut file = create_private_file(&tmp)?;
            file.write_all(&serde_json::to_vec(&on_disk).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.file)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        File::open(dir)?.sync_all()
    }
}

/// The data dir's lock: `<data-dir>/tailrace.lock`, flock'ed (exclusive, non-blocking) for the
/// life of the process, with the holder's PID in it. Two daemons on one data dir would overwrite
/// each other's checkpoints; with the lock the second one stops at start and names the first.
/// flock rather than a PID file alone: the kernel drops the lock when the holder dies, however
/// it dies, so a stale file never blocks a restart.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

/// Creates the data dir if needed (0700) and takes its lock.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, String> {
    let shown = data_dir.display();
    if fs::metadata(data_dir).is_ok_and(|m| !m.is_dir()) {
        return Err(format!("--data-dir {shown}: not a directory"));
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(data_dir)
        .map_err(|e| format!("--data-dir {shown}: cannot create it: {e}"))?;
    let path = data_dir.join("tailrace.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| format!("--data-dir {shown}: cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "its PID not written yet".to_owned(),
                pid => format!("pid {pid}"),
            };
            return Err(format!(
                "--data-dir {shown} is in use by another tailrace ({holder}, holding {}); \
                 two daemons on one data dir would overwrite each other's checkpoints",
                path.display()
            ));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(format!(
                "--data-dir {shown}: cannot lock {}: {e}",
                path.display()
            ));
        }
    }
    let written = file
        .set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .and_then(|()| file.set_len(0))
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
    written.map_err(|e| format!("--data-dir {shown}: cannot write {}: {e}", path.display()))?;
    Ok(DataDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(offset: u64) -> FileCheckpoint {
        FileCheckpoint {
            pipeline: "p".into(),
            path: "/var/log/a.log".into(),
            id: DevInode { dev: 1, inode: 2 },
            signature: Signature { len: 10, hash: 99 },
            offset,
        }
    }

    #[test]
    fn saved_checkpoints_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::load(dir.path());
        store.put(cp(42));
        store.save().unwrap();
        let store = CheckpointStore::load(dir.path());
        assert_eq!(store.get("p", DevInode { dev: 1, inode: 2 }), Some(&cp(42)));
        assert_eq!(store.of_pipeline("p").count(), 1);
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn files_are_private_whatever_the_dir_was() {
        let dir = tempfile::tempdir().unwrap();
        let cp_dir = dir.path().join("checkpoints");
        fs::create_dir(&cp_dir).unwrap();
        fs::set_permissions(&cp_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let mut store = CheckpointStore::load(dir.path());
        store.put(cp(1));
        store.save().unwrap();
        assert_eq!(mode(&cp_dir), 0o700);
        assert_eq!(mode(&cp_dir.join("files.json")), 0o600);
        // Nothing but the checkpoint file is left behind.
        let names: Vec<_> = fs::read_dir(&cp_dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn temp_names_are_unique() {
        let file = Path::new("/d/files.json");
        let (a, b) = (temp_name(file), temp_name(file));
        assert_ne!(a, b);
        assert!(
            a.to_string_lossy().starts_with("/d/files.json.tmp."),
            "{a:?}"
        );
    }

    #[test]
    fn stale_temp_files_are_removed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let cp_dir = dir.path().join("checkpoints");
        fs::create_dir(&cp_dir).unwrap();
        fs::write(cp_dir.join("files.json.tmp.123.0"), b"half").unwrap();
        fs::write(cp_dir.join("other"), b"kept").unwrap();
        CheckpointStore::load(dir.path());
        assert!(!cp_dir.join("files.json.tmp.123.0").exists());
        assert!(cp_dir.join("other").exists());
    }

    /// A failed save is recorded, stays dirty, and a later good save clears the record. The
    /// failure is made with a directory where the checkpoint file should be: rename cannot
    /// replace it, for root too (unlike a chmod).
    #[test]
    fn a_failed_save_is_reported_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let cp_file = dir.path().join("checkpoints/files.json");
        fs::create_dir_all(cp_file.join("in-the-way")).unwrap();
        let health = SaveHealth::default();
        let mut store = CheckpointStore::load(dir.path()).with_health(health.clone());
        store.put(cp(5));
        assert!(store.save().is_err());
        let error = health.last_error().expect("the failure is recorded");
        assert!(error.contains("files.json"), "{error}");
        assert_eq!(
            fs::read_dir(dir.path().join("checkpoints"))
                .unwrap()
                .count(),
            1
        );
        fs::remove_dir_all(&cp_file).unwrap();
        store.save().unwrap();
        assert_eq!(health.last_error(), None);
        let store = CheckpointStore::load(dir.path());
        assert_eq!(store.get("p", DevInode { dev: 1, inode: 2 }), Some(&cp(5)));
    }

    #[test]
    fn prepare_dir_fails_where_checkpoints_cannot_be() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("checkpoints"), b"a file in the way").unwrap();
        assert!(prepare_dir(dir.path()).is_err());
        let ok = tempfile::tempdir().unwrap();
        prepare_dir(ok.path()).unwrap();
        assert_eq!(mode(&ok.path().join("checkpoints")), 0o700);
        assert_eq!(
            fs::read_dir(ok.path().join("checkpoints")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_locked_data_dir_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new/data");
        let lock = lock_data_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&lock.path), 0o600);
        let pid = std::process::id().to_string();
        assert_eq!(fs::read_to_string(&lock.path).unwrap().trim(), pid);
        // A second lock (another open file description, as another process would have) fails.
        let e = lock_data_dir(&data).unwrap_err();
        assert!(
            e.contains("in use") && e.contains(&format!("pid {pid}")),
            "{e}"
        );
        drop(lock);
        let again = lock_data_dir(&data).unwrap();
        assert_eq!(fs::read_to_string(&again.path).unwrap().trim(), pid);
        let file = dir.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let e = lock_data_dir(&file).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        fs::write(dir.path().join("checkpoints/files.json"), b"{garbage").unwrap();
        let store = CheckpointStore::load(dir.path());
        assert_eq!(store.of_pipeline("p").count(), 0);
        assert!(dir.path().join("checkpoints/files.json.corrupt").exists());
    }
}

//! File checkpoints: for each pipeline and file, how far its data has been *delivered*. They
//! are advanced only when a flusher acknowledged the data (or the plugin base accepted it), and
//! written atomically (temp file, fsync, rename), so a crash at any moment resumes at a point
//! whose data was delivered: at least once, duplicates only for batches in flight.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Every file checkpoint, kept in one JSON file under the data dir.
pub struct CheckpointStore {
    file: PathBuf,
    entries: BTreeMap<Key, FileCheckpoint>,
    dirty: bool,
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
        let file = data_dir.join("checkpoints").join("files.json");
        let mut store = CheckpointStore {
            file,
            entries: BTreeMap::new(),
            dirty: false,
        };
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

    /// Writes the checkpoints if they changed: temp file, fsync, rename, fsync of the dir.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let dir = self.file.parent().expect("the checkpoint file has a dir");
        fs::create_dir_all(dir)?;
        let tmp = self.file.with_extension("json.tmp");
        let on_disk = OnDisk {
            version: 1,
            files: self.entries.values().cloned().collect(),
        };
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&on_disk).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&tmp, &self.file)?;
        File::open(dir)?.sync_all()?;
        self.dirty = false;
        Ok(())
    }
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

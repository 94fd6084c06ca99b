//! Undelivered batches persisted at exit (`HoldOn(1)`), replayed by the next instance of the
//! same pipeline after a restart. One file per pipeline, written atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use tailrace::LogGroup;

use crate::runtime::pipeline::Carried;

#[derive(Clone, PartialEq, Message)]
struct UndeliveredBatch {
    #[prost(string, tag = "1")]
    flusher_type: String,
    #[prost(message, optional, tag = "2")]
    group: Option<LogGroup>,
}

#[derive(Clone, PartialEq, Message)]
struct UndeliveredFile {
    #[prost(message, repeated, tag = "1")]
    batches: Vec<UndeliveredBatch>,
}

/// Where a pipeline's undelivered batches are kept: the config name, with every byte other than
/// `[A-Za-z0-9_.-]` written as `%XX`.
fn file_for(dir: &Path, config_name: &str) -> PathBuf {
    let mut name = String::with_capacity(config_name.len() + 3);
    for b in config_name.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".pb");
    dir.join(name)
}

/// Writes (temp file, fsync, rename) what `carried` holds; removes the file when it is empty.
pub fn save(dir: &Path, config_name: &str, carried: &[Carried]) -> std::io::Result<()> {
    let path = file_for(dir, config_name);
    let batches: Vec<UndeliveredBatch> = carried
        .iter()
        .flat_map(|c| {
            c.groups.iter().map(|g| UndeliveredBatch {
                flusher_type: c.flusher_type.clone(),
                group: Some(LogGroup::from_event_group(g)),
            })
        })
        .collect();
    if batches.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("pb.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&UndeliveredFile { batches }.encode_to_vec())?;
    file.sync_all()?;
    fs::rename(&tmp, &path)
}

/// Takes (reads and removes) what was saved for `config_name`.
pub fn take(dir: &Path, config_name: &str) -> Result<Vec<Carried>, String> {
    let path = file_for(dir, config_name);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let file = UndeliveredFile::decode(bytes.as_slice())
        .map_err(|e| format!("{}: not a file of undelivered batches: {e}", path.display()))?;
    let _ = fs::remove_file(&path);
    let mut carried: Vec<Carried> = Vec::new();
    for batch in file.batches {
        let Some(group) = batch.group else { continue };
        let group = group.into_event_group();
        match carried.last_mut() {
            Some(last) if last.flusher_type == batch.flusher_type => last.groups.push(group),
            _ => carried.push(Carried {
                flusher_type: batch.flusher_type,
                groups: vec![group],
            }),
        }
    }
    Ok(carried)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

    #[test]
    fn save_then_take_round_trips_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut group = PipelineEventGroup::default();
        let mut log = LogEvent::new(9, None);
        log.set_content("k", "v");
        group.events.push(PipelineEvent::Log(log));
        let carried = vec![Carried {
            flusher_type: "flusher_sls#1".into(),
            groups: vec![group.clone(), group],
        }];
        save(dir.path(), "a/b c/1", &carried).unwrap();
        assert!(dir.path().join("a%2Fb%20c%2F1.pb").exists());
        let back = take(dir.path(), "a/b c/1").unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].flusher_type, "flusher_sls#1");
        assert_eq!(back[0].groups.len(), 2);
        assert!(take(dir.path(), "a/b c/1").unwrap().is_empty());
    }
}

//! Telling files apart. A file is its device and inode plus a signature: a hash of its first
//! bytes (up to 1 KiB). The inode alone is not enough: a deleted file's inode is reused by the
//! next file created, and copytruncate keeps the inode while the content starts over. The
//! signature tells those cases apart from "the same file, grown".

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// How many leading bytes the signature covers at most.
pub const SIGNATURE_MAX: u64 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DevInode {
    pub dev: u64,
    pub inode: u64,
}

impl DevInode {
    pub fn of(meta: &std::fs::Metadata) -> DevInode {
        DevInode {
            dev: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// A hash of a file's first `len` bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub len: u64,
    pub hash: u64,
}

impl Signature {
    /// The signature of `file` as it is now (its first `min(size, SIGNATURE_MAX)` bytes).
    pub fn read(file: &File) -> std::io::Result<Signature> {
        let size = file.metadata()?.len();
        Signature::read_len(file, size.min(SIGNATURE_MAX))
    }

    fn read_len(file: &File, len: u64) -> std::io::Result<Signature> {
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = file.read_at(&mut buf[done..], done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(Signature {
            len: done as u64,
            hash: fnv1a(&buf),
        })
    }

    /// Whether `file` still starts with the bytes this signature was taken over.
    pub fn matches(&self, file: &File) -> std::io::Result<bool> {
        Ok(Signature::read_len(file, self.len)? == *self)
    }
}

/// FNV-1a, 64 bit: stable across runs and versions, unlike std's hasher, since signatures are
/// stored in checkpoints.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn signature_tells_growth_from_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"first line\n").unwrap();
        let sig = Signature::read(&File::open(&path).unwrap()).unwrap();
        assert_eq!(sig.len, 11);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more\n")
            .unwrap();
        assert!(sig.matches(&File::open(&path).unwrap()).unwrap());
        std::fs::write(&path, b"other line\nmore\n").unwrap();
        assert!(!sig.matches(&File::open(&path).unwrap()).unwrap());
    }
}

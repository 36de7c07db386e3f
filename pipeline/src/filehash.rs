//! Content hashes of external files, with a memo so unchanged files are not re-read.
//!
//! The memo maps (absolute path, size, mtime in ns, inode) to a blake3 hash and
//! lives in `.pipe/filehash.json`. A file whose stat changes while it is being
//! hashed (someone is writing it) is read again. Large files are hashed with
//! blake3's memory-mapped, multithreaded mode.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::key::KeyHasher;

/// Files at least this big are hashed with mmap + rayon.
const PARALLEL_THRESHOLD: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemoEntry {
    stamp: Stamp,
    blake3: String,
}

/// The (path, size, mtime, inode) -> hash memo.
pub struct FileMemo {
    file: Option<PathBuf>,
    entries: Mutex<HashMap<String, MemoEntry>>,
    dirty: AtomicBool,
    /// Bytes actually read (for benchmarks and tests).
    pub bytes_hashed: std::sync::atomic::AtomicU64,
}

impl FileMemo {
    /// A memo stored in `file` (loaded now, written by [`FileMemo::save`]).
    pub fn load(file: PathBuf) -> Self {
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            file: Some(file),
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(false),
            bytes_hashed: Default::default(),
        }
    }

    /// A memo kept in memory only.
    pub fn in_memory() -> Self {
        Self {
            file: None,
            entries: Mutex::default(),
            dirty: AtomicBool::new(false),
            bytes_hashed: Default::default(),
        }
    }

    /// Write the memo back (atomically) if anything was added.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let entries = self.entries.lock().expect("memo lock");
        let bytes = serde_json::to_vec(&*entries).map_err(std::io::Error::other)?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension(format!("tmp{}-{}", std::process::id(), unique()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, file)
    }

    /// Hash a file, or a folder (every file under it, by relative path, sorted).
    /// Returns (blake3 hex, total size).
    pub fn hash_path(&self, path: &Path) -> std::io::Result<(String, u64)> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk_files(path, path, &mut files)?;
            let mut h = KeyHasher::new();
            h.str("dir");
            h.u64(files.len() as u64);
            let mut total = 0;
            for rel in files {
                let (hash, size) = self.hash_file(&path.join(&rel))?;
                h.str(&rel);
                h.str(&hash);
                total += size;
            }
            Ok((h.finish(), total))
        } else {
            self.hash_file(path)
        }
    }

    fn hash_file(&self, path: &Path) -> std::io::Result<(String, u64)> {
        self.hash_file_with(path, hash_file_contents)
    }

    /// [`FileMemo::hash_file`] with the content hasher given (tests use one
    /// that edits the file mid-read).
    fn hash_file_with(
        &self,
        path: &Path,
        mut contents: impl FnMut(&Path, u64) -> std::io::Result<String>,
    ) -> std::io::Result<(String, u64)> {
        let abs = std::path::absolute(path)?;
        let key = abs.to_string_lossy().into_owned();
        for _attempt in 0..5 {
            let before = stamp(&abs)?;
            if let Some(e) = self.entries.lock().expect("memo lock").get(&key)
                && e.stamp == before
            {
                return Ok((e.blake3.clone(), before.size));
            }
            let hash = contents(&abs, before.size)?;
            self.bytes_hashed.fetch_add(before.size, Ordering::Relaxed);
            let after = stamp(&abs)?;
            if after != before {
                // Written to while we read it: the hash may mix old and new bytes.
                continue;
            }
            self.entries.lock().expect("memo lock").insert(
                key,
                MemoEntry {
                    stamp: before,
                    blake3: hash.clone(),
                },
            );
            self.dirty.store(true, Ordering::Relaxed);
            return Ok((hash, before.size));
        }
        Err(std::io::Error::other(format!(
            "{} kept changing while it was hashed",
            abs.display()
        )))
    }
}

/// blake3 of a file's bytes; big files memory-mapped and hashed on all cores.
pub fn hash_file_contents(path: &Path, size: u64) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    if size >= PARALLEL_THRESHOLD {
        hasher.update_mmap_rayon(path)?;
    } else {
        let mut f = std::fs::File::open(path)?;
        let mut buf = Vec::with_capacity(size as usize);
        f.read_to_end(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    let mtime_ns = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        size: m.len(),
        mtime_ns,
        inode,
    })
}

/// Every file under `dir`, as `/`-separated paths relative to `root`, sorted.
pub fn walk_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() || (ft.is_symlink() && path.is_dir()) {
            walk_files(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
    }
    if dir == root {
        out.sort();
    }
    Ok(())
}

/// A name unique within this process.
pub(crate) fn unique() -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{t:08x}{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_skips_unchanged_files_and_notices_edits() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.txt");
        std::fs::write(&f, "hello").unwrap();
        let memo = FileMemo::load(d.path().join("memo.json"));
        let (h1, size) = memo.hash_path(&f).unwrap();
        assert_eq!(size, 5);
        assert_eq!(h1, blake3::hash(b"hello").to_hex().to_string());
        memo.save().unwrap();
        let memo = FileMemo::load(d.path().join("memo.json"));
        let (h2, _) = memo.hash_path(&f).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(
            memo.bytes_hashed.load(Ordering::Relaxed),
            0,
            "served from the memo"
        );
        std::fs::write(&f, "hellO!").unwrap();
        let (h3, _) = memo.hash_path(&f).unwrap();
        assert_ne!(h1, h3);
    }

    #[test]
    fn a_file_edited_while_hashed_is_read_again() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("data.jsonl");
        std::fs::write(&f, "old contents\n").unwrap();
        let memo = FileMemo::in_memory();
        let mut reads = 0;
        let (hash, size) = memo
            .hash_file_with(&f, |path, size| {
                reads += 1;
                let seen = hash_file_contents(path, size)?;
                if reads == 1 {
                    // A writer appends while the first read is in flight.
                    std::fs::write(path, "old contents\nand a new line\n")?;
                }
                Ok(seen)
            })
            .unwrap();
        assert_eq!(reads, 2, "the edit was noticed and the file read again");
        assert_eq!(
            hash,
            blake3::hash(b"old contents\nand a new line\n")
                .to_hex()
                .to_string()
        );
        assert_eq!(size, 28);

        // A file that never stops changing is an error, not a wrong hash.
        let err = FileMemo::in_memory()
            .hash_file_with(&d.path().join("data.jsonl"), |path, _| {
                let n = std::fs::metadata(path)?.len();
                std::fs::write(path, "x".repeat(n as usize + 1))?;
                Ok(String::new())
            })
            .unwrap_err();
        assert!(err.to_string().contains("kept changing"), "{err}");
    }

    #[test]
    fn folders_hash_by_relative_path_and_content() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("m/sub")).unwrap();
        std::fs::write(d.path().join("m/a"), "1").unwrap();
        std::fs::write(d.path().join("m/sub/b"), "2").unwrap();
        let memo = FileMemo::in_memory();
        let (h1, size) = memo.hash_path(&d.path().join("m")).unwrap();
        assert_eq!(size, 2);
        std::fs::rename(d.path().join("m/sub/b"), d.path().join("m/sub/c")).unwrap();
        let (h2, _) = memo.hash_path(&d.path().join("m")).unwrap();
        assert_ne!(h1, h2);
    }

    #[test]
    fn big_files_hash_the_same_in_parallel_mode() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("big");
        let data: Vec<u8> = (0..(PARALLEL_THRESHOLD + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&f, &data).unwrap();
        assert_eq!(
            hash_file_contents(&f, data.len() as u64).unwrap(),
            blake3::hash(&data).to_hex().to_string()
        );
    }
}

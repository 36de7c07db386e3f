//! The content-addressed stage cache under `.pipe/`.
//!
//! ```text
//! .pipe/cache/<key>/manifest.json   files (path, size, blake3), output hashes, the stage's report
//! .pipe/cache/<key>/out/<output>/   the stage's named outputs
//! .pipe/tmp/<id>/ + <id>.lock       entries being written (the lock is held by the writer)
//! .pipe/scratch/<key>/              a stage's private space, kept across a killed run
//! .pipe/locks/<key>.lock            per-key locks: one writer per key across processes
//! .pipe/quarantine/                 corrupt entries moved aside
//! .pipe/runs/<run-hash>.json        run records
//! ```
//!
//! An entry appears only by an atomic rename of a complete, fsynced folder, so
//! a reader never sees half an entry and a killed writer leaves only `tmp/`
//! leftovers, which the next run removes. Locks are `flock`-style advisory
//! locks: the OS drops them when their process dies, so a stale lock never
//! blocks anyone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::filehash::{hash_file_contents, unique, walk_files};
use crate::key::KeyHasher;

const MANIFEST: &str = "manifest.json";

/// The cache folder (`.pipe/`).
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// What a published entry holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub stage_kind: String,
    /// Named outputs, primary first.
    pub outputs: Vec<String>,
    /// Every file under `out/`, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Hash of all outputs together (what `from: stage` keys on).
    pub output_hash: String,
    /// Hash of each named output (what `from: stage.output` keys on).
    pub output_hashes: BTreeMap<String, String>,
    pub report: ReportRecord,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// A stage's report as stored (in the entry, so a cache hit still shows it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub summary: String,
    pub stats: serde_json::Map<String, Value>,
    pub metrics: serde_json::Map<String, Value>,
    pub gates: Vec<GateRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub metric: String,
    pub condition: String,
    pub value: f64,
    pub threshold: f64,
    pub passed: bool,
}

impl From<&crate::stage::StageReport> for ReportRecord {
    fn from(r: &crate::stage::StageReport) -> Self {
        Self {
            summary: r.summary.clone(),
            stats: r.stats.clone(),
            metrics: r.metrics.clone(),
            gates: r
                .gates
                .iter()
                .map(|g| GateRecord {
                    metric: g.metric.clone(),
                    condition: g.condition.clone(),
                    value: g.value,
                    threshold: g.threshold,
                    passed: g.passed,
                })
                .collect(),
        }
    }
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<Manifest>),
    Miss,
    /// The entry exists but does not match its manifest; it must not be used.
    Corrupt(String),
}

/// A held per-key lock (released on drop).
pub struct KeyLock {
    _file: File,
}

/// A folder being written; removed on drop unless published.
pub struct TmpEntry {
    pub dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    published: bool,
}

impl TmpEntry {
    /// Where the stage writes its outputs.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }
}

impl Drop for TmpEntry {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn lock_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("cache").join(key)
    }

    /// The folder holding an entry's named outputs.
    pub fn out_dir(&self, key: &str) -> PathBuf {
        self.entry_dir(key).join("out")
    }

    pub fn scratch_dir(&self, key: &str) -> PathBuf {
        self.root.join("scratch").join(key)
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn memo_path(&self) -> PathBuf {
        self.root.join("filehash.json")
    }

    /// Read an entry's manifest and check it: sizes always, content with `verify`.
    pub fn lookup(&self, key: &str, verify: bool) -> Lookup {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return Lookup::Miss;
        }
        let manifest: Manifest = match std::fs::read(dir.join(MANIFEST))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => return Lookup::Corrupt(format!("unreadable manifest: {e}")),
        };
        if manifest.key != key {
            return Lookup::Corrupt(format!("manifest names key {}", manifest.key));
        }
        let out = dir.join("out");
        for f in &manifest.files {
            let path = out.join(&f.path);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() == f.size => {}
                Ok(m) => {
                    return Lookup::Corrupt(format!(
                        "{} is {} bytes, the manifest says {}",
                        f.path,
                        m.len(),
                        f.size
                    ));
                }
                Err(_) => return Lookup::Corrupt(format!("{} is missing", f.path)),
            }
            if verify {
                match hash_file_contents(&path, f.size) {
                    Ok(h) if h == f.blake3 => {}
                    Ok(_) => {
                        return Lookup::Corrupt(format!(
                            "{} does not match its blake3 hash",
                            f.path
                        ));
                    }
                    Err(e) => return Lookup::Corrupt(format!("{}: {e}", f.path)),
                }
            }
        }
        Lookup::Hit(Box::new(manifest))
    }

    /// Move a corrupt entry aside (never delete evidence), returning where it went.
    pub fn quarantine(&self, key: &str) -> Result<PathBuf> {
        let qdir = self.root.join("quarantine");
        std::fs::create_dir_all(&qdir).map_err(|e| Error::io("cannot create", &qdir, e))?;
        let dest = qdir.join(format!("{key}-{}", unique()));
        std::fs::rename(self.entry_dir(key), &dest)
            .map_err(|e| Error::io("cannot quarantine", &dest, e))?;
        Ok(dest)
    }

    /// Take the per-key lock, blocking. `on_wait` is called once if another
    /// process holds it.
    pub fn lock(&self, key: &str, on_wait: impl FnOnce()) -> Result<KeyLock> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = lock_file(&path).map_err(|e| Error::io("cannot create lock", &path, e))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(_) => {
                on_wait();
                fs4::FileExt::lock(&file).map_err(|e| Error::io("cannot lock", &path, e))?;
            }
        }
        Ok(KeyLock { _file: file })
    }

    /// Held (shared) by every `pipe run` for its whole duration, so that `pipe gc`
    /// (which takes it exclusively) never removes an entry a run is about to read.
    pub fn run_guard(&self) -> Result<KeyLock> {
        let path = self.root.join("gc.lock");
        let file = lock_file(&path).map_err(|e| Error::io("cannot create lock", &path, e))?;
        fs4::FileExt::lock_shared(&file).map_err(|e| Error::io("cannot lock", &path, e))?;
        Ok(KeyLock { _file: file })
    }

    /// The exclusive side of [`Cache::run_guard`]; fails at once if a run is in progress.
    pub fn gc_guard(&self) -> Result<KeyLock> {
        let path = self.root.join("gc.lock");
        let file = lock_file(&path).map_err(|e| Error::io("cannot create lock", &path, e))?;
        if fs4::FileExt::try_lock(&file).is_err() {
            return Err(Error::usage("a `pipe run` is using this cache right now")
                .with_hint("run `pipe gc` again when it has finished"));
        }
        Ok(KeyLock { _file: file })
    }

    /// Whether some process holds the key's lock right now.
    pub fn is_locked(&self, key: &str) -> bool {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => fs4::FileExt::try_lock(&f).is_err(),
            Err(_) => false,
        }
    }

    /// A fresh folder under `tmp/`, owned (locked) by this process.
    pub fn new_tmp(&self) -> Result<TmpEntry> {
        let tmp = self.root.join("tmp");
        let id = format!("{}-{}", std::process::id(), unique());
        let lock_path = tmp.join(format!("{id}.lock"));
        let lock = lock_file(&lock_path).map_err(|e| Error::io("cannot create", &lock_path, e))?;
        fs4::FileExt::lock(&lock).map_err(|e| Error::io("cannot lock", &lock_path, e))?;
        let dir = tmp.join(&id);
        std::fs::create_dir_all(dir.join("out"))
            .map_err(|e| Error::io("cannot create", &dir, e))?;
        Ok(TmpEntry {
            dir,
            lock_path,
            _lock: lock,
            published: false,
        })
    }

    /// Remove `tmp/` leftovers of dead processes (their lock is free). Returns how many.
    pub fn clean_stale_tmp(&self) -> usize {
        let tmp = self.root.join("tmp");
        let Ok(entries) = std::fs::read_dir(&tmp) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "lock") {
                let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                    continue;
                };
                if fs4::FileExt::try_lock(&f).is_ok() {
                    let dir = path.with_extension("");
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::remove_file(&path);
                    removed += 1;
                }
            } else if e.file_type().is_ok_and(|t| t.is_dir())
                && !path.with_extension("lock").exists()
            {
                // A folder whose lock file is gone: its writer either finished
                // (published or dropped it) or died; only very old ones are safe to take.
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|d| d.as_secs() > 3600);
                if old {
                    let _ = std::fs::remove_dir_all(&path);
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Hash, fsync and describe the outputs in `tmp`, then publish them as `key`
    /// by an atomic rename. With `replace`, an existing entry is swapped out
    /// (`--force`); otherwise an existing entry wins and `tmp` is dropped.
    pub fn publish(
        &self,
        mut tmp: TmpEntry,
        key: &str,
        stage_kind: &str,
        outputs: &[String],
        report: ReportRecord,
        replace: bool,
    ) -> Result<Manifest> {
        let out = tmp.out_dir();
        // A link could point anywhere (`ln -s / out/root`): the cache holds real files only.
        if let Some(link) = find_symlink(&out) {
            return Err(Error::io(
                "a stage output is a symbolic link, which the cache does not follow out of itself; write real files:",
                link,
                std::io::Error::other("symbolic link in outputs"),
            ));
        }
        let mut rels = Vec::new();
        walk_files(&out, &out, &mut rels)
            .map_err(|e| Error::io("cannot list outputs in", &out, e))?;
        let mut files = Vec::new();
        for rel in rels {
            let path = out.join(&rel);
            let f = File::open(&path).map_err(|e| Error::io("cannot open output", &path, e))?;
            f.sync_all()
                .map_err(|e| Error::io("cannot fsync", &path, e))?;
            let size = f
                .metadata()
                .map_err(|e| Error::io("cannot stat", &path, e))?
                .len();
            let blake3 =
                hash_file_contents(&path, size).map_err(|e| Error::io("cannot hash", &path, e))?;
            files.push(ManifestFile {
                path: rel,
                size,
                blake3,
            });
        }
        let output_hash = output_hash(&files, None);
        let output_hashes = outputs
            .iter()
            .map(|o| (o.clone(), output_hash_of(&files, o)))
            .collect();
        let manifest = Manifest {
            key: key.to_owned(),
            stage_kind: stage_kind.to_owned(),
            outputs: outputs.to_vec(),
            files,
            output_hash,
            output_hashes,
            report,
        };
        let mpath = tmp.dir.join(MANIFEST);
        let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let mut f = File::create(&mpath).map_err(|e| Error::io("cannot write", &mpath, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io("cannot write", &mpath, e))?;
        sync_dirs(&tmp.dir);
        let dest = self.entry_dir(key);
        let parent = dest.parent().expect("cache/<key>");
        std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
        if dest.exists() {
            if !replace {
                // Another process published the same key first; keep theirs.
                if let Lookup::Hit(m) = self.lookup(key, false) {
                    return Ok(*m);
                }
            }
            let old = self.root.join("tmp").join(format!("replaced-{}", unique()));
            std::fs::rename(&dest, &old).map_err(|e| Error::io("cannot move aside", &dest, e))?;
            let _ = std::fs::remove_dir_all(&old);
        }
        std::fs::rename(&tmp.dir, &dest).map_err(|e| Error::io("cannot publish", &dest, e))?;
        tmp.published = true;
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(manifest)
    }
}

fn sync_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                sync_dirs(&e.path());
            }
        }
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Hash of a set of files (paths relative to the output root or `prefix/`).
fn output_hash(files: &[ManifestFile], prefix: Option<&str>) -> String {
    let mut h = KeyHasher::new();
    h.str("pipe-output-v1");
    let selected: Vec<(&str, &ManifestFile)> = files
        .iter()
        .filter_map(|f| match prefix {
            None => Some((f.path.as_str(), f)),
            Some(p) => f
                .path
                .strip_prefix(p)
                .and_then(|r| r.strip_prefix('/'))
                .map(|r| (r, f)),
        })
        .collect();
    h.u64(selected.len() as u64);
    for (rel, f) in selected {
        h.str(rel);
        h.u64(f.size);
        h.str(&f.blake3);
    }
    h.finish()
}

fn output_hash_of(files: &[ManifestFile], output: &str) -> String {
    output_hash(files, Some(output))
}

/// Total bytes under a folder.
/// The first symbolic link under `dir`, without following any.
fn find_symlink(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let ft = entry.file_type().ok()?;
        if ft.is_symlink() {
            return Some(path);
        }
        if ft.is_dir()
            && let Some(found) = find_symlink(&path)
        {
            return Some(found);
        }
    }
    None
}

pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_one(cache: &Cache, key: &str, content: &str) -> Manifest {
        let tmp = cache.new_tmp().unwrap();
        std::fs::create_dir_all(tmp.out_dir().join("rows")).unwrap();
        std::fs::write(tmp.out_dir().join("rows/a.txt"), content).unwrap();
        cache
            .publish(
                tmp,
                key,
                "command",
                &["rows".into()],
                ReportRecord::default(),
                false,
            )
            .unwrap()
    }

    #[test]
    fn publish_then_lookup_and_detect_corruption() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        assert!(matches!(cache.lookup("k1", false), Lookup::Miss));
        let m = publish_one(&cache, "k1", "hello");
        assert_eq!(m.files.len(), 1);
        assert!(matches!(cache.lookup("k1", true), Lookup::Hit(_)));
        // Same bytes -> same output hash, whatever the key (early cutoff).
        let m2 = publish_one(&cache, "k2", "hello");
        assert_eq!(m.output_hash, m2.output_hash);
        assert_eq!(m.output_hashes["rows"], m2.output_hashes["rows"]);
        // Same size, different bytes: only --verify sees it.
        std::fs::write(cache.out_dir("k1").join("rows/a.txt"), "HELLO").unwrap();
        assert!(matches!(cache.lookup("k1", false), Lookup::Hit(_)));
        assert!(matches!(cache.lookup("k1", true), Lookup::Corrupt(_)));
        std::fs::write(cache.out_dir("k1").join("rows/a.txt"), "truncated!").unwrap();
        assert!(matches!(cache.lookup("k1", false), Lookup::Corrupt(_)));
        cache.quarantine("k1").unwrap();
        assert!(matches!(cache.lookup("k1", false), Lookup::Miss));
        // Nothing left in tmp after publishing.
        let left: Vec<_> = std::fs::read_dir(d.path().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn dropped_tmp_is_removed_and_stale_tmp_is_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let tmp = cache.new_tmp().unwrap();
        let dir = tmp.dir.clone();
        assert!(dir.exists());
        drop(tmp);
        assert!(!dir.exists());
        // A leftover with a free lock (its process died) is removed.
        std::fs::create_dir_all(d.path().join("tmp/999-x/out")).unwrap();
        std::fs::write(d.path().join("tmp/999-x.lock"), "").unwrap();
        let live = cache.new_tmp().unwrap();
        assert_eq!(cache.clean_stale_tmp(), 1);
        assert!(!d.path().join("tmp/999-x").exists());
        assert!(live.dir.exists(), "a live writer's folder is kept");
    }

    #[test]
    fn gc_waits_for_no_run() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let run = cache.run_guard().unwrap();
        let other_run = cache.run_guard().unwrap();
        assert!(cache.gc_guard().is_err());
        drop((run, other_run));
        assert!(cache.gc_guard().is_ok());
    }

    #[test]
    fn key_lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let held = cache.lock("k", || {}).unwrap();
        assert!(cache.is_locked("k"));
        drop(held);
        assert!(!cache.is_locked("k"));
    }
}

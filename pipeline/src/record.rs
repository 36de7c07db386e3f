//! Run records: `.pipe/runs/<run-hash>.json`, one per `pipe run`.
//!
//! A record holds what is needed to explain (`pipe status`, `pipe diff`) and to
//! redo (`pipe reproduce`) a run: the resolved recipe, each stage's key and the
//! parts it was made of, output hashes, reports, input file hashes, and the
//! tool and platform. Times are stored but never hashed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::{Cache, GateRecord};
use crate::error::{Error, Result};
use crate::key::{KeyParts, diff_values};
use crate::plan::Plan;
use crate::run::{RunOptions, RunSummary, Status};

pub const RECORD_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub run_hash: String,
    pub recipe_name: String,
    /// The recipe file as given on the command line.
    pub recipe_path: String,
    /// Its folder, absolute (relative paths in params resolve against it).
    pub recipe_dir: String,
    /// The recipe after `extends`, `--set` and `vars`.
    pub resolved: Value,
    /// `ok`, `failed` or `gate_failed`.
    pub status: String,
    pub error: Option<String>,
    pub stages: Vec<StageRecord>,
    /// Every external file read, with its blake3 hash.
    pub input_files: BTreeMap<String, String>,
    pub pipe_version: String,
    pub git_commit: String,
    pub os: String,
    pub arch: String,
    pub threads: usize,
    pub jobs: usize,
    pub started_at: String,
    pub ended_at: String,
    pub started_unix_ms: u128,
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub kind: String,
    pub status: Status,
    pub key: String,
    pub parts: KeyParts,
    pub output_hash: String,
    pub output_hashes: BTreeMap<String, String>,
    pub out_dir: String,
    pub seconds: f64,
    pub summary: String,
    pub stats: serde_json::Map<String, Value>,
    pub metrics: serde_json::Map<String, Value>,
    pub gates: Vec<GateRecord>,
}

/// The git commit the engine was built from (set by build.rs), or `unknown`.
pub fn git_commit() -> &'static str {
    option_env!("PIPE_GIT_COMMIT").unwrap_or("unknown")
}

impl RunRecord {
    pub fn new(plan: &Plan, summary: &RunSummary, opts: &RunOptions) -> RunRecord {
        let recipe = &plan.recipe;
        let stages: Vec<StageRecord> = summary
            .stages
            .iter()
            .map(|s| StageRecord {
                name: s.name.clone(),
                kind: s.kind.clone(),
                status: s.status,
                key: s.key.clone(),
                parts: s.parts.clone(),
                output_hash: s.manifest.output_hash.clone(),
                output_hashes: s.manifest.output_hashes.clone(),
                out_dir: s.out_dir.display().to_string(),
                seconds: s.seconds,
                summary: s.manifest.report.summary.clone(),
                stats: s.manifest.report.stats.clone(),
                metrics: s.manifest.report.metrics.clone(),
                gates: s.manifest.report.gates.clone(),
            })
            .collect();
        let input_files = stages
            .iter()
            .flat_map(|s| {
                s.parts
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.blake3.clone()))
            })
            .collect();
        let status = if summary.error.is_some() {
            "failed"
        } else if summary.gates_failed() {
            "gate_failed"
        } else {
            "ok"
        };
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        };
        RunRecord {
            format: RECORD_FORMAT,
            run_hash: summary.run_hash.clone(),
            recipe_name: recipe.name.clone(),
            recipe_path: recipe.path.display().to_string(),
            recipe_dir: recipe.dir.display().to_string(),
            resolved: recipe.tree.to_json(),
            status: status.into(),
            error: summary.error.as_ref().map(|(s, e)| format!("{s}: {e}")),
            stages,
            input_files,
            pipe_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: git_commit().into(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            threads: opts.threads,
            jobs: opts.jobs,
            started_at: format_utc(ms(summary.started_at)),
            ended_at: format_utc(ms(summary.ended_at)),
            started_unix_ms: ms(summary.started_at),
            wall_seconds: summary
                .ended_at
                .duration_since(summary.started_at)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }

    /// Write atomically to `.pipe/runs/<run-hash>.json`.
    pub fn write(&self, cache: &Cache) -> Result<PathBuf> {
        let dir = cache.runs_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        let path = dir.join(format!("{}.json", self.run_hash));
        let tmp = dir.join(format!(".{}.{}.tmp", self.run_hash, std::process::id()));
        let bytes = serde_json::to_vec_pretty(self).expect("record serializes");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("cannot write", &path, e))?;
        Ok(path)
    }

    pub fn stage(&self, name: &str) -> Option<&StageRecord> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Metrics of all stages, `stage.metric` -> value.
    pub fn metrics(&self) -> BTreeMap<String, Value> {
        self.stages
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |(k, v)| (format!("{}.{k}", s.name), v.clone()))
            })
            .collect()
    }

    /// Same recipe file?
    pub fn is_recipe(&self, dir: &Path, path: &Path) -> bool {
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
        Path::new(&self.recipe_dir) == dir
            && Path::new(&self.recipe_path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                == file
    }
}

/// All records, newest first. Unreadable files are skipped.
pub fn list(cache: &Cache) -> Vec<RunRecord> {
    let mut out: Vec<RunRecord> = std::fs::read_dir(cache.runs_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by_key(|r: &RunRecord| std::cmp::Reverse(r.started_unix_ms));
    out
}

/// The record whose hash starts with `prefix`.
pub fn find(cache: &Cache, prefix: &str) -> Result<RunRecord> {
    let all = list(cache);
    let matches: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.run_hash.starts_with(prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::usage(format!(
            "no run `{prefix}` in {}",
            cache.runs_dir().display()
        ))
        .with_hint("`pipe runs` lists past runs; pass `--cache-dir` if the runs live elsewhere")),
        many => Err(Error::usage(format!(
            "`{prefix}` matches {} runs: {}",
            many.len(),
            many.iter()
                .map(|r| &r.run_hash[..12])
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint("give more characters of the hash")),
    }
}

/// Human lines describing how run `b` differs from run `a`.
pub fn diff(a: &RunRecord, b: &RunRecord) -> Vec<String> {
    let mut out = Vec::new();
    for sb in &b.stages {
        let Some(sa) = a.stage(&sb.name) else {
            out.push(format!("stage {}: only in {}", sb.name, short(&b.run_hash)));
            continue;
        };
        out.extend(explain_parts(&sb.name, &sa.parts, &sb.parts));
        if sa.output_hash != sb.output_hash {
            out.push(format!(
                "stage {}: output {}.. -> {}..",
                sb.name,
                short(&sa.output_hash),
                short(&sb.output_hash)
            ));
        }
    }
    for sa in &a.stages {
        if b.stage(&sa.name).is_none() {
            out.push(format!("stage {}: only in {}", sa.name, short(&a.run_hash)));
        }
    }
    let (ma, mb) = (a.metrics(), b.metrics());
    let mut names: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    names.sort();
    names.dedup();
    for n in names {
        let (x, y) = (ma.get(n), mb.get(n));
        if x != y {
            let show = |v: Option<&Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let delta = match (x.and_then(Value::as_f64), y.and_then(Value::as_f64)) {
                (Some(p), Some(q)) => format!(" ({:+.4})", q - p),
                _ => String::new(),
            };
            out.push(format!("metric {n}: {} -> {}{delta}", show(x), show(y)));
        }
    }
    out
}

/// Why a stage's key differs between two sets of parts, as lines such as
/// `params.good.min_chars: 10 -> 20`.
pub fn explain_parts(stage: &str, old: &KeyParts, new: &KeyParts) -> Vec<String> {
    let mut out = Vec::new();
    if old.kind != new.kind {
        out.push(format!("kind of {stage}: {} -> {}", old.kind, new.kind));
    }
    if old.code_version != new.code_version {
        out.push(format!(
            "code version of {} {} -> {}",
            new.kind, old.code_version, new.code_version
        ));
    }
    for (path, a, b) in diff_values(&old.params, &new.params) {
        out.push(format!("params.{stage}.{path}: {a} -> {b}"));
    }
    for f in &new.files {
        match old.files.iter().find(|o| o.path == f.path) {
            Some(o) if o.blake3 != f.blake3 => out.push(format!(
                "input {} changed (blake3 {}.. -> {}..)",
                f.path,
                &o.blake3[..8.min(o.blake3.len())],
                &f.blake3[..8.min(f.blake3.len())]
            )),
            Some(_) => {}
            None => out.push(format!("new input {}", f.path)),
        }
    }
    for o in &old.files {
        if !new.files.iter().any(|f| f.path == o.path) {
            out.push(format!("input {} no longer read", o.path));
        }
    }
    let refs = |p: &KeyParts| {
        p.inputs
            .iter()
            .map(|i| i.reference.clone())
            .collect::<Vec<_>>()
    };
    if refs(old) != refs(new) {
        out.push(format!(
            "from of {stage}: [{}] -> [{}]",
            refs(old).join(", "),
            refs(new).join(", ")
        ));
    } else {
        for (a, b) in old.inputs.iter().zip(&new.inputs) {
            if a.output_hash != b.output_hash {
                let up = b.reference.split('.').next().unwrap_or(&b.reference);
                out.push(format!("upstream {up} produced new output"));
            }
        }
    }
    out
}

pub fn short(hash: &str) -> &str {
    &hash[..12.min(hash.len())]
}

/// `2026-11-28T14:51:51Z` from unix milliseconds (UTC, no time zone database needed).
pub fn format_utc(unix_ms: u128) -> String {
    let secs = (unix_ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FilePart;
    use serde_json::json;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_795_877_511_000), "2026-11-28T14:51:51Z");
    }

    #[test]
    fn explains_param_file_and_version_changes() {
        let old = KeyParts {
            kind: "filter".into(),
            code_version: 2,
            params: json!({"min_chars": 10}),
            inputs: vec![],
            files: vec![FilePart {
                path: "data/a.jsonl".into(),
                size: 1,
                blake3: "3f2a0000aaaa".into(),
            }],
        };
        let mut new = old.clone();
        new.code_version = 3;
        new.params = json!({"min_chars": 20});
        new.files[0].blake3 = "9c1e0000bbbb".into();
        let lines = explain_parts("good", &old, &new);
        assert_eq!(
            lines,
            vec![
                "code version of filter 2 -> 3",
                "params.good.min_chars: 10 -> 20",
                "input data/a.jsonl changed (blake3 3f2a0000.. -> 9c1e0000..)",
            ]
        );
    }
}

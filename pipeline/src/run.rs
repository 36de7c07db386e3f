//! Running a planned DAG: key each stage, reuse or compute it, publish it.
//!
//! A stage becomes ready when all its upstreams are done, because its key needs
//! their output hashes. Ready stages run on up to `jobs` worker threads. For
//! each stage: hash its external files (memo), compute the key, look the cache
//! up (a corrupt entry is quarantined and recomputed), take the per-key lock
//! (another process computing the same key makes us wait, then reuse its entry),
//! run into `.pipe/tmp/`, check the outputs, publish atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::cache::{Cache, Lookup, Manifest, ReportRecord};
use crate::error::{Error, Result};
use crate::filehash::FileMemo;
use crate::key::{FilePart, InputPart, KeyHasher, KeyParts};
use crate::plan::{Plan, PlannedStage};
use crate::stage::{Input, NoProgress, Progress, RunContext, StageError};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Recompute these stages even if cached.
    pub force: Vec<String>,
    pub force_all: bool,
    /// Run only this stage and what it depends on.
    pub until: Option<String>,
    /// Stages run at the same time.
    pub jobs: usize,
    /// Check every file's hash of every cache entry used.
    pub verify: bool,
    /// Threads each stage may use.
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Cached,
    Ran,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Cached => "cached",
            Status::Ran => "ran",
        }
    }
}

/// One finished stage.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub name: String,
    pub kind: String,
    pub status: Status,
    pub key: String,
    pub parts: KeyParts,
    pub manifest: Manifest,
    /// The entry's output folder (`.pipe/cache/<key>/out`).
    pub out_dir: PathBuf,
    pub seconds: f64,
}

/// What the caller learns as stages progress (the CLI draws it).
pub trait Observer: Send + Sync {
    /// A cache miss: the stage starts computing.
    fn started(&self, _stage: &str) {}
    /// Another process holds the key's lock.
    fn waiting(&self, _stage: &str) {}
    fn corrupt(&self, _stage: &str, _reason: &str, _moved_to: &Path) {}
    fn finished(&self, _outcome: &StageOutcome) {}
    fn failed(&self, _stage: &str, _err: &Error) {}
    fn progress(&self, _stage: &str) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
}

/// An observer that shows nothing.
pub struct Quiet;
impl Observer for Quiet {}

pub struct RunSummary {
    /// blake3 of the keys of the stages run, in topological order.
    pub run_hash: String,
    /// Finished stages in topological order.
    pub stages: Vec<StageOutcome>,
    /// The first failure, if any (the run stops scheduling new stages after it).
    pub error: Option<(String, Error)>,
    /// Stages selected but not run because of a failure.
    pub skipped: Vec<String>,
    pub started_at: std::time::SystemTime,
    pub ended_at: std::time::SystemTime,
}

impl RunSummary {
    pub fn gates_failed(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.manifest.report.gates.iter().any(|g| !g.passed))
    }
}

/// The external files of a stage, hashed (memo).
pub fn file_parts(ps: &PlannedStage, recipe_dir: &Path, memo: &FileMemo) -> Result<Vec<FilePart>> {
    ps.files
        .iter()
        .map(|f| {
            let (blake3, size) = memo.hash_path(f).map_err(|e| {
                Error::StageFailed {
                    stage: ps.name.clone(),
                    source: StageError::input(format!("cannot read input {}: {e}", f.display()))
                        .with_hint("check that the file exists and is readable; `pipe validate` checks every input"),
                }
            })?;
            Ok(FilePart {
                path: display_path(f, recipe_dir),
                size,
                blake3,
            })
        })
        .collect()
}

/// A path relative to the recipe folder when inside it.
pub fn display_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Input parts and run-time inputs from finished upstreams.
pub fn inputs_of(ps: &PlannedStage, upstream: &[&StageOutcome]) -> (Vec<InputPart>, Vec<Input>) {
    let mut parts = Vec::new();
    let mut inputs = Vec::new();
    for ((r, spec), up) in ps.from.iter().zip(&ps.inputs).zip(upstream) {
        let output_hash = match &r.output {
            Some(o) => up
                .manifest
                .output_hashes
                .get(o)
                .cloned()
                .unwrap_or_default(),
            None => up.manifest.output_hash.clone(),
        };
        parts.push(InputPart {
            reference: r.to_string(),
            kind: spec.kind.clone(),
            output: r.output.clone(),
            output_hash,
        });
        let order: Vec<String> = match &r.output {
            Some(o) => vec![o.clone()],
            None => up.manifest.outputs.clone(),
        };
        let dirs: BTreeMap<String, PathBuf> = order
            .iter()
            .map(|o| (o.clone(), up.out_dir.join(o)))
            .collect();
        inputs.push(Input {
            stage: up.name.clone(),
            kind: up.kind.clone(),
            output: r.output.clone(),
            dirs,
            order,
        });
    }
    (parts, inputs)
}

pub fn key_parts(ps: &PlannedStage, inputs: Vec<InputPart>, files: Vec<FilePart>) -> KeyParts {
    KeyParts {
        kind: ps.kind.clone(),
        code_version: ps.stage.code_version(),
        params: ps.plan.params.clone(),
        inputs,
        files,
    }
}

pub fn run_hash<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = KeyHasher::new();
    h.str("pipe-run-v1");
    for k in keys {
        h.str(k);
    }
    h.finish()
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

/// Run the selected stages of `plan`.
pub fn run(
    plan: &Plan,
    cache: &Cache,
    memo: &FileMemo,
    opts: &RunOptions,
    obs: &dyn Observer,
) -> Result<RunSummary> {
    for f in &opts.force {
        plan.require(f, "--force")?;
    }
    let selected = match &opts.until {
        Some(u) => plan.ancestors_and_self(plan.require(u, "--until")?),
        None => vec![true; plan.stages.len()],
    };
    let started_at = std::time::SystemTime::now();
    let _guard = cache.run_guard()?;
    cache.clean_stale_tmp();
    let n = plan.stages.len();
    struct Shared {
        state: Vec<State>,
        outcomes: Vec<Option<StageOutcome>>,
        error: Option<(String, Error)>,
    }
    let shared = Mutex::new(Shared {
        state: (0..n)
            .map(|i| {
                if selected[i] {
                    State::Pending
                } else {
                    State::Skipped
                }
            })
            .collect(),
        outcomes: vec![None; n],
        error: None,
    });
    let wake = Condvar::new();
    let jobs = opts.jobs.max(1).min(n.max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let (i, upstream) = {
                        let mut s = shared.lock().expect("run state");
                        loop {
                            let stop = s.error.is_some();
                            let next = (!stop)
                                .then(|| {
                                    (0..n).find(|&i| {
                                        s.state[i] == State::Pending
                                            && plan.stages[i]
                                                .deps
                                                .iter()
                                                .all(|&d| s.state[d] == State::Done)
                                    })
                                })
                                .flatten();
                            if let Some(i) = next {
                                s.state[i] = State::Running;
                                let upstream: Vec<StageOutcome> = plan.stages[i]
                                    .deps
                                    .iter()
                                    .map(|&d| s.outcomes[d].clone().expect("done upstream"))
                                    .collect();
                                break (i, upstream);
                            }
                            let running = s.state.contains(&State::Running);
                            let pending = s.state.contains(&State::Pending);
                            if !running && (!pending || stop) {
                                return;
                            }
                            s = wake.wait(s).expect("run state");
                        }
                    };
                    let refs: Vec<&StageOutcome> = upstream.iter().collect();
                    let result = execute(plan, i, &refs, cache, memo, opts, obs);
                    let mut s = shared.lock().expect("run state");
                    match result {
                        Ok(Exec::Done(outcome)) => {
                            obs.finished(&outcome);
                            s.state[i] = State::Done;
                            s.outcomes[i] = Some(*outcome);
                        }
                        // Recompute the quarantined upstreams, then this stage.
                        Ok(Exec::RedoUpstream(deps)) => {
                            for d in deps {
                                s.state[d] = State::Pending;
                                s.outcomes[d] = None;
                            }
                            s.state[i] = State::Pending;
                        }
                        Err(e) => {
                            obs.failed(&plan.stages[i].name, &e);
                            s.state[i] = State::Failed;
                            if s.error.is_none() {
                                s.error = Some((plan.stages[i].name.clone(), e));
                            }
                        }
                    }
                    wake.notify_all();
                }
            });
        }
    });
    let shared = shared.into_inner().expect("run state");
    let _ = memo.save();
    let skipped = (0..n)
        .filter(|&i| selected[i] && shared.state[i] == State::Pending)
        .map(|i| plan.stages[i].name.clone())
        .collect();
    let stages: Vec<StageOutcome> = shared.outcomes.into_iter().flatten().collect();
    Ok(RunSummary {
        run_hash: run_hash(stages.iter().map(|s| s.key.as_str())),
        stages,
        error: shared.error,
        skipped,
        started_at,
        ended_at: std::time::SystemTime::now(),
    })
}

/// What became of one stage: done, or its cached upstream entries turned out
/// corrupt when it was about to read them (they are quarantined and must be
/// recomputed first).
enum Exec {
    Done(Box<StageOutcome>),
    RedoUpstream(Vec<usize>),
}

fn execute(
    plan: &Plan,
    i: usize,
    upstream: &[&StageOutcome],
    cache: &Cache,
    memo: &FileMemo,
    opts: &RunOptions,
    obs: &dyn Observer,
) -> Result<Exec> {
    let t0 = Instant::now();
    let ps = &plan.stages[i];
    let recipe = &plan.recipe;
    let files = file_parts(ps, &recipe.dir, memo)?;
    let (input_parts, inputs) = inputs_of(ps, upstream);
    let parts = key_parts(ps, input_parts, files);
    let key = parts.key();
    let forced = opts.force_all || opts.force.contains(&ps.name);
    let outcome = |status, manifest: Manifest| StageOutcome {
        name: ps.name.clone(),
        kind: ps.kind.clone(),
        status,
        key: key.clone(),
        parts: parts.clone(),
        out_dir: cache.out_dir(&key),
        manifest,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let check = |obs: &dyn Observer| -> Result<Option<Manifest>> {
        match cache.lookup(&key, opts.verify) {
            Lookup::Hit(m) => Ok(Some(*m)),
            Lookup::Miss => Ok(None),
            Lookup::Corrupt(reason) => {
                let to = cache.quarantine(&key)?;
                obs.corrupt(&ps.name, &reason, &to);
                Ok(None)
            }
        }
    };
    if !forced && let Some(m) = check(obs)? {
        return Ok(Exec::Done(Box::new(outcome(Status::Cached, m))));
    }
    let _lock = cache.lock(&key, || obs.waiting(&ps.name))?;
    if !forced {
        // Another process may have computed it while we waited for the lock.
        if let Some(m) = check(obs)? {
            return Ok(Exec::Done(Box::new(outcome(Status::Cached, m))));
        }
    }
    // The stage is about to read its inputs: check cached ones in full (sizes
    // were checked on lookup; a same-size corruption needs the hashes).
    let mut redo = Vec::new();
    for (&d, up) in ps.deps.iter().zip(upstream) {
        if up.status == Status::Cached
            && let Lookup::Corrupt(reason) = cache.lookup(&up.key, true)
        {
            let to = cache.quarantine(&up.key)?;
            obs.corrupt(&up.name, &reason, &to);
            redo.push(d);
        }
    }
    if !redo.is_empty() {
        return Ok(Exec::RedoUpstream(redo));
    }
    obs.started(&ps.name);
    let tmp = cache.new_tmp()?;
    let out = tmp.out_dir();
    for o in &ps.plan.outputs {
        std::fs::create_dir_all(out.join(o))
            .map_err(|e| Error::io("cannot create", out.join(o), e))?;
    }
    let scratch = cache.scratch_dir(&key);
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io("cannot create", &scratch, e))?;
    let progress = obs.progress(&ps.name);
    let ctx = RunContext {
        stage_name: &ps.name,
        params: &ps.plan.params,
        recipe_dir: &recipe.dir,
        seed: recipe.seed,
        inputs,
        files: ps.files.clone(),
        out_dir: &out,
        scratch_dir: &scratch,
        threads: opts.threads.max(1),
        progress: progress.as_ref(),
    };
    // A panicking stage is a failed stage, not a crashed run: the other
    // workers finish, the record is written, nothing of this stage is published.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ps.stage.run(&ctx)))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StageError::failed(format!("the stage panicked: {what}"))
                .with_hint("this is a bug in the stage kind; please report it with the recipe"))
        });
    let report = result.map_err(|e| Error::StageFailed {
        stage: ps.name.clone(),
        source: e,
    })?;
    // The primary output must hold something: a stage that declares an output
    // and writes nothing is a bug, and publishing it would cache the bug.
    let primary = &ps.plan.outputs[0];
    let written = std::fs::read_dir(out.join(primary))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !written {
        return Err(Error::StageFailed {
            stage: ps.name.clone(),
            source: StageError::failed(format!(
                "the stage wrote nothing into its output `{primary}`"
            )),
        });
    }
    let manifest = cache.publish(
        tmp,
        &key,
        &ps.kind,
        &ps.plan.outputs,
        ReportRecord::from(&report),
        forced,
    )?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Exec::Done(Box::new(outcome(Status::Ran, manifest))))
}

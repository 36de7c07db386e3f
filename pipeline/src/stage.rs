//! The contract between the engine and a stage kind.
//!
//! A stage kind is a pure function of its parameters and inputs: given the same
//! canonical params, the same upstream output bytes and the same external files,
//! it must write byte-identical outputs (seeded randomness, stable sort orders,
//! no timestamps inside outputs). The engine relies on that for caching,
//! early cutoff and `pipe reproduce`.
//!
//! Life of a stage in one run:
//! 1. [`Stage::plan`] checks the user's params (strictly: unknown keys are errors),
//!    fills in defaults and declares named outputs and external files. The
//!    canonical params it returns are hashed into the cache key, so everything
//!    that changes the output must be in them.
//! 2. The engine computes the key; on a cache hit nothing else happens.
//! 3. On a miss, [`Stage::run`] reads its inputs from [`RunContext::inputs`] and
//!    writes each named output into `out_dir/<output name>/`. The engine then
//!    hashes, fsyncs and publishes the folder atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One stage kind, registered with the engine under its recipe word.
pub trait Stage: Send + Sync {
    /// The recipe word: `ingest`, `dedup`, `train`, ...
    fn kind(&self) -> &'static str;

    /// Bump when the bytes this kind writes would change for the same inputs.
    fn code_version(&self) -> u32;

    /// One line for `pipe explain` and error messages.
    fn about(&self) -> &'static str;

    /// JSON Schema of this kind's params (used by `pipe schema` / `pipe explain`).
    fn params_schema(&self) -> Value {
        Value::Null
    }

    /// Validate `params` (the stage's YAML map without `kind` and `from`),
    /// resolve defaults and declare outputs and external files.
    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError>;

    /// Compute the outputs. Must not write outside `ctx.out_dir` and `ctx.scratch_dir`.
    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError>;
}

/// What a stage may know while planning.
#[derive(Debug, Clone)]
pub struct PlanEnv<'a> {
    /// The stage's name in the recipe (`clean`, `adapter`, ...).
    pub stage_name: &'a str,
    /// Folder of the recipe file: relative paths in params resolve against it.
    pub recipe_dir: &'a Path,
    /// The recipe's top-level `model:`, if any (a stage may override it with its own `model` param).
    pub model: Option<&'a str>,
    /// The recipe's `seed`.
    pub seed: u64,
    /// The upstream references from `from:`, in the order written.
    pub inputs: &'a [InputSpec],
}

/// An upstream reference as written in `from:` (`split` or `split.test`), resolved to its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Upstream stage name.
    pub stage: String,
    /// Upstream stage kind (`split`, `train`, ...).
    pub kind: String,
    /// The named output, when the reference selects one (`split.test` -> `test`).
    pub output: Option<String>,
    /// Every output the upstream stage declares, primary first.
    pub outputs: Vec<String>,
}

/// The checked form of a stage's params.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Canonical params with every default resolved. Hashed into the cache key
    /// and stored in the run record; passed back to [`Stage::run`].
    pub params: Value,
    /// Named outputs, primary first (`["train", "test", "validation"]`).
    /// A bare reference `from: stage` means all of them; consumers usually read the primary.
    pub outputs: Vec<String>,
    /// External files read by the stage (data, model weights, tokenizer, template),
    /// absolute or relative to the recipe folder. Hashed by content into the key.
    pub files: Vec<PathBuf>,
}

/// One upstream input at run time.
#[derive(Debug, Clone)]
pub struct Input {
    pub stage: String,
    pub kind: String,
    /// The named output selected by the reference, if any.
    pub output: Option<String>,
    /// Output name -> folder holding that output's files. With a selected output
    /// this holds just that one.
    pub dirs: BTreeMap<String, PathBuf>,
    /// Output names in declaration order (primary first), restricted like `dirs`.
    pub order: Vec<String>,
}

impl Input {
    /// The folder of the selected output, or of the upstream's primary output.
    pub fn primary(&self) -> &Path {
        let name = self.output.as_ref().unwrap_or(&self.order[0]);
        &self.dirs[name]
    }

    /// The folder of a named output, if this input carries it.
    pub fn get(&self, output: &str) -> Option<&Path> {
        self.dirs.get(output).map(PathBuf::as_path)
    }
}

/// Everything a running stage can see.
pub struct RunContext<'a> {
    pub stage_name: &'a str,
    /// The canonical params returned by [`Stage::plan`].
    pub params: &'a Value,
    pub recipe_dir: &'a Path,
    pub seed: u64,
    /// Upstream inputs, in `from:` order.
    pub inputs: Vec<Input>,
    /// External files from the plan, resolved to absolute paths, same order.
    pub files: Vec<PathBuf>,
    /// Write each named output into `out_dir/<name>/` (the engine creates them).
    pub out_dir: &'a Path,
    /// Private space that survives a killed run (checkpoints); removed once the
    /// stage's output is published. Same key -> same folder.
    pub scratch_dir: &'a Path,
    /// Threads the stage may use.
    pub threads: usize,
    pub progress: &'a dyn Progress,
}

impl RunContext<'_> {
    /// The folder for one named output.
    pub fn output_dir(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }
}

/// Progress reporting; the engine draws it (a bar on a TTY, plain lines otherwise).
pub trait Progress: Send + Sync {
    /// Total units of work (rows, steps, tokens) when known.
    fn set_total(&self, total: u64, unit: &str);
    fn inc(&self, delta: u64);
    /// A short status such as `loss 1.93, 812 tok/s`.
    fn message(&self, msg: &str);
}

/// A progress sink that draws nothing (tests, library use).
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _total: u64, _unit: &str) {}
    fn inc(&self, _delta: u64) {}
    fn message(&self, _msg: &str) {}
}

/// What a finished stage tells the engine and the user.
#[derive(Debug, Clone, Default)]
pub struct StageReport {
    /// One line for the end-of-run table, e.g. `999 rows -> 950 (49 duplicates)`.
    pub summary: String,
    /// Counters for the run record (rows in/out, per reason, tokens, ...).
    pub stats: serde_json::Map<String, Value>,
    /// Metrics for the run record and `pipe runs` (eval stages).
    pub metrics: serde_json::Map<String, Value>,
    /// Evaluation gates; a failed gate makes `pipe run` exit with code 3.
    pub gates: Vec<GateResult>,
}

/// One evaluated gate such as `rougeL >= 0.30`.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    pub metric: String,
    /// The condition as written (`>= base + 0.05`).
    pub condition: String,
    pub value: f64,
    /// The resolved threshold.
    pub threshold: f64,
    pub passed: bool,
}

/// Why a stage failed, said so that the user knows where and what to do.
#[derive(Debug)]
pub struct StageError {
    pub class: ErrorClass,
    pub message: String,
    /// Dotted path of the offending param (`lora.rank`), for a recipe location.
    pub key: Option<String>,
    /// A suggestion printed last as `hint: ...`.
    pub hint: Option<String>,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Whether the user's recipe is at fault (exit 2) or the stage failed running (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad params or references: found by `plan`, reported as a recipe error.
    Params,
    /// Bad or missing input data or files.
    Input,
    /// The computation failed.
    Failed,
}

impl StageError {
    pub fn params(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Params, message)
    }
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Input, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Failed, message)
    }
    fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            key: None,
            hint: None,
            source: None,
        }
    }
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The stage kinds a binary knows, by recipe word.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, std::sync::Arc<dyn Stage>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a kind; a second registration of the same word replaces the first.
    pub fn add(&mut self, stage: impl Stage + 'static) -> &mut Self {
        self.kinds.insert(stage.kind(), std::sync::Arc::new(stage));
        self
    }

    pub fn get(&self, kind: &str) -> Option<&std::sync::Arc<dyn Stage>> {
        self.kinds.get(kind)
    }

    /// Recipe words in sorted order (for "did you mean" and `pipe explain`).
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

//! The `pipe` command line: argument definitions and the commands.
//!
//! Lives in the engine so it can be tested without the stage crates. The `pipe`
//! binary builds the registry, flattens [`Command`] into its own parser next to
//! the commands that need stage crates (`pipe score`, `pipe merge`, ...), and
//! hands engine commands to [`execute`].
//! Exit codes: 0 success, 1 a stage failed, 2 usage or recipe error, 3 an
//! evaluation gate failed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::cache::{Cache, dir_size};
use crate::error::{Error, Result};
use crate::filehash::FileMemo;
use crate::output::{Reporter, human_bytes, print_table};
use crate::plan::{Plan, plan};
use crate::recipe::Recipe;
use crate::record::{self, RunRecord, short};
use crate::run::{RunOptions, RunSummary, run};
use crate::stage::Registry;
use crate::yaml::{Loc, Node};

#[derive(Debug, Parser)]
#[command(
    name = "pipe",
    version,
    about = "Raw instruction data to a trained, evaluated LoRA adapter, reproducibly."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Cache folder (default: `.pipe/` beside the recipe).
    #[arg(long, global = true, env = "PIPE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RecipeArgs {
    /// The recipe file.
    pub recipe: PathBuf,
    /// Override a value: `--set stages.adapter.lr=1e-4` (typed like YAML; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a recipe: recompute only the stages whose inputs, params or code changed.
    Run {
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Recompute this stage even if cached (repeatable).
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Recompute every stage.
        #[arg(long, conflicts_with = "force")]
        force_all: bool,
        /// Run only this stage and what it depends on.
        #[arg(long, value_name = "STAGE")]
        until: Option<String>,
        /// Stages run at the same time (independent ones only).
        #[arg(long, short = 'j', default_value_t = 1)]
        jobs: usize,
        /// Print a machine-readable summary on stdout.
        #[arg(long)]
        json: bool,
        /// Check the full content hash of every cache entry used.
        #[arg(long)]
        verify: bool,
        /// Write the evaluation gates as JUnit XML test cases to FILE (for CI test reports).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Say, stage by stage, what would rerun and why (runs and writes nothing).
    Status {
        #[command(flatten)]
        recipe: RecipeArgs,
        #[arg(long)]
        json: bool,
    },
    /// Check a recipe without running anything.
    Validate {
        #[command(flatten)]
        recipe: RecipeArgs,
    },
    /// List past runs, newest first.
    Runs {
        #[arg(long)]
        json: bool,
    },
    /// Print one run record.
    Show {
        /// A run hash or a unique prefix of it.
        hash: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the param, input and metric differences of two runs.
    Diff { a: String, b: String },
    /// Recompute every stage of a past run and check the outputs are bit-identical.
    Reproduce {
        hash: String,
        #[arg(long, short = 'j', default_value_t = 1)]
        jobs: usize,
    },
    /// List the stage kinds, or describe one kind's params.
    Explain {
        /// A stage kind (`dedup`, `train`, `command`, ...).
        kind: Option<String>,
        /// Print the reference of every kind as Markdown (the README's recipe reference).
        #[arg(long, conflicts_with = "kind")]
        markdown: bool,
    },
    /// Print the JSON Schema of recipe files (for editors: `pipe schema > pipe-recipe.schema.json`).
    Schema,
    /// Remove cache entries that no kept run refers to.
    Gc {
        /// Keep the entries of the N newest runs (default: all runs).
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Parse arguments, run, print errors, return the exit code.
pub fn main(registry: Registry) -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    execute(&cli.global, cli.command, &registry)
}

/// Run one engine command; print its error, if any; return the exit code.
pub fn execute(global: &GlobalArgs, command: Command, registry: &Registry) -> i32 {
    exit_code(try_main(global, command, registry))
}

/// The exit code of a command's result, printing the error when there is one.
pub fn exit_code(result: Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            e.exit_code()
        }
    }
}

/// `error: ...`, the place, the causes, then the hint.
pub fn print_error(e: &Error) {
    eprintln!("error: {e}");
    if let Some(loc) = e.loc() {
        eprintln!("  --> {loc}");
    }
    // A failed stage's own error is already in the first line.
    let mut source = match e {
        Error::StageFailed { source, .. } => std::error::Error::source(source),
        _ => std::error::Error::source(e),
    };
    while let Some(s) = source {
        eprintln!("caused by: {s}");
        source = s.source();
    }
    if let Some(h) = e.hint() {
        eprintln!("hint: {h}");
    }
}

fn try_main(global: &GlobalArgs, command: Command, registry: &Registry) -> Result<i32> {
    let cache_override = global.cache_dir.clone();
    match command {
        Command::Run {
            recipe,
            force,
            force_all,
            until,
            jobs,
            json,
            verify,
            junit,
        } => {
            let plan = load_plan(&recipe, registry)?;
            let cache = Cache::new(cache_root(&cache_override, &plan.recipe));
            let jobs = jobs.max(1);
            let opts = RunOptions {
                force,
                force_all,
                until,
                jobs,
                verify,
                threads: threads_per_stage(jobs),
            };
            cmd_run(&plan, &cache, &opts, json, junit.as_deref())
        }
        Command::Status { recipe, json } => {
            let plan = load_plan(&recipe, registry)?;
            let cache = Cache::new(cache_root(&cache_override, &plan.recipe));
            // Read-only: the memo is consulted but never saved.
            let memo = FileMemo::load(cache.memo_path());
            let records = record::list(&cache);
            let report = crate::status::status(&plan, &cache, &memo, &records)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializes")
                );
            } else {
                let width = report.iter().map(|s| s.name.len()).max().unwrap_or(0);
                for s in &report {
                    if s.cached {
                        println!("{:width$}  cached", s.name);
                    } else {
                        let mut reasons = s.reasons.iter();
                        match reasons.next() {
                            Some(first) => println!("{:width$}  will run: {first}", s.name),
                            None => println!("{:width$}  will run", s.name),
                        }
                        for r in reasons {
                            println!("{:width$}            {r}", "");
                        }
                    }
                }
            }
            Ok(0)
        }
        Command::Validate { recipe } => {
            let plan = load_plan(&recipe, registry)?;
            for ps in &plan.stages {
                for f in &ps.files {
                    if !f.exists() {
                        let decl = plan.recipe.stage(&ps.name).expect("planned");
                        return Err(Error::recipe(
                            format!(
                                "stage `{}` reads {}, which does not exist",
                                ps.name,
                                f.display()
                            ),
                            Some(decl.name_loc.clone()),
                        ));
                    }
                }
            }
            let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
            println!(
                "{}: ok ({} stages: {})",
                plan.recipe.path.display(),
                names.len(),
                names.join(" -> ")
            );
            Ok(0)
        }
        Command::Runs { json } => {
            let cache = Cache::new(find_cache(&cache_override)?);
            let runs = record::list(&cache);
            if json {
                let v: Vec<Value> = runs
                    .iter()
                    .map(|r| json!({"run_hash": r.run_hash, "recipe": r.recipe_name, "started_at": r.started_at, "status": r.status, "metrics": r.metrics()}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
                return Ok(0);
            }
            if runs.is_empty() {
                eprintln!("no runs in {}", cache.runs_dir().display());
                eprintln!("hint: `pipe run RECIPE` records one");
            }
            for r in &runs {
                let metrics: Vec<String> = r
                    .metrics()
                    .iter()
                    .filter(|(_, v)| v.is_number())
                    .take(3)
                    .map(|(k, v)| format!("{k}={}", fmt_metric(v)))
                    .collect();
                println!(
                    "{}  {:20}  {}  {:11}  {}",
                    short(&r.run_hash),
                    r.recipe_name,
                    r.started_at,
                    r.status,
                    metrics.join(" ")
                );
            }
            Ok(0)
        }
        Command::Show { hash, json } => {
            let cache = Cache::new(find_cache(&cache_override)?);
            let r = record::find(&cache, &hash)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serializes"));
                return Ok(0);
            }
            println!("run {}", r.run_hash);
            println!(
                "recipe   {} ({})",
                r.recipe_name,
                Path::new(&r.recipe_dir)
                    .join(Path::new(&r.recipe_path).file_name().unwrap_or_default())
                    .display()
            );
            println!("status   {}", r.status);
            if let Some(e) = &r.error {
                println!("error    {e}");
            }
            println!(
                "when     {} -> {} ({:.1}s)",
                r.started_at, r.ended_at, r.wall_seconds
            );
            println!(
                "pipe     {} (git {}), {}/{}, {} threads",
                r.pipe_version, r.git_commit, r.os, r.arch, r.threads
            );
            println!();
            println!(
                "{:12} {:9} {:6} {:>8}  {:12}  {:12}  summary",
                "stage", "kind", "status", "time", "key", "output"
            );
            for s in &r.stages {
                println!(
                    "{:12} {:9} {:6} {:>7.1}s  {}  {}  {}",
                    s.name,
                    s.kind,
                    s.status.as_str(),
                    s.seconds,
                    short(&s.key),
                    short(&s.output_hash),
                    s.summary
                );
            }
            let metrics = r.metrics();
            if !metrics.is_empty() {
                println!();
                for (k, v) in metrics {
                    println!("{k} = {}", fmt_metric(&v));
                }
            }
            if !r.input_files.is_empty() {
                println!();
                for (path, hash) in &r.input_files {
                    println!("input {path}  blake3 {}", short(hash));
                }
            }
            Ok(0)
        }
        Command::Diff { a, b } => {
            let cache = Cache::new(find_cache(&cache_override)?);
            let (ra, rb) = (record::find(&cache, &a)?, record::find(&cache, &b)?);
            let lines = record::diff(&ra, &rb);
            println!("{} -> {}", short(&ra.run_hash), short(&rb.run_hash));
            if lines.is_empty() {
                println!("no differences in params, inputs, outputs or metrics");
            }
            for l in lines {
                println!("  {l}");
            }
            Ok(0)
        }
        Command::Reproduce { hash, jobs } => {
            let cache = Cache::new(find_cache(&cache_override)?);
            let r = record::find(&cache, &hash)?;
            cmd_reproduce(&r, &cache, registry, jobs.max(1))
        }
        Command::Explain { kind, markdown } => cmd_explain(registry, kind.as_deref(), markdown),
        Command::Schema => {
            let schema = crate::schema::recipe_schema(registry);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("serializes")
            );
            Ok(0)
        }
        Command::Gc { keep_last, dry_run } => {
            let cache = Cache::new(find_cache(&cache_override)?);
            cmd_gc(&cache, keep_last, dry_run)
        }
    }
}

fn fmt_metric(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() => format!("{f:.4}"),
        _ => v.to_string(),
    }
}

fn threads_per_stage(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / jobs).max(1)
}

fn load_plan(args: &RecipeArgs, registry: &Registry) -> Result<Plan> {
    let recipe = Recipe::load(&args.recipe, &args.sets)?;
    plan(recipe, registry)
}

fn cache_root(over: &Option<PathBuf>, recipe: &Recipe) -> PathBuf {
    over.clone().unwrap_or_else(|| recipe.dir.join(".pipe"))
}

/// For commands without a recipe: `--cache-dir`, else `./.pipe`, else the one
/// `*/.pipe` below the current folder (e.g. `recipes/.pipe`).
pub fn find_cache(over: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = over {
        return Ok(p.clone());
    }
    if Path::new(".pipe").is_dir() {
        return Ok(PathBuf::from(".pipe"));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(".")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(".pipe"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(
            Error::usage("no `.pipe` cache folder here or in a folder below").with_hint(
                "run from the folder holding the recipe's `.pipe/`, or pass `--cache-dir DIR`",
            ),
        ),
        _ => Err(Error::usage(format!(
            "several cache folders: {}",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint("choose one with `--cache-dir DIR`")),
    }
}

fn cmd_run(
    plan: &Plan,
    cache: &Cache,
    opts: &RunOptions,
    json: bool,
    junit: Option<&Path>,
) -> Result<i32> {
    let memo = FileMemo::load(cache.memo_path());
    let reporter = Reporter::new(std::io::stderr().is_terminal() && !json);
    let summary = run(plan, cache, &memo, opts, &reporter)?;
    reporter.finish();
    let record = RunRecord::new(plan, &summary, opts);
    let record_path = record.write(cache)?;
    if let Some(path) = junit {
        let xml = crate::junit::run_junit_xml(&plan.recipe.name, &summary);
        std::fs::write(path, xml).map_err(|e| Error::io("cannot write JUnit report", path, e))?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(&summary, &record, &record_path))
                .expect("serializes")
        );
    } else {
        print_table(&summary, &mut std::io::stdout());
        println!(
            "run {}  (record: {})",
            short(&summary.run_hash),
            record_path.display()
        );
    }
    if let Some((_, e)) = summary.error {
        if !summary.skipped.is_empty() {
            eprintln!("not run: {}", summary.skipped.join(", "));
        }
        print_error(&e);
        return Ok(e.exit_code());
    }
    if summary.gates_failed() {
        for s in &summary.stages {
            for g in s.manifest.report.gates.iter().filter(|g| !g.passed) {
                eprintln!(
                    "gate failed: {}.{} = {:.4}, needs {} (threshold {:.4})",
                    s.name, g.metric, g.value, g.condition, g.threshold
                );
            }
        }
        return Ok(3);
    }
    Ok(0)
}

fn summary_json(summary: &RunSummary, record: &RunRecord, record_path: &Path) -> Value {
    json!({
        "run_hash": summary.run_hash,
        "status": record.status,
        "error": record.error,
        "record": record_path.display().to_string(),
        "skipped": summary.skipped,
        "stages": summary.stages.iter().map(|s| json!({
            "name": s.name,
            "kind": s.kind,
            "status": s.status.as_str(),
            "key": s.key,
            "output_hash": s.manifest.output_hash,
            "output_dir": s.out_dir.display().to_string(),
            "seconds": s.seconds,
            "summary": s.manifest.report.summary,
            "stats": s.manifest.report.stats,
            "metrics": s.manifest.report.metrics,
            "gates": s.manifest.report.gates,
        })).collect::<Vec<_>>(),
    })
}

fn cmd_reproduce(r: &RunRecord, cache: &Cache, registry: &Registry, jobs: usize) -> Result<i32> {
    let dir = PathBuf::from(&r.recipe_dir);
    let file = Path::new(&r.recipe_path)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| "recipe.yaml".into());
    let path = dir.join(file);
    println!(
        "reproducing run {} ({}) from its record",
        short(&r.run_hash),
        r.recipe_name
    );
    // Inputs first: a missing or changed input explains a mismatch before it happens.
    let memo = FileMemo::load(cache.memo_path());
    let mut input_problems = 0;
    for (p, hash) in &r.input_files {
        let abs = dir.join(p);
        match memo.hash_path(&abs) {
            Ok((h, _)) if h == *hash => {}
            Ok((h, _)) => {
                input_problems += 1;
                println!(
                    "input {p} changed (blake3 {}.. -> {}..)",
                    &hash[..8],
                    &h[..8]
                );
            }
            Err(_) => {
                input_problems += 1;
                println!("input {p} is missing");
            }
        }
    }
    let loc = Loc::new(std::sync::Arc::new(path.clone()), 0, 0);
    let tree = Node::from_json(&r.resolved, &loc);
    let recipe = Recipe::from_tree(tree, &path)?;
    let plan = plan(recipe, registry)?;
    // A private cache: every stage recomputes, nothing is published to the real one.
    let scratch = Cache::new(cache.root.join("reproduce").join(format!(
        "{}-{}",
        short(&r.run_hash),
        std::process::id()
    )));
    let only: Vec<&str> = r.stages.iter().map(|s| s.name.as_str()).collect();
    let until = plan
        .stages
        .iter()
        .rev()
        .find(|s| only.contains(&s.name.as_str()))
        .map(|s| s.name.clone());
    let opts = RunOptions {
        force: vec![],
        force_all: true,
        until: if only.len() == plan.stages.len() {
            None
        } else {
            until
        },
        jobs,
        verify: false,
        threads: threads_per_stage(jobs),
    };
    let reporter = Reporter::new(false);
    let summary = run(&plan, &scratch, &memo, &opts, &reporter);
    let _ = std::fs::remove_dir_all(&scratch.root);
    let summary = summary?;
    let mut bad = input_problems;
    let width = r.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for recorded in &r.stages {
        let Some(now) = summary.stages.iter().find(|s| s.name == recorded.name) else {
            bad += 1;
            println!("{:width$}  NOT RUN", recorded.name);
            continue;
        };
        if now.manifest.output_hash == recorded.output_hash {
            println!(
                "{:width$}  identical  (output {})",
                recorded.name,
                short(&recorded.output_hash)
            );
        } else {
            bad += 1;
            println!(
                "{:width$}  DIFFERENT  (recorded output {}, now {})",
                recorded.name,
                short(&recorded.output_hash),
                short(&now.manifest.output_hash)
            );
            let why = record::explain_parts(&recorded.name, &recorded.parts, &now.parts);
            if why.is_empty() {
                println!(
                    "{:width$}    same inputs and params: stage `{}` ({}) is not deterministic",
                    "", recorded.name, recorded.kind
                );
            }
            for w in why {
                println!("{:width$}    {w}", "");
            }
        }
    }
    if let Some((stage, e)) = &summary.error {
        println!("stage {stage} failed while reproducing");
        print_error(e);
        return Ok(1);
    }
    if bad == 0 {
        println!("reproduced: every stage is bit-identical");
        Ok(0)
    } else {
        println!("not reproduced: {bad} difference(s)");
        Ok(1)
    }
}

fn cmd_explain(registry: &Registry, kind: Option<&str>, markdown: bool) -> Result<i32> {
    if markdown {
        print!("{}", crate::schema::reference_markdown(registry));
        return Ok(0);
    }
    let Some(kind) = kind else {
        let width = registry.kinds().map(str::len).max().unwrap_or(0);
        for k in registry.kinds() {
            let stage = registry.get(k).expect("listed kind");
            println!("{k:width$}  {}", stage.about());
        }
        println!();
        println!("`pipe explain KIND` describes a kind's params");
        return Ok(0);
    };
    let Some(stage) = registry.get(kind) else {
        let err = Error::usage(format!("no stage kind `{kind}`"));
        return Err(match crate::error::closest(kind, registry.kinds()) {
            Some(best) => err.with_hint(format!("did you mean `{best}`?")),
            None => err.with_hint("`pipe explain` lists the kinds"),
        });
    };
    println!(
        "{kind} (code version {}): {}",
        stage.code_version(),
        stage.about()
    );
    println!();
    for d in crate::schema::key_docs(&stage.params_schema()) {
        let depth = d.path.matches('.').count();
        let indent = "  ".repeat(depth + 1);
        let extra = match (&d.default, d.required) {
            (_, true) => " (required)".to_owned(),
            (Some(v), _) => format!(" (default {v})"),
            (None, _) => String::new(),
        };
        println!("{indent}{}: {}{extra}", d.path, d.ty);
        for line in d.description.lines() {
            println!("{indent}    {line}");
        }
    }
    println!();
    println!("{}", crate::schema::KEY_NOTE);
    Ok(0)
}

fn cmd_gc(cache: &Cache, keep_last: Option<usize>, dry_run: bool) -> Result<i32> {
    if !cache.root.join("cache").exists() {
        println!("nothing to collect in {}", cache.root.display());
        return Ok(0);
    }
    let _guard = cache.gc_guard()?;
    let runs = record::list(cache);
    let kept = &runs[..keep_last.unwrap_or(runs.len()).min(runs.len())];
    let keep: std::collections::HashSet<&str> = kept
        .iter()
        .flat_map(|r| r.stages.iter().map(|s| s.key.as_str()))
        .collect();
    let mut freed = 0u64;
    let mut removed = 0usize;
    let cache_dir = cache.root.join("cache");
    let mut entries: Vec<_> = std::fs::read_dir(&cache_dir)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let key = e.file_name().to_string_lossy().into_owned();
        if keep.contains(key.as_str()) || cache.is_locked(&key) {
            continue;
        }
        let size = dir_size(&e.path());
        freed += size;
        removed += 1;
        if !dry_run {
            std::fs::remove_dir_all(e.path())
                .map_err(|err| Error::io("cannot remove", e.path(), err))?;
        }
    }
    for extra in ["quarantine", "reproduce"] {
        let p = cache.root.join(extra);
        if p.exists() {
            freed += dir_size(&p);
            if !dry_run {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {removed} cache entries, {} ({} runs kept of {})",
        human_bytes(freed),
        kept.len(),
        runs.len()
    );
    Ok(0)
}

//! `pipe review export RUN_HASH --out review/` and `pipe review import
//! review/scores.csv`: blind review of an eval stage's answers by experts (#9).
//!
//! Where things go:
//! - export writes the pack, `OUT/review.html` (a scoring form that saves a CSV)
//!   and `OUT/scores.csv` (the same items for spreadsheets), and the key
//!   (labels -> systems) to `OUT.key.json` *beside* the pack, so the folder can be
//!   sent to reviewers as it is.
//! - import reads one or more score CSVs (one per reviewer is fine), un-blinds
//!   them with the key (default: `<folder of the first CSV>.key.json`) and writes,
//!   next to the first CSV, `review.json` (the summary), `review.md` (its
//!   section) and `report.md`: a copy of the run's report with the
//!   `## Blind review` section appended. The cached report is never modified:
//!   cache entries are content-addressed outputs of the recipe.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pipe_eval::report::{ExampleRecord, PREDICTIONS_FILE, REPORT_MD};
use pipe_eval::review::{
    ReviewKey, SCALE, blind, pack_csv, pack_html, read_scores, summarize, summary_md,
};
use pipe_pipeline::cache::Cache;
use pipe_pipeline::cli::{GlobalArgs, find_cache};
use pipe_pipeline::error::Error;
use pipe_pipeline::record;

#[derive(Debug, clap::Subcommand)]
pub enum ReviewCommand {
    /// Write a blind review pack (HTML form + CSV) of a run's eval answers; the key goes beside it.
    Export(ExportArgs),
    /// Un-blind returned scores: mean per system with 95% interval, win rates, reviewer agreement;
    /// writes review.json, review.md and report.md (the run's report + the review) next to the first CSV.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Run hash (or prefix) from `pipe runs`.
    pub run: String,
    /// The pack folder to write (review.html, scores.csv).
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the key (default: OUT.key.json, beside the pack, never inside it).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The eval stage, when the run has several.
    #[arg(long)]
    pub stage: Option<String>,
    /// Systems to show, comma-separated (default: every column of the report).
    #[arg(long, value_delimiter = ',')]
    pub systems: Option<Vec<String>>,
    /// Show the reference answer to reviewers.
    #[arg(long)]
    pub with_reference: bool,
    /// Seed of the answer order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Only the first N test examples.
    #[arg(long)]
    pub max_items: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Score CSVs (columns item, label, score, and reviewer when several people scored).
    #[arg(required = true)]
    pub scores: Vec<PathBuf>,
    /// The key written by `pipe review export` (default: <pack folder>.key.json).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, command: &ReviewCommand) -> Result<i32, Error> {
    match command {
        ReviewCommand::Export(a) => export(global, a),
        ReviewCommand::Import(a) => import(a),
    }
}

/// `review/` -> `review.key.json` beside it.
fn default_key(pack: &Path) -> Result<PathBuf, Error> {
    let abs = std::path::absolute(pack).map_err(|e| Error::io("cannot resolve", pack, e))?;
    let name = abs
        .file_name()
        .ok_or_else(|| Error::usage(format!("{} has no folder name", pack.display())))?;
    Ok(abs.with_file_name(format!("{}.key.json", name.to_string_lossy())))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io("cannot write", path, e))
}

fn export(global: &GlobalArgs, args: &ExportArgs) -> Result<i32, Error> {
    let cache = Cache::new(find_cache(&global.cache_dir)?);
    let run = record::find(&cache, &args.run)?;
    let stage = super::pick_stage(&run, "eval", args.stage.as_deref())?;
    let report_dir = Path::new(&stage.out_dir).join("report");
    let predictions = report_dir.join(PREDICTIONS_FILE);
    let text = super::read_text(&predictions, "the eval stage's predictions").map_err(|e| {
        e.with_hint("the entry may have been removed by `pipe gc`; `pipe run` the recipe again")
    })?;
    let mut examples: Vec<ExampleRecord> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        examples.push(serde_json::from_str(line).map_err(|e| {
            Error::usage(format!("{}: line {}: {e}", predictions.display(), i + 1))
        })?);
    }
    if let Some(n) = args.max_items {
        examples.truncate(n);
    }
    let present: BTreeSet<&String> = examples.iter().flat_map(|e| e.outputs.keys()).collect();
    let systems: Vec<String> = match &args.systems {
        Some(s) => {
            if let Some(bad) = s.iter().find(|s| !present.contains(s)) {
                return Err(Error::usage(format!(
                    "no system `{bad}` in the report; it has {}",
                    present
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            s.clone()
        }
        None => present.iter().map(|s| s.to_string()).collect(),
    };
    if systems.len() < 2 {
        return Err(Error::usage(format!(
            "a blind review compares at least two systems; the report has {}",
            systems.join(", ")
        ))
        .with_hint(
            "evaluate with `compare_base: true`, `compare_prompted` or `compare: [other]`",
        ));
    }
    let key_path = match &args.key {
        Some(k) => std::path::absolute(k).map_err(|e| Error::io("cannot resolve", k, e))?,
        None => default_key(&args.out)?,
    };
    let out_abs =
        std::path::absolute(&args.out).map_err(|e| Error::io("cannot resolve", &args.out, e))?;
    if key_path.starts_with(&out_abs) {
        return Err(Error::usage(format!(
            "the key {} would be inside the pack {}",
            key_path.display(),
            args.out.display()
        ))
        .with_hint("the reviewers must not see it: put `--key` outside the pack folder"));
    }
    let (items, map) = blind(&examples, &systems, args.seed, args.with_reference);
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io("cannot create", &args.out, e))?;
    let title = format!("{} ({})", stage.name, record::short(&run.run_hash));
    write(&args.out.join("review.html"), &pack_html(&items, &title))?;
    write(&args.out.join("scores.csv"), &pack_csv(&items))?;
    let key = ReviewKey {
        run: run.run_hash.clone(),
        stage: stage.name.clone(),
        seed: args.seed,
        report_dir: Some(report_dir.display().to_string()),
        systems,
        scale: SCALE,
        items: map,
    };
    write(
        &key_path,
        &(serde_json::to_string_pretty(&key).expect("serializes") + "\n"),
    )?;
    println!(
        "{} items x {} systems -> {} (review.html, scores.csv); key: {} (keep it from the reviewers)",
        items.len(),
        key.systems.len(),
        args.out.display(),
        key_path.display()
    );
    Ok(0)
}

fn import(args: &ImportArgs) -> Result<i32, Error> {
    let first = &args.scores[0];
    let folder = first.parent().filter(|p| !p.as_os_str().is_empty());
    let key_path = match (&args.key, folder) {
        (Some(k), _) => k.clone(),
        (None, Some(f)) => default_key(f)?,
        (None, None) => {
            return Err(Error::usage("no key given")
                .with_hint("pass `--key FILE` (written by `pipe review export`)"));
        }
    };
    let key: ReviewKey = serde_json::from_str(&super::read_text(&key_path, "the review key")?)
        .map_err(|e| Error::usage(format!("{}: not a review key: {e}", key_path.display())))?;
    let mut scores = Vec::new();
    let mut seen = BTreeSet::new();
    for path in &args.scores {
        let text = super::read_text(path, "scores")?;
        for s in read_scores(path, &text, &key).map_err(|e| Error::usage(e.to_string()))? {
            if !seen.insert((s.reviewer.clone(), s.item, s.label.clone())) {
                return Err(Error::usage(format!(
                    "{}: {} scored item {} answer {} in an earlier file too",
                    path.display(),
                    s.reviewer,
                    s.item,
                    s.label
                )));
            }
            scores.push(s);
        }
    }
    let summary = summarize(&scores, &key);
    let section = summary_md(&summary);
    let out = folder.unwrap_or(Path::new("."));
    write(
        &out.join("review.json"),
        &(serde_json::to_string_pretty(&summary).expect("serializes") + "\n"),
    )?;
    write(&out.join("review.md"), &section)?;
    let original = key
        .report_dir
        .as_ref()
        .map(|d| Path::new(d).join(REPORT_MD))
        .and_then(|p| std::fs::read_to_string(p).ok());
    let mut written = vec!["review.json", "review.md"];
    if let Some(report) = original {
        write(&out.join(REPORT_MD), &(report + &section))?;
        written.push(REPORT_MD);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("serializes")
        );
    } else {
        print!("{section}");
        println!("wrote {} in {}", written.join(", "), out.display());
    }
    Ok(0)
}

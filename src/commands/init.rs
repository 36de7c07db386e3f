//! `pipe init DATA_FILE`: look at a data file (format, shape, rows, labels,
//! lengths) and write a commented starter recipe that runs as is.
//!
//! The recipe is written as text, not serialized, so that every choice can
//! carry a comment saying why it was made and what to change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use pipe_data::ingest::{IngestParams, ingest};
use pipe_pipeline::error::Error;
use pipe_rows::Row;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Learn to write the responses; scored with ROUGE/BLEU.
    Generation,
    /// Learn to answer with one of a few labels; scored with accuracy/F1.
    Classification,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The data file: JSONL, JSON, CSV, TSV or Parquet; alpaca, sharegpt, messages,
    /// text+label or multiple-choice rows; or LLaMA-Factory's dataset_info.json.
    pub data: PathBuf,
    /// The base model.
    #[arg(long, default_value = "builtin:tiny")]
    pub model: String,
    /// What to learn (default: classification when rows have a small label set).
    #[arg(long, value_enum)]
    pub task: Option<Task>,
    /// Where to write the recipe (default: `<data file stem>.yaml` in the current folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite an existing recipe file.
    #[arg(long)]
    pub force: bool,
}

/// What the data file holds.
struct Profile {
    shape: String,
    rows: usize,
    rejected: usize,
    first_rejects: Vec<String>,
    /// Label -> count, when every row has a label.
    labels: Option<BTreeMap<String, usize>>,
    prompt_chars: Percentiles,
    response_chars: Percentiles,
    /// Share of letters that are Han characters.
    han_share: f64,
    /// `{{name}}`-style placeholders found in the text (LLaMA-Factory's identity.json).
    placeholders: Vec<String>,
}

#[derive(Default)]
struct Percentiles {
    p50: usize,
    p95: usize,
    max: usize,
}

impl Percentiles {
    fn of(mut v: Vec<usize>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.5),
            p95: at(0.95),
            max: *v.last().expect("non-empty"),
        }
    }
}

fn prompt_text(row: &Row) -> String {
    let mut s = row.system.clone().unwrap_or_default();
    for m in row.messages.iter().filter(|m| m.role != "assistant") {
        s.push_str(&m.content);
    }
    s
}

fn response_text(row: &Row) -> String {
    row.messages
        .iter()
        .filter(|m| m.role == "assistant")
        .map(|m| m.content.as_str())
        .collect()
}

fn profile(params: &IngestParams, base: &Path) -> Result<Profile, Error> {
    let out = ingest(params, base).map_err(|e| Error::usage(e.to_string()))?;
    if out.rows.is_empty() {
        let why = out
            .rejected
            .first()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        return Err(Error::usage(format!("no usable rows in the data{why}"))
            .with_hint("check the file's shape (`format:`) and columns (`columns:`); `pipe explain ingest` lists them"));
    }
    let labels = out.rows.iter().all(|r| r.label.is_some()).then(|| {
        let mut counts = BTreeMap::new();
        for r in &out.rows {
            *counts
                .entry(r.label.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        counts
    });
    let (mut han, mut letters) = (0usize, 0usize);
    for r in out.rows.iter().take(2000) {
        for c in prompt_text(r).chars().chain(response_text(r).chars()) {
            if c.is_alphabetic() {
                letters += 1;
                if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                    han += 1;
                }
            }
        }
    }
    let mut placeholders: Vec<String> = Vec::new();
    for r in out.rows.iter().take(2000) {
        let text = response_text(r);
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else {
                break;
            };
            let name = &rest[start..start + len + 2];
            if name.len() <= 40 && !placeholders.iter().any(|p| p == name) {
                placeholders.push(name.to_owned());
            }
            rest = &rest[start + len + 2..];
        }
    }
    Ok(Profile {
        placeholders,
        shape: out
            .files
            .iter()
            .map(|f| f.shape.clone())
            .collect::<Vec<_>>()
            .join("; "),
        rows: out.rows.len(),
        rejected: out.rejected.len(),
        first_rejects: out.rejected.iter().take(3).map(|r| r.to_string()).collect(),
        labels,
        prompt_chars: Percentiles::of(
            out.rows
                .iter()
                .map(|r| prompt_text(r).chars().count())
                .collect(),
        ),
        response_chars: Percentiles::of(
            out.rows
                .iter()
                .map(|r| response_text(r).chars().count())
                .collect(),
        ),
        han_share: if letters == 0 {
            0.0
        } else {
            han as f64 / letters as f64
        },
    })
}

/// `to` relative to the folder `from` (both made absolute), `/`-separated.
fn relative(to: &Path, from: &Path) -> String {
    let (Ok(to), Ok(from)) = (std::path::absolute(to), std::path::absolute(from)) else {
        return to.display().to_string();
    };
    let normal = |p: &Path| -> Vec<String> {
        let mut parts: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        parts
    };
    let (t, f) = (normal(&to), normal(&from));
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    if common == 0 {
        // Nothing shared but the root: an absolute path reads better than ../../..
        return to.display().to_string();
    }
    let mut parts: Vec<String> = vec!["..".to_owned(); f.len() - common];
    parts.extend(t[common..].iter().cloned());
    parts.join("/")
}

/// A YAML scalar for any string (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Is this a LLaMA-Factory `dataset_info.json` (name -> {file_name, formatting, columns})?
fn dataset_info(path: &Path) -> Option<serde_json::Map<String, Value>> {
    if path.extension()? != "json" {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let Value::Object(map) = serde_json::from_str(&text).ok()? else {
        return None;
    };
    let is_registry = !map.is_empty()
        && map.values().all(|v| {
            v.get("file_name").is_some()
                || v.get("hf_hub_url").is_some()
                || v.get("ms_hub_url").is_some()
        });
    is_registry.then_some(map)
}

/// Ingest sources for the datasets of a `dataset_info.json` whose files are present.
fn registry_sources(
    map: &serde_json::Map<String, Value>,
    info_dir: &Path,
    recipe_dir: &Path,
) -> (Vec<Value>, Vec<String>) {
    let mut sources = Vec::new();
    let mut skipped = Vec::new();
    for (name, entry) in map {
        let Some(file) = entry.get("file_name").and_then(Value::as_str) else {
            continue;
        };
        let path = info_dir.join(file);
        if !path.is_file() {
            skipped.push(name.clone());
            continue;
        }
        let mut source = json!({"path": relative(&path, recipe_dir), "task": name});
        match entry.get("formatting").and_then(Value::as_str) {
            Some("sharegpt") => source["format"] = json!("sharegpt"),
            Some("alpaca") => source["format"] = json!("alpaca"),
            _ => {}
        }
        let mut columns = serde_json::Map::new();
        if let Some(Value::Object(c)) = entry.get("columns") {
            for (k, v) in c {
                if [
                    "prompt", "query", "response", "history", "system", "messages", "tools",
                ]
                .contains(&k.as_str())
                {
                    columns.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(Value::Object(t)) = entry.get("tags") {
            for k in ["role_tag", "content_tag"] {
                if let Some(v) = t.get(k) {
                    columns.insert(k.to_owned(), v.clone());
                }
            }
        }
        if !columns.is_empty() {
            source["columns"] = Value::Object(columns);
        }
        sources.push(source);
    }
    (sources, skipped)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(what, path, e)
}

pub fn run(args: &InitArgs) -> Result<i32, Error> {
    if !args.data.exists() {
        return Err(Error::usage(format!(
            "{} does not exist",
            args.data.display()
        )));
    }
    let stem = args
        .data
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recipe".into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{stem}.yaml")));
    if out.exists() && !args.force {
        return Err(Error::usage(format!("{} already exists", out.display()))
            .with_hint("pass `--force` to overwrite it, or `--out` another file"));
    }
    let recipe_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&recipe_dir).map_err(|e| io_error("cannot create", &recipe_dir, e))?;

    // The ingest stage as it will be written, and the same params to profile the data.
    let (ingest_yaml, params, notes) = match dataset_info(&args.data) {
        Some(map) => {
            let info_dir = args.data.parent().unwrap_or(Path::new("."));
            let (sources, skipped) = registry_sources(&map, info_dir, &recipe_dir);
            if sources.is_empty() {
                return Err(Error::usage(format!(
                    "{}: none of its {} datasets has its file next to it",
                    args.data.display(),
                    map.len()
                )));
            }
            let mut yaml = String::from(
                "    # One source per dataset of the LLaMA-Factory registry whose file is here,\n    # with its `formatting` and `columns`; `task` keeps the dataset's name.\n    sources:\n",
            );
            for s in &sources {
                writeln!(yaml, "      - {s}").expect("write to string");
            }
            let params: IngestParams =
                serde_json::from_value(json!({"sources": sources, "max_rejected": 1.0}))
                    .map_err(|e| Error::usage(e.to_string()))?;
            let note = if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "{} datasets of the registry have no local file and are left out.",
                    skipped.len()
                )
            };
            (yaml, params, note)
        }
        None => {
            let path = relative(&args.data, &recipe_dir);
            let params: IngestParams =
                serde_json::from_value(json!({"path": path, "max_rejected": 1.0}))
                    .map_err(|e| Error::usage(e.to_string()))?;
            (format!("    path: {}\n", q(&path)), params, String::new())
        }
    };
    let p = profile(&params, &recipe_dir)?;
    let out_name = out.display().to_string();
    let text = recipe_text(
        args,
        &stem,
        &out_name,
        &recipe_dir,
        &ingest_yaml,
        &p,
        &notes,
    );
    std::fs::write(&out, &text).map_err(|e| io_error("cannot write", &out, e))?;

    eprintln!(
        "{}: {} rows ({}), {} rejected",
        args.data.display(),
        p.rows,
        p.shape,
        p.rejected
    );
    for r in &p.first_rejects {
        eprintln!("  rejected {r}");
    }
    eprintln!("wrote {}", out.display());
    eprintln!("next: pipe run {}", out.display());
    Ok(0)
}

/// Classification when every row has a label and the labels are a small set
/// of short strings, unless the user said otherwise.
fn choose_task(args: &InitArgs, p: &Profile) -> (Task, String) {
    if let Some(t) = args.task {
        return (t, "chosen with --task".into());
    }
    match &p.labels {
        Some(labels) if labels.len() <= 20 && labels.keys().all(|l| l.chars().count() <= 40) => (
            Task::Classification,
            format!("every row has one of {} short labels", labels.len()),
        ),
        Some(labels) => (
            Task::Generation,
            format!("{} distinct answers is not a label set", labels.len()),
        ),
        None => (
            Task::Generation,
            "rows are instruction/response pairs".into(),
        ),
    }
}

/// The schema comment editors read, when a `pipe-recipe.schema.json` is in the
/// recipe's folder or above it.
fn schema_comment(recipe_dir: &Path) -> Option<String> {
    let dir = std::path::absolute(recipe_dir).ok()?;
    let found = dir
        .ancestors()
        .map(|d| d.join(pipe_pipeline::schema::SCHEMA_FILE))
        .find(|f| f.is_file())?;
    Some(format!(
        "# yaml-language-server: $schema={}",
        relative(&found, &dir)
    ))
}

#[allow(clippy::too_many_arguments)]
fn recipe_text(
    args: &InitArgs,
    stem: &str,
    out_name: &str,
    recipe_dir: &Path,
    ingest_yaml: &str,
    p: &Profile,
    notes: &str,
) -> String {
    let (task, why_task) = choose_task(args, p);
    let chinese = p.han_share > 0.3;
    let builtin = args.model.starts_with("builtin:");
    // builtin:tiny tokenizes bytes (a CJK character is 3 tokens); real BPE
    // vocabularies average ~3.5 characters per token in English.
    let chars = p.prompt_chars.p95 + p.response_chars.p95;
    let tokens = if builtin {
        chars * if chinese { 3 } else { 1 }
    } else {
        chars / 3 + 16
    };
    // builtin:tiny is trained for short contexts; a real model gets up to 2048.
    let cap = if builtin { 512 } else { 2048 };
    let max_len = tokens.clamp(128, cap).next_power_of_two().min(cap);
    let test_fraction = if p.rows < 200 { 0.2 } else { 0.1 };
    // Stratifying gives each label its share of the test split, which is
    // nothing for a label too rare to have one test row.
    let rarest = p
        .labels
        .as_ref()
        .and_then(|l| l.values().min().copied())
        .unwrap_or(0);
    let stratify = task == Task::Classification && rarest as f64 * test_fraction >= 1.0;
    let (steps, batch) = if builtin { (30, 4) } else { (200, 4) };

    let mut s = String::new();
    let w = &mut s;
    let line = |w: &mut String, t: &str| {
        w.push_str(t);
        w.push('\n');
    };
    match schema_comment(recipe_dir) {
        Some(c) => line(w, &c),
        None => line(
            w,
            "# (`pipe schema > pipe-recipe.schema.json` gives editors completion for this file)",
        ),
    }
    line(w, "#");
    line(
        w,
        &format!(
            "# Starter recipe written by `pipe init {}`.",
            args.data.display()
        ),
    );
    line(
        w,
        &format!("# The data: {} rows, read as {}.", p.rows, p.shape),
    );
    if p.rejected > 0 {
        line(
            w,
            &format!(
                "# {} records could not be read; ingest keeps them in its `rejected` output.",
                p.rejected
            ),
        );
    }
    line(
        w,
        &format!(
            "# Lengths in characters (median / 95th percentile / longest): prompt {} / {} / {}, response {} / {} / {}.",
            p.prompt_chars.p50,
            p.prompt_chars.p95,
            p.prompt_chars.max,
            p.response_chars.p50,
            p.response_chars.p95,
            p.response_chars.max
        ),
    );
    if let Some(labels) = &p.labels
        && task == Task::Classification
    {
        let list: Vec<String> = labels.iter().map(|(l, n)| format!("{l} ({n})")).collect();
        line(w, &format!("# Labels: {}.", list.join(", ")));
    }
    if !notes.is_empty() {
        line(w, &format!("# {notes}"));
    }
    line(
        w,
        &format!(
            "# Task: {} ({why_task}).",
            match task {
                Task::Generation => "generation",
                Task::Classification => "classification",
            }
        ),
    );
    line(w, "#");
    line(
        w,
        &format!("#   pipe run {out_name}    # then open the eval stage's report.html"),
    );
    line(
        w,
        "#   pipe explain KIND           # every key of a stage kind, with defaults",
    );
    line(w, &format!("name: {}", q(stem)));
    line(w, "seed: 42");
    if builtin {
        line(
            w,
            "# builtin:tiny is a small model generated in code: it runs anywhere, offline, in",
        );
        line(
            w,
            "# minutes, and learns little. Swap in a real model (a Hugging Face folder, a cached",
        );
        line(
            w,
            "# hub id or a .gguf file) and raise `max_steps` when the pipeline looks right.",
        );
    }
    line(w, &format!("model: {}", q(&args.model)));
    line(w, "");
    line(w, "stages:");
    line(w, "  raw:");
    line(w, "    kind: ingest");
    w.push_str(ingest_yaml);
    if !p.placeholders.is_empty() {
        let pairs: Vec<String> = p
            .placeholders
            .iter()
            .map(|ph| format!("{}: {}", q(ph), q("...")))
            .collect();
        line(
            w,
            "    # The data has placeholders; fill them in (LLaMA-Factory's identity.json style):",
        );
        line(w, &format!("    # replace: {{{}}}", pairs.join(", ")));
    }
    line(
        w,
        "    # Records that cannot be read are kept in the `rejected` output with file, line and",
    );
    line(
        w,
        "    # reason; the stage fails when more than this share of them is bad.",
    );
    line(
        w,
        &format!(
            "    max_rejected: {}",
            if p.rejected > 0 { "0.05" } else { "0.0" }
        ),
    );
    line(w, "");
    line(w, "  clean:");
    line(w, "    kind: dedup");
    line(w, "    from: raw");
    line(
        w,
        "    # Exact duplicates (normalized text) and near duplicates (MinHash, ~0.8 Jaccard)",
    );
    line(
        w,
        "    # go to the `removed` output with the row each one duplicates.",
    );
    line(w, "    near: {}");
    line(w, "");
    line(w, "  good:");
    line(w, "    kind: filter");
    line(w, "    from: clean");
    if task == Task::Classification {
        line(
            w,
            "    # Labels are short by design, so the length and language rules of the presets",
        );
        line(
            w,
            "    # would drop them; only broken text is removed. Dropped rows keep their reason.",
        );
        line(w, "    drop_control_chars: true");
    } else if chinese {
        line(
            w,
            "    # Mostly Chinese text: empty/placeholder answers, refusals, repetition, symbol",
        );
        line(
            w,
            "    # noise and answers with too little Han script are dropped (kept in `dropped`).",
        );
        line(w, "    preset: sft-zh");
    } else {
        line(
            w,
            "    # Empty/placeholder answers, refusals, repetition, symbol noise and non-Latin",
        );
        line(
            w,
            "    # answers are dropped (kept in `dropped` with the rule). Legal text: `preset: legal`.",
        );
        line(w, "    preset: sft-en");
    }
    line(w, "");
    // A hash split of a handful of rows can leave the test side empty.
    let held_out = p.rows >= 10;
    if held_out {
        line(w, "  split:");
        line(w, "    kind: split");
        line(w, "    from: good");
        line(
            w,
            "    # Hash-based: adding rows later never moves existing rows between splits.",
        );
        line(w, &format!("    test_fraction: {test_fraction}"));
        if stratify {
            line(w, "    # Every label keeps its share in train and test.");
            line(w, "    stratify_by: label");
        }
        line(w, "");
    }
    line(w, "  chat:");
    line(w, "    kind: render");
    line(
        w,
        if held_out {
            "    from: split"
        } else {
            "    from: good"
        },
    );
    line(
        w,
        "    # The model's own chat template: what it trains on is what it will be served with.",
    );
    line(w, "    template: model");
    line(w, "");
    line(w, "  tokens:");
    line(w, "    kind: tokenize");
    line(w, "    from: chat");
    line(
        w,
        "    # Covers the 95th percentile of prompt + response; longer rows lose the end of",
    );
    line(
        w,
        "    # the response (`truncate: drop` skips them instead).",
    );
    line(w, &format!("    max_len: {max_len}"));
    line(
        w,
        "    # Several short examples share a sequence; attention never crosses examples.",
    );
    line(w, "    pack: true");
    line(w, "");
    line(w, "  adapter:");
    line(w, "    kind: train");
    line(w, "    from: tokens");
    line(w, "    lora: {rank: 8, alpha: 16, targets: [all-linear]}");
    line(
        w,
        "    # A short run to check the pipeline; raise it for a real model (`epochs: 2` instead).",
    );
    line(w, &format!("    max_steps: {steps}"));
    line(w, &format!("    batch_size: {batch}"));
    line(
        w,
        &format!("    lr: {}", if builtin { "2.0e-3" } else { "2.0e-4" }),
    );
    line(w, "    schedule: cosine");
    line(w, "    warmup_ratio: 0.1");
    line(w, "");
    line(w, "  report:");
    line(w, "    kind: eval");
    if held_out {
        line(w, "    from: [adapter, chat.test]");
    } else {
        line(
            w,
            &format!(
                "    # Only {} rows: too few to hold any out, so the report scores the training",
                p.rows
            ),
        );
        line(
            w,
            "    # rows. That shows the pipeline works, not that the adapter generalizes.",
        );
        line(w, "    from: [adapter, chat]");
    }
    line(
        w,
        "    # The base model answers the same prompts: every metric gets a base column.",
    );
    line(w, "    compare_base: true");
    match task {
        Task::Classification => {
            line(
                w,
                "    # The label found in each answer is scored like scikit-learn does.",
            );
            line(w, "    metrics: [accuracy, f1, loss]");
            line(w, "    max_new_tokens: 16");
        }
        Task::Generation => {
            line(w, "    metrics: [rouge, bleu, loss]");
            if chinese {
                line(
                    w,
                    "    # rouge-score's own tokenizer drops Chinese; count characters instead.",
                );
                line(w, "    rouge_tokenizer: cjk");
                line(w, "    bleu_tokenize: zh");
            }
            let new_tokens = if builtin {
                64
            } else {
                (p.response_chars.p95 / 3).clamp(32, 512)
            };
            line(w, &format!("    max_new_tokens: {new_tokens}"));
        }
    }
    line(w, "    max_examples: 50");
    line(
        w,
        "    # CI gates: a failed one makes `pipe run` exit 3. For example:",
    );
    line(w, "    # gates: {eval_loss: \"<= base - 0.1\"}");
    s
}

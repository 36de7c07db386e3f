//! Registers the `pipe-data` stage kinds: `ingest`, `dedup`, `filter`, `split`.
//!
//! Each adapter parses its params strictly, re-serializes them with defaults
//! resolved (that JSON is the cache key), reads upstream `rows.parquet` tables,
//! calls the `pipe-data` function and writes the kept rows plus a side table
//! (`rejected`, `removed`, `dropped`) saying row by row what was set aside.

use std::path::PathBuf;

use pipe_data::DataError;
use pipe_data::dedup::{DEDUP_CODE_VERSION, DedupParams, dedup};
use pipe_data::filter::{FILTER_CODE_VERSION, FilterParams, filter_with_tokens};
use pipe_data::ingest::{INGEST_CODE_VERSION, IngestParams, expand_sources, ingest};
use pipe_data::split::{SPLIT_CODE_VERSION, SplitParams, split};
use pipe_data::table::{SideColumn, write_side_table};
use pipe_data::text::{prompt_text, response_text};
use pipe_pipeline::stage::{
    PlanEnv, Registry, RunContext, Stage, StageError, StagePlan, StageReport,
};
use pipe_rows::{ROWS_FILE, Row, read_rows, write_rows};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::parse_params;

pub fn register(registry: &mut Registry) {
    registry.add(Ingest);
    registry.add(Dedup);
    registry.add(Filter);
    registry.add(Split);
}

/// Side-table file names inside their output folders.
pub const REJECTED_FILE: &str = "rejected.parquet";
pub const REMOVED_FILE: &str = "removed.parquet";
pub const DROPPED_FILE: &str = "dropped.parquet";
pub const LEAKAGE_FILE: &str = "leakage.parquet";

fn stage_error(err: DataError) -> StageError {
    match err {
        DataError::Params { key, message } => StageError::params(message).with_key(key),
        DataError::TooManyRejected { .. } => StageError::input(err.to_string())
            .with_hint("see the `rejected` output for every bad record, or raise `max_rejected`"),
        DataError::Input { .. } | DataError::Io { .. } => StageError::input(err.to_string()),
        other => StageError::failed(other.to_string()).with_source(other),
    }
}

fn canonical<T: Serialize>(params: &T) -> Result<Value, StageError> {
    serde_json::to_value(params)
        .map_err(|e| StageError::failed(format!("cannot serialize params: {e}")))
}

fn out_file(ctx: &RunContext<'_>, output: &str, file: &str) -> Result<PathBuf, StageError> {
    let dir = ctx.output_dir(output);
    std::fs::create_dir_all(&dir).map_err(|e| {
        StageError::failed(format!("cannot create {}: {e}", dir.display())).with_source(e)
    })?;
    Ok(dir.join(file))
}

fn write_table(ctx: &RunContext<'_>, output: &str, rows: &[Row]) -> Result<(), StageError> {
    let path = out_file(ctx, output, ROWS_FILE)?;
    write_rows(&path, rows).map_err(|e| stage_error(e.into()))
}

/// Every upstream table in `from:` order: the selected output, else the primary one.
fn read_inputs(ctx: &RunContext<'_>) -> Result<Vec<Vec<Row>>, StageError> {
    if ctx.inputs.is_empty() {
        return Err(StageError::params(
            "needs `from:` an upstream stage that yields rows",
        ));
    }
    ctx.inputs
        .iter()
        .map(|input| {
            let path = input.primary().join(ROWS_FILE);
            read_rows(&path).map_err(|e| {
                StageError::input(format!(
                    "stage `{}` (from `{}`): {e}",
                    ctx.stage_name, input.stage
                ))
                .with_hint("`from:` must name a stage that writes rows (ingest, dedup, filter, split.<name>)")
            })
        })
        .collect()
}

fn require_inputs(env: &PlanEnv<'_>) -> Result<(), StageError> {
    if env.inputs.is_empty() {
        return Err(StageError::params(format!(
            "stage `{}` needs `from:` an upstream stage that yields rows",
            env.stage_name
        ))
        .with_key("from"));
    }
    Ok(())
}

fn sample(rows: impl Iterator<Item = String>) -> Value {
    Value::Array(rows.take(3).map(Value::String).collect())
}

fn place(row: &Row) -> String {
    format!("{}:{}", row.source_file, row.source_row)
}

fn opt(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

struct Ingest;

impl Stage for Ingest {
    fn kind(&self) -> &'static str {
        "ingest"
    }
    fn code_version(&self) -> u32 {
        INGEST_CODE_VERSION
    }
    fn about(&self) -> &'static str {
        "read JSONL/JSON/CSV/TSV/Parquet (alpaca, sharegpt, messages, classification, choice) into canonical rows"
    }
    fn params_schema(&self) -> Value {
        pipe_data::params_schema::<IngestParams>()
    }
    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let p: IngestParams = parse_params(params)?;
        p.validate().map_err(stage_error)?;
        let mut files: Vec<PathBuf> = expand_sources(&p, env.recipe_dir)
            .map_err(stage_error)?
            .into_iter()
            .flat_map(|(_, files)| files)
            .map(PathBuf::from)
            .collect();
        files.sort();
        files.dedup();
        Ok(StagePlan {
            params: canonical(&p)?,
            outputs: vec!["rows".into(), "rejected".into()],
            files,
        })
    }
    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let p: IngestParams = parse_params(ctx.params)?;
        let out = ingest(&p, ctx.recipe_dir).map_err(stage_error)?;
        let rejected = &out.rejected;
        write_side_table(
            &out_file(ctx, "rejected", REJECTED_FILE)?,
            vec![
                (
                    "source_file",
                    SideColumn::Str(rejected.iter().map(|r| opt(&r.source_file)).collect()),
                ),
                (
                    "source_row",
                    SideColumn::U64(rejected.iter().map(|r| r.source_row).collect()),
                ),
                (
                    "reason",
                    SideColumn::Str(rejected.iter().map(|r| opt(&r.reason)).collect()),
                ),
                (
                    "raw",
                    SideColumn::Str(rejected.iter().map(|r| opt(&r.raw)).collect()),
                ),
            ],
        )
        .map_err(stage_error)?;
        // The check comes after the side table so a loosened rerun is not needed to see it
        // when running the library directly; a failed stage is not published anyway.
        out.check(p.max_rejected).map_err(stage_error)?;
        if out.rows.is_empty() && out.rejected.is_empty() {
            let files: Vec<&str> = out.files.iter().map(|f| f.file.as_str()).collect();
            return Err(StageError::input(format!(
                "no records in {}: the input is empty",
                files.join(", ")
            ))
            .with_key("path")
            .with_hint("check that the file was written completely, or point `path` at the data"));
        }
        write_table(ctx, "rows", &out.rows)?;
        let mut stats = Map::new();
        stats.insert("rows_in".into(), json!(out.rows.len() + rejected.len()));
        stats.insert("rows_out".into(), json!(out.rows.len()));
        stats.insert("rejected".into(), json!(rejected.len()));
        stats.insert(
            "files".into(),
            serde_json::to_value(&out.files).unwrap_or(Value::Null),
        );
        if !rejected.is_empty() {
            stats.insert(
                "rejected_sample".into(),
                sample(rejected.iter().map(|r| r.to_string())),
            );
        }
        let shapes: Vec<String> = out
            .files
            .iter()
            .map(|f| format!("{}: {}", f.file, f.shape))
            .collect();
        Ok(StageReport {
            summary: format!(
                "{} rows from {} files, {} rejected; {}",
                out.rows.len(),
                out.files.len(),
                rejected.len(),
                shapes.join("; ")
            ),
            stats,
            ..StageReport::default()
        })
    }
}

struct Dedup;

impl Stage for Dedup {
    fn kind(&self) -> &'static str {
        "dedup"
    }
    fn code_version(&self) -> u32 {
        DEDUP_CODE_VERSION
    }
    fn about(&self) -> &'static str {
        "remove exact (normalized) and near (MinHash LSH) duplicates, keeping the first occurrence"
    }
    fn params_schema(&self) -> Value {
        pipe_data::params_schema::<DedupParams>()
    }
    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let p: DedupParams = parse_params(params)?;
        p.validate().map_err(stage_error)?;
        require_inputs(env)?;
        Ok(StagePlan {
            params: canonical(&p)?,
            outputs: vec!["rows".into(), "removed".into()],
            files: vec![],
        })
    }
    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let p: DedupParams = parse_params(ctx.params)?;
        let tables = read_inputs(ctx)?;
        let out = dedup(&p, tables, ctx.seed).map_err(stage_error)?;
        let r = &out.removed;
        write_side_table(
            &out_file(ctx, "removed", REMOVED_FILE)?,
            vec![
                (
                    "source_file",
                    SideColumn::Str(r.iter().map(|x| opt(&x.row.source_file)).collect()),
                ),
                (
                    "source_row",
                    SideColumn::U64(r.iter().map(|x| x.row.source_row).collect()),
                ),
                (
                    "method",
                    SideColumn::Str(r.iter().map(|x| opt(x.method)).collect()),
                ),
                (
                    "duplicate_of_file",
                    SideColumn::Str(r.iter().map(|x| opt(&x.duplicate_of_file)).collect()),
                ),
                (
                    "duplicate_of_row",
                    SideColumn::U64(r.iter().map(|x| x.duplicate_of_row).collect()),
                ),
                (
                    "similarity",
                    SideColumn::F64(r.iter().map(|x| x.similarity).collect()),
                ),
                (
                    "prompt",
                    SideColumn::Str(r.iter().map(|x| opt(prompt_text(&x.row))).collect()),
                ),
                (
                    "response",
                    SideColumn::Str(r.iter().map(|x| opt(response_text(&x.row))).collect()),
                ),
            ],
        )
        .map_err(stage_error)?;
        write_table(ctx, "rows", &out.rows)?;
        let mut stats = Map::new();
        stats.insert("rows_in".into(), json!(out.rows_in));
        stats.insert("rows_out".into(), json!(out.rows.len()));
        stats.insert("exact_removed".into(), json!(out.exact_removed));
        stats.insert("near_removed".into(), json!(out.near_removed));
        if let Some(t) = out.lsh_threshold {
            stats.insert("lsh_threshold".into(), json!((t * 1000.0).round() / 1000.0));
        }
        if !r.is_empty() {
            stats.insert(
                "removed_sample".into(),
                sample(r.iter().map(|x| {
                    format!(
                        "{} duplicates {}:{} ({}, {:.3})",
                        place(&x.row),
                        x.duplicate_of_file,
                        x.duplicate_of_row,
                        x.method,
                        x.similarity
                    )
                })),
            );
        }
        let threshold = out
            .lsh_threshold
            .map(|t| format!("; LSH candidate threshold {t:.3}"))
            .unwrap_or_default();
        Ok(StageReport {
            summary: format!(
                "{} rows -> {} ({} exact, {} near duplicates{threshold})",
                out.rows_in,
                out.rows.len(),
                out.exact_removed,
                out.near_removed
            ),
            stats,
            ..StageReport::default()
        })
    }
}

struct Filter;

impl Stage for Filter {
    fn kind(&self) -> &'static str {
        "filter"
    }
    fn code_version(&self) -> u32 {
        FILTER_CODE_VERSION
    }
    fn about(&self) -> &'static str {
        "quality rules (length, ratio, repetition, refusals, PII, script, regex; presets sft-en, sft-zh, legal)"
    }
    fn params_schema(&self) -> Value {
        pipe_data::params_schema::<FilterParams>()
    }
    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let mut p: FilterParams = parse_params(params)?;
        pipe_data::filter::validate(&p).map_err(stage_error)?;
        require_inputs(env)?;
        // Token bounds count with the model's tokenizer: its files enter the key.
        // Without token bounds the model is unused and left out of the key.
        let files = if p.tokens.is_empty() {
            p.model = None;
            vec![]
        } else {
            let (reference, model) =
                crate::stages::plan_model(p.model.as_deref(), env).map_err(|mut e| {
                    e.hint.get_or_insert_with(|| {
                        "`tokens:` bounds count with the tokenizer of the recipe's `model:` (or this stage's)".into()
                    });
                    e
                })?;
            p.model = Some(reference);
            model.files()
        };
        Ok(StagePlan {
            // the preset expanded, so a changed preset definition changes the key
            params: canonical(&p.resolved())?,
            outputs: vec!["rows".into(), "dropped".into()],
            files,
        })
    }
    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let p: FilterParams = parse_params(ctx.params)?;
        let tokenizer = match (&p.model, p.tokens.is_empty()) {
            (Some(reference), false) => Some(load_tokenizer(reference, ctx)?),
            _ => None,
        };
        // Tokens of the text itself, no BOS. A byte-level tokenizer cannot fail;
        // should another one fail, the byte length stands in (never fewer tokens).
        let count = tokenizer.as_ref().map(|t| {
            move |text: &str| {
                t.encode_with_offsets(text)
                    .map_or(text.len(), |(ids, _)| ids.len())
            }
        });
        let rows: Vec<Row> = read_inputs(ctx)?.into_iter().flatten().collect();
        let out = filter_with_tokens(
            &p,
            rows,
            count
                .as_ref()
                .map(|c| c as pipe_data::filter::TokenCounter<'_>),
        )
        .map_err(stage_error)?;
        let d = &out.dropped;
        write_side_table(
            &out_file(ctx, "dropped", DROPPED_FILE)?,
            vec![
                (
                    "source_file",
                    SideColumn::Str(d.iter().map(|x| opt(&x.row.source_file)).collect()),
                ),
                (
                    "source_row",
                    SideColumn::U64(d.iter().map(|x| x.row.source_row).collect()),
                ),
                (
                    "rule",
                    SideColumn::Str(d.iter().map(|x| opt(x.rule)).collect()),
                ),
                (
                    "detail",
                    SideColumn::Str(d.iter().map(|x| opt(&x.detail)).collect()),
                ),
                (
                    "prompt",
                    SideColumn::Str(d.iter().map(|x| opt(prompt_text(&x.row))).collect()),
                ),
                (
                    "response",
                    SideColumn::Str(d.iter().map(|x| opt(response_text(&x.row))).collect()),
                ),
            ],
        )
        .map_err(stage_error)?;
        write_table(ctx, "rows", &out.rows)?;
        let mut stats = Map::new();
        stats.insert("rows_in".into(), json!(out.rows_in));
        stats.insert("rows_out".into(), json!(out.rows.len()));
        let mut per_rule = Map::new();
        let mut samples = Map::new();
        for (rule, n) in &out.counts {
            per_rule.insert((*rule).into(), json!(n));
            let s = sample(
                d.iter()
                    .filter(|x| x.rule == *rule)
                    .map(|x| format!("{}: {}", place(&x.row), x.detail)),
            );
            if s.as_array().is_some_and(|a| !a.is_empty()) {
                samples.insert((*rule).into(), s);
            }
        }
        stats.insert("dropped".into(), Value::Object(per_rule));
        stats.insert("dropped_sample".into(), Value::Object(samples));
        let reasons: Vec<String> = out.counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
        Ok(StageReport {
            summary: format!(
                "{} rows -> {} ({})",
                out.rows_in,
                out.rows.len(),
                if reasons.is_empty() {
                    "nothing dropped".into()
                } else {
                    reasons.join(", ")
                }
            ),
            stats,
            ..StageReport::default()
        })
    }
}

/// The tokenizer of the model the plan resolved (token bounds of `filter`).
fn load_tokenizer(
    reference: &str,
    ctx: &RunContext<'_>,
) -> Result<pipe_tokenize::ModelTokenizer, StageError> {
    let model = pipe_model::resolve(reference, ctx.recipe_dir)
        .map_err(|e| StageError::input(e.to_string()).with_key("model"))?;
    pipe_tokenize::load_tokenizer(&model).map_err(|e| {
        let hint = e.hint();
        let mut err = StageError::failed(e.to_string()).with_key("model");
        if let Some(h) = hint {
            err = err.with_hint(h);
        }
        err
    })
}

struct Split;

impl Stage for Split {
    fn kind(&self) -> &'static str {
        "split"
    }
    fn code_version(&self) -> u32 {
        SPLIT_CODE_VERSION
    }
    fn about(&self) -> &'static str {
        "hash-based train/test(/validation) split, stable when rows are appended, with a leakage check"
    }
    fn params_schema(&self) -> Value {
        pipe_data::params_schema::<SplitParams>()
    }
    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let p: SplitParams = parse_params(params)?;
        p.validate().map_err(stage_error)?;
        require_inputs(env)?;
        let mut files: Vec<PathBuf> = match &p.from_files {
            Some(f) => expand_sources(f, env.recipe_dir)
                .map_err(|e| {
                    let mut err = stage_error(e);
                    err.key = err.key.map(|k| format!("from_files.{k}"));
                    err
                })?
                .into_iter()
                .flat_map(|(_, files)| files)
                .map(PathBuf::from)
                .collect(),
            None => vec![],
        };
        files.sort();
        files.dedup();
        Ok(StagePlan {
            params: canonical(&p)?,
            outputs: p.outputs(),
            files,
        })
    }
    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let p: SplitParams = parse_params(ctx.params)?;
        let rows: Vec<Row> = read_inputs(ctx)?.into_iter().flatten().collect();
        let rows_in = rows.len();
        let out = split(&p, rows, ctx.seed, ctx.recipe_dir).map_err(stage_error)?;
        write_table(ctx, "train", &out.train)?;
        write_table(ctx, "test", &out.test)?;
        if p.validation_fraction > 0.0 {
            write_table(ctx, "validation", &out.validation)?;
        }
        if p.leakage.is_some() {
            let l = &out.leaks;
            // Beside train's rows.parquet: split's outputs stay the tables render expects.
            write_side_table(
                &out_file(ctx, "train", LEAKAGE_FILE)?,
                vec![
                    (
                        "train_file",
                        SideColumn::Str(l.iter().map(|x| opt(&x.train_file)).collect()),
                    ),
                    (
                        "train_row",
                        SideColumn::U64(l.iter().map(|x| x.train_row).collect()),
                    ),
                    (
                        "split",
                        SideColumn::Str(l.iter().map(|x| opt(x.split)).collect()),
                    ),
                    (
                        "heldout_file",
                        SideColumn::Str(l.iter().map(|x| opt(&x.heldout_file)).collect()),
                    ),
                    (
                        "heldout_row",
                        SideColumn::U64(l.iter().map(|x| x.heldout_row).collect()),
                    ),
                    (
                        "method",
                        SideColumn::Str(l.iter().map(|x| opt(x.method)).collect()),
                    ),
                    (
                        "similarity",
                        SideColumn::F64(l.iter().map(|x| x.similarity).collect()),
                    ),
                ],
            )
            .map_err(stage_error)?;
        }
        let mut stats = Map::new();
        stats.insert("rows_in".into(), json!(rows_in));
        stats.insert("train".into(), json!(out.train.len()));
        stats.insert("test".into(), json!(out.test.len()));
        if p.validation_fraction > 0.0 {
            stats.insert("validation".into(), json!(out.validation.len()));
        }
        if p.leakage.is_some() {
            stats.insert("leaks".into(), json!(out.leaks.len()));
            stats.insert("removed_from_train".into(), json!(out.removed_from_train));
            if !out.leaks.is_empty() {
                stats.insert(
                    "leak_sample".into(),
                    sample(out.leaks.iter().map(|x| {
                        format!(
                            "train {}:{} ~ {} {}:{} ({}, {:.3})",
                            x.train_file,
                            x.train_row,
                            x.split,
                            x.heldout_file,
                            x.heldout_row,
                            x.method,
                            x.similarity
                        )
                    })),
                );
            }
        }
        let val = if p.validation_fraction > 0.0 {
            format!(", validation {}", out.validation.len())
        } else {
            String::new()
        };
        let leaks = if p.leakage.is_some() {
            format!("; {} train rows duplicate held-out rows", out.leaks.len())
                + &if out.removed_from_train > 0 {
                    format!(" ({} removed)", out.removed_from_train)
                } else {
                    String::new()
                }
        } else {
            String::new()
        };
        Ok(StageReport {
            summary: format!(
                "{rows_in} rows -> train {}, test {}{val}{leaks}",
                out.train.len(),
                out.test.len()
            ),
            stats,
            ..StageReport::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipe_pipeline::stage::InputSpec;

    fn plan_filter(params: Value, model: Option<&str>) -> Result<StagePlan, StageError> {
        let inputs = [InputSpec {
            stage: "clean".into(),
            kind: "dedup".into(),
            output: None,
            outputs: vec!["rows".into(), "removed".into()],
        }];
        let env = PlanEnv {
            stage_name: "good",
            recipe_dir: std::path::Path::new("."),
            model,
            seed: 42,
            inputs: &inputs,
        };
        Filter.plan(&params, &env)
    }

    #[test]
    fn filter_token_bounds_take_the_model_into_the_key() {
        let tokens = json!({"tokens": {"response": {"max": 512}}});
        let err = plan_filter(tokens.clone(), None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("model"), "{err:?}");
        assert!(err.hint.unwrap_or_default().contains("`tokens:`"));
        let plan = plan_filter(tokens, Some("builtin:tiny")).unwrap();
        assert_eq!(plan.params["model"], "builtin:tiny");
        // without token bounds the model is not part of the key
        let plan = plan_filter(json!({"min_chars": 3, "model": "builtin:tiny"}), None).unwrap();
        assert!(plan.params.get("model").is_none());
        assert!(plan.files.is_empty());
    }
}

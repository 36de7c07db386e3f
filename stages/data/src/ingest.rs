//! `ingest`: read JSONL / JSON / CSV / TSV / Parquet files of any common
//! instruction-data shape into canonical [`Row`]s.
//!
//! Every record either becomes a row or a [`Rejected`] entry naming its file,
//! line (or array index) and reason; nothing is dropped silently. The stage
//! fails when the rejected share exceeds `max_rejected` (default 0: strict),
//! printing the first reasons with their places.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe_rows::{Message, Row};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::DataError;
use crate::lines::LineBlocks;

mod alpaca_line;
use alpaca_line::{AlpacaFields, AlpacaKeys};

/// 2: `rows.parquet` of more than one row group has ~1 MiB pages (pipe-rows writes group by group).
pub const INGEST_CODE_VERSION: u32 = 2;

/// One path or glob, or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    pub fn patterns(&self) -> Vec<String> {
        match self {
            Paths::One(p) => vec![p.clone()],
            Paths::Many(v) => v.clone(),
        }
    }
}

/// The shape of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Detect from the first record's keys; the choice is printed and recorded in the stats.
    #[default]
    Auto,
    /// `instruction` / `input` / `output` / `system` / `history` (LLaMA-Factory semantics).
    Alpaca,
    /// `conversations: [{from, value}]` with human/gpt/system/function_call/observation, plus `tools`.
    Sharegpt,
    /// OpenAI-style `messages: [{role, content}]` (content may be a list of text parts).
    Messages,
    /// `text` + `label` (or `answer`); the user turn is `prompt` with `{text}` filled in.
    Classification,
    /// A multiple-choice question: `question` (or `input`), option columns `A`, `B`, ...,
    /// `answer` (or `output`) holding the letter(s).
    Choice,
}

/// The file format; by default chosen from the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Jsonl,
    Json,
    Csv,
    Tsv,
    Parquet,
}

impl FileFormat {
    fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit('.').next()?;
        Some(match ext {
            "jsonl" | "ndjson" => FileFormat::Jsonl,
            "json" => FileFormat::Json,
            "csv" => FileFormat::Csv,
            "tsv" | "tab" => FileFormat::Tsv,
            "parquet" | "pq" => FileFormat::Parquet,
            _ => return None,
        })
    }
}

/// Your column names for the canonical fields (like LLaMA-Factory's `columns`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// alpaca: the instruction column (default `instruction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// alpaca: the input column joined after the instruction with a newline (default `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// alpaca: the response column (default `output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// alpaca: earlier turns as `[[prompt, response], ...]` (default `history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// The system prompt column (default `system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// sharegpt/messages: the conversation column (default `conversations` / `messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<String>,
    /// sharegpt/messages: the tool list column (default `tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<String>,
    /// sharegpt/messages: the role key inside a turn (default `from` / `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_tag: Option<String>,
    /// sharegpt/messages: the content key inside a turn (default `value` / `content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_tag: Option<String>,
    /// classification: the input text column (default `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// classification: the label column (default `label`, else `answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// choice: the question column (default `question`, else `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// choice: the option columns, in order (default: every one-letter column A-Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// choice: the answer column with the letter(s) (default `answer`, else `output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// A column holding the task name of each row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// One input of a multi-source ingest; unset keys fall back to the stage's own.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceParams {
    /// File path(s) or glob(s), relative to the recipe folder.
    pub path: Paths,
    /// Record shape (default: the stage's `format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Shape>,
    /// File format (default: the stage's `format_file`, else the extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_file: Option<FileFormat>,
    /// Column mapping (default: the stage's `columns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Columns>,
    /// Prompt template for classification/choice rows: `{text}`, `{question}`,
    /// `{options}` and `{<column>}` are filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Task name for these rows; `{dir}` is the file's folder name, `{stem}` its name without extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// System prompt for rows that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Extra placeholder substitutions, merged over the stage's `replace`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replace: BTreeMap<String, String>,
}

/// Params of the `ingest` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// File path(s) or glob(s), relative to the recipe folder. Use `sources` to mix shapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Paths>,
    /// Several inputs with their own shape, prompt and task, concatenated in order (after `path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceParams>,
    /// Record shape: auto, alpaca, sharegpt, messages, classification, choice.
    #[serde(default)]
    pub format: Shape,
    /// File format: jsonl, json, csv, tsv, parquet (default: from the extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_file: Option<FileFormat>,
    /// Your column names for the canonical fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Columns>,
    /// Prompt template for classification/choice rows (`{text}`, `{question}`, `{options}`, `{<column>}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Task name for the rows (`{dir}`: the file's folder name, `{stem}`: its name without extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// System prompt for rows that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Placeholder substitutions applied to every text, e.g. `{"{{name}}": "Lex"}`.
    #[serde(default)]
    pub replace: BTreeMap<String, String>,
    /// Largest tolerated share of rejected records (0.0 = any bad record fails the stage).
    #[serde(default)]
    pub max_rejected: f64,
}

impl IngestParams {
    /// Check what serde cannot: at least one input, a sane `max_rejected`.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.path.is_none() && self.sources.is_empty() {
            return Err(DataError::params(
                "path",
                "ingest needs `path:` or `sources:`",
            ));
        }
        if !(0.0..=1.0).contains(&self.max_rejected) {
            return Err(DataError::params(
                "max_rejected",
                format!("must be between 0.0 and 1.0, got {}", self.max_rejected),
            ));
        }
        Ok(())
    }

    /// Every source with the stage-level defaults filled in.
    pub fn resolved_sources(&self) -> Vec<SourceParams> {
        let mut out = Vec::new();
        if let Some(path) = &self.path {
            out.push(SourceParams {
                path: path.clone(),
                format: None,
                format_file: None,
                columns: None,
                prompt: None,
                task: None,
                system: None,
                replace: BTreeMap::new(),
            });
        }
        out.extend(self.sources.iter().cloned());
        for s in &mut out {
            s.format = Some(s.format.unwrap_or(self.format));
            s.format_file = s.format_file.or(self.format_file);
            s.columns = s.columns.clone().or_else(|| self.columns.clone());
            s.prompt = s.prompt.clone().or_else(|| self.prompt.clone());
            s.task = s.task.clone().or_else(|| self.task.clone());
            s.system = s.system.clone().or_else(|| self.system.clone());
            let mut replace = self.replace.clone();
            replace.extend(std::mem::take(&mut s.replace));
            s.replace = replace;
        }
        out
    }
}

/// Expand every source's globs against `recipe_dir`: the files in sorted order
/// per pattern, as relative names when under the recipe folder.
pub fn expand_sources(
    params: &IngestParams,
    recipe_dir: &Path,
) -> Result<Vec<(SourceParams, Vec<String>)>, DataError> {
    params
        .resolved_sources()
        .into_iter()
        .map(|s| {
            let mut files = Vec::new();
            for pattern in s.path.patterns() {
                files.extend(expand_glob(&pattern, recipe_dir)?);
            }
            Ok((s, files))
        })
        .collect()
}

fn expand_glob(pattern: &str, recipe_dir: &Path) -> Result<Vec<String>, DataError> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        recipe_dir.join(pattern)
    };
    let has_magic = pattern.contains(['*', '?', '[']);
    if !has_magic {
        if !full.is_file() {
            return Err(DataError::params(
                "path",
                format!("`{pattern}`: no such file (looked at {})", full.display()),
            ));
        }
        return Ok(vec![pattern.to_owned()]);
    }
    let paths = glob::glob(&full.to_string_lossy())
        .map_err(|e| DataError::params("path", format!("`{pattern}`: bad glob: {e}")))?;
    let mut out: Vec<String> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .map(|p| match p.strip_prefix(recipe_dir) {
            Ok(rel) if !Path::new(pattern).is_absolute() => rel.to_string_lossy().into_owned(),
            _ => p.to_string_lossy().into_owned(),
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(DataError::params(
            "path",
            format!(
                "`{pattern}` matches no file (relative to {})",
                recipe_dir.display()
            ),
        ));
    }
    Ok(out)
}

/// A record that did not become a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub source_file: String,
    /// Same numbering as [`Row::source_row`].
    pub source_row: u64,
    pub reason: String,
    /// The start of the offending record (at most 200 characters).
    pub raw: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.source_file, self.source_row, self.reason
        )
    }
}

/// What ingest made of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileStats {
    pub file: String,
    /// The shape used, with the columns when detected (`auto -> alpaca (prompt=input, ...)`).
    pub shape: String,
    pub rows: usize,
    pub rejected: usize,
}

/// The result of [`ingest`].
#[derive(Debug, Clone, Default)]
pub struct IngestOutput {
    pub rows: Vec<Row>,
    pub rejected: Vec<Rejected>,
    pub files: Vec<FileStats>,
}

impl IngestOutput {
    /// Fail when more than `max_rejected` of the records were rejected,
    /// naming the first few with their places.
    pub fn check(&self, max_rejected: f64) -> Result<(), DataError> {
        let total = self.rows.len() + self.rejected.len();
        if self.rejected.is_empty() || total == 0 {
            return Ok(());
        }
        let share = self.rejected.len() as f64 / total as f64;
        if share <= max_rejected {
            return Ok(());
        }
        Err(DataError::TooManyRejected {
            rejected: self.rejected.len(),
            total,
            max_rejected,
            first: self
                .rejected
                .iter()
                .take(5)
                .map(|r| format!("  {r}"))
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }
}

/// Read every source. Data problems become [`Rejected`] entries (see
/// [`IngestOutput::check`]); unreadable files and bad params are errors.
pub fn ingest(params: &IngestParams, recipe_dir: &Path) -> Result<IngestOutput, DataError> {
    params.validate()?;
    let mut out = IngestOutput::default();
    for (source, files) in expand_sources(params, recipe_dir)? {
        for file in files {
            let full = if Path::new(&file).is_absolute() {
                PathBuf::from(&file)
            } else {
                recipe_dir.join(&file)
            };
            let (rows, rejected, shape) = ingest_file(&source, &file, &full)?;
            out.files.push(FileStats {
                file: file.clone(),
                shape,
                rows: rows.len(),
                rejected: rejected.len(),
            });
            // one file (the common case) moves its rows instead of copying them
            if out.rows.is_empty() {
                out.rows = rows;
            } else {
                out.rows.extend(rows);
            }
            out.rejected.extend(rejected);
        }
    }
    Ok(out)
}

/// One raw record: its place, and the parsed object or why it could not be parsed.
struct Record {
    place: u64,
    value: Result<Map<String, Value>, String>,
    raw: String,
}

fn snippet(s: &str) -> String {
    s.chars().take(200).collect()
}

fn ingest_file(
    source: &SourceParams,
    name: &str,
    full: &Path,
) -> Result<(Vec<Row>, Vec<Rejected>, String), DataError> {
    let format = source
        .format_file
        .or_else(|| FileFormat::from_path(name))
        .ok_or_else(|| {
            DataError::params(
                "format_file",
                format!("{name}: cannot tell the file format from the extension; set `format_file: jsonl|json|csv|tsv|parquet`"),
            )
        })?;
    // JSONL is read in blocks of lines, each parsed and converted in parallel,
    // so neither the file's bytes nor its parsed objects are ever all held;
    // other formats are parsed first.
    let (records, first_line) = match format {
        FileFormat::Jsonl => (Vec::new(), first_jsonl_object(name, full)?),
        _ => (read_records(format, name, full)?, None),
    };
    let shape = source.format.unwrap_or_default();
    let columns = source.columns.clone().unwrap_or_default();
    let first = first_line
        .as_ref()
        .or_else(|| records.iter().find_map(|r| r.value.as_ref().ok()));
    let mapping = match first {
        Some(first) => Mapping::resolve(shape, &columns, first, name)?,
        // nothing parseable: every record is rejected below anyway
        None => Mapping::resolve(shape, &columns, &Map::new(), name)
            .unwrap_or_else(|_| Mapping::fallback()),
    };
    let described = if shape == Shape::Auto {
        format!("auto -> {}", mapping.describe())
    } else {
        mapping.describe()
    };
    let task = source.task.as_ref().map(|t| {
        let p = Path::new(name);
        let dir = p
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        t.replace("{dir}", &dir).replace("{stem}", &stem)
    });
    let ctx = Ctx {
        task_column: columns.task.as_deref(),
        mapping: &mapping,
        prompt: source.prompt.as_deref(),
        task: task.as_deref(),
        system: source.system.as_deref(),
        replace: &source.replace,
        file: name,
    };
    let reject_line = |place: u64, reason: String, raw: &str| Rejected {
        source_file: name.to_owned(),
        source_row: place,
        reason,
        raw: snippet(raw),
    };
    // Rows and rejects are split as they are made (order kept), so a list
    // of both is never held for more than one JSONL block.
    let (mut rows, mut rejected) = (Vec::new(), Vec::new());
    if format == FileFormat::Jsonl {
        let fast = ctx.alpaca_keys();
        let mut blocks = LineBlocks::open(name, full)?;
        // Each block's verdicts go to one buffer, reused, and `rows` is sized
        // once from the first block: vectors that grow by doubling fault in
        // (and copy) about twice the table's bytes, which on a VM costs as
        // much as parsing.
        let mut verdicts: Vec<Result<Row, Rejected>> = Vec::new();
        let verdict = |(place, line): (u64, &[u8])| match std::str::from_utf8(line) {
            Err(_) => Err(reject_line(
                place,
                "the line is not valid UTF-8".into(),
                &String::from_utf8_lossy(line),
            )),
            Ok(text) => match fast
                .as_ref()
                .and_then(|keys| keys.read(text))
                .and_then(|fields| ctx.alpaca_row(fields, place))
            {
                Some(row) => Ok(row),
                None => ctx
                    .general_row(text, place)
                    .map_err(|reason| reject_line(place, reason, text)),
            },
        };
        // The next block is read while this one is parsed: reading and
        // cutting lines is serial work, which would otherwise leave a core idle.
        // A parsed block's buffers are filled again two blocks later.
        let mut next = blocks.next_block(None)?;
        let (mut spare, mut first) = (None, true);
        while let Some(block) = next.take() {
            let ((), read) = rayon::join(
                || {
                    block
                        .par_lines()
                        .map(verdict)
                        .collect_into_vec(&mut verdicts)
                },
                || blocks.next_block(spare.take()),
            );
            if first {
                // where the room cannot be had, the table grows as it goes
                let more = blocks
                    .estimated_lines(block.len())
                    .saturating_sub(block.len());
                let _ = rows.try_reserve_exact(more);
                first = false;
            }
            if verdicts.iter().all(Result::is_ok) {
                // the common case: moved in parallel, straight into the table
                rows.par_extend(verdicts.par_drain(..).map(|v| v.expect("all rows")));
            } else {
                for verdict in verdicts.drain(..) {
                    match verdict {
                        Ok(row) => rows.push(row),
                        Err(rej) => rejected.push(rej),
                    }
                }
            }
            next = read?;
            spare = Some(block);
        }
    }
    let (more_rows, more_rejected): (Vec<Row>, Vec<Rejected>) = records
        .into_par_iter()
        .map(|rec| {
            let reject = |reason: String, raw: &str| Rejected {
                source_file: name.to_owned(),
                source_row: rec.place,
                reason,
                raw: snippet(raw),
            };
            match rec.value {
                Err(reason) => Err(reject(reason, &rec.raw)),
                Ok(map) => ctx.to_row(&map, rec.place).map_err(|reason| {
                    let raw = if rec.raw.is_empty() {
                        serde_json::to_string(&map).unwrap_or_default()
                    } else {
                        rec.raw.clone()
                    };
                    reject(reason, &raw)
                }),
            }
        })
        .partition_map(either);
    rows.extend(more_rows);
    rejected.extend(more_rejected);
    Ok((rows, rejected, described))
}

/// The first line of a JSONL file that is a JSON object: the shape is detected from it.
fn first_jsonl_object(name: &str, full: &Path) -> Result<Option<Map<String, Value>>, DataError> {
    let mut blocks = LineBlocks::open(name, full)?;
    while let Some(block) = blocks.next_block(None)? {
        let first = block.lines().find_map(|(_, l)| {
            std::str::from_utf8(l)
                .ok()
                .and_then(|t| parse_object(t).ok())
        });
        if first.is_some() {
            return Ok(first);
        }
    }
    Ok(None)
}

fn either(r: Result<Row, Rejected>) -> rayon::iter::Either<Row, Rejected> {
    match r {
        Ok(row) => rayon::iter::Either::Left(row),
        Err(rej) => rayon::iter::Either::Right(rej),
    }
}

fn read_text(name: &str, full: &Path) -> Result<Vec<u8>, DataError> {
    let mut bytes = std::fs::read(full).map_err(|source| DataError::Io {
        path: name.to_owned(),
        source,
    })?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    Ok(bytes)
}

fn whole_utf8(name: &str, bytes: Vec<u8>) -> Result<String, DataError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::Input {
            file: name.to_owned(),
            line: line as u64,
            message: "the file is not valid UTF-8; convert it (e.g. `iconv -f gb18030 -t utf-8`)"
                .into(),
        }
    })
}

fn read_records(format: FileFormat, name: &str, full: &Path) -> Result<Vec<Record>, DataError> {
    match format {
        FileFormat::Jsonl => unreachable!("JSONL is read in blocks of lines in ingest_file"),
        FileFormat::Json => {
            let text = whole_utf8(name, read_text(name, full)?)?;
            let value: Value = serde_json::from_str(&text).map_err(|e| DataError::Input {
                file: name.to_owned(),
                line: e.line() as u64,
                message: format!("invalid JSON: {e}; a JSON array of objects was expected (for one object per line use .jsonl or `format_file: jsonl`)"),
            })?;
            let items = match value {
                Value::Array(items) => items,
                other => {
                    return Err(DataError::Input {
                        file: name.to_owned(),
                        line: 1,
                        message: format!(
                            "expected a JSON array of records, found {}",
                            kind(&other)
                        ),
                    });
                }
            };
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(map) => Record {
                        place: i as u64,
                        value: Ok(map),
                        raw: String::new(),
                    },
                    // Some exports wrap each record in a list of its turns
                    // (`[[{instruction, input, output}], ...]`): one record per list.
                    Value::Array(turns)
                        if turns.iter().all(Value::is_object) && !turns.is_empty() =>
                    {
                        let raw = Value::Array(turns.clone()).to_string();
                        Record {
                            place: i as u64,
                            value: turns_to_record(turns),
                            raw,
                        }
                    }
                    other => Record {
                        place: i as u64,
                        raw: other.to_string(),
                        value: Err(format!("expected a JSON object, found {}", kind(&other))),
                    },
                })
                .collect())
        }
        FileFormat::Csv | FileFormat::Tsv => {
            let text = whole_utf8(name, read_text(name, full)?)?;
            let sep = if format == FileFormat::Csv {
                b','
            } else {
                b'\t'
            };
            let records =
                crate::csv::parse(&text, sep).map_err(|(line, message)| DataError::Input {
                    file: name.to_owned(),
                    line,
                    message,
                })?;
            let mut iter = records.into_iter();
            let Some(header) = iter.next() else {
                return Ok(Vec::new());
            };
            let header: Vec<String> = header
                .fields
                .into_iter()
                .map(|h| h.trim().to_owned())
                .collect();
            let sep_char = sep as char;
            Ok(iter
                .map(|rec| {
                    let raw = rec.fields.join(&sep_char.to_string());
                    let value = if rec.fields.len() != header.len() {
                        Err(format!(
                            "{} fields, the header has {}",
                            rec.fields.len(),
                            header.len()
                        ))
                    } else {
                        Ok(header
                            .iter()
                            .cloned()
                            .zip(rec.fields.into_iter().map(Value::String))
                            .collect())
                    };
                    Record {
                        place: rec.line,
                        value,
                        raw,
                    }
                })
                .collect())
        }
        FileFormat::Parquet => read_parquet_records(name, full),
    }
}

fn read_parquet_records(name: &str, full: &Path) -> Result<Vec<Record>, DataError> {
    use polars::prelude::*;
    let file = std::fs::File::open(full).map_err(|source| DataError::Io {
        path: name.to_owned(),
        source,
    })?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| DataError::Input {
            file: name.to_owned(),
            line: 0,
            message: format!("cannot read Parquet: {e}"),
        })?;
    let columns = df.columns();
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let mut map = Map::new();
        for col in columns {
            let av = col.get(i).map_err(|e| DataError::Input {
                file: name.to_owned(),
                line: i as u64,
                message: e.to_string(),
            })?;
            map.insert(col.name().to_string(), any_to_json(&av));
        }
        out.push(Record {
            place: i as u64,
            value: Ok(map),
            raw: String::new(),
        });
    }
    Ok(out)
}

fn any_to_json(av: &polars::prelude::AnyValue<'_>) -> Value {
    use polars::prelude::AnyValue as A;
    match av {
        A::Null => Value::Null,
        A::Boolean(b) => Value::Bool(*b),
        A::String(s) => Value::String((*s).to_owned()),
        A::StringOwned(s) => Value::String(s.to_string()),
        A::UInt8(v) => (*v).into(),
        A::UInt16(v) => (*v).into(),
        A::UInt32(v) => (*v).into(),
        A::UInt64(v) => (*v).into(),
        A::Int8(v) => (*v).into(),
        A::Int16(v) => (*v).into(),
        A::Int32(v) => (*v).into(),
        A::Int64(v) => (*v).into(),
        A::Float32(v) => (*v as f64).into(),
        A::Float64(v) => (*v).into(),
        A::List(s) => Value::Array(
            (0..s.len())
                .map(|i| s.get(i).map(|v| any_to_json(&v)).unwrap_or(Value::Null))
                .collect(),
        ),
        A::Struct(_, _, fields) => Value::Object(
            fields
                .iter()
                .zip(av._iter_struct_av())
                .map(|(f, v)| (f.name().to_string(), any_to_json(&v)))
                .collect(),
        ),
        A::StructOwned(payload) => Value::Object(
            payload
                .1
                .iter()
                .zip(payload.0.iter())
                .map(|(f, v)| (f.name().to_string(), any_to_json(v)))
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// `[{instruction, input, output}, ...]`, one conversation: the last item is
/// the record, the earlier ones become its `history` of [prompt, response] pairs.
fn turns_to_record(turns: Vec<Value>) -> Result<Map<String, Value>, String> {
    let mut maps: Vec<Map<String, Value>> = turns
        .into_iter()
        .filter_map(|t| match t {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    let mut last = maps.pop().ok_or("an empty list of turns")?;
    if maps.is_empty() {
        return Ok(last);
    }
    let mut history = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
        let (instruction, input, output) = (text("instruction"), text("input"), text("output"));
        if instruction.is_empty() && input.is_empty() {
            return Err(format!(
                "turn {i} of the list has no `instruction` or `input`"
            ));
        }
        let prompt = match (instruction.is_empty(), input.is_empty()) {
            (false, false) => format!("{instruction}\n{input}"),
            (false, true) => instruction.to_owned(),
            _ => input.to_owned(),
        };
        history.push(Value::Array(vec![prompt.into(), output.into()]));
    }
    last.insert("history".into(), Value::Array(history));
    Ok(last)
}

/// `[客户] text` -> (`客户`, `text`): a turn written with its speaker in brackets.
fn speaker_tag(turn: &str) -> Option<(&str, &str)> {
    let rest = turn.strip_prefix('[')?;
    let (tag, text) = rest.split_once(']')?;
    (!tag.is_empty() && tag.chars().count() <= 12).then(|| (tag, text.trim_start()))
}

fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, found {}", kind(&other))),
        Err(e) => Err(format!("malformed JSON: {e}")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A shape with concrete column names.
#[derive(Debug, Clone, PartialEq)]
enum Mapping {
    Alpaca {
        prompt: String,
        query: Option<String>,
        response: String,
        history: String,
        system: String,
    },
    Conversation {
        sharegpt: bool,
        messages: String,
        role: String,
        content: String,
        system: String,
        tools: String,
    },
    Classification {
        text: String,
        label: String,
    },
    Choice {
        question: String,
        options: Vec<String>,
        answer: String,
    },
}

impl Mapping {
    fn fallback() -> Self {
        Mapping::Alpaca {
            prompt: "instruction".into(),
            query: Some("input".into()),
            response: "output".into(),
            history: "history".into(),
            system: "system".into(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Mapping::Alpaca {
                prompt,
                query,
                response,
                ..
            } => match query {
                Some(q) => format!("alpaca (prompt={prompt}, query={q}, response={response})"),
                None => format!("alpaca (prompt={prompt}, response={response})"),
            },
            Mapping::Conversation {
                sharegpt,
                messages,
                role,
                content,
                ..
            } => format!(
                "{} ({messages}: [{{{role}, {content}}}])",
                if *sharegpt { "sharegpt" } else { "messages" }
            ),
            Mapping::Classification { text, label } => {
                format!("classification (text={text}, label={label})")
            }
            Mapping::Choice {
                question,
                options,
                answer,
            } => format!(
                "choice (question={question}, options={}, answer={answer})",
                options.join(",")
            ),
        }
    }

    fn resolve(
        shape: Shape,
        c: &Columns,
        first: &Map<String, Value>,
        file: &str,
    ) -> Result<Self, DataError> {
        let has = |k: &str| first.contains_key(k);
        let pick = |given: &Option<String>, candidates: &[&str]| -> String {
            given.clone().unwrap_or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|k| has(k))
                    .unwrap_or(candidates[0])
                    .to_string()
            })
        };
        let shape = match shape {
            Shape::Auto => {
                let tagged_history = first
                    .get("history")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .is_some_and(|t| speaker_tag(t).is_some());
                if tagged_history && c.messages.is_none() && !has("instruction") {
                    Shape::Messages
                } else if c.messages.is_some() || has("conversations") || has("messages") {
                    let col = pick(&c.messages, &["conversations", "messages"]);
                    let first_turn = first
                        .get(&col)
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(Value::as_object);
                    if c.role_tag.as_deref() == Some("from")
                        || first_turn.is_some_and(|t| t.contains_key("from"))
                    {
                        Shape::Sharegpt
                    } else {
                        Shape::Messages
                    }
                } else if c.text.is_some()
                    || c.label.is_some()
                    || (has("text") && (has("label") || has("answer")))
                {
                    Shape::Classification
                } else if c.question.is_some()
                    || c.options.is_some()
                    || ((has("question") || has("input"))
                        && has("A")
                        && has("B")
                        && (has("answer") || has("output")))
                {
                    Shape::Choice
                } else if c.prompt.is_some()
                    || c.response.is_some()
                    || has("instruction")
                    || (has("input") && has("output"))
                    || (has("prompt") && (has("response") || has("completion")))
                {
                    Shape::Alpaca
                } else {
                    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
                    keys.sort();
                    return Err(DataError::params(
                        "format",
                        format!(
                            "{file}: cannot detect the record shape from the keys [{}]; set `format:` (alpaca, sharegpt, messages, classification, choice) and `columns:`",
                            keys.join(", ")
                        ),
                    ));
                }
            }
            s => s,
        };
        Ok(match shape {
            Shape::Auto => unreachable!("resolved above"),
            Shape::Alpaca => {
                let prompt = pick(&c.prompt, &["instruction", "prompt", "input"]);
                let query = match &c.query {
                    Some(q) => Some(q.clone()),
                    None if prompt == "input" => None,
                    None => Some("input".to_owned()),
                };
                Mapping::Alpaca {
                    prompt,
                    query,
                    response: pick(&c.response, &["output", "response", "completion"]),
                    history: pick(&c.history, &["history"]),
                    system: pick(&c.system, &["system"]),
                }
            }
            Shape::Sharegpt | Shape::Messages => {
                let sharegpt = shape == Shape::Sharegpt;
                Mapping::Conversation {
                    sharegpt,
                    messages: pick(
                        &c.messages,
                        if sharegpt {
                            &["conversations", "messages"]
                        } else {
                            &["messages", "conversations", "history"]
                        },
                    ),
                    role: c
                        .role_tag
                        .clone()
                        .unwrap_or_else(|| if sharegpt { "from" } else { "role" }.into()),
                    content: c
                        .content_tag
                        .clone()
                        .unwrap_or_else(|| if sharegpt { "value" } else { "content" }.into()),
                    system: pick(&c.system, &["system"]),
                    tools: pick(&c.tools, &["tools"]),
                }
            }
            Shape::Classification => Mapping::Classification {
                text: pick(&c.text, &["text"]),
                label: pick(&c.label, &["label", "answer"]),
            },
            Shape::Choice => {
                let options = c.options.clone().unwrap_or_else(|| {
                    let mut letters: Vec<String> = first
                        .keys()
                        .filter(|k| k.len() == 1 && k.as_bytes()[0].is_ascii_uppercase())
                        .cloned()
                        .collect();
                    letters.sort();
                    letters
                });
                if options.len() < 2 {
                    return Err(DataError::params(
                        "columns.options",
                        format!(
                            "{file}: a choice question needs at least two option columns; set `columns: {{options: [A, B, C, D]}}`"
                        ),
                    ));
                }
                Mapping::Choice {
                    question: pick(&c.question, &["question", "input"]),
                    options,
                    answer: pick(&c.answer, &["answer", "output"]),
                }
            }
        })
    }
}

struct Ctx<'a> {
    task_column: Option<&'a str>,
    mapping: &'a Mapping,
    prompt: Option<&'a str>,
    task: Option<&'a str>,
    system: Option<&'a str>,
    replace: &'a BTreeMap<String, String>,
    file: &'a str,
}

/// A string field: missing or null is `None`, a non-string is a reject.
fn get_str(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    Ok(get_str_ref(map, key)?.map(str::to_owned))
}

/// [`get_str`], borrowed from the record.
fn get_str_ref<'m>(map: &'m Map<String, Value>, key: &str) -> Result<Option<&'m str>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "field `{key}` must be a string, found {}",
            kind(other)
        )),
    }
}

fn required(map: &Map<String, Value>, key: &str) -> Result<String, String> {
    required_ref(map, key).map(str::to_owned)
}

/// [`required`], borrowed from the record.
fn required_ref<'m>(map: &'m Map<String, Value>, key: &str) -> Result<&'m str, String> {
    get_str_ref(map, key)?.ok_or_else(|| format!("missing required field `{key}`"))
}

/// Labels are often numbers or booleans in the source; they are text here.
fn get_scalar(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.get(key) {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        _ => get_str(map, key),
    }
}

/// Fill `{name}` placeholders from `vars`; unknown braces are left as written.
fn fill(template: &str, vars: &[(&str, &str)], map: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}');
        let key = close.map(|c| &after[..c]);
        let value = key.and_then(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| match map.get(k) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                })
        });
        match (value, close) {
            (Some(v), Some(c)) => {
                out.push_str(&v);
                rest = &after[c + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn map_role(role: &str, sharegpt: bool) -> Option<&'static str> {
    Some(match role {
        "human" | "user" => "user",
        "gpt" | "assistant" | "function_call" => "assistant",
        "system" => "system",
        "observation" | "tool" | "function" => "tool",
        "model" if !sharegpt => "assistant",
        _ => return None,
    })
}

impl Ctx<'_> {
    fn to_row(&self, map: &Map<String, Value>, place: u64) -> Result<Row, String> {
        let mut row = Row {
            source_file: self.file.to_owned(),
            source_row: place,
            task: self.task.map(str::to_owned),
            ..Row::default()
        };
        match self.mapping {
            Mapping::Alpaca {
                prompt,
                query,
                response,
                history,
                system,
            } => {
                // borrowed: the user turn is the one copy made of them
                let instruction = required_ref(map, prompt)?;
                let input = match query {
                    Some(q) => get_str_ref(map, q)?.unwrap_or_default(),
                    None => "",
                };
                let user = alpaca_user(instruction, input);
                if user.trim().is_empty() {
                    return Err(format!("empty prompt: `{prompt}` and its input are empty"));
                }
                let output = match map.get(response) {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => {
                        return Err(format!("missing required field `{response}`"));
                    }
                    Some(other) => {
                        return Err(format!(
                            "field `{response}` must be a string, found {}",
                            kind(other)
                        ));
                    }
                };
                // exactly the turns there will be: a growing Vec would hold room for four
                let earlier = map
                    .get(history)
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                row.messages.reserve_exact(2 * earlier + 2);
                match map.get(history) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(turns)) => {
                        for (i, t) in turns.iter().enumerate() {
                            let pair = t.as_array().filter(|p| p.len() == 2);
                            let (Some(q), Some(a)) = (
                                pair.and_then(|p| p[0].as_str()),
                                pair.and_then(|p| p[1].as_str()),
                            ) else {
                                return Err(format!(
                                    "`{history}` item {i} must be [prompt, response] strings"
                                ));
                            };
                            row.messages.push(Message::new("user", q));
                            row.messages.push(Message::new("assistant", a));
                        }
                    }
                    Some(other) => {
                        return Err(format!(
                            "field `{history}` must be an array, found {}",
                            kind(other)
                        ));
                    }
                }
                row.messages.push(Message::new("user", user));
                row.messages.push(Message::new("assistant", output));
                row.system = get_str(map, system)?.filter(|s| !s.is_empty());
            }
            Mapping::Conversation {
                sharegpt,
                messages,
                role,
                content,
                system,
                tools,
            } => {
                let turns = match map.get(messages) {
                    Some(Value::Array(t)) => t,
                    None | Some(Value::Null) => {
                        return Err(format!("missing required field `{messages}`"));
                    }
                    Some(other) => {
                        return Err(format!(
                            "field `{messages}` must be an array, found {}",
                            kind(other)
                        ));
                    }
                };
                // Turns written as `[speaker] text`: the first speaker is the user,
                // the other the assistant (lawyer-llama's counsel dialogues).
                let tagged = turns.first().is_some_and(Value::is_string);
                row.messages.reserve_exact(turns.len());
                if tagged {
                    let mut speakers: Vec<String> = Vec::new();
                    for (i, t) in turns.iter().enumerate() {
                        let (tag, text) = t.as_str().and_then(speaker_tag).ok_or_else(|| {
                            format!("`{messages}` turn {i} is not a `[speaker] text` string")
                        })?;
                        if !speakers.iter().any(|s| s == tag) {
                            speakers.push(tag.to_owned());
                        }
                        let role = match speakers.iter().position(|s| s == tag) {
                            Some(0) => "user",
                            Some(1) => "assistant",
                            _ => {
                                return Err(format!(
                                    "`{messages}` turn {i}: a third speaker `[{tag}]`"
                                ));
                            }
                        };
                        row.messages.push(Message::new(role, text));
                    }
                    // A dialogue that ends on the user's turn has nothing to learn at its end.
                    if row.messages.last().is_some_and(|m| m.role == "user") {
                        row.messages.pop();
                    }
                }
                for (i, t) in turns.iter().enumerate().filter(|_| !tagged) {
                    let t = t
                        .as_object()
                        .ok_or_else(|| format!("`{messages}` turn {i} is not an object"))?;
                    let r = t
                        .get(role)
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("`{messages}` turn {i} has no `{role}` string"))?;
                    let mapped = map_role(r, *sharegpt)
                        .ok_or_else(|| format!("`{messages}` turn {i}: unknown role `{r}`"))?;
                    let text = match t.get(content) {
                        Some(Value::String(s)) => s.clone(),
                        // content parts: [{type: text, text|value: ...}]
                        Some(Value::Array(parts)) => {
                            let mut s = String::new();
                            for p in parts {
                                match p
                                    .get("text")
                                    .or_else(|| p.get("value"))
                                    .and_then(Value::as_str)
                                {
                                    Some(x) => s.push_str(x),
                                    None => {
                                        return Err(format!(
                                            "`{messages}` turn {i}: a content part has no text"
                                        ));
                                    }
                                }
                            }
                            s
                        }
                        // an assistant turn with only tool calls
                        Some(Value::Null) | None if t.contains_key("tool_calls") => {
                            t["tool_calls"].to_string()
                        }
                        Some(other) => {
                            return Err(format!(
                                "`{messages}` turn {i}: `{content}` must be a string, found {}",
                                kind(other)
                            ));
                        }
                        None => return Err(format!("`{messages}` turn {i} has no `{content}`")),
                    };
                    if mapped == "system" {
                        if i != 0 {
                            return Err(format!(
                                "`{messages}` turn {i}: a system turn is only allowed first"
                            ));
                        }
                        row.system = Some(text).filter(|s| !s.is_empty());
                        continue;
                    }
                    row.messages.push(Message::new(mapped, text));
                }
                if row.messages.is_empty() {
                    return Err("empty conversation".into());
                }
                for (k, m) in row.messages.iter().enumerate() {
                    let want_user = k % 2 == 0;
                    let is_user = m.role == "user" || m.role == "tool";
                    if want_user != is_user {
                        return Err(format!(
                            "roles out of order at turn {}: expected {}, found {}",
                            k + usize::from(row.system.is_some()),
                            if want_user {
                                "user or tool"
                            } else {
                                "assistant"
                            },
                            m.role
                        ));
                    }
                }
                if row.messages.len() % 2 == 1 {
                    return Err(
                        "the conversation ends with a user turn: nothing to train on".into(),
                    );
                }
                if row.system.is_none() {
                    row.system = get_str(map, system)?.filter(|s| !s.is_empty());
                }
                row.tools = match map.get(tools) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(v @ (Value::Array(_) | Value::Object(_))) => Some(v.to_string()),
                    Some(other) => {
                        return Err(format!(
                            "field `{tools}` must be a string or array, found {}",
                            kind(other)
                        ));
                    }
                };
            }
            Mapping::Classification { text, label } => {
                let t = required(map, text)?;
                let l = get_scalar(map, label)?
                    .ok_or_else(|| format!("missing required field `{label}`"))?;
                let l = l.trim().to_owned();
                if t.trim().is_empty() {
                    return Err(format!("empty `{text}`"));
                }
                if l.is_empty() {
                    return Err(format!("empty `{label}`"));
                }
                let user = match self.prompt {
                    Some(p) => fill(p, &[("text", &t)], map),
                    None => t.clone(),
                };
                row.messages = vec![
                    Message::new("user", user),
                    Message::new("assistant", l.clone()),
                ];
                row.text = Some(t);
                row.label = Some(l);
            }
            Mapping::Choice {
                question,
                options,
                answer,
            } => {
                let q = required(map, question)?;
                let mut rendered = Vec::new();
                for o in options {
                    let v = get_scalar(map, o)?
                        .ok_or_else(|| format!("missing option column `{o}`"))?;
                    rendered.push(format!("{o}. {}", v.trim()));
                }
                let opts = rendered.join("\n");
                let a = get_scalar(map, answer)?
                    .ok_or_else(|| format!("missing required field `{answer}`"))?;
                let a = a.trim().to_owned();
                if a.is_empty()
                    || !a
                        .chars()
                        .all(|ch| options.iter().any(|o| o.len() == 1 && o.starts_with(ch)))
                {
                    return Err(format!(
                        "answer `{a}` is not one of the options {}",
                        options.join("/")
                    ));
                }
                let body = format!("{}\n{opts}", q.trim());
                let user = match self.prompt {
                    Some(p) => fill(
                        p,
                        &[("question", q.trim()), ("options", &opts), ("text", &body)],
                        map,
                    ),
                    None => body.clone(),
                };
                row.messages = vec![
                    Message::new("user", user),
                    Message::new("assistant", a.clone()),
                ];
                row.text = Some(body);
                row.label = Some(a);
            }
        }
        if let Some(col) = self.task_column
            && let Some(t) = get_scalar(map, col)?
        {
            row.task = Some(t);
        }
        Ok(self.finish(row))
    }

    /// What every row gets whatever its shape: the recipe's system prompt
    /// where the row has none, and the `replace:` substitutions.
    fn finish(&self, mut row: Row) -> Row {
        if row.system.is_none() {
            row.system = self.system.map(str::to_owned);
        }
        if !self.replace.is_empty() {
            let sub = |s: &mut String| {
                for (from, to) in self.replace {
                    if s.contains(from.as_str()) {
                        *s = s.replace(from.as_str(), to);
                    }
                }
            };
            row.messages.iter_mut().for_each(|m| sub(&mut m.content));
            for s in [&mut row.system, &mut row.text, &mut row.label]
                .into_iter()
                .flatten()
            {
                sub(s);
            }
        }
        row
    }

    /// A JSONL line parsed into a JSON tree, then made a row.
    fn general_row(&self, text: &str, place: u64) -> Result<Row, String> {
        self.to_row(&parse_object(text)?, place)
    }

    /// Keys for reading alpaca lines without a JSON tree, where the mapping
    /// allows it: alpaca fields under distinct keys and no task column (a
    /// task column may hold a number, which the fast path does not read).
    fn alpaca_keys(&self) -> Option<AlpacaKeys<'_>> {
        match self.mapping {
            Mapping::Alpaca {
                prompt,
                query,
                response,
                history,
                system,
            } if self.task_column.is_none() => {
                AlpacaKeys::distinct(prompt, query.as_deref(), response, history, system)
            }
            _ => None,
        }
    }

    /// The row [`Ctx::to_row`] makes of these fields, or `None` where it
    /// would reject them (the general path then says why).
    fn alpaca_row(&self, fields: AlpacaFields<'_>, place: u64) -> Option<Row> {
        let instruction = fields.prompt?;
        let user = alpaca_user(&instruction, fields.query.as_deref().unwrap_or_default());
        if user.trim().is_empty() {
            return None;
        }
        let response = fields.response?.into_owned();
        let messages = vec![
            Message::new("user", user),
            Message::new("assistant", response),
        ];
        let row = Row {
            messages,
            system: fields.system.filter(|s| !s.is_empty()).map(Cow::into_owned),
            source_file: self.file.to_owned(),
            source_row: place,
            task: self.task.map(str::to_owned),
            ..Row::default()
        };
        Some(self.finish(row))
    }
}

/// The user turn of an alpaca record: instruction and input joined by a
/// line break (LLaMA-Factory's way), or whichever of them is not empty.
fn alpaca_user(instruction: &str, input: &str) -> String {
    match (instruction.is_empty(), input.is_empty()) {
        (false, false) => [instruction, input].join("\n"),
        (false, true) => instruction.to_owned(),
        (true, _) => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(mapping: &'a Mapping, replace: &'a BTreeMap<String, String>) -> Ctx<'a> {
        Ctx {
            task_column: None,
            mapping,
            prompt: None,
            task: Some("t"),
            system: Some("default system"),
            replace,
            file: "f.jsonl",
        }
    }

    /// Every combination of these fields and values, as JSONL lines.
    fn lines() -> Vec<String> {
        let values = [
            None,
            Some(r#""plain""#),
            Some(r#""esc\naped \"q\" \u00e9 \ud83d\ude00""#),
            Some(r#""""#),
            Some(r#"" \t ""#),
            Some("null"),
            Some("7"),
            Some(r#"["a"]"#),
            Some(r#"{"k": "v"}"#),
        ];
        let histories = [None, Some("null"), Some(r#"[["q", "a"]]"#), Some("3")];
        let mut out = Vec::new();
        for instruction in &values {
            for input in &values {
                for output in &values {
                    for (system, history) in values[..6].iter().zip(histories.iter().cycle()) {
                        let fields = [
                            ("instruction", *instruction),
                            ("input", *input),
                            ("output", *output),
                            ("system", *system),
                            ("history", *history),
                            ("extra", Some(r#"{"nested": [1, {"x": null}]}"#)),
                        ];
                        let body: Vec<String> = fields
                            .iter()
                            .filter_map(|(k, v)| v.map(|v| format!("\"{k}\": {v}")))
                            .collect();
                        out.push(format!("{{{}}}", body.join(", ")));
                    }
                }
            }
        }
        out.extend(
            [
                r#"{"instruction": "i", "output": "first", "output": "last"}"#,
                r#"{"instruction": "i", "output": "o", "instruction": null}"#,
                r#"{"instr\u0075ction": "escaped key", "output": "o"}"#,
                r#"{"instruction": "i", "output": "o"} x"#,
                r#"{"instruction": "i", "output": "o""#,
                r#"["instruction"]"#,
                r#"  {"instruction": "{{name}} here", "output": "I am {{name}}"}  "#,
            ]
            .map(String::from),
        );
        out
    }

    #[test]
    fn alpaca_lines_make_the_rows_the_general_path_makes() {
        let mapping = Mapping::fallback();
        let replace = BTreeMap::from([("{{name}}".to_owned(), "Lex".to_owned())]);
        let ctx = ctx(&mapping, &replace);
        let keys = ctx
            .alpaca_keys()
            .expect("the default alpaca keys are distinct");
        let (mut fast, mut general) = (0, 0);
        for (place, line) in lines().iter().enumerate() {
            let general_row = ctx.general_row(line, place as u64);
            match keys
                .read(line)
                .and_then(|f| ctx.alpaca_row(f, place as u64))
            {
                Some(row) => {
                    fast += 1;
                    assert_eq!(Ok(row), general_row, "{line}");
                }
                None => {
                    general += 1;
                    assert!(
                        general_row.is_err() || line.contains("\"history\": [["),
                        "{line} left the fast path but makes a row: {general_row:?}"
                    );
                }
            }
        }
        // both paths are exercised, not one of them vacuously
        assert!(
            fast > 100 && general > 100,
            "fast {fast}, general {general}"
        );
    }

    #[test]
    fn the_fast_path_needs_distinct_keys_and_no_task_column() {
        let replace = BTreeMap::new();
        let shared = Mapping::Alpaca {
            prompt: "text".into(),
            query: None,
            response: "text".into(),
            history: "history".into(),
            system: "system".into(),
        };
        assert!(ctx(&shared, &replace).alpaca_keys().is_none());
        let mapping = Mapping::fallback();
        let with_task = Ctx {
            task_column: Some("task"),
            ..ctx(&mapping, &replace)
        };
        assert!(with_task.alpaca_keys().is_none());
    }
}

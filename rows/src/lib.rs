//! The canonical row tables that travel between pipe's data stages, as Parquet.
//!
//! Every data stage (ingest, dedup, filter, split) reads and writes [`Row`]s;
//! render turns them into [`RenderedRow`]s for tokenize and eval. This crate
//! owns only the schema and its (de)serialization, so that stage crates agree on
//! one layout without depending on each other.
//!
//! Files are written deterministically: the same rows give the same bytes (no
//! timestamps, fixed compression and row-group size, single-threaded encoding
//! order), which the engine's caching and `pipe reproduce` rely on.
//!
//! Layout of `rows.parquet` (one record per row, in table order):
//!
//! | column | type |
//! |---|---|
//! | `messages` | `list<struct<role: str, content: str>>` |
//! | `system`, `tools`, `text`, `label`, `task` | nullable `str` |
//! | `source_file` | `str` |
//! | `source_row` | `u64` |
//!
//! `rendered.parquet` has the same columns plus `rendered: str`,
//! `spans: list<struct<start: u32, end: u32>>`, `prompt: str`, `reference: str`.
//!
//! ```no_run
//! use pipe_rows::{Message, Row, read_rows, write_rows};
//! let row = Row {
//!     messages: vec![Message::new("user", "Hi"), Message::new("assistant", "Hello!")],
//!     source_file: "data.jsonl".into(),
//!     source_row: 1,
//!     ..Row::default()
//! };
//! write_rows("rows.parquet".as_ref(), &[row.clone()])?;
//! assert_eq!(read_rows("rows.parquet".as_ref())?, vec![row]);
//! # Ok::<(), pipe_rows::RowsError>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_arrow::array::{Array, ListArray, PrimitiveArray, StructArray, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, Field as ArrowField};
use polars_arrow::offset::OffsetsBuffer;
use serde::{Deserialize, Serialize};

/// Polars' physical list type: 64-bit offsets.
type LargeListArray = ListArray<i64>;

/// File name of a row table inside a stage output folder.
pub const ROWS_FILE: &str = "rows.parquet";
/// File name of a rendered table inside a stage output folder.
pub const RENDERED_FILE: &str = "rendered.parquet";

/// Rows per Parquet row group: fixed so the bytes do not depend on the machine.
const ROW_GROUP_SIZE: usize = 64 * 1024;

/// One turn of a conversation.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// One canonical example. Roles: system, user, assistant, tool (a sharegpt
/// `function_call` becomes an assistant turn with its content as is, an
/// `observation` a tool turn).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Row {
    /// The conversation; a leading system turn is moved into `system`.
    pub messages: Vec<Message>,
    pub system: Option<String>,
    /// JSON text of the tool list (sharegpt `tools`).
    pub tools: Option<String>,
    /// Classification input text (messages then = [user: prompt(text), assistant: label]).
    pub text: Option<String>,
    /// Classification label (also the final assistant content).
    pub label: Option<String>,
    /// Task/source name (e.g. "hearsay"), for per-task metrics and prompts.
    pub task: Option<String>,
    /// File name as given (relative to the recipe folder).
    pub source_file: String,
    /// 1-based line for JSONL/CSV/TSV (header = line 1), 0-based index for JSON arrays.
    pub source_row: u64,
}

/// A row rendered by a chat template, with the byte spans to train on.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct RenderedRow {
    pub row: Row,
    /// Full conversation rendered by the chat template.
    pub rendered: String,
    /// Byte ranges `[start, end)` of `rendered` to train on (each assistant
    /// turn's content plus its end-of-turn/eos text).
    pub spans: Vec<(u32, u32)>,
    /// Conversation up to the final assistant turn, rendered with `add_generation_prompt=true`.
    pub prompt: String,
    /// Content of the final assistant turn.
    pub reference: String,
}

/// Why a table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: parquet: {source}", path.display())]
    Polars {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    #[error(
        "{}: column `{column}`: {message} (is this a pipe row table written by the same version?)",
        path.display()
    )]
    Schema {
        path: PathBuf,
        column: String,
        message: String,
    },
}

fn polars_err(path: &Path) -> impl FnOnce(PolarsError) -> RowsError + '_ {
    move |source| RowsError::Polars {
        path: path.to_owned(),
        source,
    }
}

fn schema_err(path: &Path, column: &str, message: impl Into<String>) -> RowsError {
    RowsError::Schema {
        path: path.to_owned(),
        column: column.to_owned(),
        message: message.into(),
    }
}

/// Write `rows` to `path` (usually `<output>/rows.parquet`), replacing it.
pub fn write_rows(path: &Path, rows: &[Row]) -> Result<(), RowsError> {
    let columns = row_columns(rows.iter()).map_err(polars_err(path))?;
    write_frame(path, rows.len(), columns)
}

/// Read a table written by [`write_rows`] (or [`write_rendered`]: extra columns are ignored).
pub fn read_rows(path: &Path) -> Result<Vec<Row>, RowsError> {
    let mut rows = Vec::new();
    for_each_group(path, |df| {
        rows.extend(rows_from_frame(path, df)?);
        Ok(())
    })?;
    Ok(rows)
}

/// Write rendered rows to `path` (usually `<output>/rendered.parquet`), replacing it.
pub fn write_rendered(path: &Path, rows: &[RenderedRow]) -> Result<(), RowsError> {
    let inner = || -> PolarsResult<Vec<Column>> {
        let mut columns = row_columns(rows.iter().map(|r| &r.row))?;
        columns.push(str_column(
            "rendered",
            rows.iter().map(|r| r.rendered.as_str()),
        ));
        columns.push(spans_column(rows)?);
        columns.push(str_column("prompt", rows.iter().map(|r| r.prompt.as_str())));
        columns.push(str_column(
            "reference",
            rows.iter().map(|r| r.reference.as_str()),
        ));
        Ok(columns)
    };
    let columns = inner().map_err(polars_err(path))?;
    write_frame(path, rows.len(), columns)
}

/// Read a table written by [`write_rendered`].
pub fn read_rendered(path: &Path) -> Result<Vec<RenderedRow>, RowsError> {
    let mut out = Vec::new();
    for_each_group(path, |df| {
        let rows = rows_from_frame(path, df)?;
        let rendered = read_str(path, df, "rendered")?;
        let prompt = read_str(path, df, "prompt")?;
        let reference = read_str(path, df, "reference")?;
        let spans = read_spans(path, df)?;
        out.extend(
            rows.into_iter()
                .zip(rendered)
                .zip(prompt)
                .zip(reference)
                .zip(spans)
                .map(
                    |((((row, rendered), prompt), reference), spans)| RenderedRow {
                        row,
                        rendered: rendered.unwrap_or_default(),
                        spans,
                        prompt: prompt.unwrap_or_default(),
                        reference: reference.unwrap_or_default(),
                    },
                ),
        );
        Ok(())
    })?;
    Ok(out)
}

fn write_frame(path: &Path, height: usize, columns: Vec<Column>) -> Result<(), RowsError> {
    let mut df = DataFrame::new(height, columns).map_err(polars_err(path))?;
    let file = File::create(path).map_err(|source| RowsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BufWriter::new(file);
    ParquetWriter::new(&mut out)
        .with_compression(ParquetCompression::Zstd(None))
        .with_row_group_size(Some(ROW_GROUP_SIZE))
        // Row groups are encoded in order either way; keep it simple and predictable.
        .set_parallel(false)
        .finish(&mut df)
        .map_err(polars_err(path))?;
    out.flush().map_err(|source| RowsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Call `each` with the row groups of the table at `path` as frames, in
/// order, one group per thread at a time (polars decodes those in parallel),
/// so the whole table's Arrow data is never held. A table without row groups
/// is read whole (no rows, but its columns are still checked).
fn for_each_group(
    path: &Path,
    mut each: impl FnMut(&DataFrame) -> Result<(), RowsError>,
) -> Result<(), RowsError> {
    let open = || {
        File::open(path).map_err(|source| RowsError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let mut reader = ParquetReader::new(open()?);
    let metadata = reader.get_metadata().map_err(polars_err(path))?.clone();
    if metadata.row_groups.is_empty() {
        return each(&reader.finish().map_err(polars_err(path))?);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut offset = 0;
    for groups in metadata.row_groups.chunks(threads) {
        let rows = groups.iter().map(|g| g.num_rows()).sum();
        let mut reader = ParquetReader::new(open()?).with_slice(Some((offset, rows)));
        reader.set_metadata(metadata.clone());
        each(&reader.finish().map_err(polars_err(path))?)?;
        offset += rows;
    }
    Ok(())
}

fn str_column<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> Column {
    let arr = Utf8ViewArray::from_slice_values(values.collect::<Vec<_>>());
    Series::from_arrow(name.into(), Box::new(arr))
        .expect("a utf8 view array is a valid string series")
        .into_column()
}

fn opt_str_column<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Column {
    let arr = Utf8ViewArray::from_slice(values.collect::<Vec<_>>());
    Series::from_arrow(name.into(), Box::new(arr))
        .expect("a utf8 view array is a valid string series")
        .into_column()
}

fn struct_dtype(fields: &[(&str, ArrowDataType)]) -> ArrowDataType {
    ArrowDataType::Struct(
        fields
            .iter()
            .map(|(name, dt)| ArrowField::new((*name).into(), dt.clone(), false))
            .collect(),
    )
}

fn list_of(
    values: Box<dyn Array>,
    lengths: impl Iterator<Item = usize>,
) -> PolarsResult<Box<dyn Array>> {
    let offsets =
        OffsetsBuffer::<i64>::from(polars_arrow::offset::Offsets::try_from_lengths(lengths)?);
    let dtype = ArrowDataType::LargeList(Box::new(ArrowField::new(
        "item".into(),
        values.dtype().clone(),
        true,
    )));
    Ok(Box::new(LargeListArray::try_new(
        dtype, offsets, values, None,
    )?))
}

fn row_columns<'a>(rows: impl Iterator<Item = &'a Row> + Clone) -> PolarsResult<Vec<Column>> {
    let roles: Vec<&str> = rows
        .clone()
        .flat_map(|r| r.messages.iter().map(|m| m.role.as_str()))
        .collect();
    let contents: Vec<&str> = rows
        .clone()
        .flat_map(|r| r.messages.iter().map(|m| m.content.as_str()))
        .collect();
    let n = roles.len();
    let message = StructArray::try_new(
        struct_dtype(&[
            ("role", ArrowDataType::Utf8View),
            ("content", ArrowDataType::Utf8View),
        ]),
        n,
        vec![
            Box::new(Utf8ViewArray::from_slice_values(roles)) as Box<dyn Array>,
            Box::new(Utf8ViewArray::from_slice_values(contents)) as Box<dyn Array>,
        ],
        None,
    )?;
    let messages = list_of(Box::new(message), rows.clone().map(|r| r.messages.len()))?;
    Ok(vec![
        Series::from_arrow("messages".into(), messages)?.into_column(),
        opt_str_column("system", rows.clone().map(|r| r.system.as_deref())),
        opt_str_column("tools", rows.clone().map(|r| r.tools.as_deref())),
        opt_str_column("text", rows.clone().map(|r| r.text.as_deref())),
        opt_str_column("label", rows.clone().map(|r| r.label.as_deref())),
        opt_str_column("task", rows.clone().map(|r| r.task.as_deref())),
        str_column("source_file", rows.clone().map(|r| r.source_file.as_str())),
        Column::new(
            "source_row".into(),
            rows.map(|r| r.source_row).collect::<Vec<u64>>(),
        ),
    ])
}

fn spans_column(rows: &[RenderedRow]) -> PolarsResult<Column> {
    let starts: Vec<u32> = rows
        .iter()
        .flat_map(|r| r.spans.iter().map(|s| s.0))
        .collect();
    let ends: Vec<u32> = rows
        .iter()
        .flat_map(|r| r.spans.iter().map(|s| s.1))
        .collect();
    let n = starts.len();
    let spans = StructArray::try_new(
        struct_dtype(&[
            ("start", ArrowDataType::UInt32),
            ("end", ArrowDataType::UInt32),
        ]),
        n,
        vec![
            Box::new(PrimitiveArray::from_vec(starts)) as Box<dyn Array>,
            Box::new(PrimitiveArray::from_vec(ends)) as Box<dyn Array>,
        ],
        None,
    )?;
    let list = list_of(Box::new(spans), rows.iter().map(|r| r.spans.len()))?;
    Ok(Series::from_arrow("spans".into(), list)?.into_column())
}

fn read_str(path: &Path, df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, RowsError> {
    let col = df
        .column(name)
        .map_err(|_| schema_err(path, name, "missing"))?;
    let ca = col
        .str()
        .map_err(|e| schema_err(path, name, e.to_string()))?;
    Ok(ca
        .downcast_iter()
        .flat_map(|arr| arr.iter())
        .map(|v| v.map(str::to_owned))
        .collect())
}

/// The flat struct arrays of a list<struct> column, one entry per chunk, with
/// each chunk's offsets, so rows can be sliced without a Series per row.
fn list_struct_chunks<'a>(
    path: &Path,
    df: &'a DataFrame,
    name: &str,
) -> Result<Vec<(&'a LargeListArray, &'a StructArray)>, RowsError> {
    let col = df
        .column(name)
        .map_err(|_| schema_err(path, name, "missing"))?;
    let ca = col
        .list()
        .map_err(|e| schema_err(path, name, e.to_string()))?;
    ca.downcast_iter()
        .map(|list| {
            let values = list
                .values()
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| schema_err(path, name, "expected a list of structs"))?;
            Ok((list, values))
        })
        .collect()
}

fn field<'a, T: 'static>(
    path: &Path,
    column: &str,
    arr: &'a StructArray,
    i: usize,
) -> Result<&'a T, RowsError> {
    arr.values()
        .get(i)
        .and_then(|a| a.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            schema_err(
                path,
                column,
                format!("struct field {i} has an unexpected type"),
            )
        })
}

fn rows_from_frame(path: &Path, df: &DataFrame) -> Result<Vec<Row>, RowsError> {
    let mut messages: Vec<Vec<Message>> = Vec::with_capacity(df.height());
    for (list, values) in list_struct_chunks(path, df, "messages")? {
        let roles = field::<Utf8ViewArray>(path, "messages", values, 0)?;
        let contents = field::<Utf8ViewArray>(path, "messages", values, 1)?;
        for w in list.offsets().buffer().windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            messages.push(
                (a..b)
                    .map(|i| Message::new(roles.value(i), contents.value(i)))
                    .collect(),
            );
        }
    }
    let system = read_str(path, df, "system")?;
    let tools = read_str(path, df, "tools")?;
    let text = read_str(path, df, "text")?;
    let label = read_str(path, df, "label")?;
    let task = read_str(path, df, "task")?;
    let source_file = read_str(path, df, "source_file")?;
    let source_row: Vec<u64> = df
        .column("source_row")
        .map_err(|_| schema_err(path, "source_row", "missing"))?
        .u64()
        .map_err(|e| schema_err(path, "source_row", e.to_string()))?
        .downcast_iter()
        .flat_map(|arr| arr.iter())
        .map(|v| v.copied().unwrap_or_default())
        .collect();
    let mut out = Vec::with_capacity(df.height());
    let mut it = (
        system.into_iter(),
        tools.into_iter(),
        text.into_iter(),
        label.into_iter(),
        task.into_iter(),
        source_file.into_iter(),
    );
    for (msgs, source_row) in messages.into_iter().zip(source_row) {
        out.push(Row {
            messages: msgs,
            system: it.0.next().flatten(),
            tools: it.1.next().flatten(),
            text: it.2.next().flatten(),
            label: it.3.next().flatten(),
            task: it.4.next().flatten(),
            source_file: it.5.next().flatten().unwrap_or_default(),
            source_row,
        });
    }
    Ok(out)
}

fn read_spans(path: &Path, df: &DataFrame) -> Result<Vec<Vec<(u32, u32)>>, RowsError> {
    let mut out = Vec::with_capacity(df.height());
    for (list, values) in list_struct_chunks(path, df, "spans")? {
        let starts = field::<PrimitiveArray<u32>>(path, "spans", values, 0)?;
        let ends = field::<PrimitiveArray<u32>>(path, "spans", values, 1)?;
        for w in list.offsets().buffer().windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            out.push((a..b).map(|i| (starts.value(i), ends.value(i))).collect());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Row> {
        vec![
            Row {
                messages: vec![
                    Message::new("user", "Hi"),
                    Message::new("assistant", "Hello!"),
                ],
                system: Some("Be brief.".into()),
                source_file: "a.jsonl".into(),
                source_row: 2,
                ..Row::default()
            },
            Row {
                // unicode, newlines, and an empty string content
                messages: vec![
                    Message::new("user", "请对以下案件做出分析：\r\n«ça» 🚀"),
                    Message::new("assistant", ""),
                    Message::new("tool", "{\"ok\": true}"),
                    Message::new("assistant", "done"),
                ],
                tools: Some("[{\"name\":\"f\"}]".into()),
                text: Some("".into()),
                label: Some("Yes".into()),
                task: Some("hearsay".into()),
                source_file: "legal/hearsay/test.tsv".into(),
                source_row: 0,
                ..Row::default()
            },
            // an empty conversation survives the round trip too
            Row {
                source_file: String::new(),
                source_row: u64::MAX,
                ..Row::default()
            },
        ]
    }

    #[test]
    fn rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ROWS_FILE);
        let rows = sample();
        write_rows(&path, &rows).unwrap();
        assert_eq!(read_rows(&path).unwrap(), rows);
    }

    #[test]
    fn empty_table_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ROWS_FILE);
        write_rows(&path, &[]).unwrap();
        assert_eq!(read_rows(&path).unwrap(), Vec::<Row>::new());
        let path = dir.path().join(RENDERED_FILE);
        write_rendered(&path, &[]).unwrap();
        assert_eq!(read_rendered(&path).unwrap(), Vec::<RenderedRow>::new());
    }

    #[test]
    fn same_rows_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        // more than one row group, so group boundaries are exercised too
        let rows: Vec<Row> = sample().into_iter().cycle().take(70_000).collect();
        write_rows(&a, &rows).unwrap();
        write_rows(&b, &rows).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(read_rows(&a).unwrap(), rows);
    }

    /// [`sample`] rendered: spans, an empty reference, non-ASCII text.
    fn rendered_sample() -> Vec<RenderedRow> {
        sample()
            .into_iter()
            .enumerate()
            .map(|(i, row)| RenderedRow {
                row,
                rendered: format!("<|im_start|>user\nHi é {i}<|im_end|>"),
                spans: (0..i as u32).map(|k| (k * 3, k * 3 + 2)).collect(),
                prompt: "<|im_start|>user\n".into(),
                reference: if i == 1 {
                    String::new()
                } else {
                    "Hello!".into()
                },
            })
            .collect()
    }

    #[test]
    fn tables_of_several_row_groups_read_back_group_by_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RENDERED_FILE);
        let rendered: Vec<RenderedRow> = rendered_sample()
            .into_iter()
            .cycle()
            .take(2 * ROW_GROUP_SIZE + 7)
            .collect();
        write_rendered(&path, &rendered).unwrap();
        assert_eq!(read_rendered(&path).unwrap(), rendered);
        let rows: Vec<Row> = rendered.into_iter().map(|r| r.row).collect();
        assert_eq!(read_rows(&path).unwrap(), rows);
    }

    #[test]
    fn rendered_round_trip_and_rows_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RENDERED_FILE);
        let rendered = rendered_sample();
        write_rendered(&path, &rendered).unwrap();
        assert_eq!(read_rendered(&path).unwrap(), rendered);
        // a rendered table still reads as plain rows
        assert_eq!(read_rows(&path).unwrap(), sample());
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_rows(Path::new("/nonexistent/rows.parquet")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/rows.parquet"),
            "{err}"
        );
    }

    #[test]
    fn wrong_table_names_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ROWS_FILE);
        write_rows(&path, &sample()).unwrap();
        let err = read_rendered(&path).unwrap_err();
        assert!(err.to_string().contains("`rendered`"), "{err}");
    }
}

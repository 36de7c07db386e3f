//! The canonical row tables that travel between pipe's data stages, as Parquet.
//!
//! Every data stage (ingest, dedup, filter, split) reads and writes [`Row`]s;
//! render turns them into [`RenderedRow`]s for tokenize and eval. This crate
//! owns only the schema and its (de)serialization, so that stage crates agree on
//! one layout without depending on each other.
//!
//! Files are written deterministically: the same rows give the same bytes (no
//! timestamps, fixed compression and row-group size, row groups written in
//! order whatever thread compressed them), which the engine's caching and
//! `pipe reproduce` rely on. A table is built, compressed and written row group
//! by row group, so the Arrow copy of the rows never exceeds a few groups.
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
use std::ops::Range;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_arrow::array::{Array, ListArray, PrimitiveArray, StructArray, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, Field as ArrowField};
use polars_arrow::offset::OffsetsBuffer;
use polars_parquet::write::{
    CompressedPage, Compressor, Encoding, ParquetType, StatisticsOptions, Version, WriteOptions,
    array_to_columns,
};
use rayon::prelude::*;
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
    write_table(path, rows.len(), ROW_GROUP_SIZE, |range| {
        row_columns(rows[range].iter())
    })
}

/// Read a table written by [`write_rows`] (or [`write_rendered`]: extra columns are ignored).
pub fn read_rows(path: &Path) -> Result<Vec<Row>, RowsError> {
    let mut rows = Vec::new();
    for_each_group(path, |df, total| {
        // room for the whole table at once: a vector doubling as groups come
        // held its old and new buffers together, a table's row structs again
        rows.reserve_exact(total.saturating_sub(rows.len()));
        rows.extend(rows_from_frame(path, df)?);
        Ok(())
    })?;
    Ok(rows)
}

/// Write rendered rows to `path` (usually `<output>/rendered.parquet`), replacing it.
pub fn write_rendered(path: &Path, rows: &[RenderedRow]) -> Result<(), RowsError> {
    write_table(path, rows.len(), ROW_GROUP_SIZE, |range| {
        let rows = &rows[range];
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
    })
}

/// Read a table written by [`write_rendered`].
pub fn read_rendered(path: &Path) -> Result<Vec<RenderedRow>, RowsError> {
    let mut out = Vec::new();
    for_each_group(path, |df, total| {
        out.reserve_exact(total.saturating_sub(out.len()));
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

/// The row groups of a table of `height` rows, cut where polars'
/// `ParquetWriter::finish` cuts a one-chunk frame (`chunk_df_for_writing`):
/// under `size` rows one group, else `height / size` groups of equal size with
/// the remainder in the last one (the cuts tables had when they were written
/// as one frame).
fn row_groups(height: usize, size: usize) -> Vec<Range<usize>> {
    if height == 0 {
        return Vec::new();
    }
    let n = (height / size).max(1);
    let each = height / n;
    (0..n)
        .map(|i| i * each..if i + 1 == n { height } else { (i + 1) * each })
        .collect()
}

/// Compression of every table (zstd at its default level).
const COMPRESSION: ParquetCompression = ParquetCompression::Zstd(None);

/// The writer every table is written with.
fn parquet_writer<W: Write>(out: W, group_size: usize) -> ParquetWriter<W> {
    ParquetWriter::new(out)
        .with_compression(COMPRESSION)
        .with_row_group_size(Some(group_size))
        .set_parallel(false)
}

/// One row group's columns, encoded and compressed page by page as polars'
/// writer does it for [`parquet_writer`]'s options (its `create_eager_serializer`:
/// default statistics, format version 1, default page size), but with the
/// pages owned, so that any thread can make them and the file writer only
/// copies them out in order.
fn compress_group(
    df: &DataFrame,
    fields: &[ParquetType],
    encodings: &[Vec<Encoding>],
) -> PolarsResult<Vec<Vec<CompressedPage>>> {
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        version: Version::V1,
        compression: COMPRESSION.into(),
        data_page_size: None,
    };
    let mut out = Vec::new();
    for batch in df.iter_chunks(CompatLevel::newest(), false) {
        for ((array, field), encoding) in batch.columns().iter().zip(fields).zip(encodings) {
            for leaf in array_to_columns(array, field.clone(), options, encoding)? {
                let pages = leaf.collect::<PolarsResult<Vec<_>>>()?;
                let compressed =
                    Compressor::new(pages.into_iter().map(Ok), options.compression, vec![])
                        .collect::<Result<Vec<_>, _>>()?;
                out.push(compressed);
            }
        }
    }
    Ok(out)
}

/// Write a table of `height` rows whose columns for a range of rows are
/// `columns_of(range)`. Row groups are built (Arrow arrays of their rows only)
/// and compressed as many at a time as the pool has threads, then written in
/// order, so the bytes do not depend on the thread count and only those
/// groups' copies of the rows are held, not the table's.
///
/// Pages hold ~1 MiB of their group's values. (Writing the whole frame at
/// once, as before, sized the pages of the `messages` column by the whole
/// table's text, since a group's slice of a list column still points at all
/// of it: a table of 1M rows got ~15x as many pages, each ~70 KiB.)
fn write_table(
    path: &Path,
    height: usize,
    group_size: usize,
    columns_of: impl Fn(Range<usize>) -> PolarsResult<Vec<Column>> + Sync,
) -> Result<(), RowsError> {
    let frame = |range: Range<usize>| DataFrame::new(range.len(), columns_of(range)?);
    let file = File::create(path).map_err(|source| RowsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BufWriter::new(file);
    let inner = |out: &mut BufWriter<File>| -> PolarsResult<()> {
        let schema = frame(0..0)?.schema().clone();
        let mut writer = parquet_writer(out, group_size).batched(&schema)?;
        let fields = writer.parquet_schema().fields().to_vec();
        let encodings = get_encodings(&schema.to_arrow(CompatLevel::newest()));
        let groups = row_groups(height, group_size);
        for batch in groups.chunks(rayon::current_num_threads().max(1)) {
            let compressed = batch
                .par_iter()
                .map(|range| compress_group(&frame(range.clone())?, &fields, &encodings))
                .collect::<PolarsResult<Vec<_>>>()?;
            for (range, columns) in batch.iter().zip(compressed) {
                writer.write_row_group(range.len() as u64, &columns)?;
            }
        }
        writer.finish()?;
        Ok(())
    };
    inner(&mut out).map_err(polars_err(path))?;
    out.flush().map_err(|source| RowsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Call `each` with the row groups of the table at `path` as frames, in
/// order, one group per thread of the calling rayon pool at a time (polars
/// decodes those in parallel), so the whole table's Arrow data is never
/// held, and with the number of rows in the whole table. A table without row groups is read whole (no rows, but
/// its columns are still checked).
fn for_each_group(
    path: &Path,
    mut each: impl FnMut(&DataFrame, usize) -> Result<(), RowsError>,
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
        return each(&reader.finish().map_err(polars_err(path))?, 0);
    }
    // as many groups at a time as the stage has threads (its rayon pool), as
    // the writer compresses them: a stage given one thread holds one group
    let threads = rayon::current_num_threads().max(1);
    let mut offset = 0;
    for groups in metadata.row_groups.chunks(threads) {
        let rows = groups.iter().map(|g| g.num_rows()).sum();
        let mut reader = ParquetReader::new(open()?).with_slice(Some((offset, rows)));
        reader.set_metadata(metadata.clone());
        each(
            &reader.finish().map_err(polars_err(path))?,
            metadata.num_rows,
        )?;
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

    #[test]
    fn row_groups_cut_where_polars_cuts() {
        let lengths = |height: usize| -> Vec<usize> {
            let groups = row_groups(height, 4);
            // contiguous, from the first row to the last
            let mut end = 0;
            for g in &groups {
                assert_eq!(g.start, end);
                end = g.end;
            }
            assert_eq!(end, height);
            groups.iter().map(|g| g.len()).collect()
        };
        assert_eq!(lengths(0), Vec::<usize>::new());
        assert_eq!(lengths(3), [3]);
        assert_eq!(lengths(7), [7]);
        assert_eq!(lengths(8), [4, 4]);
        assert_eq!(lengths(11), [5, 6]);
        assert_eq!(lengths(14), [4, 4, 6]);
    }

    #[test]
    fn group_by_group_writes_polars_pages_and_groups() {
        // tables of one page per column chunk: what polars writes for the
        // whole frame, so the pages are encoded and compressed as polars does
        let dir = tempfile::tempdir().unwrap();
        let rendered = rendered_sample();
        for height in [0, 1, 3, 7, 8, 11, 14, 29] {
            for group_size in [1, 2, 4, 64] {
                let rows: Vec<RenderedRow> =
                    rendered.iter().cloned().cycle().take(height).collect();
                let columns_of = |range: Range<usize>| -> PolarsResult<Vec<Column>> {
                    let rows = &rows[range];
                    let mut columns = row_columns(rows.iter().map(|r| &r.row))?;
                    columns.push(spans_column(rows)?);
                    Ok(columns)
                };
                let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
                write_table(&a, height, group_size, columns_of).unwrap();
                let mut df = DataFrame::new(height, columns_of(0..height).unwrap()).unwrap();
                let mut file = File::create(&b).unwrap();
                parquet_writer(&mut file, group_size)
                    .finish(&mut df)
                    .unwrap();
                assert_eq!(
                    std::fs::read(&a).unwrap(),
                    std::fs::read(&b).unwrap(),
                    "{height} rows in groups of {group_size}"
                );
            }
        }
    }

    #[test]
    fn bytes_do_not_depend_on_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        // several groups, several pages each
        let rows: Vec<Row> = sample()
            .into_iter()
            .cycle()
            .take(3 * ROW_GROUP_SIZE + 11)
            .enumerate()
            .map(|(i, mut r)| {
                r.source_row = i as u64;
                r.messages
                    .iter_mut()
                    .for_each(|m| m.content.push_str(&"x".repeat(i % 40)));
                r
            })
            .collect();
        let written: Vec<Vec<u8>> = [1, 3]
            .into_iter()
            .map(|threads| {
                let path = dir.path().join(format!("{threads}.parquet"));
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| write_rows(&path, &rows))
                    .unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        assert_eq!(written[0], written[1]);
        let path = dir.path().join("1.parquet");
        assert_eq!(read_rows(&path).unwrap(), rows);
        let groups = ParquetReader::new(File::open(&path).unwrap())
            .get_metadata()
            .unwrap()
            .row_groups
            .iter()
            .map(|g| g.num_rows())
            .collect::<Vec<_>>();
        let expected: Vec<usize> = row_groups(rows.len(), ROW_GROUP_SIZE)
            .into_iter()
            .map(|g| g.len())
            .collect();
        assert_eq!(groups, expected);
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

//! `tokens.arrow`: one record per training sequence (TEAM.md):
//! `input_ids: List<UInt32>`, `labels: List<Int32>`, `position_ids: List<UInt32>`,
//! `segment_ids: List<UInt32>`. Written with arrow-ipc's FileWriter, which puts
//! no timestamps in the file: the same sequences give the same bytes.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::ArrowPrimitiveType;
use arrow_array::types::{Int32Type, UInt32Type};
use arrow_array::{ArrayRef, Int32Array, ListArray, RecordBatch, UInt32Array};
use arrow_buffer::OffsetBuffer;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::TokenizeError;

/// File name of the token table inside each output folder.
pub const TOKENS_FILE: &str = "tokens.arrow";

/// One training sequence: one example, or several packed ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequence {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i32>,
    /// Restart at 0 for every segment.
    pub position_ids: Vec<u32>,
    /// 1, 2, ... per example within the sequence; 0 would be padding (never written).
    pub segment_ids: Vec<u32>,
}

/// The schema of `tokens.arrow`.
pub fn schema() -> SchemaRef {
    let list = |name: &str, item: DataType| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new_list_field(item, false))),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        list("input_ids", DataType::UInt32),
        list("labels", DataType::Int32),
        list("position_ids", DataType::UInt32),
        list("segment_ids", DataType::UInt32),
    ]))
}

/// Column buffers for one record batch.
#[derive(Default)]
pub struct BatchBuilder {
    input_ids: Vec<u32>,
    labels: Vec<i32>,
    position_ids: Vec<u32>,
    segment_ids: Vec<u32>,
    offsets: Vec<i32>,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self {
            offsets: vec![0],
            ..Self::default()
        }
    }

    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Room for `sequences` more sequences of `tokens` tokens in all: columns
    /// sized once per batch rather than grown (and copied) as rows arrive.
    pub fn reserve(&mut self, sequences: usize, tokens: usize) {
        self.input_ids.reserve(tokens);
        self.labels.reserve(tokens);
        self.position_ids.reserve(tokens);
        self.segment_ids.reserve(tokens);
        self.offsets.reserve(sequences);
    }

    /// Append one sequence made of `segments`, each example's ids and labels
    /// (one segment for unpacked data).
    pub fn push<'a>(&mut self, segments: impl IntoIterator<Item = (&'a [u32], &'a [i32])>) {
        for (seg, (ids, labels)) in segments.into_iter().enumerate() {
            self.input_ids.extend_from_slice(ids);
            self.labels.extend_from_slice(labels);
            self.position_ids.extend(0..ids.len() as u32);
            self.segment_ids
                .extend(std::iter::repeat_n(seg as u32 + 1, ids.len()));
        }
        let end = i32::try_from(self.input_ids.len()).expect("a batch holds < 2^31 tokens");
        self.offsets.push(end);
    }

    fn take(&mut self) -> RecordBatch {
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        let list = |values: ArrayRef, item: DataType| -> ArrayRef {
            Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(item, false)),
                offsets.clone(),
                values,
                None,
            ))
        };
        let columns = vec![
            list(
                Arc::new(UInt32Array::from(std::mem::take(&mut self.input_ids))),
                DataType::UInt32,
            ),
            list(
                Arc::new(Int32Array::from(std::mem::take(&mut self.labels))),
                DataType::Int32,
            ),
            list(
                Arc::new(UInt32Array::from(std::mem::take(&mut self.position_ids))),
                DataType::UInt32,
            ),
            list(
                Arc::new(UInt32Array::from(std::mem::take(&mut self.segment_ids))),
                DataType::UInt32,
            ),
        ];
        RecordBatch::try_new(schema(), columns).expect("columns match the schema")
    }
}

/// Streams record batches into `tokens.arrow`.
pub struct TokensWriter {
    path: PathBuf,
    writer: FileWriter<BufWriter<File>>,
    pub sequences: u64,
}

impl TokensWriter {
    pub fn create(path: &Path) -> Result<Self, TokenizeError> {
        let err = |e: String| TokenizeError::Write {
            path: path.to_owned(),
            message: e,
        };
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let writer = FileWriter::try_new(BufWriter::with_capacity(1 << 20, file), &schema())
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            writer,
            sequences: 0,
        })
    }

    /// Write what `batch` holds as one record batch (nothing when empty).
    pub fn write(&mut self, batch: &mut BatchBuilder) -> Result<(), TokenizeError> {
        if batch.rows() == 0 {
            return Ok(());
        }
        self.sequences += batch.rows() as u64;
        let record = batch.take();
        self.writer
            .write(&record)
            .map_err(|e| TokenizeError::Write {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    pub fn finish(mut self) -> Result<(), TokenizeError> {
        let err = |e: String| TokenizeError::Write {
            path: self.path.clone(),
            message: e,
        };
        self.writer.finish().map_err(|e| err(e.to_string()))?;
        let mut inner = self.writer.into_inner().map_err(|e| err(e.to_string()))?;
        std::io::Write::flush(&mut inner).map_err(|e| err(e.to_string()))?;
        inner
            .into_inner()
            .map_err(|e| err(e.to_string()))?
            .sync_all()
            .map_err(|e| err(e.to_string()))
    }
}

/// Read every sequence of a `tokens.arrow` (tests, tools; training maps it itself).
pub fn read_tokens(path: &Path) -> Result<Vec<Sequence>, TokenizeError> {
    let err = |e: String| TokenizeError::Read {
        path: path.to_owned(),
        message: e,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let reader = FileReader::try_new_buffered(file, None).map_err(|e| err(e.to_string()))?;
    if reader.schema() != schema() {
        return Err(err(format!(
            "schema is {:?}, expected the tokens.arrow schema",
            reader.schema()
        )));
    }
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        let column = |i: usize| batch.column(i).as_list::<i32>().clone();
        let (ids, labels, pos, seg) = (column(0), column(1), column(2), column(3));
        for row in 0..batch.num_rows() {
            out.push(Sequence {
                input_ids: values::<UInt32Type>(&ids, row),
                labels: values::<Int32Type>(&labels, row),
                position_ids: values::<UInt32Type>(&pos, row),
                segment_ids: values::<UInt32Type>(&seg, row),
            });
        }
    }
    Ok(out)
}

fn values<T: ArrowPrimitiveType>(list: &ListArray, row: usize) -> Vec<T::Native> {
    let array = list.value(row);
    array.as_primitive::<T>().values().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Tokenized;

    #[test]
    fn round_trip_and_same_bytes() {
        let a = Tokenized {
            input_ids: vec![1, 2, 3],
            labels: vec![-100, 2, 3],
        };
        let b = Tokenized {
            input_ids: vec![7, 8],
            labels: vec![-100, 8],
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let path = dir.path().join(name);
            let mut w = TokensWriter::create(&path).unwrap();
            let mut batch = BatchBuilder::new();
            let (a, b) = (
                (&a.input_ids[..], &a.labels[..]),
                (&b.input_ids[..], &b.labels[..]),
            );
            batch.push([a, b]);
            batch.push([b]);
            w.write(&mut batch).unwrap();
            batch.push([a]);
            w.write(&mut batch).unwrap();
            w.finish().unwrap();
            path
        };
        let (p1, p2) = (write("1.arrow"), write("2.arrow"));
        assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        let seqs = read_tokens(&p1).unwrap();
        assert_eq!(seqs.len(), 3);
        assert_eq!(
            seqs[0],
            Sequence {
                input_ids: vec![1, 2, 3, 7, 8],
                labels: vec![-100, 2, 3, -100, 8],
                position_ids: vec![0, 1, 2, 0, 1],
                segment_ids: vec![1, 1, 1, 2, 2],
            }
        );
        assert_eq!(seqs[1].segment_ids, vec![1, 1]);
        assert_eq!(seqs[2].input_ids, vec![1, 2, 3]);
    }
}

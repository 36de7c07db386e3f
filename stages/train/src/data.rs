//! Training sequences from `tokens.arrow` (written by the tokenize stage) and
//! batches built from them.
//!
//! One record per sequence: `input_ids: List<UInt32>`, `labels: List<Int32>`
//! (-100 = not trained; aligned with the inputs, the model shifts),
//! `position_ids: List<UInt32>` (restart per packed segment) and
//! `segment_ids: List<UInt32>` (1, 2, ... per example; 0 = padding).

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt32Type};
use arrow_array::{ArrayRef, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::error::{Result, TrainError};

pub const TOKENS_FILE: &str = "tokens.arrow";

/// One training sequence (possibly several packed examples).
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i32>,
    pub position_ids: Vec<u32>,
    pub segment_ids: Vec<u32>,
}

impl Sequence {
    /// A single example: positions 0.., one segment.
    pub fn single(input_ids: Vec<u32>, labels: Vec<i32>) -> Self {
        let n = input_ids.len();
        Sequence {
            input_ids,
            labels,
            position_ids: (0..n as u32).collect(),
            segment_ids: vec![1; n],
        }
    }

    /// Tokens whose label is trained (the first token's label never is: nothing predicts it).
    pub fn trained_tokens(&self) -> usize {
        self.labels.iter().skip(1).filter(|l| **l >= 0).count()
    }
}

fn list_column<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a ListArray> {
    batch
        .column_by_name(name)
        .ok_or_else(|| TrainError::bad(path, format!("column `{name}` is missing")))?
        .as_list_opt::<i32>()
        .ok_or_else(|| TrainError::bad(path, format!("column `{name}` is not a list")))
}

/// Read every sequence of a `tokens.arrow` file, in file order.
pub fn read_tokens(path: &Path) -> Result<Vec<Sequence>> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let reader = arrow_ipc::reader::FileReader::try_new_buffered(file, None)
        .map_err(|e| TrainError::bad(path, format!("not an Arrow IPC file: {e}")))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| TrainError::bad(path, e.to_string()))?;
        let ids = list_column(&batch, "input_ids", path)?;
        let labels = list_column(&batch, "labels", path)?;
        let pos = list_column(&batch, "position_ids", path)?;
        let seg = list_column(&batch, "segment_ids", path)?;
        let u32s = |a: &ListArray, i: usize, name: &str| -> Result<Vec<u32>> {
            let v = a.value(i);
            let p = v.as_primitive_opt::<UInt32Type>().ok_or_else(|| {
                TrainError::bad(path, format!("column `{name}` must be List<UInt32>"))
            })?;
            Ok(p.values().to_vec())
        };
        for i in 0..batch.num_rows() {
            let l = labels.value(i);
            let l = l
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(|| TrainError::bad(path, "column `labels` must be List<Int32>"))?
                .values()
                .to_vec();
            let s = Sequence {
                input_ids: u32s(ids, i, "input_ids")?,
                labels: l,
                position_ids: u32s(pos, i, "position_ids")?,
                segment_ids: u32s(seg, i, "segment_ids")?,
            };
            let n = s.input_ids.len();
            if s.labels.len() != n || s.position_ids.len() != n || s.segment_ids.len() != n {
                return Err(TrainError::bad(
                    path,
                    format!("record {}: the four columns differ in length", out.len()),
                ));
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// Write sequences as `tokens.arrow` (tests and tools; the tokenize stage has its own writer).
pub fn write_tokens(path: &Path, seqs: &[Sequence]) -> Result<()> {
    fn list_u32(rows: Vec<&[u32]>) -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<UInt32Type, _, _>(
            rows.into_iter()
                .map(|r| Some(r.iter().map(|x| Some(*x)).collect::<Vec<_>>())),
        ))
    }
    let item = |dt: DataType| DataType::List(Arc::new(Field::new("item", dt, true)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("input_ids", item(DataType::UInt32), false),
        Field::new("labels", item(DataType::Int32), false),
        Field::new("position_ids", item(DataType::UInt32), false),
        Field::new("segment_ids", item(DataType::UInt32), false),
    ]));
    let labels: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
        seqs.iter()
            .map(|s| Some(s.labels.iter().map(|x| Some(*x)).collect::<Vec<_>>())),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            list_u32(seqs.iter().map(|s| s.input_ids.as_slice()).collect()),
            labels,
            list_u32(seqs.iter().map(|s| s.position_ids.as_slice()).collect()),
            list_u32(seqs.iter().map(|s| s.segment_ids.as_slice()).collect()),
        ],
    )
    .map_err(|e| TrainError::bad(path, e.to_string()))?;
    let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    let mut w = arrow_ipc::writer::FileWriter::try_new(file, &schema)
        .map_err(|e| TrainError::bad(path, e.to_string()))?;
    w.write(&batch)
        .and_then(|_| w.finish())
        .map_err(|e| TrainError::bad(path, e.to_string()))
}

/// Sequences padded on the right to the longest in the batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub b: usize,
    pub t: usize,
    pub input_ids: Vec<u32>,
    pub labels: Vec<i32>,
    pub position_ids: Vec<u32>,
    pub segment_ids: Vec<u32>,
}

impl Batch {
    pub fn new(seqs: &[&Sequence], pad_id: u32) -> Batch {
        let b = seqs.len();
        let t = seqs.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
        let mut batch = Batch {
            b,
            t,
            input_ids: vec![pad_id; b * t],
            labels: vec![-100; b * t],
            position_ids: vec![0; b * t],
            segment_ids: vec![0; b * t],
        };
        for (r, s) in seqs.iter().enumerate() {
            let n = s.input_ids.len();
            let at = r * t;
            batch.input_ids[at..at + n].copy_from_slice(&s.input_ids);
            batch.labels[at..at + n].copy_from_slice(&s.labels);
            batch.position_ids[at..at + n].copy_from_slice(&s.position_ids);
            batch.segment_ids[at..at + n].copy_from_slice(&s.segment_ids);
        }
        batch
    }

    /// Tokens the loss is computed on.
    pub fn trained_tokens(&self) -> usize {
        (0..self.b)
            .map(|r| {
                self.labels[r * self.t..(r + 1) * self.t]
                    .iter()
                    .skip(1)
                    .filter(|l| **l >= 0)
                    .count()
            })
            .sum()
    }

    /// Non-padding tokens (for tokens/s).
    pub fn real_tokens(&self) -> usize {
        self.segment_ids.iter().filter(|s| **s != 0).count()
    }
}

/// Pack single examples greedily, in order, into sequences of at most `max_len`
/// tokens with per-segment positions and segment ids (tests and tools; the
/// tokenize stage packs for real runs). The first label of each segment is
/// masked, as the tokens.arrow contract says.
pub fn pack(examples: &[Sequence], max_len: usize) -> Vec<Sequence> {
    let mut out: Vec<Sequence> = Vec::new();
    let mut cur: Option<Sequence> = None;
    for ex in examples {
        let n = ex.input_ids.len();
        if let Some(c) = &cur
            && c.input_ids.len() + n > max_len
        {
            out.push(cur.take().expect("some"));
        }
        let c = cur.get_or_insert_with(|| Sequence {
            input_ids: vec![],
            labels: vec![],
            position_ids: vec![],
            segment_ids: vec![],
        });
        let seg = c.segment_ids.last().copied().unwrap_or(0) + 1;
        c.input_ids.extend(&ex.input_ids);
        c.labels.push(-100);
        c.labels.extend(&ex.labels[1..]);
        c.position_ids.extend(0..n as u32);
        c.segment_ids.extend(std::iter::repeat_n(seg, n));
    }
    out.extend(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_batches_pad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKENS_FILE);
        let seqs = vec![
            Sequence::single(vec![1, 2, 3], vec![-100, 2, 3]),
            Sequence::single(vec![4, 5], vec![-100, 5]),
        ];
        write_tokens(&path, &seqs).unwrap();
        let back = read_tokens(&path).unwrap();
        assert_eq!(back, seqs);
        let b = Batch::new(&[&back[0], &back[1]], 9);
        assert_eq!((b.b, b.t), (2, 3));
        assert_eq!(b.input_ids, [1, 2, 3, 4, 5, 9]);
        assert_eq!(b.segment_ids, [1, 1, 1, 1, 1, 0]);
        assert_eq!(b.trained_tokens(), 3);
        let packed = pack(&seqs, 8);
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].segment_ids, [1, 1, 1, 2, 2]);
        assert_eq!(packed[0].position_ids, [0, 1, 2, 0, 1]);
    }
}

//! Tokenization with prompt masking and packing, written as Arrow IPC.
//!
//! `pipe-tokenize` turns rendered conversations (text plus the byte spans of the
//! assistant turns, from `pipe-render`) into training sequences:
//! - [`load_tokenizer`] builds the model's tokenizer: `builtin:tiny` (byte-level,
//!   in code), a Hugging Face folder's `tokenizer.json`, or a GGUF's byte-level BPE
//!   vocabulary with its pre-tokenizer looked up by name in an explicit table
//!   ([`pretok`]); special tokens written in the text become single tokens. The
//!   builtin and GPT-2-split GGUF tokenizers encode through this crate's own
//!   split and byte-level BPE with per-thread word caches (same ids, checked
//!   against tokenizers in the tests); others through the tokenizers pipeline;
//! - [`tokenize_example`] labels tokens `-100` outside the assistant spans, learns
//!   the end-of-turn token, never doubles BOS and truncates to `max_len`;
//! - [`tokenize_to_file`] does that in parallel over bounded chunks, packs
//!   examples first-fit-decreasing when asked, and streams `tokens.arrow`
//!   ([`arrow_io`]) from a writer thread while counting [`TokenizeStats`].
//!
//! Caching and the recipe live elsewhere: the `tokenize` stage adapter in the
//! `pipe` binary reads the rendered table and calls [`tokenize_to_file`].
//!
//! ```
//! use pipe_model::ResolvedModel;
//! let tok = pipe_tokenize::load_tokenizer(&ResolvedModel::Builtin { name: "tiny".into() }).unwrap();
//! assert_eq!(tok.encode("<|im_start|>hi"), vec![256, b'h' as u32, b'i' as u32]);
//! ```

pub mod arrow_io;
mod bpe;
mod error;
mod example;
mod fast;
mod gpt2_split;
mod load;
pub mod pack;
pub mod pretok;

use std::path::Path;

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use arrow_io::{Sequence, TOKENS_FILE, read_tokens};
pub use error::TokenizeError;
pub use example::{
    Example, ExampleOptions, ExampleResult, IGNORE, Outcome, Tokenized, TrainOn, Truncate,
    tokenize_example,
};
pub use load::{IdsAndOffsets, ModelTokenizer, bytes_to_unicode, load_tokenizer};

/// Bump when the bytes of `tokens.arrow` would change for the same inputs.
pub const TOKENIZE_CODE_VERSION: u32 = 1;

/// Examples tokenized (and packed) together. Part of the output definition:
/// packing happens within a chunk, so changing it changes the bytes (bump
/// [`TOKENIZE_CODE_VERSION`]). It also bounds memory.
pub const CHUNK_ROWS: usize = 16_384;

/// Rows a worker tokenizes into one shared buffer ([`example::Block`]): small
/// enough that a chunk splits evenly over the threads, large enough that the
/// buffers cost little.
const BLOCK_ROWS: usize = 256;

/// Params of the `tokenize` stage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeParams {
    /// Model whose tokenizer is used (`builtin:tiny`, a folder, a .gguf, a hub id);
    /// default: the recipe's `model`.
    #[serde(default)]
    pub model: Option<String>,
    /// Longest sequence in tokens; longer examples are truncated or dropped (`truncate`).
    #[serde(default = "TokenizeParams::default_max_len")]
    pub max_len: usize,
    /// What to cut from an example longer than `max_len`: `response` keeps the
    /// first `max_len` tokens, `prompt` keeps the last ones (after BOS), `drop` leaves it out.
    #[serde(default)]
    pub truncate: Truncate,
    /// Pack several examples into each sequence of `max_len` (first-fit decreasing);
    /// segment and position ids keep attention within each example.
    #[serde(default)]
    pub pack: bool,
    /// Learn the prompt tokens too (labels everywhere), not only the assistant turns.
    #[serde(default)]
    pub train_on_prompt: bool,
    /// `all` assistant turns are learned, or only the `last` one.
    #[serde(default)]
    pub train_on: TrainOn,
}

impl TokenizeParams {
    fn default_max_len() -> usize {
        2048
    }

    pub fn example_options(&self) -> ExampleOptions {
        ExampleOptions {
            max_len: self.max_len,
            truncate: self.truncate,
            train_on_prompt: self.train_on_prompt,
            train_on: self.train_on,
        }
    }
}

/// Counters of one tokenized table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenizeStats {
    pub rows_in: u64,
    /// Examples written (after drops).
    pub examples: u64,
    /// Records in tokens.arrow (= examples unless packed).
    pub sequences: u64,
    /// Tokens written.
    pub tokens: u64,
    /// Tokens with a label (not -100).
    pub trained_tokens: u64,
    /// Examples cut to `max_len`.
    pub truncated: u64,
    /// Tokens removed by truncation.
    pub truncated_tokens: u64,
    /// Examples over `max_len` left out (`truncate: drop`).
    pub dropped_too_long: u64,
    /// Examples with nothing to learn (no assistant span, or all of it truncated away).
    pub dropped_nothing_to_learn: u64,
    /// Examples that got the tokenizer's BOS in front (their text did not start with it).
    pub bos_added: u64,
    /// End-of-turn tokens after an assistant span that were learned although the span left them out.
    pub end_of_turn_added: u64,
    /// Longest example, in tokens, after truncation.
    pub max_example_len: u64,
    /// tokens / (sequences * max_len): how full the sequences are.
    pub fill: f64,
    /// Example lengths (after truncation): count of examples with length <= `le`
    /// and above the previous bucket's bound.
    pub length_histogram: Vec<HistogramBucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistogramBucket {
    pub le: u64,
    pub count: u64,
}

impl TokenizeStats {
    fn histogram_bounds(max_len: usize) -> Vec<u64> {
        let mut bounds = Vec::new();
        let mut b = 16u64;
        while b < max_len as u64 {
            bounds.push(b);
            b *= 2;
        }
        bounds.push(max_len as u64);
        bounds
    }

    fn record(&mut self, result: &ExampleResult<example::KeptLen>) {
        self.rows_in += 1;
        self.bos_added += u64::from(result.bos_added);
        self.end_of_turn_added += u64::from(result.eot_added);
        match &result.outcome {
            Outcome::TooLong => self.dropped_too_long += 1,
            Outcome::NothingToLearn => self.dropped_nothing_to_learn += 1,
            Outcome::Kept(t) => {
                self.examples += 1;
                self.tokens += t.len as u64;
                self.trained_tokens += t.trained as u64;
                self.max_example_len = self.max_example_len.max(t.len as u64);
                let len = t.len as u64;
                if let Some(bucket) = self.length_histogram.iter_mut().find(|b| len <= b.le) {
                    bucket.count += 1;
                }
            }
        }
        if result.truncated {
            self.truncated += 1;
            if let Outcome::Kept(t) = &result.outcome {
                self.truncated_tokens += (result.full_len - t.len) as u64;
            } else {
                self.truncated_tokens += result.full_len as u64;
            }
        }
    }

    /// One line for the end-of-run table.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} rows -> {} sequences, {} tokens ({} trained)",
            self.rows_in, self.sequences, self.tokens, self.trained_tokens
        );
        if self.truncated > 0 {
            s.push_str(&format!(", {} truncated", self.truncated));
        }
        let dropped = self.dropped_too_long + self.dropped_nothing_to_learn;
        if dropped > 0 {
            s.push_str(&format!(", {dropped} dropped"));
        }
        s
    }
}

/// JSON Schema of [`TokenizeParams`] (for `pipe explain`).
pub fn params_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(TokenizeParams)).expect("schema serializes")
}

/// Run `f` on a rayon pool of `threads` workers (the stage's thread budget);
/// [`tokenize_to_file`] parallelizes on whichever pool it runs in.
pub fn with_threads<R: Send>(
    threads: usize,
    f: impl FnOnce() -> Result<R, TokenizeError> + Send,
) -> Result<R, TokenizeError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| TokenizeError::Threads(e.to_string()))?
        .install(f)
}

/// How a table is tokenized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizeOptions {
    pub example: ExampleOptions,
    pub pack: bool,
}

impl From<&TokenizeParams> for TokenizeOptions {
    fn from(p: &TokenizeParams) -> Self {
        Self {
            example: p.example_options(),
            pack: p.pack,
        }
    }
}

/// Tokenize `examples` into `out` (a `tokens.arrow`), [`CHUNK_ROWS`] at a time:
/// each chunk is tokenized in parallel on the current rayon pool, then packed
/// when asked and written as record batches on a writer thread while the next
/// chunk is tokenized (writing is serial and would otherwise leave the pool
/// idle). At most three chunks are in memory at once. `progress` is called with
/// the number of rows tokenized after each chunk.
pub fn tokenize_to_file<'a, I>(
    tok: &ModelTokenizer,
    examples: I,
    options: &TokenizeOptions,
    out: &Path,
    mut progress: impl FnMut(u64),
) -> Result<TokenizeStats, TokenizeError>
where
    I: IntoIterator<Item = Example<'a>>,
{
    let max_len = options.example.max_len;
    if max_len < 2 {
        return Err(TokenizeError::MaxLen(max_len));
    }
    let writer = arrow_io::TokensWriter::create(out)?;
    let spare = SpareBlocks::default();
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<ToWriter>(1);
        let spare = &spare;
        let writing =
            scope.spawn(move || write_chunks(writer, receive, spare, options.pack, max_len));
        let mut chunk: Vec<Example<'a>> = Vec::with_capacity(CHUNK_ROWS);
        let mut first_row = 0usize;
        let mut iter = examples.into_iter();
        let tokenized = loop {
            chunk.clear();
            chunk.extend(iter.by_ref().take(CHUNK_ROWS));
            if chunk.is_empty() {
                break Ok(());
            }
            let blocks = chunk
                .par_chunks(BLOCK_ROWS)
                .enumerate()
                .map(|(b, rows)| {
                    let first = first_row + b * BLOCK_ROWS;
                    example::tokenize_block(tok, first, rows, &options.example, spare.take())
                })
                .collect::<Result<Vec<_>, _>>();
            let blocks = match blocks {
                Ok(blocks) => blocks,
                Err(e) => break Err(e),
            };
            first_row += chunk.len();
            if send.send(ToWriter::Chunk(blocks)).is_err() {
                break Ok(()); // the writer stopped on an error, returned below
            }
            progress(first_row as u64);
        };
        if tokenized.is_ok() {
            // A closed channel here means the writer failed; its error is returned below.
            let _ = send.send(ToWriter::End);
        }
        drop(send);
        let written = writing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        tokenized?;
        Ok(written?.expect("the writer gets End after a successful tokenization"))
    })
}

/// Blocks the writer is done with, for the workers to fill again. Their buffers
/// keep their capacity: otherwise each chunk's blocks are allocated on the
/// workers and freed on the writer, and the allocator trims its heaps and faults
/// the pages in again every chunk (with two threads on the busy 2-core machine,
/// a chunk took twice as long as with one).
#[derive(Default)]
struct SpareBlocks(std::sync::Mutex<Vec<example::Block>>);

impl SpareBlocks {
    /// Two chunks' worth: as many as can be in flight besides the one being filled.
    const KEEP: usize = 2 * CHUNK_ROWS.div_ceil(BLOCK_ROWS);

    fn take(&self) -> example::Block {
        self.0
            .lock()
            .expect("no panic while holding the spare blocks")
            .pop()
            .unwrap_or_default()
    }

    fn give_back(&self, blocks: Vec<example::Block>) {
        let mut spare = self
            .0
            .lock()
            .expect("no panic while holding the spare blocks");
        let room = Self::KEEP.saturating_sub(spare.len());
        spare.extend(blocks.into_iter().take(room));
    }
}

/// What the tokenizing thread hands to the writer thread.
enum ToWriter {
    Chunk(Vec<example::Block>),
    /// Every chunk was sent: finish the file.
    End,
}

/// The writer thread: counts, packs and writes each chunk as it arrives (then
/// hands its blocks back to `spare`), and
/// finishes the file on [`ToWriter::End`]. A channel closed before that (the
/// tokenizing side failed) leaves the file unfinished and gives `None`.
fn write_chunks(
    mut writer: arrow_io::TokensWriter,
    chunks: std::sync::mpsc::Receiver<ToWriter>,
    spare: &SpareBlocks,
    pack: bool,
    max_len: usize,
) -> Result<Option<TokenizeStats>, TokenizeError> {
    let mut stats = TokenizeStats {
        length_histogram: TokenizeStats::histogram_bounds(max_len)
            .into_iter()
            .map(|le| HistogramBucket { le, count: 0 })
            .collect(),
        ..TokenizeStats::default()
    };
    let mut batch = arrow_io::BatchBuilder::new();
    for message in chunks {
        let blocks = match message {
            ToWriter::Chunk(blocks) => blocks,
            ToWriter::End => {
                stats.sequences = writer.sequences;
                writer.finish()?;
                stats.fill = if stats.sequences == 0 {
                    0.0
                } else {
                    stats.tokens as f64 / (stats.sequences as f64 * max_len as f64)
                };
                return Ok(Some(stats));
            }
        };
        for r in blocks.iter().flat_map(|b| &b.results) {
            stats.record(r);
        }
        let kept: Vec<(&[u32], &[i32])> = blocks.iter().flat_map(|b| b.kept()).collect();
        batch.reserve(kept.len(), kept.iter().map(|(ids, _)| ids.len()).sum());
        if pack {
            let lengths: Vec<usize> = kept.iter().map(|(ids, _)| ids.len()).collect();
            for bin in pack::first_fit_decreasing(&lengths, max_len) {
                batch.push(bin.iter().map(|&i| kept[i]));
            }
        } else {
            for &example in &kept {
                batch.push([example]);
            }
        }
        writer.write(&mut batch)?;
        drop(kept);
        spare.give_back(blocks);
    }
    Ok(None)
}

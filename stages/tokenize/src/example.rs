//! One rendered example to token ids and labels: masking, BOS, end-of-turn, truncation.

use std::cell::RefCell;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ModelTokenizer, TokenizeError};

/// Label of a token that is not trained on (PyTorch's cross-entropy ignore index).
pub const IGNORE: i32 = -100;

/// One rendered conversation: its text and the byte ranges to learn.
#[derive(Debug, Clone, Copy)]
pub struct Example<'a> {
    pub text: &'a str,
    /// Byte ranges `[start, end)` of `text` to train on (each assistant turn
    /// with its end-of-turn text), in any order.
    pub spans: &'a [(u32, u32)],
}

/// Token ids with aligned labels (not shifted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tokenized {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i32>,
}

impl Tokenized {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
    pub fn trained(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE).count()
    }
}

/// What to do with an example longer than `max_len` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Truncate {
    /// Keep the first `max_len` tokens (cut the end of the conversation).
    #[default]
    Response,
    /// Keep the last tokens (cut the start of the prompt, after BOS).
    Prompt,
    /// Leave the example out.
    Drop,
}

/// Which assistant turns are learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrainOn {
    /// Every assistant turn.
    #[default]
    All,
    /// Only the final assistant turn.
    Last,
}

/// How examples become labelled token sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExampleOptions {
    pub max_len: usize,
    pub truncate: Truncate,
    pub train_on_prompt: bool,
    pub train_on: TrainOn,
}

/// The fate of one example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T = Tokenized> {
    Kept(T),
    /// Longer than `max_len` with `truncate: drop`.
    TooLong,
    /// No token left to learn (no assistant span, or truncated away).
    NothingToLearn,
}

/// What happened to one example, for the stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleResult<T = Tokenized> {
    pub outcome: Outcome<T>,
    /// Tokens before truncation (BOS included).
    pub full_len: usize,
    pub truncated: bool,
    pub bos_added: bool,
    /// The end-of-turn token after a span was outside it and got learned anyway.
    pub eot_added: u32,
}

/// A kept example whose tokens are elsewhere (in [`Scratch`], then in a [`Block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeptLen {
    pub len: usize,
    /// Tokens with a label.
    pub trained: usize,
}

/// Per-thread buffers of [`tokenize_example`], reused across rows: spans, the
/// ids and offsets of the whole text, and the example's final ids and labels.
#[derive(Default)]
struct Scratch {
    spans: Vec<(usize, usize)>,
    ids: Vec<u32>,
    offsets: Vec<(usize, usize)>,
    input_ids: Vec<u32>,
    labels: Vec<i32>,
}

thread_local! {
    /// Borrowed for a whole row or block: nothing inside calls into rayon, so a
    /// worker cannot steal another row's job while holding it.
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Tokenize one example. `row` only serves error messages.
pub fn tokenize_example(
    tok: &ModelTokenizer,
    row: usize,
    example: Example<'_>,
    opts: &ExampleOptions,
) -> Result<ExampleResult, TokenizeError> {
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        let result = tokenize_with(tok, row, example, opts, scratch)?;
        Ok(ExampleResult {
            outcome: match result.outcome {
                Outcome::Kept(_) => Outcome::Kept(Tokenized {
                    input_ids: scratch.input_ids.clone(),
                    labels: scratch.labels.clone(),
                }),
                Outcome::TooLong => Outcome::TooLong,
                Outcome::NothingToLearn => Outcome::NothingToLearn,
            },
            full_len: result.full_len,
            truncated: result.truncated,
            bos_added: result.bos_added,
            eot_added: result.eot_added,
        })
    })
}

/// Consecutive examples tokenized into shared buffers: the kept ones' ids and
/// labels back to back, in row order, so a chunk costs a few allocations
/// rather than two per row.
#[derive(Debug, Default)]
pub(crate) struct Block {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i32>,
    pub results: Vec<ExampleResult<KeptLen>>,
}

impl Block {
    /// Each kept example's ids and labels, in row order.
    pub fn kept(&self) -> impl Iterator<Item = (&[u32], &[i32])> {
        let mut at = 0;
        self.results.iter().filter_map(move |r| match r.outcome {
            Outcome::Kept(KeptLen { len, .. }) => {
                let range = at..at + len;
                at += len;
                Some((&self.input_ids[range.clone()], &self.labels[range]))
            }
            _ => None,
        })
    }
}

/// Tokenize `examples` (rows `first_row`, `first_row + 1`, ...) into `block`
/// (emptied first; its buffers' capacity is reused).
pub(crate) fn tokenize_block(
    tok: &ModelTokenizer,
    first_row: usize,
    examples: &[Example<'_>],
    opts: &ExampleOptions,
    mut block: Block,
) -> Result<Block, TokenizeError> {
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        block.input_ids.clear();
        block.labels.clear();
        block.results.clear();
        for (i, example) in examples.iter().enumerate() {
            let result = tokenize_with(tok, first_row + i, *example, opts, scratch)?;
            if let Outcome::Kept(_) = result.outcome {
                block.input_ids.extend_from_slice(&scratch.input_ids);
                block.labels.extend_from_slice(&scratch.labels);
            }
            block.results.push(result);
        }
        Ok(block)
    })
}

/// One example; a kept one leaves its ids and labels in `scratch.input_ids`
/// and `scratch.labels`.
fn tokenize_with(
    tok: &ModelTokenizer,
    row: usize,
    example: Example<'_>,
    opts: &ExampleOptions,
    scratch: &mut Scratch,
) -> Result<ExampleResult<KeptLen>, TokenizeError> {
    let text = example.text;
    let Scratch {
        spans,
        ids,
        offsets,
        input_ids,
        labels,
    } = scratch;
    spans.clear();
    for &(start, end) in example.spans {
        if start > end || end as usize > text.len() {
            return Err(TokenizeError::BadSpan {
                row,
                start,
                end,
                len: text.len(),
            });
        }
        if start < end {
            spans.push((start as usize, end as usize));
        }
    }
    spans.sort_unstable();
    if opts.train_on == TrainOn::Last {
        spans.drain(..spans.len().saturating_sub(1));
    }
    tok.encode_into(text, ids, offsets).map_err(|e| match e {
        TokenizeError::Encode { message, .. } => TokenizeError::Encode { row, message },
        other => other,
    })?;
    let (ids, offsets, spans) = (&ids[..], &offsets[..], &spans[..]);

    // BOS (when added) in front, then one label per token.
    let bos = tok.bos_to_add(ids);
    let head = usize::from(bos.is_some());
    labels.clear();
    labels.resize(head + ids.len(), IGNORE);
    let mut eot_added = 0;
    if opts.train_on_prompt {
        labels[head..]
            .iter_mut()
            .zip(ids)
            .for_each(|(l, &id)| *l = id as i32);
    } else {
        // Token and span starts both increase: one merge pass. A token is learned when
        // it overlaps a span (as transformers' assistant mask does with char_to_token);
        // an empty-offset token counts as the byte where it sits.
        let mut k = 0;
        for (i, &(s, e)) in offsets.iter().enumerate() {
            let e = e.max(s + 1);
            while k < spans.len() && spans[k].1 <= s {
                k += 1;
            }
            if k < spans.len() && spans[k].0 < e {
                labels[head + i] = ids[i] as i32;
            }
        }
        // The end-of-turn token right after a span is learned too: otherwise the
        // model never learns to stop.
        for &(_, end) in spans {
            let next = offsets.partition_point(|&(s, _)| s < end);
            if next < ids.len()
                && labels[head + next] == IGNORE
                && tok.stop_ids.contains(&ids[next])
            {
                labels[head + next] = ids[next] as i32;
                eot_added += 1;
            }
        }
    }

    input_ids.clear();
    input_ids.extend(bos);
    input_ids.extend_from_slice(ids);
    let full_len = input_ids.len();
    let mut truncated = false;
    if full_len > opts.max_len {
        match opts.truncate {
            Truncate::Drop => {
                return Ok(ExampleResult {
                    outcome: Outcome::TooLong,
                    full_len,
                    truncated: false,
                    bos_added: bos.is_some(),
                    eot_added,
                });
            }
            Truncate::Response => {
                input_ids.truncate(opts.max_len);
                labels.truncate(opts.max_len);
            }
            Truncate::Prompt => {
                // Keep a leading BOS, then the last tokens.
                let keep_head =
                    usize::from(tok.bos_id.is_some() && input_ids.first() == tok.bos_id.as_ref());
                let cut = full_len - opts.max_len;
                input_ids.drain(keep_head..keep_head + cut);
                labels.drain(keep_head..keep_head + cut);
            }
        }
        truncated = true;
    }
    // Nothing predicts the first token of a sequence or segment.
    if let Some(first) = labels.first_mut() {
        *first = IGNORE;
    }
    let trained = labels.iter().filter(|&&l| l != IGNORE).count();
    let outcome = if trained == 0 {
        Outcome::NothingToLearn
    } else {
        Outcome::Kept(KeptLen {
            len: input_ids.len(),
            trained,
        })
    };
    Ok(ExampleResult {
        outcome,
        full_len,
        truncated,
        bos_added: bos.is_some(),
        eot_added,
    })
}

//! Evaluation for pipe: does the fine-tuned adapter do better than the base model?
//!
//! - [`metrics`]: BLEU and chrF as sacrebleu computes them, ROUGE as Google's
//!   rouge-score (with a CJK-aware and a jieba tokenizer), accuracy and
//!   precision/recall/F1 as scikit-learn — pure functions, usable without a model.
//! - [`score`]: several metrics over a set of predictions at once; what the eval
//!   stage and `pipe score FILE.jsonl` call ([`score::score_file`]).
//! - [`prompted`]: the prompt-only baseline's few-shot prompts and seeded shot choice.
//! - [`review`]: blind review packs for experts and the summary of their scores.
//! - [`subset`]: which test rows `max_examples` evaluates (spread over tasks).
//! - [`tasks`]: classification per task (each task its own label set and report).
//! - [`general`]: general-ability regression, multiple choice scored by letter likelihood.
//! - [`gates`]: CI gates (`rougeL: ">= 0.30"`, `f1_macro: ">= base + 0.05"`) and JUnit XML.
//! - [`report`]: metrics.json, predictions.jsonl, report.md and a self-contained report.html.
//! - With the `model` feature (default): generation and likelihood scoring on the
//!   train crate's model, and the eval stage itself.
//!
//! The engine and caching are not this crate's business: the `eval` kind is
//! registered by the `pipe` binary (src/stages/eval.rs).
//!
//! ```
//! use pipe_eval::metrics::{corpus_bleu, Rouge, RougeTokenizer};
//! let bleu = corpus_bleu(&["the cat sat on the mat"], &[vec!["the cat sat on a mat"]]);
//! assert!(bleu.score > 0.0 && bleu.score < 100.0);
//! let mut rouge = Rouge::new(RougeTokenizer::Default, true);
//! let s = rouge.score("The cats are running", "the cat runs");
//! assert!(s.rouge1.fmeasure > 0.5);
//! ```

pub mod error;
pub mod gates;
pub mod general;
pub mod generate;
pub mod metrics;
pub mod prompted;
pub mod report;
pub mod review;
pub mod score;
pub mod subset;
pub mod tasks;

#[cfg(feature = "model")]
pub mod stage;

pub use error::EvalError;
pub use gates::{Gate, GateOutcome, parse_gates};
pub use schemars;
pub use score::{ScoreOptions, Scores, score, score_file};

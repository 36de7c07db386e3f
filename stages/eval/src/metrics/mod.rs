//! Metrics as pure functions: no model, no I/O, single-threaded.
//!
//! Each metric matches its reference implementation number for number (see
//! `tests/reference.rs` and `tests/gen_reference.py`): BLEU and chrF as
//! sacrebleu 2.x, ROUGE as Google's rouge-score, classification scores as
//! scikit-learn.

pub mod bleu;
pub mod chrf;
pub mod classify;
pub mod porter;
pub mod rouge;
pub mod text;

pub use bleu::{
    Bleu, BleuConfig, BleuScore, BleuStats, BleuTokenize, Smooth, corpus_bleu, sentence_bleu,
};
pub use chrf::{Chrf, ChrfConfig};
pub use classify::{
    ClassificationReport, LabelMatch, classification_report, exact_match, extract_label, normalize,
};
pub use porter::stem;
pub use rouge::{PRF, Rouge, RougeScores, RougeTokenizer, RougeType};

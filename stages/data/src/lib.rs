//! Data stages: ingest, dedup (exact and MinHash), quality filters, split.
//!
//! Each stage is a plain function from typed params and [`pipe_rows::Row`]s to
//! rows plus a side table that says, row by row, what was set aside and why:
//!
//! | stage | function | kept | side table |
//! |---|---|---|---|
//! | `ingest` | [`ingest::ingest`] | rows | `rejected` (file, line, reason) |
//! | `dedup` | [`dedup::dedup`] | rows | `removed` (the row it duplicates, similarity) |
//! | `filter` | [`filter::filter`] | rows | `dropped` (rule, detail) |
//! | `split` | [`split::split`] | `train`, `test`, `validation` | leakage report ([`split::leakage`]) |
//!
//! The crate knows nothing about caching or the engine; `src/stages/data.rs`
//! in the `pipe` binary adapts these functions to the stage contract. Outputs
//! are deterministic: input order is kept, hashing is seeded, no clocks.
//!
//! ```no_run
//! use pipe_data::{dedup, ingest};
//! let params: ingest::IngestParams =
//!     serde_json::from_value(serde_json::json!({"path": "data/*.jsonl", "format": "alpaca"})).unwrap();
//! let out = ingest::ingest(&params, std::path::Path::new("."))?;
//! out.check(params.max_rejected)?;
//! let deduped = dedup::dedup(&dedup::DedupParams::default(), vec![out.rows], 42)?;
//! println!("{} rows kept", deduped.rows.len());
//! # Ok::<(), pipe_data::DataError>(())
//! ```

pub mod csv;
pub mod dedup;
pub mod filter;
pub mod ingest;
pub mod lines;
pub mod minhash;
pub mod prehashed;
pub mod split;
pub mod table;
pub mod text;

/// Why a data stage failed. Row-level problems are not errors: they go to the
/// stage's side table; these are the problems that stop a stage.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A param is wrong; `key` is its dotted path in the stage.
    #[error("{key}: {message}")]
    Params { key: String, message: String },
    /// An input file cannot be read as the format it claims.
    #[error("{file}:{line}: {message}")]
    Input {
        file: String,
        line: u64,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{rejected} of {total} records rejected, more than max_rejected = {max_rejected}; the first ones:\n{first}\n(fix the data, or raise `max_rejected` to keep the rest; every reject is in the `rejected` output)"
    )]
    TooManyRejected {
        rejected: usize,
        total: usize,
        max_rejected: f64,
        first: String,
    },
    #[error(transparent)]
    Rows(#[from] pipe_rows::RowsError),
    #[error("{path}: writing a table: {message}")]
    Table { path: String, message: String },
}

impl DataError {
    pub fn params(key: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Params {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// JSON Schema of a params struct (for `pipe explain`), so callers need no schemars dependency.
pub fn params_schema<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Null)
}

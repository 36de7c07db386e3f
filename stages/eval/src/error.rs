//! Errors of the eval crate: each says which file, line or key is at fault and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("gate `{metric}: {condition}`: {message}")]
    Gate {
        metric: String,
        condition: String,
        message: String,
    },
    #[error("unknown metric `{name}`; known metrics: {known}")]
    UnknownMetric { name: String, known: String },
    #[error("{path}: line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// A model call failed (any `LogitsModel`, so not tied to the `model` feature).
    #[error("model: {0}")]
    Model(String),
    #[cfg(feature = "model")]
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
}

impl EvalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
}

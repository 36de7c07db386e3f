//! The crate's error type: every message names the file, key or param at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed (shape bug, out of memory, unsupported op on the device).
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what we expect.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// A training or LoRA setting that cannot work; `key` is the param's dotted name.
    #[error("`{key}`: {message}")]
    Param { key: String, message: String },
    /// The model reference resolves to something this crate cannot load.
    #[error("model: {0}")]
    Model(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn bad(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        TrainError::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
    pub(crate) fn param(key: impl Into<String>, message: impl Into<String>) -> Self {
        TrainError::Param {
            key: key.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

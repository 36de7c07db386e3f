//! The engine's errors. Each says where (file:line:col, stage, path) and what to
//! do (`hint`), and maps to the CLI's exit code.

use std::path::PathBuf;

use crate::stage::StageError;
use crate::yaml::{Loc, YamlError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The recipe (or a `--set`) is wrong: syntax, keys, types, references. Exit 2.
    #[error("{message}")]
    Recipe {
        message: String,
        loc: Option<Loc>,
        hint: Option<String>,
    },
    /// The command line asks for something that does not exist. Exit 2.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// A stage failed while running. Exit 1.
    #[error("stage `{stage}` failed: {source}")]
    StageFailed {
        stage: String,
        #[source]
        source: StageError,
    },
    /// Reading or writing the cache, a record or an input failed. Exit 1.
    #[error("{what} {}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn recipe(message: impl Into<String>, loc: Option<Loc>) -> Self {
        Error::Recipe {
            message: message.into(),
            loc,
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: None,
        }
    }

    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    /// Attach a hint (printed last, as `hint: ...`).
    pub fn with_hint(mut self, new: impl Into<String>) -> Self {
        match &mut self {
            Error::Recipe { hint, .. } | Error::Usage { hint, .. } => *hint = Some(new.into()),
            Error::StageFailed { source, .. } => source.hint = Some(new.into()),
            Error::Io { .. } => {}
        }
        self
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Recipe { hint, .. } | Error::Usage { hint, .. } => hint.as_deref(),
            Error::StageFailed { source, .. } => source.hint.as_deref(),
            Error::Io { .. } => None,
        }
    }

    pub fn loc(&self) -> Option<&Loc> {
        match self {
            Error::Recipe { loc, .. } => loc.as_ref(),
            _ => None,
        }
    }

    /// 2 for the user's recipe or command line, 1 for a failure while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Recipe { .. } | Error::Usage { .. } => 2,
            Error::StageFailed { .. } | Error::Io { .. } => 1,
        }
    }
}

impl From<YamlError> for Error {
    fn from(e: YamlError) -> Self {
        Error::recipe(e.message, Some(e.loc))
    }
}

/// The closest candidate within a small edit distance, for "did you mean".
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

//! The render crate's error enum. Every message names the template (and the
//! row, for row rendering) so that a failure deep in a dataset can be found.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template does not parse.
    #[error("chat template `{template}` does not parse: {detail}")]
    Syntax { template: String, detail: String },

    /// The template called `raise_exception(message)`: it rejects this conversation
    /// (e.g. Gemma has no system role). `message` is the template's own text.
    #[error("chat template `{template}` rejected the conversation: {message}")]
    Raised { template: String, message: String },

    /// Any other failure while rendering (undefined attribute, bad operation, ...).
    #[error("chat template `{template}` failed to render: {detail}")]
    Render { template: String, detail: String },

    #[error("invalid date `{value}` for strftime_now: expected YYYY-MM-DD, e.g. 2024-07-26")]
    BadDate { value: String },

    #[error("invalid {what} JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{what} must be {expected}")]
    Shape { what: String, expected: String },

    #[error(
        "unknown template `{name}`: not a project template ({available}), not an existing .jinja path, and not `model`"
    )]
    UnknownTemplate { name: String, available: String },

    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {detail}")]
    TokenizerConfig { path: PathBuf, detail: String },

    /// A row could not be rendered.
    #[error("row {row}: {source}")]
    Row {
        row: String,
        #[source]
        source: Box<RenderError>,
    },

    /// A template rewrites earlier turns, so the rendering of the conversation
    /// up to an assistant turn is not a prefix of the whole rendering and the
    /// trained span cannot be located.
    #[error(
        "chat template `{template}` breaks the prefix property at row {row}, assistant turn {turn}: \
         the conversation rendered up to that turn is not a prefix of the full rendering \
         (the template rewrites earlier turns); set `on_prefix_mismatch: last_turn` to train only \
         on the final assistant turn of such rows, or use another template"
    )]
    PrefixMismatch {
        template: String,
        row: String,
        turn: usize,
    },

    #[error("row {row}: {detail}")]
    BadRow { row: String, detail: String },
}

impl RenderError {
    /// The template's own `raise_exception` message, if that is what failed.
    pub fn raised_message(&self) -> Option<&str> {
        match self {
            RenderError::Raised { message, .. } => Some(message),
            RenderError::Row { source, .. } => source.raised_message(),
            _ => None,
        }
    }
}

//! Commands that need stage crates. Each returns the engine's error type so
//! that every command prints errors (place, causes, hint) and picks exit codes
//! the same way.

pub mod init;
pub mod merge;
pub mod score;
pub mod template;

use std::path::Path;

use pipe_pipeline::error::Error;

/// Read a whole text file, naming it when that fails.
pub fn read_text(path: &Path, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read {what}"), path, e))
}

/// Resolve a model reference (relative paths against `base`), keeping the
/// resolver's hint (how to get a model that is not here).
pub fn resolve_model(reference: &str, base: &Path) -> Result<pipe_model::ResolvedModel, Error> {
    pipe_model::resolve(reference, base).map_err(|e| {
        let hint = e.hint();
        let err = Error::usage(e.to_string());
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    })
}

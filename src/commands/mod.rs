//! Commands that need stage crates. Each returns the engine's error type so
//! that every command prints errors (place, causes, hint) and picks exit codes
//! the same way.

pub mod init;
pub mod merge;
pub mod review;
pub mod score;
pub mod template;

use std::path::Path;

use pipe_pipeline::error::Error;
use pipe_pipeline::record::{self, RunRecord, StageRecord};

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

/// The run's one stage of `kind` (or the one named `name`), with errors that
/// list the candidates when there are several.
pub fn pick_stage<'a>(
    run: &'a RunRecord,
    kind: &str,
    name: Option<&str>,
) -> Result<&'a StageRecord, Error> {
    let found: Vec<&StageRecord> = run
        .stages
        .iter()
        .filter(|s| s.kind == kind && name.is_none_or(|n| s.name == n))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::usage(format!(
            "run {} has no {kind} stage{}",
            record::short(&run.run_hash),
            name.map(|n| format!(" named `{n}`")).unwrap_or_default()
        ))),
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.name.as_str()).collect();
            Err(Error::usage(format!(
                "run {} has several {kind} stages: {}",
                record::short(&run.run_hash),
                names.join(", ")
            ))
            .with_hint("choose one with `--stage NAME`"))
        }
    }
}

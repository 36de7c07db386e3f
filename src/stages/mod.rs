//! Adapters that register each stage crate's kinds with the engine.
//!
//! Stage crates are plain libraries (typed params + inputs -> outputs) and know
//! nothing about caching; this module is the only place that knows both sides.
//! One file per stage family, so editing one family rebuilds that crate and the
//! binary only.

mod data;
mod eval;
pub mod render;
mod tokenize;
mod train;

use pipe_pipeline::stage::{PlanEnv, Registry, StageError};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Every stage kind this binary knows.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    data::register(&mut registry);
    render::register(&mut registry);
    tokenize::register(&mut registry);
    train::register(&mut registry);
    eval::register(&mut registry);
    // Users' own programs, cached like any other stage (engine-side kind).
    registry.add(pipe_pipeline::command::CommandStage);
    registry
}

/// The model a planning stage uses (its own `model` param, else the recipe's),
/// resolved to files, with the error pointing at the `model` key.
pub fn plan_model(
    own: Option<&str>,
    env: &PlanEnv<'_>,
) -> Result<(String, pipe_model::ResolvedModel), StageError> {
    let reference = own.or(env.model).map(str::to_owned).ok_or_else(|| {
        StageError::params("no model: set `model:` in the recipe or on this stage")
            .with_key("model")
    })?;
    let resolved = pipe_model::resolve(&reference, env.recipe_dir).map_err(|e| {
        let hint = e.hint();
        let mut err = StageError::params(e.to_string()).with_key("model");
        if let Some(h) = hint {
            err = err.with_hint(h);
        }
        err
    })?;
    Ok((reference, resolved))
}

/// Deserialize a stage's params strictly, keeping the dotted path of the
/// offending key so the engine can point at the recipe line, and suggesting the
/// closest valid key for a misspelt one.
pub fn parse_params<T: DeserializeOwned>(params: &Value) -> Result<T, StageError> {
    serde_path_to_error::deserialize(params).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let mut error = StageError::params(inner.clone());
        if let Some((unknown, expected)) = unknown_field(&inner) {
            let key = if path == "." || path.is_empty() {
                unknown.clone()
            } else {
                format!("{path}.{unknown}")
            };
            error = StageError::params(format!("unknown key `{unknown}`")).with_key(key);
            if let Some(best) =
                pipe_pipeline::error::closest(&unknown, expected.iter().map(String::as_str))
            {
                error = error.with_hint(format!("did you mean `{best}`?"));
            } else if !expected.is_empty() {
                error = error.with_hint(format!("valid keys here: {}", expected.join(", ")));
            }
        } else if path != "." && !path.is_empty() {
            error = error.with_key(path);
        }
        error
    })
}

/// Pull the field name and the expected list out of serde's
/// "unknown field `x`, expected one of `a`, `b`" message.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), expected))
}

/// A params struct's JSON Schema (what `pipe schema` and `pipe explain` show).
pub fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

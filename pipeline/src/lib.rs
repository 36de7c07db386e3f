//! The pipe engine: it turns a recipe into a DAG of stages, keys every stage by
//! the content of what it reads, and recomputes only what changed.
//!
//! The engine knows nothing about data frames, tokens or tensors. A stage kind is
//! anything that implements [`stage::Stage`]; the `pipe` binary registers the real
//! kinds (ingest, dedup, ..., eval) from the stage crates, and this crate adds the
//! `command` kind ([`command::CommandStage`]) that runs a user's program.
//!
//! Flow: [`recipe::Recipe::load`] (YAML with exact locations, `extends`, `vars`,
//! `--set`) -> [`plan::plan`] (kinds, references, cycles, each stage's
//! `Stage::plan`) -> [`run::run`] (keys, cache lookups, per-key locks, atomic
//! publication, early cutoff) -> [`record::RunRecord`] in `.pipe/runs/`.
//! [`status`] explains what would rerun without running anything.

pub mod cache;
pub mod cli;
pub mod command;
pub mod error;
pub mod filehash;
pub mod junit;
pub mod key;
pub mod output;
pub mod plan;
pub mod recipe;
pub mod record;
pub mod run;
pub mod schema;
pub mod stage;
pub mod status;
pub mod yaml;

pub use error::{Error, Result};

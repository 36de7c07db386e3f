//! The pipe engine: it turns a recipe into a DAG of stages, keys every stage by
//! the content of what it reads, and recomputes only what changed.
//!
//! The engine knows nothing about data frames, tokens or tensors. A stage kind is
//! anything that implements [`stage::Stage`]; the `pipe` binary registers the real
//! kinds (ingest, dedup, ..., eval) from the stage crates.

pub mod stage;

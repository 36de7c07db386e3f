//! Registers the `pipe-eval` stage kinds.

use pipe_pipeline::stage::Registry;

pub fn register(_registry: &mut Registry) {}

//! Any text as a recipe: parse, check keys and types, plan. Errors are fine;
//! panics, hangs and crashes are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_pipeline::{command::CommandStage, plan::plan, recipe::Recipe, stage::Registry, yaml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.yaml");
    let Ok(tree) = yaml::parse(text, path) else {
        return;
    };
    let Ok(recipe) = Recipe::from_tree(tree, path) else {
        return;
    };
    let mut registry = Registry::new();
    registry.add(CommandStage);
    let _ = plan(recipe, &registry);
});

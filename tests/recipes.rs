//! Every example recipe runs end to end with `builtin:tiny` and small step
//! counts (set from the command line, as a user would to try a recipe).

mod common;

use std::path::Path;

use common::Sandbox;

fn run(sb: &Sandbox, recipe: &str, extra: &[&str]) -> common::Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recipes")
        .join(recipe);
    let cache = sb.join("cache");
    let mut args = vec![
        "run",
        path.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--set",
        "adapter.max_steps=2",
        "--set",
        "report.max_examples=4",
        "--set",
        "report.max_new_tokens=8",
    ];
    args.extend(extra);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.pipe(&refs)
}

#[test]
fn classification_recipe_runs() {
    let sb = Sandbox::new();
    // Two steps do not move held-out loss by 0.5: the gate fails with exit 3,
    // which is the gate working; everything before it must have run.
    let out = run(&sb, "legalbench-classify.yaml", &[]);
    assert!(
        out.code == 0 || out.code == 3,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("accuracy"), "{}", out.stdout);
}

#[test]
fn real_model_recipe_runs_with_the_builtin_model_swapped_in() {
    let sb = Sandbox::new();
    let out = run(
        &sb,
        "legal-smollm2.yaml",
        &["--set", "model=builtin:tiny", "--set", "tokens.max_len=256"],
    );
    assert!(
        out.code == 0 || out.code == 3,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("report"), "{}", out.stdout);
}

#[test]
fn alpaca_zh_recipe_runs_when_the_demo_set_is_present() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/llamafactory/alpaca_zh_demo.json");
    if !data.is_file() {
        eprintln!("skipped: {} not present", data.display());
        return;
    }
    let sb = Sandbox::new();
    let set = format!("vars.data={}", data.display());
    let out = run(&sb, "alpaca-zh.yaml", &["--set", &set]);
    assert!(
        out.code == 0 || out.code == 3,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("rouge"), "{}", out.stdout);
}

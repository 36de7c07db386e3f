//! Recipe errors and overrides, end to end through the `pipe` binary (issue #2).

mod common;
use common::Sandbox;

#[test]
fn unknown_stage_param_names_line_column_and_closest_key() {
    let t = Sandbox::new();
    t.write(
        "recipe.yaml",
        "name: t\nstages:\n  a: {kind: command, run: 'echo 1 > {output}/x'}\n  b:\n    kind: command\n    from: a\n    run: 'cp {input}/x {output}/'\n    ouputs: [out]\n",
    );
    t.pipe(&["run", "recipe.yaml"])
        .code(2)
        .stderr_has("error: unknown key `ouputs` in stage `b`")
        .stderr_has("--> recipe.yaml:8:5")
        .stderr_has("hint: did you mean `outputs`?");
    assert!(
        t.cache_entries().is_empty(),
        "nothing runs after a recipe error"
    );
}

#[test]
fn unknown_top_level_key_and_kind_have_places() {
    let t = Sandbox::new();
    t.write(
        "recipe.yaml",
        "name: t\nsed: 3\nstages:\n  a: {kind: command, run: 'true'}\n",
    );
    t.pipe(&["validate", "recipe.yaml"])
        .code(2)
        .stderr_has("unknown key `sed` at the top level")
        .stderr_has("recipe.yaml:2:1")
        .stderr_has("did you mean `seed`?");
    t.write("recipe.yaml", "stages:\n  a: {kind: comand, run: 'true'}\n");
    t.pipe(&["validate", "recipe.yaml"])
        .code(2)
        .stderr_has("unknown stage kind `comand`")
        .stderr_has("recipe.yaml:2:13")
        .stderr_has("did you mean `command`?");
}

#[test]
fn a_missing_recipe_is_a_usage_error() {
    let t = Sandbox::new();
    t.pipe(&["run", "nope.yaml"])
        .code(2)
        .stderr_has("error: cannot read recipe nope.yaml")
        .stderr_has("hint:");
    t.pipe(&["frobnicate"]).code(2);
}

#[test]
fn cycles_are_printed_stage_by_stage() {
    let t = Sandbox::new();
    t.write(
        "recipe.yaml",
        "stages:\n  a: {kind: command, from: c, run: 'true'}\n  b: {kind: command, from: a, run: 'true'}\n  c: {kind: command, from: b, run: 'true'}\n",
    );
    let out = t.pipe(&["validate", "recipe.yaml"]).code(2);
    assert!(
        ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]
            .iter()
            .any(|c| out.stderr.contains(c)),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_references_and_duplicate_names_are_errors() {
    let t = Sandbox::new();
    t.write("recipe.yaml", "stages:\n  raw: {kind: command, run: 'true'}\n  b: {kind: command, from: rwa, run: 'true'}\n");
    t.pipe(&["validate", "recipe.yaml"])
        .code(2)
        .stderr_has("stage `b` reads from `rwa`, but there is no stage `rwa`")
        .stderr_has("recipe.yaml:3:28")
        .stderr_has("did you mean `raw`?");
    t.write(
        "recipe.yaml",
        "stages:\n  a: {kind: command, run: 'true'}\n  a: {kind: command, run: 'false'}\n",
    );
    t.pipe(&["validate", "recipe.yaml"])
        .code(2)
        .stderr_has("duplicate key `a` (first written at 2:3)")
        .stderr_has("recipe.yaml:3:3");
    t.write("recipe.yaml", "stages:\n  s: {kind: command, run: 'true', outputs: [train, test]}\n  b: {kind: command, from: s.tset, run: 'true'}\n");
    t.pipe(&["validate", "recipe.yaml"])
        .code(2)
        .stderr_has("stage `s` has no output `tset`");
}

#[test]
fn set_overrides_values_typed_like_the_file() {
    let t = Sandbox::new();
    t.write(
        "recipe.yaml",
        "vars: {word: hello}\nstages:\n  a: {kind: command, run: 'echo ${word} > {output}/x'}\n",
    );
    let out = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    let dir = out.stage("a")["output_dir"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/out/x")).unwrap(),
        "hello\n"
    );
    let out = t
        .pipe(&["run", "recipe.yaml", "--json", "--set", "vars.word=bye"])
        .success();
    let dir = out.stage("a")["output_dir"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/out/x")).unwrap(),
        "bye\n"
    );
    // A list where a list belongs works; a number does not, and says where it came from.
    t.pipe(&[
        "validate",
        "recipe.yaml",
        "--set",
        "stages.a.outputs=[x, y]",
    ])
    .success();
    t.pipe(&["validate", "recipe.yaml", "--set", "stages.a.outputs=5"])
        .code(2)
        .stderr_has("--set stages.a.outputs=5");
    t.pipe(&["validate", "recipe.yaml", "--set", "seed=abc"])
        .code(2)
        .stderr_has("`seed` must be a non-negative integer");
    t.pipe(&["validate", "recipe.yaml", "--set", "nonsense"])
        .code(2)
        .stderr_has("has no `=`");
}

#[test]
fn extends_deep_merges_with_the_child_winning() {
    let t = Sandbox::new();
    t.write(
        "base.yaml",
        "name: base\nstages:\n  a: {kind: command, run: 'echo base > {output}/x', env: {A: '1', B: '2'}}\n  b: {kind: command, from: a, run: 'cp {input}/x {output}/x'}\n",
    );
    t.write(
        "child.yaml",
        "extends: base.yaml\nname: child\nstages:\n  a: {run: 'echo $A$B > {output}/x', env: {B: '3'}}\n",
    );
    let out = t.pipe(&["run", "child.yaml", "--json"]).success();
    let dir = out.stage("b")["output_dir"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/out/x")).unwrap(),
        "13\n"
    );
    // An error in an inherited stage points into the parent file.
    t.write(
        "child.yaml",
        "extends: base.yaml\nstages:\n  a: {outputs: 5}\n",
    );
    t.pipe(&["validate", "child.yaml"])
        .code(2)
        .stderr_has("child.yaml:3");
}

#[test]
fn validate_reports_missing_inputs() {
    let t = Sandbox::new();
    t.write(
        "recipe.yaml",
        "stages:\n  a: {kind: command, run: 'cat {files[0]}', files: [data/*.jsonl]}\n",
    );
    t.pipe(&["validate", "recipe.yaml"])
        .code(2)
        .stderr_has("`data/*.jsonl` matches no file")
        .stderr_has("recipe.yaml:2:53");
    t.write("data/a.jsonl", "{}\n");
    t.pipe(&["validate", "recipe.yaml"])
        .success()
        .stdout_has("ok (1 stages: a)");
}

#[test]
fn explain_lists_kinds_and_describes_params() {
    let t = Sandbox::new();
    // Kinds are listed one a line, names padded to a column.
    let listing = t.pipe(&["explain"]).success();
    assert!(
        listing
            .stdout
            .lines()
            .any(|l| l.starts_with("command ") && l.contains("run a shell command")),
        "no `command` line in:\n{}",
        listing.stdout
    );
    t.pipe(&["explain", "command"])
        .success()
        .stdout_has("run: string (required)")
        .stdout_has("outputs: list of string (default [\"out\"])");
    t.pipe(&["explain", "comand"])
        .code(2)
        .stderr_has("did you mean `command`?");
}

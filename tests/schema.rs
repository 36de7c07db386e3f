//! The recipe JSON Schema (`pipe schema`) and the recipe reference (`pipe
//! explain --markdown`) are generated from the params structs the parser
//! uses; these tests keep the committed copies fresh and check that the
//! schema and the parser agree key by key.

mod common;

use std::path::{Path, PathBuf};

use common::Sandbox;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pipe_stdout(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .output()
        .expect("run pipe");
    assert!(
        out.status.success(),
        "pipe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn schema() -> Value {
    serde_json::from_str(&pipe_stdout(&["schema"])).unwrap()
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_schema_is_current() {
    let committed = std::fs::read_to_string(root().join("pipe-recipe.schema.json")).unwrap();
    let fresh = pipe_stdout(&["schema"]);
    assert!(
        committed == fresh,
        "pipe-recipe.schema.json is stale: run `scripts/regen-docs.sh`"
    );
}

#[test]
fn readme_reference_is_current() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (start, end) = ("<!-- reference:start -->\n", "<!-- reference:end -->");
    let a = readme
        .find(start)
        .expect("README has the reference start marker")
        + start.len();
    let b = readme
        .find(end)
        .expect("README has the reference end marker");
    let fresh = pipe_stdout(&["explain", "--markdown"]);
    assert!(
        readme[a..b] == fresh,
        "README's recipe reference is stale: run `scripts/regen-docs.sh`"
    );
}

#[test]
fn every_recipe_validates_against_the_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("the schema is valid");
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("recipes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# yaml-language-server: $schema=../pipe-recipe.schema.json"),
                "{} lacks the yaml-language-server schema comment",
                path.display()
            );
            let errors: Vec<String> = validator
                .iter_errors(&yaml(&path))
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

/// A recipe using every built-in kind once, in a chain.
fn chain() -> Value {
    json!({
        "name": "agree",
        "seed": 1,
        "model": "builtin:tiny",
        "stages": {
            "raw": {"kind": "ingest", "path": "rows.jsonl"},
            "clean": {"kind": "dedup", "from": "raw"},
            "good": {"kind": "filter", "from": "clean"},
            "split": {"kind": "split", "from": "good"},
            "chat": {"kind": "render", "from": "split", "template": "chatml"},
            "tokens": {"kind": "tokenize", "from": "chat"},
            "adapter": {"kind": "train", "from": "tokens"},
            "report": {"kind": "eval", "from": ["adapter", "chat.test"]},
            "custom": {"kind": "command", "from": "good", "run": "cp -r {input}/. {output}"}
        }
    })
}

/// Every key the schema documents for a kind, set to its default, is accepted
/// by both the schema and the parser; a key it does not list is refused by both.
#[test]
fn schema_and_parser_agree_on_every_key() {
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"instruction\": \"Say hi\", \"output\": \"Hi\"}\n{\"instruction\": \"Say bye\", \"output\": \"Bye\"}\n",
    );
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let base = chain();
    assert!(validator.is_valid(&base));
    let check = |recipe: &Value, expect_ok: bool, what: &str| {
        // JSON is YAML: the parser reads the same document the schema checked.
        sb.write("r.yaml", &serde_json::to_string_pretty(recipe).unwrap());
        let out = sb.pipe(&["validate", "r.yaml"]);
        let schema_ok = validator.is_valid(recipe);
        assert_eq!(schema_ok, expect_ok, "schema verdict on {what}");
        assert_eq!(
            out.code == 0,
            expect_ok,
            "parser verdict on {what}: {}{}",
            out.stdout,
            out.stderr
        );
        out
    };
    check(&base, true, "the base chain");
    let mut checked = 0;
    let stages = base["stages"].as_object().unwrap().clone();
    for (name, stage) in &stages {
        let kind = stage["kind"].as_str().unwrap();
        let def = &schema["$defs"][format!("stage.{kind}")];
        for (key, prop) in def["properties"].as_object().unwrap() {
            let Some(default) = prop.get("default") else {
                continue;
            };
            let mut recipe = base.clone();
            recipe["stages"][name][key] = default.clone();
            check(&recipe, true, &format!("{kind}.{key} = {default}"));
            checked += 1;
        }
        let mut recipe = base.clone();
        recipe["stages"][name]["not_a_key"] = json!(1);
        let out = check(&recipe, false, &format!("{kind}.not_a_key"));
        assert!(
            out.stderr.contains("unknown key `not_a_key`"),
            "{}",
            out.stderr
        );
    }
    assert!(checked > 60, "only {checked} keys have defaults");
}

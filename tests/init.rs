//! `pipe init DATA_FILE` on every data file we have: the legal files shipped in
//! recipes/data/legal always, LLaMA-Factory's demo sets and the other legal
//! sets from ../shared/data when present. Each starter recipe must validate
//! and run end to end with `builtin:tiny` (steps and lengths cut with --set).

mod common;

use std::path::{Path, PathBuf};

use common::Sandbox;

const QUICK: [&str; 8] = [
    "--set",
    "adapter.max_steps=1",
    "--set",
    "adapter.batch_size=2",
    "--set",
    "report.max_examples=2",
    "--set",
    "report.max_new_tokens=4",
];

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else if p.extension().is_some_and(|e| {
            ["json", "jsonl", "csv", "tsv", "parquet"].contains(&e.to_str().unwrap_or(""))
        }) {
            out.push(p);
        }
    }
}

fn data_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    files_under(&root.join("recipes/data/legal"), &mut files);
    let shared = root.join("../shared/data");
    files_under(&shared.join("llamafactory"), &mut files);
    files_under(&shared.join("legal/lawyer_llama"), &mut files);

    files
}

#[test]
fn init_writes_a_recipe_that_validates_and_runs_for_every_data_file() {
    let files = data_files();
    assert!(files.len() >= 15, "only {} data files found", files.len());
    let sb = Sandbox::new();
    for (i, file) in files.iter().enumerate() {
        let recipe = format!("r{i}.yaml");
        let file = file.to_str().unwrap();
        let out = sb.pipe(&["init", file, "--out", &recipe]).success();
        assert!(out.stderr.contains("wrote"), "{}", out.stderr);
        let text = sb.read(&recipe);
        assert!(text.contains("kind: eval"), "{text}");
        sb.pipe(&["validate", &recipe]).success();
        let mut args = vec!["run", recipe.as_str()];
        args.extend(QUICK);
        let out = sb.pipe(&args).success();
        assert!(out.stdout.contains("report"), "{file}: {}", out.stdout);
    }
}

#[test]
fn init_chooses_the_task_and_explains_it() {
    let sb = Sandbox::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hearsay = root.join("recipes/data/legal/legalbench/hearsay/test.tsv");
    sb.pipe(&["init", hearsay.to_str().unwrap(), "--out", "h.yaml"])
        .success();
    let text = sb.read("h.yaml");
    assert!(
        text.contains("# Task: classification (every row has one of 2 short labels)"),
        "{text}"
    );
    assert!(text.contains("# Labels: No ("), "{text}");
    assert!(text.contains("stratify_by: label"), "{text}");
    assert!(text.contains("metrics: [accuracy, f1, loss]"), "{text}");

    // The same file as generation when asked; an existing recipe is kept.
    sb.pipe(&["init", hearsay.to_str().unwrap(), "--out", "h.yaml"])
        .code(2)
        .stderr_has("already exists");
    sb.pipe(&[
        "init",
        hearsay.to_str().unwrap(),
        "--out",
        "h.yaml",
        "--task",
        "generation",
        "--force",
    ])
    .success();
    assert!(sb.read("h.yaml").contains("metrics: [rouge, bleu, loss]"));

    // Chinese answers get CJK-aware scoring.
    let qa = root.join("recipes/data/legal/disc_law_eval/qa_short_answer.json");
    sb.pipe(&["init", qa.to_str().unwrap(), "--out", "qa.yaml"])
        .success();
    let text = sb.read("qa.yaml");
    assert!(
        text.contains("rouge_tokenizer: cjk") && text.contains("preset: sft-zh"),
        "{text}"
    );

    // Bad input is named.
    sb.write("bad.jsonl", "{\"instruction\": 1}\n");
    sb.pipe(&["init", "bad.jsonl"])
        .code(2)
        .stderr_has("no usable rows");
    sb.pipe(&["init", "missing.jsonl"])
        .code(2)
        .stderr_has("missing.jsonl");
}

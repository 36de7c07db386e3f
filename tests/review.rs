//! Blind review round trip (#9): a run with three systems (base, prompted,
//! adapter), `pipe review export` (labels blind, key outside the pack),
//! scores filled in from the key, `pipe review import` (un-blinded means,
//! win rates, agreement) and malformed score files rejected with row and column.

mod common;

use common::Sandbox;
use serde_json::Value;

const RECIPE: &str = "name: rv
seed: 3
model: builtin:tiny
stages:
  raw: {kind: ingest, sources: [{path: rows.jsonl, format: alpaca, task: qa}]}
  split: {kind: split, from: raw, test_fraction: 0.5}
  chat: {kind: render, from: split, template: chatml}
  tokens: {kind: tokenize, from: chat, max_len: 128}
  adapter: {kind: train, from: tokens, max_steps: 2, batch_size: 2}
  report:
    kind: eval
    from: [adapter, chat.test, chat.train]
    metrics: [rouge]
    compare_base: true
    compare_prompted: {shots: 2, from: chat.train}
    max_new_tokens: 4
";

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let rows: String = (0..20)
        .map(|i| {
            format!(
                "{{\"instruction\": \"What is clause {i} about?\", \"input\": \"\", \"output\": \"Clause {i} is about duty {}.\"}}\n",
                i * 7
            )
        })
        .collect();
    sb.write("rows.jsonl", &rows);
    sb.write("r.yaml", RECIPE);
    sb
}

#[test]
fn review_export_import_round_trip() {
    let sb = sandbox();
    sb.pipe(&["run", "r.yaml"]).success();
    let runs = sb.pipe(&["runs", "--json"]).success().json();
    let run = runs[0]["run_hash"].as_str().unwrap()[..12].to_owned();
    sb.pipe(&["review", "export", &run, "--out", "review"])
        .success()
        .stdout_has("3 systems");

    // The pack names no system; the key beside it maps every label.
    let html = sb.read("review/review.html");
    let csv = sb.read("review/scores.csv");
    for pack in [&html, &csv] {
        for system in ["adapter", "prompted", "base"] {
            assert!(!pack.contains(system), "the pack names `{system}`");
        }
    }
    assert!(html.contains("Save CSV"));
    assert!(!sb.join("review/review.key.json").exists());
    let key: Value = serde_json::from_str(&sb.read("review.key.json")).unwrap();
    let items = key["items"].as_object().unwrap();
    assert!(items.len() >= 2);

    // Two reviewers: ann gives adapter 5, prompted 3, base 1; bob the same but prompted 4.
    let mut ann = String::from("item,label,reviewer,score\n");
    let mut bob = String::from("item,label,reviewer,score\n");
    for (item, labels) in items {
        for (label, system) in labels.as_object().unwrap() {
            let (a, b) = match system.as_str().unwrap() {
                "adapter" => (5, 5),
                "prompted" => (3, 4),
                _ => (1, 1),
            };
            ann.push_str(&format!("{item},{label},ann,{a}\n"));
            bob.push_str(&format!("{item},{label},bob,{b}\n"));
        }
    }
    sb.write("review/ann.csv", &ann);
    sb.write("review/bob.csv", &bob);
    let out = sb
        .pipe(&[
            "review",
            "import",
            "review/ann.csv",
            "review/bob.csv",
            "--json",
        ])
        .success();
    let summary = out.json();
    let mean = |s: &str| {
        summary["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["system"] == s)
            .unwrap()["mean"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(mean("adapter"), 5.0);
    assert_eq!(mean("prompted"), 3.5);
    assert_eq!(mean("base"), 1.0);
    let adapter_vs_base = summary["win_rates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| {
            w["a"] == "base" && w["b"] == "adapter" || w["a"] == "adapter" && w["b"] == "base"
        })
        .unwrap();
    let expected = if adapter_vs_base["a"] == "adapter" {
        1.0
    } else {
        0.0
    };
    assert_eq!(adapter_vs_base["win_rate"].as_f64().unwrap(), expected);
    assert_eq!(summary["agreement"]["method"], "cohen");
    let report = sb.read("review/report.md");
    assert!(
        report.starts_with("# Evaluation: report"),
        "a copy of the run's report"
    );
    assert!(report.contains("## Blind review"));
    assert!(sb.join("review/review.json").is_file());

    // Malformed files are rejected, naming the row and the column.
    sb.write(
        "review/bad.csv",
        "item,label,reviewer,score\n1,A,ann,5\n1,Z,ann,3\n",
    );
    sb.pipe(&["review", "import", "review/bad.csv"])
        .code(2)
        .stderr_has("line 3: column `label`");
    sb.write(
        "review/bad.csv",
        "item,label,reviewer,score\n1,A,ann,excellent\n",
    );
    sb.pipe(&["review", "import", "review/bad.csv"])
        .code(2)
        .stderr_has("line 2: column `score`: `excellent` is not a number");
}

//! The commands that work without a recipe run: `pipe score`, `pipe template
//! render`, `pipe lint-template`.

mod common;

use common::Sandbox;
use serde_json::Value;

fn recipe(rel: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn score_prints_corpus_metrics_and_json() {
    let sb = Sandbox::new();
    sb.write(
        "preds.jsonl",
        concat!(
            r#"{"prediction": "the cat sat on the mat", "reference": "the cat sat on the mat"}"#,
            "\n",
            r#"{"prediction": "a dog ran", "references": ["the dog ran", "a dog ran fast"]}"#,
            "\n"
        ),
    );
    let out = sb
        .pipe(&["score", "preds.jsonl", "--metrics", "bleu,rouge"])
        .success();
    assert!(out.stdout.contains("bleu"), "{}", out.stdout);
    assert!(out.stdout.contains("# bleu: nrefs:1"), "{}", out.stdout);

    let out = sb
        .pipe(&[
            "score",
            "preds.jsonl",
            "--metrics",
            "rouge,exact_match",
            "--per-example",
            "--json",
        ])
        .success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["rows"], 2);
    // Row 1 is identical to its reference: every ROUGE F is 1.
    assert_eq!(v["per_example"][0]["rouge1"], 1.0);
    assert_eq!(v["per_example"][0]["exact_match"], 1.0);
    // rouge-score takes the best reference: "a dog ran" is a prefix of ref 2.
    let r1 = v["per_example"][1]["rouge1"].as_f64().unwrap();
    assert!((r1 - 2.0 * 1.0 * 0.75 / 1.75).abs() < 1e-12, "{r1}");
    assert_eq!(v["settings"]["rouge"]["tokenizer"], "default");
}

#[test]
fn score_classification_and_bad_input() {
    let sb = Sandbox::new();
    sb.write(
        "labels.jsonl",
        concat!(
            r#"{"prediction": "Yes, it is.", "label": "Yes"}"#,
            "\n",
            r#"{"prediction": "No", "label": "Yes"}"#,
            "\n",
            r#"{"prediction": "no.", "label": "No"}"#,
            "\n"
        ),
    );
    let out = sb
        .pipe(&[
            "score",
            "labels.jsonl",
            "--metrics",
            "accuracy,f1",
            "--json",
        ])
        .success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let acc = v["scores"]["accuracy"].as_f64().unwrap();
    assert!((acc - 2.0 / 3.0).abs() < 1e-12, "{acc}");
    assert_eq!(
        v["classification"]["labels"],
        serde_json::json!(["No", "Yes"])
    );

    sb.write(
        "broken.jsonl",
        "{\"prediction\": \"a\", \"reference\": \"a\"}\n{\"prediction\": 1\n",
    );
    sb.pipe(&["score", "broken.jsonl"])
        .code(2)
        .stderr_has("broken.jsonl")
        .stderr_has("line 2");
    sb.pipe(&["score", "labels.jsonl", "--metrics", "bleu,meteor"])
        .code(2)
        .stderr_has("meteor");
    sb.pipe(&["score", "labels.jsonl", "--tokenize", "klingon"])
        .code(2)
        .stderr_has("--tokenize klingon");
    sb.pipe(&["score", "missing.jsonl"])
        .code(2)
        .stderr_has("missing.jsonl");
}

#[test]
fn template_render_prints_the_exact_text() {
    let sb = Sandbox::new();
    sb.write(
        "conv.json",
        r#"[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye?"}]"#,
    );
    let out = sb
        .pipe(&[
            "template",
            "render",
            "--template",
            "chatml",
            "--messages",
            "conv.json",
            "--generation-prompt",
        ])
        .success();
    assert_eq!(
        out.stdout,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n<|im_start|>assistant\n"
    );

    // The model's own template and tokens; `{"messages": ...}` objects work too.
    sb.write(
        "obj.json",
        r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
    );
    let out = sb
        .pipe(&[
            "template",
            "render",
            "-t",
            "model",
            "--model",
            "builtin:tiny",
            "--messages",
            "obj.json",
        ])
        .success();
    assert!(out.stdout.contains("Hi"), "{}", out.stdout);

    // A template that raises says so and exits 2; a missing model is named.
    sb.write(
        "strict.jinja",
        "{% if messages[0].role != 'system' %}{{ raise_exception('needs a system turn') }}{% endif %}",
    );
    sb.pipe(&[
        "template",
        "render",
        "-t",
        "strict.jinja",
        "--messages",
        "obj.json",
    ])
    .code(2)
    .stderr_has("needs a system turn");
    sb.pipe(&[
        "template",
        "render",
        "-t",
        "model",
        "--messages",
        "obj.json",
    ])
    .code(2)
    .stderr_has("--model");
    sb.pipe(&[
        "template",
        "render",
        "-t",
        "chatml",
        "--messages",
        "nope.json",
    ])
    .code(1)
    .stderr_has("nope.json");
    let out = sb.pipe(&["template", "list"]).success();
    assert!(out.stdout.lines().any(|l| l == "llama3"), "{}", out.stdout);
}

#[test]
fn lint_template_checks_each_render_stage() {
    let sb = Sandbox::new();
    let out = sb.pipe(&["lint-template", &recipe("recipes/legal.yaml")]);
    assert!(
        out.stdout.contains("chat: template `chatml`"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);

    // A template without a generation prompt is flagged, with the stage named.
    sb.write(
        "rows.jsonl",
        "{\"instruction\": \"Q\", \"output\": \"A\"}\n",
    );
    sb.write(
        "bare.jinja",
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
    );
    sb.write(
        "r.yaml",
        "name: t\nseed: 1\nmodel: builtin:tiny\nstages:\n  raw: {kind: ingest, sources: [{path: rows.jsonl}]}\n  chat: {kind: render, from: raw, template: bare.jinja}\n",
    );
    sb.pipe(&["lint-template", "r.yaml"])
        .code(1)
        .stdout_has("chat: template");
}

//! The flagship recipe end to end (issue #7): a clean run, a no-op rerun, and a
//! training change that reruns only train and eval. Step counts are cut with
//! `--set` so the test stays short.

use std::path::Path;
use std::process::Command;

const QUICK: [&str; 6] = [
    "--set",
    "adapter.max_steps=4",
    "--set",
    "report.max_examples=8",
    "--set",
    "report.general.max_questions=8",
];

fn pipe(cache: &Path, extra: &[&str]) -> (i32, String) {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/legal.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .arg("run")
        .arg(&recipe)
        .arg("--cache-dir")
        .arg(cache)
        .args(QUICK)
        .args(extra)
        .output()
        .expect("run pipe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Stage name -> status (`ran` / `cached`) from the closing table.
fn statuses(text: &str) -> Vec<(String, String)> {
    let stages = [
        "raw", "clean", "good", "split", "chat", "tokens", "adapter", "report",
    ];
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.len() >= 3
                && stages.contains(&cols[0])
                && (cols[2] == "ran" || cols[2] == "cached"))
                .then(|| (cols[0].to_owned(), cols[2].to_owned()))
        })
        .collect()
}

#[test]
fn legal_recipe_runs_caches_and_reruns_only_what_changed() {
    let cache = tempfile::tempdir().unwrap();
    let (code, text) = pipe(cache.path(), &[]);
    assert_eq!(code, 0, "first run failed:\n{text}");
    let first = statuses(&text);
    assert_eq!(first.len(), 8, "closing table lacks stages:\n{text}");
    assert!(first.iter().all(|(_, s)| s == "ran"), "{text}");

    let junit = cache.path().join("gates.xml");
    let (code, text) = pipe(cache.path(), &["--junit", junit.to_str().unwrap()]);
    assert_eq!(code, 0, "second run failed:\n{text}");
    // The gates reach CI as JUnit test cases.
    let xml = std::fs::read_to_string(&junit).expect("--junit writes its file");
    assert!(xml.contains("<testsuite name=\"report\""), "{xml}");
    assert!(xml.contains("eval_loss: &lt;= base - 0.5"), "{xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(
        statuses(&text).iter().all(|(_, s)| s == "cached"),
        "second run was not a no-op:\n{text}"
    );

    let (code, text) = pipe(cache.path(), &["--set", "adapter.lora.rank=4"]);
    assert_eq!(code, 0, "rank change failed:\n{text}");
    for (stage, status) in statuses(&text) {
        let expected = if stage == "adapter" || stage == "report" {
            "ran"
        } else {
            "cached"
        };
        assert_eq!(
            status, expected,
            "stage {stage} after a rank change:\n{text}"
        );
    }

    // The report folder holds every file a user reads, with metrics in range.
    let report = walk(cache.path())
        .into_iter()
        .find(|p| p.ends_with("report/metrics.json"))
        .expect("metrics.json");
    let dir = report.parent().unwrap();
    for file in [
        "metrics.json",
        "predictions.jsonl",
        "report.md",
        "report.html",
    ] {
        assert!(
            dir.join(file).is_file(),
            "missing {file} in {}",
            dir.display()
        );
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for system in ["base", "prompted", "adapter"] {
        let m = &metrics["columns"][system]["metrics"];
        for key in ["rougeL", "accuracy", "f1_macro"] {
            let v = m[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{system}.{key} missing in {m}"));
            assert!((0.0..=1.0).contains(&v), "{system}.{key} = {v}");
        }
        assert!(m["eval_loss"].as_f64().unwrap() > 0.0);
        // Classification is scored per task (#6).
        assert!(
            m.as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("accuracy/")),
            "{system}: no per-task accuracy in {m}"
        );
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Per task"), "{md}");
    assert!(
        md.contains("| metric | base | prompted | adapter |"),
        "{md}"
    );
    // General ability: base and adapter on the same 8 questions (#9).
    assert!(md.contains("## General ability"), "{md}");
    assert!(md.contains("adapter - base: "), "{md}");
    assert!(metrics["columns"]["adapter"]["metrics"]["general_acc"].is_number());
    assert_eq!(metrics["general"]["scores"][0]["n"], 8);

    // The newest run's adapter folds into a Hugging Face model folder.
    let merged = cache.path().join("merged");
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args([
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "runs",
            "--json",
        ])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let newest = runs[0]["run_hash"].as_str().expect("a run hash");
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["--cache-dir", cache.path().to_str().unwrap(), "merge"])
        .arg(&newest[..12])
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pipe merge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(merged.join("model.safetensors").is_file());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "llama");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

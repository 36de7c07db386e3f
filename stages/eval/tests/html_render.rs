//! Renders a report.html with headless Chromium and checks a screenshot came
//! out. Skips (passes with a note) when no Chromium is installed.

use std::collections::BTreeMap;
use std::process::Command;

use pipe_eval::metrics::classification_report;
use pipe_eval::report::{Column, EvalReport, ExampleRecord};
use serde_json::json;

fn chromium() -> Option<String> {
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .map(str::to_owned)
}

fn report() -> EvalReport {
    let truth = ["guilty", "not guilty", "guilty", "dismissed"];
    let base = ["not guilty", "not guilty", "not guilty", "not guilty"];
    let adapter = ["guilty", "not guilty", "guilty", "guilty"];
    let col = |name: &str, pred: &[&str]| {
        let cl = classification_report(&truth, pred, None);
        Column {
            name: name.into(),
            metrics: BTreeMap::from([
                ("accuracy".into(), cl.accuracy),
                ("f1_macro".into(), cl.macro_avg.f1),
            ]),
            classification: Some(cl),
            tasks: BTreeMap::new(),
        }
    };
    let examples = (0..4)
        .map(|i| ExampleRecord {
            index: i,
            prompt: format!("<|im_start|>user\nCase {i}: what is the verdict?<|im_end|>\n<|im_start|>assistant\n"),
            reference: truth[i].into(),
            label: Some(truth[i].into()),
            task: Some("verdict".into()),
            outputs: BTreeMap::from([("base".into(), base[i].into()), ("adapter".into(), adapter[i].into())]),
            predicted_labels: BTreeMap::new(),
            scores: BTreeMap::from([
                ("base".into(), BTreeMap::from([("correct".into(), f64::from(u8::from(base[i] == truth[i])))])),
                ("adapter".into(), BTreeMap::from([("correct".into(), f64::from(u8::from(adapter[i] == truth[i])))])),
            ]),
        })
        .collect();
    EvalReport {
        general: None,
        stage: "report".into(),
        settings: json!({"generation": {"max_new_tokens": 16}}),
        columns: vec![col("base", &base), col("adapter", &adapter)],
        examples,
        gates: vec![],
        loss_svg: Some(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"300\" height=\"100\"><polyline fill=\"none\" stroke=\"blue\" points=\"0,10 100,50 200,70 300,80\"/></svg>"
                .into(),
        ),
    }
}

#[test]
fn report_html_renders_in_chromium() {
    let Some(bin) = chromium() else {
        eprintln!("skipped: no chromium on PATH");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    report().write(dir.path()).expect("report written");
    let html = dir.path().join("report.html");
    let png = dir.path().join("shot.png");
    let out = Command::new(&bin)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--window-size=1200,1600",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs");
    assert!(
        png.is_file(),
        "no screenshot; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("png");
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(
        bytes.len() > 5_000,
        "screenshot suspiciously small ({} bytes)",
        bytes.len()
    );
}

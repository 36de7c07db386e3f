//! Ingest on the real files in ../shared/data (skipped when they are absent).

use std::path::{Path, PathBuf};

use pipe_data::ingest::{IngestParams, ingest};
use pipe_rows::{Message, Row};
use serde_json::json;

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.join("SOURCES.md").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: {} not found", dir.display());
        None
    }
}

fn params(v: serde_json::Value) -> IngestParams {
    serde_json::from_value(v).unwrap()
}

fn m(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

#[test]
fn alpaca_en_auto_detected() {
    let Some(dir) = data_dir() else { return };
    let out = ingest(
        &params(json!({"path": "llamafactory/alpaca_en_demo.json"})),
        &dir,
    )
    .unwrap();
    assert_eq!(out.rows.len(), 999);
    assert!(out.rejected.is_empty());
    assert_eq!(
        out.files[0].shape,
        "auto -> alpaca (prompt=instruction, query=input, response=output)"
    );
    let r = &out.rows[0];
    assert_eq!(r.source_file, "llamafactory/alpaca_en_demo.json");
    assert_eq!(r.source_row, 0);
    assert_eq!(r.messages.len(), 2);
    assert_eq!(
        r.messages[0],
        m("user", "Describe a process of making crepes.")
    );
    assert!(
        r.messages[1]
            .content
            .starts_with("Making crepes is an easy and delicious process! Here are step-by-step")
    );
    assert_eq!(r.system, None);
    // a row with a non-empty input: instruction and input joined by a newline (LLaMA-Factory)
    let with_input = out
        .rows
        .iter()
        .find(|r| r.messages[0].content.contains('\n'))
        .unwrap();
    assert!(with_input.source_row > 0);
}

#[test]
fn alpaca_zh_and_identity_with_replace() {
    let Some(dir) = data_dir() else { return };
    let out = ingest(
        &params(json!({
            "sources": [
                {"path": "llamafactory/alpaca_zh_demo.json", "format": "alpaca"},
                {"path": "llamafactory/identity.json", "replace": {"{{name}}": "Lex", "{{author}}": "the pipe team"}}
            ]
        })),
        &dir,
    )
    .unwrap();
    assert_eq!(out.rows.len(), 1091);
    assert_eq!(
        out.rows[0].messages[0],
        m(
            "user",
            "识别并解释给定列表中的两个科学理论：细胞理论和日心说。"
        )
    );
    assert!(
        out.rows[0].messages[1]
            .content
            .starts_with("细胞理论是生物科学的一个理论")
    );
    let id = &out.rows[1000];
    assert_eq!(id.source_file, "llamafactory/identity.json");
    assert_eq!(
        id.messages,
        vec![
            m("user", "hi"),
            m(
                "assistant",
                "Hello! I am Lex, an AI assistant developed by the pipe team. How can I assist you today?"
            ),
        ]
    );
    assert!(
        out.rows
            .iter()
            .all(|r| !r.messages.iter().any(|m| m.content.contains("{{")))
    );
}

#[test]
fn sharegpt_with_tools() {
    let Some(dir) = data_dir() else { return };
    let out = ingest(
        &params(json!({"path": "llamafactory/glaive_toolcall_en_demo.json"})),
        &dir,
    )
    .unwrap();
    assert_eq!(
        out.files[0].shape,
        "auto -> sharegpt (conversations: [{from, value}])"
    );
    assert_eq!(out.rows.len() + out.rejected.len(), 300);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    let r = &out.rows[0];
    let roles: Vec<&str> = r.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(
        &roles[..5],
        ["user", "assistant", "user", "assistant", "tool"]
    );
    assert_eq!(
        r.messages[0].content,
        "Hi, I have some ingredients and I want to cook something. Can you help me find a recipe?"
    );
    // function_call becomes an assistant turn with its JSON as is
    assert_eq!(
        r.messages[3].content,
        r#"{"name": "search_recipes", "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]}}"#
    );
    assert!(r.tools.as_deref().unwrap().contains("search_recipes"));
}

#[test]
fn v1_messages_jsonl_with_content_parts() {
    let Some(dir) = data_dir() else { return };
    let out = ingest(
        &params(json!({"path": "llamafactory/v1_sft_demo.jsonl", "replace": {"{{name}}": "Lex", "{{author}}": "us"}})),
        &dir,
    )
    .unwrap();
    assert_eq!(
        out.files[0].shape,
        "auto -> messages (messages: [{role, content}])"
    );
    assert_eq!(out.rows.len(), 500);
    let r = &out.rows[0];
    assert_eq!(r.source_row, 1); // JSONL: 1-based line
    assert_eq!(
        r.messages,
        vec![
            m("user", "hi"),
            m(
                "assistant",
                "Hello! I am Lex, an AI assistant developed by us. How can I assist you today?"
            ),
        ]
    );
}

const HEARSAY_PROMPT: &str = "Is the following evidence hearsay? Answer Yes or No.\n{text}";

#[test]
fn legal_mix_of_three_shapes() {
    let Some(dir) = data_dir() else { return };
    let out = ingest(
        &params(json!({
            "sources": [
                {"path": "legal/legalbench/hearsay/test.tsv", "task": "{dir}", "prompt": HEARSAY_PROMPT},
                {"path": "legal/legalbench/abercrombie/*.tsv", "task": "{dir}",
                 "prompt": "Classify the mark as generic, descriptive, suggestive, arbitrary or fanciful.\n{text}"},
                {"path": "legal/disc_law_eval/qa_short_answer.json", "task": "disc_qa"},
                {"path": "legal/disc_law_eval/mcq_sing_lbk.csv", "task": "disc_mcq",
                 "prompt": "以下是一道单项选择题，请给出正确答案的字母。\n{question}\n{options}"}
            ]
        })),
        &dir,
    )
    .unwrap();
    let shapes: Vec<&str> = out.files.iter().map(|f| f.shape.as_str()).collect();
    assert_eq!(
        shapes,
        [
            "auto -> classification (text=text, label=label)",
            "auto -> classification (text=text, label=label)",
            "auto -> classification (text=text, label=label)",
            "auto -> alpaca (prompt=input, response=output)",
            "auto -> choice (question=input, options=A,B,C,D, answer=output)",
        ]
    );
    assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    assert_eq!(out.rows.len(), 95 + 95 + 5 + 300 + 275);

    let h = &out.rows[0];
    let text = "On the issue of whether James is an smart individual, the fact that James came first in his class in law school.";
    assert_eq!(
        h,
        &Row {
            messages: vec![
                m("user", &HEARSAY_PROMPT.replace("{text}", text)),
                m("assistant", "No")
            ],
            text: Some(text.into()),
            label: Some("No".into()),
            task: Some("hearsay".into()),
            source_file: "legal/legalbench/hearsay/test.tsv".into(),
            source_row: 2, // header is line 1
            ..Row::default()
        }
    );
    let a = &out.rows[95];
    assert_eq!(a.task.as_deref(), Some("abercrombie"));
    assert_eq!(a.source_file, "legal/legalbench/abercrombie/test.tsv");
    assert_eq!(
        a.text.as_deref(),
        Some("The mark “Salt” for packages of sodium chloride.")
    );
    assert_eq!(a.label.as_deref(), Some("generic"));

    let q = &out.rows[195];
    assert_eq!(q.task.as_deref(), Some("disc_qa"));
    assert_eq!(q.source_row, 0);
    assert!(
        q.messages[0]
            .content
            .starts_with("请对以下案件做出分析并给出可能的判决：\n\n2021年11月19日20时许")
    );
    assert!(
        q.messages[1]
            .content
            .starts_with("被告人魏某某犯危险驾驶罪。")
    );
    assert_eq!(q.messages[0].content.chars().count(), 364);

    let c = &out.rows[495];
    assert_eq!(c.source_row, 2);
    assert_eq!(c.label.as_deref(), Some("B"));
    assert_eq!(
        c.messages[0].content,
        "以下是一道单项选择题，请给出正确答案的字母。\n我国第一部社会主义类型的宪法颁布于什么时候？\nA. 1949年\nB. 1954年\nC. 1978年\nD. 1982年"
    );
    assert_eq!(c.messages[1], m("assistant", "B"));
    let letters = out.rows[495..]
        .iter()
        .filter(|r| r.label.as_deref() == Some("A"))
        .count();
    assert_eq!(letters, 64); // SOURCES.md: answers A 64 / B 77 / C 65 / D 69
}

#[test]
fn citation_answer_column_and_glob_order() {
    let Some(dir) = data_dir() else { return };
    let out = ingest(
        &params(json!({"path": "legal/legalbench/citation_prediction_open/*.tsv", "task": "{dir}", "prompt": "Name the case: {text}"})),
        &dir,
    )
    .unwrap();
    // sorted: test.subset10.tsv before train.tsv
    assert_eq!(
        out.files.iter().map(|f| f.rows).collect::<Vec<_>>(),
        [10, 2]
    );
    assert_eq!(
        out.files[0].shape,
        "auto -> classification (text=text, label=answer)"
    );
    let r = &out.rows[0];
    assert_eq!(
        r.label.as_deref(),
        Some("Nationwide Mut. Ins. Co. v. Cosenza")
    );
    assert_eq!(
        r.messages[0].content,
        "Name the case: [E]xclusions are always strictly construed against the insurer and in favor of the insured."
    );
    // a quoted TSV field with doubled quotes
    assert!(
        out.rows[1]
            .text
            .as_deref()
            .unwrap()
            .starts_with("To be \"equivalent to a demotion,\" the action")
    );
}

//! Ingest on small hand-made files: broken lines, BOM/CRLF, rejects, Parquet.

use pipe_data::DataError;
use pipe_data::ingest::{IngestParams, ingest};
use pipe_rows::{Message, Row, write_rows};
use serde_json::json;

fn params(v: serde_json::Value) -> IngestParams {
    serde_json::from_value(v).unwrap()
}

#[test]
fn broken_jsonl_lines_are_rejected_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let text = concat!(
        "\u{feff}{\"instruction\": \"a\", \"input\": \"\", \"output\": \"A\"}\r\n", // 1: BOM + CRLF
        "{\"instruction\": \"b\", \"output\": \"B\"\r\n", // 2: malformed JSON
        "\r\n",                                           // 3: blank, skipped
        "{\"instruction\": \"c\", \"input\": \"x\", \"output\": \"C\"}\n", // 4: ok
        "[1, 2]\n",                                       // 5: not an object
        "{\"instruction\": \"d\"}\n",                     // 6: missing output
        "{\"instruction\": \"e\", \"output\": 5}\n",      // 7: wrong type
        "{\"instruction\": \"\", \"input\": \"\", \"output\": \"F\"}\n", // 8: empty prompt
        "{\"instruction\": \"g\", \"output\": \"G\", \"history\": [[\"q\"]]}\n", // 9: bad history
        "{\"instruction\": \"h\", \"output\": \"H\", \"history\": [[\"q1\", \"a1\"]], \"system\": \"S\"}", // 10, no final newline
    );
    std::fs::write(dir.path().join("d.jsonl"), text).unwrap();
    let p = params(json!({"path": "d.jsonl", "format": "alpaca", "max_rejected": 1.0}));
    let out = ingest(&p, dir.path()).unwrap();
    let lines: Vec<u64> = out.rejected.iter().map(|r| r.source_row).collect();
    assert_eq!(lines, [2, 5, 6, 7, 8, 9]);
    assert!(
        out.rejected[0].reason.starts_with("malformed JSON"),
        "{}",
        out.rejected[0].reason
    );
    assert_eq!(
        out.rejected[1].reason,
        "expected a JSON object, found an array"
    );
    assert_eq!(out.rejected[2].reason, "missing required field `output`");
    assert_eq!(
        out.rejected[3].reason,
        "field `output` must be a string, found a number"
    );
    assert!(out.rejected[4].reason.starts_with("empty prompt"));
    assert!(out.rejected[5].reason.contains("history"));
    assert_eq!(
        out.rows.iter().map(|r| r.source_row).collect::<Vec<_>>(),
        [1, 4, 10]
    );
    assert_eq!(
        out.rows[0].messages,
        vec![Message::new("user", "a"), Message::new("assistant", "A")]
    );
    assert_eq!(out.rows[1].messages[0].content, "c\nx");
    assert_eq!(
        out.rows[2].messages,
        vec![
            Message::new("user", "q1"),
            Message::new("assistant", "a1"),
            Message::new("user", "h"),
            Message::new("assistant", "H"),
        ]
    );
    assert_eq!(out.rows[2].system.as_deref(), Some("S"));

    // strict by default: the stage fails and names the first places
    let err = out.check(0.0).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(
        err,
        DataError::TooManyRejected {
            rejected: 6,
            total: 9,
            ..
        }
    ));
    assert!(msg.contains("d.jsonl:2: malformed JSON"), "{msg}");
    assert!(msg.contains("d.jsonl:5: expected a JSON object"), "{msg}");
    assert!(out.check(0.7).is_ok());
}

#[test]
fn sharegpt_order_and_empty_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let rows = json!([
        {"conversations": [{"from": "system", "value": "sys"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"conversations": []},
        {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
        {"conversations": [{"from": "human", "value": "q"}]},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]},
        "not a record"
    ]);
    std::fs::write(dir.path().join("s.json"), rows.to_string()).unwrap();
    let out = ingest(
        &params(json!({"path": "s.json", "max_rejected": 1.0})),
        dir.path(),
    )
    .unwrap();
    assert_eq!(out.rows.len(), 1);
    assert_eq!(out.rows[0].system.as_deref(), Some("sys"));
    let reasons: Vec<(u64, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.source_row, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, "empty conversation"),
            (
                2,
                "roles out of order at turn 0: expected user or tool, found assistant"
            ),
            (
                3,
                "the conversation ends with a user turn: nothing to train on"
            ),
            (4, "`conversations` turn 1: unknown role `robot`"),
            (5, "expected a JSON object, found a string"),
        ]
    );
}

#[test]
fn csv_with_bom_crlf_and_columns_mapping() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("q.csv"),
        "\u{feff}question,reply,kind\r\n\"What is a tort?\",\"A civil wrong,\r\nnot a crime.\",law\r\nshort,row\r\n",
    )
    .unwrap();
    let p = params(json!({
        "path": "q.csv", "format": "alpaca", "max_rejected": 0.5,
        "columns": {"prompt": "question", "response": "reply", "task": "kind"}
    }));
    let out = ingest(&p, dir.path()).unwrap();
    assert_eq!(out.rows.len(), 1);
    assert_eq!(
        out.rows[0].messages[1].content,
        "A civil wrong,\r\nnot a crime."
    );
    assert_eq!(out.rows[0].task.as_deref(), Some("law"));
    assert_eq!(out.rows[0].source_row, 2);
    assert_eq!(out.rejected[0].source_row, 4);
    assert_eq!(out.rejected[0].reason, "2 fields, the header has 3");
}

#[test]
fn parquet_rows_table_ingests_as_messages() {
    let dir = tempfile::tempdir().unwrap();
    let row = Row {
        messages: vec![
            Message::new("user", "你好"),
            Message::new("assistant", "hi"),
        ],
        source_file: "x".into(),
        source_row: 9,
        ..Row::default()
    };
    write_rows(&dir.path().join("t.parquet"), std::slice::from_ref(&row)).unwrap();
    let out = ingest(&params(json!({"path": "t.parquet"})), dir.path()).unwrap();
    assert_eq!(
        out.files[0].shape,
        "auto -> messages (messages: [{role, content}])"
    );
    assert_eq!(out.rows[0].messages, row.messages);
    assert_eq!(out.rows[0].source_row, 0);
}

#[test]
fn params_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let err = ingest(&params(json!({"path": "missing/*.jsonl"})), dir.path()).unwrap_err();
    assert!(err.to_string().contains("matches no file"), "{err}");
    std::fs::write(dir.path().join("a.txt"), "x").unwrap();
    let err = ingest(&params(json!({"path": "a.txt"})), dir.path()).unwrap_err();
    assert!(err.to_string().contains("format_file"), "{err}");
    std::fs::write(dir.path().join("w.jsonl"), "{\"foo\": 1}\n").unwrap();
    let err = ingest(&params(json!({"path": "w.jsonl"})), dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot detect the record shape from the keys [foo]"),
        "{err}"
    );
    assert!(serde_json::from_value::<IngestParams>(json!({"path": "a", "formt": "x"})).is_err());
}

#[test]
fn records_wrapped_in_lists_and_speaker_tagged_dialogues() {
    let dir = tempfile::tempdir().unwrap();
    // lawyer-llama's export: each record a one-item list; a longer list is a conversation.
    let wrapped = json!([
        [{"instruction": "Q1", "input": "", "output": "A1"}],
        [{"instruction": "Q2", "input": "ctx", "output": "A2"}, {"instruction": "Q3", "input": "", "output": "A3"}],
        [1]
    ]);
    std::fs::write(dir.path().join("w.json"), wrapped.to_string()).unwrap();
    let out = ingest(
        &params(json!({"path": "w.json", "max_rejected": 1.0})),
        dir.path(),
    )
    .unwrap();
    assert_eq!(out.rows.len(), 2);
    assert_eq!(
        out.rows[0].messages,
        [Message::new("user", "Q1"), Message::new("assistant", "A1")]
    );
    assert_eq!(
        out.rows[1].messages,
        [
            Message::new("user", "Q2\nctx"),
            Message::new("assistant", "A2"),
            Message::new("user", "Q3"),
            Message::new("assistant", "A3")
        ]
    );
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].source_row, 2);

    // Multi-turn counsel written as `[speaker] text` strings: detected, first
    // speaker the user, a trailing user turn dropped, a third speaker rejected.
    let counsel = json!([
        {"query": "q", "laws": ["law"], "history": ["[客户] 你好", "[律师] 您好", "[客户] 谢谢"]},
        {"query": "q", "history": ["[客户] a", "[律师] b", "[法官] c"]}
    ]);
    std::fs::write(dir.path().join("c.json"), counsel.to_string()).unwrap();
    let out = ingest(
        &params(json!({"path": "c.json", "max_rejected": 1.0})),
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        out.rows[0].messages,
        [
            Message::new("user", "你好"),
            Message::new("assistant", "您好")
        ]
    );
    assert!(
        out.files[0].shape.contains("messages"),
        "{}",
        out.files[0].shape
    );
    assert_eq!(out.rejected.len(), 1);
    assert!(
        out.rejected[0].reason.contains("third speaker"),
        "{}",
        out.rejected[0].reason
    );
}

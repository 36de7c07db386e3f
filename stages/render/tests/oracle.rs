//! Parity with Python Jinja2 beyond the reference file: every real template
//! (from the shared data folder), every project template and a few feature
//! probes are rendered on more conversations (multi-turn, tools, tool calls,
//! Unicode, odd whitespace), by this crate and by Jinja2 set up like
//! transformers (`tests/jinja2_oracle.py`), and must agree byte for byte:
//! same text, or both failing (with the same `raise_exception` message).
//!
//! Skips cleanly when `python3` with `jinja2` is not available.

use pipe_render::{ChatTemplate, RenderError, TemplateConfig, builtin_template};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/chat_templates")
}

fn python_has_jinja2() -> bool {
    Command::new("python3")
        .args(["-c", "import jinja2"])
        .output()
        .is_ok_and(|o| o.status.success())
}

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'here' in °C", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}, "days": {"type": "integer", "minimum": 1, "maximum": 7.5}}, "required": ["city"]}}}]"#;

fn conversations() -> Vec<(&'static str, Value, Option<Value>)> {
    let tools: Value = serde_json::from_str(TOOLS).unwrap();
    vec![
        (
            "multi_turn",
            json!([{"role":"user","content":"  Q1 \n"},{"role":"assistant","content":"A1\n"},{"role":"user","content":"Q2"},{"role":"assistant","content":" A2"}]),
            None,
        ),
        (
            "system_multi_turn",
            json!([{"role":"system","content":"Be brief."},{"role":"user","content":"Q1"},{"role":"assistant","content":"A1"},{"role":"user","content":"Q2"},{"role":"assistant","content":"A2"}]),
            None,
        ),
        (
            "unicode",
            json!([{"role":"user","content":"合同是否有效？ “quotes” <b>&amp;</b> \u{1c}x\u{1c}"},{"role":"assistant","content":"有效。\t😀"}]),
            None,
        ),
        (
            "user_only",
            json!([{"role":"user","content":"Only a question."}]),
            None,
        ),
        (
            "tools",
            json!([{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":"Let me check."},{"role":"tool","content":"{\"temp\": 21}"},{"role":"assistant","content":"21 degrees."}]),
            Some(tools.clone()),
        ),
        (
            "tool_calls",
            json!([
                {"role":"system","content":"You can call tools."},
                {"role":"user","content":"Weather in Paris?"},
                {"role":"assistant","content":"","tool_calls":[{"id":"abc123def","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris","days":2}}}]},
                {"role":"tool","tool_call_id":"abc123def","name":"get_weather","content":"{\"temp\": 21.5, \"rain\": false}"},
                {"role":"assistant","content":"21.5 degrees, dry."}
            ]),
            Some(tools),
        ),
    ]
}

/// Small templates probing engine features the real ones barely touch.
const PROBES: [(&str, &str); 6] = [
    (
        "probe-generation",
        "{% for m in messages %}{% if m.role == 'assistant' %}\n  {% generation %}\n{{ m.content }}{{ eos_token }}\n  {% endgeneration %}\n{% else %}{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}",
    ),
    (
        "probe-tojson",
        "{{ tools | tojson }}\n{{ tools | tojson(indent=2) }}\n{{ messages | tojson(sort_keys=true) }}\n{{ messages | tojson(separators=(',', ':')) }}",
    ),
    (
        "probe-python-methods",
        "{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.content.split() | length }}|{{ m.content.startswith('Q') }}|{{ m.content.replace('A', 'a') }}|{{ m.get('name', 'none') }}|{{ m.content.lstrip() }}|{{ m.content.title() }}\n{% endfor %}",
    ),
    (
        "probe-printing",
        "{{ none }}|{{ true }}|{{ false }}|{{ 1.5 }}|{{ 10 / 4 }}|{{ 7 // 2 }}|{{ [1, 'a', none] }}|{{ messages[0] }}|{{ messages | length }}|{{ tools is none }}",
    ),
    (
        "probe-namespace-loops",
        "{%- set ns = namespace(count=0, last='') %}\n{%- for m in messages %}\n    {%- if m.role == 'system' %}{% continue %}{% endif %}\n    {%- if loop.index > 4 %}{% break %}{% endif %}\n    {%- set ns.count = ns.count + 1 %}\n    {%- set ns.last = m.role %}\n    {{- loop.index0 }}{{ m.role[0] }}{% if not loop.last %},{% endif %}\n{%- endfor %}\n{{- ' ' ~ ns.count ~ ' ' ~ ns.last }}{{ messages[-1].content[:3] }}{{ messages[1:] | map(attribute='role') | join('/') }}",
    ),
    (
        "probe-strftime-trim",
        "{{ strftime_now('%d %B %Y, %A') }}|{{ messages[0].content | trim }}|{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}{{ v }}{% endfor %}",
    ),
];

#[test]
fn renders_like_jinja2() {
    if !python_has_jinja2() {
        eprintln!("skipping: python3 with jinja2 not available");
        return;
    }
    // (label, source, bos, eos)
    let mut templates: Vec<(String, String, String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(data_dir()) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.ends_with(".jinja"))
            .collect();
        names.sort();
        for file in names {
            let name = file.trim_end_matches(".jinja").to_owned();
            let source = std::fs::read_to_string(data_dir().join(&file)).unwrap();
            let meta: Value = serde_json::from_str(
                &std::fs::read_to_string(data_dir().join(format!("{name}.json"))).unwrap(),
            )
            .unwrap();
            let tok = |k: &str| meta[k].as_str().unwrap_or_default().to_owned();
            templates.push((name, source, tok("bos_token"), tok("eos_token")));
        }
    } else {
        eprintln!("note: shared chat templates absent; checking project templates and probes only");
    }
    for name in pipe_render::TEMPLATE_NAMES {
        let (bos, eos) = pipe_render::template_default_tokens(name);
        templates.push((
            format!("project:{name}"),
            builtin_template(name).unwrap().to_owned(),
            bos.unwrap_or_default().to_owned(),
            eos.unwrap_or_default().to_owned(),
        ));
    }
    for (name, source) in PROBES {
        templates.push((
            name.to_owned(),
            source.to_owned(),
            "<s>".into(),
            "</s>".into(),
        ));
    }

    let mut cases = Vec::new();
    let mut labels = Vec::new();
    for (name, source, bos, eos) in &templates {
        for (conv, messages, tools) in conversations() {
            for agp in [false, true] {
                cases.push(json!({
                    "source": source, "bos_token": bos, "eos_token": eos,
                    "messages": messages, "tools": tools, "add_generation_prompt": agp,
                }));
                labels.push((name.clone(), conv, agp));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.json");
    std::fs::write(&input, serde_json::to_string(&cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jinja2_oracle.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(expected.len(), cases.len());

    let mut failures = Vec::new();
    let mut texts = 0;
    for ((case, want), (name, conv, agp)) in cases.iter().zip(&expected).zip(&labels) {
        let config = TemplateConfig {
            bos_token: case["bos_token"].as_str().unwrap().to_owned(),
            eos_token: case["eos_token"].as_str().unwrap().to_owned(),
            ..TemplateConfig::default()
        };
        let template = ChatTemplate::new(name.as_str(), case["source"].as_str().unwrap(), config)
            .unwrap_or_else(|e| panic!("{e}"));
        let tools = (!case["tools"].is_null()).then(|| case["tools"].to_string());
        let got = template.render_json(
            &serde_json::to_string(&case["messages"]).unwrap(),
            tools.as_deref(),
            *agp,
        );
        let ok = match (
            &got,
            want.get("ok"),
            want.get("error").and_then(Value::as_str),
        ) {
            (Ok(text), Some(Value::String(w)), _) => {
                texts += 1;
                text == w
            }
            (Err(e), None, Some(w)) => match w.split_once(": ") {
                Some(("TemplateError", msg)) => e.raised_message() == Some(msg),
                _ => matches!(e, RenderError::Render { .. }),
            },
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{name} [{conv}, agp={agp}]\n  jinja2 {want}\n  ours   {got:?}"
            ));
        }
    }
    eprintln!(
        "{} cases ({texts} texts, {} errors) compared with Jinja2, {} differ",
        cases.len(),
        cases.len() - texts - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Any text as a chat template (rendered over a fixed conversation), and any
//! text as the conversation JSON (rendered with a real template). Template
//! errors are fine; panics, hangs and crashes are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_render::render_conversation;

const MESSAGES: &str = r#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>&'"}, {"role": "assistant", "content": "Hello."}]"#;
const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = render_conversation("fuzz", text, MESSAGES, true, None, Some("<s>"), Some("</s>"), None);
    let _ = render_conversation("chatml", CHATML, text, false, Some(text), None, None, None);
});

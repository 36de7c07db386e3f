//! Print next-token logits of prompts as JSON (for `scripts/crosscheck.py`).
//!
//! `train-logits --model PATH [--adapter DIR] --ids 1,2,3 --ids 4,5`
//! prints `{"logits": [[...vocab floats...], ...]}`, one row per prompt, computed
//! in one left-padded batch by `Generator::start`.

use pipe_train::Generator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut model, mut adapter, mut prompts) = (None, None, Vec::new());
    let mut i = 0;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--model" => model = Some(args[i + 1].clone()),
            "--adapter" => adapter = Some(std::path::PathBuf::from(&args[i + 1])),
            "--ids" => prompts.push(
                args[i + 1]
                    .split(',')
                    .map(|x| {
                        x.trim()
                            .parse::<u32>()
                            .expect("--ids takes comma-separated token ids")
                    })
                    .collect::<Vec<u32>>(),
            ),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    let model = model.expect("--model PATH (a .gguf file, a Hugging Face folder or builtin:tiny)");
    let resolved = pipe_model::resolve(&model, std::path::Path::new(".")).expect("model");
    let mut generator = Generator::load(&resolved, adapter.as_deref(), 0).expect("load");
    let logits = generator.start(&prompts).expect("forward");
    println!("{}", serde_json::json!({ "logits": logits }));
}

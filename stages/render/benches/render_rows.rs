//! Render throughput: 100,000 alpaca-style rows through several templates,
//! with all cores (rayon) and with one.
//!
//! ```text
//! cargo bench -p pipe-render --profile dev --bench render_rows [-- ROWS]
//! ```
//! (`--profile dev` reuses the test build: dependencies are optimized there too.)
//!
//! The rows imitate `shared/peers/synth_data.py` (instruction, optional input,
//! answer of a sentence or two), the records the Python baseline
//! (`hf_preprocess.py`: HF datasets `.map` with `apply_chat_template` and the
//! tokenizer, 2 processes) measures at about 10,200 records/s on this machine.

use pipe_render::{ChatTemplate, RenderOptions, TemplateConfig, builtin_template, render_rows};
use pipe_rows::{Message, Row};
use std::time::Instant;

const COUNTRIES: [(&str, &str); 8] = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Egypt", "Cairo"),
    ("Chile", "Santiago"),
    ("Ireland", "Dublin"),
];

const SENTENCES: [&str; 5] = [
    "The committee met on Tuesday to discuss the new budget.",
    "Heavy rain caused delays on several train lines this morning.",
    "Researchers found that regular walking improves sleep quality.",
    "The new software release fixes a number of memory leaks.",
    "The city plans to add more bicycle lanes next year.",
];

/// Record `i` of a deterministic alpaca-style stream.
fn row(i: u64) -> Row {
    let (country, capital) = COUNTRIES[(i % 8) as usize];
    let sentence = SENTENCES[(i % 5) as usize];
    let (user, answer) = match i % 3 {
        0 => (
            format!("What is the capital of {country}?"),
            format!(
                "The capital of {country} is {capital}. It is also one of the largest cities in the country."
            ),
        ),
        1 => (
            format!("Summarize the following sentence in a few words.\n\n{sentence}"),
            format!("In short: {}", sentence.to_lowercase()),
        ),
        _ => (
            format!(
                "Rewrite the sentence in the past tense, then name the capital of {country}.\n\n{sentence}"
            ),
            format!("{sentence} The capital of {country} is {capital}."),
        ),
    };
    Row {
        messages: vec![
            Message::new("user", user),
            Message::new("assistant", answer),
        ],
        system: None,
        tools: None,
        text: None,
        label: None,
        task: None,
        source_file: "synthetic.jsonl".to_owned(),
        source_row: i + 2,
    }
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let rows: Vec<Row> = (0..n).map(row).collect();
    let threads = rayon::current_num_threads();
    println!("render_rows: {n} alpaca-style rows, {threads} threads (rayon) and 1 thread");
    for (name, bos, eos) in [
        ("chatml", "", "<|im_end|>"),
        ("alpaca", "", "</s>"),
        ("llama3", "<|begin_of_text|>", "<|eot_id|>"),
        ("qwen2", "", "<|im_end|>"),
    ] {
        let config = TemplateConfig {
            bos_token: bos.to_owned(),
            eos_token: eos.to_owned(),
            ..TemplateConfig::default()
        };
        let template = ChatTemplate::new(name, builtin_template(name).unwrap(), config).unwrap();
        let options = RenderOptions::default();
        let start = Instant::now();
        let (out, stats) = render_rows(&template, &rows, &options).unwrap();
        let parallel = start.elapsed().as_secs_f64();
        assert_eq!(out.len() as u64, n);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let start = Instant::now();
        let (out1, _) = one.install(|| render_rows(&template, &rows, &options).unwrap());
        let single = start.elapsed().as_secs_f64();
        assert_eq!(out1.len() as u64, n);
        println!(
            "  {name:8} {:>9.0} rows/s ({threads} threads, {parallel:.2} s)  {:>9.0} rows/s (1 thread)  {:.1} MB rendered",
            n as f64 / parallel,
            n as f64 / single,
            stats.rendered_bytes as f64 / 1e6
        );
    }
}

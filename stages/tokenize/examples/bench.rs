//! Tokenize throughput on 100,000 alpaca-style rows, builtin and SmolLM2 (GGUF) tokenizers.
//!
//! ```sh
//! # same records as the Python peer (/work/shared/peers/synth_data.py):
//! python3 stages/tokenize/bench/hf_compare.py --write-records /tmp/alpaca100k.jsonl
//! cargo run --release -p pipe-tokenize --example bench -- \
//!     --records /tmp/alpaca100k.jsonl --gguf $SMOLLM2_GGUF [--pack] [--max-len 1024] [--keep DIR]
//! ```
//! Rows are rendered with the SmolLM2 chat template (ChatML plus its default system
//! turn) by string formatting, so the figures are tokenization (encode, masks,
//! truncation, packing, Arrow writing) without template rendering. Prints one JSON
//! line per tokenizer.

use std::path::PathBuf;
use std::time::Instant;

use pipe_model::ResolvedModel;
use pipe_tokenize::*;

const SMOLLM_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

struct Args {
    records: Option<PathBuf>,
    gguf: Option<PathBuf>,
    n: usize,
    max_len: usize,
    pack: bool,
    /// Keep each tokenizer's tokens.arrow here (to compare outputs across versions).
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        records: None,
        gguf: std::env::var_os("SMOLLM2_GGUF").map(PathBuf::from),
        n: 100_000,
        max_len: 1024,
        pack: false,
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--records" => a.records = it.next().map(PathBuf::from),
            "--gguf" => a.gguf = it.next().map(PathBuf::from),
            "--n" => a.n = it.next().unwrap().parse().unwrap(),
            "--max-len" => a.max_len = it.next().unwrap().parse().unwrap(),
            "--pack" => a.pack = true,
            "--keep" => a.keep = it.next().map(PathBuf::from),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// (instruction, input, output) records: from the peer's JSONL when given,
/// else a built-in deterministic generator of the same kind of rows.
fn records(a: &Args) -> Vec<(String, String, String)> {
    if let Some(path) = &a.records {
        let text = std::fs::read_to_string(path).expect("read records");
        return text
            .lines()
            .take(a.n)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (s("instruction"), s("input"), s("output"))
            })
            .collect();
    }
    let mut x: u64 = 42;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..a.n)
        .map(|_| match next() % 3 {
            0 => {
                let (p, q) = (next() % 9999, next() % 9999);
                (
                    "Compute the sum of the two numbers.".into(),
                    format!("{p} and {q}"),
                    format!("{p} + {q} = {}. The sum is {}.", p + q, p + q),
                )
            }
            1 => (
                "Summarize the following text in one sentence.".into(),
                "The committee met on Tuesday to discuss the new budget. Heavy rain caused delays on several train lines this morning.".into(),
                "The committee met on Tuesday to discuss the new budget.".into(),
            ),
            _ => (
                format!("Convert {} kilometers to miles.", next() % 500),
                String::new(),
                "That is about 0.62 miles per kilometer.".into(),
            ),
        })
        .collect()
}

/// ChatML rendering with SmolLM2's default system turn; span = answer + `<|im_end|>`.
fn render(
    recs: &[(String, String, String)],
    system: Option<&str>,
) -> Vec<(String, Vec<(u32, u32)>)> {
    recs.iter()
        .map(|(ins, inp, out)| {
            let user = if inp.is_empty() {
                ins.clone()
            } else {
                format!("{ins}\n\n{inp}")
            };
            let mut text = String::new();
            if let Some(s) = system {
                text.push_str(&format!("<|im_start|>system\n{s}<|im_end|>\n"));
            }
            text.push_str(&format!(
                "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
            ));
            let start = text.len() as u32;
            text.push_str(out);
            text.push_str("<|im_end|>");
            let end = text.len() as u32;
            text.push('\n');
            (text, vec![(start, end)])
        })
        .collect()
}

fn bench(
    name: &str,
    model: ResolvedModel,
    recs: &[(String, String, String)],
    system: Option<&str>,
    a: &Args,
) {
    let t0 = Instant::now();
    let tok = load_tokenizer(&model).expect("load tokenizer");
    let load_s = t0.elapsed().as_secs_f64();
    let rendered = render(recs, system);
    let dir = tempfile::tempdir().unwrap();
    let options = TokenizeOptions {
        example: ExampleOptions {
            max_len: a.max_len,
            truncate: Truncate::Response,
            train_on_prompt: false,
            train_on: TrainOn::All,
        },
        pack: a.pack,
    };
    // One warm-up pass on a slice (BPE caches, page faults), then the timed run.
    let warm = &rendered[..rendered.len().min(2000)];
    tokenize_to_file(
        &tok,
        warm.iter().map(|(t, s)| Example { text: t, spans: s }),
        &options,
        &dir.path().join("warm.arrow"),
        |_| {},
    )
    .unwrap();
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let stats = tokenize_to_file(
        &tok,
        rendered.iter().map(|(t, s)| Example { text: t, spans: s }),
        &options,
        &dir.path().join(TOKENS_FILE),
        |_| {},
    )
    .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    if let Some(keep) = &a.keep {
        std::fs::create_dir_all(keep).unwrap();
        std::fs::copy(
            dir.path().join(TOKENS_FILE),
            keep.join(format!("{}.arrow", name.replace(':', "-"))),
        )
        .unwrap();
    }
    println!(
        "{}",
        serde_json::json!({
            "tokenizer": name,
            "fast_encoder": tok.has_fast_encoder(),
            "rows": stats.rows_in,
            "threads": rayon::current_num_threads(),
            "pack": a.pack,
            "max_len": a.max_len,
            "tokenizer_load_s": load_s,
            "tokenize_s": secs,
            // CPU time of the process (all threads) for the timed run: on a shared,
            // busy machine it moves much less than the wall time does.
            "tokenize_cpu_s": cpu_s,
            "rows_per_s": stats.rows_in as f64 / secs,
            "tokens_per_s": stats.tokens as f64 / secs,
            "tokens": stats.tokens,
            "mean_tokens_per_row": stats.tokens as f64 / stats.examples.max(1) as f64,
            "trained_tokens": stats.trained_tokens,
            "sequences": stats.sequences,
            "truncated": stats.truncated,
        })
    );
}

/// User + system CPU seconds of this process so far (Linux: /proc/self/stat, in
/// clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

fn main() {
    let a = args();
    let recs = records(&a);
    bench(
        "builtin:tiny",
        ResolvedModel::Builtin {
            name: "tiny".into(),
        },
        &recs,
        None,
        &a,
    );
    match &a.gguf {
        Some(path) if path.is_file() => bench(
            "smollm2-gguf",
            ResolvedModel::Gguf { path: path.clone() },
            &recs,
            Some(SMOLLM_SYSTEM),
            &a,
        ),
        _ => eprintln!("SmolLM2 skipped: give --gguf PATH or SMOLLM2_GGUF"),
    }
}

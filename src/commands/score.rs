//! `pipe score FILE.jsonl`: corpus metrics for predictions made anywhere, with
//! the same functions the eval stage uses.

use std::path::PathBuf;

use pipe_eval::score::{ScoreOptions, fmt_metric, per_example_json, render_text, score_file};
use pipe_pipeline::error::Error;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// JSONL rows `{prediction, reference}`, `{prediction, references: [...]}` or `{prediction, label}`.
    pub file: PathBuf,
    /// Metrics, comma-separated: bleu, chrf, chrf++, rouge, exact_match, accuracy, f1.
    #[arg(long, value_delimiter = ',', default_value = "bleu,rouge")]
    pub metrics: Vec<String>,
    /// BLEU tokenizer as in sacrebleu: 13a, zh, intl, char, none.
    #[arg(long, default_value = "13a")]
    pub tokenize: String,
    /// Lowercase before BLEU and chrF (sacrebleu `-lc`).
    #[arg(long)]
    pub lowercase: bool,
    /// ROUGE tokenizer: default (rouge-score's), cjk, jieba.
    #[arg(long, default_value = "default")]
    pub rouge_tokenizer: String,
    /// Porter stemmer for ROUGE (rouge-score `use_stemmer=True`).
    #[arg(long)]
    pub stemmer: bool,
    /// The label set for accuracy/F1, comma-separated (default: the reference labels).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// How a label is found in a prediction: exact, starts_with, contains.
    #[arg(long, default_value = "contains")]
    pub label_match: String,
    /// Also print one line of scores per row.
    #[arg(long)]
    pub per_example: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A command-line word as the serde enum it names (`--tokenize zh`).
fn choice<T: serde::de::DeserializeOwned>(flag: &str, word: &str) -> Result<T, Error> {
    serde_json::from_value(Value::String(word.to_owned())).map_err(|e| {
        Error::usage(format!("--{flag} {word}: {e}")).with_hint(format!(
            "see `pipe score --help` for the values of --{flag}"
        ))
    })
}

impl ScoreArgs {
    fn options(&self) -> Result<ScoreOptions, Error> {
        let opts = ScoreOptions {
            metrics: self.metrics.iter().map(|m| m.trim().to_owned()).collect(),
            bleu_tokenize: choice("tokenize", &self.tokenize)?,
            lowercase: self.lowercase,
            rouge_tokenizer: choice("rouge-tokenizer", &self.rouge_tokenizer)?,
            stemmer: self.stemmer,
            label_match: choice("label-match", &self.label_match)?,
            labels: self.labels.clone(),
        };
        opts.validate()
            .map_err(|e| Error::usage(e.to_string()).with_hint("see `pipe score --help`"))?;
        Ok(opts)
    }
}

pub fn run(args: &ScoreArgs) -> Result<i32, Error> {
    let opts = args.options()?;
    if !args.file.is_file() {
        return Err(
            Error::usage(format!("{} does not exist", args.file.display()))
                .with_hint("pass a JSONL file of {\"prediction\": ..., \"reference\": ...} rows"),
        );
    }
    let scores = score_file(&args.file, &opts).map_err(|e| Error::usage(e.to_string()))?;
    if args.json {
        let mut out = json!({
            "file": args.file.display().to_string(),
            "rows": scores.per_example.len(),
            "scores": scores.corpus,
            "settings": opts.settings(),
        });
        if let Some(c) = &scores.classification {
            out["classification"] = serde_json::to_value(c).unwrap_or(Value::Null);
        }
        if args.per_example {
            out["per_example"] = Value::Array(per_example_json(&scores));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializes")
        );
        return Ok(0);
    }
    if args.per_example {
        for (i, row) in scores.per_example.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .map(|(k, v)| format!("{k}={}", fmt_metric(k, *v)))
                .collect();
            println!("{}\t{}", i + 1, cells.join(" "));
        }
        println!();
    }
    print!("{}", render_text(&scores, &opts));
    if let Some(c) = &scores.classification {
        println!("# labels: {}", c.labels.join(", "));
    }
    Ok(0)
}

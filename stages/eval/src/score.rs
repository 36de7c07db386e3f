//! Scoring a set of predictions with several metrics at once: what the eval
//! stage and `pipe score FILE.jsonl` both call.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::EvalError;
use crate::metrics::{
    Bleu, BleuConfig, BleuTokenize, Chrf, ChrfConfig, ClassificationReport, LabelMatch, Rouge,
    RougeTokenizer, RougeType, classification_report, exact_match, extract_label, rouge,
};

/// Metric names a user may ask for, and what each adds to the corpus scores.
pub const KNOWN_METRICS: &[(&str, &str)] = &[
    (
        "bleu",
        "corpus BLEU, 0..100 (sacrebleu); per example: sentence BLEU with effective order",
    ),
    ("chrf", "chrF2, 0..100 (sacrebleu)"),
    (
        "chrf++",
        "chrF2++ (word bigrams), 0..100 (sacrebleu); reported as `chrfpp`",
    ),
    (
        "rouge",
        "rouge1, rouge2, rougeL, rougeLsum F-measure, 0..1, mean over examples (rouge-score)",
    ),
    ("exact_match", "normalized exact match, 0..1"),
    (
        "accuracy",
        "label accuracy, 0..1 (labels extracted from the output)",
    ),
    (
        "f1",
        "f1/precision/recall macro, micro and weighted, 0..1 (scikit-learn, zero_division=0)",
    ),
];

/// Settings shared by every metric of one scoring run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreOptions {
    /// Metrics to compute: bleu, chrf, chrf++, rouge, exact_match, accuracy, f1.
    pub metrics: Vec<String>,
    /// sacrebleu tokenizer for BLEU: 13a (default), zh, intl, char, none.
    #[serde(default)]
    pub bleu_tokenize: BleuTokenize,
    /// Lowercase before BLEU/chrF (sacrebleu `-lc`).
    #[serde(default)]
    pub lowercase: bool,
    /// ROUGE tokenizer: default (rouge-score), cjk (each CJK character a token) or jieba (Chinese words).
    #[serde(default)]
    pub rouge_tokenizer: RougeTokenizer,
    /// Porter stemmer for ROUGE (rouge-score `use_stemmer=True`).
    #[serde(default)]
    pub stemmer: bool,
    /// How a class label is found in generated text: exact, starts_with or contains.
    #[serde(default)]
    pub label_match: LabelMatch,
    /// The label set; default: the distinct reference labels.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            metrics: vec!["bleu".into(), "rouge".into()],
            bleu_tokenize: BleuTokenize::T13a,
            lowercase: false,
            rouge_tokenizer: RougeTokenizer::Default,
            stemmer: false,
            label_match: LabelMatch::Contains,
            labels: None,
        }
    }
}

impl ScoreOptions {
    /// Checks metric names (with the list of known ones in the error).
    pub fn validate(&self) -> Result<(), EvalError> {
        for m in &self.metrics {
            if !KNOWN_METRICS.iter().any(|(k, _)| k == m) {
                return Err(EvalError::UnknownMetric {
                    name: m.clone(),
                    known: KNOWN_METRICS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        if !Rouge::supports(self.rouge_tokenizer) {
            return Err(EvalError::Invalid(
                "ROUGE tokenizer `jieba` is not compiled in (pipe-eval feature `jieba`)".into(),
            ));
        }
        Ok(())
    }

    fn wants(&self, m: &str) -> bool {
        self.metrics.iter().any(|x| x == m)
    }

    fn wants_labels(&self) -> bool {
        self.wants("accuracy") || self.wants("f1")
    }

    /// What produced each number, for metrics.json and the report.
    pub fn settings(&self) -> Value {
        let bleu = BleuConfig {
            tokenize: self.bleu_tokenize,
            lowercase: self.lowercase,
            ..BleuConfig::default()
        };
        json!({
            "bleu": {"implementation": "sacrebleu 2.x", "signature": bleu.signature("1"),
                     "per_example": "sentence BLEU, effective order, exp smoothing"},
            "chrf": {"implementation": "sacrebleu 2.x", "char_order": 6, "beta": 2, "lowercase": self.lowercase},
            "rouge": {"implementation": "rouge-score", "tokenizer": self.rouge_tokenizer.name(),
                      "stemmer": self.stemmer, "aggregate": "mean of per-example F-measure"},
            "labels": {"match": self.label_match, "average": "scikit-learn, labels sorted, zero_division=0"},
        })
    }
}

/// Corpus scores, per-example scores and (for labels) the classification report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub corpus: BTreeMap<String, f64>,
    pub per_example: Vec<BTreeMap<String, f64>>,
    pub classification: Option<ClassificationReport>,
    /// The label extracted from each prediction (None: no label found).
    pub predicted_labels: Vec<Option<String>>,
}

/// Scores `predictions` against `references` (one or more per example);
/// `labels`: the true class of each example for accuracy/F1 (default: the
/// first reference).
pub fn score(
    predictions: &[String],
    references: &[Vec<String>],
    labels: Option<&[String]>,
    opts: &ScoreOptions,
) -> Result<Scores, EvalError> {
    opts.validate()?;
    if predictions.len() != references.len() {
        return Err(EvalError::Invalid(format!(
            "{} predictions but {} reference lists",
            predictions.len(),
            references.len()
        )));
    }
    if let Some(i) = references.iter().position(Vec::is_empty) {
        return Err(EvalError::Invalid(format!(
            "example {} has no reference",
            i + 1
        )));
    }
    let n = predictions.len();
    let mut out = Scores {
        per_example: vec![BTreeMap::new(); n],
        ..Scores::default()
    };
    if opts.wants("bleu") {
        let cfg = BleuConfig {
            tokenize: opts.bleu_tokenize,
            lowercase: opts.lowercase,
            ..BleuConfig::default()
        };
        let mut corpus = Bleu::new(cfg);
        let mut total = crate::metrics::BleuStats::default();
        let sent_cfg = BleuConfig {
            effective_order: true,
            ..cfg
        };
        for (i, (p, r)) in predictions.iter().zip(references).enumerate() {
            let s = corpus.segment_stats(p, r);
            total.add(&s);
            out.per_example[i].insert(
                "bleu".into(),
                crate::metrics::bleu::compute_bleu(&s, &sent_cfg).score,
            );
        }
        out.corpus.insert(
            "bleu".into(),
            crate::metrics::bleu::compute_bleu(&total, &cfg).score,
        );
    }
    for (name, key, word_order) in [("chrf", "chrf", 0), ("chrf++", "chrfpp", 2)] {
        if !opts.wants(name) {
            continue;
        }
        let cfg = ChrfConfig {
            word_order,
            lowercase: opts.lowercase,
            ..ChrfConfig::default()
        };
        let mut c = Chrf::new(cfg);
        let mut total = crate::metrics::chrf::ChrfStats::default();
        for (i, (p, r)) in predictions.iter().zip(references).enumerate() {
            let s = c.segment_stats(p, r);
            if !s.0.is_empty() {
                out.per_example[i]
                    .insert(key.into(), crate::metrics::chrf::chrf_f_score(&s.0, &cfg));
            }
            total.add(&s);
        }
        let v = if total.0.is_empty() {
            0.0
        } else {
            crate::metrics::chrf::chrf_f_score(&total.0, &cfg)
        };
        out.corpus.insert(key.into(), v);
    }
    if opts.wants("rouge") {
        let mut r = Rouge::new(opts.rouge_tokenizer, opts.stemmer);
        let mut all = Vec::with_capacity(n);
        for (i, (p, refs)) in predictions.iter().zip(references).enumerate() {
            let s = if refs.len() == 1 {
                r.score(&refs[0], p)
            } else {
                r.score_multi(refs, p)
            };
            for t in RougeType::ALL {
                out.per_example[i].insert(t.name().into(), s.get(t).fmeasure);
            }
            all.push(s);
        }
        let mean = rouge::mean_scores(&all);
        for t in RougeType::ALL {
            out.corpus.insert(t.name().into(), mean.get(t).fmeasure);
        }
    }
    if opts.wants("exact_match") {
        let mut sum = 0.0;
        for (i, (p, refs)) in predictions.iter().zip(references).enumerate() {
            let em = refs.iter().map(|r| exact_match(p, r)).fold(0.0, f64::max);
            sum += em;
            out.per_example[i].insert("exact_match".into(), em);
        }
        out.corpus.insert(
            "exact_match".into(),
            if n == 0 { 0.0 } else { sum / n as f64 },
        );
    }
    if opts.wants_labels() {
        let y_true: Vec<String> = match labels {
            Some(l) => l.to_vec(),
            None => references.iter().map(|r| r[0].clone()).collect(),
        };
        let mut label_set = opts.labels.clone().unwrap_or_else(|| y_true.clone());
        label_set.sort();
        label_set.dedup();
        let mut y_pred = Vec::with_capacity(n);
        for (i, p) in predictions.iter().enumerate() {
            let l = extract_label(p, &label_set, opts.label_match).map(str::to_owned);
            // An output naming no label is a miss for its true class and no class's prediction.
            y_pred.push(l.clone().unwrap_or_default());
            out.per_example[i].insert(
                "correct".into(),
                if l.as_deref() == Some(y_true[i].as_str()) {
                    1.0
                } else {
                    0.0
                },
            );
            out.predicted_labels.push(l);
        }
        let rep = classification_report(&y_true, &y_pred, Some(&label_set));
        if opts.wants("accuracy") {
            out.corpus.insert("accuracy".into(), rep.accuracy);
        }
        if opts.wants("f1") {
            for (k, a) in [
                ("macro", rep.macro_avg),
                ("micro", rep.micro_avg),
                ("weighted", rep.weighted_avg),
            ] {
                out.corpus.insert(format!("f1_{k}"), a.f1);
                out.corpus.insert(format!("precision_{k}"), a.precision);
                out.corpus.insert(format!("recall_{k}"), a.recall);
            }
        }
        out.classification = Some(rep);
    }
    Ok(out)
}

/// One row of a predictions file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    pub prediction: String,
    pub references: Vec<String>,
    pub label: Option<String>,
}

/// Reads JSONL rows `{prediction, reference}`, `{prediction, references: [...]}`
/// or `{prediction, label}` (other keys are ignored).
pub fn read_predictions(path: &Path) -> Result<Vec<ScoreRow>, EvalError> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| EvalError::io(path, e))?;
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| EvalError::Line {
            path: path.to_owned(),
            line: lineno,
            message,
        };
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let text = |key: &str| -> Result<Option<String>, EvalError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(x)) => Ok(Some(x.to_string())),
                Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                Some(_) => Err(bad(format!("`{key}` must be a string"))),
            }
        };
        let prediction = text("prediction")?.ok_or_else(|| {
            bad(
                "missing `prediction` (rows need prediction plus reference, references or label)"
                    .into(),
            )
        })?;
        let label = text("label")?;
        let mut references = Vec::new();
        if let Some(r) = text("reference")? {
            references.push(r);
        }
        match v.get("references") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for r in a {
                    references.push(
                        r.as_str()
                            .ok_or_else(|| bad("`references` must be an array of strings".into()))?
                            .to_owned(),
                    );
                }
            }
            Some(_) => return Err(bad("`references` must be an array of strings".into())),
        }
        if references.is_empty() {
            match &label {
                Some(l) => references.push(l.clone()),
                None => return Err(bad("no `reference`, `references` or `label`".into())),
            }
        }
        rows.push(ScoreRow {
            prediction,
            references,
            label,
        });
    }
    Ok(rows)
}

/// `pipe score FILE.jsonl`: reads the file and scores it.
pub fn score_file(path: &Path, opts: &ScoreOptions) -> Result<Scores, EvalError> {
    let rows = read_predictions(path)?;
    let preds: Vec<String> = rows.iter().map(|r| r.prediction.clone()).collect();
    let refs: Vec<Vec<String>> = rows.iter().map(|r| r.references.clone()).collect();
    let labels: Option<Vec<String>> = if rows.iter().all(|r| r.label.is_some()) {
        Some(
            rows.iter()
                .map(|r| r.label.clone().unwrap_or_default())
                .collect(),
        )
    } else {
        None
    };
    score(&preds, &refs, labels.as_deref(), opts)
}

/// Human-readable corpus scores: one `name value` line each, sacrebleu-style.
pub fn render_text(scores: &Scores, opts: &ScoreOptions) -> String {
    let mut s = String::new();
    for (k, v) in &scores.corpus {
        s.push_str(&format!("{k:<18} {}\n", fmt_metric(k, *v)));
    }
    if scores.corpus.contains_key("bleu") {
        let cfg = BleuConfig {
            tokenize: opts.bleu_tokenize,
            lowercase: opts.lowercase,
            ..BleuConfig::default()
        };
        s.push_str(&format!("# bleu: {}\n", cfg.signature("1")));
    }
    if scores.corpus.contains_key("rougeL") {
        s.push_str(&format!(
            "# rouge: tokenizer {}, stemmer {}\n",
            opts.rouge_tokenizer.name(),
            if opts.stemmer { "on" } else { "off" }
        ));
    }
    s
}

/// Metrics on a 0..100 scale print with 2 decimals, 0..1 ones with 4.
pub fn fmt_metric(name: &str, v: f64) -> String {
    if matches!(name, "bleu" | "chrf" | "chrfpp") {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// `--per-example --json` lines: the row's scores, in file order.
pub fn per_example_json(scores: &Scores) -> Vec<Value> {
    scores
        .per_example
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut v = json!({"index": i});
            for (k, x) in m {
                v[k] = json!(x);
            }
            if let Some(Some(l)) = scores.predicted_labels.get(i) {
                v["predicted_label"] = json!(l);
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_rows_and_scores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.jsonl");
        std::fs::write(
            &p,
            concat!(
                "{\"prediction\": \"The answer is yes.\", \"label\": \"yes\"}\n",
                "\n",
                "{\"prediction\": \"no\", \"label\": \"yes\"}\n",
                "{\"prediction\": \"No, it is not.\", \"label\": \"no\"}\n",
            ),
        )
        .unwrap();
        let opts = ScoreOptions {
            metrics: vec!["accuracy".into(), "f1".into(), "exact_match".into()],
            ..ScoreOptions::default()
        };
        let s = score_file(&p, &opts).unwrap();
        assert!((s.corpus["accuracy"] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.per_example.len(), 3);
        assert_eq!(s.predicted_labels[2].as_deref(), Some("no"));
        assert!((s.corpus["exact_match"] - 0.0).abs() < 1e-12);
        let text = render_text(&s, &opts);
        assert!(text.contains("accuracy"), "{text}");

        std::fs::write(&p, "{\"prediction\": \"x\"}\n").unwrap();
        let e = score_file(&p, &opts).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("reference"), "{e}");

        let bad = ScoreOptions {
            metrics: vec!["blue".into()],
            ..ScoreOptions::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("bleu"));
    }

    #[test]
    fn text_metrics_multi_reference() {
        let preds = vec![
            "the cat sat on the mat".to_string(),
            "hello there".to_string(),
        ];
        let refs = vec![
            vec![
                "the cat sat on a mat".to_string(),
                "a cat sat on the mat".to_string(),
            ],
            vec!["hello there".to_string()],
        ];
        let opts = ScoreOptions {
            metrics: vec![
                "bleu".into(),
                "chrf".into(),
                "chrf++".into(),
                "rouge".into(),
            ],
            ..ScoreOptions::default()
        };
        let s = score(&preds, &refs, None, &opts).unwrap();
        for k in [
            "bleu",
            "chrf",
            "chrfpp",
            "rouge1",
            "rouge2",
            "rougeL",
            "rougeLsum",
        ] {
            assert!(s.corpus[k] > 0.0, "{k}");
        }
        assert!((s.per_example[1]["rougeL"] - 1.0).abs() < 1e-12);
        assert_eq!(per_example_json(&s).len(), 2);
    }
}

//! General-ability regression (issue #9): did fine-tuning make the model forget?
//!
//! A multiple-choice set (a local CSV or JSONL of questions, options and an
//! answer letter, e.g. DISC-Law-Eval's single-choice questions or a general
//! knowledge set) is scored the way MMLU/C-Eval harnesses do: a plain-text
//! prompt with k solved examples, then the question and `Answer:`; the
//! prediction is the letter whose token is most probable next. No generation.
//! Base and adapter are compared on the same questions, with a 95% interval
//! on the paired difference, so a gate such as `general_acc: ">= base - 0.02"`
//! can fail a run that forgot too much.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::generate::LogitsModel;

/// `general: {path: mcq.csv, question: input, answer: output, options: [A, B, C, D], shots: 3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneralParams {
    /// CSV (with a header) or JSONL file of questions, relative to the recipe.
    pub path: PathBuf,
    /// Column of the question text.
    #[serde(default = "GeneralParams::default_question")]
    pub question: String,
    /// Columns of the options; each column name is the option's letter.
    #[serde(default = "GeneralParams::default_options")]
    pub options: Vec<String>,
    /// Column of the correct letter.
    #[serde(default = "GeneralParams::default_answer")]
    pub answer: String,
    /// Solved examples before each question: the file's first `shots` questions (not scored).
    #[serde(default = "GeneralParams::default_shots")]
    pub shots: usize,
    /// Score at most this many questions (after the shots).
    #[serde(default)]
    pub max_questions: Option<usize>,
}

impl GeneralParams {
    fn default_question() -> String {
        "question".into()
    }
    fn default_options() -> Vec<String> {
        ["A", "B", "C", "D"].map(String::from).to_vec()
    }
    fn default_answer() -> String {
        "answer".into()
    }
    fn default_shots() -> usize {
        3
    }
}

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq)]
pub struct Mcq {
    pub question: String,
    /// (letter, text)
    pub options: Vec<(String, String)>,
    pub answer: String,
}

/// Reads questions from a CSV (header row) or JSONL file; errors name the line.
pub fn read_mcq(path: &Path, p: &GeneralParams) -> Result<Vec<Mcq>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let at = |line: usize, message: String| EvalError::Line {
        path: path.to_owned(),
        line,
        message,
    };
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    // (line, column -> value) per record.
    let mut records: Vec<(usize, BTreeMap<String, String>)> = Vec::new();
    if jsonl {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .map_err(|e| at(i + 1, format!("not a JSON object: {e}")))?;
            let fields = v
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    serde_json::Value::Null => None,
                    other => Some((k, other.to_string())),
                })
                .collect();
            records.push((i + 1, fields));
        }
    } else {
        let rows = crate::review::parse_csv(&text).map_err(|(l, m)| at(l, m))?;
        let Some(((_, header), rest)) = rows.split_first() else {
            return Ok(Vec::new());
        };
        for (line, r) in rest {
            if r.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            let fields = header
                .iter()
                .map(|h| h.trim().to_owned())
                .zip(r.iter().cloned())
                .collect();
            records.push((*line, fields));
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for (line, fields) in records {
        let field = |k: &str| {
            fields
                .get(k)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| at(line, format!("column `{k}` is missing or empty")))
        };
        let options = p
            .options
            .iter()
            .map(|o| Ok((o.clone(), field(o)?)))
            .collect::<Result<Vec<_>, EvalError>>()?;
        let answer = field(&p.answer)?.to_uppercase();
        if !p.options.iter().any(|o| o.eq_ignore_ascii_case(&answer)) {
            return Err(at(
                line,
                format!(
                    "column `{}`: `{answer}` is not one of the options {}",
                    p.answer,
                    p.options.join("/")
                ),
            ));
        }
        out.push(Mcq {
            question: field(&p.question)?,
            options,
            answer,
        });
    }
    Ok(out)
}

fn block(q: &Mcq) -> String {
    let mut s = q.question.clone();
    for (l, t) in &q.options {
        s.push_str(&format!("\n{l}. {t}"));
    }
    s.push_str("\nAnswer:");
    s
}

/// The plain-text prompt: an instruction line, solved `shots`, then `q` up to `Answer:`.
pub fn mcq_prompt(shots: &[Mcq], q: &Mcq) -> String {
    let mut s = String::from("The following are multiple choice questions (with answers).\n\n");
    for x in shots {
        s.push_str(&block(x));
        s.push_str(&format!(" {}\n\n", x.answer));
    }
    s.push_str(&block(q));
    s
}

/// Letter picked per question (index into the question's options).
pub fn pick_letters(
    model: &mut dyn LogitsModel,
    encode: &dyn Fn(&str) -> Result<Vec<u32>, EvalError>,
    shots: &[Mcq],
    questions: &[Mcq],
    batch_size: usize,
    on_done: &mut dyn FnMut(u64),
) -> Result<Vec<usize>, EvalError> {
    let model_err = EvalError::Model;
    let mut out = Vec::with_capacity(questions.len());
    // The letters as continuations (" A"): the tokens they all start with go
    // into the prompt, the rest must be one token each, compared at one position.
    for batch in questions.chunks(batch_size.max(1)) {
        let mut prompts = Vec::new();
        let mut letter_ids = Vec::new();
        for q in batch {
            let mut prompt = encode(&mcq_prompt(shots, q))?;
            let conts: Vec<Vec<u32>> = q
                .options
                .iter()
                .map(|(l, _)| encode(&format!(" {l}")))
                .collect::<Result<_, _>>()?;
            let common = (0..)
                .take_while(|&i| {
                    conts
                        .iter()
                        .all(|c| c.len() > i && c.get(i) == conts[0].get(i))
                })
                .count();
            prompt.extend_from_slice(&conts[0][..common]);
            let rest: Vec<Vec<u32>> = conts.iter().map(|c| c[common..].to_vec()).collect();
            letter_ids.push(rest);
            prompts.push(prompt);
        }
        if letter_ids.iter().flatten().all(|r| r.len() == 1) {
            let logits = model.start(&prompts).map_err(model_err)?;
            for (l, ids) in logits.iter().zip(&letter_ids) {
                // The most probable letter = the largest logit (softmax is monotone); first on ties.
                let mut best = 0;
                for (k, id) in ids.iter().enumerate() {
                    if l[id[0] as usize] > l[ids[best][0] as usize] {
                        best = k;
                    }
                }
                out.push(best);
            }
        } else {
            for (p, ids) in prompts.iter().zip(&letter_ids) {
                out.push(crate::generate::likelihood_label(model, p, ids).map_err(model_err)?);
            }
        }
        on_done(batch.len() as u64);
    }
    Ok(out)
}

/// Accuracy of one system with its 95% Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneralScore {
    pub system: String,
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: usize,
}

/// The general-ability check of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneralReport {
    pub file: String,
    pub shots: usize,
    pub scores: Vec<GeneralScore>,
    /// Last system minus the first (adapter - base) on the same questions, with a
    /// 95% interval (normal approximation of the paired difference).
    pub difference: Option<(f64, f64, f64)>,
}

/// 95% Wilson score interval of `k` successes in `n`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let (z, n, p) = (1.959_963_984_540_054_f64, n as f64, k as f64 / n as f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (centre - half, centre + half)
}

/// Mean paired difference `b - a` of 0/1 outcomes and its 95% interval.
pub fn paired_difference(a: &[bool], b: &[bool]) -> (f64, f64, f64) {
    let n = a.len().min(b.len());
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(u8::from(*y)) - f64::from(u8::from(*x)))
        .collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let half = 1.959_963_984_540_054 * (var / n as f64).sqrt();
    (mean, mean - half, mean + half)
}

/// Builds the report from each system's per-question correctness.
pub fn general_report(file: &str, shots: usize, results: &[(String, Vec<bool>)]) -> GeneralReport {
    let scores = results
        .iter()
        .map(|(s, c)| {
            let k = c.iter().filter(|x| **x).count();
            let (lo, hi) = wilson(k, c.len());
            GeneralScore {
                system: s.clone(),
                accuracy: if c.is_empty() {
                    0.0
                } else {
                    k as f64 / c.len() as f64
                },
                ci_low: lo,
                ci_high: hi,
                n: c.len(),
            }
        })
        .collect();
    let difference = match results {
        [first, .., last] => Some(paired_difference(&first.1, &last.1)),
        _ => None,
    };
    GeneralReport {
        file: file.to_owned(),
        shots,
        scores,
        difference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-level "tokenizer" and a model whose next-token logits are set per
    /// prompt by the question's last character before "Answer:".
    struct Table;

    impl LogitsModel for Table {
        fn start(&mut self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, String> {
            Ok(prompts
                .iter()
                .map(|p| {
                    // The prompt ends "?\nA. x\nB. y\nC. z\nAnswer: " -> find the question id digit.
                    let text = String::from_utf8(p.iter().map(|&b| b as u8).collect()).unwrap();
                    let last_q = text.rsplit("\n\n").next().unwrap();
                    let id = last_q.chars().find(|c| c.is_ascii_digit()).unwrap();
                    let mut l = vec![0.0f32; 256];
                    // q1: B highest; q2: A highest; q3: C highest (ties -> first).
                    let (a, b, c) = match id {
                        '1' => (0.1, 2.0, 1.9),
                        '2' => (3.0, -1.0, 0.0),
                        _ => (0.5, 0.5, 0.7),
                    };
                    l[b'A' as usize] = a;
                    l[b'B' as usize] = b;
                    l[b'C' as usize] = c;
                    l
                })
                .collect())
        }
        fn step(&mut self, _: &[u32]) -> Result<Vec<Vec<f32>>, String> {
            unreachable!()
        }
        fn token_logprobs(&mut self, _: &[u32]) -> Result<Vec<f32>, String> {
            unreachable!()
        }
    }

    fn q(id: u8, answer: &str) -> Mcq {
        Mcq {
            question: format!("Question {id}?"),
            options: ["A", "B", "C"]
                .iter()
                .map(|l| (l.to_string(), format!("option {l}")))
                .collect(),
            answer: answer.into(),
        }
    }

    #[test]
    fn letter_scoring_by_hand() {
        let encode = |s: &str| Ok(s.bytes().map(u32::from).collect::<Vec<u32>>());
        let shots = vec![q(0, "A")];
        let qs = vec![q(1, "B"), q(2, "C"), q(3, "C")];
        let prompt = mcq_prompt(&shots, &qs[0]);
        assert!(
            prompt.contains("Question 0?\nA. option A\nB. option B\nC. option C\nAnswer: A\n\n")
        );
        assert!(prompt.ends_with("Question 1?\nA. option A\nB. option B\nC. option C\nAnswer:"));
        // " A" is two bytes; the shared space goes into the prompt, the letters are compared.
        let mut done = 0;
        let picks = pick_letters(&mut Table, &encode, &shots, &qs, 2, &mut |n| done += n).unwrap();
        assert_eq!(picks, [1, 0, 2]);
        assert_eq!(done, 3);
        let correct: Vec<bool> = picks
            .iter()
            .zip(&qs)
            .map(|(&k, q)| q.options[k].0 == q.answer)
            .collect();
        assert_eq!(correct, [true, false, true]);
        let base = vec![false, false, true];
        let r = general_report(
            "mcq.csv",
            1,
            &[("base".into(), base), ("adapter".into(), correct)],
        );
        assert!((r.scores[1].accuracy - 2.0 / 3.0).abs() < 1e-12);
        // Differences 1, 0, 0: mean 1/3, sample variance 1/3, half-width 1.96 * sqrt(1/9).
        let (d, lo, hi) = r.difference.unwrap();
        assert!((d - 1.0 / 3.0).abs() < 1e-12);
        assert!(
            (hi - d - 1.959_963_984_540_054 / 3.0).abs() < 1e-12
                && (d - lo - (hi - d)).abs() < 1e-12
        );
        // Wilson for 2/3, z = 1.96: centre (2/3 + z²/6) / (1 + z²/3) = 0.57308,
        // half-width z / (1 + z²/3) * sqrt(2/27 + z²/36) = 0.36543.
        let (lo, hi) = wilson(2, 3);
        assert!(
            (lo - 0.207_66).abs() < 1e-5 && (hi - 0.938_51).abs() < 1e-5,
            "{lo} {hi}"
        );
    }

    #[test]
    fn reads_csv_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mcq.csv");
        std::fs::write(
            &p,
            "input,output,A,B,C,D\n\"Q1, with comma\",b,a1,b1,c1,d1\nQ2,E,a,b,c,d\n",
        )
        .unwrap();
        let params = GeneralParams {
            path: p.clone(),
            question: "input".into(),
            options: GeneralParams::default_options(),
            answer: "output".into(),
            shots: 0,
            max_questions: None,
        };
        let e = read_mcq(&p, &params).unwrap_err().to_string();
        assert!(
            e.contains("line 3: column `output`: `E` is not one of the options"),
            "{e}"
        );
        std::fs::write(
            &p,
            "input,output,A,B,C,D\n\"Q1, with comma\",b,a1,b1,c1,d1\n",
        )
        .unwrap();
        let qs = read_mcq(&p, &params).unwrap();
        assert_eq!(qs[0].question, "Q1, with comma");
        assert_eq!(qs[0].answer, "B");
        assert_eq!(qs[0].options[3], ("D".to_string(), "d1".to_string()));
        let j = dir.path().join("mcq.jsonl");
        std::fs::write(&j, "{\"input\": \"Q\", \"output\": \"A\", \"A\": \"x\", \"B\": \"y\", \"C\": 3, \"D\": \"z\"}\n").unwrap();
        assert_eq!(read_mcq(&j, &params).unwrap()[0].options[2].1, "3");
    }
}

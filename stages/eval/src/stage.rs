//! The `eval` stage: generate with the base model and the adapter(s) on the
//! rendered test table, score, gate and write the report folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::EvalError;
use crate::gates::{GateOutcome, parse_gates};
use crate::general::{GeneralParams, general_report, pick_letters, read_mcq};
use crate::generate::{GenOptions, LogitsModel, Sampling, continuation_logprob, generate};
use crate::metrics::{BleuTokenize, LabelMatch, RougeTokenizer, classification_report};
use crate::prompted::{PromptedParams, Shot, few_shot_prompt, pick_all_shots};
use crate::report::{Column, EvalReport, ExampleRecord};
use crate::score::{KNOWN_METRICS, ScoreOptions, score};
use crate::tasks::{score_by_task, task_of};

/// Bump when the report bytes would change for the same inputs.
pub const EVAL_CODE_VERSION: u32 = 4;

/// Params of the `eval` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    /// Base model (builtin:tiny, a Hugging Face folder, a .gguf file); defaults to the recipe's `model:`.
    #[serde(default)]
    pub model: Option<String>,
    /// Metrics: bleu, chrf, chrf++, rouge, exact_match, accuracy, f1 (on generated text),
    /// likelihood (label with the highest log-probability, no generation), loss (eval loss and perplexity).
    #[serde(default = "EvalParams::default_metrics")]
    pub metrics: Vec<String>,
    /// Also evaluate the base model (no adapter) on the same prompts: every metric gets a base column and a delta.
    #[serde(default)]
    pub compare_base: bool,
    /// The prompt-only baseline: the base model with `shots` examples of the training
    /// split as earlier turns (`{shots: 3, from: chat.train}`); adds a `prompted` column.
    #[serde(default)]
    pub compare_prompted: Option<PromptedParams>,
    /// General-ability regression: a multiple-choice file scored by answer-letter
    /// likelihood for base and adapter (`general_acc`; gate `">= base - 0.02"`).
    #[serde(default)]
    pub general: Option<GeneralParams>,
    /// Other train stages (also listed in `from`) to show as extra columns.
    #[serde(default)]
    pub compare: Vec<String>,
    /// Most tokens generated per example.
    #[serde(default = "EvalParams::default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Prompts decoded together (left-padded).
    #[serde(default = "EvalParams::default_batch_size")]
    pub batch_size: usize,
    /// 0 = greedy decoding (default); otherwise the sampling temperature.
    #[serde(default)]
    pub temperature: f32,
    /// Sample among the k most likely tokens (0 = all).
    #[serde(default)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1.0 = off).
    #[serde(default = "EvalParams::default_top_p")]
    pub top_p: f32,
    /// Strings that end generation (besides EOS and end-of-turn tokens).
    #[serde(default)]
    pub stop: Vec<String>,
    /// CI gates, metric -> condition: `rougeL: ">= 0.30"`, `f1_macro: ">= base + 0.05"`.
    #[serde(default)]
    pub gates: BTreeMap<String, String>,
    /// ROUGE tokenizer: default (rouge-score's; drops non-Latin text), cjk or jieba.
    #[serde(default)]
    pub rouge_tokenizer: RougeTokenizer,
    /// Porter stemmer for ROUGE.
    #[serde(default)]
    pub stemmer: bool,
    /// BLEU tokenizer (sacrebleu): 13a, zh, intl, char, none.
    #[serde(default)]
    pub bleu_tokenize: BleuTokenize,
    /// Lowercase before BLEU and chrF.
    #[serde(default)]
    pub lowercase: bool,
    /// How a label is found in generated text: exact, starts_with, contains.
    #[serde(default)]
    pub label_match: LabelMatch,
    /// The class labels; default: the distinct labels of the test rows (of each task,
    /// when rows carry a task).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Label set of a task, task -> labels (`abercrombie: [generic, descriptive, ...]`);
    /// tasks not listed use `labels`, else their distinct test labels.
    #[serde(default)]
    pub task_labels: BTreeMap<String, Vec<String>>,
    /// Evaluate N test rows: a seeded choice spread over the tasks in proportion to
    /// their size (each task gets at least one while N allows), in table order.
    #[serde(default)]
    pub max_examples: Option<usize>,
    /// Sampling seed; defaults to the recipe's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// CPU threads; defaults to what the engine gives the stage.
    #[serde(default)]
    pub threads: Option<usize>,
}

impl EvalParams {
    fn default_metrics() -> Vec<String> {
        vec!["rouge".into(), "bleu".into()]
    }
    fn default_max_new_tokens() -> usize {
        128
    }
    fn default_batch_size() -> usize {
        8
    }
    fn default_top_p() -> f32 {
        1.0
    }

    /// Checks names and values that do not need the inputs.
    pub fn validate(&self) -> Result<(), EvalError> {
        for m in &self.metrics {
            if m != "likelihood" && m != "loss" && !KNOWN_METRICS.iter().any(|(k, _)| k == m) {
                return Err(EvalError::UnknownMetric {
                    name: m.clone(),
                    known: KNOWN_METRICS
                        .iter()
                        .map(|(k, _)| *k)
                        .chain(["likelihood", "loss"])
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        self.score_options().validate()?;
        for g in parse_gates(&self.gates)? {
            let message = match g.reference() {
                Some("base") if !self.compare_base => "`base` needs `compare_base: true`".into(),
                Some("prompted") if self.compare_prompted.is_none() => {
                    "`prompted` needs `compare_prompted: {shots: 3, from: chat.train}`".into()
                }
                Some(s)
                    if !["base", "prompted"].contains(&s)
                        && !self.compare.iter().any(|c| c == s) =>
                {
                    format!("`{s}` is not a system: use `base`, `prompted` or a stage in `compare`")
                }
                _ => continue,
            };
            return Err(EvalError::Gate {
                metric: g.metric.clone(),
                condition: g.condition.clone(),
                message,
            });
        }
        if self.batch_size == 0 {
            return Err(EvalError::Invalid("`batch_size` must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p == 0.0 {
            return Err(EvalError::Invalid("`top_p` must be in (0, 1]".into()));
        }
        Ok(())
    }

    pub fn score_options(&self) -> ScoreOptions {
        ScoreOptions {
            metrics: self
                .metrics
                .iter()
                .filter(|m| *m != "likelihood" && *m != "loss")
                .cloned()
                .collect(),
            bleu_tokenize: self.bleu_tokenize,
            lowercase: self.lowercase,
            rouge_tokenizer: self.rouge_tokenizer,
            stemmer: self.stemmer,
            label_match: self.label_match,
            labels: self.labels.clone(),
        }
    }

    fn wants(&self, m: &str) -> bool {
        self.metrics.iter().any(|x| x == m)
    }

    /// Label sets given in the params, per task: `task_labels`, else `labels` for
    /// every task that has labelled rows.
    fn configured_label_sets(
        &self,
        labels: &[Option<String>],
        tasks: &[Option<String>],
    ) -> BTreeMap<String, Vec<String>> {
        let mut out = self.task_labels.clone();
        if let Some(all) = &self.labels {
            for (l, t) in labels.iter().zip(tasks) {
                if l.is_some() {
                    out.entry(task_of(t.as_deref()).to_owned())
                        .or_insert_with(|| all.clone());
                }
            }
        }
        out
    }

    /// The per-task metrics asked for (`accuracy*` with accuracy, `f1*` with f1;
    /// both for likelihood), under `prefix`.
    fn wanted_task_metrics(
        &self,
        metrics: &BTreeMap<String, f64>,
        prefix: &str,
    ) -> BTreeMap<String, f64> {
        metrics
            .iter()
            .filter(|(k, _)| {
                !prefix.is_empty()
                    || (k.starts_with("accuracy") && self.wants("accuracy"))
                    || (k.starts_with("f1") && self.wants("f1"))
            })
            .map(|(k, v)| (format!("{prefix}{k}"), *v))
            .collect()
    }
}

/// Progress sink (the engine's progress bar, behind the adapter).
pub trait Progress {
    fn set_total(&self, total: u64, unit: &str);
    fn inc(&self, delta: u64);
    fn message(&self, msg: &str);
}

/// A system to evaluate: the base model (no adapter) or an adapter folder.
#[derive(Debug, Clone)]
pub struct System {
    pub name: String,
    pub adapter_dir: Option<PathBuf>,
    /// Prompts carry few-shot examples from the training table (the `prompted` baseline).
    pub few_shot: bool,
}

/// Everything the stage reads.
#[derive(Debug, Clone)]
pub struct EvalInputs {
    pub stage_name: String,
    pub model: pipe_model::ResolvedModel,
    /// Systems in column order; the last is the one under test (gates apply to it).
    pub systems: Vec<System>,
    /// The rendered test table (`rendered.parquet`).
    pub test_table: PathBuf,
    /// The rendered training table shots are drawn from (`compare_prompted`).
    pub train_table: Option<PathBuf>,
    /// The general-ability question file (`general.path` resolved).
    pub general_file: Option<PathBuf>,
    /// `loss.svg` of the adapter under test, if present.
    pub loss_svg: Option<PathBuf>,
    pub seed: u64,
}

/// What the stage returns to the engine.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    pub report: EvalReport,
    /// Metrics of the system under test, plus `base_<metric>` for the base model.
    pub metrics: BTreeMap<String, f64>,
    pub gates: Vec<GateOutcome>,
    pub tokens_per_s: f64,
}

fn model_err(e: impl std::fmt::Display) -> EvalError {
    EvalError::Model(e.to_string())
}

/// Runs the evaluation and writes `out_dir/{metrics.json, predictions.jsonl, report.md, report.html}`.
pub fn run_eval(
    inputs: &EvalInputs,
    params: &EvalParams,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<EvalOutcome, EvalError> {
    params.validate()?;
    let mut rows = pipe_rows::read_rendered(&inputs.test_table).map_err(|e| EvalError::Input {
        path: inputs.test_table.clone(),
        message: e.to_string(),
    })?;
    if let Some(n) = params.max_examples {
        let view: Vec<(Option<&str>, &str)> = rows
            .iter()
            .map(|r| (r.row.task.as_deref(), r.rendered.as_str()))
            .collect();
        let keep = crate::subset::spread_over_tasks(&view, n, params.seed.unwrap_or(inputs.seed));
        let mut keep = keep.into_iter().peekable();
        let mut index = 0;
        rows.retain(|_| {
            let kept = keep.next_if_eq(&index).is_some();
            index += 1;
            kept
        });
    }
    if rows.is_empty() {
        return Err(EvalError::Input {
            path: inputs.test_table.clone(),
            message: "the test table has no rows".into(),
        });
    }
    let tok = pipe_tokenize::load_tokenizer(&inputs.model).map_err(model_err)?;
    let encode_plain = |text: &str| -> Result<Vec<u32>, EvalError> {
        Ok(tok
            .tokenizer
            .encode_fast(text, false)
            .map_err(model_err)?
            .get_ids()
            .to_vec())
    };
    let prompts: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| tok.try_encode(&r.prompt).map_err(model_err))
        .collect::<Result<_, _>>()?;
    let few_shot = match (&params.compare_prompted, &inputs.train_table) {
        (Some(pp), Some(train)) if inputs.systems.iter().any(|s| s.few_shot) => Some(
            few_shot_prompts(&rows, train, pp, params.seed.unwrap_or(inputs.seed), &|t| {
                tok.try_encode(t).map_err(model_err)
            })?,
        ),
        _ => None,
    };
    let references: Vec<Vec<String>> = rows.iter().map(|r| vec![r.reference.clone()]).collect();
    let y_true: Vec<String> = rows
        .iter()
        .map(|r| r.row.label.clone().unwrap_or_else(|| r.reference.clone()))
        .collect();
    let mut label_set = params.labels.clone().unwrap_or_else(|| y_true.clone());
    label_set.sort();
    label_set.dedup();
    // Rows that name their task are classified per task (#6): each task its own
    // label set and report; otherwise one label set over every row.
    let labels: Vec<Option<String>> = rows.iter().map(|r| r.row.label.clone()).collect();
    let tasks: Vec<Option<String>> = rows.iter().map(|r| r.row.task.clone()).collect();
    let per_task = tasks.iter().any(Option::is_some) && labels.iter().any(Option::is_some);
    let configured = params.configured_label_sets(&labels, &tasks);
    let task_sets = crate::tasks::label_sets(&labels, &tasks, &configured);
    let opts = params.score_options();
    let mut text_opts = opts.clone();
    if per_task {
        text_opts.metrics.retain(|m| m != "accuracy" && m != "f1");
    }
    let generates = !opts.metrics.is_empty();
    let stop_ids = tok.stop_ids.clone();
    let gen_opts = GenOptions {
        max_new_tokens: params.max_new_tokens,
        sampling: Sampling {
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
        },
        seed: params.seed.unwrap_or(inputs.seed),
        stop_ids: stop_ids.clone(),
        stop_strings: params.stop.clone(),
        batch_size: params.batch_size,
        pad_id: tok.pad_id.or(tok.eos_id).unwrap_or(0),
    };
    let decode = |ids: &[u32]| tok.tokenizer.decode(ids, true).unwrap_or_default();

    let general = match (&params.general, &inputs.general_file) {
        (Some(g), Some(path)) => {
            let mut qs = read_mcq(path, g)?;
            if qs.len() <= g.shots {
                return Err(EvalError::Input {
                    path: path.clone(),
                    message: format!(
                        "{} questions: none left to score after {} shots",
                        qs.len(),
                        g.shots
                    ),
                });
            }
            let rest = qs.split_off(g.shots);
            let n = g.max_questions.unwrap_or(rest.len()).min(rest.len());
            Some((qs, rest[..n].to_vec()))
        }
        _ => None,
    };
    let mut general_results: Vec<(String, Vec<bool>)> = Vec::new();
    let n_sys = inputs.systems.len() as u64;
    let per_sys = if generates {
        (rows.len() * params.max_new_tokens) as u64
    } else {
        rows.len() as u64
    };
    let general_total = general.as_ref().map_or(0, |(_, q)| q.len() as u64)
        * inputs.systems.iter().filter(|s| !s.few_shot).count() as u64;
    progress.set_total(
        per_sys * n_sys + general_total,
        if generates { "tokens" } else { "examples" },
    );
    let mut columns = Vec::new();
    let mut examples: Vec<ExampleRecord> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| ExampleRecord {
            index: i,
            prompt: r.prompt.clone(),
            reference: r.reference.clone(),
            label: r.row.label.clone(),
            task: r.row.task.clone(),
            outputs: BTreeMap::new(),
            predicted_labels: BTreeMap::new(),
            scores: BTreeMap::new(),
        })
        .collect();
    let (mut gen_tokens, mut gen_secs) = (0u64, 0f64);
    for sys in &inputs.systems {
        let prompts = match (&few_shot, sys.few_shot) {
            (Some(f), true) => &f.prompts,
            _ => &prompts,
        };
        progress.message(&format!("{}: loading", sys.name));
        let mut model =
            pipe_train::Generator::load(&inputs.model, sys.adapter_dir.as_deref(), gen_opts.seed)
                .map_err(model_err)?;
        let mut metrics = BTreeMap::new();
        let mut classification = None;
        let mut task_reports = BTreeMap::new();
        if generates {
            let t0 = Instant::now();
            let mut done = 0u64;
            let outs = generate(&mut model, prompts, &gen_opts, &decode, &mut |k| {
                done += k;
                progress.inc(k);
                let s = t0.elapsed().as_secs_f64();
                if s > 0.0 {
                    progress.message(&format!("{}: {:.0} tok/s", sys.name, done as f64 / s));
                }
            })
            .map_err(EvalError::Model)?;
            let produced: u64 = outs.iter().map(|g| g.ids.len() as u64).sum();
            gen_tokens += produced;
            gen_secs += t0.elapsed().as_secs_f64();
            // Sequences that stopped early did not use their share of the total.
            progress.inc(
                (rows.len() * params.max_new_tokens) as u64
                    - done.min((rows.len() * params.max_new_tokens) as u64),
            );
            let preds: Vec<String> = outs.iter().map(|g| g.text.trim().to_owned()).collect();
            let mut s = score(&preds, &references, Some(y_true.as_slice()), &text_opts)?;
            if per_task && (params.wants("accuracy") || params.wants("f1")) {
                let t = score_by_task(&preds, &labels, &tasks, &configured, params.label_match);
                metrics.extend(params.wanted_task_metrics(&t.metrics, ""));
                for (i, c) in t.correct.iter().enumerate() {
                    if let Some(c) = c {
                        s.per_example[i].insert("correct".into(), *c);
                    }
                }
                s.predicted_labels = t.predicted;
                task_reports = t.reports;
            }
            metrics.extend(s.corpus.clone());
            classification = s.classification.clone();
            for (i, e) in examples.iter_mut().enumerate() {
                e.outputs.insert(sys.name.clone(), preds[i].clone());
                if let Some(Some(l)) = s.predicted_labels.get(i) {
                    e.predicted_labels.insert(sys.name.clone(), l.clone());
                }
                e.scores
                    .entry(sys.name.clone())
                    .or_default()
                    .extend(s.per_example[i].clone());
            }
        }
        if params.wants("likelihood") {
            // Each row chooses among its task's labels (per task) or the one label set.
            let mut encoded: BTreeMap<&str, Vec<Vec<u32>>> = BTreeMap::new();
            let mut picked = Vec::with_capacity(rows.len());
            for (i, p) in prompts.iter().enumerate() {
                let set: &[String] = if per_task {
                    match &labels[i] {
                        Some(_) => &task_sets[task_of(tasks[i].as_deref())],
                        None => {
                            picked.push(String::new());
                            continue;
                        }
                    }
                } else {
                    &label_set
                };
                let key = if per_task {
                    task_of(tasks[i].as_deref())
                } else {
                    ""
                };
                if !encoded.contains_key(key) {
                    let ids = set
                        .iter()
                        .map(|l| encode_plain(l.as_str()))
                        .collect::<Result<_, _>>()?;
                    encoded.insert(key, ids);
                }
                let k = crate::generate::likelihood_label(&mut model, p, &encoded[key])
                    .map_err(EvalError::Model)?;
                picked.push(set[k].clone());
                examples[i]
                    .scores
                    .entry(sys.name.clone())
                    .or_default()
                    .insert(
                        "likelihood_correct".into(),
                        if set[k] == y_true[i] { 1.0 } else { 0.0 },
                    );
                if !generates {
                    progress.inc(1);
                }
            }
            if per_task {
                let t = score_by_task(&picked, &labels, &tasks, &configured, LabelMatch::Exact);
                metrics.extend(params.wanted_task_metrics(&t.metrics, "likelihood_"));
                if task_reports.is_empty() {
                    task_reports = t.reports;
                }
            } else {
                let rep = classification_report(&y_true, &picked, Some(label_set.as_slice()));
                metrics.insert("likelihood_accuracy".into(), rep.accuracy);
                metrics.insert("likelihood_f1_macro".into(), rep.macro_avg.f1);
                if classification.is_none() {
                    classification = Some(rep);
                }
            }
        }
        if params.wants("loss") {
            // Token-weighted mean negative log-likelihood of reference + end-of-turn given the prompt.
            let (mut nll, mut count) = (0f64, 0u64);
            for (i, p) in prompts.iter().enumerate() {
                let mut cont = encode_plain(rows[i].reference.as_str())?;
                if let Some(&end) = stop_ids.first() {
                    cont.push(end);
                }
                let lp = continuation_logprob(&mut model, p, &cont).map_err(EvalError::Model)?;
                nll -= lp;
                count += cont.len() as u64;
                examples[i]
                    .scores
                    .entry(sys.name.clone())
                    .or_default()
                    .insert("loss".into(), -lp / cont.len().max(1) as f64);
            }
            let loss = if count == 0 { 0.0 } else { nll / count as f64 };
            metrics.insert("eval_loss".into(), loss);
            metrics.insert("perplexity".into(), loss.exp());
        }
        // The prompted baseline is the base model: its general ability is base's.
        if let Some((shots, questions)) = general.as_ref().filter(|_| !sys.few_shot) {
            progress.message(&format!("{}: general-ability questions", sys.name));
            let picks = pick_letters(
                &mut model,
                &encode_plain,
                shots,
                questions,
                params.batch_size,
                &mut |k| progress.inc(k),
            )?;
            let correct: Vec<bool> = picks
                .iter()
                .zip(questions)
                .map(|(&k, q)| q.options[k].0 == q.answer)
                .collect();
            metrics.insert(
                "general_acc".into(),
                correct.iter().filter(|c| **c).count() as f64 / correct.len() as f64,
            );
            general_results.push((sys.name.clone(), correct));
        }
        columns.push(Column {
            name: sys.name.clone(),
            metrics,
            classification,
            tasks: task_reports,
        });
    }

    let (last, others) = columns.split_last().expect("at least one system");
    let others: BTreeMap<String, BTreeMap<String, f64>> = others
        .iter()
        .map(|c| (c.name.clone(), c.metrics.clone()))
        .collect();
    let gates = parse_gates(&params.gates)?
        .iter()
        .map(|g| g.evaluate(&last.metrics, &others))
        .collect::<Result<Vec<_>, _>>()?;
    // The run record's metrics: the adapter's, and `base_`/`prompted_` ones.
    let mut flat = last.metrics.clone();
    for name in ["base", "prompted"] {
        for (k, v) in others.get(name).into_iter().flatten() {
            flat.insert(format!("{name}_{k}"), *v);
        }
    }
    let loss_svg = inputs
        .loss_svg
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok());
    let decoding = if gen_opts.sampling.is_greedy() {
        "greedy".to_owned()
    } else {
        format!(
            "temperature {} top_k {} top_p {}",
            params.temperature, params.top_k, params.top_p
        )
    };
    let settings = json!({
        "metrics": opts.settings(),
        "generation": {
            "max_new_tokens": params.max_new_tokens,
            "batch_size": params.batch_size,
            "decoding": decoding,
            "seed": gen_opts.seed,
            "stop_ids": stop_ids,
            "stop_strings": params.stop,
        },
        "labels": if per_task { json!(task_sets) } else { json!(label_set) },
        "classification": if per_task {
            "per task: labels extracted among the row's task labels; accuracy over labelled rows, f1_macro = mean of the tasks' macro F1"
        } else {
            "one label set over every row"
        },
        "loss": "mean NLL per token of reference + end-of-turn token given the prompt",
        "likelihood": "label with the highest summed log-probability given the prompt",
        "prompted": few_shot.as_ref().map(|f| json!({
            "shots": params.compare_prompted.as_ref().map(|p| p.shots),
            "from": params.compare_prompted.as_ref().map(|p| p.from.clone()),
            "selection": "per test row, seeded draw without replacement from training rows of the same task (any row when the task has none)",
            "turns": "shots rendered as earlier turns with the test prompt's template",
            "mean_shots": f.mean_shots,
        })),
    });
    let general_report = params
        .general
        .as_ref()
        .map(|g| general_report(&g.path.display().to_string(), g.shots, &general_results));
    let report = EvalReport {
        general: general_report,
        stage: inputs.stage_name.clone(),
        settings,
        columns,
        examples,
        gates: gates.clone(),
        loss_svg,
    };
    report.write(out_dir)?;
    if let Some(svg) = &inputs.loss_svg
        && svg.is_file()
    {
        let dst = out_dir.join("loss.svg");
        std::fs::copy(svg, &dst).map_err(|e| EvalError::io(&dst, e))?;
    }
    Ok(EvalOutcome {
        report,
        metrics: flat,
        gates,
        tokens_per_s: if gen_secs > 0.0 {
            gen_tokens as f64 / gen_secs
        } else {
            0.0
        },
    })
}

/// The prompted baseline's prompts, token ids per test row.
struct FewShot {
    prompts: Vec<Vec<u32>>,
    /// Shots actually used per prompt, on average (some are dropped to fit `max_prompt_tokens`).
    mean_shots: f64,
}

fn few_shot_prompts(
    rows: &[pipe_rows::RenderedRow],
    train_table: &Path,
    pp: &PromptedParams,
    seed: u64,
    encode: &dyn Fn(&str) -> Result<Vec<u32>, EvalError>,
) -> Result<FewShot, EvalError> {
    let train = pipe_rows::read_rendered(train_table).map_err(|e| EvalError::Input {
        path: train_table.to_owned(),
        message: e.to_string(),
    })?;
    if train.is_empty() && pp.shots > 0 {
        return Err(EvalError::Input {
            path: train_table.to_owned(),
            message: "`compare_prompted` draws shots from this table, but it has no rows".into(),
        });
    }
    let train_tasks: Vec<Option<String>> = train.iter().map(|r| r.row.task.clone()).collect();
    let test_tasks: Vec<Option<String>> = rows.iter().map(|r| r.row.task.clone()).collect();
    let picks = pick_all_shots(&train_tasks, &test_tasks, pp.shots, seed);
    let (mut out, mut used) = (Vec::with_capacity(rows.len()), 0usize);
    for (row, pick) in rows.iter().zip(&picks) {
        let shots: Vec<Shot<'_>> = pick
            .iter()
            .map(|&j| Shot {
                rendered: &train[j].rendered,
                last_span: train[j].spans.last().copied(),
                reference: &train[j].reference,
            })
            .collect();
        // Drop shots, last first, until the prompt fits.
        let mut k = shots.len();
        let ids = loop {
            let ids = encode(&few_shot_prompt(&row.prompt, &shots[..k]))?;
            if k == 0 || ids.len() <= pp.max_prompt_tokens {
                break ids;
            }
            k -= 1;
        };
        used += k;
        out.push(ids);
    }
    Ok(FewShot {
        mean_shots: used as f64 / rows.len().max(1) as f64,
        prompts: out,
    })
}

/// Generation throughput on one system: tokens/s for a batch of prompts (bench helper).
pub fn generation_speed(
    model: &mut dyn LogitsModel,
    prompts: &[Vec<u32>],
    opts: &GenOptions,
) -> Result<(u64, f64), EvalError> {
    let t0 = Instant::now();
    let outs = generate(model, prompts, opts, &|_| String::new(), &mut |_| {})
        .map_err(EvalError::Model)?;
    let n: u64 = outs.iter().map(|g| g.ids.len() as u64).sum();
    Ok((n, t0.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(yaml: serde_json::Value) -> EvalParams {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn gates_name_systems_that_are_evaluated() {
        let p = params(json!({"gates": {"f1_macro": ">= prompted + 0.05"}}));
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("compare_prompted"), "{e}");
        let p = params(json!({
            "gates": {"f1_macro/hearsay": ">= prompted + 0.05"},
            "compare_prompted": {"shots": 2, "from": "chat.train"},
        }));
        p.validate().unwrap();
        assert_eq!(p.compare_prompted.unwrap().max_prompt_tokens, 2048);
        let p = params(json!({"gates": {"bleu": ">= twelve"}}));
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("`twelve` is not a system"), "{e}");
    }
}

//! The eval stage's outputs: `metrics.json`, `predictions.jsonl`, `report.md`
//! and `report.html` (self-contained: inline CSS and SVG, no scripts, no
//! network). Pure functions of an [`EvalReport`], so they are tested without a model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::EvalError;
use crate::gates::GateOutcome;
use crate::general::GeneralReport;
use crate::metrics::ClassificationReport;
use crate::score::fmt_metric;

/// The scores of one system (`base`, `adapter`, or another adapter stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// Corpus-level metrics (bleu, rougeL, f1_macro, eval_loss, ...).
    pub metrics: BTreeMap<String, f64>,
    pub classification: Option<ClassificationReport>,
    /// Task -> classification report, when rows are classified per task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, ClassificationReport>,
}

/// One test example with every system's output and per-example scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleRecord {
    pub index: usize,
    pub prompt: String,
    pub reference: String,
    pub label: Option<String>,
    pub task: Option<String>,
    /// Column name -> generated text.
    pub outputs: BTreeMap<String, String>,
    /// Column name -> label extracted from the output (classification).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub predicted_labels: BTreeMap<String, String>,
    /// Column name -> metric -> value.
    pub scores: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Everything the report files are made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub stage: String,
    /// Metric and generation settings (which tokenizer produced which number).
    pub settings: Value,
    /// Columns in display order; the last is the system under test (the adapter).
    pub columns: Vec<Column>,
    pub examples: Vec<ExampleRecord>,
    pub gates: Vec<GateOutcome>,
    /// The general-ability check (multiple choice, base vs adapter), if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general: Option<GeneralReport>,
    /// The training loss curve (SVG text from the adapter folder), if any.
    #[serde(skip)]
    pub loss_svg: Option<String>,
}

pub const METRICS_FILE: &str = "metrics.json";
pub const PREDICTIONS_FILE: &str = "predictions.jsonl";
pub const REPORT_MD: &str = "report.md";
pub const REPORT_HTML: &str = "report.html";

/// Preferred order of metrics in tables; others follow alphabetically.
const ORDER: &[&str] = &[
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "bleu",
    "chrf",
    "chrfpp",
    "exact_match",
    "accuracy",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "likelihood_accuracy",
    "likelihood_f1_macro",
    "eval_loss",
    "perplexity",
];

/// Metrics where lower is better (deltas are judged the other way).
fn lower_is_better(m: &str) -> bool {
    matches!(m, "eval_loss" | "perplexity")
}

impl EvalReport {
    /// Metric names shown in the headline table (precision/recall details left to metrics.json).
    pub fn headline_metrics(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for c in &self.columns {
            for k in c.metrics.keys() {
                // Per-task metrics (`accuracy/hearsay`) have their own table.
                if !names.contains(k)
                    && !k.starts_with("precision_")
                    && !k.starts_with("recall_")
                    && !k.contains('/')
                {
                    names.push(k.clone());
                }
            }
        }
        names.sort_by_key(|n| {
            (
                ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
                n.clone(),
            )
        });
        names
    }

    /// The metric used to rank examples: the first of rougeL, bleu, correct, chrf present.
    pub fn ranking_metric(&self) -> Option<String> {
        let last = self.columns.last()?;
        ["rougeL", "correct", "bleu", "chrf", "chrfpp", "exact_match"]
            .into_iter()
            .find(|m| {
                self.examples
                    .iter()
                    .any(|e| e.scores.get(&last.name).is_some_and(|s| s.contains_key(*m)))
            })
            .map(str::to_owned)
    }

    /// `(index, delta)` of examples sorted by how much the last column beats the first
    /// (or by its own score when there is one column), best first.
    pub fn ranked_examples(&self) -> Vec<(usize, f64)> {
        let Some(metric) = self.ranking_metric() else {
            return Vec::new();
        };
        let last = &self
            .columns
            .last()
            .expect("ranking_metric found a column")
            .name;
        let first = &self.columns[0].name;
        let mut v: Vec<(usize, f64)> = self
            .examples
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let get = |c: &str| {
                    e.scores
                        .get(c)
                        .and_then(|s| s.get(&metric))
                        .copied()
                        .unwrap_or(0.0)
                };
                let d = if self.columns.len() > 1 {
                    get(last) - get(first)
                } else {
                    get(last)
                };
                (i, d)
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    pub fn metrics_json(&self) -> Value {
        let mut cols = serde_json::Map::new();
        for c in &self.columns {
            let mut m = json!({"metrics": c.metrics});
            if let Some(cl) = &c.classification {
                m["classification"] = serde_json::to_value(cl).expect("serializable");
            }
            if !c.tasks.is_empty() {
                m["tasks"] = serde_json::to_value(&c.tasks).expect("serializable");
            }
            cols.insert(c.name.clone(), m);
        }
        let mut v = json!({
            "stage": self.stage,
            "examples": self.examples.len(),
            "settings": self.settings,
            "columns": cols,
            "gates": self.gates,
        });
        if let Some(g) = &self.general {
            v["general"] = serde_json::to_value(g).expect("serializable");
        }
        v
    }

    pub fn predictions_jsonl(&self) -> String {
        let mut s = String::new();
        for e in &self.examples {
            let v = serde_json::to_value(e).expect("serializable");
            s.push_str(&serde_json::to_string(&v).expect("serializable"));
            s.push('\n');
        }
        s
    }

    /// Plain-text headline table (what `pipe run` prints at the end).
    pub fn headline_table(&self) -> String {
        let names = self.headline_metrics();
        let mut header = format!("{:<20}", "metric");
        for c in &self.columns {
            write!(header, " {:>10}", c.name).ok();
        }
        if self.columns.len() > 1 {
            write!(header, " {:>10}", "delta").ok();
        }
        let mut s = header.trim_end().to_owned();
        s.push('\n');
        for n in &names {
            let mut line = format!("{n:<20}");
            for c in &self.columns {
                let v = c
                    .metrics
                    .get(n)
                    .map(|v| fmt_metric(n, *v))
                    .unwrap_or_else(|| "-".into());
                write!(line, " {v:>10}").ok();
            }
            if let Some(d) = self.delta(n) {
                write!(line, " {:>10}", signed(n, d)).ok();
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        for g in &self.gates {
            s.push_str(&format!("gate {}\n", g.describe()));
        }
        s
    }

    /// One row per classification task: size, label count and each column's
    /// accuracy and macro F1 (None when no column was scored per task).
    fn task_rows(&self) -> Option<Vec<TaskRow>> {
        let mut tasks: Vec<&String> = self.columns.iter().flat_map(|c| c.tasks.keys()).collect();
        tasks.sort();
        tasks.dedup();
        if tasks.is_empty() {
            return None;
        }
        let rows = tasks
            .into_iter()
            .map(|t| {
                let any = self
                    .columns
                    .iter()
                    .find_map(|c| c.tasks.get(t))
                    .expect("listed task has a report");
                TaskRow {
                    task: t.clone(),
                    n: any.n,
                    labels: any.labels.len(),
                    cells: self
                        .columns
                        .iter()
                        .map(|c| match c.tasks.get(t) {
                            Some(r) => (
                                format!("{:.4}", r.accuracy),
                                format!("{:.4}", r.macro_avg.f1),
                            ),
                            None => ("-".into(), "-".into()),
                        })
                        .collect(),
                }
            })
            .collect();
        Some(rows)
    }

    /// Last column minus first, when both have the metric.
    fn delta(&self, metric: &str) -> Option<f64> {
        if self.columns.len() < 2 {
            return None;
        }
        let a = self.columns[0].metrics.get(metric)?;
        let b = self.columns.last()?.metrics.get(metric)?;
        Some(b - a)
    }

    pub fn report_md(&self) -> String {
        let mut s = format!(
            "# Evaluation: {}\n\n{} test examples.\n\n",
            self.stage,
            self.examples.len()
        );
        let names = self.headline_metrics();
        s.push_str("| metric |");
        for c in &self.columns {
            write!(s, " {} |", c.name).ok();
        }
        if self.columns.len() > 1 {
            s.push_str(" delta |");
        }
        s.push_str("\n|---|");
        for _ in 0..self.columns.len() + usize::from(self.columns.len() > 1) {
            s.push_str("---:|");
        }
        s.push('\n');
        for n in &names {
            write!(s, "| {n} |").ok();
            for c in &self.columns {
                let v = c
                    .metrics
                    .get(n)
                    .map(|v| fmt_metric(n, *v))
                    .unwrap_or_else(|| "-".into());
                write!(s, " {v} |").ok();
            }
            if self.columns.len() > 1 {
                let d = self
                    .delta(n)
                    .map(|d| signed(n, d))
                    .unwrap_or_else(|| "-".into());
                write!(s, " {d} |").ok();
            }
            s.push('\n');
        }
        if !self.gates.is_empty() {
            s.push_str("\n## Gates\n\n");
            for g in &self.gates {
                writeln!(
                    s,
                    "- {} {}",
                    if g.passed { "PASS" } else { "FAIL" },
                    g.describe()
                )
                .ok();
            }
        }
        if let Some(rows) = self.task_rows() {
            s.push_str("\n## Per task\n\n| task | examples | labels |");
            for c in &self.columns {
                write!(s, " accuracy {} | f1_macro {} |", c.name, c.name).ok();
            }
            s.push_str("\n|---|---:|---:|");
            for _ in &self.columns {
                s.push_str("---:|---:|");
            }
            s.push('\n');
            for r in &rows {
                write!(s, "| {} | {} | {} |", md_cell(&r.task), r.n, r.labels).ok();
                for cell in &r.cells {
                    write!(s, " {} | {} |", cell.0, cell.1).ok();
                }
                s.push('\n');
            }
        }
        if let Some(g) = &self.general {
            s.push_str(&general_md(g));
        }
        if let Some(cl) = self.columns.last().and_then(|c| c.classification.as_ref()) {
            s.push_str("\n## Per-class F1\n\n| class | support |");
            for c in &self.columns {
                write!(s, " {} |", c.name).ok();
            }
            s.push_str("\n|---|---:|");
            for _ in &self.columns {
                s.push_str("---:|");
            }
            s.push('\n');
            for (i, pc) in cl.per_class.iter().enumerate() {
                write!(s, "| {} | {} |", md_cell(&pc.label), pc.support).ok();
                for c in &self.columns {
                    let f = c
                        .classification
                        .as_ref()
                        .and_then(|x| x.per_class.get(i))
                        .map(|x| format!("{:.4}", x.f1))
                        .unwrap_or_else(|| "-".into());
                    write!(s, " {f} |").ok();
                }
                s.push('\n');
            }
        }
        let ranked = self.ranked_examples();
        if let Some(metric) = self.ranking_metric() {
            let what = if self.columns.len() > 1 {
                "improved most"
            } else {
                "scored best"
            };
            let (best, worst) = split_best_worst(&ranked, 5);
            for (title, list) in [
                (what, best),
                (
                    if self.columns.len() > 1 {
                        "regressed most"
                    } else {
                        "scored worst"
                    },
                    worst,
                ),
            ] {
                writeln!(s, "\n## Examples that {title} ({metric})\n").ok();
                for (i, d) in list {
                    let e = &self.examples[i];
                    writeln!(
                        s,
                        "### Example {} ({metric} {})\n",
                        e.index,
                        signed(&metric, d)
                    )
                    .ok();
                    writeln!(s, "**Reference:** {}\n", md_cell(&e.reference)).ok();
                    for c in &self.columns {
                        if let Some(o) = e.outputs.get(&c.name) {
                            writeln!(s, "**{}:** {}\n", c.name, md_cell(o)).ok();
                        }
                    }
                }
            }
        }
        s.push_str("\n## Settings\n\n```json\n");
        s.push_str(&serde_json::to_string_pretty(&self.settings).expect("serializable"));
        s.push_str("\n```\n");
        s
    }

    pub fn report_html(&self) -> String {
        let mut h = String::new();
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        writeln!(h, "<title>pipe eval: {}</title>", esc(&self.stage)).ok();
        h.push_str(CSS);
        h.push_str("</head><body>\n");
        writeln!(
            h,
            "<h1>Evaluation: {}</h1>\n<p class=\"sub\">{} test examples</p>",
            esc(&self.stage),
            self.examples.len()
        )
        .ok();
        // Headline table.
        h.push_str("<h2>Headline</h2>\n<table class=\"head\"><tr><th>metric</th>");
        for c in &self.columns {
            write!(h, "<th>{}</th>", esc(&c.name)).ok();
        }
        if self.columns.len() > 1 {
            h.push_str("<th>delta</th>");
        }
        h.push_str("</tr>\n");
        for n in self.headline_metrics() {
            write!(h, "<tr><td>{}</td>", esc(&n)).ok();
            for c in &self.columns {
                let v = c
                    .metrics
                    .get(&n)
                    .map(|v| fmt_metric(&n, *v))
                    .unwrap_or_else(|| "-".into());
                write!(h, "<td class=\"num\">{v}</td>").ok();
            }
            if let Some(d) = self.delta(&n) {
                let good = if lower_is_better(&n) {
                    d < 0.0
                } else {
                    d > 0.0
                };
                let class = if d == 0.0 {
                    "same"
                } else if good {
                    "up"
                } else {
                    "down"
                };
                write!(h, "<td class=\"num {class}\">{}</td>", signed(&n, d)).ok();
            } else if self.columns.len() > 1 {
                h.push_str("<td>-</td>");
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
        if !self.gates.is_empty() {
            h.push_str("<h2>Gates</h2>\n<ul class=\"gates\">\n");
            for g in &self.gates {
                writeln!(
                    h,
                    "<li class=\"{}\">{} {}</li>",
                    if g.passed { "pass" } else { "fail" },
                    if g.passed { "PASS" } else { "FAIL" },
                    esc(&g.describe())
                )
                .ok();
            }
            h.push_str("</ul>\n");
        }
        if let Some(svg) = &self.loss_svg {
            h.push_str("<h2>Training loss</h2>\n");
            writeln!(h, "<img class=\"loss\" alt=\"training loss curve\" src=\"data:image/svg+xml;base64,{}\">", base64(svg.as_bytes())).ok();
        }
        if let Some(rows) = self.task_rows() {
            h.push_str("<h2>Per task</h2>\n<table class=\"head\"><tr><th>task</th><th>examples</th><th>labels</th>");
            for c in &self.columns {
                write!(
                    h,
                    "<th>accuracy {0}</th><th>f1_macro {0}</th>",
                    esc(&c.name)
                )
                .ok();
            }
            h.push_str("</tr>\n");
            for r in &rows {
                write!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    esc(&r.task),
                    r.n,
                    r.labels
                )
                .ok();
                for cell in &r.cells {
                    write!(
                        h,
                        "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                        cell.0, cell.1
                    )
                    .ok();
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</table>\n");
        }
        if let Some(g) = &self.general {
            h.push_str("<h2>General ability</h2>\n<table class=\"head\"><tr><th>system</th><th>accuracy</th><th>95% interval</th><th>questions</th></tr>\n");
            for x in &g.scores {
                writeln!(h, "<tr><td>{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4} – {:.4}</td><td class=\"num\">{}</td></tr>", esc(&x.system), x.accuracy, x.ci_low, x.ci_high, x.n).ok();
            }
            h.push_str("</table>\n");
            if let Some(line) = general_difference(g) {
                writeln!(h, "<p>{}</p>", esc(&line)).ok();
            }
        }
        if self.columns.iter().any(|c| c.classification.is_some()) {
            h.push_str("<h2>Per-class F1</h2>\n");
            h.push_str(&self.f1_chart());
            if let Some(cl) = self.columns.last().and_then(|c| c.classification.as_ref()) {
                writeln!(
                    h,
                    "<h3>Confusion matrix ({})</h3>",
                    esc(&self.columns.last().expect("has columns").name)
                )
                .ok();
                h.push_str("<table class=\"cm\"><tr><th>true \\ predicted</th>");
                for l in &cl.labels {
                    write!(h, "<th>{}</th>", esc(l)).ok();
                }
                h.push_str("</tr>\n");
                for (i, row) in cl.confusion.iter().enumerate() {
                    write!(h, "<tr><th>{}</th>", esc(&cl.labels[i])).ok();
                    for (j, v) in row.iter().enumerate() {
                        write!(
                            h,
                            "<td class=\"num{}\">{v}</td>",
                            if i == j { " diag" } else { "" }
                        )
                        .ok();
                    }
                    h.push_str("</tr>\n");
                }
                h.push_str("</table>\n");
            }
        }
        if let Some(metric) = self.ranking_metric() {
            let ranked = self.ranked_examples();
            let (best, worst) = split_best_worst(&ranked, 5);
            let two = self.columns.len() > 1;
            for (title, list) in [
                (if two { "Improved most" } else { "Best" }, best),
                (if two { "Regressed most" } else { "Worst" }, worst),
            ] {
                writeln!(
                    h,
                    "<h2>{title} <span class=\"sub\">by {}</span></h2>",
                    esc(&metric)
                )
                .ok();
                for (i, d) in list {
                    let e = &self.examples[i];
                    writeln!(
                        h,
                        "<div class=\"ex\"><div class=\"exh\">example {} &middot; {} {}</div>",
                        e.index,
                        esc(&metric),
                        signed(&metric, d)
                    )
                    .ok();
                    writeln!(
                        h,
                        "<details><summary>prompt</summary><pre>{}</pre></details>",
                        esc(&e.prompt)
                    )
                    .ok();
                    h.push_str("<div class=\"cols\">");
                    writeln!(
                        h,
                        "<div><b>reference</b><pre>{}</pre></div>",
                        esc(&e.reference)
                    )
                    .ok();
                    for c in &self.columns {
                        if let Some(o) = e.outputs.get(&c.name) {
                            let sc = e
                                .scores
                                .get(&c.name)
                                .and_then(|s| s.get(&metric))
                                .map(|v| fmt_metric(&metric, *v))
                                .unwrap_or_default();
                            writeln!(
                                h,
                                "<div><b>{}</b> <span class=\"sub\">{}</span><pre>{}</pre></div>",
                                esc(&c.name),
                                sc,
                                esc(o)
                            )
                            .ok();
                        }
                    }
                    h.push_str("</div></div>\n");
                }
            }
        }
        h.push_str("<h2>Settings</h2>\n<pre>");
        h.push_str(&esc(
            &serde_json::to_string_pretty(&self.settings).expect("serializable")
        ));
        h.push_str("</pre>\n</body></html>\n");
        h
    }

    /// Horizontal bar chart of per-class F1, one bar per column.
    fn f1_chart(&self) -> String {
        let Some(cl) = self
            .columns
            .iter()
            .rev()
            .find_map(|c| c.classification.as_ref())
        else {
            return String::new();
        };
        let ncol = self.columns.len();
        let bar = 14.0;
        let group = bar * ncol as f64 + 10.0;
        let (left, width) = (160.0, 360.0);
        let height = group * cl.labels.len() as f64 + 30.0;
        let colors = ["#9aa5b1", "#2f7ed8", "#f28f43", "#8bbc21"];
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">\n",
            left + width + 60.0,
            left + width + 60.0
        );
        for (i, label) in cl.labels.iter().enumerate() {
            let y0 = i as f64 * group + 5.0;
            writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text>",
                left - 6.0,
                y0 + group / 2.0,
                esc(label)
            )
            .ok();
            for (k, c) in self.columns.iter().enumerate() {
                let f1 = c
                    .classification
                    .as_ref()
                    .and_then(|x| x.per_class.iter().find(|p| &p.label == label))
                    .map(|p| p.f1)
                    .unwrap_or(0.0);
                let y = y0 + k as f64 * bar;
                writeln!(
                    s,
                    "<rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"><title>{} {}: {:.4}</title></rect><text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{:.3}</text>",
                    f1 * width,
                    bar - 2.0,
                    colors[k % colors.len()],
                    esc(&c.name),
                    esc(label),
                    f1,
                    left + f1 * width + 4.0,
                    y + bar - 4.0,
                    f1
                )
                .ok();
            }
        }
        let ly = height - 12.0;
        for (k, c) in self.columns.iter().enumerate() {
            let x = left + k as f64 * 110.0;
            writeln!(s, "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>", ly - 9.0, colors[k % colors.len()], x + 14.0, ly, esc(&c.name)).ok();
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes the four report files into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
        let files = [
            (
                METRICS_FILE,
                serde_json::to_string_pretty(&self.metrics_json()).expect("serializable") + "\n",
            ),
            (PREDICTIONS_FILE, self.predictions_jsonl()),
            (REPORT_MD, self.report_md()),
            (REPORT_HTML, self.report_html()),
        ];
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| EvalError::io(&p, e))?;
        }
        Ok(())
    }
}

/// `adapter - base: -0.0200 (95% interval -0.0600 .. +0.0200)`.
fn general_difference(g: &GeneralReport) -> Option<String> {
    let (d, lo, hi) = g.difference?;
    let (a, b) = (&g.scores.first()?.system, &g.scores.last()?.system);
    Some(format!(
        "{b} - {a}: {d:+.4} (95% interval {lo:+.4} .. {hi:+.4}, paired over the same questions)"
    ))
}

fn general_md(g: &GeneralReport) -> String {
    let mut s = format!(
        "\n## General ability\n\nMultiple choice from `{}`, {}-shot, the most probable answer letter.\n\n| system | accuracy | 95% interval | questions |\n|---|---:|---:|---:|\n",
        g.file, g.shots
    );
    for x in &g.scores {
        writeln!(
            s,
            "| {} | {:.4} | {:.4} – {:.4} | {} |",
            x.system, x.accuracy, x.ci_low, x.ci_high, x.n
        )
        .ok();
    }
    if let Some(line) = general_difference(g) {
        writeln!(s, "\n{line}").ok();
    }
    s
}

/// A line of the per-task table.
struct TaskRow {
    task: String,
    n: u64,
    labels: usize,
    /// Per column: (accuracy, macro F1), formatted.
    cells: Vec<(String, String)>,
}

type Ranked = Vec<(usize, f64)>;

fn split_best_worst(ranked: &[(usize, f64)], k: usize) -> (Ranked, Ranked) {
    let k = k.min(ranked.len() / 2).max(usize::from(ranked.len() == 1));
    let best = ranked.iter().take(k).copied().collect();
    let worst = if ranked.len() > 1 {
        ranked.iter().rev().take(k).copied().collect()
    } else {
        Vec::new()
    };
    (best, worst)
}

fn signed(metric: &str, d: f64) -> String {
    let s = fmt_metric(metric, d.abs());
    if d > 0.0 {
        format!("+{s}")
    } else if d < 0.0 {
        format!("-{s}")
    } else {
        format!("±{s}")
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Text safe inside HTML elements and quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        o.push(T[(n >> 18) as usize & 63] as char);
        o.push(T[(n >> 12) as usize & 63] as char);
        o.push(if ch.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        o.push(if ch.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    o
}

const CSS: &str = "<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1f2933;padding:0 16px}
h1{margin-bottom:0}h2{margin-top:28px;border-bottom:1px solid #e4e7eb;padding-bottom:4px}
.sub{color:#7b8794;font-weight:normal;font-size:12px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #e4e7eb;padding:4px 10px;text-align:left}
th{background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.up{color:#0b7a35;font-weight:600}td.down{color:#c81e1e;font-weight:600}td.diag{background:#e3f8ea}
ul.gates li.pass{color:#0b7a35}ul.gates li.fail{color:#c81e1e;font-weight:600}
img.loss{max-width:100%;border:1px solid #e4e7eb}
.ex{border:1px solid #e4e7eb;border-radius:6px;margin:10px 0;padding:8px}.exh{font-weight:600;margin-bottom:4px}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:8px}
pre{white-space:pre-wrap;word-break:break-word;background:#f5f7fa;padding:6px;margin:4px 0;border-radius:4px;font-size:12.5px}
</style>
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::classification_report;

    fn sample() -> EvalReport {
        let labels = ["yes", "no", "yes", "no"];
        let base_pred = ["no", "no", "no", "no"];
        let ad_pred = ["yes", "no", "yes", "yes"];
        let mut examples = Vec::new();
        for i in 0..4 {
            let mut outputs = BTreeMap::new();
            outputs.insert("base".to_string(), format!("{} <b>", base_pred[i]));
            outputs.insert("adapter".to_string(), ad_pred[i].to_string());
            let mut scores = BTreeMap::new();
            scores.insert(
                "base".to_string(),
                BTreeMap::from([(
                    "correct".to_string(),
                    (base_pred[i] == labels[i]) as u8 as f64,
                )]),
            );
            scores.insert(
                "adapter".to_string(),
                BTreeMap::from([(
                    "correct".to_string(),
                    (ad_pred[i] == labels[i]) as u8 as f64,
                )]),
            );
            examples.push(ExampleRecord {
                index: i,
                prompt: format!("Q{i}?"),
                reference: labels[i].to_string(),
                label: Some(labels[i].to_string()),
                task: None,
                outputs,
                predicted_labels: BTreeMap::new(),
                scores,
            });
        }
        let col = |name: &str, pred: &[&str]| {
            let cl = classification_report(&labels, pred, None);
            Column {
                name: name.to_string(),
                metrics: BTreeMap::from([
                    ("accuracy".to_string(), cl.accuracy),
                    ("f1_macro".to_string(), cl.macro_avg.f1),
                    ("eval_loss".to_string(), 1.5),
                ]),
                classification: Some(cl),
                tasks: BTreeMap::new(),
            }
        };
        EvalReport {
            general: None,
            stage: "report".into(),
            settings: json!({"max_new_tokens": 8}),
            columns: vec![col("base", &base_pred), col("adapter", &ad_pred)],
            examples,
            gates: vec![
                crate::gates::Gate::parse("accuracy", ">= base + 0.1")
                    .unwrap()
                    .evaluate(
                        &BTreeMap::from([("accuracy".to_string(), 0.75)]),
                        &BTreeMap::from([(
                            "base".to_string(),
                            BTreeMap::from([("accuracy".to_string(), 0.5)]),
                        )]),
                    )
                    .unwrap(),
            ],
            loss_svg: Some(
                "<svg xmlns=\"http://www.w3.org/2000/svg\"><path d=\"M0 0L10 10\"/></svg>".into(),
            ),
        }
    }

    #[test]
    fn files_render() {
        let r = sample();
        let t = r.headline_table();
        assert!(t.contains("accuracy") && t.contains("+0.2500"), "{t}");
        let md = r.report_md();
        assert!(
            md.contains("| accuracy | 0.5000 | 0.7500 | +0.2500 |"),
            "{md}"
        );
        assert!(md.contains("Per-class F1"));
        let html = r.report_html();
        assert!(html.contains("data:image/svg+xml;base64,"));
        assert!(html.contains("no &lt;b&gt;"), "outputs are escaped");
        assert!(!html.contains("<script"));
        assert!(html.contains("class=\"num up\""));
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap())
                .unwrap();
        assert_eq!(m["columns"]["adapter"]["metrics"]["accuracy"], json!(0.75));
        let lines = std::fs::read_to_string(dir.path().join(PREDICTIONS_FILE)).unwrap();
        assert_eq!(lines.lines().count(), 4);
        assert_eq!(r.ranked_examples()[0].1, 1.0);
    }

    #[test]
    fn per_task_table() {
        let mut r = sample();
        for (c, pred) in r.columns.iter_mut().zip([["No", "No"], ["Yes", "No"]]) {
            c.tasks.insert(
                "hearsay".into(),
                classification_report(&["Yes", "No"], &pred, None),
            );
            c.metrics.insert("accuracy/hearsay".into(), 0.0);
        }
        let md = r.report_md();
        assert!(md.contains("## Per task"), "{md}");
        assert!(
            md.contains("| hearsay | 2 | 2 | 0.5000 | 0.3333 | 1.0000 | 1.0000 |"),
            "{md}"
        );
        assert!(!r.headline_metrics().iter().any(|m| m.contains('/')));
        assert!(r.report_html().contains("<h2>Per task</h2>"));
        assert!(
            r.metrics_json()["columns"]["adapter"]["tasks"]["hearsay"]["accuracy"] == json!(1.0)
        );
    }

    #[test]
    fn general_section() {
        let mut r = sample();
        r.general = Some(crate::general::general_report(
            "mcq.csv",
            3,
            &[
                ("base".into(), vec![true, true, false, false]),
                ("adapter".into(), vec![true, false, false, false]),
            ],
        ));
        let md = r.report_md();
        assert!(md.contains("| base | 0.5000 |"), "{md}");
        assert!(md.contains("adapter - base: -0.2500"), "{md}");
        let html = r.report_html();
        assert!(html.contains("<h2>General ability</h2>"));
        assert_eq!(r.metrics_json()["general"]["shots"], json!(3));
    }

    #[test]
    fn base64_known() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }
}

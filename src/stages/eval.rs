//! Registers the `eval` stage kind: a train stage's adapter + a rendered test
//! table -> `report/` (metrics.json, predictions.jsonl, report.md, report.html),
//! metrics and CI gates for the run record.
//!
//! Recipe: `report: {kind: eval, from: [adapter, chat.test], metrics: [rouge, bleu],
//! compare_base: true, gates: {rougeL: ">= 0.30"}}`.

use pipe_eval::EvalError;

use pipe_eval::stage::{
    EVAL_CODE_VERSION, EvalInputs, EvalParams, Progress as EvalProgress, System, run_eval,
};
use pipe_pipeline::stage::{
    GateResult, Input, PlanEnv, Progress, Registry, RunContext, Stage, StageError, StagePlan,
    StageReport,
};
use serde_json::Value;
use std::path::PathBuf;

/// Builtin models have no files to hash: their version enters the params instead.
const BUILTIN_VERSION_KEY: &str = "_builtin_version";

fn params_error(e: EvalError) -> StageError {
    match &e {
        EvalError::Gate { metric, .. } => {
            let key = format!("gates.{metric}");
            StageError::params(e.to_string()).with_key(key)
        }
        EvalError::UnknownMetric { .. } => StageError::params(e.to_string()).with_key("metrics"),
        _ => StageError::params(e.to_string()),
    }
}

fn run_error(e: EvalError) -> StageError {
    match e {
        e @ (EvalError::Input { .. } | EvalError::Io { .. } | EvalError::Line { .. }) => {
            StageError::input(e.to_string())
        }
        e @ (EvalError::Gate { .. } | EvalError::UnknownMetric { .. } | EvalError::Invalid(_)) => {
            params_error(e)
        }
        e => StageError::failed(e.to_string()),
    }
}

struct ProgressBridge<'a>(&'a dyn Progress);

impl EvalProgress for ProgressBridge<'_> {
    fn set_total(&self, total: u64, unit: &str) {
        self.0.set_total(total, unit);
    }
    fn inc(&self, delta: u64) {
        self.0.inc(delta);
    }
    fn message(&self, msg: &str) {
        self.0.message(msg);
    }
}

struct Eval;

impl Eval {
    /// The folder holding the rendered `name` table (`test`, `train`) of a non-train input.
    fn table_dir<'a>(input: &'a Input, name: &str) -> &'a std::path::Path {
        if input.output.is_some() {
            input.primary()
        } else {
            input.get(name).unwrap_or_else(|| input.primary())
        }
    }
}

/// Whether `from:` reference `reference` (`chat.train` or `chat`) names this input.
fn names_input(reference: &str, stage: &str, output: Option<&str>) -> bool {
    match reference.split_once('.') {
        Some((s, o)) => s == stage && output == Some(o),
        None => reference == stage,
    }
}

impl Stage for Eval {
    fn kind(&self) -> &'static str {
        "eval"
    }

    fn code_version(&self) -> u32 {
        EVAL_CODE_VERSION
    }

    fn about(&self) -> &'static str {
        "generate on the test split with base and adapter; ROUGE/BLEU/chrF/accuracy/F1, report and CI gates"
    }

    fn params_schema(&self) -> Value {
        crate::stages::schema::<EvalParams>()
    }

    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let mut p: EvalParams = crate::stages::parse_params(params)?;
        p.validate().map_err(params_error)?;
        let trains: Vec<_> = env.inputs.iter().filter(|i| i.kind == "train").collect();
        let shots_from = p.compare_prompted.as_ref().map(|c| c.from.as_str());
        if let Some(r) = shots_from {
            let Some(input) = env
                .inputs
                .iter()
                .find(|i| names_input(r, &i.stage, i.output.as_deref()))
            else {
                return Err(StageError::params(format!(
                    "`compare_prompted.from: {r}` is not listed in `from`"
                ))
                .with_key("compare_prompted.from")
                .with_hint(format!("add it: `from: [adapter, chat.test, {r}]`")));
            };
            if input.kind != "render" {
                return Err(StageError::params(format!(
                    "`{r}` is a {} stage; the shots must be rendered with the test prompts' template",
                    input.kind
                ))
                .with_key("compare_prompted.from")
                .with_hint("name the render stage's training table, e.g. `chat.train`"));
            }
        }
        let tables: Vec<_> = env
            .inputs
            .iter()
            .filter(|i| {
                i.kind != "train"
                    && !shots_from.is_some_and(|r| names_input(r, &i.stage, i.output.as_deref()))
            })
            .collect();
        if trains.is_empty() || tables.len() != 1 {
            return Err(StageError::params(format!(
                "eval takes one or more train stages and one rendered test table in `from`, got {}",
                env.inputs.iter().map(|i| format!("{} ({})", i.stage, i.kind)).collect::<Vec<_>>().join(", ")
            ))
            .with_key("from")
            .with_hint("for example `from: [adapter, chat.test]` (a train stage and the render stage's test output)"));
        }
        if tables[0].kind != "render" {
            return Err(StageError::params(format!(
                "`{}` is a {} stage; eval reads rendered prompts from a render stage",
                tables[0].stage, tables[0].kind
            ))
            .with_key("from")
            .with_hint("render the test split first, e.g. `chat: {kind: render, from: split}` then `from: [adapter, chat.test]`"));
        }
        for c in &p.compare {
            if !trains.iter().any(|t| &t.stage == c) {
                return Err(StageError::params(format!(
                    "`{c}` in `compare` is not a train stage listed in `from`"
                ))
                .with_key("compare"));
            }
        }
        if trains
            .iter()
            .filter(|t| !p.compare.contains(&t.stage))
            .count()
            != 1
        {
            return Err(StageError::params(
                "exactly one train stage in `from` must be the adapter under test; list the others in `compare`",
            )
            .with_key("compare"));
        }
        let mut files = Vec::new();
        if let Some(g) = &p.general {
            let path = env.recipe_dir.join(&g.path);
            if !path.is_file() {
                return Err(StageError::params(format!(
                    "general-ability file {} not found",
                    path.display()
                ))
                .with_key("general.path")
                .with_hint("a CSV or JSONL of questions, relative to the recipe"));
            }
            files.push(path);
        }
        let (reference, resolved) = crate::stages::plan_model(p.model.as_deref(), env)?;
        files.extend(resolved.files());
        p.model = Some(reference);
        p.seed = Some(p.seed.unwrap_or(env.seed));
        let mut canonical =
            serde_json::to_value(&p).map_err(|e| StageError::failed(e.to_string()))?;
        if matches!(resolved, pipe_model::ResolvedModel::Builtin { .. }) {
            canonical[BUILTIN_VERSION_KEY] = pipe_model::builtin::TINY_VERSION.into();
        }
        Ok(StagePlan {
            params: canonical,
            outputs: vec!["report".to_owned()],
            files,
        })
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let mut params = ctx.params.clone();
        if let Some(map) = params.as_object_mut() {
            map.remove(BUILTIN_VERSION_KEY);
        }
        let p: EvalParams = crate::stages::parse_params(&params)?;
        let reference = p.model.clone().unwrap_or_default();
        let model = pipe_model::resolve(&reference, ctx.recipe_dir)
            .map_err(|e| StageError::input(e.to_string()).with_key("model"))?;
        let adapter_dir = |i: &Input| i.get("adapter").unwrap_or_else(|| i.primary()).to_owned();
        let trains: Vec<&Input> = ctx.inputs.iter().filter(|i| i.kind == "train").collect();
        let shots_from = p.compare_prompted.as_ref().map(|c| c.from.as_str());
        let is_shots =
            |i: &Input| shots_from.is_some_and(|r| names_input(r, &i.stage, i.output.as_deref()));
        let table = ctx
            .inputs
            .iter()
            .find(|i| i.kind != "train" && !is_shots(i))
            .ok_or_else(|| StageError::input("eval needs a rendered test table in `from`"))?;
        let test_table = Eval::table_dir(table, "test").join(pipe_rows::RENDERED_FILE);
        let train_table = ctx
            .inputs
            .iter()
            .find(|i| is_shots(i))
            .map(|i| Eval::table_dir(i, "train").join(pipe_rows::RENDERED_FILE));
        if !test_table.is_file() {
            return Err(StageError::input(format!(
                "{} not found: `from` must name a render stage's output",
                test_table.display()
            )));
        }
        let under_test = trains
            .iter()
            .find(|t| !p.compare.contains(&t.stage))
            .ok_or_else(|| StageError::input("no train stage to evaluate in `from`"))?;
        let mut systems = Vec::new();
        let system = |name: &str, adapter_dir: Option<PathBuf>, few_shot: bool| System {
            name: name.to_owned(),
            adapter_dir,
            few_shot,
        };
        if p.compare_base {
            systems.push(system("base", None, false));
        }
        if p.compare_prompted.is_some() {
            systems.push(system("prompted", None, true));
        }
        for c in &p.compare {
            if let Some(t) = trains.iter().find(|t| &t.stage == c) {
                systems.push(system(c, Some(adapter_dir(t)), false));
            }
        }
        let primary = adapter_dir(under_test);
        systems.push(system("adapter", Some(primary.clone()), false));
        let svg = primary.join("loss.svg");
        let inputs = EvalInputs {
            stage_name: ctx.stage_name.to_owned(),
            model,
            systems,
            test_table,
            train_table,
            general_file: p.general.as_ref().map(|g| ctx.recipe_dir.join(&g.path)),
            loss_svg: svg.is_file().then_some(svg),
            seed: p.seed.unwrap_or(ctx.seed),
        };
        pipe_train::set_threads(p.threads.unwrap_or(ctx.threads));
        let out = run_eval(
            &inputs,
            &p,
            &ctx.output_dir("report"),
            &ProgressBridge(ctx.progress),
        )
        .map_err(run_error)?;
        let headline: Vec<String> = out
            .report
            .headline_metrics()
            .iter()
            .take(4)
            .filter_map(|m| {
                let v = out.metrics.get(m)?;
                let base = out.metrics.get(&format!("base_{m}"));
                Some(match base {
                    Some(b) => format!(
                        "{m} {} (base {})",
                        pipe_eval::score::fmt_metric(m, *v),
                        pipe_eval::score::fmt_metric(m, *b)
                    ),
                    None => format!("{m} {}", pipe_eval::score::fmt_metric(m, *v)),
                })
            })
            .collect();
        let failed = out.gates.iter().filter(|g| !g.passed).count();
        let mut summary = format!(
            "{} examples: {}",
            out.report.examples.len(),
            headline.join(", ")
        );
        if !out.gates.is_empty() {
            summary.push_str(&format!(
                "; gates {}/{} passed",
                out.gates.len() - failed,
                out.gates.len()
            ));
        }
        let mut report = StageReport {
            summary,
            ..Default::default()
        };
        report
            .stats
            .insert("examples".into(), out.report.examples.len().into());
        report
            .stats
            .insert("tokens_per_s".into(), out.tokens_per_s.into());
        report
            .stats
            .insert("headline_table".into(), out.report.headline_table().into());
        for (k, v) in &out.metrics {
            report.metrics.insert(k.clone(), (*v).into());
        }
        report.gates = out
            .gates
            .iter()
            .map(|g| GateResult {
                metric: g.metric.clone(),
                condition: g.condition.clone(),
                value: g.value,
                threshold: g.threshold,
                passed: g.passed,
            })
            .collect();
        Ok(report)
    }
}

pub fn register(registry: &mut Registry) {
    registry.add(Eval);
}

#[cfg(test)]
mod tests {
    use pipe_eval::prompted::{Shot, few_shot_prompt};
    use pipe_render::{RenderOptions, RenderStats, load_template, render_row};
    use pipe_rows::{Message, Row};

    fn row(turns: &[(&str, &str)]) -> Row {
        Row {
            messages: turns
                .iter()
                .map(|(role, text)| Message::new(*role, *text))
                .collect(),
            system: Some("You are a careful legal assistant.".into()),
            ..Row::default()
        }
    }

    /// The few-shot prompt assembled from rendered rows is what the template
    /// itself renders for the longer conversation (#9).
    #[test]
    fn few_shot_prompt_matches_the_template() {
        for name in ["chatml", "llama3", "qwen2", "smollm2", "phi3"] {
            let t = load_template(name, std::path::Path::new("."), None, None, None, None).unwrap();
            let opts = RenderOptions {
                system: None,
                prompt: None,
                on_prefix_mismatch: Default::default(),
            };
            let render = |r: &Row| render_row(&t, r, &opts, &mut RenderStats::default()).unwrap();
            let s1 = render(&row(&[("user", "Is it hearsay? A"), ("assistant", "Yes")]));
            let s2 = render(&row(&[("user", "Is it hearsay? B"), ("assistant", "No")]));
            let test = render(&row(&[("user", "Is it hearsay? C"), ("assistant", "No")]));
            let whole = render(&row(&[
                ("user", "Is it hearsay? A"),
                ("assistant", "Yes"),
                ("user", "Is it hearsay? B"),
                ("assistant", "No"),
                ("user", "Is it hearsay? C"),
                ("assistant", "No"),
            ]));
            fn shot(r: &pipe_rows::RenderedRow) -> Shot<'_> {
                Shot {
                    rendered: &r.rendered,
                    last_span: r.spans.last().copied(),
                    reference: &r.reference,
                }
            }
            let got = few_shot_prompt(&test.prompt, &[shot(&s1), shot(&s2)]);
            assert_eq!(got, whole.prompt, "template {name}");
        }
    }
}

//! From a checked recipe to a DAG of planned stages.
//!
//! Checks stage kinds, `from` references (stages and named outputs), cycles
//! (printed `a -> b -> a`), and calls each kind's [`Stage::plan`] in
//! topological order, so a stage knows its upstreams' output names.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result, closest};
use crate::recipe::{Recipe, Ref};
use crate::stage::{ErrorClass, InputSpec, PlanEnv, Registry, Stage, StageError, StagePlan};

/// A recipe whose every stage is planned.
pub struct Plan {
    pub recipe: Recipe,
    /// Stages in topological order (ties broken by file order).
    pub stages: Vec<PlannedStage>,
}

pub struct PlannedStage {
    pub name: String,
    pub kind: String,
    pub stage: Arc<dyn Stage>,
    pub from: Vec<Ref>,
    /// Index (into `Plan::stages`) of the upstream of each `from` reference.
    pub deps: Vec<usize>,
    pub inputs: Vec<InputSpec>,
    pub plan: StagePlan,
    /// `plan.files` resolved against the recipe folder.
    pub files: Vec<PathBuf>,
}

impl Plan {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// `name` and everything it depends on (for `--until`).
    pub fn ancestors_and_self(&self, i: usize) -> Vec<bool> {
        let mut keep = vec![false; self.stages.len()];
        let mut stack = vec![i];
        while let Some(j) = stack.pop() {
            if !keep[j] {
                keep[j] = true;
                stack.extend(self.stages[j].deps.iter().copied());
            }
        }
        keep
    }

    /// Look up a stage by name for the command line, with a suggestion.
    pub fn require(&self, name: &str, flag: &str) -> Result<usize> {
        self.index(name).ok_or_else(|| {
            let err = Error::usage(format!("`{flag} {name}`: the recipe has no stage `{name}`"));
            match closest(name, self.stages.iter().map(|s| s.name.as_str())) {
                Some(best) => err.with_hint(format!("did you mean `{best}`?")),
                None => err.with_hint(format!(
                    "stages: {}",
                    self.stages
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        })
    }
}

/// Turn a plan-time [`StageError`] into a recipe error pointing at the param.
pub fn plan_error(recipe: &Recipe, stage_name: &str, err: StageError) -> Error {
    let decl = recipe
        .stage(stage_name)
        .expect("planned stages come from the recipe");
    let loc = match &err.key {
        Some(key) => decl.node.locate(key).clone(),
        None => decl.name_loc.clone(),
    };
    let what = match (&err.key, err.class) {
        (Some(key), ErrorClass::Params) if !err.message.contains(key.as_str()) => {
            format!("{} (`{key}` in stage `{stage_name}`)", err.message)
        }
        _ => format!("{} in stage `{stage_name}`", err.message),
    };
    let mut e = Error::recipe(what, Some(loc));
    if let Some(h) = err.hint {
        e = e.with_hint(h);
    }
    e
}

pub fn plan(recipe: Recipe, registry: &Registry) -> Result<Plan> {
    let n = recipe.stages.len();
    let names: Vec<&str> = recipe.stages.iter().map(|s| s.name.as_str()).collect();
    let mut stage_impls = Vec::with_capacity(n);
    for decl in &recipe.stages {
        let Some(stage) = registry.get(&decl.kind) else {
            let kinds: Vec<&str> = registry.kinds().collect();
            let err = Error::recipe(
                format!(
                    "unknown stage kind `{}` in stage `{}`",
                    decl.kind, decl.name
                ),
                Some(decl.kind_loc.clone()),
            );
            return Err(match closest(&decl.kind, kinds.iter().copied()) {
                Some(best) => err.with_hint(format!("did you mean `{best}`?")),
                None => err.with_hint(format!("known kinds: {}", kinds.join(", "))),
            });
        };
        stage_impls.push(stage.clone());
    }
    // Resolve references to stage indices (file order).
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(n);
    for decl in &recipe.stages {
        let mut d = Vec::new();
        for r in &decl.from {
            let Some(j) = names.iter().position(|s| *s == r.stage) else {
                let err = Error::recipe(
                    format!(
                        "stage `{}` reads from `{r}`, but there is no stage `{}`",
                        decl.name, r.stage
                    ),
                    Some(r.loc.clone()),
                );
                return Err(match closest(&r.stage, names.iter().copied()) {
                    Some(best) => err.with_hint(format!("did you mean `{best}`?")),
                    None => err.with_hint(format!("stages in this recipe: {}", names.join(", "))),
                });
            };
            d.push(j);
        }
        deps.push(d);
    }
    let order = topo_order(&recipe, &deps)?;
    let mut position = vec![0; n];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut planned: Vec<PlannedStage> = Vec::with_capacity(n);
    for &i in &order {
        let decl = &recipe.stages[i];
        let mut inputs = Vec::new();
        for (r, &j) in decl.from.iter().zip(&deps[i]) {
            let up = &planned[position[j]];
            if let Some(out) = &r.output
                && !up.plan.outputs.contains(out)
            {
                return Err(Error::recipe(
                    format!(
                        "stage `{}` has no output `{out}` (referenced by stage `{}`)",
                        r.stage, decl.name
                    ),
                    Some(r.loc.clone()),
                )
                .with_hint(format!(
                    "`{}` ({}) writes: {}",
                    r.stage,
                    up.kind,
                    up.plan.outputs.join(", ")
                )));
            }
            inputs.push(InputSpec {
                stage: r.stage.clone(),
                kind: up.kind.clone(),
                output: r.output.clone(),
                outputs: up.plan.outputs.clone(),
            });
        }
        let env = PlanEnv {
            stage_name: &decl.name,
            recipe_dir: &recipe.dir,
            model: recipe.model.as_deref(),
            seed: recipe.seed,
            inputs: &inputs,
        };
        let stage = stage_impls[i].clone();
        let stage_plan = stage
            .plan(&decl.params, &env)
            .map_err(|e| plan_error(&recipe, &decl.name, e))?;
        if stage_plan.outputs.is_empty() {
            return Err(Error::recipe(
                format!("stage `{}` ({}) declares no outputs", decl.name, decl.kind),
                Some(decl.name_loc.clone()),
            ));
        }
        let files = stage_plan
            .files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    recipe.dir.join(f)
                }
            })
            .collect();
        planned.push(PlannedStage {
            name: decl.name.clone(),
            kind: decl.kind.clone(),
            stage,
            from: decl.from.clone(),
            deps: deps[i].iter().map(|&j| position[j]).collect(),
            inputs,
            plan: stage_plan,
            files,
        });
    }
    Ok(Plan {
        recipe,
        stages: planned,
    })
}

/// Kahn's algorithm with file order as the tie-break; on a cycle, find and
/// print one (`a -> b -> a`).
fn topo_order(recipe: &Recipe, deps: &[Vec<usize>]) -> Result<Vec<usize>> {
    let n = deps.len();
    let mut indegree: Vec<usize> = deps
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.sort();
            d.dedup();
            d.len()
        })
        .collect();
    let mut dependents: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, d) in deps.iter().enumerate() {
        let mut d = d.clone();
        d.sort();
        d.dedup();
        for j in d {
            dependents.entry(j).or_default().push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in dependents.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            indegree[k] -= 1;
            if indegree[k] == 0 {
                ready.insert(k);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk dependencies from a stage left in the cycle until one repeats.
    let start = (0..n)
        .find(|i| !order.contains(i))
        .expect("a stage is left");
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = *deps[cur]
            .iter()
            .find(|j| !order.contains(j))
            .expect("a stage in a cycle has an unresolved dependency");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.push(next);
            // Print in data-flow order: upstream -> downstream.
            cycle.reverse();
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| recipe.stages[i].name.as_str())
                .collect();
            let first = &recipe.stages[cycle[0]];
            return Err(Error::recipe(
                format!("the stages form a cycle: {}", names.join(" -> ")),
                Some(first.name_loc.clone()),
            )
            .with_hint("a stage cannot read, directly or not, from its own output; remove one `from` in the cycle"));
        }
        path.push(next);
        cur = next;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stage::{RunContext, StageReport};
    use serde_json::Value;

    /// A test-only kind: outputs `out` (or `params.outputs`), rejects the param `bad`.
    pub struct Echo;
    impl Stage for Echo {
        fn kind(&self) -> &'static str {
            "echo"
        }
        fn code_version(&self) -> u32 {
            1
        }
        fn about(&self) -> &'static str {
            "test"
        }
        fn plan(
            &self,
            params: &Value,
            _env: &PlanEnv<'_>,
        ) -> std::result::Result<StagePlan, StageError> {
            if params.get("bad").is_some() {
                return Err(StageError::params("unknown key `bad`")
                    .with_key("bad")
                    .with_hint("did you mean `bat`?"));
            }
            let outputs = params
                .get("outputs")
                .and_then(|o| serde_json::from_value(o.clone()).ok())
                .unwrap_or_else(|| vec!["out".to_string()]);
            Ok(StagePlan {
                params: params.clone(),
                outputs,
                files: vec![],
            })
        }
        fn run(&self, ctx: &RunContext<'_>) -> std::result::Result<StageReport, StageError> {
            if ctx.params.get("panic").is_some() {
                panic!("echo was told to panic");
            }
            std::fs::write(ctx.output_dir("out").join("x"), ctx.stage_name).unwrap();
            Ok(StageReport::default())
        }
    }

    fn plan_text(text: &str) -> Result<Plan> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.yaml");
        std::fs::write(&p, text).unwrap();
        let recipe = Recipe::load(&p, &[])?;
        let mut reg = Registry::new();
        reg.add(Echo);
        plan(recipe, &reg)
    }

    #[test]
    fn a_panicking_stage_fails_cleanly_and_publishes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.yaml");
        std::fs::write(
            &p,
            "stages:\n  a: {kind: echo}\n  b: {kind: echo, from: a, panic: true}\n",
        )
        .unwrap();
        let mut reg = Registry::new();
        reg.add(Echo);
        let plan = plan(Recipe::load(&p, &[]).unwrap(), &reg).unwrap();
        let cache = crate::cache::Cache::new(d.path().join(".pipe"));
        let memo = crate::filehash::FileMemo::in_memory();
        let opts = crate::run::RunOptions {
            jobs: 2,
            threads: 1,
            ..Default::default()
        };
        let summary = crate::run::run(&plan, &cache, &memo, &opts, &crate::run::Quiet).unwrap();
        let (stage, err) = summary.error.expect("b fails");
        assert_eq!(stage, "b");
        assert!(err.to_string().contains("echo was told to panic"), "{err}");
        assert_eq!(summary.stages.len(), 1);
        assert_eq!(
            std::fs::read_dir(d.path().join(".pipe/cache"))
                .unwrap()
                .count(),
            1
        );
    }

    fn plan_err(text: &str) -> Error {
        match plan_text(text) {
            Err(e) => e,
            Ok(_) => panic!("expected an error for {text}"),
        }
    }

    #[test]
    fn orders_topologically() {
        let p = plan_text("stages:\n  c: {kind: echo, from: [b, a]}\n  b: {kind: echo, from: a}\n  a: {kind: echo}\n").unwrap();
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(p.stages[2].deps, vec![1, 0]);
    }

    #[test]
    fn cycles_are_printed() {
        let err = plan_err(
            "stages:\n  a: {kind: echo, from: b}\n  b: {kind: echo, from: a}\n  c: {kind: echo}\n",
        );
        let msg = err.to_string();
        assert!(
            msg.contains("a -> b -> a") || msg.contains("b -> a -> b"),
            "{msg}"
        );
    }

    #[test]
    fn missing_refs_and_outputs_name_the_stages() {
        let err = plan_err("stages:\n  raw: {kind: echo}\n  b: {kind: echo, from: rwa}\n");
        assert!(err.to_string().contains("no stage `rwa`"), "{err}");
        assert_eq!(err.hint(), Some("did you mean `raw`?"));
        assert_eq!(err.loc().unwrap().line, 3);
        let err = plan_err(
            "stages:\n  split: {kind: echo, outputs: [train, test]}\n  b: {kind: echo, from: split.tset}\n",
        );
        assert!(err.to_string().contains("no output `tset`"), "{err}");
    }

    #[test]
    fn unknown_kind_and_plan_errors_point_at_the_recipe() {
        let err = plan_err("stages:\n  a: {kind: ehco}\n");
        assert_eq!(err.hint(), Some("did you mean `echo`?"));
        let err = plan_err("stages:\n  a:\n    kind: echo\n    bad: 1\n");
        let loc = err.loc().unwrap();
        assert_eq!((loc.line, loc.col), (4, 5));
        assert!(err.to_string().contains("stage `a`"), "{err}");
    }
}

//! The `command` stage kind: run a user's program with declared inputs and
//! outputs, cached like any other stage.
//!
//! ```yaml
//! clean: {kind: command, from: raw, run: "python scripts/clean.py {input} {output}",
//!         files: [scripts/clean.py]}
//! ```
//!
//! The command runs with `sh -c` in the recipe's folder. Placeholders (paths
//! are shell-quoted): `{input}` (first input's folder: the selected output, or
//! the upstream's primary one), `{inputs[N]}`, `{output}` (the first declared
//! output's folder), `{output.NAME}`, `{files[N]}`, `{scratch}`, `{seed}`,
//! `{threads}`. Other braces are left alone (`awk '{print $1}'` works).
//! `files` lists the scripts and data the command reads (globs expand in
//! sorted order); their content is part of the cache key, so editing
//! `clean.py` reruns the stage. Every declared output must be written.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::closest;
use crate::stage::{PlanEnv, RunContext, Stage, StageError, StagePlan, StageReport};

pub const COMMAND_CODE_VERSION: u32 = 1;

/// Lines of the command's stderr shown when it fails.
const TAIL_LINES: usize = 20;

/// Params of a `command` stage.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// The shell command, with placeholders such as `{input}` and `{output}`.
    pub run: String,
    /// Named outputs, first is primary (default `[out]`).
    #[serde(default = "CommandParams::default_outputs")]
    pub outputs: Vec<String>,
    /// Files the command reads (scripts, data), relative to the recipe; globs allowed.
    #[serde(default)]
    pub files: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Gates on the numbers the command writes to `metrics.json` in its first
    /// output, e.g. `{accuracy: ">= 0.8"}`; a failed gate makes `pipe run` exit 3.
    #[serde(default)]
    pub gates: BTreeMap<String, String>,
}

impl CommandParams {
    fn default_outputs() -> Vec<String> {
        vec!["out".into()]
    }
}

const FIELDS: &[&str] = &["run", "outputs", "files", "env", "gates"];

/// Metrics file a command may write into its first output.
pub const METRICS_FILE: &str = "metrics.json";

/// Runs a shell command; see the module docs.
pub struct CommandStage;

impl Stage for CommandStage {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn code_version(&self) -> u32 {
        COMMAND_CODE_VERSION
    }

    fn about(&self) -> &'static str {
        "run a shell command with {input}/{output} folders; cached by its command text, inputs and `files`"
    }

    fn params_schema(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "required": ["run"],
            "additionalProperties": false,
            "properties": {
                "run": {"type": "string", "description": "The shell command (sh -c, in the recipe's folder). Placeholders: {input}, {inputs[N]}, {output}, {output.NAME}, {files[N]}, {scratch}, {seed}, {threads}."},
                "outputs": {"type": "array", "items": {"type": "string"}, "default": ["out"], "description": "Named outputs, first is primary; each must be written."},
                "files": {"type": "array", "items": {"type": "string"}, "default": [], "description": "Files the command reads (scripts, data), relative to the recipe; globs allowed. Hashed into the cache key."},
                "env": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}, "description": "Extra environment variables."},
                "gates": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}, "description": "Checks on the numbers the command writes to metrics.json in its first output, e.g. {accuracy: \">= 0.8\"}; a failed gate makes `pipe run` exit 3."}
            }
        })
    }

    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        if let Some(map) = params.as_object() {
            for k in map.keys() {
                if !FIELDS.contains(&k.as_str()) {
                    let err = StageError::params(format!("unknown key `{k}`")).with_key(k.clone());
                    return Err(match closest(k, FIELDS.iter().copied()) {
                        Some(best) => err.with_hint(format!("did you mean `{best}`?")),
                        None => err.with_hint(format!("valid keys here: {}", FIELDS.join(", "))),
                    });
                }
            }
        }
        let p: CommandParams = serde_path_to_error::deserialize(params).map_err(|e| {
            let path = e.path().to_string();
            let err = StageError::params(e.into_inner().to_string()).with_hint(
                "a command stage needs `run: \"...\"`; `outputs`, `files` and `env` are optional",
            );
            if path.is_empty() || path == "." {
                err
            } else {
                err.with_key(path)
            }
        })?;
        if p.outputs.is_empty() {
            return Err(StageError::params("`outputs` is empty").with_key("outputs"));
        }
        for (i, o) in p.outputs.iter().enumerate() {
            if o.is_empty() || o.contains(['/', '\\', '.']) {
                return Err(StageError::params(format!(
                    "output name `{o}` may not be empty or contain `/` or `.`"
                ))
                .with_key(format!("outputs[{i}]")));
            }
        }
        let mut files = Vec::new();
        for (i, pattern) in p.files.iter().enumerate() {
            let full = env.recipe_dir.join(pattern);
            let matched = expand(&full).map_err(|e| {
                StageError::params(format!("bad glob `{pattern}`: {e}"))
                    .with_key(format!("files[{i}]"))
            })?;
            if matched.is_empty() {
                return Err(StageError::input(format!("`{pattern}` matches no file"))
                    .with_key(format!("files[{i}]"))
                    .with_hint("paths are relative to the recipe's folder"));
            }
            files.extend(matched);
        }
        for (metric, condition) in &p.gates {
            parse_condition(condition).map_err(|e| {
                StageError::params(format!("gate `{metric}: {condition}`: {e}"))
                    .with_key(format!("gates.{metric}"))
                    .with_hint("write a comparison and a number, e.g. `>= 0.8`")
            })?;
        }
        let canonical = serde_json::to_value(&p).expect("params serialize");
        check_placeholders(&p, env.inputs.len(), files.len())?;
        Ok(StagePlan {
            params: canonical,
            outputs: p.outputs,
            files,
        })
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let p: CommandParams = serde_json::from_value(ctx.params.clone())
            .map_err(|e| StageError::params(format!("invalid `command` params: {e}")))?;
        let script = substitute(&p, ctx);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&script)
            .current_dir(ctx.recipe_dir)
            .env("PIPE_SEED", ctx.seed.to_string())
            .env("PIPE_THREADS", ctx.threads.to_string())
            .envs(&p.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        ctx.progress.message(&script);
        let mut child = cmd
            .spawn()
            .map_err(|e| StageError::failed(format!("cannot start `sh`: {e}")).with_source(e))?;
        // Drain both pipes concurrently so a chatty command never blocks.
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out_thread = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stdout.read_to_end(&mut b);
            b
        });
        let mut err_bytes = Vec::new();
        let _ = stderr.read_to_end(&mut err_bytes);
        let out_bytes = out_thread.join().unwrap_or_default();
        let status = child
            .wait()
            .map_err(|e| StageError::failed(format!("waiting for the command: {e}")))?;
        if !status.success() {
            let tail = tail(&err_bytes, TAIL_LINES);
            let tail = if tail.is_empty() {
                self::tail(&out_bytes, TAIL_LINES)
            } else {
                tail
            };
            let code = status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "a signal".into());
            let mut msg = format!("command `{}` ended with {code}", p.run);
            if !tail.is_empty() {
                msg.push_str("\n--- last lines of its output ---\n");
                msg.push_str(&tail);
            }
            return Err(StageError::failed(msg).with_hint(
                "run the command by hand in the recipe's folder to debug it; nothing was cached",
            ));
        }
        let mut total = 0u64;
        let mut nfiles = 0u64;
        for o in &p.outputs {
            let dir = ctx.output_dir(o);
            let mut rels = Vec::new();
            let _ = crate::filehash::walk_files(&dir, &dir, &mut rels);
            if rels.is_empty() {
                return Err(StageError::failed(format!(
                    "the command wrote nothing into its declared output `{o}`"
                ))
                .with_hint(format!(
                    "write files into {{output.{o}}} (or {{output}} for the first output)"
                )));
            }
            nfiles += rels.len() as u64;
            total += rels
                .iter()
                .map(|r| dir.join(r).metadata().map(|m| m.len()).unwrap_or(0))
                .sum::<u64>();
        }
        let mut report = StageReport {
            summary: format!("{nfiles} files, {total} bytes"),
            ..Default::default()
        };
        report.stats.insert("files".into(), nfiles.into());
        report.stats.insert("bytes".into(), total.into());
        let metrics_path = ctx.output_dir(&p.outputs[0]).join(METRICS_FILE);
        if metrics_path.exists() {
            let text = std::fs::read_to_string(&metrics_path).map_err(|e| {
                StageError::failed(format!("cannot read {}: {e}", metrics_path.display()))
            })?;
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) else {
                return Err(StageError::failed(format!(
                    "{METRICS_FILE} written by the command is not a JSON object"
                ))
                .with_hint("write e.g. {\"accuracy\": 0.83}"));
            };
            report.metrics = map;
        }
        for (metric, condition) in &p.gates {
            let (op, threshold) = parse_condition(condition).map_err(StageError::params)?;
            let Some(value) = report.metrics.get(metric).and_then(Value::as_f64) else {
                return Err(StageError::failed(format!(
                    "gate on `{metric}`: the command wrote no number `{metric}` into {{output}}/{METRICS_FILE}"
                )));
            };
            let passed = match op {
                ">=" => value >= threshold,
                "<=" => value <= threshold,
                ">" => value > threshold,
                "<" => value < threshold,
                _ => value == threshold,
            };
            report.gates.push(crate::stage::GateResult {
                metric: metric.clone(),
                condition: condition.clone(),
                value,
                threshold,
                passed,
            });
        }
        Ok(report)
    }
}

/// `>= 0.8` -> (">=", 0.8).
fn parse_condition(condition: &str) -> Result<(&'static str, f64), String> {
    let c = condition.trim();
    for op in [">=", "<=", "==", ">", "<"] {
        if let Some(rest) = c.strip_prefix(op) {
            return rest
                .trim()
                .parse::<f64>()
                .map(|v| (op, v))
                .map_err(|_| format!("`{}` is not a number", rest.trim()));
        }
    }
    Err("expected one of >=, <=, ==, >, < followed by a number".into())
}

fn expand(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let text = pattern.to_string_lossy();
    if !text.contains(['*', '?', '[']) {
        return Ok(if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            vec![]
        });
    }
    let mut out: Vec<PathBuf> = glob::glob(&text)
        .map_err(|e| e.to_string())?
        .filter_map(|r| r.ok())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

fn quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Placeholders that index past the inputs or files are recipe errors, caught at plan time.
fn check_placeholders(
    p: &CommandParams,
    n_inputs: usize,
    n_files: usize,
) -> Result<(), StageError> {
    let mut rest = p.run.as_str();
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        let bad = if name == "input" {
            (n_inputs == 0).then(|| "`{input}` is used but the stage has no `from`".to_string())
        } else if let Some(n) = name
            .strip_prefix("inputs[")
            .and_then(|r| r.strip_suffix(']'))
        {
            match n.parse::<usize>() {
                Ok(i) if i < n_inputs => None,
                _ => Some(format!("`{{{name}}}`: the stage has {n_inputs} inputs")),
            }
        } else if let Some(n) = name
            .strip_prefix("files[")
            .and_then(|r| r.strip_suffix(']'))
        {
            match n.parse::<usize>() {
                Ok(i) if i < n_files => None,
                _ => Some(format!("`{{{name}}}`: `files` matched {n_files} files")),
            }
        } else if let Some(o) = name.strip_prefix("output.") {
            (!p.outputs.iter().any(|x| x == o)).then(|| {
                format!(
                    "`{{{name}}}`: no declared output `{o}` (outputs: {})",
                    p.outputs.join(", ")
                )
            })
        } else {
            None
        };
        if let Some(msg) = bad {
            return Err(StageError::params(msg).with_key("run"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

fn substitute(p: &CommandParams, ctx: &RunContext<'_>) -> String {
    let mut out = String::new();
    let mut rest = p.run.as_str();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        let input = |i: usize| ctx.inputs.get(i).map(|inp| quote(inp.primary()));
        let value = match name {
            "input" => input(0),
            "output" => Some(quote(&ctx.output_dir(&p.outputs[0]))),
            "scratch" => Some(quote(ctx.scratch_dir)),
            "seed" => Some(ctx.seed.to_string()),
            "threads" => Some(ctx.threads.to_string()),
            _ => {
                if let Some(n) = name
                    .strip_prefix("inputs[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    n.parse().ok().and_then(input)
                } else if let Some(n) = name
                    .strip_prefix("files[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    n.parse::<usize>()
                        .ok()
                        .and_then(|i| ctx.files.get(i))
                        .map(|f| quote(f))
                } else {
                    name.strip_prefix("output.")
                        .filter(|o| p.outputs.iter().any(|x| x == o))
                        .map(|o| quote(&ctx.output_dir(o)))
                }
            }
        };
        match value {
            Some(v) => out.push_str(&v),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{InputSpec, NoProgress};
    use serde_json::json;

    fn env<'a>(dir: &'a Path, inputs: &'a [InputSpec]) -> PlanEnv<'a> {
        PlanEnv {
            stage_name: "s",
            recipe_dir: dir,
            model: None,
            seed: 7,
            inputs,
        }
    }

    #[test]
    fn plan_checks_keys_globs_and_placeholders() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.py"), "").unwrap();
        std::fs::write(d.path().join("a.py"), "").unwrap();
        let e = env(d.path(), &[]);
        let err = CommandStage
            .plan(&json!({"run": "x", "output": ["a"]}), &e)
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("output"));
        assert_eq!(err.hint.as_deref(), Some("did you mean `outputs`?"));
        let plan = CommandStage
            .plan(&json!({"run": "x {output}", "files": ["*.py"]}), &e)
            .unwrap();
        assert_eq!(
            plan.files,
            vec![d.path().join("a.py"), d.path().join("b.py")]
        );
        assert_eq!(plan.outputs, vec!["out"]);
        assert_eq!(plan.params["outputs"], json!(["out"]));
        let err = CommandStage
            .plan(&json!({"run": "x", "files": ["*.rs"]}), &e)
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("files[0]"));
        let err = CommandStage
            .plan(&json!({"run": "cat {input}"}), &e)
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("run"));
        let err = CommandStage.plan(&json!({"rn": "x"}), &e).unwrap_err();
        assert_eq!(err.hint.as_deref(), Some("did you mean `run`?"));
    }

    #[test]
    fn runs_and_reports_failures_with_stderr_tail() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        std::fs::create_dir_all(out.join("out")).unwrap();
        let params = json!({"run": "printf '%s' {seed} > {output}/x; awk 'BEGIN {print 1}' >/dev/null", "outputs": ["out"], "files": [], "env": {}});
        let ctx = RunContext {
            stage_name: "s",
            params: &params,
            recipe_dir: d.path(),
            seed: 7,
            inputs: vec![],
            files: vec![],
            out_dir: &out,
            scratch_dir: d.path(),
            threads: 1,
            progress: &NoProgress,
        };
        let report = CommandStage.run(&ctx).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("out/x")).unwrap(), "7");
        assert_eq!(report.stats["files"], 1);
        let params =
            json!({"run": "echo boom >&2; exit 3", "outputs": ["out"], "files": [], "env": {}});
        let ctx = RunContext {
            params: &params,
            ..ctx
        };
        let err = CommandStage.run(&ctx).unwrap_err();
        assert!(
            err.message.contains("exit code 3") && err.message.contains("boom"),
            "{}",
            err.message
        );
        let params = json!({"run": "true", "outputs": ["out", "other"], "files": [], "env": {}});
        let ctx = RunContext {
            params: &params,
            ..ctx
        };
        let err = CommandStage.run(&ctx).unwrap_err();
        assert!(err.message.contains("`other`"), "{}", err.message);
    }
}

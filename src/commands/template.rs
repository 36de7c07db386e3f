//! `pipe template render` and `pipe lint-template`: debug a chat template
//! without running a recipe.

use std::io::Read;
use std::path::{Path, PathBuf};

use pipe_pipeline::error::Error;
use pipe_pipeline::stage::Registry;
use pipe_render::{ModelTemplate, RenderParams, lint_template, load_template};
use serde_json::Value;

use super::resolve_model;

#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Print the exact rendering of one conversation.
    Render(RenderArgs),
    /// List the project's templates.
    List,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// A project template (chatml, llama3, ...), a `.jinja` file, or `model` (the model's own).
    #[arg(long, short = 't')]
    pub template: String,
    /// The model whose template and BOS/EOS tokens to use (`builtin:tiny`, a folder, a .gguf, a hub id).
    #[arg(long)]
    pub model: Option<String>,
    /// JSON file: a list of `{role, content}` messages, or `{"messages": [...], "tools": [...]}`; `-` reads stdin.
    #[arg(long)]
    pub messages: PathBuf,
    /// Append the assistant header, as for generation (`add_generation_prompt=True`).
    #[arg(long)]
    pub generation_prompt: bool,
    /// JSON file with a list of tool schemas.
    #[arg(long)]
    pub tools: Option<PathBuf>,
    /// BOS text (default: the model's, else the template's usual one).
    #[arg(long)]
    pub bos: Option<String>,
    /// EOS text (default: the model's, else the template's usual one).
    #[arg(long)]
    pub eos: Option<String>,
    /// The date `strftime_now` sees, YYYY-MM-DD (default: pipe's fixed render date).
    #[arg(long)]
    pub date: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// The recipe whose render stages to check.
    pub recipe: PathBuf,
    /// Override a value, as for `pipe run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

pub fn run(command: &TemplateCommand) -> Result<i32, Error> {
    match command {
        TemplateCommand::Render(args) => {
            print!("{}", render(args)?);
            Ok(0)
        }
        TemplateCommand::List => {
            for name in pipe_render::resolve::TEMPLATE_NAMES {
                println!("{name}");
            }
            Ok(0)
        }
    }
}

fn read_input(path: &Path, what: &str) -> Result<String, Error> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::io(format!("cannot read {what} from"), "stdin", e))?;
        return Ok(s);
    }
    super::read_text(path, what)
}

/// The rendering `pipe template render` prints.
pub fn render(args: &RenderArgs) -> Result<String, Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read", ".", e))?;
    let model = match &args.model {
        Some(reference) => Some(model_template(reference, &cwd)?),
        None if args.template == "model" => {
            return Err(Error::usage("`--template model` needs `--model`")
                .with_hint("e.g. `--model builtin:tiny` or `--model path/to/model.gguf`"));
        }
        None => None,
    };
    let template = load_template(
        &args.template,
        &cwd,
        model.as_ref(),
        args.bos.as_deref(),
        args.eos.as_deref(),
        args.date.as_deref(),
    )
    .map_err(|e| Error::usage(e.to_string()))?;

    let text = read_input(&args.messages, "messages")?;
    let parsed: Value = serde_json::from_str(&text).map_err(|e| {
        Error::usage(format!("{}: not JSON: {e}", args.messages.display()))
            .with_hint("give a list of {\"role\": ..., \"content\": ...} objects")
    })?;
    let (messages, mut tools) = match &parsed {
        Value::Array(_) => (parsed.clone(), None),
        Value::Object(o) => match o.get("messages") {
            Some(m) => (m.clone(), o.get("tools").cloned()),
            None => {
                return Err(Error::usage(format!(
                    "{}: an object needs a `messages` list",
                    args.messages.display()
                )));
            }
        },
        _ => {
            return Err(Error::usage(format!(
                "{}: expected a list of messages",
                args.messages.display()
            )));
        }
    };
    if let Some(path) = &args.tools {
        let t = read_input(path, "tools")?;
        tools = Some(
            serde_json::from_str(&t)
                .map_err(|e| Error::usage(format!("{}: not JSON: {e}", path.display())))?,
        );
    }
    let tools_json = tools.map(|t| t.to_string());
    template
        .render_json(
            &messages.to_string(),
            tools_json.as_deref(),
            args.generation_prompt,
        )
        .map_err(|e| Error::usage(e.to_string()))
}

fn model_template(reference: &str, base: &Path) -> Result<ModelTemplate, Error> {
    let resolved = resolve_model(reference, base)?;
    crate::stages::render::template_of_model(&resolved).map_err(|e| Error::usage(e.to_string()))
}

/// `pipe lint-template RECIPE`: every render stage's template, as planned.
/// Exit 0 when clean, 1 when there are warnings.
pub fn lint(args: &LintArgs, registry: &Registry) -> Result<i32, Error> {
    let recipe = pipe_pipeline::recipe::Recipe::load(&args.recipe, &args.sets)?;
    let plan = pipe_pipeline::plan::plan(recipe, registry)?;
    let mut total = 0;
    let mut renders = 0;
    for stage in plan.stages.iter().filter(|s| s.kind == "render") {
        renders += 1;
        let p: RenderParams = crate::stages::parse_params(&stage.plan.params)
            .map_err(|e| Error::usage(format!("stage `{}`: {}", stage.name, e.message)))?;
        let template = crate::stages::render::planned_template(&p, &plan.recipe.dir)
            .map_err(|e| Error::usage(format!("stage `{}`: {}", stage.name, e.message)))?;
        // Whether tokenization adds a BOS of its own decides the double-BOS check.
        let model = p.model.as_deref().or(plan.recipe.model.as_deref());
        let adds_bos = match model {
            Some(reference) => {
                let resolved = resolve_model(reference, &plan.recipe.dir)?;
                pipe_tokenize::load_tokenizer(&resolved)
                    .ok()
                    .map(|t| t.add_bos)
            }
            None => None,
        };
        let warnings = lint_template(&template, adds_bos);
        if warnings.is_empty() {
            println!("{}: template `{}`: ok", stage.name, template.name());
        }
        for w in &warnings {
            println!(
                "{}: template `{}`: warning[{}]: {}",
                stage.name,
                template.name(),
                w.code,
                w.message
            );
        }
        total += warnings.len();
    }
    if renders == 0 {
        return Err(Error::usage(format!(
            "{} has no render stage",
            args.recipe.display()
        )));
    }
    Ok(if total == 0 { 0 } else { 1 })
}

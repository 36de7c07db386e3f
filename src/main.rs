//! The `pipe` command line.
//!
//! Engine commands (`run`, `status`, `reproduce`, ...) are defined and executed
//! by `pipe_pipeline::cli`; the commands here need stage crates (scoring,
//! templates, merging) and so live in the binary, next to the stage registry.
//! Exit codes: 0 ok, 1 a stage failed, 2 usage or recipe error, 3 an
//! evaluation gate failed.

mod commands;
mod stages;

use clap::{Parser, Subcommand};
use pipe_pipeline::cli::{self as engine, GlobalArgs};

#[derive(Debug, Parser)]
#[command(
    name = "pipe",
    version,
    about = "Raw instruction data to a trained, evaluated LoRA adapter, reproducibly."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Engine(engine::Command),
    /// Score predictions made anywhere (BLEU, chrF, ROUGE, accuracy, F1), like sacrebleu's CLI.
    Score(commands::score::ScoreArgs),
    /// Work with chat templates without running a recipe.
    #[command(subcommand)]
    Template(commands::template::TemplateCommand),
    /// Check the chat templates of a recipe's render stages for common mistakes.
    LintTemplate(commands::template::LintArgs),
    /// Write a commented starter recipe for a data file.
    Init(commands::init::InitArgs),
    /// Fold a LoRA adapter into its base model and write a Hugging Face model folder.
    Merge(commands::merge::MergeArgs),
    /// Blind review of an eval stage's answers by experts: export a pack, import the scores.
    #[command(subcommand)]
    Review(commands::review::ReviewCommand),
}

fn main() {
    // Rust ignores SIGPIPE, which turns `pipe explain | head` into a panic on
    // the next print; a command-line tool should just stop.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let registry = stages::registry();
    let code = match cli.command {
        Command::Engine(command) => engine::execute(&cli.global, command, &registry),
        Command::Score(args) => engine::exit_code(commands::score::run(&args)),
        Command::Template(command) => engine::exit_code(commands::template::run(&command)),
        Command::LintTemplate(args) => {
            engine::exit_code(commands::template::lint(&args, &registry))
        }
        Command::Init(args) => engine::exit_code(commands::init::run(&args)),
        Command::Merge(args) => engine::exit_code(commands::merge::run(&cli.global, &args)),
        Command::Review(command) => engine::exit_code(commands::review::run(&cli.global, &command)),
    };
    std::process::exit(code);
}

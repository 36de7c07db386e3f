//! The `pipe` command line: builds the stage registry and hands over to the
//! engine's CLI (`pipe_pipeline::cli`), which parses arguments, runs the command,
//! prints errors with their place and hint, and picks the exit code
//! (0 ok, 1 a stage failed, 2 usage or recipe error, 3 an evaluation gate failed).

mod stages;

fn main() {
    let code = try_main();
    std::process::exit(code);
}

fn try_main() -> i32 {
    pipe_pipeline::cli::main(stages::registry())
}

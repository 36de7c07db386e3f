//! Records the git commit the engine is built from (for run records).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !commit.is_empty() {
        println!("cargo:rustc-env=PIPE_GIT_COMMIT={commit}");
    }
    // Rebuild (cheaply: this crate only) when HEAD moves.
    for p in ["../.git/HEAD", "../.git/refs/heads"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

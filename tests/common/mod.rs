//! A fresh folder per test and a runner for the real `pipe` binary.
//!
//! When an expectation fails, the panic message shows the command, its folder,
//! a listing of the folder, stdout and stderr, so a failure explains itself.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub struct Sandbox {
    dir: tempfile::TempDir,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    context: String,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("pipe-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap()
    }

    /// `pipe` with `args`, run in the sandbox, no inherited cache override.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
        c.args(args)
            .current_dir(self.path())
            .env_remove("PIPE_CACHE_DIR");
        c
    }

    pub fn pipe(&self, args: &[&str]) -> Output {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pipe");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            context: format!(
                "pipe {}\ncwd: {}\n{}",
                args.join(" "),
                self.path().display(),
                self.listing()
            ),
        }
    }

    /// Every path under the sandbox (except cache entry internals), for failure messages.
    pub fn listing(&self) -> String {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            let mut entries: Vec<_> = rd.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                out.push(p.strip_prefix(root).unwrap().display().to_string());
                if p.is_dir() && out.len() < 200 {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        format!("files:\n  {}", out.join("\n  "))
    }

    /// Names of the published cache entries.
    pub fn cache_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.join(".pipe/cache"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Output {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n--- command ---\n{}\n--- exit code {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.context, self.code, self.stdout, self.stderr
        );
    }

    pub fn success(self) -> Self {
        if self.code != 0 {
            self.fail("expected success");
        }
        self
    }

    pub fn code(self, code: i32) -> Self {
        if self.code != code {
            self.fail(&format!("expected exit code {code}"));
        }
        self
    }

    pub fn stderr_has(self, text: &str) -> Self {
        if !self.stderr.contains(text) {
            self.fail(&format!("stderr lacks {text:?}"));
        }
        self
    }

    pub fn stdout_has(self, text: &str) -> Self {
        if !self.stdout.contains(text) {
            self.fail(&format!("stdout lacks {text:?}"));
        }
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| self.fail(&format!("stdout is not JSON: {e}")))
    }

    /// From a `--json` summary: stage name -> status (`cached` / `ran`).
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.json()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn stage(&self, name: &str) -> Value {
        self.json()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| self.fail(&format!("no stage {name} in the summary")))
    }

    pub fn ran(&self) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter(|(_, s)| s == "ran")
            .map(|(n, _)| n)
            .collect()
    }
}

//! What `pipe run` shows while it works: a bar per running stage on a terminal,
//! plain lines (`clean: cached`, `clean: ran in 1.2s`) otherwise, and the final table.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Error;
use crate::record::short;
use crate::run::{Observer, RunSummary, StageOutcome, Status};
use crate::stage::{NoProgress, Progress};

/// Draws progress on stderr.
pub struct Reporter {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Reporter {
    /// `tty`: draw bars; otherwise print one plain line per event.
    pub fn new(tty: bool) -> Self {
        Self {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::default(),
        }
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn take_bar(&self, stage: &str) -> Option<ProgressBar> {
        self.bars.lock().expect("bars").remove(stage)
    }

    /// Clear any bars left (after a failure).
    pub fn finish(&self) {
        for (_, bar) in self.bars.lock().expect("bars").drain() {
            bar.finish_and_clear();
        }
    }
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn set_total(&self, total: u64, unit: &str) {
        self.0.set_length(total);
        self.0.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    }
    fn inc(&self, delta: u64) {
        self.0.inc(delta);
    }
    fn message(&self, msg: &str) {
        let msg: String = msg.chars().take(60).collect();
        self.0.set_message(msg);
    }
}

impl Observer for Reporter {
    fn started(&self, stage: &str) {
        match &self.multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>12} {spinner} {elapsed} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(stage.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars
                    .lock()
                    .expect("bars")
                    .insert(stage.to_owned(), bar);
            }
            None => eprintln!("{stage}: running"),
        }
    }

    fn waiting(&self, stage: &str) {
        self.line(&format!(
            "{stage}: waiting for another pipe run computing the same stage"
        ));
    }

    fn corrupt(&self, stage: &str, reason: &str, moved_to: &Path) {
        self.line(&format!(
            "warning: {stage}: cache entry is corrupt ({reason}); moved to {} and recomputing",
            moved_to.display()
        ));
    }

    fn finished(&self, o: &StageOutcome) {
        if let Some(bar) = self.take_bar(&o.name) {
            bar.finish_and_clear();
        }
        let line = match o.status {
            Status::Cached => format!("{}: cached", o.name),
            Status::Ran => format!("{}: ran in {:.1}s", o.name, o.seconds),
        };
        self.line(&line);
    }

    fn failed(&self, stage: &str, _err: &Error) {
        if let Some(bar) = self.take_bar(stage) {
            bar.finish_and_clear();
        }
        self.line(&format!("{stage}: failed"));
    }

    fn progress(&self, stage: &str) -> Arc<dyn Progress> {
        match self.bars.lock().expect("bars").get(stage) {
            Some(bar) => Arc::new(BarProgress(bar.clone())),
            None => Arc::new(NoProgress),
        }
    }
}

/// stage, kind, cached/ran, time, summary, output hash prefix.
pub fn print_table(summary: &RunSummary, out: &mut dyn Write) {
    let w = summary
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let k = summary
        .stages
        .iter()
        .map(|s| s.kind.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:w$}  {:k$}  {:6}  {:>7}  {:12}  summary",
        "stage", "kind", "status", "time", "output"
    );
    for s in &summary.stages {
        let _ = writeln!(
            out,
            "{:w$}  {:k$}  {:6}  {:>6.1}s  {:12}  {}",
            s.name,
            s.kind,
            s.status.as_str(),
            s.seconds,
            short(&s.manifest.output_hash),
            s.manifest.report.summary
        );
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

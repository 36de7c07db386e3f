//! `pipe status`: what would rerun and why, without running or writing anything.
//!
//! For each stage in topological order: if every upstream is cached, the key
//! can be computed and looked up; otherwise the stage will run (unless its
//! upstream reproduces its old output, which only running can tell). Reasons
//! compare the stage's key parts with the newest run record of the same recipe
//! that has the stage.

use crate::cache::{Cache, Lookup};
use crate::error::Result;
use crate::filehash::FileMemo;
use crate::plan::Plan;
use crate::record::{RunRecord, explain_parts};
use crate::run::{StageOutcome, Status, file_parts, inputs_of, key_parts};

#[derive(Debug, Clone, serde::Serialize)]
pub struct StageStatus {
    pub name: String,
    pub kind: String,
    pub cached: bool,
    /// Known when every upstream is cached.
    pub key: Option<String>,
    pub reasons: Vec<String>,
}

/// `records`: past runs, newest first (only those of this recipe are consulted).
pub fn status(
    plan: &Plan,
    cache: &Cache,
    memo: &FileMemo,
    records: &[RunRecord],
) -> Result<Vec<StageStatus>> {
    let recipe = &plan.recipe;
    let mine: Vec<&RunRecord> = records
        .iter()
        .filter(|r| r.is_recipe(&recipe.dir, &recipe.path))
        .collect();
    let mut known: Vec<Option<StageOutcome>> = vec![None; plan.stages.len()];
    let mut out = Vec::new();
    for (i, ps) in plan.stages.iter().enumerate() {
        let previous = mine.iter().find_map(|r| r.stage(&ps.name));
        let files = file_parts(ps, &recipe.dir, memo)?;
        let upstream: Option<Vec<&StageOutcome>> =
            ps.deps.iter().map(|&d| known[d].as_ref()).collect();
        let mut reasons = Vec::new();
        let Some(upstream) = upstream else {
            // Key unknown: compare what we can (params, code, files) and name the upstreams.
            for &d in &ps.deps {
                if known[d].is_none() {
                    let line = format!("upstream {} will run", plan.stages[d].name);
                    if !reasons.contains(&line) {
                        reasons.push(line);
                    }
                }
            }
            if let Some(prev) = previous {
                // Inputs are not known yet; compare everything else.
                let parts = key_parts(ps, prev.parts.inputs.clone(), files);
                reasons.extend(explain_parts(&ps.name, &prev.parts, &parts));
            }
            out.push(StageStatus {
                name: ps.name.clone(),
                kind: ps.kind.clone(),
                cached: false,
                key: None,
                reasons,
            });
            continue;
        };
        let (input_parts, _) = inputs_of(ps, &upstream);
        let parts = key_parts(ps, input_parts, files);
        let key = parts.key();
        match cache.lookup(&key, false) {
            Lookup::Hit(manifest) => {
                known[i] = Some(StageOutcome {
                    name: ps.name.clone(),
                    kind: ps.kind.clone(),
                    status: Status::Cached,
                    key: key.clone(),
                    parts,
                    out_dir: cache.out_dir(&key),
                    manifest: *manifest,
                    seconds: 0.0,
                });
                out.push(StageStatus {
                    name: ps.name.clone(),
                    kind: ps.kind.clone(),
                    cached: true,
                    key: Some(key),
                    reasons,
                });
                continue;
            }
            Lookup::Corrupt(why) => reasons.push(format!(
                "cache entry is corrupt ({why}); it will be moved aside and recomputed"
            )),
            Lookup::Miss => {}
        }
        match previous {
            None => reasons.push("never run".into()),
            Some(prev) => {
                let lines = explain_parts(&ps.name, &prev.parts, &parts);
                if lines.is_empty() && reasons.is_empty() {
                    reasons.push(format!(
                        "no cache entry for key {}.. (removed by `pipe gc`?)",
                        &key[..12]
                    ));
                }
                reasons.extend(lines);
            }
        }
        out.push(StageStatus {
            name: ps.name.clone(),
            kind: ps.kind.clone(),
            cached: false,
            key: Some(key),
            reasons,
        });
    }
    Ok(out)
}

//! `split`: deterministic train/test(/validation) assignment by a hash of the
//! normalized row and the recipe seed, so appending rows never moves existing
//! ones; an optional stratified mode and a fixed test set from files; and a
//! leakage check of test rows against train.

use std::collections::BTreeMap;
use std::path::Path;

use pipe_rows::Row;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::dedup::{DedupParams, NearParams, cross_duplicates};
use crate::ingest::{IngestParams, ingest};

/// 2: `rows.parquet` of more than one row group has ~1 MiB pages (pipe-rows writes group by group).
pub const SPLIT_CODE_VERSION: u32 = 2;

fn default_test() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

/// What stratification groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stratum {
    Label,
    Task,
}

/// Leakage check settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakageParams {
    /// Also look for near duplicates (MinHash LSH, verified at the LSH threshold); exact ones always.
    #[serde(default = "default_true")]
    pub near: bool,
    /// Remove train rows that duplicate a test or validation row.
    #[serde(default)]
    pub remove: bool,
}

impl Default for LeakageParams {
    fn default() -> Self {
        Self {
            near: true,
            remove: false,
        }
    }
}

/// Params of the `split` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitParams {
    /// Share of rows in `test` (ignored with `from_files`).
    #[serde(default = "default_test")]
    pub test_fraction: f64,
    /// Share of rows in `validation` (0 = no validation output).
    #[serde(default)]
    pub validation_fraction: f64,
    /// Keep each label's (or task's) share equal across splits: within a group,
    /// the rows with the smallest hashes go to test. Exact per-group counts; an
    /// appended row can move a boundary row of its own group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stratify_by: Option<Stratum>,
    /// Use these files (an ingest spec: `{path, format, ...}`) as the test split; every input row is train/validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_files: Option<IngestParams>,
    /// Report train rows that duplicate test/validation rows (`null` turns it off).
    #[serde(default = "default_leakage")]
    pub leakage: Option<LeakageParams>,
}

fn default_leakage() -> Option<LeakageParams> {
    Some(LeakageParams::default())
}

impl Default for SplitParams {
    fn default() -> Self {
        Self {
            test_fraction: 0.1,
            validation_fraction: 0.0,
            stratify_by: None,
            from_files: None,
            leakage: default_leakage(),
        }
    }
}

impl SplitParams {
    pub fn validate(&self) -> Result<(), DataError> {
        for (k, v) in [
            ("test_fraction", self.test_fraction),
            ("validation_fraction", self.validation_fraction),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(DataError::params(k, format!("must be in [0, 1), got {v}")));
            }
        }
        if self.from_files.is_none() && self.test_fraction + self.validation_fraction >= 1.0 {
            return Err(DataError::params(
                "test_fraction",
                "test_fraction + validation_fraction must be < 1 (nothing left to train on)",
            ));
        }
        if let Some(f) = &self.from_files {
            f.validate()?;
        }
        Ok(())
    }

    /// Output names: `train`, `test`, and `validation` when asked.
    pub fn outputs(&self) -> Vec<String> {
        let mut out = vec!["train".to_owned(), "test".to_owned()];
        if self.validation_fraction > 0.0 {
            out.push("validation".to_owned());
        }
        out
    }
}

/// A train row that duplicates a held-out row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leak {
    pub train_file: String,
    pub train_row: u64,
    /// `test` or `validation`.
    pub split: &'static str,
    pub heldout_file: String,
    pub heldout_row: u64,
    /// `exact` or `near`.
    pub method: &'static str,
    pub similarity: f64,
}

/// The result of [`split`].
#[derive(Debug, Clone, Default)]
pub struct SplitOutput {
    pub train: Vec<Row>,
    pub test: Vec<Row>,
    pub validation: Vec<Row>,
    pub leaks: Vec<Leak>,
    /// Train rows removed because they leak (with `leakage.remove`).
    pub removed_from_train: usize,
}

/// Uniform number in [0, 1) from the normalized row and the seed.
pub fn row_unit(row: &Row, seed: u64) -> f64 {
    let key = DedupParams::default().exact_key(row);
    let mut h = blake3::Hasher::new();
    h.update(b"pipe-split");
    h.update(&seed.to_le_bytes());
    h.update(&key);
    let b = h.finalize();
    let x = u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Split `rows` (in input order; each output keeps that order).
pub fn split(
    params: &SplitParams,
    rows: Vec<Row>,
    seed: u64,
    recipe_dir: &Path,
) -> Result<SplitOutput, DataError> {
    params.validate()?;
    let units: Vec<f64> = rows.par_iter().map(|r| row_unit(r, seed)).collect();
    let (test_f, val_f) = if params.from_files.is_some() {
        (0.0, params.validation_fraction)
    } else {
        (params.test_fraction, params.validation_fraction)
    };
    // 0 = train, 1 = test, 2 = validation
    let mut assign = vec![0u8; rows.len()];
    match params.stratify_by {
        None => {
            for (a, &u) in assign.iter_mut().zip(&units) {
                *a = if u < test_f {
                    1
                } else if u < test_f + val_f {
                    2
                } else {
                    0
                };
            }
        }
        Some(by) => {
            let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
            for (i, r) in rows.iter().enumerate() {
                let k = match by {
                    Stratum::Label => r.label.as_deref(),
                    Stratum::Task => r.task.as_deref(),
                };
                groups.entry(k).or_default().push(i);
            }
            for members in groups.values_mut() {
                members.sort_by(|&a, &b| units[a].total_cmp(&units[b]).then(a.cmp(&b)));
                let n = members.len() as f64;
                let n_test = (n * test_f).round() as usize;
                let n_val = (n * val_f).round() as usize;
                for (rank, &i) in members.iter().enumerate() {
                    assign[i] = if rank < n_test {
                        1
                    } else if rank < n_test + n_val {
                        2
                    } else {
                        0
                    };
                }
            }
        }
    }
    // Train rows stay where they are and the held-out ones move out in
    // place, into vectors of their exact size: no second table of all rows
    // and no doubling vector is ever held (that was the bench's peak).
    let held = |part: u8| assign.iter().filter(|&&a| a == part).count();
    let mut out = SplitOutput {
        test: Vec::with_capacity(held(1)),
        validation: Vec::with_capacity(held(2)),
        ..SplitOutput::default()
    };
    let mut rows = rows;
    let mut parts = assign.iter();
    rows.retain_mut(|row| match parts.next() {
        Some(1) => {
            out.test.push(std::mem::take(row));
            false
        }
        Some(2) => {
            out.validation.push(std::mem::take(row));
            false
        }
        _ => true,
    });
    out.train = rows;
    if let Some(files) = &params.from_files {
        let got = ingest(files, recipe_dir)?;
        got.check(files.max_rejected)?;
        out.test = got.rows;
    }
    if let Some(leak) = &params.leakage {
        let dp = DedupParams {
            near: leak.near.then(NearParams::default),
            ..DedupParams::default()
        };
        let mut leaky = vec![false; out.train.len()];
        for (name, held) in [("test", &out.test), ("validation", &out.validation)] {
            if held.is_empty() {
                continue;
            }
            for (t, h, method, similarity) in cross_duplicates(&dp, held, &out.train, seed) {
                leaky[t] = true;
                out.leaks.push(Leak {
                    train_file: out.train[t].source_file.clone(),
                    train_row: out.train[t].source_row,
                    split: name,
                    heldout_file: held[h].source_file.clone(),
                    heldout_row: held[h].source_row,
                    method,
                    similarity,
                });
            }
        }
        if leak.remove && leaky.iter().any(|&l| l) {
            let train = std::mem::take(&mut out.train);
            out.train = train
                .into_iter()
                .zip(&leaky)
                .filter_map(|(r, &l)| (!l).then_some(r))
                .collect();
            out.removed_from_train = leaky.iter().filter(|&&l| l).count();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipe_rows::Message;

    fn rows(range: std::ops::Range<u64>) -> Vec<Row> {
        range
            .map(|i| Row {
                messages: vec![
                    Message::new(
                        "user",
                        format!("Question number {i} about contracts and torts"),
                    ),
                    Message::new("assistant", format!("Answer {i}")),
                ],
                label: Some(if i % 3 == 0 { "Yes" } else { "No" }.into()),
                source_file: "t.jsonl".into(),
                source_row: i,
                ..Row::default()
            })
            .collect()
    }

    fn ids(r: &[Row]) -> Vec<u64> {
        r.iter().map(|r| r.source_row).collect()
    }

    #[test]
    fn stable_when_rows_are_appended() {
        let p = SplitParams {
            validation_fraction: 0.1,
            leakage: None,
            ..SplitParams::default()
        };
        let dir = Path::new(".");
        let a = split(&p, rows(0..1000), 42, dir).unwrap();
        let b = split(&p, rows(0..1500), 42, dir).unwrap();
        let old = |v: &[Row]| ids(v).into_iter().filter(|&i| i < 1000).collect::<Vec<_>>();
        assert_eq!(ids(&a.test), old(&b.test));
        assert_eq!(ids(&a.validation), old(&b.validation));
        assert_eq!(ids(&a.train), old(&b.train));
        // roughly the asked shares
        assert!((60..140).contains(&a.test.len()), "{}", a.test.len());
        assert!((60..140).contains(&a.validation.len()));
        // another seed, another split
        let c = split(&p, rows(0..1000), 43, dir).unwrap();
        assert_ne!(ids(&a.test), ids(&c.test));
    }

    #[test]
    fn stratified_keeps_label_shares() {
        let p = SplitParams {
            test_fraction: 0.2,
            stratify_by: Some(Stratum::Label),
            leakage: None,
            ..SplitParams::default()
        };
        let out = split(&p, rows(0..300), 1, Path::new(".")).unwrap();
        let yes = out
            .test
            .iter()
            .filter(|r| r.label.as_deref() == Some("Yes"))
            .count();
        assert_eq!(out.test.len(), 60);
        assert_eq!(yes, 20);
    }

    #[test]
    fn from_files_is_the_test_split_and_leaks_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("heldout.jsonl"),
            concat!(
                "{\"instruction\": \"Question number 5 about contracts and torts\", \"output\": \"Answer 5\"}\n",
                "{\"instruction\": \"A question of its own\", \"input\": \"with input\", \"output\": \"An answer\"}\n",
            ),
        )
        .unwrap();
        let p = SplitParams {
            validation_fraction: 0.1,
            from_files: Some(
                serde_json::from_value(
                    serde_json::json!({"path": "heldout.jsonl", "format": "alpaca"}),
                )
                .unwrap(),
            ),
            ..SplitParams::default()
        };
        let out = split(&p, rows(0..100), 42, dir.path()).unwrap();
        // every input row is train or validation; the file is the test split, ingested as alpaca
        assert_eq!(out.train.len() + out.validation.len(), 100);
        assert!(!out.validation.is_empty());
        assert_eq!(ids(&out.test), [1, 2]);
        assert_eq!(
            out.test[1].messages[0].content,
            "A question of its own\nwith input"
        );
        assert_eq!(out.test[0].source_file, "heldout.jsonl");
        // input row 5 (in train) repeats the first test row
        let leaks: Vec<(u64, &str, u64, &str)> = out
            .leaks
            .iter()
            .map(|l| (l.train_row, l.split, l.heldout_row, l.method))
            .collect();
        assert_eq!(leaks, [(5, "test", 1, "exact")]);
        // the test file obeys the same strictness as ingest: a broken line fails the split
        std::fs::write(
            dir.path().join("heldout.jsonl"),
            "{\"instruction\": \"q\"}\nnot json\n",
        )
        .unwrap();
        let err = split(&p, rows(0..10), 42, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("heldout.jsonl:2"), "{err}");
    }

    /// Distinct pseudo-random English-like text of `n` words.
    fn text(seed: u64, n: usize) -> String {
        const W: [&str; 32] = [
            "court", "held", "party", "claim", "lease", "tenant", "owner", "notice", "breach",
            "damages", "appeal", "statute", "motion", "trial", "judge", "jury", "estate", "trust",
            "deed", "title", "loan", "bank", "debt", "fraud", "duty", "care", "fault", "risk",
            "harm", "offer", "term", "price",
        ];
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                W[(s % 32) as usize]
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn leakage_reports_near_twins_across_splits_and_removes_them() {
        let mk = |i: u64, t: String| Row {
            messages: vec![Message::new("user", t), Message::new("assistant", "ok")],
            source_file: "t.jsonl".into(),
            source_row: i,
            ..Row::default()
        };
        let mut input = Vec::new();
        for i in 0..100u64 {
            let t = text(i + 1, 60);
            // the twin differs in its last word only: a near duplicate that hashes elsewhere
            let twin = format!("{} verdict", t.rsplit_once(' ').unwrap().0);
            input.push(mk(i, t));
            input.push(mk(1000 + i, twin));
        }
        let p = SplitParams {
            test_fraction: 0.3,
            leakage: Some(LeakageParams {
                near: true,
                remove: false,
            }),
            ..SplitParams::default()
        };
        let out = split(&p, input.clone(), 3, Path::new(".")).unwrap();
        let test_ids: std::collections::HashSet<u64> = ids(&out.test).into_iter().collect();
        let crossing = (0..100u64)
            .filter(|i| test_ids.contains(i) != test_ids.contains(&(1000 + i)))
            .count();
        assert!(crossing > 10, "{crossing}");
        // every reported leak is a real twin pair, and (almost) all crossing pairs are found
        for l in &out.leaks {
            assert_eq!(l.train_row % 1000, l.heldout_row % 1000, "{l:?}");
            assert_eq!(l.method, "near");
        }
        assert!(
            out.leaks.len() * 10 >= crossing * 9,
            "{} of {crossing}",
            out.leaks.len()
        );
        let p = SplitParams {
            leakage: Some(LeakageParams {
                near: true,
                remove: true,
            }),
            ..p
        };
        let removed = split(&p, input, 3, Path::new(".")).unwrap();
        assert_eq!(removed.removed_from_train, out.leaks.len());
        assert_eq!(removed.train.len(), out.train.len() - out.leaks.len());
        assert_eq!(ids(&removed.test), ids(&out.test));
    }
}

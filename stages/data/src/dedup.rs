//! `dedup`: exact duplicates on a normalized key, then near duplicates by
//! MinHash LSH. The first occurrence in input order is kept; every removed row
//! names the kept row it duplicates and how similar they are.

use std::collections::HashMap;

use pipe_rows::Row;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::minhash::{MinHasher, UnionFind, jaccard};
use crate::prehashed::{PrehashedMap, prehashed_map};
use crate::text::{Field, field_str, field_text, normalize_append};

/// 2: `rows.parquet` of more than one row group has ~1 MiB pages (pipe-rows writes group by group).
pub const DEDUP_CODE_VERSION: u32 = 2;

fn default_true() -> bool {
    true
}
fn default_fields() -> Vec<Field> {
    vec![Field::Prompt, Field::Response]
}
fn default_bands() -> usize {
    14
}
fn default_rows() -> usize {
    8
}
fn default_ngram() -> usize {
    5
}

/// Params of the `dedup` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupParams {
    /// Remove exact duplicates of the normalized key (NFKC, lowercase, whitespace collapsed).
    #[serde(default = "default_true")]
    pub exact: bool,
    /// Fields that make up the key and the near-duplicate text: prompt, response, system, text, label.
    #[serde(default = "default_fields")]
    pub fields: Vec<Field>,
    /// Also ignore punctuation and symbols in the exact key.
    #[serde(default)]
    pub strip_punctuation: bool,
    /// Near-duplicate removal by MinHash LSH; absent = off (`near: {}` turns it on with defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<NearParams>,
}

impl Default for DedupParams {
    fn default() -> Self {
        Self {
            exact: true,
            fields: default_fields(),
            strip_punctuation: false,
            near: None,
        }
    }
}

/// MinHash LSH settings (datatrove's defaults).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NearParams {
    /// LSH bands.
    #[serde(default = "default_bands")]
    pub bands: usize,
    /// Hashes per band; bands x rows hashes in all. Candidate threshold ~ (1/bands)^(1/rows).
    #[serde(default = "default_rows")]
    pub rows: usize,
    /// Word n-gram size for space-separated text.
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// Character n-gram size for text that is mostly CJK.
    #[serde(default = "default_ngram")]
    pub cjk_ngram: usize,
    /// When set, a candidate pair is merged only if its exact shingle Jaccard
    /// similarity is at least this (verification of the LSH candidates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl Default for NearParams {
    fn default() -> Self {
        Self {
            bands: 14,
            rows: 8,
            ngram: 5,
            cjk_ngram: 5,
            threshold: None,
        }
    }
}

impl DedupParams {
    pub fn validate(&self) -> Result<(), DataError> {
        if self.fields.is_empty() {
            return Err(DataError::params(
                "fields",
                "name at least one field (prompt, response, system, text, label)",
            ));
        }
        if !self.exact && self.near.is_none() {
            return Err(DataError::params(
                "exact",
                "both exact and near dedup are off: nothing to do; set `exact: true` or `near: {}`",
            ));
        }
        if let Some(n) = &self.near {
            if n.bands == 0 || n.rows == 0 || n.bands * n.rows > 1024 {
                return Err(DataError::params(
                    "near.bands",
                    "bands and rows must be >= 1 with bands x rows <= 1024",
                ));
            }
            if n.ngram == 0 || n.cjk_ngram == 0 {
                return Err(DataError::params("near.ngram", "n-gram sizes must be >= 1"));
            }
            if let Some(t) = n.threshold
                && !(0.0..=1.0).contains(&t)
            {
                return Err(DataError::params(
                    "near.threshold",
                    format!("must be in [0, 1], got {t}"),
                ));
            }
        }
        Ok(())
    }

    /// The text of a row that dedup compares, fields joined by a separator.
    pub fn row_text(&self, row: &Row) -> String {
        let mut out = String::new();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push('\u{1f}');
            }
            out.push_str(&field_text(row, *f));
        }
        out
    }

    /// The normalized key of a row into `out` (replaced): each field
    /// normalized (see [`crate::text::normalize`]) after its length in bytes
    /// (8 bytes, little-endian), so field boundaries cannot shift.
    fn key_bytes(&self, row: &Row, out: &mut Vec<u8>) {
        out.clear();
        for f in &self.fields {
            let at = out.len();
            out.extend_from_slice(&[0; 8]);
            normalize_append(&field_str(row, *f), self.strip_punctuation, out);
            let len = (out.len() - at - 8) as u64;
            out[at..at + 8].copy_from_slice(&len.to_le_bytes());
        }
    }

    /// `f` of the normalized key, built in a buffer each thread reuses.
    fn with_key<T>(&self, row: &Row, f: impl FnOnce(&[u8]) -> T) -> T {
        thread_local! {
            static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        KEY.with_borrow_mut(|key| {
            self.key_bytes(row, key);
            f(key)
        })
    }

    /// 128-bit BLAKE3 hash of the normalized key (split derives a row's place from it).
    pub fn exact_key(&self, row: &Row) -> [u8; 16] {
        self.with_key(row, |key| {
            let mut out = [0u8; 16];
            out.copy_from_slice(&blake3::hash(key).as_bytes()[..16]);
            out
        })
    }

    /// Whether two rows have the same normalized key.
    fn same_key(&self, a: &Row, b: &Row) -> bool {
        let mut key_a = Vec::new();
        self.key_bytes(a, &mut key_a);
        self.with_key(b, |key_b| key_a == key_b)
    }
}

/// For each row of `probe`, the first row of `base` with the same normalized
/// key; with no `probe`, the same for each row of `base` itself (where a row
/// with no earlier duplicate finds itself).
///
/// Rows are matched by a 64-bit xxh3 hash of the key (several times cheaper
/// than BLAKE3 on keys of a few hundred bytes), and every match is confirmed
/// on the keys themselves: should two different keys ever share a hash, the
/// matching is redone keyed by the normalized text, so the answer never rests
/// on the hash. (That is also why 64 bits are enough: a collision among a
/// million keys, about 3 in 10^8, costs time, never a wrong answer.)
fn first_matches(params: &DedupParams, base: &[Row], probe: Option<&[Row]>) -> Vec<Option<u32>> {
    first_matches_with(params, base, probe, xxhash_rust::xxh3::xxh3_64)
}

/// [`first_matches`] with the hash as a parameter (tests force collisions).
fn first_matches_with(
    params: &DedupParams,
    base: &[Row],
    probe: Option<&[Row]>,
    hash: fn(&[u8]) -> u64,
) -> Vec<Option<u32>> {
    let keys =
        |rows: &[Row]| -> Vec<u64> { rows.par_iter().map(|r| params.with_key(r, hash)).collect() };
    let base_keys = keys(base);
    let mut first: PrehashedMap<u64, u32> = prehashed_map(base_keys.len());
    // without a probe, each row's match is known as it goes in: one lookup a row, not two
    let mut self_matches = Vec::with_capacity(if probe.is_none() { base.len() } else { 0 });
    for (i, k) in base_keys.iter().enumerate() {
        let first_of_key = *first.entry(*k).or_insert(i as u32);
        if probe.is_none() {
            self_matches.push(Some(first_of_key));
        }
    }
    drop(base_keys);
    let (probe_rows, matches) = match probe {
        Some(rows) => {
            let matches = keys(rows).iter().map(|k| first.get(k).copied()).collect();
            (rows, matches)
        }
        None => (base, self_matches),
    };
    drop(first);
    let confirmed = matches.par_iter().enumerate().all(|(p, m)| match *m {
        Some(b) if probe.is_some() || b as usize != p => {
            params.same_key(&base[b as usize], &probe_rows[p])
        }
        _ => true,
    });
    if confirmed {
        return matches;
    }
    // a true hash collision: match on the normalized keys themselves
    let text = |r: &Row| {
        let mut key = Vec::new();
        params.key_bytes(r, &mut key);
        key
    };
    let mut first: HashMap<Vec<u8>, u32> = HashMap::with_capacity(base.len());
    for (i, r) in base.iter().enumerate() {
        first.entry(text(r)).or_insert(i as u32);
    }
    probe_rows
        .iter()
        .map(|r| first.get(&text(r)).copied())
        .collect()
}

/// Why a row was removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Removed {
    pub row: Row,
    /// `exact` or `near`.
    pub method: &'static str,
    /// The kept row this one duplicates.
    pub duplicate_of_file: String,
    pub duplicate_of_row: u64,
    /// 1.0 for exact; the shingle Jaccard similarity to the kept row for near.
    pub similarity: f64,
}

/// The result of [`dedup`].
#[derive(Debug, Clone, Default)]
pub struct DedupOutput {
    pub rows: Vec<Row>,
    pub removed: Vec<Removed>,
    pub rows_in: usize,
    pub exact_removed: usize,
    pub near_removed: usize,
    /// The LSH candidate threshold (1/b)^(1/r), when near dedup ran.
    pub lsh_threshold: Option<f64>,
}

/// Remove duplicates from the concatenation of `tables` (in order).
pub fn dedup(
    params: &DedupParams,
    tables: Vec<Vec<Row>>,
    seed: u64,
) -> Result<DedupOutput, DataError> {
    params.validate()?;
    // one table (the common case) is used as it is, not copied
    let rows: Vec<Row> = if tables.len() == 1 {
        tables.into_iter().next().unwrap_or_default()
    } else {
        tables.into_iter().flatten().collect()
    };
    let rows_in = rows.len();
    let mut removed = Vec::new();
    let mut keep = vec![true; rows.len()];

    if params.exact {
        for (i, first) in first_matches(params, &rows, None).into_iter().enumerate() {
            let j = first.expect("a row matches at least itself") as usize;
            if j != i {
                keep[i] = false;
                removed.push((i, j, "exact", 1.0));
            }
        }
    }
    let exact_removed = removed.len();

    let mut lsh_threshold = None;
    if let Some(near) = &params.near {
        let hasher = MinHasher::new(seed, near.bands, near.rows, near.ngram, near.cjk_ngram);
        lsh_threshold = Some(hasher.threshold());
        let survivors: Vec<usize> = (0..rows.len()).filter(|&i| keep[i]).collect();
        for (i, j, sim) in near_pairs(params, near, &hasher, &rows, &survivors) {
            keep[i] = false;
            removed.push((i, j, "near", sim));
        }
    }
    let near_removed = removed.len() - exact_removed;
    // removed rows in input order, whatever pass found them
    removed.sort_by_key(|r| r.0);
    // Name the kept row before moving rows out: an exact duplicate's original
    // may itself be removed later as a near duplicate of an earlier row.
    let named: Vec<(usize, String, u64, &'static str, f64)> = removed
        .iter()
        .map(|&(i, j, method, sim)| {
            (
                i,
                rows[j].source_file.clone(),
                rows[j].source_row,
                method,
                sim,
            )
        })
        .collect();
    // Removed rows move out in place, in input order: no second table is built.
    let mut taken = Vec::with_capacity(named.len());
    let mut i = 0;
    let mut rows = rows;
    rows.retain_mut(|row| {
        let kept = keep[i];
        i += 1;
        if !kept {
            taken.push(std::mem::take(row));
        }
        kept
    });
    let removed: Vec<Removed> = named
        .into_iter()
        .zip(taken)
        .map(
            |((_, duplicate_of_file, duplicate_of_row, method, similarity), row)| Removed {
                row,
                method,
                duplicate_of_file,
                duplicate_of_row,
                similarity,
            },
        )
        .collect();
    Ok(DedupOutput {
        rows,
        removed,
        rows_in,
        exact_removed,
        near_removed,
        lsh_threshold,
    })
}

/// Near-duplicate clusters among `rows[idx]` for `idx` in `members`: returns
/// (removed row, kept first member, Jaccard similarity) for every non-first member.
fn near_pairs(
    params: &DedupParams,
    near: &NearParams,
    hasher: &MinHasher,
    rows: &[Row],
    members: &[usize],
) -> Vec<(usize, usize, f64)> {
    let shingles_of = |i: usize| hasher.shingles(&params.row_text(&rows[i]));
    // Band keys only (not signatures or shingles) are kept for all rows: 8 bytes x bands per row.
    let keys: Vec<Option<Vec<u64>>> = members
        .par_iter()
        .map(|&i| {
            let sh = shingles_of(i);
            // empty text has no shingles: never a near duplicate of anything
            (!sh.is_empty()).then(|| hasher.band_keys(&hasher.signature(&sh)))
        })
        .collect();
    let mut uf = UnionFind::new(members.len());
    let mut bucket: Vec<(u64, u32)> = Vec::with_capacity(members.len());
    for band in 0..near.bands {
        bucket.clear();
        bucket.extend(
            keys.iter()
                .enumerate()
                .filter_map(|(m, k)| k.as_ref().map(|k| (k[band], m as u32))),
        );
        bucket.par_sort_unstable();
        let mut start = 0;
        while start < bucket.len() {
            let mut end = start + 1;
            while end < bucket.len() && bucket[end].0 == bucket[start].0 {
                end += 1;
            }
            let first = bucket[start].1;
            let group = &bucket[start + 1..end];
            if let Some(t) = near.threshold {
                // verify each candidate against the bucket's first member
                let first_sh = shingles_of(members[first as usize]);
                let ok: Vec<u32> = group
                    .par_iter()
                    .filter(|(_, m)| jaccard(&first_sh, &shingles_of(members[*m as usize])) >= t)
                    .map(|(_, m)| *m)
                    .collect();
                for m in ok {
                    uf.union(first, m);
                }
            } else {
                for &(_, m) in group {
                    uf.union(first, m);
                }
            }
            start = end;
        }
    }
    let dups: Vec<(usize, usize)> = (0..members.len() as u32)
        .filter_map(|m| {
            let root = uf.find(m);
            (root != m).then(|| (members[m as usize], members[root as usize]))
        })
        .collect();
    dups.into_par_iter()
        .map(|(i, j)| (i, j, jaccard(&shingles_of(i), &shingles_of(j))))
        .collect()
}

/// Rows of `probe` that duplicate a row of `base` (exactly or nearly):
/// (probe index, base index, method, similarity). Used for the train/test leakage check.
pub fn cross_duplicates(
    params: &DedupParams,
    base: &[Row],
    probe: &[Row],
    seed: u64,
) -> Vec<(usize, usize, &'static str, f64)> {
    let mut out = Vec::new();
    let mut found = vec![false; probe.len()];
    if params.exact {
        for (p, first) in first_matches(params, base, Some(probe))
            .into_iter()
            .enumerate()
        {
            if let Some(b) = first {
                found[p] = true;
                out.push((p, b as usize, "exact", 1.0));
            }
        }
    }
    if let Some(near) = &params.near {
        let hasher = MinHasher::new(seed, near.bands, near.rows, near.ngram, near.cjk_ngram);
        let sh = |r: &Row| hasher.shingles(&params.row_text(r));
        let base_sh: Vec<Vec<u64>> = base.par_iter().map(sh).collect();
        let mut index: Vec<HashMap<u64, usize>> = vec![HashMap::new(); near.bands];
        for (i, s) in base_sh.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            for (band, k) in hasher
                .band_keys(&hasher.signature(s))
                .into_iter()
                .enumerate()
            {
                index[band].entry(k).or_insert(i);
            }
        }
        let threshold = near.threshold.unwrap_or_else(|| hasher.threshold());
        let hits: Vec<Option<(usize, usize, f64)>> = probe
            .par_iter()
            .enumerate()
            .map(|(p, r)| {
                if found[p] {
                    return None;
                }
                let s = sh(r);
                if s.is_empty() {
                    return None;
                }
                let keys = hasher.band_keys(&hasher.signature(&s));
                let mut best: Option<(usize, f64)> = None;
                for (band, k) in keys.iter().enumerate() {
                    if let Some(&b) = index[band].get(k) {
                        let j = jaccard(&s, &base_sh[b]);
                        if j >= threshold && best.is_none_or(|(_, bj)| j > bj) {
                            best = Some((b, j));
                        }
                    }
                }
                best.map(|(b, j)| (p, b, j))
            })
            .collect();
        out.extend(
            hits.into_iter()
                .flatten()
                .map(|(p, b, j)| (p, b, "near", j)),
        );
    }
    out.sort_by_key(|x| x.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipe_rows::Message;

    fn row(i: u64, prompt: &str, response: &str) -> Row {
        Row {
            messages: vec![
                Message::new("user", prompt),
                Message::new("assistant", response),
            ],
            source_file: "t.jsonl".into(),
            source_row: i,
            ..Row::default()
        }
    }

    const EN: [&str; 4] = [
        "Explain the doctrine of consideration in contract law and why courts require it before they will enforce a promise between private parties, with an example of a gratuitous promise that fails for want of consideration and of a nominal payment that some courts still accept as sufficient",
        "Describe how the statute of limitations works for personal injury claims and what events can toll the running of the limitation period, such as the minority of the plaintiff, the absence of the defendant from the state, or the late discovery of the injury itself",
        "Summarize the key differences between a limited liability company and a corporation with respect to taxation, governance and personal liability of the owners, and say which form a small family business with two members and modest profits would usually choose and why",
        "What is the hearsay rule in the law of evidence and which common exceptions allow an out of court statement to be admitted at trial, for instance excited utterances, statements against interest, business records and dying declarations made under a sense of impending death",
    ];
    const ZH: [&str; 2] = [
        "请解释合同法中的要约与承诺制度，并说明承诺生效的时间以及要约在何种情况下可以撤回或者撤销，同时举例说明实践中的常见争议。",
        "根据中华人民共和国刑法的规定，危险驾驶罪的构成要件有哪些？醉酒驾驶机动车与追逐竞驶在量刑上有什么区别？请结合司法解释说明。",
    ];

    #[test]
    fn exact_dedup_keeps_first_and_names_it() {
        let rows = vec![
            row(1, EN[0], "A promise needs consideration."),
            row(2, EN[1], "It runs from injury."),
            // same after NFKC + case + whitespace folding
            row(
                3,
                &format!("  {}  ", EN[0].to_uppercase()),
                "A promise   needs consideration.",
            ),
            row(4, EN[0], "A different answer."),
        ];
        let out = dedup(&DedupParams::default(), vec![rows], 1).unwrap();
        assert_eq!(
            out.rows.iter().map(|r| r.source_row).collect::<Vec<_>>(),
            [1, 2, 4]
        );
        assert_eq!(out.removed.len(), 1);
        assert_eq!(out.removed[0].row.source_row, 3);
        assert_eq!(out.removed[0].duplicate_of_row, 1);
        assert_eq!(out.removed[0].method, "exact");
    }

    #[test]
    fn hash_collisions_do_not_change_exact_matches() {
        // duplicates under case, width and space folding, CJK included
        let texts = [
            EN[0],
            EN[1],
            ZH[0],
            "ＡＢＣ 合同",
            "abc 合同",
            "Abc  合同",
            "x",
            "X ",
            ZH[0],
            "",
        ];
        let rows: Vec<Row> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| row(i as u64, t, if i % 3 == 0 { "same" } else { "SAME" }))
            .collect();
        let (base, probe) = rows.split_at(4);
        let params = DedupParams::default();
        let expected_self = first_matches(&params, &rows, None);
        let expected_cross = first_matches(&params, base, Some(probe));
        // every key one hash, or keys of one length one hash: the text decides
        let collide: [fn(&[u8]) -> u64; 2] = [|_| 7, |k| k.len() as u64];
        for hash in collide {
            assert_eq!(
                first_matches_with(&params, &rows, None, hash),
                expected_self
            );
            assert_eq!(
                first_matches_with(&params, base, Some(probe), hash),
                expected_cross
            );
        }
        let firsts: Vec<Option<u32>> = [0, 1, 2, 3, 3, 3, 6, 6, 2, 9].map(Some).to_vec();
        assert_eq!(expected_self, firsts);
        assert_eq!(
            expected_cross,
            [Some(3), Some(3), None, None, Some(2), None]
        );
    }

    #[test]
    fn near_dedup_finds_edited_reordered_english_and_chinese_only() {
        let mut rows = Vec::new();
        for (i, t) in EN.iter().enumerate() {
            rows.push(row(i as u64, t, "Answer."));
        }
        for (i, t) in ZH.iter().enumerate() {
            rows.push(row(10 + i as u64, t, "答案。"));
        }
        // two questions in one row (not a near duplicate of either alone)
        rows.push(row(12, &format!("{} {}", EN[0], EN[1]), "Answer."));
        // lightly edited English (one word changed) and Chinese (one character changed), later in order
        rows.push(row(20, &EN[2].replace("and why", "and how"), "Answer."));
        assert_ne!(rows.last().unwrap().messages[0].content, EN[2]);
        rows.push(row(21, &ZH[1].replace("区别", "差别"), "答案。"));
        // the same two questions, in the other order
        rows.push(row(22, &format!("{} {}", EN[1], EN[0]), "Answer."));
        // reordered tables: several inputs concatenated
        let tables = vec![rows[..3].to_vec(), rows[3..].to_vec()];
        let params = DedupParams {
            near: Some(NearParams::default()),
            ..DedupParams::default()
        };
        let out = dedup(&params, tables, 42).unwrap();
        let removed: Vec<(u64, u64)> = out
            .removed
            .iter()
            .map(|r| (r.row.source_row, r.duplicate_of_row))
            .collect();
        assert_eq!(removed, [(20, 2), (21, 11), (22, 12)]);
        assert!(
            out.removed
                .iter()
                .all(|r| r.method == "near" && r.similarity > 0.6 && r.similarity < 1.0)
        );
        assert_eq!(out.rows.len(), 7);
        assert_eq!(out.near_removed, 3);
        // strict verification drops the weaker pair only if below threshold
        let strict = DedupParams {
            near: Some(NearParams {
                threshold: Some(0.99),
                ..NearParams::default()
            }),
            ..DedupParams::default()
        };
        let all: Vec<Row> = rows.clone();
        assert_eq!(dedup(&strict, vec![all], 42).unwrap().removed.len(), 0);
    }

    #[test]
    fn leakage_finds_test_rows_in_train() {
        let train = vec![row(1, EN[0], "x"), row(2, EN[1], "y")];
        let test = vec![
            row(3, EN[2], "z"),
            row(4, EN[0], "x"),
            row(5, &EN[1].replace("minority", "infancy"), "y"),
        ];
        let params = DedupParams {
            near: Some(NearParams::default()),
            ..DedupParams::default()
        };
        let hits = cross_duplicates(&params, &train, &test, 7);
        assert_eq!(hits.len(), 2);
        assert_eq!((hits[0].0, hits[0].1, hits[0].2), (1, 0, "exact"));
        assert_eq!((hits[1].0, hits[1].1, hits[1].2), (2, 1, "near"));
    }
}

//! Blind review by experts (issue #9): a pack that shows each test prompt with
//! the answers of several systems under neutral labels (A, B, C) in a seeded
//! random order, a key that maps labels back to systems (kept out of the
//! pack), and the summary of the returned scores: mean per system with a 95%
//! bootstrap interval, pairwise win rates and agreement between reviewers
//! (Cohen's kappa for two, Fleiss' kappa for more).
//!
//! Pure functions over [`ExampleRecord`]s and CSV text; `pipe review export`
//! and `pipe review import` do the file handling.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::generate::Rng;
use crate::report::{ExampleRecord, esc};

/// Lowest and highest score a reviewer may give.
pub const SCALE: (f64, f64) = (1.0, 5.0);
/// Bootstrap resamples for the intervals.
pub const BOOTSTRAP: usize = 2000;

/// One prompt of the pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// 1-based item number shown to reviewers.
    pub item: usize,
    pub prompt: String,
    pub reference: Option<String>,
    /// (label, answer) in label order A, B, C, ...
    pub answers: Vec<(String, String)>,
}

/// What un-blinds the scores; written apart from the pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewKey {
    pub run: String,
    pub stage: String,
    pub seed: u64,
    /// The eval stage's report folder (for a copy of report.md with the review added).
    pub report_dir: Option<String>,
    pub systems: Vec<String>,
    pub scale: (f64, f64),
    /// Item -> label -> system.
    pub items: BTreeMap<usize, BTreeMap<String, String>>,
}

fn label(i: usize) -> String {
    // A..Z, then AA, AB, ... (more than 26 systems is unlikely but harmless).
    let mut n = i;
    let mut s = String::new();
    loop {
        s.insert(0, (b'A' + (n % 26) as u8) as char);
        if n < 26 {
            return s;
        }
        n = n / 26 - 1;
    }
}

/// The pack's items and the key's item map: item `k` shows example `k - 1`'s
/// answers of `systems` shuffled by a stream seeded with `(seed, k)`.
pub fn blind(
    examples: &[ExampleRecord],
    systems: &[String],
    seed: u64,
    with_reference: bool,
) -> (Vec<ReviewItem>, BTreeMap<usize, BTreeMap<String, String>>) {
    let mut items = Vec::with_capacity(examples.len());
    let mut key = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        let item = i + 1;
        let mut order: Vec<&String> = systems
            .iter()
            .filter(|s| e.outputs.contains_key(*s))
            .collect();
        let mut rng = Rng(seed ^ (item as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
        for j in (1..order.len()).rev() {
            let k = (rng.next_u64() % (j as u64 + 1)) as usize;
            order.swap(j, k);
        }
        let mut answers = Vec::new();
        let mut map = BTreeMap::new();
        for (j, s) in order.into_iter().enumerate() {
            answers.push((label(j), e.outputs[s].clone()));
            map.insert(label(j), s.clone());
        }
        items.push(ReviewItem {
            item,
            prompt: e.prompt.clone(),
            reference: with_reference.then(|| e.reference.clone()),
            answers,
        });
        key.insert(item, map);
    }
    (items, key)
}

/// CSV columns of the pack; `item`, `label` and `score` are required on import.
pub const CSV_HEADER: [&str; 8] = [
    "item",
    "label",
    "reviewer",
    "score",
    "comment",
    "answer",
    "prompt",
    "reference",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The pack as a CSV for spreadsheet users: one row per (item, label), with
/// `reviewer`, `score` and `comment` left to fill in.
pub fn pack_csv(items: &[ReviewItem]) -> String {
    let mut s = CSV_HEADER.join(",");
    s.push('\n');
    for it in items {
        for (l, a) in &it.answers {
            let cells = [
                it.item.to_string(),
                l.clone(),
                String::new(),
                String::new(),
                String::new(),
                a.clone(),
                it.prompt.clone(),
                it.reference.clone().unwrap_or_default(),
            ];
            let row: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
            s.push_str(&row.join(","));
            s.push('\n');
        }
    }
    s
}

/// A self-contained page: every item with its answers and a score form; the
/// button saves the scores as a CSV (`item,label,reviewer,score,comment`)
/// in the browser, nothing is sent anywhere.
pub fn pack_html(items: &[ReviewItem], title: &str) -> String {
    let (lo, hi) = (SCALE.0 as i64, SCALE.1 as i64);
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    writeln!(h, "<title>Blind review: {}</title>", esc(title)).ok();
    h.push_str("<style>body{font:14px/1.45 system-ui,sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#1f2933}\
.item{border:1px solid #e4e7eb;border-radius:6px;margin:14px 0;padding:10px}\
pre{white-space:pre-wrap;word-break:break-word;background:#f5f7fa;padding:6px;border-radius:4px;font-size:12.5px}\
.ans{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}\
.bar{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #e4e7eb}</style>\n");
    h.push_str("</head><body>\n");
    writeln!(
        h,
        "<h1>Blind review: {}</h1>\n<p>Score each answer from {lo} (poor) to {hi} (excellent). \
         The answers are labelled in a random order; which system wrote which is not in this page. \
         <b>Save CSV</b> downloads your scores.</p>",
        esc(title)
    )
    .ok();
    h.push_str("<div class=\"bar\"><label>Reviewer <input id=\"reviewer\" required></label> \
<button type=\"button\" onclick=\"save()\">Save CSV</button> <span id=\"status\"></span></div>\n<form id=\"f\">\n");
    for it in items {
        writeln!(h, "<div class=\"item\"><h3>Item {}</h3>", it.item).ok();
        writeln!(h, "<pre>{}</pre>", esc(&it.prompt)).ok();
        if let Some(r) = &it.reference {
            writeln!(
                h,
                "<details><summary>reference answer</summary><pre>{}</pre></details>",
                esc(r)
            )
            .ok();
        }
        h.push_str("<div class=\"ans\">");
        for (l, a) in &it.answers {
            write!(h, "<div><b>{l}</b><pre>{}</pre><select data-item=\"{}\" data-label=\"{l}\"><option value=\"\">score</option>", esc(a), it.item).ok();
            for v in lo..=hi {
                write!(h, "<option>{v}</option>").ok();
            }
            write!(
                h,
                "</select> <input placeholder=\"comment\" data-comment=\"{}-{l}\"></div>",
                it.item
            )
            .ok();
        }
        h.push_str("</div></div>\n");
    }
    h.push_str("</form>\n<script>\n\
function q(s){s=String(s);return /[\",\\n\\r]/.test(s)?'\"'+s.replace(/\"/g,'\"\"')+'\"':s}\n\
function save(){var r=document.getElementById('reviewer').value.trim();\
if(!r){document.getElementById('status').textContent='enter your name first';return}\
var rows=['item,label,reviewer,score,comment'];var n=0;\
document.querySelectorAll('select[data-item]').forEach(function(s){var c=document.querySelector('[data-comment=\"'+s.dataset.item+'-'+s.dataset.label+'\"]').value;\
if(s.value){n++}rows.push([s.dataset.item,s.dataset.label,r,s.value,c].map(q).join(','))});\
var a=document.createElement('a');a.href=URL.createObjectURL(new Blob([rows.join('\\n')+'\\n'],{type:'text/csv'}));\
a.download='scores-'+r.replace(/[^A-Za-z0-9_-]/g,'_')+'.csv';document.body.appendChild(a);a.click();a.remove();\
document.getElementById('status').textContent=n+' scores saved'}\n</script>\n</body></html>\n");
    h
}

/// A CSV record: the line it starts on and its fields.
pub type CsvRecord = (usize, Vec<String>);

/// Parses CSV text (RFC 4180: quoted fields, doubled quotes, newlines inside
/// quotes) into records with the line each starts on; an error is `(line, message)`.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut out = Vec::new();
    let (mut line, mut start) = (1usize, 1usize);
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                out.push((start, std::mem::take(&mut record)));
                line += 1;
                start = line;
                any = false;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err((start, "a quoted field is not closed".into()));
    }
    if any {
        record.push(field);
        out.push((start, record));
    }
    Ok(out)
}

/// One returned score, un-blinded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub reviewer: String,
    pub item: usize,
    pub label: String,
    pub system: String,
    pub score: f64,
}

/// Reads a scores CSV against the key: every row must name a known item and
/// label and carry a number within the scale (rows with an empty score are
/// unscored and skipped). Errors name the line and the column.
pub fn read_scores(path: &Path, text: &str, key: &ReviewKey) -> Result<Vec<Score>, EvalError> {
    let at = |line: usize, message: String| EvalError::Line {
        path: path.to_owned(),
        line,
        message,
    };
    let records = parse_csv(text).map_err(|(l, m)| at(l, m))?;
    let Some(((hline, header), rows)) = records.split_first() else {
        return Err(at(
            1,
            "the file is empty; expected a header `item,label,reviewer,score`".into(),
        ));
    };
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let need = |name: &str| {
        col(name).ok_or_else(|| {
            at(*hline, format!("no `{name}` column (the header needs item, label and score; reviewer is optional)"))
        })
    };
    let (ci, cl, cs) = (need("item")?, need("label")?, need("score")?);
    let cr = col("reviewer");
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (line, r) in rows {
        if r.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if r.len() != header.len() {
            return Err(at(
                *line,
                format!("{} columns, the header has {}", r.len(), header.len()),
            ));
        }
        let cell = |i: usize| r[i].trim();
        let bad =
            |column: &str, message: String| at(*line, format!("column `{column}`: {message}"));
        let score_text = cell(cs);
        if score_text.is_empty() {
            continue;
        }
        let item: usize = cell(ci)
            .parse()
            .map_err(|_| bad("item", format!("`{}` is not an item number", cell(ci))))?;
        let labels = key
            .items
            .get(&item)
            .ok_or_else(|| bad("item", format!("there is no item {item} in the key")))?;
        let label = cell(cl).to_uppercase();
        let system = labels.get(&label).ok_or_else(|| {
            bad(
                "label",
                format!(
                    "item {item} has no answer `{}` (it has {})",
                    cell(cl),
                    labels.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let score: f64 = score_text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad("score", format!("`{score_text}` is not a number")))?;
        if score < key.scale.0 || score > key.scale.1 {
            return Err(bad(
                "score",
                format!(
                    "{score} is outside the scale {}..{}",
                    key.scale.0, key.scale.1
                ),
            ));
        }
        let reviewer = cr
            .map(|c| cell(c).to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "reviewer".to_owned());
        if !seen.insert((reviewer.clone(), item, label.clone())) {
            return Err(at(
                *line,
                format!("{reviewer} scored item {item} answer {label} twice"),
            ));
        }
        out.push(Score {
            reviewer,
            item,
            label,
            system: system.clone(),
            score,
        });
    }
    if out.is_empty() {
        return Err(at(*hline, "no scores: every `score` cell is empty".into()));
    }
    Ok(out)
}

/// Mean score of a system with its 95% bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemScore {
    pub system: String,
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Scores given (reviewers x items).
    pub n: usize,
    pub items: usize,
}

/// How often `a` scored above `b` on the same item by the same reviewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    pub a: String,
    pub b: String,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// (wins + ties / 2) / comparisons.
    pub win_rate: f64,
}

/// Agreement between reviewers on the answers all of them scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// `cohen` (two reviewers) or `fleiss` (three or more).
    pub method: String,
    pub reviewers: Vec<String>,
    /// Answers scored by every reviewer.
    pub units: usize,
    /// None when undefined (every score the same category).
    pub kappa: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewSummary {
    pub run: String,
    pub stage: String,
    pub reviewers: Vec<String>,
    pub scores: usize,
    pub systems: Vec<SystemScore>,
    pub win_rates: Vec<WinRate>,
    pub agreement: Option<Agreement>,
    pub method: String,
}

/// Cohen's kappa of two raters over the same units (categories compared as equal values).
pub fn cohen_kappa(a: &[f64], b: &[f64]) -> Option<f64> {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    if a.is_empty() {
        return None;
    }
    let po = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n;
    let cats: BTreeSet<u64> = a.iter().chain(b).map(|v| v.to_bits()).collect();
    let pe: f64 = cats
        .iter()
        .map(|c| {
            let pa = a.iter().filter(|v| v.to_bits() == *c).count() as f64 / n;
            let pb = b.iter().filter(|v| v.to_bits() == *c).count() as f64 / n;
            pa * pb
        })
        .sum();
    (pe < 1.0).then(|| (po - pe) / (1.0 - pe))
}

/// Fleiss' kappa: `units[i]` holds the scores every rater gave unit i (same count each).
pub fn fleiss_kappa(units: &[Vec<f64>]) -> Option<f64> {
    let m = units.first()?.len();
    if m < 2 || units.iter().any(|u| u.len() != m) {
        return None;
    }
    let cats: Vec<u64> = units
        .iter()
        .flatten()
        .map(|v| v.to_bits())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (n, mf) = (units.len() as f64, m as f64);
    let mut p_bar = 0.0;
    let mut totals = vec![0f64; cats.len()];
    for u in units {
        let mut agree = 0.0;
        for (j, c) in cats.iter().enumerate() {
            let k = u.iter().filter(|v| v.to_bits() == *c).count() as f64;
            totals[j] += k;
            agree += k * k;
        }
        p_bar += (agree - mf) / (mf * (mf - 1.0));
    }
    p_bar /= n;
    let pe: f64 = totals.iter().map(|t| (t / (n * mf)).powi(2)).sum();
    (pe < 1.0).then(|| (p_bar - pe) / (1.0 - pe))
}

/// Means with item-level bootstrap intervals, pairwise win rates, agreement.
pub fn summarize(scores: &[Score], key: &ReviewKey) -> ReviewSummary {
    let reviewers: Vec<String> = scores
        .iter()
        .map(|s| s.reviewer.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // system -> item -> scores (one per reviewer).
    let mut by_sys: BTreeMap<&str, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    for s in scores {
        by_sys
            .entry(&s.system)
            .or_default()
            .entry(s.item)
            .or_default()
            .push(s.score);
    }
    let systems: Vec<SystemScore> = key
        .systems
        .iter()
        .filter_map(|name| {
            let items = by_sys.get(name.as_str())?;
            let item_means: Vec<f64> = items
                .values()
                .map(|v| v.iter().sum::<f64>() / v.len() as f64)
                .collect();
            let mean = item_means.iter().sum::<f64>() / item_means.len() as f64;
            // Resample items (each item's reviewers together), the unit the answers differ by.
            let mut rng = Rng(key.seed ^ 0x5eed_b007);
            let k = item_means.len();
            let mut boots: Vec<f64> = (0..BOOTSTRAP)
                .map(|_| {
                    (0..k)
                        .map(|_| item_means[(rng.next_u64() % k as u64) as usize])
                        .sum::<f64>()
                        / k as f64
                })
                .collect();
            boots.sort_by(f64::total_cmp);
            let lo = boots[(0.025 * BOOTSTRAP as f64) as usize];
            let hi = boots[((0.975 * BOOTSTRAP as f64) as usize).min(BOOTSTRAP - 1)];
            Some(SystemScore {
                system: name.clone(),
                mean,
                ci_low: lo,
                ci_high: hi,
                n: items.values().map(Vec::len).sum(),
                items: k,
            })
        })
        .collect();
    // (reviewer, item) -> system -> score
    let mut cell: BTreeMap<(&str, usize), BTreeMap<&str, f64>> = BTreeMap::new();
    for s in scores {
        cell.entry((&s.reviewer, s.item))
            .or_default()
            .insert(&s.system, s.score);
    }
    let mut win_rates = Vec::new();
    for (i, a) in systems.iter().enumerate() {
        for b in &systems[i + 1..] {
            let (mut w, mut t, mut l) = (0, 0, 0);
            for m in cell.values() {
                if let (Some(x), Some(y)) = (m.get(a.system.as_str()), m.get(b.system.as_str())) {
                    match x.total_cmp(y) {
                        std::cmp::Ordering::Greater => w += 1,
                        std::cmp::Ordering::Equal => t += 1,
                        std::cmp::Ordering::Less => l += 1,
                    }
                }
            }
            let n = w + t + l;
            if n > 0 {
                win_rates.push(WinRate {
                    a: a.system.clone(),
                    b: b.system.clone(),
                    wins: w,
                    ties: t,
                    losses: l,
                    win_rate: (w as f64 + t as f64 / 2.0) / n as f64,
                });
            }
        }
    }
    let agreement = (reviewers.len() >= 2).then(|| {
        // (item, label) -> reviewer -> score, kept where every reviewer scored.
        let mut units: BTreeMap<(usize, &str), BTreeMap<&str, f64>> = BTreeMap::new();
        for s in scores {
            units
                .entry((s.item, &s.label))
                .or_default()
                .insert(&s.reviewer, s.score);
        }
        let full: Vec<Vec<f64>> = units
            .values()
            .filter(|m| m.len() == reviewers.len())
            .map(|m| m.values().copied().collect())
            .collect();
        let (method, kappa) = if reviewers.len() == 2 {
            let a: Vec<f64> = full.iter().map(|u| u[0]).collect();
            let b: Vec<f64> = full.iter().map(|u| u[1]).collect();
            ("cohen", cohen_kappa(&a, &b))
        } else {
            ("fleiss", fleiss_kappa(&full))
        };
        Agreement {
            method: method.into(),
            reviewers: reviewers.clone(),
            units: full.len(),
            kappa,
        }
    });
    ReviewSummary {
        run: key.run.clone(),
        stage: key.stage.clone(),
        reviewers,
        scores: scores.len(),
        systems,
        win_rates,
        agreement,
        method: format!(
            "mean of item means; 95% interval: percentile bootstrap over items, {BOOTSTRAP} resamples, seed {}; \
             win rate = (wins + ties/2) / comparisons on the same item by the same reviewer; \
             kappa over answers every reviewer scored, scores as categories",
            key.seed
        ),
    }
}

/// The `## Blind review` section of the report.
pub fn summary_md(s: &ReviewSummary) -> String {
    let mut m = format!(
        "\n## Blind review\n\n{} scores from {} reviewer{} ({}).\n\n| system | mean | 95% interval | scores | items |\n|---|---:|---:|---:|---:|\n",
        s.scores,
        s.reviewers.len(),
        if s.reviewers.len() == 1 { "" } else { "s" },
        s.reviewers.join(", ")
    );
    for x in &s.systems {
        writeln!(
            m,
            "| {} | {:.3} | {:.3} – {:.3} | {} | {} |",
            x.system, x.mean, x.ci_low, x.ci_high, x.n, x.items
        )
        .ok();
    }
    if !s.win_rates.is_empty() {
        m.push_str("\n| pair | wins | ties | losses | win rate |\n|---|---:|---:|---:|---:|\n");
        for w in &s.win_rates {
            writeln!(
                m,
                "| {} vs {} | {} | {} | {} | {:.3} |",
                w.a, w.b, w.wins, w.ties, w.losses, w.win_rate
            )
            .ok();
        }
    }
    if let Some(a) = &s.agreement {
        let k = a
            .kappa
            .map_or("undefined".to_owned(), |k| format!("{k:.3}"));
        writeln!(
            m,
            "\nAgreement ({}'s kappa, {} answers scored by all): {k}",
            if a.method == "cohen" {
                "Cohen"
            } else {
                "Fleiss"
            },
            a.units
        )
        .ok();
    }
    writeln!(m, "\n_{}_", s.method).ok();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples(n: usize) -> Vec<ExampleRecord> {
        (0..n)
            .map(|i| ExampleRecord {
                index: i,
                prompt: format!("Q{i}"),
                reference: format!("R{i}"),
                label: None,
                task: None,
                outputs: BTreeMap::from([
                    ("base".into(), format!("base says {i}")),
                    ("prompted".into(), format!("prompted says {i}")),
                    ("adapter".into(), format!("adapter says {i}")),
                ]),
                predicted_labels: BTreeMap::new(),
                scores: BTreeMap::new(),
            })
            .collect()
    }

    fn key(items: BTreeMap<usize, BTreeMap<String, String>>) -> ReviewKey {
        ReviewKey {
            run: "abc".into(),
            stage: "report".into(),
            seed: 7,
            report_dir: None,
            systems: vec!["base".into(), "prompted".into(), "adapter".into()],
            scale: SCALE,
            items,
        }
    }

    #[test]
    fn blind_pack_hides_systems_and_key_maps_back() {
        let sys: Vec<String> = vec!["base".into(), "prompted".into(), "adapter".into()];
        let (items, map) = blind(&examples(12), &sys, 7, false);
        assert_eq!(
            (items, map.clone()),
            blind(&examples(12), &sys, 7, false),
            "seeded"
        );
        let (items, _) = blind(&examples(12), &sys, 7, false);
        let csv = pack_csv(&items);
        let html = pack_html(&items, "legal");
        for text in [&csv, &html] {
            for s in &sys {
                assert!(!text.contains(&format!("{s}\"")) && !text.contains(&format!(",{s},")));
            }
            assert!(!text.contains("R0"), "no reference unless asked");
        }
        // Each label's answer is the system the key names.
        for it in &items {
            for (l, a) in &it.answers {
                assert!(a.starts_with(&map[&it.item][l]), "{a} under {l}");
            }
        }
        let firsts: BTreeSet<&String> = items.iter().map(|it| &map[&it.item]["A"]).collect();
        assert!(firsts.len() > 1, "the order changes between items");
        assert!(
            html.contains("Save CSV") && html.contains("<select data-item=\"1\" data-label=\"A\">")
        );
        assert_eq!(parse_csv(&csv).unwrap().len(), 1 + 36);
    }

    fn scores_csv(rows: &[(&str, usize, &str, &str)]) -> String {
        let mut s = "item,label,reviewer,score,comment\n".to_owned();
        for (r, i, l, v) in rows {
            s.push_str(&format!("{i},{l},{r},{v},\"a, \"\"quoted\"\"\ncomment\"\n"));
        }
        s
    }

    #[test]
    fn import_unblinds_and_summarizes() {
        let k = key(BTreeMap::from([
            (
                1,
                BTreeMap::from([("A".into(), "adapter".into()), ("B".into(), "base".into())]),
            ),
            (
                2,
                BTreeMap::from([("A".into(), "base".into()), ("B".into(), "adapter".into())]),
            ),
        ]));
        let text = scores_csv(&[
            ("ann", 1, "A", "5"),
            ("ann", 1, "B", "2"),
            ("ann", 2, "A", "3"),
            ("ann", 2, "B", "3"),
            ("bob", 1, "a", "4"),
            ("bob", 1, "B", "2"),
            ("bob", 2, "A", "1"),
            ("bob", 2, "B", ""),
        ]);
        let p = Path::new("scores.csv");
        let s = read_scores(p, &text, &k).unwrap();
        assert_eq!(s.len(), 7, "the empty score is skipped");
        assert_eq!(s[0].system, "adapter");
        assert_eq!(s[2].system, "base");
        let sum = summarize(&s, &k);
        let ad = sum.systems.iter().find(|x| x.system == "adapter").unwrap();
        // adapter: item 1 (5+4)/2 = 4.5, item 2: 3 -> 3.75.
        assert!((ad.mean - 3.75).abs() < 1e-12);
        assert!(ad.ci_low >= 3.0 && ad.ci_high <= 4.5 && ad.ci_low <= ad.mean);
        // base vs adapter: ann 1 (2<5) loss, ann 2 (3=3) tie, bob 1 (2<4) loss.
        let w = &sum.win_rates[0];
        assert_eq!((w.a.as_str(), w.wins, w.ties, w.losses), ("base", 0, 1, 2));
        assert!((w.win_rate - 1.0 / 6.0).abs() < 1e-12);
        let a = sum.agreement.as_ref().unwrap();
        assert_eq!((a.method.as_str(), a.units), ("cohen", 3));
        assert!(summary_md(&sum).contains("| adapter | 3.750 |"));
    }

    #[test]
    fn malformed_scores_name_row_and_column() {
        let k = key(BTreeMap::from([(
            1,
            BTreeMap::from([("A".into(), "base".into())]),
        )]));
        let p = Path::new("scores.csv");
        let err = |text: &str| read_scores(p, text, &k).unwrap_err().to_string();
        assert!(
            err("item,label,reviewer,score\n1,A,ann,five\n")
                .contains("line 2: column `score`: `five` is not a number")
        );
        assert!(
            err("item,label,reviewer,score\n1,A,ann,4\n1,C,ann,3\n")
                .contains("line 3: column `label`")
        );
        assert!(
            err("item,label,reviewer,score\n9,A,ann,3\n")
                .contains("line 2: column `item`: there is no item 9")
        );
        assert!(err("item,label,reviewer,score\n1,A,ann,7\n").contains("outside the scale"));
        assert!(err("item,label,reviewer\n1,A,ann\n").contains("line 1: no `score` column"));
        assert!(err("item,label,score\n1,A\n").contains("line 2: 2 columns"));
        assert!(err("item,label,score\n1,A,3\n1,A,4\n").contains("twice"));
        // The line of a record after a quoted newline is counted right.
        assert!(
            err("item,label,score,comment\n1,A,3,\"two\nlines\"\n1,B,2,x\n")
                .contains("line 4: column `label`")
        );
    }

    #[test]
    fn kappas_match_hand_computation() {
        // Agreement 3/5; both raters 1:2/5 2:2/5 3:1/5 -> pe 9/25; (0.6 - 0.36) / 0.64.
        let k = cohen_kappa(&[1.0, 2.0, 3.0, 1.0, 2.0], &[1.0, 2.0, 2.0, 1.0, 3.0]).unwrap();
        assert!((k - 0.375).abs() < 1e-12);
        // Units [a a a], [a a b]: P = 1 and 1/3, mean 2/3; p_a 5/6, p_b 1/6 -> Pe 26/36; kappa -0.2.
        let f = fleiss_kappa(&[vec![1.0, 1.0, 1.0], vec![1.0, 1.0, 2.0]]).unwrap();
        assert!((f + 0.2).abs() < 1e-12);
        assert_eq!(cohen_kappa(&[1.0, 1.0], &[1.0, 1.0]), None);
        assert_eq!(label(0), "A");
        assert_eq!(label(26), "AA");
    }
}

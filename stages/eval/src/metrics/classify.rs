//! Classification metrics as scikit-learn computes them
//! (`accuracy_score`, `precision_recall_fscore_support` with
//! `zero_division=0`, `confusion_matrix`), exact match, and label extraction
//! from generated text.

use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// One averaged precision/recall/F1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Averaged {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Everything scikit-learn's `classification_report` knows, plus the confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub accuracy: f64,
    /// Sorted labels (rows and columns of the confusion matrix).
    pub labels: Vec<String>,
    pub per_class: Vec<ClassScore>,
    pub macro_avg: Averaged,
    pub micro_avg: Averaged,
    pub weighted_avg: Averaged,
    /// `confusion[i][j]`: true label `labels[i]` predicted as `labels[j]`.
    pub confusion: Vec<Vec<u64>>,
    pub n: u64,
}

/// sklearn's `_prf_divide` with zero_division=0.
fn div(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num / den }
}

/// Scores `y_pred` against `y_true`. `labels`: None = sorted union of both
/// (sklearn's default); Some = exactly these, sorted (sklearn's `labels=`),
/// so predictions outside the set only count as misses.
pub fn classification_report<S: AsRef<str>>(
    y_true: &[S],
    y_pred: &[S],
    labels: Option<&[String]>,
) -> ClassificationReport {
    assert_eq!(
        y_true.len(),
        y_pred.len(),
        "y_true and y_pred differ in length"
    );
    let mut labs: Vec<String> = match labels {
        Some(l) => l.to_vec(),
        None => y_true
            .iter()
            .chain(y_pred)
            .map(|s| s.as_ref().to_owned())
            .collect(),
    };
    labs.sort();
    labs.dedup();
    let k = labs.len();
    let index = |s: &str| labs.binary_search_by(|l| l.as_str().cmp(s)).ok();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut correct = 0u64;
    let mut tp = vec![0u64; k];
    let mut pred_sum = vec![0u64; k];
    let mut true_sum = vec![0u64; k];
    for (t, p) in y_true.iter().zip(y_pred) {
        let (t, p) = (t.as_ref(), p.as_ref());
        if t == p {
            correct += 1;
        }
        let (ti, pi) = (index(t), index(p));
        if let Some(i) = ti {
            true_sum[i] += 1;
        }
        if let Some(j) = pi {
            pred_sum[j] += 1;
        }
        if let (Some(i), Some(j)) = (ti, pi) {
            confusion[i][j] += 1;
            if i == j {
                tp[i] += 1;
            }
        }
    }
    let n = y_true.len() as u64;
    let mut per_class = Vec::with_capacity(k);
    for i in 0..k {
        let precision = div(tp[i] as f64, pred_sum[i] as f64);
        let recall = div(tp[i] as f64, true_sum[i] as f64);
        // sklearn >= 1.3: F = (1 + b^2) tp / (b^2 true + pred).
        let f1 = div(2.0 * tp[i] as f64, true_sum[i] as f64 + pred_sum[i] as f64);
        per_class.push(ClassScore {
            label: labs[i].clone(),
            precision,
            recall,
            f1,
            support: true_sum[i],
        });
    }
    let mean = |f: &dyn Fn(&ClassScore) -> f64| {
        if k == 0 {
            0.0
        } else {
            per_class.iter().map(f).sum::<f64>() / k as f64
        }
    };
    let macro_avg = Averaged {
        precision: mean(&|c| c.precision),
        recall: mean(&|c| c.recall),
        f1: mean(&|c| c.f1),
    };
    let (stp, spred, strue) = (
        tp.iter().sum::<u64>() as f64,
        pred_sum.iter().sum::<u64>() as f64,
        true_sum.iter().sum::<u64>() as f64,
    );
    let micro_avg = Averaged {
        precision: div(stp, spred),
        recall: div(stp, strue),
        f1: div(2.0 * stp, strue + spred),
    };
    let wsum: f64 = true_sum.iter().sum::<u64>() as f64;
    let wmean = |f: &dyn Fn(&ClassScore) -> f64| {
        if wsum == 0.0 {
            0.0
        } else {
            per_class
                .iter()
                .map(|c| f(c) * c.support as f64)
                .sum::<f64>()
                / wsum
        }
    };
    let weighted_avg = Averaged {
        precision: wmean(&|c| c.precision),
        recall: wmean(&|c| c.recall),
        f1: wmean(&|c| c.f1),
    };
    ClassificationReport {
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        labels: labs.clone(),
        per_class,
        macro_avg,
        micro_avg,
        weighted_avg,
        confusion,
        n,
    }
}

/// Normalization for exact match and label extraction: lowercase, collapse
/// whitespace, strip surrounding punctuation and quotes.
pub fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let joined = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .trim_matches(|c: char| {
            c.is_ascii_punctuation() || matches!(c, '“' | '”' | '‘' | '’' | '。' | '，' | '：')
        })
        .trim()
        .to_owned()
}

/// Normalized exact match (1.0 or 0.0).
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    if normalize(prediction) == normalize(reference) {
        1.0
    } else {
        0.0
    }
}

/// How a label is found in generated text.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LabelMatch {
    /// The normalized output equals a label.
    Exact,
    /// The normalized output equals or starts with a label (at a word boundary).
    StartsWith,
    /// As `starts_with`, else the label occurring first anywhere in the output (at word boundaries).
    #[default]
    Contains,
}

fn boundary_after(s: &str, end: usize) -> bool {
    s[end..].chars().next().is_none_or(|c| !c.is_alphanumeric())
}

fn boundary_before(s: &str, start: usize) -> bool {
    s[..start]
        .chars()
        .next_back()
        .is_none_or(|c| !c.is_alphanumeric())
}

/// The label of `labels` that the generated `output` names, if any. Labels
/// and output are compared normalized. Among labels the output starts with,
/// the longest wins (so `not relevant` beats `not`); with `Contains`, the
/// earliest occurrence wins, then the longest.
pub fn extract_label<'a>(output: &str, labels: &'a [String], mode: LabelMatch) -> Option<&'a str> {
    let out = normalize(output);
    let norm: Vec<String> = labels.iter().map(|l| normalize(l)).collect();
    if let Some(i) = norm.iter().position(|l| *l == out) {
        return Some(&labels[i]);
    }
    if mode == LabelMatch::Exact {
        return None;
    }
    let mut best: Option<(usize, usize)> = None; // (label index, len)
    for (i, l) in norm.iter().enumerate() {
        if !l.is_empty()
            && out.starts_with(l.as_str())
            && boundary_after(&out, l.len())
            && best.is_none_or(|(_, n)| l.len() > n)
        {
            best = Some((i, l.len()));
        }
    }
    if let Some((i, _)) = best {
        return Some(&labels[i]);
    }
    if mode == LabelMatch::StartsWith {
        return None;
    }
    let mut best: Option<(usize, usize, usize)> = None; // (pos, label index, len)
    for (i, l) in norm.iter().enumerate() {
        if l.is_empty() {
            continue;
        }
        for (pos, _) in out.match_indices(l.as_str()) {
            if boundary_before(&out, pos) && boundary_after(&out, pos + l.len()) {
                let better = best.is_none_or(|(bp, _, bl)| pos < bp || (pos == bp && l.len() > bl));
                if better {
                    best = Some((pos, i, l.len()));
                }
                break;
            }
        }
    }
    best.map(|(_, i, _)| labels[i].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction() {
        let labels: Vec<String> = ["yes", "no", "not relevant"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            extract_label("Yes.", &labels, LabelMatch::Exact),
            Some("yes")
        );
        assert_eq!(
            extract_label("Not relevant, because", &labels, LabelMatch::StartsWith),
            Some("not relevant")
        );
        assert_eq!(
            extract_label("Nothing", &labels, LabelMatch::StartsWith),
            None
        );
        assert_eq!(
            extract_label("The answer is no.", &labels, LabelMatch::Contains),
            Some("no")
        );
        assert_eq!(
            extract_label("The answer is no.", &labels, LabelMatch::StartsWith),
            None
        );
    }

    #[test]
    fn never_predicted_class() {
        let r = classification_report(&["a", "b", "c"], &["a", "a", "b"], None);
        assert_eq!(r.labels, ["a", "b", "c"]);
        assert_eq!(r.per_class[2].f1, 0.0);
        assert_eq!(r.confusion[1][0], 1);
    }
}

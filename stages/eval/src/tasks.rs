//! Classification scored per task (issue #6): a test set that mixes tasks
//! (hearsay Yes/No, abercrombie's five classes, A–D choice) gets one label set,
//! one classification report and one accuracy/F1 per task, instead of one
//! confusion matrix over every label of every task.
//!
//! - A row takes part when it has a class label (rows without one are
//!   generation tasks and are scored by ROUGE/BLEU only).
//! - Its label is extracted from the output among *its task's* labels: the
//!   configured ones, else the distinct true labels of that task.
//! - Metrics: `accuracy/<task>`, `f1_macro/<task>` (scikit-learn, labels sorted,
//!   zero_division=0), `accuracy` over every labelled row, and `f1_macro` as the
//!   mean of the tasks' macro F1 (each task counts once, whatever its size).

use std::collections::BTreeMap;

use crate::metrics::{ClassificationReport, LabelMatch, classification_report, extract_label};

/// Task name of rows that carry a label but no task.
pub const NO_TASK: &str = "other";

/// Per-task classification of one system's outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskScores {
    /// Task -> its label set (sorted).
    pub label_sets: BTreeMap<String, Vec<String>>,
    /// Task -> classification report.
    pub reports: BTreeMap<String, ClassificationReport>,
    /// `accuracy`, `f1_macro`, `accuracy/<task>`, `f1_macro/<task>`.
    pub metrics: BTreeMap<String, f64>,
    /// Per row: the extracted label (None: none found, or not a labelled row).
    pub predicted: Vec<Option<String>>,
    /// Per row: 1.0 / 0.0 for labelled rows, None otherwise.
    pub correct: Vec<Option<f64>>,
}

/// The task a row is scored under.
pub fn task_of(task: Option<&str>) -> &str {
    task.filter(|t| !t.is_empty()).unwrap_or(NO_TASK)
}

/// Label set of every task that has labelled rows: `configured[task]` if given,
/// else the distinct true labels of the task; sorted.
pub fn label_sets(
    labels: &[Option<String>],
    tasks: &[Option<String>],
    configured: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (l, t) in labels.iter().zip(tasks) {
        if let Some(l) = l {
            sets.entry(task_of(t.as_deref()).to_owned())
                .or_default()
                .push(l.clone());
        }
    }
    for (task, set) in &mut sets {
        if let Some(c) = configured.get(task) {
            *set = c.clone();
        }
        set.sort();
        set.dedup();
    }
    sets
}

/// Scores `predictions` per task. `labels[i]`: the true class of row i (None:
/// not a classification row); `tasks[i]`: its task.
pub fn score_by_task(
    predictions: &[String],
    labels: &[Option<String>],
    tasks: &[Option<String>],
    configured: &BTreeMap<String, Vec<String>>,
    mode: LabelMatch,
) -> TaskScores {
    assert!(predictions.len() == labels.len() && labels.len() == tasks.len());
    let label_sets = label_sets(labels, tasks, configured);
    let n = predictions.len();
    let mut out = TaskScores {
        predicted: vec![None; n],
        correct: vec![None; n],
        ..TaskScores::default()
    };
    let mut by_task: BTreeMap<&str, (Vec<&str>, Vec<String>)> = BTreeMap::new();
    let (mut right, mut total) = (0u64, 0u64);
    for i in 0..n {
        let Some(truth) = labels[i].as_deref() else {
            continue;
        };
        let task = task_of(tasks[i].as_deref());
        let set = &label_sets[task];
        let p = extract_label(&predictions[i], set, mode).map(str::to_owned);
        let ok = p.as_deref() == Some(truth);
        total += 1;
        right += u64::from(ok);
        out.correct[i] = Some(if ok { 1.0 } else { 0.0 });
        let e = by_task.entry(task).or_default();
        e.0.push(truth);
        // An output naming no label is a miss for its true class and no class's prediction.
        e.1.push(p.clone().unwrap_or_default());
        out.predicted[i] = p;
    }
    for (task, (y_true, y_pred)) in &by_task {
        let y_pred: Vec<&str> = y_pred.iter().map(String::as_str).collect();
        let rep = classification_report(y_true, &y_pred, Some(&label_sets[*task]));
        out.metrics.insert(format!("accuracy/{task}"), rep.accuracy);
        out.metrics
            .insert(format!("f1_macro/{task}"), rep.macro_avg.f1);
        out.reports.insert((*task).to_owned(), rep);
    }
    if total > 0 {
        out.metrics
            .insert("accuracy".into(), right as f64 / total as f64);
        let f1s: Vec<f64> = out.reports.values().map(|r| r.macro_avg.f1).collect();
        out.metrics.insert(
            "f1_macro".into(),
            f1s.iter().sum::<f64>() / f1s.len() as f64,
        );
    }
    out.label_sets = label_sets;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_task_has_its_own_labels_and_scores() {
        // Two tasks and one generation row. In hearsay, "No" only matches the
        // hearsay labels: the abercrombie label "generic" in the output is ignored.
        let preds = s(&[
            "Yes.",                  // hearsay, true Yes -> Yes
            "No, it is generic",     // hearsay, true Yes -> No
            "no",                    // hearsay, true No  -> No
            "It is generic.",        // abercrombie, true generic -> generic
            "arbitrary",             // abercrombie, true fanciful -> arbitrary
            "Some free text answer", // judgment: no label, skipped
        ]);
        let labels = vec![
            Some("Yes".to_string()),
            Some("Yes".to_string()),
            Some("No".to_string()),
            Some("generic".to_string()),
            Some("fanciful".to_string()),
            None,
        ];
        let tasks: Vec<Option<String>> = [
            "hearsay",
            "hearsay",
            "hearsay",
            "abercrombie",
            "abercrombie",
            "judgment",
        ]
        .iter()
        .map(|t| Some(t.to_string()))
        .collect();
        let configured = BTreeMap::from([(
            "abercrombie".to_string(),
            s(&[
                "generic",
                "descriptive",
                "suggestive",
                "arbitrary",
                "fanciful",
            ]),
        )]);
        let r = score_by_task(&preds, &labels, &tasks, &configured, LabelMatch::Contains);
        assert_eq!(r.label_sets["hearsay"], ["No", "Yes"]);
        assert_eq!(r.label_sets["abercrombie"].len(), 5);
        assert!(!r.label_sets.contains_key("judgment"));
        assert_eq!(r.predicted[1].as_deref(), Some("No"));
        assert_eq!(r.predicted[5], None);
        assert_eq!(r.correct[5], None);
        // hearsay: 2/3 right; per class: No p=1/2 r=1 f1=2/3, Yes p=1 r=1/2 f1=2/3.
        assert!((r.metrics["accuracy/hearsay"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.metrics["f1_macro/hearsay"] - 2.0 / 3.0).abs() < 1e-12);
        // abercrombie over 5 labels: generic f1 1, fanciful 0 (missed), arbitrary 0
        // (false positive), two unused labels 0 -> macro 1/5.
        assert!((r.metrics["accuracy/abercrombie"] - 0.5).abs() < 1e-12);
        assert!((r.metrics["f1_macro/abercrombie"] - 0.2).abs() < 1e-12);
        // Overall: 3 of 5 labelled rows; macro over tasks (2/3 + 1/5) / 2.
        assert!((r.metrics["accuracy"] - 0.6).abs() < 1e-12);
        assert!((r.metrics["f1_macro"] - (2.0 / 3.0 + 0.2) / 2.0).abs() < 1e-12);
        assert_eq!(r.reports["hearsay"].labels, ["No", "Yes"]);
    }

    #[test]
    fn rows_without_task_share_one_set() {
        let preds = s(&["a", "b"]);
        let labels = vec![Some("a".to_string()), Some("a".to_string())];
        let r = score_by_task(
            &preds,
            &labels,
            &[None, None],
            &BTreeMap::new(),
            LabelMatch::Exact,
        );
        assert_eq!(r.label_sets[NO_TASK], ["a"]);
        assert!((r.metrics["accuracy"] - 0.5).abs() < 1e-12);
        assert_eq!(r.predicted[1], None, "b is not a label of the task");
    }
}

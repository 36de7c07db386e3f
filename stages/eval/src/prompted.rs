//! The prompt-only baseline (issue #9): the base model with k examples from the
//! training split as earlier turns of the conversation, rendered with the same
//! chat template as the test prompt.
//!
//! The eval stage sees rendered rows, not the template, so the few-shot prompt
//! is assembled from rendered text: a rendered conversation is
//! `P + turns` where `P` is the system turn (if any). The few-shot prompt is
//! `P + turns(shot 1) + ... + turns(shot k) + turns(test prompt)`, which is
//! what the template itself renders for the longer conversation whenever each
//! turn renders the same wherever it stands (chatml, llama3, qwen, zephyr, ...;
//! the render stage already relies on the prefix property for its spans).
//! `P` ends after the first end-of-turn text (taken from a shot's trained span)
//! inside the prefix that the test prompt and every shot share; without one
//! (no system turn) `P` is empty. A test in the `pipe` crate checks the result
//! against the template's own rendering.

use serde::{Deserialize, Serialize};

use crate::generate::Rng;

/// `compare_prompted: {shots: 3, from: chat.train}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptedParams {
    /// Examples from the training split put before each test prompt.
    #[serde(default = "PromptedParams::default_shots")]
    pub shots: usize,
    /// The rendered training table to draw them from (a render stage's output, e.g. `chat.train`),
    /// also listed in the stage's `from`.
    pub from: String,
    /// Shots are dropped (last first) while the prompt has more tokens than this.
    #[serde(default = "PromptedParams::default_max_prompt_tokens")]
    pub max_prompt_tokens: usize,
}

impl PromptedParams {
    fn default_shots() -> usize {
        3
    }
    fn default_max_prompt_tokens() -> usize {
        2048
    }
}

/// A rendered training row as a shot: its full text, the trained span of its
/// last answer and the answer itself.
#[derive(Debug, Clone, Copy)]
pub struct Shot<'a> {
    pub rendered: &'a str,
    pub last_span: Option<(u32, u32)>,
    pub reference: &'a str,
}

/// `k` training rows for test row `index`, drawn without replacement by a
/// stream seeded with `(seed, index)`: rows of the same task when the
/// training split has any, else any row. Same inputs, same shots, whatever
/// the order in which test rows are processed.
pub fn pick_shots(
    train_tasks: &[Option<String>],
    task: Option<&str>,
    k: usize,
    seed: u64,
    index: usize,
) -> Vec<usize> {
    let same: Vec<usize> = (0..train_tasks.len())
        .filter(|&i| task.is_some() && train_tasks[i].as_deref() == task)
        .collect();
    let mut pool = if same.is_empty() {
        (0..train_tasks.len()).collect()
    } else {
        same
    };
    let mut rng = Rng(seed ^ (index as u64 + 1).wrapping_mul(0x9fb2_1c65_1e98_df25));
    let k = k.min(pool.len());
    // Partial Fisher-Yates: the first k slots are the draw.
    for i in 0..k {
        let j = i + (rng.next_u64() % (pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool
}

/// Shots for every test row (see [`pick_shots`]).
pub fn pick_all_shots(
    train_tasks: &[Option<String>],
    test_tasks: &[Option<String>],
    k: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    test_tasks
        .iter()
        .enumerate()
        .map(|(i, t)| pick_shots(train_tasks, t.as_deref(), k, seed, i))
        .collect()
}

/// The end-of-turn text of a shot (`<|im_end|>`, `<|eot_id|>`, `<|end|>`: the
/// first word after its last answer) and where its last turn ends: after that
/// text and the whitespace a template writes after a turn, before anything
/// only the end of a whole conversation gets (phi3's `<|endoftext|>`).
fn end_of_turn<'a>(shot: &Shot<'a>) -> Option<(&'a str, usize)> {
    let (s, _) = shot.last_span?;
    let answer_end = s as usize + shot.reference.len();
    let after = shot.rendered.get(answer_end..)?;
    if !shot.rendered[s as usize..].starts_with(shot.reference) {
        return None;
    }
    let eot = after.split_whitespace().next()?;
    let at = answer_end + after.find(eot)? + eot.len();
    Some((eot, at + whitespace_len(&shot.rendered[at..])))
}

fn whitespace_len(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = 0;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            return i;
        }
        n = i + x.len_utf8();
    }
    n
}

/// The test prompt with `shots` as earlier turns (see the module doc).
pub fn few_shot_prompt(prompt: &str, shots: &[Shot<'_>]) -> String {
    if shots.is_empty() {
        return prompt.to_owned();
    }
    let shared = shots
        .iter()
        .map(|s| common_prefix(prompt, s.rendered))
        .min()
        .unwrap_or(0);
    let system_end = shots
        .iter()
        .find_map(end_of_turn)
        .and_then(|(eot, _)| {
            let at = prompt[..shared].find(eot)? + eot.len();
            // The newline a template writes after a turn belongs to that turn.
            Some(at + whitespace_len(&prompt[at..shared]))
        })
        .unwrap_or(0);
    let mut out = prompt[..system_end].to_owned();
    for s in shots {
        let end = end_of_turn(s).map_or(s.rendered.len(), |(_, end)| end);
        out.push_str(&s.rendered[system_end..end.max(system_end)]);
    }
    out.push_str(&prompt[system_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chatml(system: &str, turns: &[(&str, &str)], question: &str) -> (String, String) {
        let mut s = format!("<|im_start|>system\n{system}<|im_end|>\n");
        for (u, a) in turns {
            s.push_str(&format!(
                "<|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"
            ));
        }
        let full = s.clone();
        s.push_str(&format!(
            "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        ));
        (full, s)
    }

    #[test]
    fn shots_become_earlier_turns() {
        let sys = "You are a careful legal assistant.";
        let (r1, _) = chatml(sys, &[("Is it hearsay? A", "Yes")], "");
        let (r2, _) = chatml(sys, &[("Is it hearsay? B", "No")], "");
        let (_, prompt) = chatml(sys, &[], "Is it hearsay? C");
        let span = |r: &str, a: &str| {
            let s = r.rfind(a).unwrap();
            Some((s as u32, (s + a.len() + "<|im_end|>".len()) as u32))
        };
        let shots = [
            Shot {
                rendered: &r1,
                last_span: span(&r1, "Yes"),
                reference: "Yes",
            },
            Shot {
                rendered: &r2,
                last_span: span(&r2, "No"),
                reference: "No",
            },
        ];
        let (_, expected) = chatml(
            sys,
            &[("Is it hearsay? A", "Yes"), ("Is it hearsay? B", "No")],
            "Is it hearsay? C",
        );
        assert_eq!(few_shot_prompt(&prompt, &shots), expected);
        assert_eq!(few_shot_prompt(&prompt, &[]), prompt);
    }

    #[test]
    fn shot_selection_is_seeded_and_per_task() {
        let train: Vec<Option<String>> = ["a", "b", "a", "a", "b", "a"]
            .iter()
            .map(|t| Some(t.to_string()))
            .collect();
        let one = pick_shots(&train, Some("a"), 3, 42, 0);
        assert_eq!(
            one,
            pick_shots(&train, Some("a"), 3, 42, 0),
            "deterministic"
        );
        assert_eq!(one.len(), 3);
        assert!(one.iter().all(|&i| train[i].as_deref() == Some("a")));
        let mut sorted = one.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "without replacement");
        assert_eq!(pick_shots(&train, Some("b"), 5, 42, 0).len(), 2);
        assert_eq!(
            pick_shots(&train, Some("zzz"), 2, 42, 0).len(),
            2,
            "any task"
        );
        let draws: Vec<Vec<usize>> = (0..8)
            .map(|i| pick_shots(&train, Some("a"), 2, 42, i))
            .collect();
        assert!(
            draws.iter().any(|d| d != &draws[0]),
            "rows get different shots"
        );
        assert_eq!(
            pick_all_shots(&train, &[Some("b".into())], 1, 42)[0],
            pick_shots(&train, Some("b"), 1, 42, 0)
        );
    }
}

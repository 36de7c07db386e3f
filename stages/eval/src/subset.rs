//! Which test rows `max_examples` evaluates.
//!
//! The test table is ordered by source (one task's rows, then the next's), so
//! its first N rows can all come from one task and a report would miss whole
//! tasks. Instead each task gets a share of N in proportion to its size (at
//! least one row while N allows), and within a task the rows are the ones with
//! the smallest seeded hash of their text: the same rows on every run, and
//! mostly the same ones when rows are added to the table.

use std::collections::BTreeMap;

use crate::tasks::task_of;

/// Indices of the `n` rows to evaluate, in table order. `rows` gives each
/// row's task and a text that identifies it (its rendered conversation).
pub fn spread_over_tasks(rows: &[(Option<&str>, &str)], n: usize, seed: u64) -> Vec<usize> {
    if n >= rows.len() {
        return (0..rows.len()).collect();
    }
    let mut by_task: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (task, _)) in rows.iter().enumerate() {
        by_task.entry(task_of(*task)).or_default().push(i);
    }
    let quotas = quotas(&by_task.values().map(Vec::len).collect::<Vec<_>>(), n);
    let mut picked: Vec<usize> = Vec::with_capacity(n);
    for (members, quota) in by_task.values().zip(quotas) {
        let mut ranked: Vec<(blake3::Hash, usize)> = members
            .iter()
            .map(|&i| {
                let mut h = blake3::Hasher::new();
                h.update(&seed.to_le_bytes());
                h.update(rows[i].1.as_bytes());
                (h.finalize(), i)
            })
            .collect();
        // Equal texts (possible in a test split) are told apart by position.
        ranked.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
        picked.extend(ranked.iter().take(quota).map(|&(_, i)| i));
    }
    picked.sort_unstable();
    picked
}

/// Split `n` (< the sum of `sizes`) over groups of `sizes`: one each first
/// while `n` allows (smaller groups first, so a small task is not left out),
/// the rest in proportion to size by largest remainder; ties go to the
/// earlier group. No group gets more than its size.
fn quotas(sizes: &[usize], n: usize) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let mut quota = vec![0usize; sizes.len()];
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&g| (sizes[g], g));
    let mut left = n;
    for &g in &order {
        if left == 0 {
            break;
        }
        if sizes[g] > 0 {
            quota[g] = 1;
            left -= 1;
        }
    }
    if left == 0 {
        return quota;
    }
    // Proportional shares of what is left, over the rows not yet taken.
    let room: Vec<usize> = sizes.iter().zip(&quota).map(|(s, q)| s - q).collect();
    let room_total = total - (n - left);
    let mut remainders: Vec<(usize, usize)> = Vec::with_capacity(sizes.len());
    let mut given = 0;
    for (g, &r) in room.iter().enumerate() {
        let exact = left * r;
        let share = exact / room_total;
        quota[g] += share;
        given += share;
        remainders.push((exact % room_total, g));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, g) in remainders.iter().take(left - given) {
        quota[g] += 1;
    }
    quota
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(tasks: &[(&'static str, usize)]) -> Vec<(Option<&'static str>, String)> {
        tasks
            .iter()
            .flat_map(|&(t, k)| (0..k).map(move |i| (Some(t), format!("{t} row {i}"))))
            .collect()
    }

    fn pick(rows: &[(Option<&'static str>, String)], n: usize, seed: u64) -> Vec<usize> {
        let view: Vec<(Option<&str>, &str)> = rows.iter().map(|(t, s)| (*t, s.as_str())).collect();
        spread_over_tasks(&view, n, seed)
    }

    #[test]
    fn every_task_is_represented_in_proportion() {
        // The first 60 rows would all be task "a".
        let rows = table(&[("a", 300), ("b", 90), ("c", 10)]);
        let picked = pick(&rows, 60, 7);
        assert_eq!(picked.len(), 60);
        assert!(
            picked.windows(2).all(|w| w[0] < w[1]),
            "table order, no repeats"
        );
        let count = |t: &str| picked.iter().filter(|&&i| rows[i].0 == Some(t)).count();
        // 1 each, then 57 over 299/89/9 rows: 42.9, 12.8, 1.3 -> 43, 13, 1 (+1 each).
        assert_eq!((count("a"), count("b"), count("c")), (44, 14, 2));
    }

    #[test]
    fn small_n_covers_the_small_tasks_first() {
        let rows = table(&[("a", 50), ("b", 3), ("c", 1)]);
        let picked = pick(&rows, 2, 1);
        let tasks: Vec<_> = picked.iter().map(|&i| rows[i].0.unwrap()).collect();
        assert_eq!(tasks, ["b", "c"]);
    }

    #[test]
    fn the_choice_is_seeded_and_stable_when_rows_are_appended() {
        let rows = table(&[("a", 200), ("b", 200)]);
        assert_eq!(pick(&rows, 40, 3), pick(&rows, 40, 3));
        assert_ne!(pick(&rows, 40, 3), pick(&rows, 40, 4));
        // Appending rows to a task changes that task's choice only by rows that
        // rank before the old ones; most of the old choice stays.
        let mut more = rows.clone();
        more.extend((200..220).map(|i| (Some("b"), format!("b row {i}"))));
        let before: Vec<&String> = pick(&rows, 40, 3).iter().map(|&i| &rows[i].1).collect();
        let after: Vec<&String> = pick(&more, 40, 3).iter().map(|&i| &more[i].1).collect();
        let kept = before.iter().filter(|r| after.contains(r)).count();
        assert!(kept >= 30, "only {kept} of 40 rows kept");
    }

    #[test]
    fn n_at_least_the_table_takes_everything() {
        let rows = table(&[("a", 5)]);
        assert_eq!(pick(&rows, 5, 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(pick(&rows, 9, 0), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn quotas_add_up_and_fit() {
        for (sizes, n) in [
            (vec![1usize, 1, 1], 2),
            (vec![10, 0, 5], 7),
            (vec![3, 3, 3], 8),
            (vec![100, 1], 1),
        ] {
            let q = quotas(&sizes, n);
            assert_eq!(q.iter().sum::<usize>(), n, "{sizes:?} {n}");
            assert!(q.iter().zip(&sizes).all(|(q, s)| q <= s), "{q:?} {sizes:?}");
        }
    }
}

//! First-fit-decreasing bin packing of examples into sequences of `max_len` tokens.

/// Pack `lengths` (each `<= capacity`) into bins; returns each bin's item indices,
/// bins in the order they were opened, items in index order inside a bin.
///
/// Items go longest first (ties by index) into the first bin with room, found in
/// O(log n) with a max segment tree over the bins' free space.
pub fn first_fit_decreasing(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let n = lengths.len();
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let leaves = n.next_power_of_two();
    // Unopened bins have full capacity and sit right of every opened one, so the
    // leftmost bin with room is also the rule for opening a new bin.
    let mut free = vec![capacity; 2 * leaves];
    let mut bins: Vec<Vec<usize>> = Vec::new();
    for item in order {
        let len = lengths[item];
        assert!(
            len <= capacity,
            "item {item} of length {len} exceeds capacity {capacity}"
        );
        let mut node = 1;
        while node < leaves {
            node = if free[2 * node] >= len {
                2 * node
            } else {
                2 * node + 1
            };
        }
        let bin = node - leaves;
        if bin == bins.len() {
            bins.push(Vec::new());
        }
        bins[bin].push(item);
        free[node] -= len;
        while node > 1 {
            node /= 2;
            free[node] = free[2 * node].max(free[2 * node + 1]);
        }
    }
    for bin in &mut bins {
        bin.sort_unstable();
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffd_fills_bins_without_overflow() {
        let lengths = [5, 3, 8, 2, 7, 1, 4, 6];
        let bins = first_fit_decreasing(&lengths, 10);
        // 8 2 | 7 3 | 6 4 | 5 1
        assert_eq!(bins, vec![vec![2, 3], vec![1, 4], vec![6, 7], vec![0, 5]]);
        let mut seen: Vec<usize> = bins.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for bin in &bins {
            assert!(bin.iter().map(|&i| lengths[i]).sum::<usize>() <= 10);
        }
    }

    #[test]
    fn ffd_matches_naive_first_fit_on_many_items() {
        let lengths: Vec<usize> = (0..2000u64)
            .map(|i| (i.wrapping_mul(2654435761) % 97 + 1) as usize)
            .collect();
        let capacity = 128;
        let bins = first_fit_decreasing(&lengths, capacity);
        // The naive O(n * bins) first fit over the same order.
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
        let mut naive: Vec<(usize, Vec<usize>)> = Vec::new();
        for i in order {
            match naive
                .iter_mut()
                .find(|(used, _)| used + lengths[i] <= capacity)
            {
                Some((used, items)) => {
                    *used += lengths[i];
                    items.push(i);
                }
                None => naive.push((lengths[i], vec![i])),
            }
        }
        let naive: Vec<Vec<usize>> = naive
            .into_iter()
            .map(|(_, mut v)| {
                v.sort();
                v
            })
            .collect();
        assert_eq!(bins, naive);
    }
}

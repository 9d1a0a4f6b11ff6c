//! Bidirectional decoding (Liu et al., 2025): choose, among N sampled candidates, the one most coherent with
//! the committed actions (backward coherence) and, given a weak policy, closest to the strong policy's samples
//! and furthest from the weak one's (forward contrast).

/// Decay of the backward-coherence weights over the overlap, per action.
const COHERENCE_DECAY: f64 = 0.5;

/// Returns the index of the best candidate among `candidates` (consecutive chunks of `len` values).
/// `target` holds the committed actions over the overlap (whole actions of `action_dim` values); `weak` holds
/// the weak policy's candidates.
pub(crate) fn select_candidate(
    candidates: &[f32],
    weak: Option<&[f32]>,
    target: &[f32],
    action_dim: usize,
    len: usize,
) -> usize {
    let chunk = |index: usize| &candidates[index * len..(index + 1) * len];
    let backward = |c: &[f32]| -> f64 {
        target
            .chunks(action_dim)
            .zip(c.chunks(action_dim))
            .enumerate()
            .map(|(i, (y, a))| COHERENCE_DECAY.powi(i as i32) * squared_distance(y, a))
            .sum()
    };
    let mean_distance = |c: &[f32], pool: &[f32], skip: Option<usize>| -> f64 {
        let distances: Vec<f64> = pool
            .chunks(len)
            .enumerate()
            .filter(|(k, _)| Some(*k) != skip)
            .map(|(_, other)| squared_distance(other, c).sqrt())
            .collect();
        distances.iter().sum::<f64>() / distances.len().max(1) as f64
    };
    let loss = |index: usize| -> f64 {
        let c = chunk(index);
        let contrast = weak.map_or(0.0, |weak| {
            mean_distance(c, candidates, Some(index)) - mean_distance(c, weak, None)
        });
        backward(c) + contrast
    };
    (0..candidates.len() / len)
        .min_by(|&a, &b| loss(a).total_cmp(&loss(b)))
        .unwrap_or(0)
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::select_candidate;

    #[test]
    fn backward_coherence_prefers_the_candidate_closest_to_the_committed_actions() {
        // Three one-dimensional chunks of two actions; the committed overlap is one action at 1.0.
        let candidates = [0.0f32, 0.0, 0.9, 0.9, 2.0, 2.0];
        assert_eq!(select_candidate(&candidates, None, &[1.0], 1, 2), 1);
    }

    #[test]
    fn forward_contrast_moves_away_from_the_weak_policy() {
        // Equally coherent candidates (no overlap); the weak policy's samples sit near the first one.
        let candidates = [0.0f32, 0.0, 1.0, 1.0];
        let weak = [0.1f32, 0.1, -0.1, -0.1];
        assert_eq!(select_candidate(&candidates, Some(&weak), &[], 1, 2), 1);
    }
}

//! Bidirectional decoding (Liu et al., 2025): choose, among N sampled candidates, the one most coherent with
//! the committed actions (backward coherence) and, given a weak policy, closest to the strong policy's samples
//! and furthest from the weak one's (forward contrast).

use ndarray::{ArrayView, ArrayView2, ArrayView3, Axis, Dimension};

/// Decay of the backward-coherence weights over the overlap, per action.
const COHERENCE_DECAY: f64 = 0.5;

/// Returns the index of the best candidate among `candidates` (`[N, H, A]`). `target` holds the committed actions
/// over the overlap (`[overlap, A]`); `weak` holds the weak policy's candidates (`[N', H, A]`).
pub(crate) fn select_candidate(
    candidates: ArrayView3<f32>,
    weak: Option<ArrayView3<f32>>,
    target: ArrayView2<f32>,
) -> usize {
    let backward = |c: ArrayView2<f32>| -> f64 {
        target
            .outer_iter()
            .zip(c.outer_iter())
            .enumerate()
            .map(|(i, (y, a))| COHERENCE_DECAY.powi(i as i32) * squared_distance(y, a))
            .sum()
    };
    let mean_distance = |c: ArrayView2<f32>, pool: ArrayView3<f32>, skip: Option<usize>| -> f64 {
        let (sum, count) = pool
            .outer_iter()
            .enumerate()
            .filter(|(k, _)| Some(*k) != skip)
            .fold((0.0, 0usize), |(sum, count), (_, other)| {
                (sum + squared_distance(other, c).sqrt(), count + 1)
            });
        sum / count.max(1) as f64
    };
    let loss = |index: usize| -> f64 {
        let c = candidates.index_axis(Axis(0), index);
        let contrast = weak.map_or(0.0, |weak| {
            mean_distance(c, candidates, Some(index)) - mean_distance(c, weak, None)
        });
        backward(c) + contrast
    };
    (0..candidates.len_of(Axis(0)))
        .min_by(|&a, &b| loss(a).total_cmp(&loss(b)))
        .unwrap_or(0)
}

fn squared_distance<D: Dimension>(a: ArrayView<f32, D>, b: ArrayView<f32, D>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::select_candidate;
    use ndarray::{Array2, array};

    #[test]
    fn backward_coherence_prefers_the_candidate_closest_to_the_committed_actions() {
        // Three one-dimensional chunks of two actions; the committed overlap is one action at 1.0.
        let candidates = array![[[0.0f32], [0.0]], [[0.9], [0.9]], [[2.0], [2.0]]];
        assert_eq!(
            select_candidate(candidates.view(), None, array![[1.0f32]].view()),
            1
        );
    }

    #[test]
    fn forward_contrast_moves_away_from_the_weak_policy() {
        // Equally coherent candidates (no overlap); the weak policy's samples sit near the first one.
        let candidates = array![[[0.0f32], [0.0]], [[1.0], [1.0]]];
        let weak = array![[[0.1f32], [0.1]], [[-0.1], [-0.1]]];
        let no_overlap = Array2::<f32>::zeros((0, 1));
        assert_eq!(
            select_candidate(candidates.view(), Some(weak.view()), no_overlap.view()),
            1
        );
    }
}

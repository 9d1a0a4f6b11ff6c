//! Bidirectional decoding (Liu et al., 2025): choose, among N sampled candidates, the one most coherent with
//! the committed actions (backward coherence) and, given a weak policy, closest to the strong policy's samples
//! and furthest from the weak one's (forward contrast).
//!
//! Backward coherence is the RTC reference's rule: the distance of each action to the committed one, unsquared,
//! weighted by the soft mask W of the request's (d, s), summed over the overlap: sum over h of W_h ||a_h - Y_h||.

use ndarray::{ArrayView, ArrayView1, ArrayView2, ArrayView3, Axis, Dimension};

/// Returns the index of the best candidate among `candidates` (`[N, H, A]`). `target` holds the committed actions
/// over the overlap (`[overlap, A]`) and `weights` the soft mask over the same actions (`[overlap]`); `weak`
/// holds the weak policy's candidates (`[N', H, A]`).
pub(crate) fn select_candidate(
    candidates: ArrayView3<f32>,
    weak: Option<ArrayView3<f32>>,
    target: ArrayView2<f32>,
    weights: ArrayView1<f32>,
) -> usize {
    let backward = |c: ArrayView2<f32>| -> f64 {
        target
            .outer_iter()
            .zip(c.outer_iter())
            .zip(weights)
            .map(|((y, a), &w)| w as f64 * squared_distance(y, a).sqrt())
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
    use ndarray::{Array1, Array2, array};

    #[test]
    fn backward_coherence_prefers_the_candidate_closest_to_the_committed_actions() {
        // Three one-dimensional chunks of two actions; the committed overlap is one action at 1.0.
        let candidates = array![[[0.0f32], [0.0]], [[0.9], [0.9]], [[2.0], [2.0]]];
        let (target, weights) = (array![[1.0f32]], array![1.0f32]);
        assert_eq!(
            select_candidate(candidates.view(), None, target.view(), weights.view()),
            1
        );
    }

    #[test]
    fn forward_contrast_moves_away_from_the_weak_policy() {
        // Equally coherent candidates (no overlap); the weak policy's samples sit near the first one.
        let candidates = array![[[0.0f32], [0.0]], [[1.0], [1.0]]];
        let weak = array![[[0.1f32], [0.1]], [[-0.1], [-0.1]]];
        let (no_overlap, no_weights) = (Array2::<f32>::zeros((0, 1)), Array1::<f32>::zeros(0));
        let chosen = select_candidate(
            candidates.view(),
            Some(weak.view()),
            no_overlap.view(),
            no_weights.view(),
        );
        assert_eq!(chosen, 1);
    }

    #[test]
    fn backward_coherence_sums_the_masked_unsquared_distances() {
        // Committed overlap of two actions at 0. The first candidate is exact on the first action and 2 off on the
        // second (sum 2); the second is 1.5 off on the first only (sum 1.5). A squared score halving per action
        // would pick the first (0 + 0.5 * 4 = 2 against 2.25).
        let candidates = array![[[0.0f32], [2.0]], [[1.5], [0.0]]];
        let target = array![[0.0f32], [0.0]];
        let soft = array![1.0f32, 1.0];
        assert_eq!(
            select_candidate(candidates.view(), None, target.view(), soft.view()),
            1
        );
        // A hard mask with d = 1 (W = 1, 0) ignores the second action: the first candidate is exact.
        let hard = array![1.0f32, 0.0];
        assert_eq!(
            select_candidate(candidates.view(), None, target.view(), hard.view()),
            0
        );
    }
}

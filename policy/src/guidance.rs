//! The pieces of RTC guidance: the soft mask W (Eq. 5), the clipped guidance weight (Eqs. 2 and 4) and the
//! guidance target Y.

use ndarray::{ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, s};
use rtchunk_config::MaskSchedule;

/// Writes the soft mask W of Eq. 5 (`[H]`) for inference delay `d`, execution horizon `s` and horizon `H = out.len()`:
/// 1 on the frozen prefix `i < d`, a decay over the overlap `d <= i < H - s`, 0 on the free tail `i >= H - s`.
/// `d` is clamped to `H - s`, as in the reference implementation.
pub fn soft_mask(d: usize, s: usize, schedule: MaskSchedule, mut out: ArrayViewMut1<f32>) {
    let horizon = out.len();
    let end = horizon.saturating_sub(s);
    let start = d.min(end);
    for (i, w) in out.iter_mut().enumerate() {
        *w = if i >= end {
            0.0
        } else if i < start {
            1.0
        } else {
            let c = (end - i) as f64 / (end - start + 1) as f64;
            match schedule {
                MaskSchedule::Exp => (c * c.exp_m1() / (std::f64::consts::E - 1.0)) as f32,
                MaskSchedule::Linear => c as f32,
                MaskSchedule::Ones => 1.0,
                MaskSchedule::Zeros => 0.0,
            }
        };
    }
}

/// The guidance weight `min(beta, (1 - tau) / (tau r^2))` with `r^2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2)`;
/// infinite at tau = 0, hence `beta` there.
pub fn guidance_weight(tau: f64, beta: f64) -> f64 {
    if tau <= 0.0 {
        return beta;
    }
    let r2 = (1.0 - tau).powi(2) / (tau * tau + (1.0 - tau).powi(2));
    ((1.0 - tau) / (tau * r2)).min(beta)
}

/// Writes the guidance target Y (`[H, A]`): the previous chunk's not-yet-executed `actions` (`[n, A]`),
/// right-padded to H actions by holding the last one (never zeros).
pub fn pad_committed(actions: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
    let given = actions.nrows().min(out.nrows());
    out.slice_mut(s![..given, ..])
        .assign(&actions.slice(s![..given, ..]));
    let (head, mut tail) = out.view_mut().split_at(Axis(0), given);
    match given.checked_sub(1) {
        Some(last) => tail.assign(&head.row(last)),
        None => tail.fill(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(d: usize, s: usize, h: usize, schedule: MaskSchedule) -> Vec<f32> {
        let mut out = vec![f32::NAN; h];
        soft_mask(d, s, schedule, ndarray::ArrayViewMut1::from(&mut out[..]));
        out
    }

    /// Eq. 5 written out directly, for comparison at every index.
    fn eq5(d: usize, s: usize, h: usize, i: usize) -> f64 {
        if i < d {
            1.0
        } else if i < h - s {
            let c = (h - s - i) as f64 / (h - s - d + 1) as f64;
            c * (c.exp() - 1.0) / (std::f64::consts::E - 1.0)
        } else {
            0.0
        }
    }

    #[test]
    fn guidance_weights_for_five_steps_and_beta_five() {
        let weights: Vec<f64> = (0..5)
            .map(|k| guidance_weight(k as f64 / 5.0, 5.0))
            .collect();
        let expected = [5.0, 4.25, 2.1666667, 2.1666667, 4.25];
        for (got, want) in weights.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{weights:?}");
        }
    }

    #[test]
    fn soft_mask_matches_eq5_at_every_index_including_the_edges() {
        for h in [2usize, 8, 16, 50] {
            for s in 1..=h {
                for d in 0..=(h - s) {
                    let got = mask(d, s, h, MaskSchedule::Exp);
                    for (i, w) in got.iter().enumerate() {
                        assert!(
                            (*w as f64 - eq5(d, s, h, i)).abs() < 1e-6,
                            "H={h} d={d} s={s} i={i}: {got:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn soft_mask_matches_the_papers_figure_3_example() {
        let got = mask(4, 5, 16, MaskSchedule::Exp);
        let expected = [
            1.0, 1.0, 1.0, 1.0, 0.712, 0.488, 0.316, 0.189, 0.099, 0.041, 0.010, 0.0, 0.0, 0.0,
            0.0, 0.0,
        ];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-3, "{got:?}");
        }
    }

    #[test]
    fn other_schedules() {
        assert_eq!(
            mask(2, 4, 10, MaskSchedule::Linear),
            [1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            mask(2, 4, 10, MaskSchedule::Ones),
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            mask(2, 4, 10, MaskSchedule::Zeros),
            [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        // s = H - d: the frozen prefix meets the free tail, no decay in between.
        assert_eq!(
            mask(3, 5, 8, MaskSchedule::Exp),
            [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn target_is_padded_by_holding_the_last_action() {
        let mut out = ndarray::Array2::from_elem((5, 2), f32::NAN);
        pad_committed(
            ndarray::array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]].view(),
            out.view_mut(),
        );
        assert_eq!(
            out,
            ndarray::array![
                [1.0f32, 2.0],
                [3.0, 4.0],
                [5.0, 6.0],
                [5.0, 6.0],
                [5.0, 6.0]
            ]
        );
    }
}

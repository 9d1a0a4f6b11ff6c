//! The map between the robot's units and the model's normalised space, applied exactly once on each side of
//! the sampler: observations and committed actions in, sampled chunks out.

/// Per-dimension affine normalisation: `model = (value - offset) / scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Offsets of the action dimensions.
    pub action_offset: Vec<f32>,
    /// Scales of the action dimensions (non-zero).
    pub action_scale: Vec<f32>,
    /// Offsets of the observation dimensions (empty: observations pass unchanged).
    pub observation_offset: Vec<f32>,
    /// Scales of the observation dimensions.
    pub observation_scale: Vec<f32>,
}

impl Normalization {
    /// Actions scaled by `action_scale` around `action_offset`; observations unchanged.
    pub fn actions(action_offset: Vec<f32>, action_scale: Vec<f32>) -> Self {
        Normalization {
            action_offset,
            action_scale,
            observation_offset: Vec::new(),
            observation_scale: Vec::new(),
        }
    }

    /// Writes the model-space version of `actions` (whole actions, token-major) into `out`.
    pub fn normalize_actions(&self, actions: &[f32], out: &mut [f32]) {
        affine(
            actions,
            out,
            &self.action_offset,
            &self.action_scale,
            |v, o, s| (v - o) / s,
        );
    }

    /// Converts a model-space chunk to the robot's units, in place.
    pub fn denormalize_actions(&self, chunk: &mut [f32]) {
        let copy = chunk.to_vec();
        affine(
            &copy,
            chunk,
            &self.action_offset,
            &self.action_scale,
            |v, o, s| v * s + o,
        );
    }

    /// Writes the model-space version of `observation` into `out`.
    pub fn normalize_observation(&self, observation: &[f32], out: &mut [f32]) {
        if self.observation_scale.is_empty() {
            out.copy_from_slice(observation);
        } else {
            affine(
                observation,
                out,
                &self.observation_offset,
                &self.observation_scale,
                |v, o, s| (v - o) / s,
            );
        }
    }
}

fn affine(
    input: &[f32],
    out: &mut [f32],
    offset: &[f32],
    scale: &[f32],
    map: impl Fn(f32, f32, f32) -> f32,
) {
    let dim = scale.len().max(1);
    for (k, (o, v)) in out.iter_mut().zip(input).enumerate() {
        *o = map(*v, offset[k % dim], scale[k % dim]);
    }
}

#[cfg(test)]
mod tests {
    use super::Normalization;

    #[test]
    fn actions_round_trip_and_observations_follow_their_own_statistics() {
        let mut n = Normalization::actions(vec![1.0, -2.0], vec![2.0, 0.5]);
        let actions = [3.0f32, -1.0, 1.0, -2.0];
        let mut model = [0.0f32; 4];
        n.normalize_actions(&actions, &mut model);
        assert_eq!(model, [1.0, 2.0, 0.0, 0.0]);
        n.denormalize_actions(&mut model);
        assert_eq!(model, actions);
        let mut out = [0.0f32; 2];
        n.normalize_observation(&[4.0, 5.0], &mut out);
        assert_eq!(out, [4.0, 5.0]);
        n.observation_offset = vec![1.0, 1.0];
        n.observation_scale = vec![3.0, 2.0];
        n.normalize_observation(&[4.0, 5.0], &mut out);
        assert_eq!(out, [1.0, 2.0]);
    }
}

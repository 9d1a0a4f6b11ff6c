//! Adapter for policies exported in the openpi / LeRobot convention (t = 1 noise, t = 0 data).

use crate::{FlowPolicy, Normalization, PolicyError, PolicySpec};
use ndarray::{ArrayView2, ArrayView3, ArrayViewMut3};

/// Drives a policy whose time runs from t = 1 (noise) to t = 0 (data) as a paper-convention policy:
/// tau = 1 - t and the velocity's sign flips. The denoiser `A + (1 - tau) v = A - t u` is the same function in
/// both conventions, so its VJP passes through unchanged.
pub struct NoiseAtOne<P> {
    inner: P,
    flip: TimeFlip,
}

impl<P: FlowPolicy> NoiseAtOne<P> {
    /// Wraps a policy in the t = 1 noise convention.
    pub fn new(inner: P) -> Self {
        NoiseAtOne {
            inner,
            flip: TimeFlip::default(),
        }
    }

    /// The wrapped policy.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

/// The conversion between the two time conventions: t = 1 - tau for the inputs, the velocity negated on the way
/// out. Its buffer grows to the largest batch once and is reused, so calls after warm-up do not allocate.
#[derive(Debug, Default)]
pub(crate) struct TimeFlip {
    flipped: Vec<f32>,
}

impl TimeFlip {
    /// `1 - tau` for every token, in the reused buffer.
    pub(crate) fn times(&mut self, tau: &[f32]) -> &[f32] {
        self.flip(tau.iter());
        &self.flipped
    }

    /// [`TimeFlip::times`] of a `[B, H]` array, shaped as it.
    pub(crate) fn times_of(&mut self, tau: ArrayView2<f32>) -> ArrayView2<'_, f32> {
        self.flip(tau.iter());
        ArrayView2::from_shape(tau.dim(), &self.flipped).expect("one time per token")
    }

    fn flip<'a>(&mut self, tau: impl Iterator<Item = &'a f32>) {
        self.flipped.clear();
        self.flipped.extend(tau.map(|t| 1.0 - t));
    }

    /// Turns a velocity of one convention into the other's, in place (a slice or an array).
    pub(crate) fn velocity<'a>(velocity: impl IntoIterator<Item = &'a mut f32>) {
        velocity.into_iter().for_each(|v| *v = -*v);
    }
}

impl<P: FlowPolicy> FlowPolicy for NoiseAtOne<P> {
    fn spec(&self) -> &PolicySpec {
        self.inner.spec()
    }

    fn normalization(&self) -> Option<&Normalization> {
        self.inner.normalization()
    }

    fn prepare(&mut self, observations: ArrayView2<f32>) -> Result<(), PolicyError> {
        self.inner.prepare(observations)
    }

    fn prepare_with_images(
        &mut self,
        observations: ArrayView2<f32>,
        images: &[u8],
    ) -> Result<(), PolicyError> {
        self.inner.prepare_with_images(observations, images)
    }

    fn velocity(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        mut velocity: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let t = self.flip.times_of(tau);
        self.inner.velocity(actions, t, velocity.view_mut())?;
        TimeFlip::velocity(&mut velocity);
        Ok(())
    }

    fn denoiser_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        cotangent: ArrayView3<f32>,
        mut velocity: ArrayViewMut3<f32>,
        vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let t = self.flip.times_of(tau);
        self.inner
            .denoiser_vjp(actions, t, cotangent, velocity.view_mut(), vjp)?;
        TimeFlip::velocity(&mut velocity);
        Ok(())
    }

    fn fuses_guidance(&self) -> bool {
        self.inner.fuses_guidance()
    }

    /// The inner policy's guided step at t = 1 - tau: its denoiser, hence the weighted error and the VJP, is
    /// the paper-convention one.
    fn guided_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        target: ArrayView3<f32>,
        weights: ArrayView2<f32>,
        mut velocity: ArrayViewMut3<f32>,
        vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let t = self.flip.times_of(tau);
        self.inner
            .guided_vjp(actions, t, target, weights, velocity.view_mut(), vjp)?;
        TimeFlip::velocity(&mut velocity);
        Ok(())
    }
}

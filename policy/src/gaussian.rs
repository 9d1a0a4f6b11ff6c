//! Closed-form posterior of a Gaussian chunk prior under per-token flow noise.
//!
//! Chunks are `A ~ N(mu, K ⊗ I)`: each joint's trajectory over the H tokens has the temporal covariance K,
//! independently across joints. The flow path noises token i as `x_i = tau_i A_i + (1 - tau_i) eps_i`, so
//! `x ~ N(D mu, C)` with `D = diag(tau)` and `C = D K D + (I - D)^2` (per joint), and the posterior mean is
//! `E[A | x] = mu + K D C^-1 (x - D mu)`. Everything reduces to H x H algebra applied to each joint's column.

use nalgebra::{DMatrix, DVector};

/// The temporal covariance of a chunk: a squared-exponential kernel plus a small diagonal.
pub(crate) fn smooth_covariance(
    horizon: usize,
    spread: f64,
    correlation_length: f64,
) -> DMatrix<f64> {
    DMatrix::from_fn(horizon, horizon, |i, j| {
        let lag = (i as f64 - j as f64) / correlation_length;
        spread * spread * ((-0.5 * lag * lag).exp() + if i == j { 1e-3 } else { 0.0 })
    })
}

/// The Cholesky factor of C for one tau vector, with K D kept for posterior means and VJPs.
pub(crate) struct NoisedPrior {
    tau: DVector<f64>,
    /// K D: column i of K scaled by tau_i.
    kernel_tau: DMatrix<f64>,
    cholesky: nalgebra::Cholesky<f64, nalgebra::Dyn>,
}

impl NoisedPrior {
    /// Factors C = D K D + (I - D)^2 for the per-token `tau`.
    pub(crate) fn new(kernel: &DMatrix<f64>, tau: &[f32]) -> Self {
        let tau = DVector::from_iterator(tau.len(), tau.iter().map(|&t| t as f64));
        let kernel_tau = DMatrix::from_fn(kernel.nrows(), kernel.ncols(), |i, j| {
            kernel[(i, j)] * tau[j]
        });
        let mut noised = DMatrix::from_fn(kernel.nrows(), kernel.ncols(), |i, j| {
            tau[i] * kernel_tau[(i, j)]
        });
        for i in 0..tau.len() {
            noised[(i, i)] += (1.0 - tau[i]).powi(2);
        }
        let cholesky = noised
            .cholesky()
            .expect("D K D + (I - D)^2 is positive definite");
        NoisedPrior {
            tau,
            kernel_tau,
            cholesky,
        }
    }

    /// Whether this factorisation was made for `tau`.
    pub(crate) fn matches(&self, tau: &[f32]) -> bool {
        self.tau.len() == tau.len() && self.tau.iter().zip(tau).all(|(a, &b)| *a == b as f64)
    }

    /// The whitened residual `z = C^-1 (x - D mu)` of a chunk x under mean mu (H x A matrices), with the energy
    /// `(x - D mu) . z` (minus twice the log-likelihood, up to a constant).
    pub(crate) fn whiten(&self, x: &DMatrix<f64>, mean: &DMatrix<f64>) -> (DMatrix<f64>, f64) {
        let mut residual = x.clone();
        for (i, mut row) in residual.row_iter_mut().enumerate() {
            row -= mean.row(i) * self.tau[i];
        }
        let whitened = self.cholesky.solve(&residual);
        let energy = residual.dot(&whitened);
        (whitened, energy)
    }

    /// The posterior mean `mu + K D z` given the whitened residual z.
    pub(crate) fn posterior_mean(
        &self,
        mean: &DMatrix<f64>,
        whitened: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        mean + &self.kernel_tau * whitened
    }

    /// `J^T g = C^-1 D K g`, the transpose of the posterior mean's Jacobian applied to g.
    pub(crate) fn transpose_jacobian(&self, cotangent: &DMatrix<f64>) -> DMatrix<f64> {
        self.cholesky
            .solve(&(self.kernel_tau.transpose() * cotangent))
    }
}

/// The closed-form mean of the free tokens `d..H` of `A ~ N(mean, K ⊗ I)` given the first d tokens `prefix`.
pub(crate) fn conditional_mean(
    kernel: &DMatrix<f64>,
    mean: &DMatrix<f64>,
    prefix: &DMatrix<f64>,
) -> DMatrix<f64> {
    let d = prefix.nrows();
    let h = kernel.nrows();
    let k_pp = kernel.view((0, 0), (d, d)).clone_owned();
    let k_fp = kernel.view((d, 0), (h - d, d)).clone_owned();
    let offset = prefix - mean.rows(0, d);
    let solved = k_pp
        .cholesky()
        .expect("K is positive definite")
        .solve(&offset);
    mean.rows(d, h - d) + k_fp * solved
}

//! The weight update of a run: SGD/LARS in weight space, or SGD on the coefficients of a
//! checkpoint subspace (TWA).

use tch::Tensor;

use crate::optim::Optimizer;
use crate::twa::Subspace;

/// The weight update: SGD/LARS in weight space, or SGD on the coefficients of a
/// checkpoint subspace (TWA).
pub(super) enum Update {
    Weights(Optimizer),
    Subspace(Subspace),
}

impl Update {
    pub(super) fn zero_grad(&mut self) {
        match self {
            Update::Weights(o) => o.zero_grad(),
            Update::Subspace(s) => s.zero_grad(),
        }
    }

    pub(super) fn step(&mut self, lr: f64) {
        match self {
            Update::Weights(o) => o.step(lr),
            Update::Subspace(s) => s.step(lr),
        }
    }

    pub(super) fn state(&self) -> Vec<(String, &Tensor)> {
        match self {
            Update::Weights(o) => o.state(),
            Update::Subspace(s) => s.state(),
        }
    }

    pub(super) fn restore(&mut self, get: impl FnMut(&str) -> Option<Tensor>) -> usize {
        match self {
            Update::Weights(o) => o.restore(get),
            Update::Subspace(s) => s.restore(get),
        }
    }
}

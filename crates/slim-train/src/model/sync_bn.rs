//! Synchronised BatchNorm for data-parallel training (PyTorch's `SyncBatchNorm`, which
//! SlimCLR's scripts switch on with `--sync_bn`): every rank normalizes its batch by the
//! statistics of all ranks' batches, and in the backward pass the statistics' gradients
//! are summed over the ranks, so N ranks of B images compute what one device computes
//! on N·B.

use std::sync::{Arc, Mutex};

use slim_dist::Group;
use tch::{Kind, Tensor};

/// The group whose ranks share BatchNorm statistics, and the first collective error met
/// inside a forward pass (which cannot return one).
pub struct SyncBatchNorm {
    group: Arc<Group>,
    error: Mutex<Option<String>>,
}

impl SyncBatchNorm {
    pub fn new(group: Arc<Group>) -> SyncBatchNorm {
        SyncBatchNorm {
            group,
            error: Mutex::new(None),
        }
    }

    /// The first collective error since the last call, if any: the forward pass went on
    /// with this rank's own statistics, so its result must be thrown away.
    pub fn take_error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// `t` summed over the ranks, with the gradient summed back; `t` itself (and the
    /// error kept) when the collective fails.
    fn sum(&self, t: &Tensor) -> Tensor {
        match self.group.all_reduce_sum_differentiable(t) {
            Ok(s) => s,
            Err(e) => {
                self.error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e.to_string());
                t.shallow_clone()
            }
        }
    }

    /// Training BatchNorm of `y` `[N, C, ...]` with the statistics of every rank's batch,
    /// in two passes (the mean, then the mean squared deviation from it, in float32 as
    /// the fused kernel keeps them), folded into the running statistics as `batch_norm`
    /// does (`momentum`; the unbiased variance). `affine` is (weight, bias).
    pub(crate) fn normalize(
        &self,
        y: &Tensor,
        (weight, bias): (Option<&Tensor>, Option<&Tensor>),
        (running_mean, running_var): (&Tensor, &Tensor),
        (momentum, eps): (f64, f64),
    ) -> Tensor {
        let size = y.size();
        let c = size[1];
        let dims: Vec<i64> = (0..size.len() as i64).filter(|&d| d != 1).collect();
        let mut shape = vec![1i64; size.len()];
        shape[1] = c;
        let local = (y.numel() as i64 / c.max(1)) as f64;
        let count = Tensor::from_slice(&[local as f32]).to_device(y.device());
        let sum = y.sum_dim_intlist(dims.as_slice(), false, Kind::Float);
        let total = self.sum(&Tensor::cat(&[sum, count], 0));
        let n = total.double_value(&[c]).max(1.0);
        let mean = total.narrow(0, 0, c) / n;
        let centered = y - mean.view(shape.as_slice());
        let squares = (&centered * &centered).sum_dim_intlist(dims.as_slice(), false, Kind::Float);
        let var = self.sum(&squares) / n;
        let normalized = centered / (&var + eps).sqrt().view(shape.as_slice());
        let scaled = match weight {
            Some(w) => normalized * w.view(shape.as_slice()),
            None => normalized,
        };
        let out = match bias {
            Some(b) => scaled + b.view(shape.as_slice()),
            None => scaled,
        };
        tch::no_grad(|| {
            let unbiased = n / (n - 1.0).max(1.0);
            running_mean
                .shallow_clone()
                .copy_(&(running_mean * (1.0 - momentum) + mean.detach() * momentum));
            running_var
                .shallow_clone()
                .copy_(&(running_var * (1.0 - momentum) + var.detach() * (momentum * unbiased)));
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tch::Device;

    #[test]
    fn on_one_rank_it_is_batch_norm_with_its_gradients_and_running_statistics() {
        let r = slim_dist::Rendezvous {
            rank: 0,
            world: 1,
            local_rank: 0,
            addr: "127.0.0.1".into(),
            port: slim_test_utils::free_port(),
            timeout: Duration::from_secs(30),
            ifname: Some("lo".into()),
            backend: slim_dist::Backend::Gloo,
        };
        let sync = SyncBatchNorm::new(Arc::new(Group::join(&r).unwrap()));
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        for shape in [vec![8i64, 3, 4, 4], vec![16, 16, 16, 16], vec![16, 64]] {
            let c = shape[1];
            let x = (Tensor::randn(shape.as_slice(), opts) * 3.0 + 1.0).set_requires_grad(true);
            let w = (Tensor::rand([c], opts) + 0.5).set_requires_grad(true);
            let b = Tensor::randn([c], opts).set_requires_grad(true);
            let upstream = Tensor::randn(shape.as_slice(), opts);
            let (m1, v1) = (Tensor::zeros([c], opts), Tensor::ones([c], opts));
            let (m2, v2) = (Tensor::zeros([c], opts), Tensor::ones([c], opts));
            let ours = sync.normalize(&x, (Some(&w), Some(&b)), (&m1, &v1), (0.1, 1e-5));
            let fused = x.batch_norm(
                Some(&w),
                Some(&b),
                Some(&m2),
                Some(&v2),
                true,
                0.1,
                1e-5,
                false,
            );
            let grads = |y: &Tensor| {
                let loss = (y * &upstream).sum(Kind::Float);
                Tensor::run_backward(&[loss], &[&x, &w, &b], false, false)
            };
            assert!(ours.allclose(&fused, 1e-5, 1e-5, false), "{shape:?}");
            for (a, f) in grads(&ours).iter().zip(&grads(&fused)) {
                let scale = f.abs().max().double_value(&[]);
                let d = (a - f).abs().max().double_value(&[]);
                assert!(d <= 1e-5 * scale, "{shape:?}: {d:e} of {scale:e}");
            }
            assert!(m1.allclose(&m2, 1e-6, 1e-6, false), "{shape:?}");
            assert!(v1.allclose(&v2, 1e-5, 1e-6, false), "{shape:?}");
        }
        assert!(sync.take_error().is_none());
    }
}

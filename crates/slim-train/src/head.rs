//! The slimmable projection head used only during pretraining (SimCLR's MLP): a Linear
//! from the width's embedding to the width's hidden size (first-k slices of one shared
//! weight, like every backbone layer), that width's own BatchNorm, ReLU, and a Linear to a
//! fixed output size shared by all widths so their similarities are comparable.
//!
//! MoCo v3's prediction head is the same MLP from that output size back to it
//! ([`SlimHead::predictor`]): its input is not sliced, its hidden layer is.

use slim_core::Width;
use slim_core::width::scaled;
use tch::Tensor;
use tch::nn::{self, Init};

pub struct SlimHead {
    fc1: Tensor,
    bn: Vec<[Tensor; 4]>,
    fc2: Tensor,
    bias2: Tensor,
    widths: Vec<Width>,
    features: usize,
    /// Whether the input is a width's embedding (its first `features * w` entries) or
    /// the same size at every width.
    slim_input: bool,
    hidden: usize,
    eps: f64,
}

impl SlimHead {
    /// The projection head, its variables under `vs` (named `fc1.weight`, `bn.{tag}.*`,
    /// `fc2.weight`, `fc2.bias`).
    pub fn new(
        vs: &nn::Path,
        features: usize,
        hidden: usize,
        out: usize,
        widths: &[Width],
        eps: f64,
    ) -> SlimHead {
        SlimHead::build(vs, (features, true), hidden, out, widths, eps)
    }

    /// MoCo v3's predictor: `dim` (the projection's output, whole at every width) to
    /// `dim`, through the width's share of `hidden`.
    pub fn predictor(
        vs: &nn::Path,
        dim: usize,
        hidden: usize,
        widths: &[Width],
        eps: f64,
    ) -> SlimHead {
        SlimHead::build(vs, (dim, false), hidden, dim, widths, eps)
    }

    fn build(
        vs: &nn::Path,
        (features, slim_input): (usize, bool),
        hidden: usize,
        out: usize,
        widths: &[Width],
        eps: f64,
    ) -> SlimHead {
        let uniform = |fan_in: usize| {
            let b = 1.0 / (fan_in as f64).sqrt();
            Init::Uniform { lo: -b, up: b }
        };
        let bn_path = vs / "bn";
        let bn = widths
            .iter()
            .map(|&w| {
                let p = &bn_path / w.tag();
                let c = scaled(hidden, w) as i64;
                [
                    p.var("weight", &[c], Init::Const(1.0)),
                    p.var("bias", &[c], Init::Const(0.0)),
                    p.zeros_no_train("running_mean", &[c]),
                    p.ones_no_train("running_var", &[c]),
                ]
            })
            .collect();
        SlimHead {
            fc1: (vs / "fc1").var(
                "weight",
                &[hidden as i64, features as i64],
                uniform(features),
            ),
            bn,
            fc2: (vs / "fc2").var("weight", &[out as i64, hidden as i64], uniform(hidden)),
            bias2: (vs / "fc2").var("bias", &[out as i64], uniform(hidden)),
            widths: widths.to_vec(),
            features,
            slim_input,
            hidden,
            eps,
        }
    }

    /// Projects `[N, features_at(w)]` embeddings of width `w` (`[N, dim]` for a
    /// predictor), in train or eval mode.
    pub fn forward(&self, embedding: &Tensor, w: Width, train: bool) -> Tensor {
        let i = self
            .widths
            .iter()
            .position(|&x| x == w)
            .expect("a width of the model");
        let f = match self.slim_input {
            true => scaled(self.features, w),
            false => self.features,
        } as i64;
        let h = scaled(self.hidden, w) as i64;
        let fc1 = self.fc1.narrow(0, 0, h).narrow(1, 0, f);
        let [g, b, m, v] = &self.bn[i];
        let x = embedding.matmul(&fc1.transpose(0, 1));
        let x = x
            .batch_norm(
                Some(g),
                Some(b),
                Some(m),
                Some(v),
                train,
                0.1,
                self.eps,
                false,
            )
            .relu();
        x.matmul(&self.fc2.narrow(1, 0, h).transpose(0, 1)) + &self.bias2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn every_width_projects_to_the_shared_output_size_through_leading_slices() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = SlimHead::new(
            &vs.root(),
            8,
            8,
            4,
            &slim_test_utils::widths(&[1.0, 0.5]),
            1e-5,
        );
        let e = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let out = head.forward(&e, slim_test_utils::width(0.5), true);
        assert_eq!(out.size(), [5, 4]);
        // Changing fc1 outside the leading 4 x 4 block leaves width 0.5 unchanged.
        tch::no_grad(|| {
            let _ = head.fc1.narrow(0, 4, 4).fill_(9.0);
        });
        let again = head.forward(&e, slim_test_utils::width(0.5), true);
        assert!(out.allclose(&again, 1e-6, 1e-6, false));
    }

    #[test]
    fn the_predictor_reads_the_whole_projection_at_every_width() {
        let vs = nn::VarStore::new(Device::Cpu);
        let pred = SlimHead::predictor(
            &vs.root(),
            4,
            8,
            &slim_test_utils::widths(&[1.0, 0.5]),
            1e-5,
        );
        let z = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let out = pred.forward(&z, slim_test_utils::width(0.5), true);
        assert_eq!(out.size(), [5, 4]);
        // Width 0.5 uses hidden units 0..4 only, but every input column.
        tch::no_grad(|| {
            let _ = pred.fc1.narrow(0, 4, 4).fill_(9.0);
        });
        assert!(out.allclose(
            &pred.forward(&z, slim_test_utils::width(0.5), true),
            1e-6,
            1e-6,
            false
        ));
        tch::no_grad(|| {
            let _ = pred.fc1.narrow(0, 0, 4).narrow(1, 3, 1).fill_(9.0);
        });
        assert!(!out.allclose(
            &pred.forward(&z, slim_test_utils::width(0.5), true),
            1e-3,
            1e-3,
            false
        ));
    }
}

//! Deterministic initialisation of a checkpoint's model tensors without any framework:
//! He-normal convs, and BatchNorm statistics and probes drawn away from their identity
//! values so that tests exercise BatchNorm folding for real. Used by tests and by the
//! exporter's own checks; training starts from the framework's initialisation instead.

use std::collections::BTreeMap;

use crate::checkpoint::{Tensor, expected_tensors};
use crate::config::ModelConfig;

/// SplitMix64 followed by Box-Muller: small, seedable and good enough for test weights.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// Random model tensors for `config` (every tensor [`expected_tensors`] lists).
pub fn random_tensors(config: &ModelConfig, seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = Rng(seed);
    let mut out = BTreeMap::new();
    for (name, shape) in expected_tensors(config) {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let data: Vec<f32> = if name.ends_with(".running_var") {
            (0..n).map(|_| 0.5 + rng.uniform()).collect()
        } else if name.ends_with(".running_mean") || name.ends_with(".bias") {
            (0..n).map(|_| 0.1 * rng.normal()).collect()
        } else if name.contains(".bn.") {
            (0..n).map(|_| 0.75 + 0.5 * rng.uniform()).collect()
        } else {
            let std = (2.0 / fan_in as f32).sqrt();
            (0..n).map(|_| std * rng.normal()).collect()
        };
        out.insert(name, Tensor::new(shape, data));
    }
    out
}

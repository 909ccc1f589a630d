//! Deterministic initialisation of a checkpoint's model tensors without any framework:
//! He-normal convs, and BatchNorm statistics and probes drawn away from their identity
//! values so that tests exercise BatchNorm folding for real. Used by tests and by the
//! exporter's own checks; training starts from the framework's initialisation instead.

use std::collections::BTreeMap;

use crate::checkpoint::{Tensor, expected_tensors};
use crate::config::ModelConfig;
use crate::rng::SplitMix64;

/// Random model tensors for `config` (every tensor [`expected_tensors`] lists).
pub fn random_tensors(config: &ModelConfig, seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = SplitMix64(seed);
    let mut out = BTreeMap::new();
    for (name, shape) in expected_tensors(config) {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let data: Vec<f32> = if name.ends_with(".running_var") {
            (0..n).map(|_| 0.5 + rng.uniform() as f32).collect()
        } else if name.ends_with(".running_mean") || name.ends_with(".bias") {
            (0..n).map(|_| 0.1 * rng.normal()).collect()
        } else if name.contains(".bn.") {
            (0..n).map(|_| 0.75 + 0.5 * rng.uniform() as f32).collect()
        } else {
            let std = (2.0 / fan_in as f32).sqrt();
            (0..n).map(|_| std * rng.normal()).collect()
        };
        out.insert(name, Tensor::new(shape, data));
    }
    out
}

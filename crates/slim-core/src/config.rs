//! The model config stored in every checkpoint: which backbone, which widths, what the
//! images look like and what the classes are called.

use serde::{Deserialize, Serialize};

use crate::arch::{Backbone, Network};
use crate::{Error, width};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub backbone: Backbone,
    /// Widest first; always contains 1.0.
    pub widths: Vec<f64>,
    pub in_channels: usize,
    /// Square input side the network is trained and exported at.
    pub image_size: usize,
    pub class_names: Vec<String>,
    /// Per-channel normalisation applied to pixels in [0, 1]: (x - mean) / std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub bn_eps: f64,
}

impl ModelConfig {
    /// A config with the default widths and BatchNorm epsilon.
    pub fn new(
        backbone: Backbone,
        in_channels: usize,
        image_size: usize,
        class_names: Vec<String>,
        mean: Vec<f32>,
        std: Vec<f32>,
    ) -> ModelConfig {
        ModelConfig {
            backbone,
            widths: width::DEFAULT_WIDTHS.to_vec(),
            in_channels,
            image_size,
            class_names,
            mean,
            std,
            bn_eps: 1e-5,
        }
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    pub fn network(&self) -> Network {
        self.backbone.network(self.in_channels)
    }

    /// Checks internal consistency; returns the config with widths sorted widest first.
    pub fn validated(mut self) -> Result<ModelConfig, Error> {
        self.widths = width::validate(&self.widths)?;
        if self.in_channels == 0 {
            return Err(Error::Config("in_channels is 0".into()));
        }
        if self.class_names.is_empty() {
            return Err(Error::Config("there are no classes".into()));
        }
        if self.mean.len() != self.in_channels || self.std.len() != self.in_channels {
            return Err(Error::Config(format!(
                "mean and std need {} values each (one per input channel), got {} and {}",
                self.in_channels,
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err(Error::Config(format!(
                "std {:?} must be positive",
                self.std
            )));
        }
        if self.image_size < 8 {
            return Err(Error::Config(format!(
                "image_size {} is too small",
                self.image_size
            )));
        }
        Ok(self)
    }
}

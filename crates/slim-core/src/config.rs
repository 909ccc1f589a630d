//! The model config stored in every checkpoint: which backbone, which widths, what the
//! images look like and what the classes are called.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::arch::{Backbone, Network};
use crate::width::{self, Width};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub backbone: Backbone,
    /// Widest first; always contains 1.0.
    pub widths: Vec<Width>,
    /// The images the network takes (stored as top-level fields of the JSON).
    #[serde(flatten)]
    pub input: Preprocessing,
    pub class_names: Vec<String>,
    pub bn_eps: f64,
}

/// What a model's input is and how pixels become it: shared by the checkpoint's
/// [`ModelConfig`], the [`crate::Manifest`] and every graph's [`crate::metadata`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// 1 (gray) or 3 (RGB).
    pub in_channels: usize,
    /// Square input side the network is trained and exported at.
    pub image_size: usize,
    /// Per-channel normalization applied to pixels in [0, 1]: (x - mean) / std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
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
            input: Preprocessing {
                in_channels,
                image_size,
                mean,
                std,
            },
            class_names,
            bn_eps: 1e-5,
        }
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    pub fn network(&self) -> Network {
        self.backbone.network(self.input.in_channels)
    }

    /// Checks internal consistency; returns the config with widths sorted widest first.
    pub fn validated(mut self) -> Result<ModelConfig, Error> {
        self.widths = width::validate(&self.widths)?;
        self.input.check().map_err(Error::Config)?;
        check_classes(&self.class_names).map_err(Error::Config)?;
        Ok(self)
    }
}

/// The largest input side a model may have: bounds every allocation an image size read
/// from a file controls (a 4096 x 4096 x 3 batch of one is 192 MiB of float32).
pub const MAX_IMAGE_SIZE: usize = 4096;
/// The most classes a model may have (ImageNet-21k has 21,843).
pub const MAX_CLASSES: usize = 100_000;

impl Preprocessing {
    /// What a model's input must be, wherever it is read from (a checkpoint's config, a
    /// manifest, a graph): 1 (gray) or 3 (RGB) channels, a side from 8 to
    /// [`MAX_IMAGE_SIZE`], one finite mean and one finite positive std per channel.
    pub fn check(&self) -> Result<(), String> {
        let Preprocessing {
            in_channels,
            image_size,
            mean,
            std,
        } = self;
        if *in_channels != 1 && *in_channels != 3 {
            return Err(format!(
                "in_channels is {in_channels}; images have 1 (gray) or 3 (RGB) channels"
            ));
        }
        if !(8..=MAX_IMAGE_SIZE).contains(image_size) {
            return Err(format!(
                "image_size {image_size} is outside 8..={MAX_IMAGE_SIZE}"
            ));
        }
        if mean.len() != *in_channels || std.len() != *in_channels {
            return Err(format!(
                "mean {mean:?} and std {std:?} need in_channels = {in_channels} values each"
            ));
        }
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(format!("mean {mean:?} must be finite"));
        }
        if std.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
            return Err(format!("std {std:?} must be positive and finite"));
        }
        Ok(())
    }

    /// Floats in one input image: channels x side x side.
    pub fn image_len(&self) -> usize {
        self.in_channels * self.image_size * self.image_size
    }
}

/// What a model's output must be: 1 to [`MAX_CLASSES`] classes.
pub fn check_classes(class_names: &[String]) -> Result<(), String> {
    if class_names.is_empty() || class_names.len() > MAX_CLASSES {
        return Err(format!(
            "{} classes; a model has 1 to {MAX_CLASSES}",
            class_names.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ModelConfig {
        ModelConfig::new(
            Backbone::Resnet20,
            1,
            28,
            vec!["a".into(), "b".into()],
            vec![0.3],
            vec![0.3],
        )
    }

    #[test]
    fn a_config_a_model_cannot_have_is_refused_naming_the_field() {
        config().validated().unwrap();
        for (edit, want) in [
            (
                Box::new(|c: &mut ModelConfig| c.input.image_size = 100_000) as Box<dyn Fn(&mut _)>,
                "image_size 100000",
            ),
            (
                Box::new(|c: &mut ModelConfig| c.input.in_channels = 2),
                "in_channels is 2",
            ),
            (
                Box::new(|c: &mut ModelConfig| c.input.mean = vec![f32::NAN]),
                "must be finite",
            ),
            (
                Box::new(|c: &mut ModelConfig| {
                    c.widths = [1.0, 0.5, 0.5].map(|w| Width::new(w).unwrap()).to_vec()
                }),
                "twice",
            ),
        ] {
            let mut c = config();
            edit(&mut c);
            let err = c.validated().unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in: {err}");
        }
    }
}

//! The linear evaluation protocol that published CIFAR-10 and ImageNet numbers use: the
//! switchable probe trained on the frozen eval-mode backbone's features of freshly
//! augmented training images (random resized crop and flip) every epoch.

use std::sync::Arc;

use slim_core::Progress;
use slim_core::rng::SplitMix64;
use slim_data::augment::Augment;
use slim_data::loader::{Loader, LoaderConfig};
use slim_data::transform::Normalize;
use slim_data::{Dataset, Subset};
use tch::{Kind, Tensor};

use super::FeatureSet;
use super::LinearConfig;
use super::probe::ProbeTrainer;
use crate::{Error, SlimNet};

/// The training images of [`train_probe_augmented`] and how to decode them.
pub struct AugmentedImages<'a> {
    pub dataset: Arc<dyn Dataset>,
    /// The model's preprocessing (channels, side, mean, std) after the augmentation.
    pub normalize: &'a Normalize,
    /// `Some(n)`: the same [`slim_data::evenly_spaced`] `n` images as
    /// [`super::extract_features`] with this limit embeds.
    pub limit: Option<usize>,
    /// Decoding threads.
    pub workers: usize,
}

/// Trains the switchable linear probe inside `net` as [`super::train_probe`] does, but on
/// features of augmented images: every epoch each training image is decoded again with
/// [`Augment::linear_eval`] (random resized crop, scale 0.08 to 1, and horizontal flip),
/// embedded by the frozen backbone in eval mode at every width of `clean` under no-grad,
/// and the probes take one SGD step per batch (per-step cosine from `config.lr` to 0
/// over `config.epochs`). `clean` (the same images without augmentation, as
/// `extract_features` gives them) sets the widths and each feature's standardization.
///
/// Order and crops come from `config.seed`; returns each width's loss averaged over the
/// last epoch. Images that fail to decode are passed over (`clean` lists them). `progress`
/// counts the steps.
pub fn train_probe_augmented(
    net: &SlimNet,
    clean: &FeatureSet,
    images: &AugmentedImages,
    config: &LinearConfig,
    progress: &mut dyn Progress,
) -> Result<Vec<f64>, Error> {
    let dataset = Subset::at_most(images.dataset.clone(), images.limit);
    let normalize = images.normalize;
    let workers = images.workers.max(1);
    let loader = Loader::new(
        dataset,
        LoaderConfig {
            batch_size: config.batch_size.max(1),
            views: 1,
            augment: vec![Augment::linear_eval(normalize.size)],
            normalize: normalize.clone(),
            workers,
            seed: config.seed,
            shuffle: true,
            drop_last: false,
            prefetch: 2 * workers,
            color_on_device: false,
        },
    );
    let total_steps = config.epochs * loader.batches_per_epoch();
    let mut rng = SplitMix64(config.seed);
    let mut trainer = ProbeTrainer::new(net, clean, config, total_steps, &mut rng)?;
    let device = net.device();
    let (channels, side) = (normalize.channels as i64, normalize.size as i64);
    progress.begin("linear probe, augmented", total_steps as u64, "steps", 0);
    let mut last = vec![0.0; clean.widths.len()];
    let mut step = 0u64;
    for epoch in 0..config.epochs {
        let mut sums = vec![0.0; clean.widths.len()];
        let mut seen = 0usize;
        for b in loader.epoch(epoch as u64) {
            let n = b.len();
            if n == 0 {
                continue;
            }
            let x = Tensor::f_from_slice(&b.images[0])?
                .f_view([n as i64, channels, side, side])?
                .f_to_device(device)?;
            let raw = tch::no_grad(|| {
                clean
                    .widths
                    .iter()
                    .map(|&w| net.forward(&x, w, false))
                    .collect::<Vec<_>>()
            });
            let features = trainer.standardize(&raw)?;
            let labels: Vec<i64> = b.labels.iter().map(|&l| l as i64).collect();
            let labels = Tensor::f_from_slice(&labels)?
                .f_to_device(device)?
                .f_to_kind(Kind::Int64)?;
            let losses = trainer.step(&features, &labels)?;
            for (sum, l) in sums.iter_mut().zip(losses) {
                *sum += l * n as f64;
            }
            seen += n;
            step += 1;
            progress.update(step, "");
        }
        last = sums.into_iter().map(|s| s / seen.max(1) as f64).collect();
    }
    progress.end();
    trainer.finish()?;
    Ok(last)
}

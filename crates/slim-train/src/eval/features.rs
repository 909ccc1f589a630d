//! Each width's frozen embedding of a dataset, in one eval-mode pass.

use slim_core::Width;
use std::sync::Arc;

use slim_core::Progress;
use slim_data::loader::{Loader, LoaderConfig};
use slim_data::transform::Normalize;
use slim_data::{Dataset, Subset};
use tch::{Device, Kind, Tensor};

use crate::{Error, SlimNet};

/// Embeddings of a dataset at several widths.
#[derive(Debug)]
pub struct FeatureSet {
    /// The width of each entry of `per_width`, in the order they were asked for.
    pub widths: Vec<Width>,
    /// `[N, features_at(w)]` float32 on the CPU, one per width; row `i` of every entry is
    /// the same image.
    pub per_width: Vec<Tensor>,
    /// `[N]` int64 on the CPU.
    pub labels: Tensor,
    /// Samples that failed to decode and were left out, each message naming its file.
    pub skipped: Vec<String>,
}

impl FeatureSet {
    /// Number of samples (rows).
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of width `w` (to a thousandth), if the set has them.
    pub fn features(&self, w: Width) -> Option<&Tensor> {
        self.widths
            .iter()
            .position(|&x| x == w)
            .map(|i| &self.per_width[i])
    }
}

/// Embeds `dataset` at each of `widths` (model widths, in any order) in one eval-mode
/// pass: every batch is decoded once ([`Normalize::apply`]: resize, centre crop,
/// normalize; no augmentation, in dataset order) on `workers` threads, moved to
/// `net.device()`, and run through `net.forward(x, w, false)` under no-grad for every
/// width.
///
/// `limit = Some(n)` embeds only [`slim_data::evenly_spaced`]`(len, n)` samples. Samples that fail
/// to decode are left out and listed in [`FeatureSet::skipped`], not fatal. `progress`
/// counts the samples, per batch.
#[allow(clippy::too_many_arguments)]
pub fn extract_features(
    net: &SlimNet,
    dataset: Arc<dyn Dataset>,
    normalize: &Normalize,
    widths: &[Width],
    batch: usize,
    limit: Option<usize>,
    workers: usize,
    progress: &mut dyn Progress,
) -> Result<FeatureSet, Error> {
    if widths.is_empty() {
        return Err(Error::Eval("no widths to extract features at".into()));
    }
    for &w in widths {
        net.width_index(w)?;
    }
    let channels = net.config().input.in_channels;
    if normalize.channels != channels {
        return Err(Error::Eval(format!(
            "the preprocessing makes {}-channel images, the model takes {channels}",
            normalize.channels
        )));
    }
    if batch == 0 || normalize.size == 0 {
        return Err(Error::Eval(format!(
            "batch size {batch} and image side {} must be positive",
            normalize.size
        )));
    }
    let dataset = Subset::at_most(dataset, limit);
    let total = dataset.len();
    progress.begin("features", total as u64, "images", 0);
    let workers = workers.max(1);
    let loader = Loader::new(
        dataset,
        LoaderConfig {
            batch_size: batch,
            views: 1,
            augment: Vec::new(),
            normalize: normalize.clone(),
            workers,
            seed: 0,
            shuffle: false,
            drop_last: false,
            prefetch: 2 * workers,
            color_on_device: false,
        },
    );
    let device = net.device();
    let side = normalize.size as i64;
    let mut chunks: Vec<Vec<Tensor>> = widths.iter().map(|_| Vec::new()).collect();
    let mut labels: Vec<i64> = Vec::with_capacity(total);
    let mut done = 0;
    let mut epoch = loader.epoch(0);
    for b in epoch.by_ref() {
        let n = b.len() as i64;
        let x = Tensor::f_from_slice(&b.images[0])?
            .f_view([n, channels as i64, side, side])?
            .f_to_device(device)?;
        tch::no_grad(|| -> Result<(), Error> {
            for (out, &w) in chunks.iter_mut().zip(widths) {
                let e = net.forward(&x, w, false);
                out.push(e.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?);
            }
            Ok(())
        })?;
        labels.extend(b.labels.iter().map(|&l| l as i64));
        done += b.len() + b.skipped.len();
        progress.update(done as u64, "");
    }
    let skipped = epoch.skipped().to_vec();
    drop(epoch);
    progress.update(total as u64, "");
    progress.end();
    let per_width = chunks
        .into_iter()
        .zip(widths)
        .map(|(parts, &w)| {
            if parts.is_empty() {
                let d = net.network().features_at(w) as i64;
                Ok(Tensor::zeros([0, d], (Kind::Float, Device::Cpu)))
            } else {
                Ok(Tensor::f_cat(&parts, 0)?)
            }
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(FeatureSet {
        widths: widths.to_vec(),
        per_width,
        labels: Tensor::from_slice(&labels),
        skipped,
    })
}

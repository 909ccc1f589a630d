//! Every width's BatchNorm statistics recomputed from clean training images.

use std::sync::Arc;

use slim_data::Dataset;
use slim_data::loader::{Loader, LoaderConfig};
use tch::Tensor;

use crate::{Error, SlimNet};

/// Recomputes every width's BatchNorm running statistics of `net` from up to `images`
/// training images of `dataset` (shuffled with a fixed seed, not augmented, normalized
/// as for evaluation), each width at its own width ([`SlimNet::recompute_batchnorm`]).
/// Returns the number of images used.
pub fn recompute_batchnorm(
    net: &SlimNet,
    dataset: Arc<dyn Dataset>,
    images: usize,
    batch_size: usize,
    workers: usize,
) -> Result<usize, Error> {
    let c = net.config();
    let loader = Loader::new(
        dataset,
        LoaderConfig {
            batch_size: batch_size.max(2),
            views: 1,
            augment: None,
            normalize: slim_data::transform::Normalize::from(&c.input),
            workers: workers.max(1),
            seed: 0,
            shuffle: true,
            drop_last: true,
            prefetch: 2,
            color_on_device: false,
        },
    );
    let batches: Vec<Tensor> = loader
        .epoch(0)
        .take(images.div_ceil(batch_size.max(2)))
        .map(|b| {
            Tensor::from_slice(&b.images[0])
                .view([
                    b.len() as i64,
                    c.input.in_channels as i64,
                    c.input.image_size as i64,
                    c.input.image_size as i64,
                ])
                .to_device(net.device())
        })
        .collect();
    if batches.is_empty() {
        return Err(Error::Eval(format!(
            "no full batch of {batch_size} images to recompute BatchNorm statistics from"
        )));
    }
    for &w in net.widths() {
        net.recompute_batchnorm(w, &batches);
    }
    Ok(batches.iter().map(|b| b.size()[0] as usize).sum())
}

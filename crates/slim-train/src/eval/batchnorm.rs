//! Every width's BatchNorm statistics recomputed from a dataset: after averaging weights
//! (SWA, TWA), for a random network, or for a new domain (`slim-train recalibrate`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use slim_core::{Preprocessing, Progress};
use slim_data::loader::{Loader, LoaderConfig};
use slim_data::{Dataset, Image, Subset};
use tch::Tensor;

use crate::{Error, SlimNet};

/// How [`recompute_batchnorm`] reads its images.
#[derive(Clone, Debug)]
pub struct BatchNormData {
    /// At most this many images, evenly spaced over the dataset; all of them with `None`.
    pub images: Option<usize>,
    /// Images per forward pass, at least 2 (a short last batch joins the one before it).
    pub batch_size: usize,
    /// Decoding threads.
    pub workers: usize,
    /// Seed of the order the images are batched in.
    pub seed: u64,
    /// Convert images of another size or channel count to the model's input, as the
    /// runtime and evaluation do (channels converted, shorter side resized, centre crop);
    /// when false such an image is an error naming it.
    pub resize: bool,
}

/// What [`recompute_batchnorm`] used.
#[derive(Clone, Debug)]
pub struct BatchNormReport {
    /// Images the statistics were computed over.
    pub images: usize,
    /// Forward passes per width.
    pub batches: usize,
    /// Images that failed to decode and were left out, each message naming its file.
    pub skipped: Vec<String>,
}

/// Recomputes every width's BatchNorm running statistics of `net` from the images of
/// `dataset` (not augmented, normalized as for evaluation, batched in an order shuffled
/// by `data.seed` so that no batch is one class of a sorted dataset): each batch runs
/// through every width once, each width at its own width with its own BatchNorms, and
/// each BatchNorm then holds the mean and variance of its input over all the images
/// ([`SlimNet::recompute_batchnorm`] says which). The images are decoded once and never
/// held all at once. Nothing is changed unless every width's statistics are computed.
///
/// Refused before any forward pass: fewer images than one batch, and (without
/// `data.resize`) a first image whose size or channels are not the model's input; a later
/// such image fails the run before any statistic changes.
pub fn recompute_batchnorm(
    net: &SlimNet,
    dataset: Arc<dyn Dataset>,
    data: &BatchNormData,
    progress: &mut dyn Progress,
) -> Result<BatchNormReport, Error> {
    let c = net.config();
    let batch_size = data.batch_size.max(2);
    let dataset = Subset::at_most(dataset, data.images);
    if dataset.len() < batch_size {
        return Err(Error::BatchNorm(format!(
            "{}: {} images, fewer than one batch of {batch_size}",
            dataset.describe(),
            dataset.len()
        )));
    }
    let checked = match data.resize {
        true => None,
        false => {
            let first = (0..dataset.len().min(50))
                .find_map(|i| dataset.image(i).ok())
                .ok_or_else(|| {
                    Error::BatchNorm(format!(
                        "{}: none of the first images decodes",
                        dataset.describe()
                    ))
                })?;
            if let Some(msg) = mismatch(&first, &c.input) {
                return Err(Error::BatchNorm(format!(
                    "{}: its first image is {msg}",
                    dataset.describe()
                )));
            }
            Some(Arc::new(Checked {
                inner: dataset.clone(),
                input: c.input.clone(),
                refused: AtomicUsize::new(0),
                first: Mutex::new(None),
            }))
        }
    };
    let source: Arc<dyn Dataset> = match &checked {
        Some(ch) => ch.clone(),
        None => dataset.clone(),
    };
    let total = source.len();
    let loader = Loader::new(
        source,
        LoaderConfig {
            batch_size,
            views: 1,
            augment: Vec::new(),
            normalize: slim_data::transform::Normalize::from(&c.input),
            workers: data.workers.max(1),
            seed: data.seed,
            shuffle: true,
            drop_last: false,
            prefetch: 2,
            color_on_device: false,
        },
    );
    let mut moments = net
        .widths()
        .iter()
        .map(|&w| net.batchnorm_moments(w))
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = BatchNormReport {
        images: 0,
        batches: 0,
        skipped: Vec::new(),
    };
    let mut measure = |x: Tensor, report: &mut BatchNormReport| {
        for m in &mut moments {
            net.measure_batchnorm(&x, m);
        }
        report.images += x.size()[0] as usize;
        report.batches += 1;
    };
    progress.begin("BatchNorm statistics", total as u64, "images", 0);
    let mut pending: Option<Tensor> = None;
    let mut seen = 0;
    for b in loader.epoch(0) {
        report.skipped.extend(b.skipped.iter().cloned());
        seen += b.len() + b.skipped.len();
        let x = Tensor::from_slice(&b.images[0])
            .view([
                b.len() as i64,
                c.input.in_channels as i64,
                c.input.image_size as i64,
                c.input.image_size as i64,
            ])
            .to_device(net.device());
        // Every pass sees at least a full batch: a short one (the last, or one with
        // undecodable images) joins its neighbour.
        pending = match pending {
            Some(p) if (p.size()[0] as usize) < batch_size || b.len() < batch_size => {
                Some(Tensor::cat(&[p, x], 0))
            }
            Some(p) => {
                measure(p, &mut report);
                Some(x)
            }
            None => Some(x),
        };
        progress.update(seen as u64, "");
    }
    let refused = checked.as_ref().and_then(|ch| {
        let first = ch.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        first.map(|first| (ch.refused.load(Ordering::Relaxed), first))
    });
    if let Some((n, first)) = refused {
        progress.end();
        return Err(Error::BatchNorm(format!(
            "{n} image(s) of {} are not the model's input, the first: {first}",
            dataset.describe()
        )));
    }
    match pending {
        Some(p) if p.size()[0] as usize >= batch_size => measure(p, &mut report),
        _ => {
            progress.end();
            return Err(Error::BatchNorm(format!(
                "{}: only {} of its images decode, fewer than one batch of {batch_size}",
                dataset.describe(),
                report.images + pending.map_or(0, |p| p.size()[0] as usize)
            )));
        }
    }
    progress.end();
    for m in &moments {
        net.set_batchnorm(m)?;
    }
    Ok(report)
}

/// What `img` is when it is not the model's input (`input`) as it stands, and what to do.
fn mismatch(img: &Image, input: &Preprocessing) -> Option<String> {
    slim_data::transform::mismatch(img, input).map(|m| {
        format!(
            "{m}; pass --resize to convert such images as slim-runtime does (channels converted, shorter side resized, centre crop)"
        )
    })
}

/// A dataset whose images that are not the model's input fail to decode, counted.
struct Checked {
    inner: Arc<dyn Dataset>,
    input: Preprocessing,
    refused: AtomicUsize,
    first: Mutex<Option<String>>,
}

impl Dataset for Checked {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn class_names(&self) -> &[String] {
        self.inner.class_names()
    }
    fn label(&self, i: usize) -> usize {
        self.inner.label(i)
    }
    fn image(&self, i: usize) -> Result<Image, slim_data::Error> {
        let img = self.inner.image(i)?;
        match mismatch(&img, &self.input) {
            None => Ok(img),
            Some(msg) => {
                let msg = format!("image {i} is {msg}");
                self.refused.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| msg.clone());
                Err(slim_data::Error::at(self.inner.describe(), msg))
            }
        }
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

//! Batches for training and evaluation, decoded and augmented on worker threads ahead
//! of the consumer.
//!
//! An epoch's sample order is a function of `(seed, epoch)` alone, and each sample's
//! augmentation RNG is seeded from `(seed, epoch, index)`, so the batches do not depend
//! on the number of workers or on thread scheduling, and a resumed run reproduces them
//! exactly ([`Loader::epoch_from`] starts mid-epoch). Worker `w` builds batches
//! `w, w + workers, ...` and hands them over through its own bounded channel; the
//! consumer reads the channels in turn, so batches come out in order and at most about
//! `prefetch` batches wait in memory.
//!
//! A sample that fails to decode is left out of its batch and reported in
//! [`Batch::skipped`] (the error names the file), never a panic; a batch whose every
//! sample fails is passed over and its reports travel with the next batch.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::Dataset;
use crate::augment::{Augment, Color};
use crate::transform::Normalize;

/// How a [`Loader`] batches and preprocesses.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Views per sample: 1, or 2 for contrastive pairs (each an independent draw of its
    /// augmentation).
    pub views: usize,
    /// Training augmentation of each view: one per view (MoCo v3's views differ), or one
    /// that every view draws from; empty applies the evaluation preprocessing
    /// ([`Normalize::apply`]: resize, centre crop) instead.
    pub augment: Vec<Augment>,
    /// Output channels, side, mean and std (after `augment`, whose `size` must match).
    pub normalize: Normalize,
    /// Decoding threads (at least 1).
    pub workers: usize,
    pub seed: u64,
    pub shuffle: bool,
    /// Leaves out the last batch of an epoch when it is short.
    pub drop_last: bool,
    /// Batches decoded ahead of the consumer and waiting, across all workers (each
    /// worker also holds the one it is building).
    pub prefetch: usize,
    /// With `augment`: do only the geometry here and leave the color adjustments to the
    /// consumer (a trainer applies them batched on its GPU). Images are then converted to
    /// the output channels first, and come out in `[0, 1]` without mean and std, with
    /// each view's drawn adjustments in [`Batch::color`].
    pub color_on_device: bool,
}

/// One batch: `images[v]` is view `v` of every sample, NCHW, normalized.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<Vec<f32>>,
    /// `color[v][i]`: the color adjustments drawn for view `v` of sample `i`, when
    /// [`LoaderConfig::color_on_device`] is set (empty otherwise).
    pub color: Vec<Vec<Color>>,
    pub labels: Vec<usize>,
    /// Dataset index of each sample.
    pub indices: Vec<usize>,
    /// Samples that failed to decode, each error naming its file (including those of
    /// wholly failed batches passed over just before this one).
    pub skipped: Vec<String>,
    /// Position of this batch in its epoch; resume after it with
    /// `epoch_from(epoch, position + 1)`.
    pub position: usize,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Produces the batches of each epoch of a dataset.
pub struct Loader {
    dataset: Arc<dyn Dataset>,
    config: Arc<LoaderConfig>,
    /// `(rank, ranks)`: this loader's part of each global batch (see [`Loader::shard`]).
    shard: (usize, usize),
}

impl Loader {
    /// # Panics
    /// On a configuration that cannot work: zero `batch_size`, `views` or `workers`,
    /// channels other than 1 or 3, `mean` / `std` not one per channel, augmentations
    /// neither one nor one per view, or one [`Augment::validate`] rejects or whose `size`
    /// differs from `normalize.size`.
    pub fn new(dataset: Arc<dyn Dataset>, config: LoaderConfig) -> Loader {
        assert!(config.batch_size > 0, "batch_size must be positive");
        assert!(config.views > 0, "views must be positive");
        assert!(config.workers > 0, "workers must be positive");
        let n = &config.normalize;
        assert!(
            matches!(n.channels, 1 | 3) && n.size > 0,
            "normalize: {} channels of side {} (1 or 3 channels, positive side)",
            n.channels,
            n.size
        );
        assert!(
            n.mean.len() == n.channels && n.std.len() == n.channels,
            "normalize: mean and std need one value per channel"
        );
        assert!(
            config.augment.len() <= 1 || config.augment.len() == config.views,
            "{} augmentations for {} views",
            config.augment.len(),
            config.views
        );
        for aug in &config.augment {
            if let Err(e) = aug.validate() {
                panic!("augment: {e}");
            }
            assert_eq!(aug.size, n.size, "augment.size must equal normalize.size");
        }
        Loader {
            dataset,
            config: Arc::new(config),
            shard: (0, 1),
        }
    }

    /// Rank `rank` of `ranks` in data-parallel training: of each of the epoch's global
    /// batches (`ranks` x `batch_size` samples of the same seeded order) this loader yields
    /// the samples at positions `rank`, `rank + ranks`, … (interleaved, as the groups of
    /// a split BatchNorm are, so that one device with BatchNorm split `ranks` ways computes
    /// what `ranks` devices compute), each augmented as on one loader (the draws are per
    /// sample). Positions count global batches.
    ///
    /// # Panics
    /// If `rank >= ranks`, or `ranks > 1` without `drop_last` (a short last batch cannot
    /// be split evenly).
    pub fn shard(mut self, rank: usize, ranks: usize) -> Loader {
        assert!(rank < ranks, "rank {rank} of {ranks}");
        assert!(
            ranks == 1 || self.config.drop_last,
            "sharding needs drop_last"
        );
        self.shard = (rank, ranks);
        self
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Batches in an epoch (before any passed over for failing to decode).
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size * self.shard.1);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample order of `epoch`: a permutation of the dataset's indices drawn from
    /// `(seed, epoch)`, or `0..len` without shuffling.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let mut rng = StdRng::seed_from_u64(mix(&[ORDER_STREAM, self.config.seed, epoch]));
            order.shuffle(&mut rng);
        }
        order
    }

    /// The batches of `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from position `start` on (as an exact resume: the same
    /// batches `epoch(epoch)` yields there, without decoding the earlier ones).
    pub fn epoch_from(&self, epoch: u64, start: usize) -> Epoch {
        let order = self.order(epoch);
        let ((rank, ranks), b) = (self.shard, self.config.batch_size);
        let plan: Arc<Vec<Vec<usize>>> = Arc::new(
            order
                .chunks(b * ranks)
                .take(self.batches_per_epoch())
                .skip(start)
                .map(|global| {
                    global
                        .iter()
                        .skip(rank)
                        .step_by(ranks)
                        .take(b)
                        .copied()
                        .collect()
                })
                .collect(),
        );
        let workers = self.config.workers.min(plan.len()).max(1);
        let depth = self.config.prefetch.div_ceil(workers);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(depth);
            let job = Job {
                dataset: Arc::clone(&self.dataset),
                config: Arc::clone(&self.config),
                plan: Arc::clone(&plan),
                epoch,
                start,
            };
            let handle = std::thread::Builder::new()
                .name(format!("slim-data-loader-{w}"))
                .spawn(move || job.run(w, workers, tx))
                .expect("spawning a loader thread");
            receivers.push(rx);
            handles.push(Some(handle));
        }
        Epoch {
            receivers,
            handles,
            next: 0,
            total: plan.len(),
            carried: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

/// The batches of one epoch, in order; dropping it early stops the workers.
pub struct Epoch {
    receivers: Vec<Receiver<Batch>>,
    handles: Vec<Option<JoinHandle<()>>>,
    /// Next plan position (relative to the start) to receive.
    next: usize,
    total: usize,
    /// Reports of wholly failed batches, for the next batch.
    carried: Vec<String>,
    skipped: Vec<String>,
}

impl Epoch {
    /// Every sample skipped so far this epoch, each error naming its file.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        while self.next < self.total {
            let w = self.next % self.receivers.len();
            self.next += 1;
            let mut batch = match self.receivers[w].recv() {
                Ok(batch) => batch,
                Err(_) => {
                    // The worker is gone before its batch: it panicked.
                    if let Some(Err(panic)) = self.handles[w].take().map(JoinHandle::join) {
                        std::panic::resume_unwind(panic);
                    }
                    self.total = 0;
                    return None;
                }
            };
            self.skipped.extend(batch.skipped.iter().cloned());
            if batch.is_empty() {
                self.carried.append(&mut batch.skipped);
                continue;
            }
            if !self.carried.is_empty() {
                self.carried.append(&mut batch.skipped);
                batch.skipped = std::mem::take(&mut self.carried);
            }
            return Some(batch);
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.total - self.next))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Closing the channels makes every worker stop at its next hand-over.
        self.receivers.clear();
        for handle in self.handles.iter_mut().filter_map(Option::take) {
            let _ = handle.join();
        }
    }
}

/// What one worker thread needs.
struct Job {
    dataset: Arc<dyn Dataset>,
    config: Arc<LoaderConfig>,
    plan: Arc<Vec<Vec<usize>>>,
    epoch: u64,
    start: usize,
}

impl Job {
    /// Builds batches `w, w + workers, ...` of the plan and sends them, until done or
    /// the consumer hangs up.
    fn run(self, w: usize, workers: usize, tx: SyncSender<Batch>) {
        for (i, samples) in self.plan.iter().enumerate().skip(w).step_by(workers) {
            if tx.send(self.batch(self.start + i, samples)).is_err() {
                return;
            }
        }
    }

    fn batch(&self, position: usize, samples: &[usize]) -> Batch {
        let cfg = &self.config;
        let per_image = cfg.normalize.channels * cfg.normalize.size * cfg.normalize.size;
        let mut batch = Batch {
            images: vec![Vec::with_capacity(samples.len() * per_image); cfg.views],
            color: vec![Vec::new(); if cfg.color_on_device { cfg.views } else { 0 }],
            labels: Vec::with_capacity(samples.len()),
            indices: Vec::with_capacity(samples.len()),
            skipped: Vec::new(),
            position,
        };
        for &i in samples {
            let img = match self.dataset.image(i) {
                Ok(img) if img.height > 0 && img.width > 0 => img,
                Ok(_) => {
                    let what = self.dataset.describe();
                    batch
                        .skipped
                        .push(format!("{what}: sample {i} is an empty image"));
                    continue;
                }
                Err(e) => {
                    batch.skipped.push(e.to_string());
                    continue;
                }
            };
            if cfg.augment.is_empty() {
                let (last, rest) = batch.images.split_last_mut().expect("views > 0");
                for view in rest {
                    cfg.normalize.apply(img.clone(), view);
                }
                cfg.normalize.apply(img, last);
            } else {
                let seed = mix(&[SAMPLE_STREAM, cfg.seed, self.epoch, i as u64]);
                let mut rng = StdRng::seed_from_u64(seed);
                let augs = cfg.augment.iter().cycle();
                if cfg.color_on_device {
                    let img = img.to_channels(cfg.normalize.channels);
                    let views = batch.images.iter_mut().zip(&mut batch.color);
                    for ((view, color), aug) in views.zip(augs) {
                        let (out, drawn) = aug.sample(&img, &mut rng);
                        cfg.normalize.apply_unit(out, view);
                        color.push(drawn);
                    }
                } else {
                    for (view, aug) in batch.images.iter_mut().zip(augs) {
                        let out = aug.apply(&img, &mut rng);
                        cfg.normalize.apply(out, view);
                    }
                }
            }
            batch.labels.push(self.dataset.label(i));
            batch.indices.push(i);
        }
        batch
    }
}

/// Keeps the shuffle and augmentation seeds of one `(seed, epoch)` apart.
const ORDER_STREAM: u64 = 0x006f_7264_6572;
const SAMPLE_STREAM: u64 = 0x7361_6d70_6c65;

/// Hashes `parts` to one seed (SplitMix64 steps).
fn mix(parts: &[u64]) -> u64 {
    let mut h = 0u64;
    for &p in parts {
        h = h.wrapping_add(p).wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Image};

    /// `n` 10 x 12 images whose pixels depend on their index; `bad` ones fail.
    struct Synth {
        n: usize,
        channels: usize,
        bad: Vec<usize>,
        classes: Vec<String>,
    }

    impl Synth {
        fn arc(n: usize, channels: usize, bad: &[usize]) -> Arc<dyn Dataset> {
            Arc::new(Synth {
                n,
                channels,
                bad: bad.to_vec(),
                classes: vec!["even".into(), "odd".into()],
            })
        }
    }

    impl Dataset for Synth {
        fn len(&self) -> usize {
            self.n
        }
        fn class_names(&self) -> &[String] {
            &self.classes
        }
        fn label(&self, i: usize) -> usize {
            i % 2
        }
        fn image(&self, i: usize) -> Result<Image, Error> {
            if self.bad.contains(&i) {
                return Err(Error::at(format!("img{i}.png"), "cannot be decoded"));
            }
            let (h, w, c) = (10, 12, self.channels);
            let data = (0..h * w * c).map(|p| ((p * 7 + i * 31) % 256) as u8);
            Ok(Image::new(h, w, c, data.collect()))
        }
        fn describe(&self) -> String {
            "synthetic".into()
        }
    }

    fn config(size: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size: 4,
            views: 2,
            augment: vec![Augment::simclr(size)],
            normalize: Normalize {
                size,
                channels: 3,
                mean: vec![0.5; 3],
                std: vec![0.25; 3],
            },
            workers: 2,
            seed: 11,
            shuffle: true,
            drop_last: false,
            prefetch: 2,
            color_on_device: false,
        }
    }

    #[test]
    fn shards_split_each_global_batch_into_what_one_loader_would_yield() {
        let ds = Synth::arc(22, 3, &[]);
        let cfg = |b| LoaderConfig {
            batch_size: b,
            drop_last: true,
            ..config(8)
        };
        let whole: Vec<Batch> = Loader::new(ds.clone(), cfg(8)).epoch(1).collect();
        let ranks: Vec<Vec<Batch>> = (0..2)
            .map(|r| {
                Loader::new(ds.clone(), cfg(4))
                    .shard(r, 2)
                    .epoch(1)
                    .collect()
            })
            .collect();
        assert_eq!(whole.len(), 2, "22 images, global batches of 8");
        for r in &ranks {
            assert_eq!(r.len(), 2);
        }
        for (i, w) in whole.iter().enumerate() {
            let per_image = w.images[0].len() / w.len();
            for (r, part) in ranks.iter().map(|r| &r[i]).enumerate() {
                assert_eq!(part.position, w.position);
                assert_eq!(part.len(), 4);
                for (j, &index) in part.indices.iter().enumerate() {
                    let k = 2 * j + r;
                    assert_eq!(index, w.indices[k], "rank {r} takes every other sample");
                    for v in 0..2 {
                        let image = &w.images[v][k * per_image..(k + 1) * per_image];
                        assert_eq!(&part.images[v][j * per_image..(j + 1) * per_image], image);
                    }
                }
            }
        }
        // A resumed rank starts at the same global position.
        let resumed: Vec<Batch> = Loader::new(ds, cfg(4))
            .shard(1, 2)
            .epoch_from(1, 1)
            .collect();
        assert_eq!(resumed[0].indices, ranks[1][1].indices);
    }

    #[test]
    fn color_on_device_leaves_only_the_color_to_the_consumer() {
        let ds = Synth::arc(8, 3, &[]);
        let geometric_only = Augment {
            jitter_p: 0.0,
            grayscale_p: 0.0,
            blur_p: 0.0,
            ..Augment::simclr(8)
        };
        let run = |augment: &Augment, on_device: bool| {
            let cfg = LoaderConfig {
                augment: vec![augment.clone()],
                color_on_device: on_device,
                ..config(8)
            };
            Loader::new(ds.clone(), cfg).epoch(0).collect::<Vec<_>>()
        };
        // Without color adjustments the two modes see the same pixels: only the
        // normalization is left out.
        let (cpu, dev) = (run(&geometric_only, false), run(&geometric_only, true));
        for (a, b) in cpu.iter().zip(&dev) {
            assert!(a.color.is_empty());
            assert_eq!(b.color.len(), 2);
            for (va, vb) in a.images.iter().zip(&b.images) {
                assert!(vb.iter().all(|&v| (0.0..=1.0).contains(&v)));
                for (x, y) in va.iter().zip(vb) {
                    assert!((x - (y - 0.5) / 0.25).abs() < 1e-5);
                }
            }
            assert!(b.color.iter().flatten().all(Color::is_identity));
        }
        // With SimCLR's, the adjustments are drawn (jitter p = 0.8) and left undone.
        let dev = run(&Augment::simclr(8), true);
        let drawn: Vec<&Color> = dev.iter().flat_map(|b| b.color.iter().flatten()).collect();
        assert_eq!(drawn.len(), 2 * 8);
        assert!(drawn.iter().any(|c| c.jitter.is_some()));
    }

    #[test]
    fn each_view_draws_from_its_own_augmentation() {
        let ds = Synth::arc(8, 3, &[]);
        let plain = Augment {
            jitter_p: 0.0,
            grayscale_p: 0.0,
            blur_p: 0.0,
            ..Augment::simclr(8)
        };
        let solarized = Augment {
            solarize_p: 1.0,
            ..plain.clone()
        };
        let run = |augment: Vec<Augment>, on_device: bool| {
            let cfg = LoaderConfig {
                augment,
                color_on_device: on_device,
                ..config(8)
            };
            Loader::new(ds.clone(), cfg).epoch(0).collect::<Vec<_>>()
        };
        let both = run(vec![plain.clone(), solarized.clone()], true);
        for b in &both {
            assert!(b.color[0].iter().all(|c| !c.solarize));
            assert!(b.color[1].iter().all(|c| c.solarize));
        }
        // One augmentation serves every view, as a copy per view does.
        assert_eq!(
            run(vec![plain.clone()], false),
            run(vec![plain.clone(), plain.clone()], false)
        );
        // On the CPU the first view is the plain one's; the second is solarized (its
        // geometry is drawn after the first view's, from the same sample stream).
        let cpu = run(vec![plain.clone(), solarized], false);
        let same = run(vec![plain], false);
        for (a, b) in cpu.iter().zip(&same) {
            assert_eq!(a.images[0], b.images[0]);
            assert_ne!(a.images[1], b.images[1]);
        }
    }

    #[test]
    #[should_panic(expected = "3 augmentations for 2 views")]
    fn augmentations_are_one_or_one_per_view() {
        let cfg = LoaderConfig {
            augment: vec![Augment::simclr(8); 3],
            ..config(8)
        };
        Loader::new(Synth::arc(4, 3, &[]), cfg);
    }

    #[test]
    fn batches_depend_on_seed_and_epoch_not_on_workers() {
        let ds = Synth::arc(22, 3, &[]);
        let run = |workers, prefetch, epoch| {
            let cfg = LoaderConfig {
                workers,
                prefetch,
                ..config(8)
            };
            Loader::new(Arc::clone(&ds), cfg)
                .epoch(epoch)
                .collect::<Vec<_>>()
        };
        let one = run(1, 0, 3);
        assert_eq!(one.len(), 6);
        assert_eq!(one, run(3, 5, 3));
        assert_ne!(one, run(3, 5, 4));
        let mut seen: Vec<usize> = one.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, (0..22).collect::<Vec<_>>(), "shuffled");
        seen.sort();
        assert_eq!(seen, (0..22).collect::<Vec<_>>(), "a permutation");
        for (p, b) in one.iter().enumerate() {
            assert_eq!(b.position, p);
            assert_eq!(
                b.labels,
                b.indices.iter().map(|i| i % 2).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn the_two_views_differ_and_have_the_model_layout() {
        let loader = Loader::new(Synth::arc(5, 1, &[]), config(8));
        let batch = loader.epoch(0).next().unwrap();
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.images.len(), 2);
        for view in &batch.images {
            assert_eq!(view.len(), 4 * 3 * 8 * 8);
            assert!(view.iter().all(|v| (-2.0..=2.0).contains(v)));
        }
        assert_ne!(batch.images[0], batch.images[1]);
    }

    #[test]
    fn evaluation_preprocessing_without_augmentation() {
        let cfg = LoaderConfig {
            views: 1,
            augment: Vec::new(),
            shuffle: false,
            normalize: Normalize {
                size: 6,
                channels: 1,
                mean: vec![0.5],
                std: vec![0.5],
            },
            ..config(6)
        };
        let ds = Synth::arc(6, 3, &[]);
        let loader = Loader::new(Arc::clone(&ds), cfg.clone());
        let batches: Vec<Batch> = loader.epoch(0).collect();
        assert_eq!(batches[0].indices, [0, 1, 2, 3]);
        assert_eq!(batches[1].indices, [4, 5]);
        let mut want = Vec::new();
        cfg.normalize.apply(ds.image(4).unwrap(), &mut want);
        assert_eq!(want.len(), 36);
        assert_eq!(batches[1].images[0][..36], want[..]);
        assert_eq!(
            batches,
            loader.epoch(1).collect::<Vec<_>>(),
            "same every epoch"
        );
    }

    #[test]
    fn corrupt_samples_are_skipped_and_reported() {
        // Batch 1 of the unshuffled order (4..8) fails entirely.
        let ds = Synth::arc(10, 3, &[1, 4, 5, 6, 7]);
        let cfg = LoaderConfig {
            shuffle: false,
            ..config(8)
        };
        let loader = Loader::new(ds, cfg);
        let mut epoch = loader.epoch(0);
        let batches: Vec<Batch> = epoch.by_ref().collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].indices, [0, 2, 3]);
        assert_eq!(batches[0].images[0].len(), 3 * 3 * 8 * 8);
        assert_eq!(batches[0].skipped.len(), 1);
        assert!(batches[0].skipped[0].contains("img1.png"));
        assert_eq!(batches[1].indices, [8, 9]);
        assert_eq!(batches[1].position, 2);
        assert_eq!(batches[1].skipped.len(), 4, "carried from the failed batch");
        assert!(batches[1].skipped[0].contains("img4.png"));
        assert_eq!(epoch.skipped().len(), 5);
    }

    #[test]
    fn drop_last_leaves_out_the_short_batch() {
        for (drop_last, sizes) in [(false, vec![4, 4, 2]), (true, vec![4, 4])] {
            let cfg = LoaderConfig {
                drop_last,
                ..config(8)
            };
            let loader = Loader::new(Synth::arc(10, 3, &[]), cfg);
            assert_eq!(loader.batches_per_epoch(), sizes.len());
            let got: Vec<usize> = loader.epoch(0).map(|b| b.len()).collect();
            assert_eq!(got, sizes);
        }
    }

    #[test]
    fn resuming_mid_epoch_reproduces_the_rest() {
        let loader = Loader::new(Synth::arc(14, 3, &[]), config(8));
        let all: Vec<Batch> = loader.epoch(5).collect();
        let rest: Vec<Batch> = loader.epoch_from(5, 2).collect();
        assert_eq!(rest, all[2..]);
        assert_eq!(loader.epoch_from(5, 9).count(), 0);
        // Abandoning an epoch early stops its workers.
        assert_eq!(loader.epoch(6).take(1).count(), 1);
    }
}

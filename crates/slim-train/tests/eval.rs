//! Tests of `slim_train::eval`: the weighted kNN against hand-made examples, the
//! switchable linear probe on separable synthetic features (accuracy, only the probes
//! change, determinism, the sub-width loss by hand), feature extraction against a direct
//! forward pass, and a kNN of random-init features on Fashion-MNIST.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use slim_core::{Backbone, ModelConfig, Silent};
use slim_data::transform::Normalize;
use slim_data::{Dataset, Image, Split};
use slim_train::SlimNet;
use slim_train::eval::{
    AugmentedImages, DEFAULT_KNN_K, DEFAULT_KNN_TEMPERATURE, FeatureSet, LinearConfig,
    extract_features, knn_accuracy, knn_predict, probe_accuracy, probe_loss, train_probe,
    train_probe_augmented,
};
use tch::{Device, Kind, Tensor, nn};

/// Held while a network is initialised: libtorch's generator is process-wide and this
/// binary's tests run in parallel.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A ResNet-20 initialised from a fixed seed: the same network in every run (a random
/// one made the narrowest width's features of three gray levels inseparable in some
/// runs).
fn resnet20(classes: usize) -> (nn::VarStore, SlimNet) {
    let config = ModelConfig::new(
        Backbone::Resnet20,
        1,
        28,
        (0..classes).map(|i| format!("class{i}")).collect(),
        vec![0.5],
        vec![0.25],
    );
    let _init = INIT.lock().unwrap_or_else(|p| p.into_inner());
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = SlimNet::new(&vs.root(), &config).unwrap();
    (vs, net)
}

/// A small deterministic generator for test data (independent of libtorch's global one,
/// which tests running in parallel share).
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n
    }
}

fn tensor(rows: usize, cols: usize, data: Vec<f32>) -> Tensor {
    Tensor::from_slice(&data).view([rows as i64, cols as i64])
}

fn labels(v: &[i64]) -> Tensor {
    Tensor::from_slice(v)
}

// ---------------------------------------------------------------------------------------
// kNN

/// Two clusters of `n` points each, around angle 0 (class 0) and angle π (class 1).
fn two_clusters(rng: &mut Lcg, n: usize) -> (Tensor, Tensor) {
    let mut data = Vec::new();
    let mut y = Vec::new();
    for class in 0..2 {
        let centre = if class == 0 { 1.0 } else { -1.0 };
        for _ in 0..n {
            let r = 0.5 + rng.uniform() as f32 * 3.0;
            data.push(r * centre);
            data.push(r * 0.3 * rng.normal());
            y.push(class as i64);
        }
    }
    (tensor(2 * n, 2, data), labels(&y))
}

#[test]
fn knn_separates_two_clusters_and_is_at_chance_on_shuffled_labels() {
    let mut rng = Lcg(1);
    let (train, train_y) = two_clusters(&mut rng, 60);
    let (test, test_y) = two_clusters(&mut rng, 40);
    for k in [1, 5, DEFAULT_KNN_K] {
        let acc = knn_accuracy(
            &train,
            &train_y,
            &test,
            &test_y,
            2,
            k,
            DEFAULT_KNN_TEMPERATURE,
        );
        assert_eq!(acc, 1.0, "k = {k}");
    }

    // Random features with random labels: nothing to learn, 4 classes.
    let (n, m, d, c) = (600, 600, 16, 4);
    let train = tensor(n, d, (0..n * d).map(|_| rng.normal()).collect());
    let test = tensor(m, d, (0..m * d).map(|_| rng.normal()).collect());
    let train_y: Vec<i64> = (0..n).map(|_| rng.below(c) as i64).collect();
    let test_y: Vec<i64> = (0..m).map(|_| rng.below(c) as i64).collect();
    let acc = knn_accuracy(
        &train,
        &labels(&train_y),
        &test,
        &labels(&test_y),
        c,
        DEFAULT_KNN_K,
        DEFAULT_KNN_TEMPERATURE,
    );
    eprintln!("kNN on shuffled labels: {acc:.3} (chance 0.25)");
    assert!((0.15..0.35).contains(&acc), "{acc}");
}

#[test]
fn knn_votes_are_weighted_by_exp_similarity_over_temperature() {
    // Query (1, 0) against a = (1, 0) [class 0], b = (0, 1) and c = (1, 1) [class 1]:
    // cosines 1, 0 and 1/√2. With all three neighbours, class 0 gets exp(1/T) and class
    // 1 gets exp(0) + exp(0.7071/T):
    //   T = 1:   2.718 < 1 + 2.028 = 3.028  -> class 1 (as a plain majority vote would);
    //   T = 0.5: 7.389 > 1 + 4.113 = 5.113  -> class 0 (as no plain majority would).
    // Scaling the training points changes nothing (cosine).
    let train = tensor(3, 2, vec![5.0, 0.0, 0.0, 0.2, 3.0, 3.0]);
    let train_y = labels(&[0, 1, 1]);
    let query = tensor(1, 2, vec![2.0, 0.0]);
    let predict = |k, t| knn_predict(&train, &train_y, &query, 2, k, t).int64_value(&[0]);
    assert_eq!(predict(3, 1.0), 1);
    assert_eq!(predict(3, 0.5), 0);
    // The boundary: exp(1/T) = 1 + exp(0.7071/T) at T ≈ 0.83; check either side.
    assert_eq!(predict(3, 0.8), 0);
    assert_eq!(predict(3, 0.86), 1);
    // k = 1 keeps only the nearest (class 0); k larger than the set is clamped.
    assert_eq!(predict(1, 1.0), 0);
    assert_eq!(predict(200, 1.0), 1);
    // k = 2 drops b: exp(1/T) vs exp(0.7071/T), class 0 whatever T.
    assert_eq!(predict(2, 100.0), 0);
    // Tiny temperatures do not overflow.
    assert_eq!(predict(3, 1e-4), 0);
    let acc = knn_accuracy(&train, &train_y, &query, &labels(&[0]), 2, 3, 1.0);
    assert_eq!(acc, 0.0);
}

// ---------------------------------------------------------------------------------------
// Linear probe

/// Gaussian blobs: `per_class` samples of each of `classes` classes around random
/// centres (normal, scale 2) with unit noise, at every width of `net`, as a feature set.
fn blobs(net: &SlimNet, classes: usize, per_class: usize, seed: u64) -> FeatureSet {
    let mut centre_rng = Lcg(99);
    let mut rng = Lcg(seed);
    let n = classes * per_class;
    let y: Vec<i64> = (0..n).map(|i| (i % classes) as i64).collect();
    let per_width = net
        .widths()
        .iter()
        .map(|&w| {
            let d = net.network().features_at(w);
            let centres: Vec<f32> = (0..classes * d)
                .map(|_| 2.0 * centre_rng.normal())
                .collect();
            let data = (0..n)
                .flat_map(|i| {
                    let c = y[i] as usize;
                    (0..d)
                        .map(|j| centres[c * d + j] + rng.normal())
                        .collect::<Vec<_>>()
                })
                .collect();
            tensor(n, d, data)
        })
        .collect();
    FeatureSet {
        widths: net.widths().to_vec(),
        per_width,
        labels: labels(&y),
        skipped: Vec::new(),
    }
}

fn snapshot(net: &SlimNet) -> Vec<(String, Tensor)> {
    net.named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

fn probe_config() -> LinearConfig {
    LinearConfig {
        epochs: 10,
        batch_size: 64,
        seed: 7,
        ..LinearConfig::default()
    }
}

#[test]
fn the_probe_learns_separable_features_at_every_width_and_touches_nothing_else() {
    let classes = 5;
    let (_vs, net) = resnet20(classes);
    let train = blobs(&net, classes, 80, 1);
    let test = blobs(&net, classes, 40, 2);
    let before = snapshot(&net);
    let losses = train_probe(&net, &train, &probe_config(), &mut Silent).unwrap();
    assert_eq!(losses.len(), net.widths().len());
    for (i, &w) in net.widths().iter().enumerate() {
        let (top1, top5) = probe_accuracy(&net, &test, i);
        eprintln!(
            "width {w}: final loss {:.4}, top-1 {top1:.3}, top-5 {top5:.3}",
            losses[i]
        );
        assert!(top1 > 0.95, "width {w}: top-1 {top1}");
        assert_eq!(top5, 1.0, "width {w}: 5 classes");
        assert!(losses[i].is_finite() && losses[i] < 0.5, "{losses:?}");
    }
    for ((name, old), (_, new)) in before.iter().zip(snapshot(&net)) {
        if name.starts_with("probe.") {
            assert!(!old.equal(&new), "{name} did not train");
        } else {
            assert!(old.equal(&new), "{name} changed");
        }
    }
}

/// `set` with every feature times `scale` plus `shift`: the large, all-positive features
/// of a short run whose BatchNorm statistics have not settled.
fn rescaled(set: &FeatureSet, scale: f64, shift: f64) -> FeatureSet {
    FeatureSet {
        widths: set.widths.clone(),
        per_width: set.per_width.iter().map(|f| f * scale + shift).collect(),
        labels: set.labels.copy(),
        skipped: Vec::new(),
    }
}

#[test]
fn the_probe_learns_the_same_function_whatever_the_features_scale() {
    // Trained on standardized features and folded back, the probe of features x 500 + 300
    // makes the same predictions on the same images as the probe of the features
    // themselves (before standardization, SGD at lr 0.1 diverged on the large ones).
    let classes = 5;
    let (_va, a) = resnet20(classes);
    let (_vb, b) = resnet20(classes);
    let (train, test) = (blobs(&a, classes, 80, 1), blobs(&a, classes, 40, 2));
    let (big_train, big_test) = (
        rescaled(&train, 500.0, 300.0),
        rescaled(&test, 500.0, 300.0),
    );
    let la = train_probe(&a, &train, &probe_config(), &mut Silent).unwrap();
    let lb = train_probe(&b, &big_train, &probe_config(), &mut Silent).unwrap();
    for (i, &w) in a.widths().iter().enumerate() {
        assert!((la[i] - lb[i]).abs() < 1e-3, "width {w}: {la:?} vs {lb:?}");
        assert!(lb[i] < 0.5, "width {w}: final loss {}", lb[i]);
        let (top1, _) = probe_accuracy(&b, &big_test, i);
        assert!(top1 > 0.95, "width {w}: top-1 {top1}");
        let pa = a.probe(&test.per_width[i], w);
        let pb = b.probe(&big_test.per_width[i], w);
        let gap = (&pa - &pb).abs().max().double_value(&[]);
        let size = pa.abs().max().double_value(&[]);
        assert!(
            gap < 1e-3 * size.max(1.0),
            "width {w}: logits differ by {gap}"
        );
    }
}

#[test]
fn a_constant_feature_is_centred_not_divided_by_zero() {
    // Feature 0 is the same for every training image; at test time it differs. Divided
    // by its standard deviation of zero it would dominate every logit; divided by the
    // floor (a hundredth of the features' typical spread) it moves them by its
    // init-sized weight times the difference over that floor.
    let classes = 3;
    let (_vs, net) = resnet20(classes);
    let mut train = blobs(&net, classes, 40, 1);
    let mut test = blobs(&net, classes, 20, 2);
    for f in train.per_width.iter_mut() {
        let _ = f.narrow(1, 0, 1).fill_(7.0);
    }
    for f in test.per_width.iter_mut() {
        let _ = f.narrow(1, 0, 1).fill_(8.0);
    }
    train_probe(&net, &train, &probe_config(), &mut Silent).unwrap();
    for (i, &w) in net.widths().iter().enumerate() {
        let (top1, _) = probe_accuracy(&net, &test, i);
        assert!(top1 > 0.9, "width {w}: top-1 {top1}");
    }
}

#[test]
fn the_probe_depends_only_on_features_and_seed() {
    let classes = 3;
    let run = |seed| {
        // Fresh nets start from different random probes; training re-initialises them.
        let (_vs, net) = resnet20(classes);
        let train = blobs(&net, classes, 30, 5);
        let config = LinearConfig {
            epochs: 2,
            batch_size: 16,
            seed,
            ..LinearConfig::default()
        };
        let losses = train_probe(&net, &train, &config, &mut Silent).unwrap();
        let probes: Vec<Tensor> = snapshot(&net)
            .into_iter()
            .filter(|(n, _)| n.starts_with("probe."))
            .map(|(_, t)| t)
            .collect();
        (losses, probes)
    };
    let (la, pa) = run(3);
    let (lb, pb) = run(3);
    let (lc, pc) = run(4);
    assert_eq!(la, lb);
    assert!(pa.iter().zip(&pb).all(|(a, b)| a.equal(b)));
    assert_ne!(la, lc);
    assert!(pa.iter().zip(&pc).any(|(a, c)| !a.equal(c)));
}

#[test]
fn the_sub_width_probe_loss_is_half_cross_entropy_half_soft_cross_entropy() {
    // One sample, two classes. Full-width logits (0, 0): softmax (1/2, 1/2). Sub-width
    // logits (ln 3, 0): log-softmax (ln 3/4, ln 1/4). Label 0:
    //   CE      = -ln(3/4)                       = 0.287682
    //   soft CE = -(ln(3/4) + ln(1/4)) / 2       = 0.836988
    //   loss    = (0.287682 + 0.836988) / 2      = 0.562335
    let full = Tensor::from_slice(&[0.0f64, 0.0])
        .view([1, 2])
        .set_requires_grad(true);
    let sub = Tensor::from_slice(&[3f64.ln(), 0.0])
        .view([1, 2])
        .set_requires_grad(true);
    let y = labels(&[0]);
    let loss = probe_loss(&full, &sub, &y);
    let want = 0.5 * -(0.75f64.ln()) + 0.5 * -(0.5 * 0.75f64.ln() + 0.5 * 0.25f64.ln());
    assert!((loss.double_value(&[]) - want).abs() < 1e-12);
    assert!((want - 0.562335).abs() < 1e-6);
    // Label 1 changes only the CE half: CE = -ln(1/4).
    let loss1 = probe_loss(&full, &sub, &labels(&[1])).double_value(&[]);
    let want1 = 0.5 * -(0.25f64.ln()) + 0.5 * -(0.5 * 0.75f64.ln() + 0.5 * 0.25f64.ln());
    assert!((loss1 - want1).abs() < 1e-12);
    // The teacher is detached; the student's gradient for label 1 is
    // 0.5 (p - onehot) + 0.5 (p - teacher) = 0.5 (3/4, -3/4) + 0.5 (1/4, -1/4).
    let loss1 = probe_loss(&full, &sub, &labels(&[1]));
    let grads = Tensor::run_backward(&[&loss1], &[&sub], false, false);
    let g = Vec::<f64>::try_from(grads[0].flatten(0, -1)).unwrap();
    assert!(
        (g[0] - 0.5).abs() < 1e-12 && (g[1] + 0.5).abs() < 1e-12,
        "{g:?}"
    );
    let loss = probe_loss(&full, &sub, &y);
    loss.backward();
    assert!(!full.grad().defined(), "no gradient reaches the full width");
    // With a one-hot-like teacher toward class 1 the soft term pulls the other way.
    let teacher = Tensor::from_slice(&[-20.0f64, 20.0]).view([1, 2]);
    let l = probe_loss(&teacher, &sub, &y).double_value(&[]);
    assert!((l - (0.5 * -(0.75f64.ln()) + 0.5 * -(0.25f64.ln()))).abs() < 1e-9);
}

// ---------------------------------------------------------------------------------------
// Feature extraction

/// Tiny images whose pixels depend on their index; `bad` ones fail to decode.
struct Tiny {
    n: usize,
    bad: Vec<usize>,
    classes: Vec<String>,
}

impl Dataset for Tiny {
    fn len(&self) -> usize {
        self.n
    }
    fn class_names(&self) -> &[String] {
        &self.classes
    }
    fn label(&self, i: usize) -> usize {
        i % 3
    }
    fn image(&self, i: usize) -> Result<Image, slim_data::Error> {
        if self.bad.contains(&i) {
            return Err(slim_data::Error::at(
                format!("img{i}.png"),
                "cannot be decoded",
            ));
        }
        let (h, w) = (30, 32);
        let data = (0..h * w).map(|p| ((p * 7 + i * 31) % 256) as u8).collect();
        Ok(Image::new(h, w, 1, data))
    }
    fn describe(&self) -> String {
        "tiny".into()
    }
}

fn tiny(n: usize, bad: &[usize]) -> Arc<dyn Dataset> {
    Arc::new(Tiny {
        n,
        bad: bad.to_vec(),
        classes: vec!["a".into(), "b".into(), "c".into()],
    })
}

/// Images of one gray level per class (40, 120, 200): any crop of one looks like the
/// whole, so a probe on the features of random crops must
/// learn the classes exactly unless labels and images fall out of step.
struct Flat {
    n: usize,
    classes: Vec<String>,
}

impl Dataset for Flat {
    fn len(&self) -> usize {
        self.n
    }
    fn class_names(&self) -> &[String] {
        &self.classes
    }
    fn label(&self, i: usize) -> usize {
        (i * 7) % 3
    }
    fn image(&self, i: usize) -> Result<Image, slim_data::Error> {
        let level = 40 + 80 * self.label(i);
        Ok(Image::new(30, 32, 1, vec![level as u8; 30 * 32]))
    }
    fn describe(&self) -> String {
        "flat".into()
    }
}

fn flat(n: usize) -> Arc<dyn Dataset> {
    Arc::new(Flat {
        n,
        classes: vec!["dark".into(), "mid".into(), "light".into()],
    })
}

fn normalize() -> Normalize {
    Normalize {
        size: 28,
        channels: 1,
        mean: vec![0.5],
        std: vec![0.25],
    }
}

#[test]
fn the_augmented_probe_learns_from_fresh_crops_and_repeats_by_seed() {
    let (_vs, net) = resnet20(3);
    let widths = net.widths().to_vec();
    let norm = normalize();
    let (train, test) = (flat(96), flat(60));
    let clean = extract_features(
        &net,
        train.clone(),
        &norm,
        &widths,
        32,
        None,
        1,
        &mut Silent,
    )
    .unwrap();
    let test = extract_features(&net, test, &norm, &widths, 32, None, 1, &mut Silent).unwrap();
    let images = AugmentedImages {
        dataset: train,
        normalize: &norm,
        limit: Some(48),
        workers: 2,
    };
    let config = |seed, epochs| LinearConfig {
        epochs,
        batch_size: 16,
        seed,
        ..LinearConfig::default()
    };
    let before = snapshot(&net);
    let mut counted = Counted::default();
    let losses =
        train_probe_augmented(&net, &clean, &images, &config(1, 12), &mut counted).unwrap();
    assert_eq!(
        (counted.total, counted.done, counted.ended),
        (36, 36, true),
        "12 epochs of 3 batches of the 48 images (every other one: all three classes)"
    );
    for ((name, old), (_, new)) in before.iter().zip(snapshot(&net)) {
        assert_eq!(name.starts_with("probe."), !old.equal(&new), "{name}");
    }
    for (i, &w) in widths.iter().enumerate() {
        let (top1, _) = probe_accuracy(&net, &test, i);
        eprintln!(
            "width {w}: last-epoch loss {:.3}, clean test top-1 {top1:.3}",
            losses[i]
        );
        assert!(top1 > 0.9, "width {w}: top-1 {top1}");
    }
    let probes = |net: &SlimNet| -> Vec<Tensor> {
        snapshot(net)
            .into_iter()
            .filter(|(n, _)| n.starts_with("probe."))
            .map(|(_, t)| t)
            .collect()
    };
    let short = train_probe_augmented(&net, &clean, &images, &config(1, 2), &mut Silent).unwrap();
    let first = probes(&net);
    let again = train_probe_augmented(&net, &clean, &images, &config(1, 2), &mut Silent).unwrap();
    assert_eq!(short, again);
    assert!(first.iter().zip(probes(&net)).all(|(a, b)| a.equal(&b)));
    let other = train_probe_augmented(&net, &clean, &images, &config(2, 2), &mut Silent).unwrap();
    assert_ne!(short, other, "another seed draws other crops and order");
}

#[test]
fn extracted_features_equal_a_direct_forward_pass_at_every_width() {
    let (_vs, net) = resnet20(3);
    let ds = tiny(7, &[]);
    let widths = net.widths().to_vec();
    let mut counted = Counted::default();
    let set = extract_features(
        &net,
        Arc::clone(&ds),
        &normalize(),
        &widths,
        3,
        None,
        2,
        &mut counted,
    )
    .unwrap();
    assert_eq!((counted.total, counted.done, counted.ended), (7, 7, true));
    assert_eq!(set.len(), 7);
    assert!(set.skipped.is_empty());
    assert_eq!(
        Vec::<i64>::try_from(&set.labels).unwrap(),
        [0, 1, 2, 0, 1, 2, 0]
    );
    let mut pixels = Vec::new();
    for i in 0..7 {
        normalize().apply(ds.image(i).unwrap(), &mut pixels);
    }
    let x = Tensor::from_slice(&pixels).view([7, 1, 28, 28]);
    for (i, &w) in widths.iter().enumerate() {
        let f = &set.per_width[i];
        assert_eq!(f.size(), [7, net.network().features_at(w) as i64]);
        assert_eq!(f.kind(), Kind::Float);
        let want = tch::no_grad(|| net.forward(&x, w, false));
        assert!(f.allclose(&want, 1e-5, 1e-6, false), "width {w}");
        assert!(set.features(w).unwrap().equal(f));
    }
    // A subset of widths, in the order asked for.
    let set = extract_features(
        &net,
        ds,
        &normalize(),
        &slim_test_utils::widths(&[0.25, 1.0]),
        4,
        None,
        1,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(set.widths, slim_test_utils::widths(&[0.25, 1.0]));
    assert_eq!(
        set.per_width[0].size()[1],
        net.network().features_at(slim_test_utils::width(0.25)) as i64
    );
}

#[test]
fn extraction_skips_corrupt_images_and_limits_evenly() {
    let (_vs, net) = resnet20(3);
    let widths = net.widths().to_vec();
    let set = extract_features(
        &net,
        tiny(10, &[4]),
        &normalize(),
        &widths,
        4,
        None,
        2,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(set.len(), 9);
    assert_eq!(set.skipped.len(), 1);
    assert!(set.skipped[0].contains("img4.png"), "{:?}", set.skipped);
    assert!(set.per_width.iter().all(|f| f.size()[0] == 9));

    // limit 4 of 10: samples 0, 2, 5, 7 (labels 0, 2, 2, 1).
    let limited = extract_features(
        &net,
        tiny(10, &[]),
        &normalize(),
        &widths,
        3,
        Some(4),
        1,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(slim_data::evenly_spaced(10, 4), [0, 2, 5, 7]);
    assert_eq!(Vec::<i64>::try_from(&limited.labels).unwrap(), [0, 2, 2, 1]);
    let full = extract_features(
        &net,
        tiny(10, &[]),
        &normalize(),
        &slim_test_utils::widths(&[1.0]),
        10,
        None,
        1,
        &mut Silent,
    )
    .unwrap();
    let rows = Tensor::from_slice(&[0i64, 2, 5, 7]);
    assert!(limited.per_width[0].allclose(
        &full.per_width[0].index_select(0, &rows),
        1e-5,
        1e-6,
        false
    ));

    // Wrong widths and channels are errors, not panics.
    assert!(
        extract_features(
            &net,
            tiny(2, &[]),
            &normalize(),
            &slim_test_utils::widths(&[0.3]),
            2,
            None,
            1,
            &mut Silent
        )
        .is_err()
    );
    let rgb = Normalize {
        channels: 3,
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        ..normalize()
    };
    assert!(extract_features(&net, tiny(2, &[]), &rgb, &widths, 2, None, 1, &mut Silent).is_err());
}

// ---------------------------------------------------------------------------------------
// Real data

#[test]
fn random_init_resnet20_features_give_knn_well_above_chance_on_fashion_mnist() {
    let dir = std::env::var("FASHION_MNIST_DIR")
        .unwrap_or_else(|_| "/usr/share/datasets/fashion-mnist".into());
    let dir = Path::new(&dir);
    if !dir.exists() {
        eprintln!("skipped: no Fashion-MNIST at {}", dir.display());
        return;
    }
    let start = Instant::now();
    let train_ds: Arc<dyn Dataset> = slim_data::open(dir, Split::Train).unwrap().into();
    let test_ds: Arc<dyn Dataset> = slim_data::open(dir, Split::Test).unwrap().into();
    let classes = train_ds.class_names().len();
    assert_eq!(classes, 10);
    let (_vs, net) = resnet20(classes);
    let norm = Normalize {
        size: 28,
        channels: 1,
        mean: vec![0.286],
        std: vec![0.353],
    };
    let widths = net.widths().to_vec();
    let train = extract_features(
        &net,
        train_ds,
        &norm,
        &widths,
        250,
        Some(2000),
        2,
        &mut Silent,
    )
    .unwrap();
    let test = extract_features(
        &net,
        test_ds,
        &norm,
        &widths,
        250,
        Some(500),
        2,
        &mut Silent,
    )
    .unwrap();
    assert_eq!((train.len(), test.len()), (2000, 500));
    for (i, &w) in widths.iter().enumerate() {
        let acc = knn_accuracy(
            &train.per_width[i],
            &train.labels,
            &test.per_width[i],
            &test.labels,
            classes,
            DEFAULT_KNN_K,
            DEFAULT_KNN_TEMPERATURE,
        );
        eprintln!(
            "Fashion-MNIST, random-init resnet20, width {w}: kNN top-1 {acc:.3} \
             (2000 train / 500 test, k = {DEFAULT_KNN_K}, T = {DEFAULT_KNN_TEMPERATURE})"
        );
        assert!(acc > 0.3, "width {w}: {acc}");
    }
    eprintln!("took {:.1} s", start.elapsed().as_secs_f64());
}

/// Records what a library reports.
#[derive(Default)]
struct Counted {
    total: u64,
    done: u64,
    ended: bool,
}

impl slim_core::Progress for Counted {
    fn begin(&mut self, _: &str, total: u64, _: &str, done: u64) {
        (self.total, self.done) = (total, done);
    }
    fn update(&mut self, done: u64, _: &str) {
        self.done = done;
    }
    fn note(&mut self, _: &str) {}
    fn end(&mut self) {
        self.ended = true;
    }
}

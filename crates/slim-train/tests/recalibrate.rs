//! `slim-train recalibrate` end to end, on small datasets written by the test (IDX files
//! and a BMP ImageFolder, so nothing needs the Fashion-MNIST package): the stem's
//! statistics at every width equal the mean and variance computed here by hand; with one
//! batch every deeper BatchNorm is exact too (eval mode then matches batch statistics);
//! every other tensor, the probe and the training state are kept bit for bit, and the
//! record says what was done; each bad input is refused naming the flag or file, with
//! nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slim_core::checkpoint::names;
use slim_core::{Backbone, ModelConfig};
use slim_train::{SlimNet, checkpoint};
use tch::{Device, Kind, Tensor};

const SIZE: usize = 12;
const MEAN: f32 = 0.4;
const STD: f32 = 0.3;

fn slim_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slim-train"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` images of `size x size` pixels: a per-image brightness, a gradient and noise, so
/// that channels of the stem differ in mean and variance.
fn pixels(n: usize, size: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * size * size);
    for _ in 0..n {
        let base: i32 = rng.random_range(20..160);
        for y in 0..size {
            for x in 0..size {
                let v = base + (x * 4) as i32 - (y * 2) as i32 + rng.random_range(0..40);
                out.push(v.clamp(0, 255) as u8);
            }
        }
    }
    out
}

/// An IDX dataset folder of `n` gray images labelled 0, 1, 2 in turn, the same images in
/// both splits.
fn idx_dataset(dir: &Path, images: &[u8], n: usize, size: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut img = vec![0, 0, 8, 3];
    for d in [n, size, size] {
        img.extend((d as u32).to_be_bytes());
    }
    img.extend_from_slice(images);
    let mut lab = vec![0, 0, 8, 1];
    lab.extend((n as u32).to_be_bytes());
    lab.extend((0..n).map(|i| (i % 3) as u8));
    for split in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), &img).unwrap();
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), &lab).unwrap();
    }
    dir.to_path_buf()
}

/// A 24-bit BMP of `w x h` pixels of one gray level.
fn bmp(path: &Path, w: usize, h: usize, level: u8) {
    let row = (w * 3).div_ceil(4) * 4;
    let size = 54 + row * h;
    let mut b = Vec::with_capacity(size);
    b.extend(b"BM");
    b.extend((size as u32).to_le_bytes());
    b.extend([0; 4]);
    b.extend(54u32.to_le_bytes());
    b.extend(40u32.to_le_bytes());
    b.extend((w as i32).to_le_bytes());
    b.extend((h as i32).to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(24u16.to_le_bytes());
    b.extend([0; 24]);
    for _ in 0..h {
        b.extend(std::iter::repeat_n(level, w * 3));
        b.extend(std::iter::repeat_n(0, row - w * 3));
    }
    std::fs::write(path, b).unwrap();
}

/// A ResNet-20 checkpoint at widths 1.0 and 0.5 with every tensor random (BatchNorm
/// affine pairs and running statistics included), a projection-head tensor and a
/// training state, as `slim-train pretrain` and `linear` leave one.
fn source_checkpoint(path: &Path, channels: usize) -> ModelConfig {
    tch::manual_seed(11);
    let mut m = ModelConfig::new(
        Backbone::Resnet20,
        channels,
        SIZE,
        vec!["0".into(), "1".into(), "2".into()],
        vec![MEAN; channels],
        vec![STD; channels],
    );
    m.widths = slim_test_utils::widths(&[1.0, 0.5]);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = SlimNet::new(&vs.root(), &m).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in net.named_tensors() {
            if name.contains(".bn.") {
                let r = Tensor::rand_like(&t);
                let v = match name.rsplit('.').next().unwrap() {
                    "running_var" | "weight" => r + 0.5,
                    _ => r - 0.5,
                };
                t.copy_(&v);
            }
        }
    });
    let head = Tensor::randn([5, 7], (Kind::Float, Device::Cpu));
    checkpoint::save_with_state(path, &net, &[("head.weight", &head)], Some("{\"step\":3}"))
        .unwrap();
    m
}

/// The normalized `[n, 1, S, S]` input of IDX pixels, as the loader makes it.
fn input(images: &[u8], n: usize) -> Tensor {
    let v: Vec<f32> = images
        .iter()
        .map(|&p| (p as f32 / 255.0 - MEAN) / STD)
        .collect();
    Tensor::from_slice(&v).view([n as i64, 1, SIZE as i64, SIZE as i64])
}

fn tensor(c: &slim_core::Checkpoint, name: &str) -> Tensor {
    checkpoint::from_core(c.tensor(name), Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn recalibration_sets_exact_statistics_and_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.safetensors");
    let config = source_checkpoint(&src, 1);
    let n = 100;
    let images = pixels(n, SIZE, 1);
    let data = idx_dataset(&dir.path().join("new-domain"), &images, n, SIZE);
    let out = dir.path().join("out/recalibrated.safetensors");
    let o = slim_train()
        .args([
            "recalibrate",
            "--batch-size",
            "16",
            "--seed",
            "4",
            "--workers",
            "2",
        ])
        .arg("--checkpoint")
        .arg(&src)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .env("SLIM_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("BatchNorm statistics:"),
        "progress lines: {}",
        stderr(&o)
    );
    let before = slim_core::checkpoint::load(&src).unwrap();
    let after = slim_core::checkpoint::load(&out).unwrap();

    // (a) The stem sees the images themselves: at each width its statistics are the
    // mean and unbiased variance, over all 100 images (6 batches of 16, the last joined
    // by the 4 left over), of the stem conv's first channels, computed here in float64.
    let x = input(&images, n).to_kind(Kind::Double);
    for &w in &config.widths {
        let t = w.tag();
        let channels = slim_core::width::scaled(16, w) as i64;
        let weight = tensor(&after, "stem.weight")
            .narrow(0, 0, channels)
            .to_kind(Kind::Double);
        let y = x.conv2d(&weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let mean = y.mean_dim([0i64, 2, 3].as_slice(), false, None);
        let var = y.var_dim([0i64, 2, 3].as_slice(), true, false);
        let got_mean = tensor(&after, &format!("stem.bn.{t}.running_mean")).to_kind(Kind::Double);
        let got_var = tensor(&after, &format!("stem.bn.{t}.running_var")).to_kind(Kind::Double);
        assert_eq!(got_mean.size(), [channels]);
        let scale = var.abs().max().double_value(&[]);
        assert!(
            max_diff(&got_mean, &mean) < 1e-5 * scale.sqrt().max(1.0),
            "width {w} mean"
        );
        assert!(
            max_diff(&got_var, &var) < 1e-5 * scale,
            "width {w} variance"
        );
        // The old statistics were something else entirely.
        let old = tensor(&before, &format!("stem.bn.{t}.running_mean")).to_kind(Kind::Double);
        assert!(max_diff(&old, &mean) > 1e-2, "width {w}: unchanged");
    }

    // (b) Only running statistics and the reference outputs differ; conv weights,
    // BatchNorm affine pairs, the probe, the head and the training state are bit for bit
    // the input's, and every running statistic changed.
    assert_eq!(after.config, before.config);
    assert_eq!(after.train_state, before.train_state);
    assert_eq!(
        after.tensors.keys().collect::<Vec<_>>(),
        before.tensors.keys().collect::<Vec<_>>()
    );
    let mut changed = 0;
    for (name, t) in &before.tensors {
        let stat = name.ends_with(".running_mean") || name.ends_with(".running_var");
        let reference = name.starts_with(names::REFERENCE) && name != names::REFERENCE_IMAGE;
        if stat {
            assert_ne!(
                after.tensors[name].data, t.data,
                "{name} kept its old value"
            );
            changed += 1;
        } else if !reference {
            let (a, b): (Vec<u32>, Vec<u32>) = (
                after.tensors[name]
                    .data
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
                t.data.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(a, b, "{name} changed");
        }
    }
    // 21 BatchNorms (stem, 18 in the blocks, 2 shortcuts) at 2 widths, mean and var.
    assert_eq!(changed, 21 * 2 * 2);
    assert!(
        after.tensors.contains_key("probe.w500.weight")
            && after.tensors.contains_key("train.head.weight")
    );

    // (c) It loads as a model: the reference outputs are the recalibrated network's, and
    // the record says what was done.
    let (net, _vs, _) = checkpoint::load(&out, Device::Cpu).unwrap();
    let image = tensor(&after, names::REFERENCE_IMAGE);
    for &w in &config.widths {
        let (e, l) = tch::no_grad(|| net.forward_t(&image, w, false));
        assert!(max_diff(&e, &tensor(&after, &names::reference_embedding(&w.tag()))) < 1e-6);
        assert!(max_diff(&l, &tensor(&after, &names::reference_logits(&w.tag()))) < 1e-6);
    }
    let r = after
        .recalibration
        .as_ref()
        .expect("a recalibration record");
    assert_eq!(r.images, n);
    assert_eq!(
        (r.batch_size, r.seed, r.skipped, r.resized),
        (16, 4, 0, false)
    );
    assert_eq!(r.data, data.display().to_string());
    assert_eq!(r.split, "train");
    assert_eq!(r.source_sha256, before.sha256);
    assert!(r.previous.is_none() && before.recalibration.is_none());
    assert!(String::from_utf8_lossy(&o.stdout).contains("100 images"));

    // Recalibrated again (one batch of everything), the earlier record is kept.
    let again = dir.path().join("again.safetensors");
    let o = slim_train()
        .args([
            "recalibrate",
            "--batch-size",
            "100",
            "--quiet",
            "--checkpoint",
        ])
        .arg(&out)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let twice = slim_core::checkpoint::load(&again).unwrap();
    let r2 = twice.recalibration.as_ref().unwrap();
    assert_eq!(r2.previous.as_deref(), Some(r));
    assert_eq!(r2.source_sha256, after.sha256);
    // `linear` retrains the probe in place and keeps the record and the statistics.
    let probed = dir.path().join("probed.safetensors");
    std::fs::copy(&again, &probed).unwrap();
    let o = slim_train()
        .args(["linear", "--epochs", "2", "--checkpoint"])
        .arg(&probed)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let p = slim_core::checkpoint::load(&probed).unwrap();
    assert_eq!(p.recalibration, twice.recalibration);
    assert_eq!(p.train_state, twice.train_state);
    assert_eq!(
        p.tensors["stem.bn.w500.running_var"],
        twice.tensors["stem.bn.w500.running_var"]
    );
    assert_eq!(
        p.tensors["train.head.weight"],
        twice.tensors["train.head.weight"]
    );
    assert_ne!(
        p.tensors["probe.w500.weight"],
        twice.tensors["probe.w500.weight"]
    );

    // With one batch of all the images, every BatchNorm at every width holds the
    // statistics of its input in eval mode as well, so the eval-mode network agrees with
    // the batch-statistics one (up to BatchNorm's n/(n-1) between the biased variance it
    // normalizes a batch by and the unbiased one it stores).
    let (net, _vs, _) = checkpoint::load(&again, Device::Cpu).unwrap();
    let x = input(&images, n);
    for &w in &config.widths {
        let eval = tch::no_grad(|| net.forward(&x, w, false));
        let train = tch::no_grad(|| net.forward(&x, w, true));
        let scale = train.abs().max().double_value(&[]);
        let d = max_diff(&eval, &train);
        eprintln!("width {w}: eval vs batch statistics {d} (scale {scale})");
        assert!(
            d < 2e-2 * scale,
            "width {w}: eval vs batch statistics {d} (scale {scale})"
        );
    }
    // The same check on the first recalibration (6 batches) is looser but must hold
    // roughly; on the input checkpoint it fails by far.
    let (first, _vs1, _) = checkpoint::load(&out, Device::Cpu).unwrap();
    let (orig, _vs2, _) = checkpoint::load(&src, Device::Cpu).unwrap();
    let w = config.widths[1];
    let train = tch::no_grad(|| first.forward(&x, w, true));
    let scale = train.abs().max().double_value(&[]);
    let d_first = max_diff(&tch::no_grad(|| first.forward(&x, w, false)), &train);
    let d_orig = max_diff(&tch::no_grad(|| orig.forward(&x, w, false)), &train);
    eprintln!("six batches: {d_first}, input checkpoint: {d_orig} (scale {scale})");
    assert!(d_orig > 10.0 * d_first, "{d_first} vs {d_orig}");
}

#[test]
fn bad_inputs_are_refused_naming_the_flag_or_file_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let src = path("in.safetensors");
    source_checkpoint(Path::new(&src), 1);
    let src_bytes = std::fs::read(&src).unwrap();
    let good = path("good");
    idx_dataset(Path::new(&good), &pixels(40, SIZE, 2), 40, SIZE);
    let out = path("out.safetensors");
    let command = |checkpoint: &str, data: &str, out: &str, extra: &[&str]| {
        let mut c = slim_train();
        c.args(["recalibrate", "--checkpoint", checkpoint, "--data", data])
            .args(["--out", out])
            .args(extra);
        c.output().unwrap()
    };
    let refused = |o: Output, code: i32, needles: &[&str]| {
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{needles:?}: {e}");
        for n in needles {
            assert!(e.contains(n), "no {n:?} in {e}");
        }
        assert!(e.contains("slim-train: error: ") || code == 2, "{e}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(!Path::new(&out).exists(), "{needles:?}: {out} was written");
    };
    // Values clap refuses by the flag's name.
    for (flag, value) in [("--batch-size", "0"), ("--limit", "0"), ("--workers", "0")] {
        refused(command(&src, &good, &out, &[flag, value]), 2, &[flag]);
    }
    // The output is the input, by the same path, another spelling, or a link to it.
    let link = path("link.safetensors");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let dotted = format!("{}/./in.safetensors", dir.path().display());
    for same in [&src, &dotted, &link] {
        refused(
            command(&src, &good, same, &[]),
            1,
            &["--out", "is the input --checkpoint", "never overwritten"],
        );
    }
    assert_eq!(std::fs::read(&src).unwrap(), src_bytes, "the input changed");
    let folder_out = dir.path().to_str().unwrap();
    refused(command(&src, &good, folder_out, &[]), 1, &["is a folder"]);
    // Fewer images than one batch, with or without --limit.
    refused(
        command(&src, &good, &out, &["--batch-size", "64"]),
        1,
        &["40 images, fewer than one batch (--batch-size 64)"],
    );
    refused(
        command(&src, &good, &out, &["--limit", "10", "--batch-size", "16"]),
        1,
        &["10 images with --limit 10", "--batch-size 16"],
    );
    // No images at all; a missing checkpoint or dataset, named.
    let empty = path("empty");
    idx_dataset(Path::new(&empty), &[], 0, SIZE);
    refused(
        command(&src, &empty, &out, &[]),
        1,
        &[&empty, "holds no images"],
    );
    let missing = path("missing.safetensors");
    refused(command(&missing, &good, &out, &[]), 1, &[&missing]);
    refused(
        command(&src, &path("nowhere"), &out, &[]),
        1,
        &["nowhere", "does not exist"],
    );
    // Images of another size: refused naming both shapes and --resize; accepted with it.
    let small = path("small");
    idx_dataset(Path::new(&small), &pixels(40, 10, 3), 40, 10);
    refused(
        command(&src, &small, &out, &["--batch-size", "8"]),
        1,
        &[
            "its first image is 10x10 with 1 channel(s)",
            "input is 12x12 with 1 channel(s)",
            "--resize",
        ],
    );
    let o = command(&src, &small, &out, &["--batch-size", "8", "--resize"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = slim_core::checkpoint::load(Path::new(&out))
        .unwrap()
        .recalibration
        .unwrap();
    assert!(r.resized && r.images == 40);
    std::fs::remove_file(&out).unwrap();
    // Another channel count: a 3-channel model given gray images.
    let rgb = path("rgb.safetensors");
    source_checkpoint(Path::new(&rgb), 3);
    refused(
        command(&rgb, &good, &out, &["--batch-size", "8"]),
        1,
        &[
            "12x12 with 1 channel(s)",
            "input is 12x12 with 3 channel(s)",
        ],
    );
    // A folder whose first image fits but a later one does not: the run fails before
    // anything is written, naming it.
    let photos = path("photos");
    std::fs::create_dir_all(Path::new(&photos).join("a")).unwrap();
    for i in 0..12u8 {
        let side = if i == 9 { 16 } else { SIZE };
        let file = Path::new(&photos).join(format!("a/{i:02}.bmp"));
        bmp(&file, side, side, 40 + 10 * i);
    }
    refused(
        command(&rgb, &photos, &out, &["--batch-size", "4"]),
        1,
        &[
            "1 image(s) of",
            "image 9 is 16x16 with 3 channel(s)",
            "--resize",
        ],
    );
}

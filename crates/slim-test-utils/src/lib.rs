//! Fixtures shared by the workspace's tests (dev-dependency only).
//!
//! - [`model`]: the real exported model committed in `models/fashion-mnist-resnet20`;
//! - [`model_copy`] / [`copy_dir`]: a copy of it (or any folder) that a test may damage;
//! - [`fashion_mnist`]: the Fashion-MNIST IDX folder that `tools/setup.sh` installs;
//! - [`fashion_mnist_pngs`]: its first test images written as PNG files;
//! - [`width`] / [`widths`]: widths from literals;
//! - [`kill_at_random_points`]: SIGKILL a command at many points of its run;
//! - [`bench_args`]: the `[MODEL_DIR [ROUNDS]]` arguments of the overhead benchmarks;
//! - [`free_port`]: a loopback TCP port nothing listens on, for a test's rendezvous;
//! - [`alone`]: keeps a timing-sensitive test and a CPU-heavy one of a binary apart;
//! - `variant_model` (feature `variants`): a model exported with f16 and int8 variants.

use std::path::{Path, PathBuf};

/// The exported Fashion-MNIST ResNet-20 in `models/` (every width, manifest, test data).
pub fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-mnist-resnet20")
}

/// A benchmark's `[MODEL_DIR [ROUNDS]]` (default: [`model`] and 15 rounds), skipping the
/// flags `cargo bench` passes (`--bench`).
pub fn bench_args() -> (PathBuf, usize) {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = args.first().map_or_else(model, PathBuf::from);
    let rounds = args
        .get(1)
        .map_or(15, |r| r.parse().expect("ROUNDS is a number"));
    (dir, rounds)
}

/// Held by the tests of one test binary that must not overlap: those whose timing a busy
/// core would upset (killing a command at random points of its run, see
/// [`kill_at_random_points`]) and those that load every core (an export with
/// calibration). Each binary has its own lock.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A copy of [`model`] in a fresh temporary folder (removed with the returned guard).
pub fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let dst = dir.path().join("model");
    copy_dir(&model(), &dst);
    (dir, dst)
}

/// Copies the folder `src` into `dst`, recursively.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create the copy");
    for e in std::fs::read_dir(src).expect("read the folder") {
        let e = e.expect("a folder entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("its type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).expect("copy a file");
        }
    }
}

/// The Fashion-MNIST folder: `$FASHION_MNIST_DIR` (set by `.deps/env.sh`), else where the
/// Debian package puts it.
pub fn fashion_mnist() -> PathBuf {
    std::env::var_os("FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/share/datasets/fashion-mnist".into())
}

/// The first `n` Fashion-MNIST test images as PNG files `test-{i}.png` in `dir`, with
/// their class names.
pub fn fashion_mnist_pngs(dir: &Path, n: usize) -> Vec<(PathBuf, String)> {
    let ds = slim_data::open(&fashion_mnist(), slim_data::Split::Test).expect("Fashion-MNIST");
    (0..n)
        .map(|i| {
            let img = ds.image(i).expect("a test image");
            let (w, h) = (img.width as u32, img.height as u32);
            let buf = image::GrayImage::from_raw(w, h, img.data).expect("a grayscale image");
            let p = dir.join(format!("test-{i}.png"));
            buf.save(&p).expect("write a PNG");
            (p, ds.class_names()[ds.label(i)].clone())
        })
        .collect()
}

/// The width `x`, which a test knows to be in (0, 1].
pub fn width(x: f64) -> slim_core::Width {
    slim_core::Width::new(x).expect("a test width in (0, 1]")
}

/// The widths `xs`, in their order.
pub fn widths(xs: &[f64]) -> Vec<slim_core::Width> {
    xs.iter().map(|&x| width(x)).collect()
}

/// Runs `command()` to the end three times to learn how long it takes (the fastest: a
/// first run slowed by other tests would put the kill points past the later, faster
/// runs), then `n` more times, each killed (SIGKILL on Unix) after a delay spread evenly
/// over that run time and a little past it (so that some runs finish); `check(i)` is
/// called after each. Returns how many of the `n` runs were killed before they finished.
pub fn kill_at_random_points(
    n: usize,
    mut command: impl FnMut() -> std::process::Command,
    mut check: impl FnMut(usize),
) -> usize {
    let full = (0..3)
        .map(|_| {
            let start = std::time::Instant::now();
            let status = command()
                .stdout(std::process::Stdio::null())
                .status()
                .expect("the command starts");
            assert!(status.success(), "the command fails when not killed");
            start.elapsed()
        })
        .min()
        .expect("three runs");
    let mut killed = 0;
    for i in 0..n {
        // A fixed, well spread sequence of points (golden-ratio steps), up to 1.2 x the run.
        let at = full.mul_f64(1.2 * ((i as f64 * 0.618_034) % 1.0));
        let mut child = command()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the command starts");
        std::thread::sleep(at);
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("kill");
            killed += 1;
        }
        child.wait().expect("wait");
        check(i);
    }
    killed
}

/// Exports into `dir` a ResNet-20 for 1 x 28 x 28 images and 10 classes at widths 1.0 and
/// 0.25, its weights drawn by [`slim_core::init::random_tensors`] (so its accuracy means
/// nothing, its graphs are real), in `precisions` (f32 among them), the int8 graphs
/// calibrated on 32 Fashion-MNIST images. `None` (and a note) when Fashion-MNIST is absent.
#[cfg(feature = "variants")]
pub fn variant_model(dir: &Path, precisions: &[slim_core::Precision]) -> Option<PathBuf> {
    let fashion = fashion_mnist();
    if !fashion.exists() {
        eprintln!("skipped: {} is absent", fashion.display());
        return None;
    }
    let mut config = slim_core::ModelConfig::new(
        slim_core::Backbone::Resnet20,
        1,
        28,
        (0..10).map(|i| format!("class-{i}")).collect(),
        vec![0.29],
        vec![0.35],
    );
    config.widths = widths(&[1.0, 0.25]);
    std::fs::create_dir_all(dir).expect("the fixture folder");
    let checkpoint = dir.join("random.safetensors");
    let tensors = slim_core::init::random_tensors(&config, 7);
    slim_core::checkpoint::save(&checkpoint, &config, &tensors).expect("a checkpoint");
    let options = slim_onnx::ExportOptions {
        precisions: precisions.to_vec(),
        calibration: Some(slim_onnx::calibration::CalibrationOptions {
            data: fashion,
            images: 32,
            method: slim_core::precision::RangeMethod::MinMax,
            resize: false,
        }),
        ..slim_onnx::ExportOptions::float(slim_onnx::WidthSelection::All)
    };
    let out = dir.join("model");
    slim_onnx::export_with(&checkpoint, &options, &out).expect("the export");
    Some(out)
}

/// A loopback TCP port that nothing listens on now (the OS's pick), for a test's
/// rendezvous or server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}

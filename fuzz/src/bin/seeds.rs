//! Writes the seed corpora into `fuzz/seeds/<target>/` (committed; run again after a file
//! format changes): the committed model's manifest and narrowest graph, a small valid
//! checkpoint and its header alone, and one small image per decoded format.

use std::path::Path;

use slim_core::checkpoint::{self, Precision};
use slim_core::{Backbone, ModelConfig, init};

fn put(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("seed folder");
    std::fs::write(d.join(name), data).expect("seed written");
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    let model = slim_fuzz::model_dir();
    let read = |p: &str| std::fs::read(model.join(p)).expect("the committed model");
    put(&out, "manifest", "manifest.json", &read("manifest.json"));
    put(&out, "graph", "w250.onnx", &read("width-w250/model.onnx"));

    let mut config = ModelConfig::new(
        Backbone::Resnet20,
        1,
        8,
        vec!["a".into(), "b".into()],
        vec![0.5],
        vec![0.25],
    );
    config.widths = vec![slim_core::Width::FULL];
    let bytes = checkpoint::to_bytes_as(
        &config,
        &init::random_tensors(&config, 3),
        None,
        Precision::F16,
    )
    .expect("a checkpoint");
    put(&out, "checkpoint", "resnet20-f16.safetensors", &bytes);
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    put(&out, "checkpoint", "header-only.safetensors", &bytes[..header]);

    let img = image::RgbImage::from_fn(12, 9, |x, y| image::Rgb([(x * 20) as u8, (y * 25) as u8, 90]));
    for (name, format) in [
        ("a.png", image::ImageFormat::Png),
        ("a.jpg", image::ImageFormat::Jpeg),
        ("a.webp", image::ImageFormat::WebP),
        ("a.bmp", image::ImageFormat::Bmp),
    ] {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, format).expect("encoded");
        put(&out, "image", name, buf.get_ref());
    }
    let gray = image::GrayImage::from_fn(7, 5, |x, y| image::Luma([(x * y * 9) as u8]));
    let mut buf = std::io::Cursor::new(Vec::new());
    gray.write_to(&mut buf, image::ImageFormat::Png).expect("encoded");
    put(&out, "image", "gray.png", buf.get_ref());
    eprintln!("seeds written to {}", out.display());
}

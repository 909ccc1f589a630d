//! Preprocessing and answers on the real model: real Fashion-MNIST test images written as
//! PNG, JPEG, WebP and BMP (grayscale, RGB, RGBA, 16-bit), resizing and cropping, top-k
//! and embeddings, tract and ONNX Runtime agreeing on the top-1 of real images, and every
//! bad image refused with an error naming the file.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use slim_data::Split;
use slim_runtime::{Backend, SlimModel};

use slim_test_utils::{fashion_mnist as fashion_dir, model as fixture};

type Gray = ImageBuffer<Luma<u8>, Vec<u8>>;

/// The first `n` test images of Fashion-MNIST (28 x 28 gray) with their labels.
fn fashion(n: usize) -> Vec<(Gray, usize)> {
    let ds = slim_data::open(&fashion_dir(), Split::Test).unwrap();
    (0..n)
        .map(|i| {
            let img = ds.image(i).unwrap();
            assert_eq!(img.channels, 1);
            let buf = ImageBuffer::from_raw(img.width as u32, img.height as u32, img.data).unwrap();
            (buf, ds.label(i))
        })
        .collect()
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn input(model: &SlimModel, name: &str, bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    model.preprocess(Path::new(name), bytes, &mut out).unwrap();
    out
}

#[test]
fn every_format_and_color_type_gives_the_same_input() {
    let model = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let (gray, _) = fashion(1).remove(0);
    let png = input(
        &model,
        "a.png",
        &encode(DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png),
    );
    assert_eq!(png.len(), 28 * 28);
    // The input is the manifest's normalization of the pixels.
    let m = model.manifest();
    let want: Vec<f32> = gray
        .pixels()
        .map(|p| (p[0] as f32 / 255.0 - m.input.mean[0]) / m.input.std[0])
        .collect();
    assert_eq!(png, want);
    let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_fn(28, 28, |x, y| {
        let v = gray.get_pixel(x, y)[0];
        Rgb([v, v, v])
    }));
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(28, 28, |x, y| {
        let v = gray.get_pixel(x, y)[0];
        Rgba([v, v, v, 200])
    }));
    let gray16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(28, 28, |x, y| {
        Luma([gray.get_pixel(x, y)[0] as u16 * 257])
    }));
    for (name, bytes) in [
        ("rgb.png", encode(rgb.clone(), ImageFormat::Png)),
        ("rgba.png", encode(rgba.clone(), ImageFormat::Png)),
        ("gray16.png", encode(gray16, ImageFormat::Png)),
        ("rgba.webp", encode(rgba, ImageFormat::WebP)),
        ("gray.bmp", encode(rgb, ImageFormat::Bmp)),
    ] {
        assert_eq!(input(&model, name, &bytes), png, "{name}");
    }
    // JPEG is lossy: close, not equal.
    let jpeg = input(
        &model,
        "a.jpg",
        &encode(DynamicImage::ImageLuma8(gray), ImageFormat::Jpeg),
    );
    let mean_err = jpeg
        .iter()
        .zip(&png)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / png.len() as f32;
    assert!(mean_err < 0.1, "jpeg mean abs error {mean_err}");
}

#[test]
fn larger_images_are_resized_on_the_shorter_side_and_centre_cropped() {
    let model = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let (gray, _) = fashion(1).remove(0);
    let want = input(
        &model,
        "a.png",
        &encode(DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png),
    );
    // 28 high, 56 wide: the shorter side is already 28; the centre 28 columns are the image.
    let wide = ImageBuffer::from_fn(56, 28, |x, y| {
        if (14..42).contains(&x) {
            *gray.get_pixel(x - 14, y)
        } else {
            Luma([255u8])
        }
    });
    let got = input(
        &model,
        "wide.png",
        &encode(DynamicImage::ImageLuma8(wide), ImageFormat::Png),
    );
    assert_eq!(got, want);
    // 84 x 56 (three times 28 on the shorter side after scaling by 1/2): resized to 28 x 42.
    let big = ImageBuffer::from_fn(56, 84, |x, y| Luma([((x + y) % 256) as u8]));
    let got = input(
        &model,
        "big.png",
        &encode(DynamicImage::ImageLuma8(big), ImageFormat::Png),
    );
    assert_eq!(got.len(), 28 * 28);
}

#[test]
fn real_images_are_classified_with_names_and_embedded() {
    let model = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = fashion(40);
    let paths: Vec<PathBuf> = images
        .iter()
        .enumerate()
        .map(|(i, (img, _))| {
            let p = dir.path().join(format!("{i}.png"));
            img.save(&p).unwrap();
            p
        })
        .collect();
    let batch = model.preprocess_files(&paths).unwrap();
    assert_eq!(model.batch_of(&batch).unwrap(), 40);
    let top = model
        .classify(slim_test_utils::width(1.0), &batch, 5)
        .unwrap();
    let names = &model.manifest().class_names;
    let mut right = 0;
    for (classes, (_, label)) in top.iter().zip(&images) {
        assert_eq!(classes.len(), 5);
        assert!(classes.windows(2).all(|w| w[0].prob >= w[1].prob));
        assert!(classes.iter().all(|c| c.name == names[c.index]));
        let sum: f32 = classes.iter().map(|c| c.prob).sum();
        assert!(sum > 0.0 && sum <= 1.0 + 1e-5, "{sum}");
        right += (classes[0].index == *label) as usize;
    }
    // README: the exported width 1.0 scores 81.5% on the 10,000 test images.
    assert!(right >= 28, "top-1 {right}/40 on real images");
    let emb = model.embed(slim_test_utils::width(0.5), &batch).unwrap();
    assert_eq!(emb.len(), 40);
    assert!(
        emb.iter()
            .all(|e| e.len() == 32 && e.iter().all(|v| v.is_finite()))
    );
    assert_ne!(emb[0], emb[1]);
    // A partial batch is an error, not a panic.
    assert!(
        model
            .classify(slim_test_utils::width(1.0), &batch[..100], 5)
            .is_err()
    );
    assert!(model.embed(slim_test_utils::width(1.0), &[]).is_err());
}

#[cfg(feature = "ort")]
#[test]
fn tract_and_onnx_runtime_agree_on_the_top1_of_real_images() {
    let tract = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let ort = SlimModel::open(
        &fixture(),
        Backend::Ort {
            provider: slim_runtime::Provider::Cpu,
            fallback: false,
        },
    )
    .unwrap();
    let mut batch = Vec::new();
    for (img, _) in fashion(200) {
        let bytes = encode(DynamicImage::ImageLuma8(img), ImageFormat::Png);
        tract
            .preprocess(Path::new("x.png"), &bytes, &mut batch)
            .unwrap();
    }
    for w in tract.widths() {
        let (a, b) = (
            tract.classify(w, &batch, 1).unwrap(),
            ort.classify(w, &batch, 1).unwrap(),
        );
        let differ = a
            .iter()
            .zip(&b)
            .filter(|(p, q)| p[0].index != q[0].index)
            .count();
        assert_eq!(differ, 0, "width {w}: {differ} of 200 top-1 classes differ");
    }
}

/// A BMP header claiming `side x side` pixels, with a few bytes of data.
fn bmp_claiming(side: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&70u32.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&side.to_le_bytes());
    b.extend_from_slice(&side.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b.extend_from_slice(&[0; 16]);
    b
}

#[test]
fn bad_images_are_errors_naming_the_file() {
    let model = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (gray, _) = fashion(1).remove(0);
    let png = encode(DynamicImage::ImageLuma8(gray), ImageFormat::Png);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "truncated.png",
            png[..png.len() / 2].to_vec(),
            "cannot be decoded",
        ),
        ("bomb.bmp", bmp_claiming(100_000), "limit"),
        (
            "anim.gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            "cannot be decoded",
        ),
        (
            "notes.txt",
            b"hello, not an image".to_vec(),
            "is not a JPEG, PNG, WebP or BMP",
        ),
        ("empty.png", Vec::new(), "is not a JPEG, PNG, WebP or BMP"),
    ];
    for (name, bytes, why) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = model.preprocess_files(&[&p]).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(why), "{name}: {err}");
    }
    let missing = dir.path().join("missing.png");
    let err = model.preprocess_files(&[&missing]).unwrap_err().to_string();
    assert!(
        err.contains("missing.png") && err.contains("cannot be read"),
        "{err}"
    );
}

//! The color augmentations batched on the device (run here on the CPU device) against
//! the loader's CPU implementation, on the same drawn adjustments: RGB views with every
//! adjustment forced on, SimCLR's own probabilities, MoCo v3's two views, and gray images.

use rand::SeedableRng;
use rand::rngs::StdRng;
use slim_data::Image;
use slim_data::augment::{Augment, Color};
use tch::{Device, Kind, Tensor};

/// Smooth, colorful test images (gradients and a disc), `channels` of them.
fn image(i: usize, side: usize, channels: usize) -> Image {
    let mut data = Vec::with_capacity(side * side * channels);
    for y in 0..side {
        for x in 0..side {
            let disc = ((x as f32 - 20.0).powi(2) + (y as f32 - 30.0).powi(2)) < 150.0;
            for c in 0..channels {
                let v = (x * (c + 1) * 3 + y * (3 - c.min(2)) * 2 + i * 40) % 256;
                data.push(if disc { 255 - v as u8 / 2 } else { v as u8 });
            }
        }
    }
    Image::new(side, side, channels, data)
}

fn compare(augment: &Augment, channels: usize, n: usize) -> (f32, usize) {
    let side = augment.size;
    let mut rng = StdRng::seed_from_u64(42);
    let (mut cpu, mut raw, mut drawn) = (Vec::new(), Vec::new(), Vec::<Color>::new());
    for i in 0..n {
        let (geom, color) = augment.sample(&image(i, 80, channels), &mut rng);
        // CHW floats in [0, 1].
        let chw = |img: &Image| -> Vec<f32> {
            (0..channels)
                .flat_map(|c| (0..side * side).map(move |p| (c, p)))
                .map(|(c, p)| img.data[p * channels + c] as f32 / 255.0)
                .collect()
        };
        raw.extend(chw(&geom));
        cpu.extend(chw(&color.apply(geom)));
        drawn.push(color);
    }
    let shape = [n as i64, channels as i64, side as i64, side as i64];
    let x = Tensor::from_slice(&raw).view(shape).to_device(Device::Cpu);
    let mean = vec![0.0; channels];
    let std = vec![1.0; channels];
    let dev = slim_train::color::apply(&x, &drawn, &mean, &std);
    assert_eq!(dev.kind(), Kind::Float);
    let cpu = Tensor::from_slice(&cpu).view(shape);
    let worst = (dev - &cpu).abs().max().double_value(&[]) as f32;
    // The adjustments do change pixels, so agreement is not trivial.
    if drawn.iter().any(|c| !c.is_identity()) {
        let moved = (cpu - x).abs().max().double_value(&[]);
        assert!(moved > 0.05, "adjustments moved pixels by only {moved}");
    }
    let changed = drawn.iter().filter(|c| !c.is_identity()).count();
    (worst, changed)
}

#[test]
fn every_adjustment_matches_the_cpu_path() {
    let forced = Augment {
        jitter_p: 1.0,
        grayscale_p: 0.0,
        blur_p: 1.0,
        ..Augment::simclr(64)
    };
    let (worst, changed) = compare(&forced, 3, 24);
    assert_eq!(changed, 24);
    // The CPU path rounds its result to 8 bits (0.5/255 = 0.002).
    assert!(worst < 0.003, "device vs CPU: {worst}");
    let gray = Augment {
        grayscale_p: 1.0,
        ..forced
    };
    let (worst, _) = compare(&gray, 3, 8);
    assert!(worst < 0.003, "grayscale: {worst}");
}

#[test]
fn simclr_probabilities_and_gray_images_match_the_cpu_path() {
    let (worst, changed) = compare(&Augment::simclr(64), 3, 32);
    assert!(
        changed > 16 && changed < 32,
        "{changed} of 32 views adjusted"
    );
    assert!(worst < 0.003, "device vs CPU: {worst}");
    let (worst, changed) = compare(&Augment::simclr(28), 1, 16);
    assert!(changed > 0);
    assert!(worst < 0.003, "gray: {worst}");
}

#[test]
fn moco_v3_views_and_forced_solarization_match_the_cpu_path() {
    let solarized = Augment {
        solarize_p: 1.0,
        ..Augment::simclr(64)
    };
    let (worst, changed) = compare(&solarized, 3, 12);
    assert_eq!(changed, 12);
    assert!(worst < 0.003, "solarized: {worst}");
    for (v, view) in Augment::moco_v3(64).iter().enumerate() {
        let (worst, changed) = compare(view, 3, 24);
        assert!(changed > 12, "view {v}: {changed} of 24 adjusted");
        assert!(worst < 0.003, "view {v}: {worst}");
    }
    let (worst, _) = compare(&solarized, 1, 8);
    assert!(worst < 0.003, "gray, solarized: {worst}");
}

#[test]
fn normalization_follows_the_color() {
    let x = Tensor::full([2, 3, 4, 4], 0.5, (Kind::Float, Device::Cpu));
    let none = Color {
        jitter: None,
        grayscale: false,
        blur: None,
        solarize: false,
    };
    let y = slim_train::color::apply(
        &x,
        &[none.clone(), none],
        &[0.25, 0.5, 0.75],
        &[0.5, 0.25, 0.125],
    );
    let expect = Tensor::from_slice(&[0.5f32, 0.0, -2.0]).view([1, 3, 1, 1]);
    assert!((y - expect).abs().max().double_value(&[]) < 1e-6);
}

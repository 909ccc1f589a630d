//! The SimCLR / MoCo v2 / MoCo v3 training augmentations, as torchvision implements them:
//! random resized crop (10 attempts, then a centre crop), horizontal flip, color
//! jitter in random order, random grayscale, Gaussian blur and (MoCo v3's second view,
//! from BYOL) solarization. An [`Augment`] is a plain
//! configuration; [`Augment::apply`] draws everything from the RNG it is given, so a
//! seeded RNG reproduces the same view. [`Augment::sample`] splits a view into its
//! geometry (done on the CPU) and its drawn [`Color`] adjustments, which a trainer can
//! apply batched on its GPU instead.
//!
//! Channels are preserved (a grayscale image gets brightness and contrast jitter only,
//! and no random grayscale); converting to the model's channel count is the caller's
//! step (the [`loader`](crate::loader) does it through [`Normalize`](crate::transform::Normalize)).

use rand::Rng;

mod color;

pub use color::{Color, ColorJitter, Jitter, SOLARIZE_THRESHOLD};

use crate::Image;
use crate::transform::resize_to;

/// A training augmentation: `size x size` output, probabilities in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Output side, in pixels.
    pub size: usize,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f32, f32),
    /// Probability of a horizontal flip.
    pub flip_p: f32,
    /// Probability of applying [`Augment::jitter`].
    pub jitter_p: f32,
    pub jitter: ColorJitter,
    /// Probability of converting an RGB image to gray (kept as three equal channels).
    pub grayscale_p: f32,
    /// Probability of a Gaussian blur.
    pub blur_p: f32,
    /// Range of the blur's sigma, in pixels.
    pub blur_sigma: (f32, f32),
    /// Blur kernel side as a fraction of `size` (rounded to an odd number, at least 3).
    pub blur_kernel: f32,
    /// Probability of solarization (PIL's `ImageOps.solarize`: every value of at least
    /// 128 of 255 inverted).
    pub solarize_p: f32,
}

impl Augment {
    /// SimCLR's augmentation: crop scale `0.08..1`, ratio `3/4..4/3`, flip 0.5, jitter
    /// `(0.4, 0.4, 0.4, 0.1)` with p 0.8, grayscale 0.2, and Gaussian blur p 0.5 with
    /// sigma `0.1..2` and a kernel of 10% of the side, but only for `size >= 64` (SimCLR
    /// leaves blur out for CIFAR). For small inputs such as 28 x 28 Fashion-MNIST a
    /// gentler crop (`scale.0 = 0.2`) is usually better.
    pub fn simclr(size: usize) -> Augment {
        Augment {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter_p: 0.8,
            jitter: ColorJitter::strength(0.5),
            grayscale_p: 0.2,
            blur_p: if size >= 64 { 0.5 } else { 0.0 },
            blur_sigma: (0.1, 2.0),
            blur_kernel: 0.1,
            solarize_p: 0.0,
        }
    }

    /// MoCo v2's augmentation: as [`Augment::simclr`] with crop scale `0.2..1`.
    pub fn moco_v2(size: usize) -> Augment {
        Augment {
            scale: (0.2, 1.0),
            ..Augment::simclr(size)
        }
    }

    /// MoCo v3's two views (BYOL's recipe, as SlimCLR's `dataloader.py` builds it for
    /// `mocov3`): crop scale `0.2..1` (its `--crop-min` default), flip 0.5,
    /// jitter `(0.4, 0.4, 0.2, 0.1)` with p 0.8, grayscale 0.2; Gaussian blur on every
    /// first view and on a tenth of the second views, solarization on a fifth of the
    /// second views. Blur is left out below 64 pixels, as in [`Augment::simclr`].
    pub fn moco_v3(size: usize) -> [Augment; 2] {
        let blur = |p: f32| if size >= 64 { p } else { 0.0 };
        let first = Augment {
            scale: (0.2, 1.0),
            jitter: ColorJitter {
                saturation: 0.2,
                ..ColorJitter::strength(0.5)
            },
            blur_p: blur(1.0),
            ..Augment::simclr(size)
        };
        let second = Augment {
            blur_p: blur(0.1),
            solarize_p: 0.2,
            ..first.clone()
        };
        [first, second]
    }

    /// The linear evaluation's training augmentation (MoCo's and SlimCLR's `lincls`:
    /// torchvision's `RandomResizedCrop(size)` and `RandomHorizontalFlip()`): crop scale
    /// `0.08..1`, ratio `3/4..4/3`, flip 0.5, no color change.
    pub fn linear_eval(size: usize) -> Augment {
        Augment {
            jitter_p: 0.0,
            jitter: ColorJitter::strength(0.0),
            grayscale_p: 0.0,
            blur_p: 0.0,
            ..Augment::simclr(size)
        }
    }

    /// Checks the configuration, describing the first problem.
    pub fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{name} = {p} is not a probability"))
            }
        };
        let range = |name: &str, (lo, hi): (f32, f32)| {
            if lo > 0.0 && lo <= hi && hi.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} = ({lo}, {hi}) is not a positive range"))
            }
        };
        if self.size == 0 {
            return Err("size is 0".into());
        }
        range("scale", self.scale)?;
        range("ratio", self.ratio)?;
        range("blur_sigma", self.blur_sigma)?;
        prob("flip_p", self.flip_p)?;
        prob("jitter_p", self.jitter_p)?;
        prob("grayscale_p", self.grayscale_p)?;
        prob("blur_p", self.blur_p)?;
        prob("solarize_p", self.solarize_p)?;
        let j = &self.jitter;
        for (name, s) in [
            ("brightness", j.brightness),
            ("contrast", j.contrast),
            ("saturation", j.saturation),
        ] {
            if !(s >= 0.0 && s.is_finite()) {
                return Err(format!(
                    "jitter {name} = {s} is not a non-negative strength"
                ));
            }
        }
        if !(0.0..=0.5).contains(&j.hue) {
            return Err(format!("jitter hue = {} is outside [0, 0.5]", j.hue));
        }
        if !(self.blur_kernel >= 0.0 && self.blur_kernel.is_finite()) {
            return Err(format!("blur_kernel = {} is negative", self.blur_kernel));
        }
        Ok(())
    }

    /// One random view of `img`: `size x size`, with `img`'s channels.
    ///
    /// # Panics
    /// On an empty image or a configuration [`Augment::validate`] rejects.
    pub fn apply<R: Rng + ?Sized>(&self, img: &Image, rng: &mut R) -> Image {
        let (out, color) = self.sample(img, rng);
        color.apply(out)
    }

    /// The geometric part of one random view (crop, resize, flip) and the color
    /// adjustments drawn for it, to apply on the CPU ([`Color::apply`]) or batched on
    /// the training device. Draws from `rng` exactly as [`Augment::apply`] does.
    ///
    /// # Panics
    /// On an empty image or a configuration [`Augment::validate`] rejects.
    pub fn sample<R: Rng + ?Sized>(&self, img: &Image, rng: &mut R) -> (Image, Color) {
        assert!(img.height > 0 && img.width > 0, "empty image");
        let (top, left, h, w) = self.crop_box(img.height, img.width, rng);
        let mut out = resize_to(crop(img, top, left, h, w), self.size, self.size);
        if rng.random::<f32>() < self.flip_p {
            flip_horizontal(&mut out);
        }
        let jitter = rng.random::<f32>() < self.jitter_p;
        let grayscale = out.channels == 3 && rng.random::<f32>() < self.grayscale_p;
        let blur = rng.random::<f32>() < self.blur_p;
        let jitter = jitter.then(|| self.jitter.draw(rng));
        let blur = blur.then(|| {
            let sigma = rng.random_range(self.blur_sigma.0..=self.blur_sigma.1);
            let k = ((self.blur_kernel * self.size as f32).round() as usize).max(3);
            (k / 2, sigma)
        });
        // Drawn only when it can happen, so that the views of the augmentations without
        // it draw as they did before it existed.
        let solarize = self.solarize_p > 0.0 && rng.random::<f32>() < self.solarize_p;
        let color = Color {
            jitter,
            grayscale,
            blur,
            solarize,
        };
        (out, color)
    }

    /// torchvision's `RandomResizedCrop.get_params`: `(top, left, height, width)`.
    fn crop_box<R: Rng + ?Sized>(
        &self,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> (usize, usize, usize, usize) {
        let area = (height * width) as f64;
        let (r0, r1) = (self.ratio.0 as f64, self.ratio.1 as f64);
        let (s0, s1) = (self.scale.0 as f64, self.scale.1 as f64);
        for _ in 0..10 {
            let target = area * rng.random_range(s0..=s1);
            let aspect = rng.random_range(r0.ln()..=r1.ln()).exp();
            let w = (target * aspect).sqrt().round() as usize;
            let h = (target / aspect).sqrt().round() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return (top, left, h, w);
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (h, w) = if in_ratio < r0 {
            (
                ((width as f64 / r0).round() as usize).clamp(1, height),
                width,
            )
        } else if in_ratio > r1 {
            (
                height,
                ((height as f64 * r1).round() as usize).clamp(1, width),
            )
        } else {
            (height, width)
        };
        ((height - h) / 2, (width - w) / 2, h, w)
    }
}

fn crop(img: &Image, top: usize, left: usize, h: usize, w: usize) -> Image {
    let c = img.channels;
    let mut data = Vec::with_capacity(h * w * c);
    for y in top..top + h {
        let row = (y * img.width + left) * c;
        data.extend_from_slice(&img.data[row..row + w * c]);
    }
    Image::new(h, w, c, data)
}

fn flip_horizontal(img: &mut Image) {
    let c = img.channels;
    for row in img.data.chunks_exact_mut(img.width * c) {
        for x in 0..img.width / 2 {
            let (a, b) = (x * c, (img.width - 1 - x) * c);
            for k in 0..c {
                row.swap(a + k, b + k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::color::shift_hue;
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn noise(h: usize, w: usize, c: usize, seed: u64) -> Image {
        let mut rng = StdRng::seed_from_u64(seed);
        Image::new(h, w, c, (0..h * w * c).map(|_| rng.random()).collect())
    }

    /// Everything off, crop the whole (square) image.
    fn plain(size: usize) -> Augment {
        Augment {
            scale: (1.0, 1.0),
            ratio: (1.0, 1.0),
            flip_p: 0.0,
            jitter_p: 0.0,
            grayscale_p: 0.0,
            blur_p: 0.0,
            ..Augment::simclr(size)
        }
    }

    #[test]
    fn the_linear_evaluation_view_crops_and_flips_but_never_changes_color() {
        let img = noise(20, 24, 3, 1);
        let aug = Augment::linear_eval(16);
        assert_eq!(aug.validate(), Ok(()));
        let mut rng = StdRng::seed_from_u64(3);
        let mut geometry = std::collections::HashSet::new();
        for _ in 0..50 {
            let (view, color) = aug.sample(&img, &mut rng);
            assert!(color.is_identity(), "{color:?}");
            assert_eq!((view.height, view.width, view.channels), (16, 16, 3));
            geometry.insert(view.data);
        }
        assert!(
            geometry.len() > 40,
            "only {} distinct crops",
            geometry.len()
        );
    }

    #[test]
    fn seeded_views_repeat_and_have_the_output_size() {
        let img = noise(20, 24, 3, 1);
        let aug = Augment::moco_v2(16);
        let view = |seed| aug.apply(&img, &mut StdRng::seed_from_u64(seed));
        assert_eq!(view(7), view(7));
        assert_ne!(view(7), view(8));
        let v = view(7);
        assert_eq!((v.height, v.width, v.channels), (16, 16, 3));
        let gray = Augment::simclr(64).apply(&noise(28, 28, 1, 2), &mut StdRng::seed_from_u64(3));
        assert_eq!((gray.height, gray.width, gray.channels), (64, 64, 1));
    }

    #[test]
    fn presets_follow_the_papers() {
        assert!(Augment::simclr(32).validate().is_ok());
        assert_eq!(Augment::simclr(32).blur_p, 0.0);
        assert_eq!(Augment::simclr(224).blur_p, 0.5);
        assert_eq!(Augment::moco_v2(224).scale, (0.2, 1.0));
        assert_eq!(Augment::simclr(32).jitter, ColorJitter::strength(0.5));
        let bad = Augment {
            flip_p: 1.5,
            ..Augment::simclr(32)
        };
        assert!(bad.validate().unwrap_err().contains("flip_p"));
    }

    #[test]
    fn moco_v3_blurs_the_first_view_and_solarizes_some_second_views() {
        let [first, second] = Augment::moco_v3(224);
        assert!(first.validate().is_ok() && second.validate().is_ok());
        assert_eq!((first.blur_p, first.solarize_p), (1.0, 0.0));
        assert_eq!((second.blur_p, second.solarize_p), (0.1, 0.2));
        assert_eq!(first.jitter.saturation, 0.2);
        assert_eq!(first.scale, (0.2, 1.0));
        // Below 64 pixels no blur, as SimCLR on CIFAR; solarization stays.
        let [small1, small2] = Augment::moco_v3(32);
        assert_eq!(
            (small1.blur_p, small2.blur_p, small2.solarize_p),
            (0.0, 0.0, 0.2)
        );
        // The drawn rates, over many views of a small image.
        let img = noise(40, 40, 3, 11);
        let mut rng = StdRng::seed_from_u64(12);
        let n = 4000;
        let (mut blurred, mut solarized) = ([0usize; 2], [0usize; 2]);
        for _ in 0..n {
            for (v, aug) in [&first, &second].into_iter().enumerate() {
                let (_, color) = Augment {
                    size: 8,
                    ..aug.clone()
                }
                .sample(&img, &mut rng);
                blurred[v] += color.blur.is_some() as usize;
                solarized[v] += color.solarize as usize;
            }
        }
        let rate = |k: usize| k as f64 / n as f64;
        assert_eq!((blurred[0], solarized[0]), (n, 0));
        assert!(
            (rate(blurred[1]) - 0.1).abs() < 0.02,
            "{}",
            rate(blurred[1])
        );
        assert!(
            (rate(solarized[1]) - 0.2).abs() < 0.02,
            "{}",
            rate(solarized[1])
        );
    }

    #[test]
    fn solarization_inverts_values_from_128_up_as_pil() {
        let img = Image::new(1, 6, 1, vec![0, 100, 127, 128, 200, 255]);
        let aug = Augment {
            solarize_p: 1.0,
            ..plain(6)
        };
        let aug = Augment {
            size: 6,
            scale: (1.0, 1.0),
            ratio: (6.0, 6.0),
            ..aug
        };
        let out = aug.apply(&img, &mut StdRng::seed_from_u64(0));
        // PIL's ImageOps.solarize(threshold=128): v < 128 ? v : 255 - v.
        assert_eq!((out.height, out.width), (6, 6));
        assert_eq!(&out.data[..6], &[0, 100, 127, 127, 55, 0]);
    }

    #[test]
    fn flip_mirrors_rows() {
        let img = noise(8, 8, 3, 4);
        let aug = Augment {
            flip_p: 1.0,
            ..plain(8)
        };
        let out = aug.apply(&img, &mut StdRng::seed_from_u64(0));
        for y in 0..8 {
            for x in 0..8 {
                let a = (y * 8 + x) * 3;
                let b = (y * 8 + 7 - x) * 3;
                assert_eq!(out.data[a..a + 3], img.data[b..b + 3]);
            }
        }
        assert_eq!(plain(8).apply(&img, &mut StdRng::seed_from_u64(0)), img);
    }

    #[test]
    fn random_grayscale_equalises_channels() {
        let aug = Augment {
            grayscale_p: 1.0,
            ..plain(8)
        };
        let out = aug.apply(&noise(8, 8, 3, 5), &mut StdRng::seed_from_u64(0));
        assert_eq!(out.channels, 3);
        assert!(
            out.data
                .chunks_exact(3)
                .all(|p| p[0] == p[1] && p[1] == p[2])
        );
    }

    #[test]
    fn crops_respect_scale_and_ratio_or_fall_back_to_the_centre() {
        let aug = Augment {
            scale: (0.2, 0.5),
            ..Augment::simclr(8)
        };
        let mut rng = StdRng::seed_from_u64(6);
        let mut areas = Vec::new();
        for _ in 0..2000 {
            let (top, left, h, w) = aug.crop_box(100, 120, &mut rng);
            assert!(top + h <= 100 && left + w <= 120);
            let frac = (h * w) as f64 / 12000.0;
            assert!((0.19..=0.51).contains(&frac), "{frac}");
            let ratio = w as f64 / h as f64;
            assert!((0.72..=1.36).contains(&ratio), "{ratio}");
            areas.push(frac);
        }
        let mean = areas.iter().sum::<f64>() / areas.len() as f64;
        assert!((mean - 0.35).abs() < 0.02, "{mean}");
        // A 1:1 crop of the whole area never fits a 10 x 20 image: centre crop.
        let (top, left, h, w) = plain(8).crop_box(10, 20, &mut rng);
        assert_eq!((top, left, h, w), (0, 5, 10, 10));
    }

    #[test]
    fn zero_strength_jitter_is_the_identity() {
        let aug = Augment {
            jitter_p: 1.0,
            jitter: ColorJitter::strength(0.0),
            ..plain(8)
        };
        for c in [1, 3] {
            let img = noise(8, 8, c, 7);
            assert_eq!(aug.apply(&img, &mut StdRng::seed_from_u64(1)), img);
        }
    }

    #[test]
    fn jitter_changes_color_and_gray_keeps_one_channel() {
        let aug = Augment {
            jitter_p: 1.0,
            jitter: ColorJitter::strength(2.0),
            ..plain(8)
        };
        let img = noise(8, 8, 3, 8);
        assert_ne!(aug.apply(&img, &mut StdRng::seed_from_u64(2)), img);
        let gray = noise(8, 8, 1, 9);
        let out = aug.apply(&gray, &mut StdRng::seed_from_u64(2));
        assert_eq!(out.channels, 1);
        assert_ne!(out, gray);
        // A pure hue shift of a third of a turn maps red to green.
        let mut p = [1.0, 0.0, 0.0];
        shift_hue(&mut p, 1.0 / 3.0);
        assert!(
            (p[0] - 0.0).abs() < 1e-5 && (p[1] - 1.0).abs() < 1e-5,
            "{p:?}"
        );
    }

    #[test]
    fn blur_smooths() {
        let data = (0..64 * 64).map(|i| if (i / 64 + i % 64) % 2 == 0 { 0 } else { 255 });
        let img = Image::new(64, 64, 1, data.collect());
        let aug = Augment {
            blur_p: 1.0,
            blur_sigma: (1.5, 2.0),
            ..plain(64)
        };
        let out = aug.apply(&img, &mut StdRng::seed_from_u64(3));
        assert!(
            out.data.iter().all(|&v| (100..=155).contains(&v)),
            "{:?}",
            &out.data[..8]
        );
    }
}

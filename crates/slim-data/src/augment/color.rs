//! The color stage of an augmentation: torchvision's color jitter (in random order),
//! random grayscale, Gaussian blur and solarization, drawn once per view ([`Color`]) and applied on the
//! CPU here or batched on a GPU by a trainer.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::Image;

/// Color jitter strengths, as torchvision's `ColorJitter(brightness, contrast,
/// saturation, hue)`: brightness, contrast and saturation factors are drawn from
/// `[max(0, 1 - s), 1 + s]`, the hue shift from `[-hue, hue]` (`hue <= 0.5`). A zero
/// strength leaves that adjustment out.
#[derive(Clone, Debug, PartialEq)]
pub struct ColorJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl ColorJitter {
    /// SimCLR's jitter of strength `s`: `(0.8 s, 0.8 s, 0.8 s, 0.2 s)`; `s = 0.5` gives
    /// the CIFAR / MoCo v2 values `(0.4, 0.4, 0.4, 0.1)`.
    pub fn strength(s: f32) -> ColorJitter {
        ColorJitter {
            brightness: 0.8 * s,
            contrast: 0.8 * s,
            saturation: 0.8 * s,
            hue: 0.2 * s,
        }
    }

    /// Draws the order of the four adjustments and their factors, as torchvision does.
    pub(super) fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Jitter {
        let mut order = [0, 1, 2, 3];
        order.shuffle(rng);
        let mut factor = |s: f32| (s > 0.0).then(|| rng.random_range((1.0 - s).max(0.0)..=1.0 + s));
        let brightness = factor(self.brightness);
        let contrast = factor(self.contrast);
        let saturation = factor(self.saturation);
        let hue = (self.hue > 0.0).then(|| rng.random_range(-self.hue..=self.hue));
        Jitter {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        }
    }
}

/// One view's drawn color jitter: the order of the adjustments (0 brightness,
/// 1 contrast, 2 saturation, 3 hue) and each factor (`None`: left out).
#[derive(Clone, Debug, PartialEq)]
pub struct Jitter {
    pub order: [usize; 4],
    pub brightness: Option<f32>,
    pub contrast: Option<f32>,
    pub saturation: Option<f32>,
    /// Hue shift in turns.
    pub hue: Option<f32>,
}

/// The color adjustments drawn for one view, in the order they apply: jitter, then
/// grayscale, then blur, then solarization. Pixels are floats in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Color {
    pub jitter: Option<Jitter>,
    /// Convert RGB to gray (kept as three equal channels, Rec. 601 luma).
    pub grayscale: bool,
    /// Gaussian blur `(radius, sigma)`: kernel `2 radius + 1`, reflect padding.
    pub blur: Option<(usize, f32)>,
    /// Invert every value of at least [`SOLARIZE_THRESHOLD`].
    pub solarize: bool,
}

/// PIL's `ImageOps.solarize` threshold, 128 of 255, on `[0, 1]` pixels.
pub const SOLARIZE_THRESHOLD: f32 = 128.0 / 255.0;

impl Color {
    pub fn is_identity(&self) -> bool {
        self.jitter.is_none() && !self.grayscale && self.blur.is_none() && !self.solarize
    }

    /// Applies the adjustments to `img` on the CPU.
    pub fn apply(&self, mut img: Image) -> Image {
        if self.is_identity() {
            return img;
        }
        let c = img.channels;
        let mut px: Vec<f32> = img.data.iter().map(|&v| v as f32 / 255.0).collect();
        if let Some(j) = &self.jitter {
            j.apply(&mut px, c);
        }
        if self.grayscale {
            for p in px.chunks_exact_mut(3) {
                let l = luma(p);
                p.fill(l);
            }
        }
        if let Some((radius, sigma)) = self.blur {
            gaussian_blur(&mut px, img.height, img.width, c, radius, sigma);
        }
        if self.solarize {
            px.iter_mut()
                .filter(|v| **v >= SOLARIZE_THRESHOLD)
                .for_each(|v| *v = 1.0 - *v);
        }
        for (o, v) in img.data.iter_mut().zip(px) {
            *o = (v * 255.0).round().clamp(0.0, 255.0) as u8;
        }
        img
    }
}

impl Jitter {
    /// Applies the adjustments in their order to `px` (HWC floats in `[0, 1]`); a gray
    /// image (`c == 1`) gets brightness and contrast only.
    fn apply(&self, px: &mut [f32], c: usize) {
        for op in self.order {
            match op {
                0 => {
                    if let Some(b) = self.brightness {
                        px.iter_mut().for_each(|v| *v = (*v * b).clamp(0.0, 1.0));
                    }
                }
                1 => {
                    if let Some(f) = self.contrast {
                        let mean = if c == 1 {
                            px.iter().sum::<f32>() / px.len() as f32
                        } else {
                            px.chunks_exact(3).map(luma).sum::<f32>() / (px.len() / 3) as f32
                        };
                        px.iter_mut().for_each(|v| *v = blend(*v, mean, f));
                    }
                }
                2 => {
                    if let (Some(f), 3) = (self.saturation, c) {
                        for p in px.chunks_exact_mut(3) {
                            let l = luma(p);
                            p.iter_mut().for_each(|v| *v = blend(*v, l, f));
                        }
                    }
                }
                _ => {
                    if let (Some(h), 3) = (self.hue, c) {
                        px.chunks_exact_mut(3).for_each(|p| shift_hue(p, h));
                    }
                }
            }
        }
    }
}

/// `f * v + (1 - f) * other`, clamped to `[0, 1]`.
fn blend(v: f32, other: f32, f: f32) -> f32 {
    (f * v + (1.0 - f) * other).clamp(0.0, 1.0)
}

/// Rec. 601 luma, as torchvision's `rgb_to_grayscale`.
fn luma(p: &[f32]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Rotates the hue of one RGB pixel by `shift` turns (through HSV).
pub(super) fn shift_hue(p: &mut [f32], shift: f32) {
    let (r, g, b) = (p[0], p[1], p[2]);
    let max = r.max(g).max(b);
    let delta = max - r.min(g).min(b);
    if delta <= 0.0 {
        return; // gray: no hue
    }
    let s = delta / max;
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    } / 6.0;
    let h6 = (h + shift).rem_euclid(1.0) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let v = max;
    let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let rgb = match i as u32 % 6 {
        0 => [v, t, pp],
        1 => [q, v, pp],
        2 => [pp, v, t],
        3 => [pp, q, v],
        4 => [t, pp, v],
        _ => [v, pp, q],
    };
    p.copy_from_slice(&rgb);
}

/// Mirrors index `i` into `0..n` (reflect padding without repeating the edge).
fn reflect(mut i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    loop {
        if i < 0 {
            i = -i;
        } else if i >= n {
            i = 2 * (n - 1) - i;
        } else {
            return i as usize;
        }
    }
}

/// Separable Gaussian blur of an HWC float image, kernel `2 radius + 1`, reflect padding
/// (as torchvision's `gaussian_blur`).
fn gaussian_blur(px: &mut [f32], h: usize, w: usize, c: usize, radius: usize, sigma: f32) {
    let r = radius as isize;
    let mut kernel: Vec<f32> = (-r..=r)
        .map(|x| (-0.5 * (x as f32 / sigma).powi(2)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let k = kernel.len();
    // taps(n)[i * k + j]: the source of tap j for output i along an axis of length n.
    let taps = |n: usize| -> Vec<usize> {
        (0..n as isize)
            .flat_map(|i| (-r..=r).map(move |d| reflect(i + d, n)))
            .collect()
    };
    let (cols, rows) = (taps(w), taps(h));
    let mut tmp = vec![0.0f32; px.len()];
    for y in 0..h {
        for x in 0..w {
            let src = &cols[x * k..(x + 1) * k];
            for ch in 0..c {
                tmp[(y * w + x) * c + ch] = (kernel.iter().zip(src))
                    .map(|(wt, &sx)| wt * px[(y * w + sx) * c + ch])
                    .sum();
            }
        }
    }
    for y in 0..h {
        let src = &rows[y * k..(y + 1) * k];
        for x in 0..w {
            for ch in 0..c {
                px[(y * w + x) * c + ch] = (kernel.iter().zip(src))
                    .map(|(wt, &sy)| wt * tmp[(sy * w + x) * c + ch])
                    .sum();
            }
        }
    }
}

//! The contrastive color augmentations (jitter in its drawn order, grayscale, Gaussian
//! blur, solarization) applied batched on the training device, from the adjustments the loader drew on the
//! CPU ([`slim_data::augment::Color`]); the same arithmetic as the CPU path
//! ([`Color::apply`]), without its rounding to 8 bits. Each adjustment runs once per
//! batch on the samples that drew it.

use slim_data::augment::{Color, Jitter, SOLARIZE_THRESHOLD};
use tch::{Device, Kind, Tensor};

/// `x` `[N, C, H, W]` (pixels in `[0, 1]`) with `color[i]` applied to sample `i`, then
/// normalized with `mean` and `std` per channel.
///
/// # Panics
/// If `color` does not hold one entry per sample or `mean` / `std` one per channel.
pub fn apply(x: &Tensor, color: &[Color], mean: &[f32], std: &[f32]) -> Tensor {
    let (n, c) = (x.size()[0] as usize, x.size()[1] as usize);
    assert_eq!(color.len(), n, "one color adjustment per sample");
    assert!(
        mean.len() == c && std.len() == c,
        "mean and std per channel"
    );
    let device = x.device();
    let mut x = x.to_kind(Kind::Float);
    let pick = |f: &dyn Fn(&Color) -> Option<f32>| -> (Vec<i64>, Vec<f32>) {
        color
            .iter()
            .enumerate()
            .filter_map(|(i, col)| f(col).map(|v| (i as i64, v)))
            .unzip()
    };
    for step in 0..4 {
        for op in 0..4 {
            if c == 1 && op >= 2 {
                continue; // saturation and hue need color
            }
            let factor = |j: &Jitter| match op {
                0 => j.brightness,
                1 => j.contrast,
                2 => j.saturation,
                _ => j.hue,
            };
            let (idx, f) = pick(&|col| {
                col.jitter
                    .as_ref()
                    .filter(|j| j.order[step] == op)
                    .and_then(factor)
            });
            x = on_subset(&x, &idx, device, |sub| {
                let f = Tensor::from_slice(&f).to_device(device).view([-1, 1, 1, 1]);
                match op {
                    0 => (sub * &f).clamp(0.0, 1.0),
                    1 => {
                        let gray = if c == 1 {
                            sub.shallow_clone()
                        } else {
                            luma(sub)
                        };
                        let m = gray.mean_dim([1i64, 2, 3].as_slice(), true, None);
                        blend(sub, &m, &f)
                    }
                    2 => blend(sub, &luma(sub), &f),
                    _ => shift_hue(sub, &f),
                }
            });
        }
    }
    if c == 3 {
        let (idx, _) = pick(&|col| col.grayscale.then_some(0.0));
        x = on_subset(&x, &idx, device, |sub| {
            luma(sub).expand([-1, 3, -1, -1], false)
        });
    }
    let blurred: Vec<(i64, usize, f32)> = color
        .iter()
        .enumerate()
        .filter_map(|(i, col)| col.blur.map(|(r, s)| (i as i64, r, s)))
        .collect();
    let mut radii: Vec<usize> = blurred.iter().map(|b| b.1).collect();
    radii.sort_unstable();
    radii.dedup();
    for radius in radii {
        let (idx, sigma): (Vec<i64>, Vec<f32>) = blurred
            .iter()
            .filter(|b| b.1 == radius)
            .map(|b| (b.0, b.2))
            .unzip();
        x = on_subset(&x, &idx, device, |sub| blur(sub, radius, &sigma));
    }
    let (idx, _) = pick(&|col| col.solarize.then_some(0.0));
    x = on_subset(&x, &idx, device, |sub| {
        let inverted: Tensor = 1.0 - sub;
        inverted.where_self(&sub.ge(f64::from(SOLARIZE_THRESHOLD)), sub)
    });
    let m = Tensor::from_slice(mean)
        .to_device(device)
        .view([1, -1, 1, 1]);
    let s = Tensor::from_slice(std)
        .to_device(device)
        .view([1, -1, 1, 1]);
    (x - m) / s
}

/// `x` with `f` applied to the samples `idx` (unchanged when `idx` is empty).
fn on_subset(x: &Tensor, idx: &[i64], device: Device, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    if idx.is_empty() {
        return x.shallow_clone();
    }
    let idx = Tensor::from_slice(idx).to_device(device);
    let sub = f(&x.index_select(0, &idx));
    x.index_copy(0, &idx, &sub)
}

/// Rec. 601 luma `[M, 1, H, W]` of RGB `[M, 3, H, W]`.
fn luma(x: &Tensor) -> Tensor {
    let ch = |i| x.narrow(1, i, 1);
    ch(0) * 0.299 + ch(1) * 0.587 + ch(2) * 0.114
}

/// `f x + (1 - f) other`, clamped to `[0, 1]`.
fn blend(x: &Tensor, other: &Tensor, f: &Tensor) -> Tensor {
    let rest: Tensor = 1.0 - f;
    (x * f + other * rest).clamp(0.0, 1.0)
}

/// Rotates every pixel's hue by `shift` turns (per sample, `[M, 1, 1, 1]`) through HSV;
/// gray pixels keep theirs.
fn shift_hue(x: &Tensor, shift: &Tensor) -> Tensor {
    let (r, g, b) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1), x.narrow(1, 2, 1));
    let max = r.maximum(&g).maximum(&b);
    let min = r.minimum(&g).minimum(&b);
    let delta = &max - &min;
    let s = &delta / &max;
    let rem = |v: Tensor, m: f64| &v - (&v / m).floor() * m;
    let hr = rem((&g - &b) / &delta, 6.0);
    let hg = (&b - &r) / &delta + 2.0;
    let hb = (&r - &g) / &delta + 4.0;
    let h = hr.where_self(&max.eq_tensor(&r), &hg.where_self(&max.eq_tensor(&g), &hb)) / 6.0;
    let h6 = rem(h + shift, 1.0) * 6.0;
    let i = h6.floor();
    let f = &h6 - &i;
    let v = &max;
    let p = v * (1.0 - &s);
    let q = v * (1.0 - &s * &f);
    let t = v * (1.0 - &s * (1.0 - &f));
    // Sector i of the hue circle: (r, g, b) = [v,t,p], [q,v,p], [p,v,t], [p,q,v], [t,p,v], [v,p,q].
    let sector = |choices: [&Tensor; 6]| {
        let mut out = choices[5].shallow_clone();
        for k in (0..5).rev() {
            out = choices[k].where_self(&i.eq(k as f64), &out);
        }
        out
    };
    let rgb = Tensor::cat(
        &[
            sector([v, &q, &p, &p, &t, v]),
            sector([&t, v, v, &q, &p, &p]),
            sector([&p, &p, &t, v, v, &q]),
        ],
        1,
    );
    rgb.where_self(&delta.gt(0.0), x)
}

/// Separable Gaussian blur with kernel `2 radius + 1` and one sigma per sample, reflect
/// padding.
fn blur(x: &Tensor, radius: usize, sigma: &[f32]) -> Tensor {
    let (m, c, h, w) = x.size4().expect("NCHW");
    let r = radius as i64;
    let k = 2 * r + 1;
    let kernels: Vec<f32> = sigma
        .iter()
        .flat_map(|&s| {
            let raw: Vec<f32> = (-r..=r)
                .map(|d| (-0.5 * (d as f32 / s).powi(2)).exp())
                .collect();
            let total: f32 = raw.iter().sum();
            raw.into_iter().map(move |v| v / total)
        })
        .collect();
    // One kernel per (sample, channel) for a grouped convolution over all of them.
    let kernel = Tensor::from_slice(&kernels)
        .to_device(x.device())
        .view([m, 1, k])
        .expand([m, c, k], false)
        .reshape([m * c, 1, 1, k]);
    let flat = x.reshape([1, m * c, h, w]);
    let across = flat.reflection_pad2d([r, r, 0, 0]).conv2d(
        &kernel,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        m * c,
    );
    let down = across.reflection_pad2d([0, 0, r, r]).conv2d(
        &kernel.view([m * c, 1, k, 1]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        m * c,
    );
    down.reshape([m, c, h, w])
}

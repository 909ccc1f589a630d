//! The one evaluation-time preprocessing every consumer shares (training's evaluation,
//! the runtime, the benchmark): convert channels, resize the shorter side to the model's
//! input size (bilinear), centre-crop a square, scale to [0, 1] and normalize per channel,
//! laid out channel-major (CHW) as the graphs expect.

use image::imageops::{FilterType, resize};
use image::{ImageBuffer, Luma, Rgb};

use crate::Image;

/// How to turn an image into a model input.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub size: usize,
    pub channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl From<&slim_core::Preprocessing> for Normalize {
    /// The evaluation preprocessing of a model (its checkpoint config's or its manifest's).
    fn from(p: &slim_core::Preprocessing) -> Normalize {
        Normalize {
            size: p.image_size,
            channels: p.in_channels,
            mean: p.mean.clone(),
            std: p.std.clone(),
        }
    }
}

/// Resizes `img` to `height x width` (bilinear, antialiased when shrinking).
pub(crate) fn resize_to(img: Image, height: usize, width: usize) -> Image {
    if img.height == height && img.width == width {
        return img;
    }
    let (h, w, c) = (img.height as u32, img.width as u32, img.channels);
    let (nh, nw) = (height as u32, width as u32);
    let data: Vec<u8> = match c {
        1 => {
            let buf: ImageBuffer<Luma<u8>, _> =
                ImageBuffer::from_raw(w, h, img.data).expect("sized");
            resize(&buf, nw, nh, FilterType::Triangle).into_raw()
        }
        _ => {
            let buf: ImageBuffer<Rgb<u8>, _> =
                ImageBuffer::from_raw(w, h, img.data).expect("sized");
            resize(&buf, nw, nh, FilterType::Triangle).into_raw()
        }
    };
    Image::new(height, width, c, data)
}

/// What `img` is when it is not an input of `input` as it stands (another size or channel
/// count), e.g. `10x10 with 1 channel(s), but the model's input is 12x12 with 1
/// channel(s)`; `None` when it is one. For a consumer that refuses such images unless told
/// to convert them (as [`Normalize`] does: channels, shorter side resized, centre crop).
pub fn mismatch(img: &Image, input: &slim_core::Preprocessing) -> Option<String> {
    let (c, s) = (input.in_channels, input.image_size);
    (img.channels != c || img.height != s || img.width != s).then(|| {
        format!(
            "{}x{} with {} channel(s), but the model's input is {s}x{s} with {c} channel(s)",
            img.height, img.width, img.channels
        )
    })
}

/// Resizes the shorter side of `img` to `size` and centre-crops `size x size`.
pub fn resize_center_crop(img: Image, size: usize) -> Image {
    if img.height == size && img.width == size {
        return img;
    }
    let scale = size as f64 / img.height.min(img.width) as f64;
    let nh = ((img.height as f64 * scale).round() as usize).max(size);
    let nw = ((img.width as f64 * scale).round() as usize).max(size);
    let c = img.channels;
    let resized = resize_to(img, nh, nw).data;
    let (top, left) = ((nh - size) / 2, (nw - size) / 2);
    let mut out = Vec::with_capacity(size * size * c);
    for y in top..top + size {
        let row = (y * nw + left) * c;
        out.extend_from_slice(&resized[row..row + size * c]);
    }
    Image::new(size, size, c, out)
}

impl Normalize {
    /// Appends the CHW float input of `img` to `out`.
    pub fn apply(&self, img: Image, out: &mut Vec<f32>) {
        self.write(img, out, true);
    }

    /// As [`Normalize::apply`] but stopping at pixels in `[0, 1]`: no mean and std (for
    /// a consumer that adjusts colors first, then normalizes).
    pub fn apply_unit(&self, img: Image, out: &mut Vec<f32>) {
        self.write(img, out, false);
    }

    fn write(&self, img: Image, out: &mut Vec<f32>, standardise: bool) {
        let img = resize_center_crop(img.to_channels(self.channels), self.size);
        let hw = self.size * self.size;
        let c = self.channels;
        for ch in 0..c {
            let (m, s) = match standardise {
                true => (self.mean[ch], self.std[ch]),
                false => (0.0, 1.0),
            };
            out.extend((0..hw).map(|p| (img.data[p * c + ch] as f32 / 255.0 - m) / s));
        }
    }
}

/// Per-channel mean and standard deviation of pixels in [0, 1] over up to `n` images of
/// `ds` (evenly spaced), after conversion to `channels` and resizing to `size`: the
/// normalization a model trained on `ds` should use. Undecodable images are passed over.
pub fn channel_stats(
    ds: &dyn crate::Dataset,
    channels: usize,
    size: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let n = n.min(ds.len()).max(1);
    let (mut sum, mut sq, mut count) = (vec![0f64; channels], vec![0f64; channels], 0f64);
    for k in 0..n {
        let Ok(img) = ds.image(k * ds.len() / n) else {
            continue;
        };
        let img = resize_center_crop(img.to_channels(channels), size);
        for px in img.data.chunks_exact(channels) {
            for (c, &v) in px.iter().enumerate() {
                let v = v as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        count += (size * size) as f64;
    }
    let count = count.max(1.0);
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, &m)| ((q / count - (m as f64).powi(2)).max(1e-6)).sqrt() as f32)
        .collect();
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_channel_major() {
        let n = Normalize {
            size: 1,
            channels: 3,
            mean: vec![0.0, 0.5, 1.0],
            std: vec![1.0, 0.5, 0.25],
        };
        let mut out = Vec::new();
        n.apply(Image::new(1, 1, 3, vec![255, 255, 0]), &mut out);
        assert_eq!(out, vec![1.0, 1.0, -4.0]);
    }

    #[test]
    fn channel_stats_of_a_two_tone_dataset() {
        struct Two;
        impl crate::Dataset for Two {
            fn len(&self) -> usize {
                2
            }
            fn class_names(&self) -> &[String] {
                &[]
            }
            fn label(&self, _: usize) -> usize {
                0
            }
            fn image(&self, i: usize) -> Result<Image, crate::Error> {
                Ok(Image::new(2, 2, 1, vec![if i == 0 { 0 } else { 255 }; 4]))
            }
            fn describe(&self) -> String {
                "two".into()
            }
        }
        let (mean, std) = channel_stats(&Two, 3, 2, 10);
        assert_eq!(mean.len(), 3);
        assert!(mean.iter().all(|&m| (m - 0.5).abs() < 1e-6), "{mean:?}");
        assert!(std.iter().all(|&s| (s - 0.5).abs() < 1e-6), "{std:?}");
    }

    #[test]
    fn resizes_shorter_side_and_crops_centre() {
        // 4 x 8 image, left half 0, right half 200: the 2 x 2 centre crop of the 2 x 4
        // resize straddles the edge.
        let data = (0..4 * 8)
            .map(|i| if i % 8 < 4 { 0 } else { 200 })
            .collect();
        let out = resize_center_crop(Image::new(4, 8, 1, data), 2);
        assert_eq!((out.height, out.width), (2, 2));
        assert!(out.data[0] < 100 && out.data[1] > 100, "{:?}", out.data);
    }
}

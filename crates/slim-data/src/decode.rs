//! Decoding image bytes to 8-bit pixels, with bounds: a file whose header claims more
//! pixels than [`MAX_PIXELS`] or more memory than [`MAX_ALLOC`] is refused before any
//! allocation (decompression bombs), and every color type (grayscale, RGBA, 16-bit,
//! palette) is converted to 8-bit luma or RGB.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader, Limits};

use crate::Error;

/// Largest accepted image, in pixels (about 16k x 16k).
pub const MAX_PIXELS: u64 = 1 << 28;
/// Largest allocation a decoder may make.
pub const MAX_ALLOC: u64 = 1 << 30;

/// An 8-bit image, height x width x channels (interleaved).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Image {
    pub fn new(height: usize, width: usize, channels: usize, data: Vec<u8>) -> Image {
        assert_eq!(data.len(), height * width * channels);
        Image {
            height,
            width,
            channels,
            data,
        }
    }

    /// Converts to `channels` (1 or 3): RGB to gray with the Rec. 601 weights, gray to
    /// RGB by repeating.
    pub fn to_channels(self, channels: usize) -> Image {
        match (self.channels, channels) {
            (a, b) if a == b => self,
            (3, 1) => {
                let data = self
                    .data
                    .chunks_exact(3)
                    .map(|p| {
                        (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round()
                            as u8
                    })
                    .collect();
                Image::new(self.height, self.width, 1, data)
            }
            (1, 3) => {
                let data = self.data.iter().flat_map(|&v| [v, v, v]).collect();
                Image::new(self.height, self.width, 3, data)
            }
            (a, b) => panic!("unsupported channel conversion {a} -> {b}"),
        }
    }
}

/// Decodes `bytes` (JPEG, PNG, WebP or BMP, detected from the content); `path` names the
/// source in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Image, Error> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format().is_none() {
        return Err(Error::at(path, "is not a JPEG, PNG, WebP or BMP image"));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    let side = (MAX_PIXELS as f64).sqrt() as u32;
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::at(path, format!("cannot be decoded: {e}")))?;
    Ok(from_dynamic(img))
}

fn from_dynamic(img: DynamicImage) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let has_color = img.color().has_color();
    if has_color {
        Image::new(h, w, 3, img.into_rgb8().into_raw())
    } else {
        Image::new(h, w, 1, img.into_luma8().into_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, ImageFormat, Luma, Rgba};

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn rgba_and_16_bit_gray_convert_to_8_bit() {
        let rgba = ImageBuffer::from_fn(4, 3, |x, y| Rgba([x as u8 * 10, y as u8 * 20, 7, 128]));
        let img = decode(
            Path::new("a.png"),
            &encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        )
        .unwrap();
        assert_eq!((img.height, img.width, img.channels), (3, 4, 3));
        assert_eq!(&img.data[3 * 5..3 * 5 + 3], &[10, 20, 7]);
        let gray16 = ImageBuffer::from_fn(2, 2, |x, _| Luma([if x == 0 { 0u16 } else { 65535 }]));
        let img = decode(
            Path::new("b.png"),
            &encode(DynamicImage::ImageLuma16(gray16), ImageFormat::Png),
        )
        .unwrap();
        assert_eq!(img.channels, 1);
        assert_eq!(img.data, vec![0, 255, 0, 255]);
    }

    #[test]
    fn truncated_unknown_and_bomb_inputs_are_errors_naming_the_file() {
        let png = encode(
            DynamicImage::ImageLuma8(ImageBuffer::from_pixel(64, 64, Luma([9u8]))),
            ImageFormat::Png,
        );
        let err = decode(Path::new("cut.png"), &png[..png.len() / 2]).unwrap_err();
        assert!(err.to_string().contains("cut.png"), "{err}");
        let err = decode(Path::new("x.txt"), b"hello, not an image").unwrap_err();
        assert!(err.to_string().contains("x.txt"), "{err}");
        // A PNG header claiming 100000 x 100000 pixels.
        let mut bomb = encode(
            DynamicImage::ImageLuma8(ImageBuffer::from_pixel(1, 1, Luma([0u8]))),
            ImageFormat::Png,
        );
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let mut crc = flate2::Crc::new(); // keep the IHDR checksum valid
        crc.update(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let err = decode(Path::new("bomb.png"), &bomb)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bomb.png") && err.contains("limit"), "{err}");
    }

    #[test]
    fn channel_conversion() {
        let img = Image::new(1, 2, 3, vec![255, 255, 255, 0, 0, 0]).to_channels(1);
        assert_eq!(img.data, vec![255, 0]);
        assert_eq!(img.to_channels(3).data, vec![255, 255, 255, 0, 0, 0]);
    }
}

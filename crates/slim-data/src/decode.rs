//! Reading and decoding image files to 8-bit pixels, with bounds, for every reader (the
//! dataset readers, the runtime, the service): a file over [`MAX_FILE_BYTES`] is refused
//! after reading at most that much; a file whose header claims more pixels than
//! [`MAX_PIXELS`] or more memory than [`MAX_ALLOC`] is refused before any allocation
//! (decompression bombs); every color type (grayscale, RGBA, 16-bit, palette) is
//! converted to 8-bit luma or RGB, 8-bit alpha dropped in place so that the decoded
//! buffer is the peak.
//!
//! Policies: transparency is dropped, not composited (the color under a transparent
//! pixel is kept, as PIL's `convert("RGB")` does, which torchvision's loader uses); an
//! EXIF orientation (JPEG, PNG, WebP) is applied, unlike PIL's loader, so that a photo
//! from a phone is seen upright (a rotated image costs one more copy while it turns).

use std::io::{Cursor, Read};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::Error;

/// Largest image file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest accepted image, in pixels (about 16k x 16k).
pub const MAX_PIXELS: u64 = 1 << 28;
/// Largest allocation a decoder may make.
pub const MAX_ALLOC: u64 = 1 << 30;
/// Most pixels per byte of file an image of over [`BOMB_FLOOR_PIXELS`] may claim. No real
/// PNG or JPEG comes near it (deflate stops near 1032:1, and a JPEG spends at least two
/// bits on every 8x8 block: 256 pixels a byte); a header that claims more is truncated
/// or a decompression bomb, and decoding it would fill hundreds of MB from nothing (the
/// fuzzer found a 686-byte JPEG that took 10 s and 788 MB). A WebP or BMP of one flat
/// color could exceed it and is refused too.
pub const MAX_PIXELS_PER_BYTE: u64 = 4096;
/// Images up to this many pixels are never judged by [`MAX_PIXELS_PER_BYTE`].
pub const BOMB_FLOOR_PIXELS: u64 = 1 << 20;

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

/// Reads at most [`MAX_FILE_BYTES`] from `source`; `shown` names it in errors.
pub fn read_bounded(source: impl Read, shown: &Path) -> Result<Vec<u8>, Error> {
    slim_core::fsutil::read_at_most(source, MAX_FILE_BYTES)
        .map_err(|e| Error::at(shown, format!("cannot be read: {e}")))?
        .ok_or_else(|| {
            Error::at(
                shown,
                format!(
                    "is larger than {} MiB, more than an image file may be: refused",
                    MAX_FILE_BYTES >> 20
                ),
            )
        })
}

/// Reads the image file `path`, at most [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::at(path, format!("cannot be read: {e}")))?;
    read_bounded(file, path)
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
    let fail = |e: image::ImageError| Error::at(path, format!("cannot be decoded: {e}"));
    let mut decoder = reader.into_decoder().map_err(fail)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > BOMB_FLOOR_PIXELS && pixels > MAX_PIXELS_PER_BYTE * bytes.len() as u64 {
        return Err(Error::at(
            path,
            format!(
                "claims {w}x{h} pixels in {} bytes, more than {MAX_PIXELS_PER_BYTE} a byte \
                 that a real image can hold: truncated or a decompression bomb, refused",
                bytes.len()
            ),
        ));
    }
    if decoder.total_bytes() > MAX_ALLOC {
        return Err(Error::at(
            path,
            format!(
                "would take {} bytes decoded, over the {MAX_ALLOC} an image may: refused",
                decoder.total_bytes()
            ),
        ));
    }
    // A camera's EXIF orientation is applied, so the model sees what a viewer sees.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(fail)?;
    img.apply_orientation(orientation);
    Ok(from_dynamic(img))
}

fn from_dynamic(img: DynamicImage) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    match img {
        // Alpha dropped in the decoded buffer itself: no second full-size buffer.
        DynamicImage::ImageRgba8(b) => Image::new(h, w, 3, drop_alpha(b.into_raw(), 3)),
        DynamicImage::ImageLumaA8(b) => Image::new(h, w, 1, drop_alpha(b.into_raw(), 1)),
        img if img.color().has_color() => Image::new(h, w, 3, img.into_rgb8().into_raw()),
        img => Image::new(h, w, 1, img.into_luma8().into_raw()),
    }
}

/// Keeps the first `keep` of every `keep + 1` bytes (pixels with a trailing alpha),
/// moving them forward within `data`, and frees the rest.
fn drop_alpha(mut data: Vec<u8>, keep: usize) -> Vec<u8> {
    let n = data.len() / (keep + 1);
    for i in 0..n {
        // Writes at keep * i never pass the reads at (keep + 1) * i.
        data.copy_within((keep + 1) * i..(keep + 1) * i + keep, keep * i);
    }
    data.truncate(keep * n);
    data.shrink_to_fit();
    data
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

    /// A PNG of `w x h` gray pixels 0, 1, 2, ... with an EXIF orientation chunk.
    fn png_with_orientation(w: u32, h: u32, orientation: u16) -> Vec<u8> {
        let gray = ImageBuffer::from_fn(w, h, |x, y| Luma([(x + w * y) as u8]));
        let png = encode(DynamicImage::ImageLuma8(gray), ImageFormat::Png);
        // Big-endian TIFF: one IFD entry, tag 0x0112 (orientation), SHORT, count 1.
        let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend(orientation.to_be_bytes());
        exif.extend([0, 0, 0, 0, 0, 0]);
        let mut chunk = (exif.len() as u32).to_be_bytes().to_vec();
        let body: Vec<u8> = b"eXIf".iter().chain(&exif).copied().collect();
        chunk.extend(&body);
        chunk.extend(crc32(&body).to_be_bytes());
        // After the signature (8 bytes) and IHDR (25 bytes).
        let mut out = png[..33].to_vec();
        out.extend(chunk);
        out.extend(&png[33..]);
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn the_exif_orientation_is_applied() {
        // 3 wide, 2 high: 0 1 2 / 3 4 5. Orientation 6 turns it 90 degrees clockwise.
        let img = decode(Path::new("r.png"), &png_with_orientation(3, 2, 6)).unwrap();
        assert_eq!((img.height, img.width), (3, 2));
        assert_eq!(img.data, vec![3, 0, 4, 1, 5, 2]);
        let img = decode(Path::new("u.png"), &png_with_orientation(3, 2, 1)).unwrap();
        assert_eq!(
            (img.height, img.width, img.data),
            (2, 3, vec![0, 1, 2, 3, 4, 5])
        );
    }

    #[test]
    fn alpha_is_dropped_in_place_keeping_every_color() {
        assert_eq!(
            drop_alpha(vec![1, 2, 3, 9, 4, 5, 6, 9], 3),
            vec![1, 2, 3, 4, 5, 6]
        );
        assert_eq!(drop_alpha(vec![7, 0, 8, 0, 9, 0], 1), vec![7, 8, 9]);
        let gray_alpha = ImageBuffer::from_fn(3, 2, |x, y| image::LumaA([(x + 3 * y) as u8, 50]));
        let img = decode(
            Path::new("ga.png"),
            &encode(DynamicImage::ImageLumaA8(gray_alpha), ImageFormat::Png),
        )
        .unwrap();
        assert_eq!((img.channels, img.data), (1, vec![0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn a_file_larger_than_an_image_may_be_is_refused_after_reading_only_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.png");
        // Sparse: 3 GiB on paper, nothing on disk.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(3 << 30)
            .unwrap();
        let err = read_file(&big).unwrap_err().to_string();
        assert!(
            err.contains("big.png") && err.contains("larger than 64 MiB"),
            "{err}"
        );
        let small = dir.path().join("small.png");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_file(&small).unwrap(), b"12345");
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
    fn headers_claiming_more_pixels_than_their_bytes_hold_are_refused_before_decoding() {
        // Found by tools/fuzz.sh (image target): each took 10 s and 788 MB to decode.
        for (name, bytes) in [
            (
                "jpeg-claims-14348x13879-in-686-bytes.jpg",
                &include_bytes!("../tests/fuzz/jpeg-claims-14348x13879-in-686-bytes.jpg")[..],
            ),
            (
                "jpeg-claims-14355x13623-in-717-bytes.jpg",
                &include_bytes!("../tests/fuzz/jpeg-claims-14355x13623-in-717-bytes.jpg")[..],
            ),
        ] {
            let t = std::time::Instant::now();
            let err = decode(Path::new(name), bytes).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains("decompression bomb"),
                "{err}"
            );
            assert!(t.elapsed().as_secs() < 2, "refused before decoding");
        }
        // A flat 2048 x 2048 PNG, as compressed as deflate makes it, still decodes.
        let flat = encode(
            DynamicImage::ImageLuma8(ImageBuffer::from_pixel(2048, 2048, Luma([7u8]))),
            ImageFormat::Png,
        );
        assert!((2048 * 2048 / flat.len() as u64) < MAX_PIXELS_PER_BYTE);
        assert_eq!(decode(Path::new("flat.png"), &flat).unwrap().width, 2048);
    }

    #[test]
    fn channel_conversion() {
        let img = Image::new(1, 2, 3, vec![255, 255, 255, 0, 0, 0]).to_channels(1);
        assert_eq!(img.data, vec![255, 0]);
        assert_eq!(img.to_channels(3).data, vec![255, 255, 255, 0, 0, 0]);
    }
}

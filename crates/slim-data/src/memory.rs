//! A dataset held whole in memory: what the archive readers ([`crate::idx`],
//! [`crate::cifar`]) parse their files into.

use std::path::Path;

use crate::{Dataset, Error, Image, Split};

/// Same-sized 8-bit images stored back to back (HWC), with their labels.
pub struct InMemory {
    description: String,
    shape: (usize, usize, usize),
    pixels: Vec<u8>,
    labels: Vec<u16>,
    classes: Vec<String>,
}

impl InMemory {
    /// `format` names the reader for [`Dataset::describe`] (`"IDX"`); `path` is what the
    /// user opened, named by every error. `shape` is (height, width, channels).
    pub(crate) fn new(
        format: &str,
        path: &Path,
        split: Split,
        shape: (usize, usize, usize),
        pixels: Vec<u8>,
        labels: Vec<u16>,
        classes: Vec<String>,
    ) -> Result<InMemory, Error> {
        let (h, w, c) = shape;
        if pixels.len() != labels.len() * h * w * c {
            return Err(Error::at(
                path,
                format!(
                    "holds {} bytes of pixels for {} images of {h}x{w}x{c}",
                    pixels.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes.len()) {
            return Err(Error::at(
                path,
                format!("label {bad} is out of range for {} classes", classes.len()),
            ));
        }
        Ok(InMemory {
            description: format!(
                "{format} {} ({} split, {} images)",
                path.display(),
                split.name(),
                labels.len()
            ),
            shape,
            pixels,
            labels,
            classes,
        })
    }
}

impl Dataset for InMemory {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn class_names(&self) -> &[String] {
        &self.classes
    }
    fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }
    fn image(&self, i: usize) -> Result<Image, Error> {
        let (h, w, c) = self.shape;
        let n = h * w * c;
        Ok(Image::new(
            h,
            w,
            c,
            self.pixels[i * n..(i + 1) * n].to_vec(),
        ))
    }
    fn describe(&self) -> String {
        self.description.clone()
    }
}

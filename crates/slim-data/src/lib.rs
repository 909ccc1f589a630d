//! `slim-data`: labelled image datasets in the forms users bring them, behind one
//! [`Dataset`] trait, plus the image decoding every consumer shares.
//!
//! - [`idx`]: MNIST / Fashion-MNIST IDX files (raw or gzipped);
//! - [`cifar`]: CIFAR-10/100 binary archives (`.tar.gz` as downloaded, or extracted);
//! - [`folder`]: ImageFolder trees (`root/<class>/<image>`) and zip archives of them;
//! - [`memory`]: the in-memory dataset the IDX and CIFAR readers parse into;
//! - [`decode`](mod@decode): bounded decoding of JPEG/PNG/WebP/BMP bytes to 8-bit pixels;
//! - [`transform`]: the shared evaluation preprocessing (resize, crop, normalize);
//! - [`augment`]: the SimCLR / MoCo v2 training augmentations, seedable;
//! - [`loader`]: ordered, reproducible batches (one or two augmented views) decoded on
//!   worker threads, skipping and reporting corrupt files.
//!
//! [`open`] picks the reader from what a path looks like.

pub mod augment;
pub mod cifar;
pub mod decode;
mod error;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod memory;
pub mod transform;

use std::path::Path;
use std::sync::Arc;

pub use decode::{Image, decode};
pub use error::Error;

/// Which part of a dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// A labelled image dataset. Images are decoded on demand by [`Dataset::image`], which
/// is safe to call from many threads at once.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn class_names(&self) -> &[String];
    /// Label of sample `i` (known without decoding).
    fn label(&self, i: usize) -> usize;
    /// Decodes sample `i`; a corrupt file is an error naming it, for the caller to skip
    /// and count.
    fn image(&self, i: usize) -> Result<Image, Error>;
    /// What this is, for logs: reader, path, split.
    fn describe(&self) -> String;
}

/// Opens `path` as the dataset it looks like:
/// - a folder holding `train-images-idx3-ubyte[.gz]` (Fashion-MNIST, MNIST);
/// - a CIFAR binary archive (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`) or its
///   extracted folder (`cifar-10-batches-bin`, `cifar-100-binary`);
/// - a `.zip` of an ImageFolder tree; with `train/` and `test/` at its top, the split
///   picks one;
/// - an ImageFolder folder, likewise with optional `train/` and `test/` inside.
pub fn open(path: &Path, split: Split) -> Result<Box<dyn Dataset>, Error> {
    if !path.exists() {
        return Err(Error::at(path, "does not exist"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let ds: Box<dyn Dataset> = if path.is_dir() && idx::present(path) {
        Box::new(idx::open(path, split)?)
    } else if cifar::looks_like(path) {
        Box::new(cifar::open(path, split)?)
    } else if name.ends_with(".zip") {
        Box::new(folder::ImageFolder::open_zip(path, split)?)
    } else if path.is_dir() {
        Box::new(folder::ImageFolder::open_dir(path, split)?)
    } else {
        return Err(Error::at(
            path,
            "is not a dataset this toolchain reads (an ImageFolder folder or .zip, a CIFAR \
             binary archive, or a folder of IDX files)",
        ));
    };
    if ds.is_empty() {
        return Err(Error::at(
            path,
            format!("holds no images for the {} split", split.name()),
        ));
    }
    Ok(ds)
}

/// `n` evenly spaced indices of `0..len`: `i * len / n` for `i` in `0..n` (all of `0..len`
/// when `n >= len`). Deterministic, and for datasets stored class by class (ImageFolder,
/// sorted IDX) it keeps the classes' proportions.
pub fn evenly_spaced(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    (0..n).map(|i| i * len / n).collect()
}

/// Some of a dataset's samples, by index.
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Subset {
        Subset { inner, indices }
    }

    /// `n` evenly spaced samples ([`evenly_spaced`]).
    pub fn evenly(inner: Arc<dyn Dataset>, n: usize) -> Subset {
        let indices = evenly_spaced(inner.len(), n);
        Subset { inner, indices }
    }

    /// `dataset` itself, or with `limit = Some(n)` and fewer than its samples, its `n`
    /// evenly spaced ones ([`Subset::evenly`]).
    pub fn at_most(dataset: Arc<dyn Dataset>, limit: Option<usize>) -> Arc<dyn Dataset> {
        match limit {
            Some(n) if n < dataset.len() => Arc::new(Subset::evenly(dataset, n)),
            _ => dataset,
        }
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn class_names(&self) -> &[String] {
        self.inner.class_names()
    }
    fn label(&self, i: usize) -> usize {
        self.inner.label(self.indices[i])
    }
    fn image(&self, i: usize) -> Result<Image, Error> {
        self.inner.image(self.indices[i])
    }
    fn describe(&self) -> String {
        format!("{} images of {}", self.len(), self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn evenly_spaced_indices() {
        assert_eq!(super::evenly_spaced(10, 3), [0, 3, 6]);
        assert_eq!(super::evenly_spaced(4, 9), [0, 1, 2, 3]);
        assert_eq!(super::evenly_spaced(5, 0), Vec::<usize>::new());
    }
}

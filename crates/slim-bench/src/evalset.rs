//! A labelled evaluation set preprocessed once, as the model's manifest says, so that
//! every width and backend is measured on exactly the same inputs.

use std::path::Path;

use slim_core::Manifest;
use slim_data::{Dataset, Split, transform::Normalize};

use crate::Error;

pub struct EvalSet {
    /// `len * C * H * W` normalized inputs.
    pub inputs: Vec<f32>,
    pub labels: Vec<usize>,
    /// Values per image.
    pub stride: usize,
    /// Images that failed to decode, with their errors (skipped, not fatal).
    pub skipped: Vec<String>,
    pub description: String,
}

impl EvalSet {
    /// Reads `path`'s test split (at most `limit` images, evenly spaced over the set).
    /// The dataset's class names must equal the model's.
    pub fn load(path: &Path, manifest: &Manifest, limit: Option<usize>) -> Result<EvalSet, Error> {
        let ds = slim_data::open(path, Split::Test)?;
        Self::from_dataset(path, ds.as_ref(), manifest, limit)
    }

    pub fn from_dataset(
        path: &Path,
        ds: &dyn Dataset,
        manifest: &Manifest,
        limit: Option<usize>,
    ) -> Result<EvalSet, Error> {
        if ds.class_names() != manifest.class_names.as_slice() {
            return Err(Error::Classes {
                path: path.to_path_buf(),
                data: ds.class_names().to_vec(),
                model: manifest.class_names.clone(),
            });
        }
        let norm = Normalize::from(&manifest.input);
        let mut set = EvalSet {
            inputs: Vec::new(),
            labels: Vec::new(),
            stride: manifest.input.image_len(),
            skipped: Vec::new(),
            description: ds.describe(),
        };
        for i in slim_data::evenly_spaced(ds.len(), limit.unwrap_or(ds.len())) {
            match ds.image(i) {
                Ok(img) => {
                    norm.apply(img, &mut set.inputs);
                    set.labels.push(ds.label(i));
                }
                Err(e) => set.skipped.push(e.to_string()),
            }
        }
        if set.labels.is_empty() {
            return Err(Error::NothingDecoded {
                path: path.to_path_buf(),
                skipped: set.skipped.len(),
            });
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Inputs of images `start..start + n`.
    pub fn batch(&self, start: usize, n: usize) -> &[f32] {
        &self.inputs[start * self.stride..(start + n) * self.stride]
    }

    /// The images at even positions and those at odd ones, as two sets (the second has
    /// no skipped images listed: they are the first's).
    pub fn halves(&self) -> (EvalSet, EvalSet) {
        let pick = |parity: usize| {
            let keep: Vec<usize> = (parity..self.len()).step_by(2).collect();
            EvalSet {
                inputs: keep
                    .iter()
                    .flat_map(|&i| self.batch(i, 1))
                    .copied()
                    .collect(),
                labels: keep.iter().map(|&i| self.labels[i]).collect(),
                stride: self.stride,
                skipped: if parity == 0 {
                    self.skipped.clone()
                } else {
                    Vec::new()
                },
                description: self.description.clone(),
            }
        };
        (pick(0), pick(1))
    }
}

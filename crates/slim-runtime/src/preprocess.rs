//! From image files to answers: decode with slim-data's bounded decoder (JPEG, PNG, WebP,
//! BMP; grayscale, RGBA and 16-bit converted to the model's channels), resize the shorter
//! side, centre-crop and normalize as the manifest says (and every graph's metadata,
//! checked on load, agrees); then top-k classes with softmax probabilities and names, or
//! embeddings.

use slim_core::Variant;
use std::path::Path;

use crate::{Error, SlimModel};

/// Largest image file read, in bytes (slim-data's bound, which every reader shares); the
/// decoder bounds pixels and memory on its own.
pub use slim_data::decode::MAX_FILE_BYTES;

/// One class of a top-k answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    /// Index into the logits and the manifest's class names.
    pub index: usize,
    pub name: String,
    /// Softmax probability.
    pub prob: f32,
}

/// The `k` most probable classes of `logits` (softmax), most probable first; ties go to
/// the lower index. `names` are the class names in logits order.
pub fn top_k(logits: &[f32], k: usize, names: &[String]) -> Vec<Class> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Class {
            index: i,
            name: names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            prob: (exp[i] / sum) as f32,
        })
        .collect()
}

impl SlimModel {
    /// Decodes one image (`name` is its source, for errors) and appends its normalized
    /// CHW input to `out`.
    pub fn preprocess(&self, name: &Path, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), Error> {
        let img = slim_data::decode(name, bytes)?;
        self.normalize().apply(img, out);
        Ok(())
    }

    /// Reads, decodes and normalizes image files into one batch, in order.
    pub fn preprocess_files<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Vec<f32>, Error> {
        let mut out = Vec::with_capacity(paths.len() * self.image_len());
        for p in paths {
            let p = p.as_ref();
            self.preprocess(p, &slim_data::decode::read_file(p)?, &mut out)?;
        }
        Ok(out)
    }

    /// Values in one preprocessed image (`C * H * W`).
    pub fn image_len(&self) -> usize {
        self.input_chw().iter().product()
    }

    /// How many images `inputs` holds; an error unless it is a whole, non-empty batch.
    pub fn batch_of(&self, inputs: &[f32]) -> Result<usize, Error> {
        let n = inputs.len() / self.image_len();
        crate::engine::check_input(inputs, n, self.input_chw())?;
        Ok(n)
    }

    /// The `k` most probable classes of each image of the batch `inputs` at a width (its
    /// float graph) or a variant.
    pub fn classify(
        &self,
        width: impl Into<Variant>,
        inputs: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<Class>>, Error> {
        let n = self.batch_of(inputs)?;
        let out = self.run(width, inputs, n)?;
        let names = &self.manifest().class_names;
        Ok((0..n).map(|i| top_k(out.logits_row(i), k, names)).collect())
    }

    /// The embedding (pooled backbone features, not normalized) of each image of `inputs`
    /// at a width (its float graph) or a variant.
    pub fn embed(&self, width: impl Into<Variant>, inputs: &[f32]) -> Result<Vec<Vec<f32>>, Error> {
        let n = self.batch_of(inputs)?;
        let out = self.run(width, inputs, n)?;
        Ok((0..n).map(|i| out.embedding_row(i).to_vec()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_a_sorted_softmax_with_names() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).into();
        let top = top_k(&[1.0, 3.0, 1.0], 2, &names);
        let e = [1f64.exp(), 3f64.exp(), 1f64.exp()];
        let sum: f64 = e.iter().sum();
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].index, top[0].name.as_str()), (1, "b"));
        assert_eq!(
            (top[1].index, top[1].name.as_str()),
            (0, "a"),
            "ties: lower index"
        );
        assert!((top[0].prob as f64 - e[1] / sum).abs() < 1e-6);
        assert!((top[1].prob as f64 - e[0] / sum).abs() < 1e-6);
        // Large logits do not overflow.
        let top = top_k(&[1000.0, 0.0], 5, &names);
        assert_eq!(top.len(), 2);
        assert!((top[0].prob - 1.0).abs() < 1e-6 && top[1].prob >= 0.0);
    }
}

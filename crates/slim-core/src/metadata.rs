//! The `metadata_props` keys of every exported ONNX graph, shared by the writer
//! (slim-onnx) and the readers (slim-runtime), so that a graph on its own says what it is,
//! what it costs and how to feed it. Values are strings as ONNX requires; lists are JSON
//! arrays, numbers are decimal. [`GraphMetadata`] is the whole set, typed.

use crate::config::Preprocessing;
use crate::manifest::{Manifest, WidthEntry};
use crate::precision::Precision;
use crate::width::Width;

/// Name of the graph input: normalized images `[N, C, S, S]`, float32.
pub const INPUT: &str = "image";
/// Name of the first output: the backbone's pooled features `[N, features_at(w)]`.
pub const EMBEDDING: &str = "embedding";
/// Name of the second output: the probe's logits `[N, classes]`.
pub const LOGITS: &str = "logits";
/// The symbolic batch dimension of the input and outputs.
pub const BATCH: &str = "N";

/// The width, e.g. `0.25`.
pub const WIDTH: &str = "width";
/// The width's tag, e.g. `w250` (see [`Width::tag`]).
pub const WIDTH_TAG: &str = "width_tag";
/// The graph's precision, `f32`, `f16` or `int8` (absent in graphs exported before
/// precisions: `f32`).
pub const PRECISION: &str = "precision";
/// Multiply-accumulates per image, from [`crate::cost()`].
pub const MACS: &str = "macs";
/// Parameters, from [`crate::cost()`] (BatchNorm counted before folding).
pub const PARAMS: &str = "params";
/// Length of the `embedding` output.
pub const EMBEDDING_DIM: &str = "embedding_dim";
/// Side of the square input, in pixels.
pub const IMAGE_SIZE: &str = "image_size";
pub const IN_CHANNELS: &str = "in_channels";
/// Per-channel normalization `(x - mean) / std` of pixels in [0, 1], JSON arrays. The graph
/// expects normalized input.
pub const MEAN: &str = "mean";
pub const STD: &str = "std";
/// JSON array of class names, in `logits` order.
pub const CLASS_NAMES: &str = "class_names";
/// Hex SHA-256 of the checkpoint file the graph was exported from.
pub const CHECKPOINT_SHA256: &str = "checkpoint_sha256";
/// Backbone name, e.g. `resnet20`.
pub const BACKBONE: &str = "backbone";
/// `slim-onnx <version>`.
pub const PRODUCER: &str = "producer";

/// What an exported graph says of itself: written into its `metadata_props` by
/// slim-export, read back and checked against the manifest by slim-runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphMetadata {
    pub width: Width,
    pub precision: Precision,
    pub macs: u64,
    pub params: u64,
    pub embedding_dim: usize,
    pub input: Preprocessing,
    pub class_names: Vec<String>,
    pub checkpoint_sha256: String,
    pub backbone: String,
    /// What wrote the graph (`slim-onnx <version>`); not compared.
    pub producer: String,
}

impl GraphMetadata {
    /// What the graph listed as `entry` in `manifest` must say of itself.
    pub fn of_entry(manifest: &Manifest, entry: &WidthEntry, producer: &str) -> GraphMetadata {
        GraphMetadata {
            width: entry.width,
            precision: entry.precision,
            macs: entry.macs,
            params: entry.params,
            embedding_dim: entry.embedding_dim,
            input: manifest.input.clone(),
            class_names: manifest.class_names.clone(),
            checkpoint_sha256: manifest.checkpoint_sha256.clone(),
            backbone: manifest.backbone.clone(),
            producer: producer.to_string(),
        }
    }

    /// The `metadata_props` pairs, in the order slim-export writes them.
    pub fn to_props(&self) -> Vec<(&'static str, String)> {
        vec![
            (WIDTH, format!("{:?}", self.width.get())),
            (WIDTH_TAG, self.width.tag()),
            (PRECISION, self.precision.name().to_string()),
            (MACS, self.macs.to_string()),
            (PARAMS, self.params.to_string()),
            (EMBEDDING_DIM, self.embedding_dim.to_string()),
            (IMAGE_SIZE, self.input.image_size.to_string()),
            (IN_CHANNELS, self.input.in_channels.to_string()),
            (MEAN, json(&self.input.mean)),
            (STD, json(&self.input.std)),
            (CLASS_NAMES, json(&self.class_names)),
            (CHECKPOINT_SHA256, self.checkpoint_sha256.clone()),
            (BACKBONE, self.backbone.clone()),
            (PRODUCER, self.producer.clone()),
        ]
    }

    /// Reads the metadata from `get` (a graph's `metadata_props` by key): a missing key
    /// or a value that does not parse is an error naming the key.
    pub fn from_props<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<GraphMetadata, String> {
        let text = |key: &str| {
            get(key).ok_or_else(|| format!("has no {key:?} metadata; not exported by slim-export?"))
        };
        fn parsed<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("metadata {key} = {v:?} is not a number"))
        }
        fn listed<T: serde::de::DeserializeOwned>(key: &str, v: &str) -> Result<T, String> {
            serde_json::from_str(v)
                .map_err(|e| format!("metadata {key} = {v} is not a JSON list: {e}"))
        }
        Ok(GraphMetadata {
            width: parsed(WIDTH, text(WIDTH)?)?,
            precision: match get(PRECISION) {
                None => Precision::F32,
                Some(v) => v
                    .parse()
                    .map_err(|e| format!("metadata {PRECISION}: {e}"))?,
            },
            macs: parsed(MACS, text(MACS)?)?,
            params: parsed(PARAMS, text(PARAMS)?)?,
            embedding_dim: parsed(EMBEDDING_DIM, text(EMBEDDING_DIM)?)?,
            input: Preprocessing {
                image_size: parsed(IMAGE_SIZE, text(IMAGE_SIZE)?)?,
                in_channels: parsed(IN_CHANNELS, text(IN_CHANNELS)?)?,
                mean: listed(MEAN, text(MEAN)?)?,
                std: listed(STD, text(STD)?)?,
            },
            class_names: listed(CLASS_NAMES, text(CLASS_NAMES)?)?,
            checkpoint_sha256: text(CHECKPOINT_SHA256)?.to_string(),
            backbone: get(BACKBONE).unwrap_or_default().to_string(),
            producer: get(PRODUCER).unwrap_or_default().to_string(),
        })
    }

    /// The first key on which this metadata and `want` disagree, with this value and
    /// `want`'s. Widths agree when their tags do; the producer is not compared.
    pub fn first_difference(&self, want: &GraphMetadata) -> Option<(&'static str, String, String)> {
        if self.width != want.width {
            return Some((WIDTH, self.width.to_string(), want.width.to_string()));
        }
        let ours = self.to_props();
        let theirs = want.to_props();
        ours.into_iter()
            .zip(theirs)
            .filter(|((key, _), _)| ![WIDTH, WIDTH_TAG, PRODUCER].contains(key))
            .find(|((_, a), (_, b))| a != b)
            .map(|((key, a), (_, b))| (key, a, b))
    }
}

/// JSON text of a plain list of numbers or strings (which cannot fail to serialise).
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GraphMetadata {
        GraphMetadata {
            width: Width::new(0.25).unwrap(),
            precision: Precision::Int8,
            macs: 1960160,
            params: 17462,
            embedding_dim: 16,
            input: Preprocessing {
                image_size: 28,
                in_channels: 1,
                mean: vec![0.28038627],
                std: vec![0.34934258],
            },
            class_names: vec!["T-shirt/top".into(), "Trouser".into()],
            checkpoint_sha256: "ab".repeat(32),
            backbone: "resnet20".into(),
            producer: "slim-onnx 0.1.0".into(),
        }
    }

    #[test]
    fn metadata_survives_its_props_and_names_what_differs() {
        let m = sample();
        let props: std::collections::HashMap<&str, String> = m.to_props().into_iter().collect();
        assert_eq!(props[WIDTH_TAG], "w250");
        let back = GraphMetadata::from_props(|k| props.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.first_difference(&m), None);
        let other = GraphMetadata {
            producer: "another".into(),
            ..m.clone()
        };
        assert_eq!(back.first_difference(&other), None);
        let wider = GraphMetadata {
            input: Preprocessing {
                mean: vec![0.5],
                ..m.input.clone()
            },
            ..m.clone()
        };
        let (key, got, want) = back.first_difference(&wider).unwrap();
        assert_eq!(
            (key, got.as_str(), want.as_str()),
            (MEAN, "[0.28038627]", "[0.5]")
        );
        let old = GraphMetadata::from_props(|k| (k != PRECISION).then(|| props[k].as_str()));
        assert_eq!(old.unwrap().precision, Precision::F32);
        let half = GraphMetadata {
            precision: Precision::F16,
            ..m.clone()
        };
        let (key, got, want) = back.first_difference(&half).unwrap();
        assert_eq!(
            (key, got.as_str(), want.as_str()),
            (PRECISION, "int8", "f16")
        );
        let missing = GraphMetadata::from_props(|k| (k != MACS).then(|| props[k].as_str()));
        assert!(missing.unwrap_err().contains("\"macs\""));
        let bad = GraphMetadata::from_props(|k| {
            Some(if k == PARAMS {
                "many"
            } else {
                props[k].as_str()
            })
        });
        assert!(bad.unwrap_err().contains("params"));
    }
}

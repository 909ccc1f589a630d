//! Reading an exported ONNX file before any engine sees it: decode the protobuf, refuse
//! external-data paths that leave the model folder, and check the graph's metadata
//! against the manifest entry it is listed under.

use std::collections::HashMap;
use std::path::{Component, Path};

use prost::Message;
use slim_core::metadata as meta;
use slim_core::{Manifest, WidthEntry};
use tract_onnx::pb::{ModelProto, TensorProto, tensor_proto::DataLocation};

use crate::Error;

/// A decoded graph with its metadata properties.
pub struct Graph {
    pub proto: ModelProto,
    pub metadata: HashMap<String, String>,
}

/// Reads and decodes `path`; `model_dir` bounds where external data may live.
pub fn read(path: &Path, model_dir: &Path) -> Result<Graph, Error> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::graph(path, format!("cannot be read: {e}")))?;
    let proto = ModelProto::decode(bytes.as_slice()).map_err(|e| {
        Error::graph(
            path,
            format!("is not a valid ONNX protobuf ({e}); truncated or corrupt?"),
        )
    })?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::graph(path, "holds no graph"))?;
    if graph.node.is_empty() {
        return Err(Error::graph(
            path,
            "holds an empty graph; truncated or corrupt?",
        ));
    }
    for t in &graph.initializer {
        check_external(path, model_dir, t)?;
    }
    let metadata = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    Ok(Graph { proto, metadata })
}

/// External data must be a relative path inside the model folder.
fn check_external(path: &Path, model_dir: &Path, t: &TensorProto) -> Result<(), Error> {
    if t.data_location != Some(DataLocation::External as i32) {
        return Ok(());
    }
    let location = t
        .external_data
        .iter()
        .find(|e| e.key == "location")
        .map(|e| e.value.as_str())
        .ok_or_else(|| {
            Error::graph(
                path,
                format!("initializer {} is external but names no location", t.name),
            )
        })?;
    let rel = Path::new(location);
    let escapes = rel.is_absolute()
        || rel.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
    if escapes {
        return Err(Error::graph(
            path,
            format!(
                "initializer {} points at external data {location:?}, outside the model folder {}: refused",
                t.name,
                model_dir.display()
            ),
        ));
    }
    Ok(())
}

impl Graph {
    /// Checks that the graph's own metadata says what the manifest says of it: width,
    /// costs, input shape, normalisation and class names, and the checkpoint it came from.
    /// The runtime preprocesses from the manifest, so this makes it the graph's own.
    pub fn check_against(
        &self,
        path: &Path,
        entry: &WidthEntry,
        manifest: &Manifest,
    ) -> Result<(), Error> {
        let checkpoint_sha256 = manifest.checkpoint_sha256.as_str();
        let get = |key: &str| {
            self.metadata.get(key).ok_or_else(|| {
                Error::graph(
                    path,
                    format!("has no {key:?} metadata; not exported by slim-export?"),
                )
            })
        };
        let disagree = |key: &str, graph: &str, manifest: String| {
            Error::graph(
                path,
                format!("metadata {key} = {graph} disagrees with the manifest ({manifest})"),
            )
        };
        let width: f64 = get(meta::WIDTH)?
            .parse()
            .map_err(|_| Error::graph(path, "metadata width is not a number"))?;
        if slim_core::width::tag(width) != slim_core::width::tag(entry.width) {
            return Err(disagree(
                meta::WIDTH,
                &width.to_string(),
                entry.width.to_string(),
            ));
        }
        for (key, want) in [
            (meta::MACS, entry.macs),
            (meta::PARAMS, entry.params),
            (meta::EMBEDDING_DIM, entry.embedding_dim as u64),
            (meta::IN_CHANNELS, manifest.in_channels as u64),
            (meta::IMAGE_SIZE, manifest.image_size as u64),
        ] {
            let got = get(key)?;
            if got.parse::<u64>().ok() != Some(want) {
                return Err(disagree(key, got, want.to_string()));
            }
        }
        // The normalisation and the class names, as JSON arrays.
        fn same<T: serde::de::DeserializeOwned + PartialEq>(got: &str, want: &T) -> bool {
            serde_json::from_str::<T>(got).is_ok_and(|g| &g == want)
        }
        for (key, ok, want) in [
            (
                meta::MEAN,
                same(get(meta::MEAN)?, &manifest.mean),
                format!("{:?}", manifest.mean),
            ),
            (
                meta::STD,
                same(get(meta::STD)?, &manifest.std),
                format!("{:?}", manifest.std),
            ),
            (
                meta::CLASS_NAMES,
                same(get(meta::CLASS_NAMES)?, &manifest.class_names),
                format!("{:?}", manifest.class_names),
            ),
        ] {
            if !ok {
                return Err(disagree(key, get(key)?, want));
            }
        }
        let sha = get(meta::CHECKPOINT_SHA256)?;
        if sha != checkpoint_sha256 {
            return Err(disagree(
                meta::CHECKPOINT_SHA256,
                sha,
                checkpoint_sha256.to_string(),
            ));
        }
        Ok(())
    }
}

//! Reading an exported ONNX file before any engine sees it: decode the protobuf, refuse
//! external-data paths that leave the model folder, and check the graph's metadata
//! against the manifest entry it is listed under.

use std::collections::HashMap;
use std::path::{Component, Path};

use prost::Message;
use slim_core::metadata::GraphMetadata;
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
        let got = GraphMetadata::from_props(|k| self.metadata.get(k).map(String::as_str))
            .map_err(|msg| Error::graph(path, msg))?;
        let want = GraphMetadata::of_entry(manifest, entry, &got.producer);
        match got.first_difference(&want) {
            None => Ok(()),
            Some((key, graph, listed)) => Err(Error::graph(
                path,
                format!("metadata {key} = {graph} disagrees with the manifest ({listed})"),
            )),
        }
    }
}

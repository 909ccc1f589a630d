//! Reading an exported ONNX file before any engine sees it: decode the protobuf, refuse
//! a file or external data outside the model folder and put external data inline
//! ([`external`]), check that the graph is well formed
//! (every tensor defined once, before it is used) and has the interface of an exported
//! width (input `image` of the model's shape, outputs `embedding` and `logits`), and check
//! its metadata against the manifest entry it is listed under.

mod external;

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use slim_core::metadata::GraphMetadata;
use slim_core::metadata::{EMBEDDING, INPUT, LOGITS};
use slim_core::{Manifest, WidthEntry};
use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::type_proto::Value as Type;
use tract_onnx::pb::{GraphProto, ModelProto, ValueInfoProto};

use crate::Error;

/// Largest graph file read: protobuf's 2 GiB limit (larger models keep their weights in
/// external data files, which are read apart).
pub const MAX_BYTES: u64 = 2 << 30;

/// A decoded graph with its metadata properties.
pub struct Graph {
    pub proto: ModelProto,
    pub metadata: HashMap<String, String>,
}

/// Reads and decodes `path`, which must lie inside `model_dir` (as must its external data)
/// once links are resolved; the graph returned holds all its data inline.
pub fn read(path: &Path, model_dir: &Path) -> Result<Graph, Error> {
    // Resolved once for the graph and all its external data.
    let dir = external::resolve_dir(model_dir)?;
    let real = external::resolve_inside(path, &dir)?;
    let unreadable = |e: std::io::Error| Error::graph(path, format!("cannot be read: {e}"));
    let file = std::fs::File::open(&real).map_err(unreadable)?;
    let bytes = slim_core::fsutil::read_at_most(file, MAX_BYTES)
        .map_err(unreadable)?
        .ok_or_else(|| {
            Error::graph(
                path,
                format!(
                    "is larger than {} GiB, protobuf's limit: a graph this large keeps its \
                     weights in external data",
                    MAX_BYTES >> 30
                ),
            )
        })?;
    let mut proto = ModelProto::decode(bytes.as_slice()).map_err(|e| {
        Error::graph(
            path,
            format!("is not a valid ONNX protobuf ({e}); truncated or corrupt?"),
        )
    })?;
    let graph = proto
        .graph
        .as_mut()
        .ok_or_else(|| Error::graph(path, "holds no graph"))?;
    if graph.node.is_empty() {
        return Err(Error::graph(
            path,
            "holds an empty graph; truncated or corrupt?",
        ));
    }
    for t in &mut graph.initializer {
        external::inline(path, &dir, t)?;
    }
    check_single_assignment(graph).map_err(|msg| Error::graph(path, msg))?;
    let metadata = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    Ok(Graph { proto, metadata })
}

/// Every tensor defined once (a graph input, an initializer or one node's output), every
/// node input defined by a node before it (which also rules out cycles), every graph
/// output defined. Engines differ on graphs that break this: tract ran one with two
/// producers of a tensor, ONNX Runtime refused it.
fn check_single_assignment(graph: &GraphProto) -> Result<(), String> {
    let mut defined: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for t in &graph.initializer {
        if !defined.insert(&t.name) {
            return Err(format!("initializer {:?} is defined twice", t.name));
        }
    }
    for i in &graph.input {
        // An initializer may also be listed as an input (older exporters do): same tensor.
        if !defined.insert(&i.name) && !graph.initializer.iter().any(|t| t.name == i.name) {
            return Err(format!("graph input {:?} is defined twice", i.name));
        }
    }
    for (n, node) in graph.node.iter().enumerate() {
        let what = || format!("node {n} ({} {:?})", node.op_type, node.name);
        if let Some(missing) = node
            .input
            .iter()
            .find(|i| !i.is_empty() && !defined.contains(i.as_str()))
        {
            return Err(format!(
                "{} reads {missing:?}, which no input, initializer or earlier node defines",
                what()
            ));
        }
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            if !defined.insert(o) {
                return Err(format!("{} writes {o:?}, which is already defined", what()));
            }
        }
    }
    match graph
        .output
        .iter()
        .find(|o| !defined.contains(o.name.as_str()))
    {
        Some(o) => Err(format!("graph output {:?} is never computed", o.name)),
        None => Ok(()),
    }
}

/// `[N, C, H, W]` of a value, each dimension a number or (symbolic) `None`.
fn dims(v: &ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let Some(Type::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Dim::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect(),
    )
}

impl Graph {
    /// Checks the interface every exported width has, by name: one input `image` of shape
    /// `[N, C, H, W]` = `[any, chw]`, and the outputs `embedding` then `logits` (a graph
    /// from elsewhere is refused here, naming what it has, instead of failing inside an
    /// engine).
    pub fn check_interface(&self, path: &Path, chw: [usize; 3]) -> Result<(), Error> {
        let graph = self.proto.graph.as_ref().expect("checked by read");
        let inputs: Vec<&ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
            .collect();
        let names = |v: &[&ValueInfoProto]| {
            v.iter()
                .map(|i| format!("{:?}", i.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let [c, h, w] = chw.map(|d| d as i64);
        let want = format!("{INPUT:?} [N, {c}, {h}, {w}]");
        match inputs.as_slice() {
            [i] if i.name == INPUT => {
                let got = dims(i);
                let fits = got.as_ref().is_some_and(|d| {
                    d.len() == 4 && d[1..].iter().zip([c, h, w]).all(|(g, x)| *g == Some(x))
                });
                if !fits {
                    let shown = got.map_or("no tensor shape".into(), |d| {
                        let d: Vec<String> = d
                            .iter()
                            .map(|x| x.map_or("?".into(), |v| v.to_string()))
                            .collect();
                        format!("[{}]", d.join(", "))
                    });
                    return Err(Error::graph(
                        path,
                        format!("has input {INPUT:?} of shape {shown}; the model takes {want}"),
                    ));
                }
            }
            _ => {
                return Err(Error::graph(
                    path,
                    format!(
                        "has inputs [{}]; an exported width has exactly one, {want}",
                        names(&inputs)
                    ),
                ));
            }
        }
        let outputs: Vec<&ValueInfoProto> = graph.output.iter().collect();
        // In this order: tract hands outputs back by position.
        let named: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        if named != [EMBEDDING, LOGITS] {
            return Err(Error::graph(
                path,
                format!(
                    "has outputs [{}]; an exported width has {EMBEDDING:?} and {LOGITS:?}, in that order",
                    names(&outputs)
                ),
            ));
        }
        Ok(())
    }

    /// Checks that the graph's own metadata says what the manifest says of it: width,
    /// costs, input shape, normalization and class names, and the checkpoint it came from.
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

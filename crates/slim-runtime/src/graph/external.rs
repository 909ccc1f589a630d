//! Where a graph's bytes may come from: the graph file itself and the files its
//! initializers name as external data, all inside the model folder once links are
//! resolved. External data is read here, bounded by the tensor's shape, and put inline,
//! so every engine runs the same checked, self-contained graph (tract is given no model
//! path and could not find the files; ONNX Runtime would read them again itself).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use tract_onnx::pb::TensorProto;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};

use crate::Error;

/// `model_dir` with its links resolved, the bound [`resolve_inside`] checks against.
pub fn resolve_dir(model_dir: &Path) -> Result<PathBuf, Error> {
    model_dir
        .canonicalize()
        .map_err(|e| Error::graph(model_dir, format!("cannot be resolved: {e}")))
}

/// `path` resolved (links followed), refused when it lies outside `dir` (a folder from
/// [`resolve_dir`]): a graph listed in the manifest that is a link to elsewhere is not
/// part of the model.
pub fn resolve_inside(path: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let real = path
        .canonicalize()
        .map_err(|e| Error::graph(path, format!("cannot be resolved: {e}")))?;
    if !real.starts_with(dir) {
        return Err(Error::graph(
            path,
            format!(
                "resolves to {}, outside the model folder {}: refused",
                real.display(),
                dir.display()
            ),
        ));
    }
    Ok(real)
}

/// Bytes per element of the fixed-size ONNX types; `None` for strings, sub-byte and
/// undefined types, which external data here cannot hold.
fn element_bytes(data_type: i32) -> Option<u64> {
    use DataType::*;
    Some(match DataType::try_from(data_type).ok()? {
        Uint8 | Int8 | Bool | Float8e4m3fn | Float8e4m3fnuz | Float8e5m2 | Float8e5m2fnuz => 1,
        Uint16 | Int16 | Float16 | Bfloat16 => 2,
        Float | Int32 | Uint32 => 4,
        Int64 | Uint64 | Double | Complex64 => 8,
        Complex128 => 16,
        _ => return None,
    })
}

/// When `t` keeps its data in an external file: reads it (the location relative to the
/// graph's folder, inside the model folder after resolving links; `offset` and `length`
/// checked against the file and the tensor's shape) into `raw_data`, and marks `t`
/// inline. `graph` is the graph file, for messages; `dir` the model folder resolved.
pub fn inline(graph: &Path, dir: &Path, t: &mut TensorProto) -> Result<(), Error> {
    if t.data_location != Some(DataLocation::External as i32) {
        return Ok(());
    }
    let fail = |msg: String| Error::graph(graph, format!("initializer {}: {msg}", t.name));
    let field = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let number = |key: &str| -> Result<Option<u64>, Error> {
        field(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| fail(format!("external data {key} {v:?} is not a byte count")))
            })
            .transpose()
    };
    let location = field("location")
        .ok_or_else(|| fail("is external but names no location".into()))?
        .to_string();
    let rel = Path::new(&location);
    let escapes = rel.is_absolute()
        || rel.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
    if escapes {
        return Err(fail(format!(
            "points at external data {location:?}, outside the model folder {}: refused",
            dir.display()
        )));
    }
    let file = graph.parent().unwrap_or(Path::new(".")).join(rel);
    if !file.exists() {
        return Err(fail(format!(
            "its external data file {} is missing",
            file.display()
        )));
    }
    let real = resolve_inside(&file, dir)?;
    let elements = t.dims.iter().try_fold(1u64, |n, &d| {
        u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
    });
    let want = elements
        .zip(element_bytes(t.data_type))
        .and_then(|(n, b)| n.checked_mul(b))
        .ok_or_else(|| {
            fail(format!(
                "shape {:?} of data type {} cannot be read from external data",
                t.dims, t.data_type
            ))
        })?;
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?.unwrap_or(want);
    if length != want {
        return Err(fail(format!(
            "external data length {length} is not the {want} bytes its shape {:?} needs",
            t.dims
        )));
    }
    let mut f = std::fs::File::open(&real)
        .map_err(|e| fail(format!("{} cannot be read: {e}", file.display())))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(fail(format!(
            "external data bytes {offset}..{} lie outside {} ({size} bytes); truncated?",
            offset.saturating_add(length),
            file.display()
        )));
    }
    // Bounded by the file's real size just checked, not by a field of the graph.
    let mut bytes = vec![0u8; length as usize];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut bytes))
        .map_err(|e| fail(format!("{} cannot be read: {e}", file.display())))?;
    t.raw_data = bytes;
    t.data_location = Some(DataLocation::Default as i32);
    t.external_data.clear();
    Ok(())
}

//! Checkpoints: one safetensors file holding the shared full-width weights, each width's
//! BatchNorm and probe, optional reference outputs, and the [`ModelConfig`] as JSON in the
//! safetensors metadata. Written atomically; read without libtorch.
//!
//! Tensor names (`t` is a width tag from [`crate::width::tag`]):
//! - `{conv}.weight`: full-width conv weight, `[out, in/groups, k, k]`;
//! - `{conv}.bn.{t}.{weight,bias,running_mean,running_var}`: that width's BatchNorm,
//!   sized to the width's channel count;
//! - `probe.{t}.weight` `[classes, features_at(w)]`, `probe.{t}.bias` `[classes]`;
//! - `reference.image` `[n, c, h, w]` and `reference.{t}.{embedding,logits}`: outputs of
//!   the training framework's eval-mode forward pass, saved with the weights so that the
//!   exporter can ship them as ONNX test data without linking libtorch;
//! - `train.*`: training state (heads, optimizer); ignored by readers of the model.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::fsutil::atomic_write;
use crate::{Error, width};

const CONFIG_KEY: &str = "slim.config";
const FORMAT_KEY: &str = "slim.format";
const FORMAT: &str = "slim-checkpoint/1";
const TRAIN_STATE_KEY: &str = "slim.train_state";

/// A dense float32 tensor in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?}"
        );
        Tensor { shape, data }
    }
}

/// A loaded, validated checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub tensors: BTreeMap<String, Tensor>,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// The trainer's own state (JSON) when the checkpoint was written during training.
    pub train_state: Option<String>,
}

/// The names and shapes of every model tensor `config` requires.
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let net = config.network();
    let mut out = Vec::new();
    for c in net.convs() {
        out.push((format!("{}.weight", c.name), c.weight_shape().to_vec()));
        for &w in &config.widths {
            let ch = c.channels_at(w).1;
            for p in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{}.bn.{}.{p}", c.name, width::tag(w)), vec![ch]));
            }
        }
    }
    for &w in &config.widths {
        let t = width::tag(w);
        out.push((
            format!("probe.{t}.weight"),
            vec![config.num_classes(), net.features_at(w)],
        ));
        out.push((format!("probe.{t}.bias"), vec![config.num_classes()]));
    }
    out
}

/// Serialises `tensors` with `config` (and the trainer's state, if any) to safetensors
/// bytes.
pub fn to_bytes(
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
) -> Result<Vec<u8>, Error> {
    let config_json = serde_json::to_string(config).map_err(|e| Error::Config(e.to_string()))?;
    let mut metadata = HashMap::from([
        (CONFIG_KEY.to_string(), config_json),
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
    ]);
    if let Some(state) = train_state {
        metadata.insert(TRAIN_STATE_KEY.to_string(), state.to_string());
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes: &[u8] = bytemuck_f32(&t.data);
            TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Config(format!("tensor {name}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Config(e.to_string()))
}

/// Validates and writes a checkpoint atomically (temporary file, fsync, rename).
pub fn save(
    path: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<(), Error> {
    save_with_state(path, config, tensors, None)
}

/// [`save`], also storing the trainer's state (JSON) that a resumed run reads back.
pub fn save_with_state(
    path: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
) -> Result<(), Error> {
    let config = config.clone().validated()?;
    check_tensors(&config, tensors).map_err(|msg| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    })?;
    atomic_write(path, &to_bytes(&config, tensors, train_state)?)
}

/// Reads and validates a checkpoint.
pub fn load(path: &Path) -> Result<Checkpoint, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(path, &bytes)
}

/// Parses checkpoint bytes; `path` is only used in error messages.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint, Error> {
    let fail = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
        fail(format!(
            "not a readable safetensors file ({e}); is it truncated?"
        ))
    })?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        fail(format!(
            "not a readable safetensors file ({e}); is it truncated?"
        ))
    })?;
    let meta = meta.metadata().clone().unwrap_or_default();
    match meta.get(FORMAT_KEY) {
        Some(f) if f == FORMAT => {}
        Some(f) => return Err(fail(format!("format {f:?} is not {FORMAT:?}"))),
        None => {
            return Err(fail(format!(
                "no {FORMAT_KEY:?} metadata: not a slim checkpoint"
            )));
        }
    }
    let config_json = meta
        .get(CONFIG_KEY)
        .ok_or_else(|| fail(format!("no {CONFIG_KEY:?} metadata")))?;
    let config: ModelConfig = serde_json::from_str(config_json)
        .map_err(|e| fail(format!("model config does not parse: {e}")))?;
    let config = config.validated().map_err(|e| fail(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(fail(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, Tensor::new(view.shape().to_vec(), data));
    }
    check_tensors(&config, &tensors).map_err(fail)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        config,
        tensors,
        sha256: hex(&Sha256::digest(bytes)),
        train_state: meta.get(TRAIN_STATE_KEY).cloned(),
    })
}

/// Every required tensor present with the right shape; nothing unknown outside
/// `reference.` and `train.`.
fn check_tensors(config: &ModelConfig, tensors: &BTreeMap<String, Tensor>) -> Result<(), String> {
    let expected = expected_tensors(config);
    for (name, shape) in &expected {
        match tensors.get(name) {
            None => {
                return Err(format!(
                    "tensor {name} is missing (the config describes {} at widths {:?})",
                    config.backbone.name(),
                    config.widths
                ));
            }
            Some(t) if &t.shape != shape => {
                return Err(format!(
                    "tensor {name} has shape {:?} but the config ({}) needs {shape:?}",
                    t.shape,
                    config.backbone.name()
                ));
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = tensors.keys().find(|k| {
        !known.contains(k.as_str()) && !k.starts_with("reference.") && !k.starts_with("train.")
    }) {
        return Err(format!(
            "tensor {extra} is not part of {} at widths {:?}: the config does not match the weights",
            config.backbone.name(),
            config.widths
        ));
    }
    Ok(())
}

impl Checkpoint {
    pub fn tensor(&self, name: &str) -> &Tensor {
        // Presence of every model tensor is checked on load.
        &self.tensors[name]
    }

    /// The index of `w` in the config's widths, or an error naming the widths there are.
    pub fn width_index(&self, w: f64) -> Result<usize, Error> {
        width::find(&self.config.widths, w).ok_or_else(|| Error::Checkpoint {
            path: self.path.clone(),
            msg: format!(
                "holds no width {w}; its widths are {:?}",
                self.config.widths
            ),
        })
    }
}

fn bytemuck_f32(data: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every bit pattern is a valid u8; the slice covers
    // exactly the same memory. safetensors stores little-endian, which is what this
    // crate supports (checked below).
    const _: () = assert!(cfg!(target_endian = "little"));
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

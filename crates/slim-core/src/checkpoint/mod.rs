//! Checkpoints: one safetensors file holding the shared full-width weights, each width's
//! BatchNorm and probe, optional reference outputs, and the [`ModelConfig`] as JSON in the
//! safetensors metadata. Written atomically; read without libtorch.
//!
//! Tensor names (`t` is a width tag from [`crate::Width::tag`]):
//! - `{conv}.weight`: full-width conv weight, `[out, in/groups, k, k]`;
//! - `{conv}.bn.{t}.{weight,bias,running_mean,running_var}`: that width's BatchNorm,
//!   sized to the width's channel count;
//! - `probe.{t}.weight` `[classes, features_at(w)]`, `probe.{t}.bias` `[classes]`;
//! - `reference.image` `[n, c, h, w]` and `reference.{t}.{embedding,logits}`: outputs of
//!   the training framework's eval-mode forward pass, saved with the weights so that the
//!   exporter can ship them as ONNX test data without linking libtorch;
//! - `train.*`: training state (heads, optimizer); ignored by readers of the model.
//!
//! Metadata: `slim.format`, `slim.config` (the [`ModelConfig`]), and optionally
//! `slim.train_state` (the trainer's JSON) and `slim.recalibration` (a [`Recalibration`]:
//! the BatchNorm statistics were recomputed on other images after training).

mod header;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::config::ModelConfig;
use crate::fsutil::atomic_write;
use crate::width::Width;

const CONFIG_KEY: &str = "slim.config";
const FORMAT_KEY: &str = "slim.format";
const FORMAT: &str = "slim-checkpoint/1";
const TRAIN_STATE_KEY: &str = "slim.train_state";
const RECALIBRATION_KEY: &str = "slim.recalibration";

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
    /// Set when every width's BatchNorm running statistics were recomputed on other
    /// images after training (`slim-train recalibrate`).
    pub recalibration: Option<Recalibration>,
}

/// The record of a BatchNorm recalibration: every width's running statistics recomputed
/// from `images` images of `data`, nothing else changed. Stored as JSON under
/// `slim.recalibration`; a recalibrated checkpoint recalibrated again keeps the earlier
/// record in `previous`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recalibration {
    /// The dataset path as given.
    pub data: String,
    /// Its split (`train`, or the whole folder of an ImageFolder without splits).
    pub split: String,
    /// The reader's description of what was read (reader, path, split, count).
    pub description: String,
    /// Images the statistics were computed over (after any `--limit`, without those that
    /// failed to decode).
    pub images: usize,
    /// Images that failed to decode and were left out.
    pub skipped: usize,
    pub batch_size: usize,
    /// Seed of the order the images were batched in.
    pub seed: u64,
    /// Whether images of another size or channel count were converted to the model's
    /// input (the runtime's preprocessing) rather than refused.
    pub resized: bool,
    /// SHA-256 of the checkpoint the statistics replaced.
    pub source_sha256: String,
    /// The program that wrote it (`slim-train 0.1.0`).
    pub tool: String,
    /// The record of the checkpoint that was recalibrated, if it was itself recalibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<Recalibration>>,
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
                out.push((format!("{}.bn.{}.{p}", c.name, w.tag()), vec![ch]));
            }
        }
    }
    for &w in &config.widths {
        let t = w.tag();
        out.push((
            format!("probe.{t}.weight"),
            vec![config.num_classes(), net.features_at(w)],
        ));
        out.push((format!("probe.{t}.bias"), vec![config.num_classes()]));
    }
    out
}

/// How tensors are stored on disk. Readers accept all three and return float32;
/// reduced precision halves the size of files kept in bulk (training trajectories).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Precision, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("precision {other:?}: use f32, f16 or bf16")),
        }
    }
}

impl Precision {
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 => 2,
        }
    }

    fn dtype(self) -> Dtype {
        match self {
            Precision::F32 => Dtype::F32,
            Precision::F16 => Dtype::F16,
            Precision::Bf16 => Dtype::BF16,
        }
    }

    fn encode(self, data: &[f32]) -> Vec<u8> {
        match self {
            Precision::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::F16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            Precision::Bf16 => data
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }
}

/// Float32 values of a stored F32, F16 or BF16 tensor.
fn decode(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Serialises `tensors` with `config` (and the trainer's state, if any) to safetensors
/// bytes, in float32.
pub fn to_bytes(
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
) -> Result<Vec<u8>, Error> {
    to_bytes_as(config, tensors, train_state, Precision::F32)
}

/// [`to_bytes`] with the tensors stored at `precision`.
pub fn to_bytes_as(
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
    precision: Precision,
) -> Result<Vec<u8>, Error> {
    serialize(config, tensors, train_state, None, precision)
}

fn serialize(
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
    recalibration: Option<&Recalibration>,
    precision: Precision,
) -> Result<Vec<u8>, Error> {
    let config_json = serde_json::to_string(config).map_err(|e| Error::Config(e.to_string()))?;
    let mut metadata = HashMap::from([
        (CONFIG_KEY.to_string(), config_json),
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
    ]);
    if let Some(state) = train_state {
        metadata.insert(TRAIN_STATE_KEY.to_string(), state.to_string());
    }
    if let Some(r) = recalibration {
        let json = serde_json::to_string(r).map_err(|e| Error::Config(e.to_string()))?;
        metadata.insert(RECALIBRATION_KEY.to_string(), json);
    }
    let encoded: Vec<(&String, &Tensor, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| (name, t, precision.encode(&t.data)))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = encoded
        .iter()
        .map(|(name, t, bytes)| {
            TensorView::new(precision.dtype(), t.shape.clone(), bytes)
                .map(|v| (name.to_string(), v))
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
    save_as(path, config, tensors, train_state, Precision::F32)
}

/// [`save_with_state`] with the tensors stored at `precision`.
pub fn save_as(
    path: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
    precision: Precision,
) -> Result<(), Error> {
    write(path, config, tensors, train_state, None, precision)
}

/// [`save_with_state`], also recording a BatchNorm recalibration (`slim.recalibration`).
pub fn save_recalibrated(
    path: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
    recalibration: Option<&Recalibration>,
) -> Result<(), Error> {
    write(
        path,
        config,
        tensors,
        train_state,
        recalibration,
        Precision::F32,
    )
}

fn write(
    path: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    train_state: Option<&str>,
    recalibration: Option<&Recalibration>,
    precision: Precision,
) -> Result<(), Error> {
    let config = config.clone().validated()?;
    check_tensors(&config, tensors).map_err(|msg| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    })?;
    atomic_write(
        path,
        &serialize(&config, tensors, train_state, recalibration, precision)?,
    )
}

/// Reads and validates a checkpoint.
pub fn load(path: &Path) -> Result<Checkpoint, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(path, &bytes)
}

/// The training state (JSON) a checkpoint's header records, read from the header alone
/// (its length bounded to 100 MB, as safetensors bounds it), without the tensor data:
/// what TWA reads of each trajectory checkpoint to choose its basis.
pub fn train_state(path: &Path) -> Result<Option<String>, Error> {
    use std::io::Read;
    let fail = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| fail(format!("no safetensors header ({e})")))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(fail(format!("its header claims {len} bytes, over 100 MB")));
    }
    let mut header = Vec::new();
    f.take(len)
        .read_to_end(&mut header)
        .map_err(|e| Error::io(path, e))?;
    if header.len() as u64 != len {
        return Err(fail(format!("ends inside its {len}-byte header")));
    }
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| fail(format!("its header is not JSON ({e})")))?;
    Ok(json["__metadata__"][TRAIN_STATE_KEY]
        .as_str()
        .map(String::from))
}

/// Parses checkpoint bytes; `path` is only used in error messages.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint, Error> {
    let fail = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    header::check(bytes).map_err(&fail)?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| fail(format!("not a readable safetensors file ({e})")))?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| fail(format!("not a readable safetensors file ({e})")))?;
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
        let data = decode(view.dtype(), view.data()).ok_or_else(|| {
            fail(format!(
                "tensor {name} is {:?}, expected F32, F16 or BF16",
                view.dtype()
            ))
        })?;
        tensors.insert(name, Tensor::new(view.shape().to_vec(), data));
    }
    check_tensors(&config, &tensors).map_err(fail)?;
    let recalibration = meta
        .get(RECALIBRATION_KEY)
        .map(|json| serde_json::from_str(json))
        .transpose()
        .map_err(|e| {
            fail(format!(
                "{RECALIBRATION_KEY:?} metadata does not parse: {e}"
            ))
        })?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        config,
        tensors,
        sha256: hex(&Sha256::digest(bytes)),
        train_state: meta.get(TRAIN_STATE_KEY).cloned(),
        recalibration,
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
        !known.contains(k.as_str())
            && !k.starts_with(names::REFERENCE)
            && !k.starts_with(names::TRAIN)
    }) {
        return Err(format!(
            "tensor {extra} is not part of {} at widths {:?}: the config does not match the weights",
            config.backbone.name(),
            config.widths
        ));
    }
    Ok(())
}

/// The names of a checkpoint's tensors beyond the model's own (which are named by the
/// architecture description), written by slim-train and read by slim-export.
pub mod names {
    /// Prefix of what only training needs: the projection head (`train.head.*`), MoCo v3's
    /// predictor, the optimiser state ([`OPTIMIZER`]), MoCo's key encoder ([`KEY_ENCODER`])
    /// and queue ([`QUEUE`]). slim-export leaves these out of the graphs.
    pub const TRAIN: &str = "train.";
    /// Under [`TRAIN`]: a momentum buffer of the parameter named after it.
    pub const OPTIMIZER: &str = "opt.";
    /// Under [`TRAIN`]: MoCo's key-encoder copy of the variable named after it.
    pub const KEY_ENCODER: &str = "key.";
    /// Under [`TRAIN`]: MoCo v2's queue of keys.
    pub const QUEUE: &str = "queue";
    /// Prefix of the reference outputs of the tch forward pass, the exporter's test data.
    pub const REFERENCE: &str = "reference.";
    /// The reference input images `[N, C, S, S]`.
    pub const REFERENCE_IMAGE: &str = "reference.image";

    /// `train.{name}`.
    pub fn train(name: &str) -> String {
        format!("{TRAIN}{name}")
    }

    /// The reference embedding of the width tagged `tag` (`reference.w250.embedding`).
    pub fn reference_embedding(tag: &str) -> String {
        format!("{REFERENCE}{tag}.embedding")
    }

    /// The reference logits of the width tagged `tag`.
    pub fn reference_logits(tag: &str) -> String {
        format!("{REFERENCE}{tag}.logits")
    }
}

impl Checkpoint {
    pub fn tensor(&self, name: &str) -> &Tensor {
        // Presence of every model tensor is checked on load.
        &self.tensors[name]
    }

    /// The index of `w` in the config's widths, or an error naming the widths there are.
    pub fn width_index(&self, w: Width) -> Result<usize, Error> {
        self.config
            .widths
            .iter()
            .position(|&x| x == w)
            .ok_or_else(|| Error::Checkpoint {
                path: self.path.clone(),
                msg: format!(
                    "holds no width {w}; its widths are {:?}",
                    self.config.widths
                ),
            })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backbone;

    /// A small ResNet-20 config and random tensors for it.
    fn small() -> (ModelConfig, BTreeMap<String, Tensor>) {
        let config = ModelConfig::new(
            Backbone::Resnet20,
            1,
            8,
            vec!["a".into(), "b".into()],
            vec![0.5],
            vec![0.25],
        );
        let tensors = crate::init::random_tensors(&config, 3);
        (config, tensors)
    }

    #[test]
    fn a_recalibration_record_round_trips_and_is_absent_otherwise() {
        let (config, tensors) = small();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.safetensors");
        save_with_state(&plain, &config, &tensors, Some("{}")).unwrap();
        assert_eq!(load(&plain).unwrap().recalibration, None);
        let first = Recalibration {
            data: "/data/a".into(),
            split: "train".into(),
            description: "IDX /data/a (train split, 10 images)".into(),
            images: 10,
            skipped: 0,
            batch_size: 4,
            seed: 1,
            resized: false,
            source_sha256: load(&plain).unwrap().sha256,
            tool: "test".into(),
            previous: None,
        };
        let again = Recalibration {
            images: 7,
            previous: Some(Box::new(first.clone())),
            ..first.clone()
        };
        let path = dir.path().join("recalibrated.safetensors");
        save_recalibrated(&path, &config, &tensors, Some("{}"), Some(&again)).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.recalibration.as_ref(), Some(&again));
        assert_eq!(back.train_state.as_deref(), Some("{}"));
        assert_eq!(back.tensors, tensors);
    }

    #[test]
    fn the_train_state_is_read_from_the_header_alone() {
        let (config, tensors) = small();
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with.safetensors");
        save_with_state(&with, &config, &tensors, Some("{\"step\":7}")).unwrap();
        assert_eq!(train_state(&with).unwrap().as_deref(), Some("{\"step\":7}"));
        let without = dir.path().join("without.safetensors");
        save(&without, &config, &tensors).unwrap();
        assert_eq!(train_state(&without).unwrap(), None);
        // Cut inside the header, or a header length out of bounds: errors naming the file.
        let bytes = std::fs::read(&with).unwrap();
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..40]).unwrap();
        let e = train_state(&cut).unwrap_err().to_string();
        assert!(
            e.contains("cut.safetensors") && e.contains("ends inside"),
            "{e}"
        );
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&cut, &huge).unwrap();
        let e = train_state(&cut).unwrap_err().to_string();
        assert!(e.contains("over 100 MB"), "{e}");
    }

    #[test]
    fn reduced_precision_round_trips_within_its_rounding() {
        let config = ModelConfig::new(
            Backbone::Resnet20,
            1,
            8,
            vec!["a".into(), "b".into()],
            vec![0.5],
            vec![0.25],
        );
        let tensors = crate::init::random_tensors(&config, 7);
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("f32.safetensors");
        save(&full, &config, &tensors).unwrap();
        let full_size = std::fs::metadata(&full).unwrap().len();
        for (precision, rel) in [(Precision::F16, 1e-3), (Precision::Bf16, 8e-3)] {
            let path = dir.path().join(format!("{precision:?}.safetensors"));
            save_as(&path, &config, &tensors, None, precision).unwrap();
            let back = load(&path).unwrap();
            let mut worst = 0f32;
            for (name, t) in &tensors {
                let b = &back.tensors[name];
                assert_eq!(b.shape, t.shape, "{name}");
                for (x, y) in t.data.iter().zip(&b.data) {
                    worst = worst.max((x - y).abs() / x.abs().max(1e-2));
                }
            }
            assert!(
                worst > 0.0,
                "{precision:?} stored values exactly: not reduced"
            );
            assert!(worst < rel, "{precision:?}: relative error {worst}");
            // Half the bytes of float32, up to the shared header.
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size * 10 < full_size * 6, "{size} vs {full_size}");
        }
    }
}

//! The libtorch side of slim-core's checkpoint format ([`slim_core::checkpoint`]):
//! [`save`] writes a [`SlimNet`]'s tensors together with reference outputs of its
//! eval-mode forward pass (so that exporters can check themselves without libtorch),
//! [`save_keeping`] writes one over the rest of the checkpoint it came from,
//! [`save_snapshot`] writes a lighter trajectory checkpoint, and
//! [`load`] rebuilds a [`SlimNet`] in a fresh var store from a checkpoint file.

use std::collections::BTreeMap;
use std::path::Path;

use slim_core::checkpoint::{Precision, Recalibration, names};
use slim_core::rng::SplitMix64;
use slim_core::{Checkpoint, ModelConfig};
use tch::{Device, Kind, Tensor, nn};

use crate::{Error, SlimNet};

/// Images in `reference.image`.
pub const REFERENCE_BATCH: usize = 2;
const REFERENCE_SEED: u64 = 0x5EED_5113_C1A2;

/// Copies a tensor to a slim-core tensor: float32, contiguous, on the CPU.
pub fn to_core(t: &Tensor) -> Result<slim_core::Tensor, Error> {
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let flat = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_flatten(0, -1)?;
    let data = Vec::<f32>::try_from(&flat)?;
    Ok(slim_core::Tensor::new(shape, data))
}

/// Copies a slim-core tensor to a float32 tensor on `device`.
pub fn from_core(t: &slim_core::Tensor, device: Device) -> Result<Tensor, Error> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_slice(&t.data)?
        .f_reshape(shape)?
        .f_to_device(device)?)
}

/// The fixed input of the reference outputs: `[REFERENCE_BATCH, C, S, S]` standard-normal
/// values (the network's input is normalized pixels), drawn by a seeded generator of this
/// crate's own so that it is the same on every device and leaves libtorch's random
/// stream alone.
pub fn reference_image(config: &ModelConfig) -> slim_core::Tensor {
    let s = config.input.image_size;
    let shape = vec![REFERENCE_BATCH, config.input.in_channels, s, s];
    let mut rng = SplitMix64(REFERENCE_SEED);
    let data = (0..shape.iter().product()).map(|_| rng.normal()).collect();
    slim_core::Tensor::new(shape, data)
}

/// Writes `net` to `path` atomically as a slim-core checkpoint: every model tensor, the
/// reference image with every width's eval-mode `reference.{tag}.{embedding,logits}`,
/// and each of `train` (training state: heads, optimizer) as `train.{name}`.
pub fn save(path: &Path, net: &SlimNet, train: &[(&str, &Tensor)]) -> Result<(), Error> {
    save_with_state(path, net, train, None)
}

/// [`save`], also storing the trainer's state (JSON) that `--resume` reads back.
pub fn save_with_state(
    path: &Path,
    net: &SlimNet,
    train: &[(&str, &Tensor)],
    train_state: Option<&str>,
) -> Result<(), Error> {
    let mut tensors = core_tensors(net, train)?;
    insert_references(net, &mut tensors)?;
    slim_core::checkpoint::save_with_state(path, net.config(), &tensors, train_state)?;
    Ok(())
}

/// Writes `net` to `path` atomically in place of `source`, the checkpoint it was loaded
/// from: `net`'s model tensors and fresh reference outputs, and everything else of
/// `source` as it was: its `train.*` tensors (bit for bit, not through libtorch), its
/// training state, and its recalibration record unless `recalibration` replaces it.
pub fn save_keeping(
    path: &Path,
    net: &SlimNet,
    source: &Checkpoint,
    recalibration: Option<&Recalibration>,
) -> Result<(), Error> {
    let mut tensors = core_tensors(net, &[])?;
    insert_references(net, &mut tensors)?;
    for (name, t) in &source.tensors {
        if name.starts_with(names::TRAIN) {
            tensors.insert(name.clone(), t.clone());
        }
    }
    slim_core::checkpoint::save_recalibrated(
        path,
        net.config(),
        &tensors,
        source.train_state.as_deref(),
        recalibration.or(source.recalibration.as_ref()),
    )?;
    Ok(())
}

/// Adds the reference image and every width's eval-mode embedding and logits of it.
fn insert_references(
    net: &SlimNet,
    tensors: &mut BTreeMap<String, slim_core::Tensor>,
) -> Result<(), Error> {
    let image = reference_image(net.config());
    let x = from_core(&image, net.device())?;
    tensors.insert(names::REFERENCE_IMAGE.to_string(), image);
    for &w in net.widths() {
        let (embedding, logits) = tch::no_grad(|| net.forward_t(&x, w, false));
        let t = w.tag();
        tensors.insert(names::reference_embedding(&t), to_core(&embedding)?);
        tensors.insert(names::reference_logits(&t), to_core(&logits)?);
    }
    Ok(())
}

/// A trajectory checkpoint: the model tensors and `train` (the projection head) at
/// `precision`, with the trainer's state, and no reference outputs.
pub fn save_snapshot(
    path: &Path,
    net: &SlimNet,
    train: &[(&str, &Tensor)],
    train_state: &str,
    precision: Precision,
) -> Result<(), Error> {
    let tensors = core_tensors(net, train)?;
    slim_core::checkpoint::save_as(path, net.config(), &tensors, Some(train_state), precision)?;
    Ok(())
}

/// Every model tensor of `net` and each of `train` as `train.{name}`, on the CPU.
fn core_tensors(
    net: &SlimNet,
    train: &[(&str, &Tensor)],
) -> Result<BTreeMap<String, slim_core::Tensor>, Error> {
    let mut tensors = BTreeMap::new();
    for (name, t) in net.named_tensors() {
        tensors.insert(name, to_core(&t)?);
    }
    for (name, t) in train {
        tensors.insert(names::train(name), to_core(t)?);
    }
    Ok(tensors)
}

/// Reads and validates the checkpoint at `path` (names and shapes, see
/// [`slim_core::checkpoint::load`]) and copies its model tensors into a [`SlimNet`] in a
/// fresh var store on `device`. The returned [`Checkpoint`] keeps every tensor of the
/// file, `reference.*` and `train.*` included.
pub fn load(path: &Path, device: Device) -> Result<(SlimNet, nn::VarStore, Checkpoint), Error> {
    let checkpoint = slim_core::checkpoint::load(path)?;
    let vs = nn::VarStore::new(device);
    let net = SlimNet::new(&vs.root(), &checkpoint.config)?;
    tch::no_grad(|| -> Result<(), Error> {
        for (name, mut var) in net.named_tensors() {
            var.f_copy_(&from_core(checkpoint.tensor(&name), device)?)?;
        }
        Ok(())
    })?;
    Ok((net, vs, checkpoint))
}

/// The training-state tensor saved as `train.{name}`, on `device`, if there is one.
pub fn train_tensor(
    checkpoint: &Checkpoint,
    name: &str,
    device: Device,
) -> Result<Option<Tensor>, Error> {
    checkpoint
        .tensors
        .get(&names::train(name))
        .map(|t| from_core(t, device))
        .transpose()
}

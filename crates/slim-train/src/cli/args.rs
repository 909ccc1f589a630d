//! Arguments shared by the subcommands, and the parsers that refuse bad values before any
//! work starts (clap reports them with the flag's name).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use serde::de::DeserializeOwned;
use slim_data::{Dataset, Split, Subset};
use tch::Device;

/// Where the images come from.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// ImageFolder folder or .zip, CIFAR-10/100 binary archive, or a folder of IDX files
    /// (e.g. /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data: PathBuf,
    /// Use at most this many images (evenly spaced over the split).
    #[arg(long, value_parser = positive)]
    pub limit: Option<usize>,
    /// Decoding and augmentation threads.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub workers: usize,
}

impl DataArgs {
    pub fn open(&self, split: Split) -> Result<Arc<dyn Dataset>> {
        let ds = slim_data::open(&self.data, split)?;
        Ok(match self.limit {
            Some(n) => Arc::new(Subset::evenly(Arc::from(ds), n)),
            None => Arc::from(ds),
        })
    }
}

/// How many images of each split an evaluation embeds (evenly spaced).
#[derive(Debug, Args)]
pub struct EvalLimits {
    /// At most this many training images (the kNN memory, the probe's training set).
    #[arg(long, value_parser = positive)]
    pub limit_train: Option<usize>,
    /// At most this many test images.
    #[arg(long, value_parser = positive)]
    pub limit_test: Option<usize>,
}

/// Which device runs the network.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// cpu, cuda, or auto (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        Ok(match self.device.as_str() {
            "cpu" => Device::Cpu,
            "cuda" if tch::Cuda::is_available() => Device::Cuda(0),
            "cuda" if cfg!(feature = "cuda") => bail!(
                "--device cuda: libtorch sees no CUDA device (is there a GPU and its driver, and is LD_LIBRARY_PATH on torch's CUDA libraries?)"
            ),
            "cuda" => bail!(
                "--device cuda: this binary was built without the `cuda` feature, so libtorch sees no GPU; build it with tools/build_cuda.sh"
            ),
            "auto" => Device::cuda_if_available(),
            other => bail!("--device {other:?}: use cpu, cuda or auto"),
        })
    }
}

/// A speed setting that is only worth it on some devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    Auto,
    On,
    Off,
}

impl Toggle {
    /// On, off, or (auto) on for CUDA devices.
    pub fn on(self, device: Device) -> bool {
        match self {
            Toggle::Auto => device.is_cuda(),
            Toggle::On => true,
            Toggle::Off => false,
        }
    }
}

/// Refuses an `--out` checkpoint file that is the input `--checkpoint` itself or a
/// folder: commands that write a new checkpoint never overwrite the one they read.
pub fn new_checkpoint_path(checkpoint: &Path, out: &Path) -> Result<()> {
    if crate::recalibrate::same_file(checkpoint, out) || checkpoint == out {
        bail!(
            "--out {} is the input --checkpoint: write the new checkpoint to another file (the input is never overwritten)",
            out.display()
        );
    }
    if out.is_dir() {
        bail!(
            "--out {} is a folder: give the path of the checkpoint file to write",
            out.display()
        );
    }
    Ok(())
}

/// Makes the folder that the checkpoint file `out` goes into.
pub fn make_parent(out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?;
    }
    Ok(())
}

/// A count that must be at least 1 (`--workers`, `--batch-size`, `--epochs`, ...).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}

/// A finite number above 0 (temperatures, learning rates).
pub fn above_zero(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number above 0".into()),
        Err(e) => Err(format!("{e}")),
    }
}

/// A fraction in (0, 1] (crop scales, smoothing weights).
pub fn unit_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(_) => Err("must be above 0 and at most 1".into()),
        Err(e) => Err(format!("{e}")),
    }
}

/// A library enum by its serde name, the spelling checkpoints store (`moco-v2`, `lars`,
/// `per-block`), so that library types need no clap derive.
pub fn by_name<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fractions_and_names_are_checked() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err() && positive("-1").is_err() && positive("x").is_err());
        assert_eq!(above_zero("0.5"), Ok(0.5));
        assert!(above_zero("0").is_err() && above_zero("inf").is_err());
        assert_eq!(unit_fraction("1"), Ok(1.0));
        assert!(unit_fraction("0").is_err() && unit_fraction("1.5").is_err());
        use crate::pretrain::Framework;
        assert_eq!(by_name::<Framework>("moco-v3"), Ok(Framework::MocoV3));
        let e = by_name::<Framework>("byol").unwrap_err();
        assert!(e.contains("moco-v2"), "{e}");
    }
}

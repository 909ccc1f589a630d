//! BatchNorm recalibration for a new domain: a checkpoint's every width's BatchNorm
//! running statistics recomputed on other images ([`crate::eval::recompute_batchnorm`]),
//! written as a new checkpoint that differs from its input only there (and in the
//! reference outputs, which follow from them), with a [`Recalibration`] record.
//!
//! Nothing is learned: conv weights, BatchNorm affine parameters, the probe (trained on
//! the old domain) and the training state are copied bit for bit.

use std::path::Path;
use std::sync::Arc;

use slim_core::Progress;
use slim_core::checkpoint::Recalibration;
use slim_data::{Dataset, Split};
use tch::Device;

use crate::eval::{BatchNormData, BatchNormReport, recompute_batchnorm};
use crate::{Error, checkpoint};

/// What [`recalibrate`] did.
#[derive(Clone, Debug)]
pub struct Recalibrated {
    /// The images used.
    pub report: BatchNormReport,
    /// The record written into the new checkpoint.
    pub record: Recalibration,
}

/// Reads the checkpoint `source`, recomputes every width's BatchNorm statistics on
/// `dataset` (the `split` of `data`, as opened by the caller) and writes the result to
/// `out` atomically ([`checkpoint::save_keeping`]). Refuses an `out` that is `source`
/// (the same file under any name) before reading anything; writes nothing on any error.
#[allow(clippy::too_many_arguments)]
pub fn recalibrate(
    source: &Path,
    out: &Path,
    data: &Path,
    split: Split,
    dataset: Arc<dyn Dataset>,
    bn: &BatchNormData,
    device: Device,
    progress: &mut dyn Progress,
) -> Result<Recalibrated, Error> {
    if same_file(source, out) {
        return Err(Error::Recalibrate(format!(
            "the output {} is the input checkpoint {}: write the recalibrated checkpoint elsewhere (the input is never overwritten)",
            out.display(),
            source.display()
        )));
    }
    let (net, _vs, ckpt) = checkpoint::load(source, device)?;
    let description = dataset.describe();
    let report = recompute_batchnorm(&net, dataset, bn, progress)?;
    let record = Recalibration {
        data: data.display().to_string(),
        split: split.name().to_string(),
        description,
        images: report.images,
        skipped: report.skipped.len(),
        batch_size: bn.batch_size.max(2),
        seed: bn.seed,
        resized: bn.resize,
        source_sha256: ckpt.sha256.clone(),
        tool: format!("slim-train {}", env!("CARGO_PKG_VERSION")),
        previous: ckpt.recalibration.clone().map(Box::new),
    };
    checkpoint::save_keeping(out, &net, &ckpt, Some(&record))?;
    Ok(Recalibrated { report, record })
}

/// Whether `a` and `b` name one existing file (the same path, links to it, or hard links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
            return true;
        }
    }
    let _ = (ma, mb);
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(x), Ok(y)) if x == y
    )
}

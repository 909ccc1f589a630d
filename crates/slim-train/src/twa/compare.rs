//! What TWA is compared with: the SWA point (the checkpoints' plain mean) as a network,
//! and the comparison of the last checkpoint, SWA and TWA per width as a table.

use slim_core::Width;
use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Tensor, nn};

use super::Subspace;
use crate::{Error, SlimNet, checkpoint};

/// The SWA point: `last`'s network (its BatchNorm and probes) with every weight the
/// subspace spans set to the checkpoints' mean. Its BatchNorm statistics belong to
/// `last`'s weights: recompute them ([`crate::eval::recompute_batchnorm`]).
pub fn swa_network(
    subspace: &Subspace,
    last: &Path,
    device: Device,
) -> Result<(SlimNet, nn::VarStore), Error> {
    let (net, vs, _) = checkpoint::load(last, device)?;
    let by_name: HashMap<String, Tensor> = net.named_tensors().into_iter().collect();
    tch::no_grad(|| {
        for (name, w) in subspace.mean_weights() {
            if let Some(v) = by_name.get(&name) {
                v.shallow_clone().copy_(&w);
            }
        }
    });
    Ok((net, vs))
}

/// One model's row of the TWA comparison.
#[derive(Debug, serde::Serialize)]
pub struct Compared {
    pub model: String,
    /// The SlimCLR objective on fixed batches (SWA and TWA points; BatchNorm in train mode).
    pub objective: Option<f64>,
    pub widths: Vec<Width>,
    pub knn_top1: Vec<f64>,
    pub linear_top1: Vec<f64>,
}

/// The comparison as a Markdown table: kNN / linear top-1 per width, and the objective.
pub fn comparison_table(rows: &[Compared]) -> String {
    let widths = &rows[0].widths;
    let mut out = String::from("| model | objective |");
    for w in widths {
        out += &format!(" {w} kNN | {w} linear |");
    }
    out += "\n|---|---|";
    out += &"---|---|".repeat(widths.len());
    out += "\n";
    for r in rows {
        out += &format!(
            "| {} | {} |",
            r.model,
            r.objective.map_or("-".into(), |v| format!("{v:.4}"))
        );
        for (k, l) in r.knn_top1.iter().zip(&r.linear_top1) {
            out += &format!(" {:.2}% | {:.2}% |", k * 100.0, l * 100.0);
        }
        out += "\n";
    }
    out
}

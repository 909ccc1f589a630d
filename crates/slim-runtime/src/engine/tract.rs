//! tract: pure Rust, the embedded default.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

use super::{Engine, Outputs, Placement, check_input};
use crate::Error;

/// tract: the graph optimised once with a symbolic batch, run with any batch size.
pub struct TractEngine {
    path: PathBuf,
    plan: Arc<TypedSimplePlan>,
    chw: [usize; 3],
}

impl TractEngine {
    pub fn load(
        path: &Path,
        proto: tract_onnx::pb::ModelProto,
        chw: [usize; 3],
    ) -> Result<TractEngine, Error> {
        let fail = |e: TractError| Error::Backend {
            backend: "tract",
            path: path.to_path_buf(),
            msg: format!("{e:#}"),
        };
        let plan = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(fail)?;
        Ok(TractEngine {
            path: path.to_path_buf(),
            plan,
            chw,
        })
    }
}

impl Engine for TractEngine {
    fn run(&self, image: &[f32], batch: usize) -> Result<Outputs, Error> {
        check_input(image, batch, self.chw)?;
        let fail = |e: TractError| Error::Backend {
            backend: "tract",
            path: self.path.clone(),
            msg: format!("{e:#}"),
        };
        let [c, h, w] = self.chw;
        let input = Tensor::from_shape(&[batch, c, h, w], image).map_err(fail)?;
        let out = self.plan.run(tvec![input.into()]).map_err(fail)?;
        let take = |i: usize| -> Result<Vec<f32>, Error> {
            let view = out[i].to_plain_array_view::<f32>().map_err(fail)?;
            Ok(view.iter().copied().collect())
        };
        Ok(Outputs {
            batch,
            embedding: take(0)?,
            logits: take(1)?,
        })
    }

    fn placement(&self) -> Placement {
        Placement::Tract
    }
}

//! The engines that run one width's graph: tract (always built) and ONNX Runtime (feature
//! `ort`). Both take a float32 NCHW batch and return the graph's two outputs.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

use crate::Error;

/// The graph's outputs for a batch of `batch` images, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    pub batch: usize,
    /// `[batch, embedding_dim]`: pooled backbone features.
    pub embedding: Vec<f32>,
    /// `[batch, classes]`: this width's probe.
    pub logits: Vec<f32>,
}

impl Outputs {
    pub fn embedding_row(&self, i: usize) -> &[f32] {
        let d = self.embedding.len() / self.batch;
        &self.embedding[i * d..(i + 1) * d]
    }
    pub fn logits_row(&self, i: usize) -> &[f32] {
        let k = self.logits.len() / self.batch;
        &self.logits[i * k..(i + 1) * k]
    }
}

/// Which engine runs the graphs, and for ONNX Runtime, on what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// tract, pure Rust, CPU.
    Tract,
    /// ONNX Runtime with an execution provider; `fallback` allows falling back to the CPU
    /// provider when the requested one fails to register (reported, never silent).
    Ort { provider: Provider, fallback: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA",
            Provider::TensorRt => "TensorRT",
        }
    }
}

impl Backend {
    /// Parses `tract`, `ort`, `ort-cuda`, `ort-tensorrt`.
    pub fn parse(s: &str) -> Option<Backend> {
        let ort = |provider| Backend::Ort {
            provider,
            fallback: false,
        };
        match s {
            "tract" => Some(Backend::Tract),
            "ort" | "ort-cpu" => Some(ort(Provider::Cpu)),
            "ort-cuda" => Some(ort(Provider::Cuda)),
            "ort-tensorrt" => Some(ort(Provider::TensorRt)),
            _ => None,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Backend::Tract => "tract".into(),
            Backend::Ort { provider, .. } => format!("ort-{}", provider.name().to_lowercase()),
        }
    }
}

/// One loaded graph, shareable across threads.
pub trait Engine: Send + Sync {
    /// Runs `batch` images (`image.len() == batch * C * H * W`).
    fn run(&self, image: &[f32], batch: usize) -> Result<Outputs, Error>;
    /// What actually runs the graph, e.g. `tract` or `ort/CUDA` or
    /// `ort/CPU (fallback: CUDA failed: ...)`.
    fn provider(&self) -> &str;
}

/// Loads `proto` (already read and checked from `path`) into `backend`.
pub fn load(
    backend: &Backend,
    path: &Path,
    proto: tract_onnx::pb::ModelProto,
    input_chw: [usize; 3],
) -> Result<Box<dyn Engine>, Error> {
    match backend {
        Backend::Tract => Ok(Box::new(TractEngine::load(path, proto, input_chw)?)),
        #[cfg(feature = "ort")]
        Backend::Ort { provider, fallback } => Ok(Box::new(crate::ort_engine::OrtEngine::load(
            path, *provider, *fallback, input_chw,
        )?)),
        #[cfg(not(feature = "ort"))]
        Backend::Ort { .. } => Err(Error::Unavailable(
            "this build has no ONNX Runtime backend: rebuild with the cargo feature `ort`".into(),
        )),
    }
}

pub(crate) fn check_input(image: &[f32], batch: usize, chw: [usize; 3]) -> Result<(), Error> {
    let want = batch * chw.iter().product::<usize>();
    if image.len() != want || batch == 0 {
        return Err(Error::InputSize {
            got: image.len(),
            batch,
            shape: chw,
            want,
        });
    }
    Ok(())
}

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

    fn provider(&self) -> &str {
        "tract"
    }
}

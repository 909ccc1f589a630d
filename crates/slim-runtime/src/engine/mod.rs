//! The engines that run one width's graph: the [`Engine`] trait and what it exchanges
//! here, the backends in their own files: [`tract`] (always built) and [`ort`] (ONNX
//! Runtime, feature `ort`). Both take a float32 NCHW batch and return the graph's two
//! outputs.

#[cfg(feature = "ort")]
pub mod ort;
pub mod profile;
pub mod tract;

use std::num::NonZeroUsize;
use std::path::Path;

use crate::Error;
pub use profile::Profile;
pub use tract::TractEngine;

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

    /// The backend a command line asks for, the same way in every binary: `--backend
    /// NAME` ([`Backend::parse`]) and `--fallback`, which only an ONNX Runtime GPU provider
    /// can use.
    pub fn from_flags(name: &str, fallback: bool) -> Result<Backend, String> {
        match Backend::parse(name) {
            None => Err(format!(
                "unknown backend {name:?} (--backend): use tract, ort (ort-cpu), ort-cuda or ort-tensorrt"
            )),
            Some(Backend::Ort { provider, .. }) if provider != Provider::Cpu || !fallback => {
                Ok(Backend::Ort { provider, fallback })
            }
            Some(_) if fallback => Err(format!(
                "--fallback applies to --backend ort-cuda or ort-tensorrt, not {name}"
            )),
            Some(b) => Ok(b),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Backend::Tract => "tract".into(),
            Backend::Ort { provider, .. } => format!("ort-{}", provider.name().to_lowercase()),
        }
    }
}

/// Where a loaded graph really runs: its backend, ONNX Runtime's execution provider, and
/// the provider that was asked for when it failed to register and the engine fell back.
/// Displayed as `tract`, `ort/CUDA` or `ort/CPU (fallback: CUDA failed to register)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Tract,
    Ort {
        provider: Provider,
        fell_back_from: Option<Provider>,
    },
}

impl Placement {
    /// The backend that ran, spelled as [`Backend::name`] spells the one asked for:
    /// `tract`, `ort-cpu`, `ort-cuda`, `ort-tensorrt` (a CPU fallback is `ort-cpu`).
    pub fn backend_name(&self) -> String {
        match self {
            Placement::Tract => "tract".into(),
            Placement::Ort { provider, .. } => format!("ort-{}", provider.name().to_lowercase()),
        }
    }

    /// Whether the graph runs on a GPU (CUDA or TensorRT).
    pub fn on_gpu(&self) -> bool {
        matches!(
            self,
            Placement::Ort {
                provider: Provider::Cuda | Provider::TensorRt,
                ..
            }
        )
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Tract => f.write_str("tract"),
            Placement::Ort {
                provider,
                fell_back_from: None,
            } => write!(f, "ort/{}", provider.name()),
            Placement::Ort {
                provider,
                fell_back_from: Some(asked),
            } => write!(
                f,
                "ort/{} (fallback: {} failed to register)",
                provider.name(),
                asked.name()
            ),
        }
    }
}

/// Threads one graph's run may use; `None` leaves it to the engine: tract runs on the
/// calling thread alone, ONNX Runtime keeps one intra-op thread per physical core.
pub type Threads = Option<NonZeroUsize>;

/// One loaded graph, shareable across threads.
pub trait Engine: Send + Sync {
    /// Runs `batch` images (`image.len() == batch * C * H * W`).
    fn run(&self, image: &[f32], batch: usize) -> Result<Outputs, Error>;
    /// Where the graph really runs.
    fn placement(&self) -> Placement;
    /// The threads one run uses, when the engine was told (`None`: the engine's default,
    /// see [`Threads`]).
    fn threads(&self) -> Option<usize>;
    /// Each node's time over `runs` runs of `image` (tract only).
    fn profile(&self, _image: &[f32], _batch: usize, _runs: usize) -> Result<Profile, Error> {
        Err(Error::Unavailable(format!(
            "per-node profiles come from tract; this graph runs on {}",
            self.placement()
        )))
    }
}

/// Loads `proto` (already read and checked from `path`, its data inline) into `backend`:
/// every engine runs this graph, not the file again.
pub fn load(
    backend: &Backend,
    path: &Path,
    proto: tract_onnx::pb::ModelProto,
    input_chw: [usize; 3],
    threads: Threads,
) -> Result<Box<dyn Engine>, Error> {
    match backend {
        Backend::Tract => Ok(Box::new(TractEngine::load(
            path, proto, input_chw, threads,
        )?)),
        #[cfg(feature = "ort")]
        Backend::Ort { provider, fallback } => Ok(Box::new(ort::OrtEngine::load(
            path,
            &prost::Message::encode_to_vec(&proto),
            *provider,
            *fallback,
            input_chw,
            threads,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_names_its_backend_device_and_fallback() {
        let cuda = Placement::Ort {
            provider: Provider::Cuda,
            fell_back_from: None,
        };
        let fell_back = Placement::Ort {
            provider: Provider::Cpu,
            fell_back_from: Some(Provider::Cuda),
        };
        assert_eq!(Placement::Tract.to_string(), "tract");
        assert_eq!(cuda.to_string(), "ort/CUDA");
        assert_eq!(
            fell_back.to_string(),
            "ort/CPU (fallback: CUDA failed to register)"
        );
        assert_eq!(Placement::Tract.backend_name(), "tract");
        assert_eq!(cuda.backend_name(), "ort-cuda");
        assert_eq!(fell_back.backend_name(), "ort-cpu");
        assert!(cuda.on_gpu() && !fell_back.on_gpu() && !Placement::Tract.on_gpu());
        // The names a placement gives are the names a backend is asked for by.
        for b in ["tract", "ort-cpu", "ort-cuda", "ort-tensorrt"] {
            assert_eq!(Backend::parse(b).unwrap().name(), b);
        }
    }

    #[test]
    fn command_lines_ask_for_a_backend_one_way() {
        assert_eq!(Backend::from_flags("tract", false), Ok(Backend::Tract));
        assert_eq!(
            Backend::from_flags("ort-cuda", true),
            Ok(Backend::Ort {
                provider: Provider::Cuda,
                fallback: true
            })
        );
        assert!(
            Backend::from_flags("tract", true)
                .unwrap_err()
                .contains("--fallback")
        );
        assert!(
            Backend::from_flags("ort", true)
                .unwrap_err()
                .contains("--fallback")
        );
        assert!(
            Backend::from_flags("cuda", false)
                .unwrap_err()
                .contains("ort-cuda")
        );
    }
}

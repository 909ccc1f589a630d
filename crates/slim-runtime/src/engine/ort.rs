//! ONNX Runtime through `ort`, loaded dynamically from `ORT_DYLIB_PATH` (tools/setup.sh
//! installs libonnxruntime and writes the variable). An execution provider that fails to
//! register is an error unless fallback was asked for, and the provider in use is reported.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
#[cfg(any(feature = "ort-cuda", feature = "ort-tensorrt"))]
use ort::ep;
use ort::session::Session;
use ort::value::TensorRef;
use slim_core::metadata;

use super::{Engine, Outputs, Placement, Provider, Threads, check_input};
use crate::Error;

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment, loading the library on first use (public for
/// code that also calls ONNX Runtime directly, such as the overhead benchmark).
pub fn environment() -> Result<&'static Environment, Error> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = std::env::var("ORT_DYLIB_PATH").map_err(|_| {
                "ONNX Runtime is not configured: set ORT_DYLIB_PATH to libonnxruntime.so \
                 (source .deps/env.sh after tools/setup.sh)"
                    .to_string()
            })?;
            if !Path::new(&path).is_file() {
                return Err(format!(
                    "ORT_DYLIB_PATH={path}: no such file (run tools/setup.sh)"
                ));
            }
            ort::init_from(&path)
                .map_err(|e| format!("{path}: cannot load ONNX Runtime: {e}"))?
                .with_name("slim-runtime")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("{path}: cannot start ONNX Runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| Error::Unavailable(e.clone()))
}

pub struct OrtEngine {
    path: PathBuf,
    session: Mutex<Session>,
    placement: Placement,
    chw: [usize; 3],
    threads: Threads,
}

impl OrtEngine {
    /// Loads the graph `bytes` (read from `path`, named in messages).
    pub fn load(
        path: &Path,
        bytes: &[u8],
        provider: Provider,
        fallback: bool,
        chw: [usize; 3],
        threads: Threads,
    ) -> Result<OrtEngine, Error> {
        let env = environment()?;
        let fail = |msg: String| Error::Backend {
            backend: "onnxruntime",
            path: path.to_path_buf(),
            msg,
        };
        // A model holds one session per width in one process: an intra-op pool that keeps
        // spinning after its call (ONNX Runtime's default) takes the cores from the next
        // call on another width. Measured on 2 cores (benches/overhead.rs): with spinning,
        // a session next to another ran width 1.0 in 0.83-0.93 ms; without, 0.54 ms.
        let mut builder = Session::builder(env)
            .map_err(|e| fail(e.to_string()))?
            .with_intra_op_spinning(false)
            .map_err(|e| fail(e.to_string()))?;
        if let Some(n) = threads {
            builder = builder
                .with_intra_threads(n.get())
                .map_err(|e| fail(e.to_string()))?;
        }
        let dispatch = match provider {
            Provider::Cpu => None,
            #[cfg(feature = "ort-cuda")]
            Provider::Cuda => Some(ep::CUDA::default().build().error_on_failure()),
            #[cfg(feature = "ort-tensorrt")]
            Provider::TensorRt => Some(ep::TensorRT::default().build().error_on_failure()),
            #[allow(unreachable_patterns)]
            other => {
                let feature = match other {
                    Provider::Cuda => "ort-cuda",
                    _ => "ort-tensorrt",
                };
                return Err(Error::Unavailable(format!(
                    "execution provider {} is not in this build: rebuild slim-runtime with the cargo feature `{feature}`",
                    other.name()
                )));
            }
        };
        let registered = Placement::Ort {
            provider,
            fell_back_from: None,
        };
        let (mut builder, placement) = match dispatch {
            None => (builder, registered),
            Some(d) => match builder.with_execution_providers([d]) {
                Ok(b) => (b, registered),
                Err(e) if fallback => (
                    e.recover(),
                    Placement::Ort {
                        provider: Provider::Cpu,
                        fell_back_from: Some(provider),
                    },
                ),
                Err(e) => {
                    return Err(fail(format!(
                        "execution provider {} failed to register: {e}",
                        provider.name()
                    )));
                }
            },
        };
        let session = builder
            .commit_from_memory(bytes)
            .map_err(|e| fail(e.to_string()))?;
        Ok(OrtEngine {
            path: path.to_path_buf(),
            session: Mutex::new(session),
            placement,
            chw,
            threads,
        })
    }
}

impl Engine for OrtEngine {
    fn run(&self, image: &[f32], batch: usize) -> Result<Outputs, Error> {
        check_input(image, batch, self.chw)?;
        let fail = |e: ort::Error| Error::Backend {
            backend: "onnxruntime",
            path: self.path.clone(),
            msg: e.to_string(),
        };
        let [c, h, w] = self.chw;
        let input = TensorRef::from_array_view(([batch, c, h, w], image)).map_err(fail)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let out = session
            .run(ort::inputs![metadata::INPUT => input])
            .map_err(fail)?;
        let take = |name: &str| -> Result<Vec<f32>, Error> {
            let (_, data) = out[name].try_extract_tensor::<f32>().map_err(fail)?;
            Ok(data.to_vec())
        };
        Ok(Outputs {
            batch,
            embedding: take(metadata::EMBEDDING)?,
            logits: take(metadata::LOGITS)?,
        })
    }

    fn placement(&self) -> Placement {
        self.placement
    }

    fn threads(&self) -> Option<usize> {
        self.threads.map(NonZeroUsize::get)
    }
}

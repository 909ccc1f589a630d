//! tract: pure Rust, the embedded default.
//!
//! The graph is optimised once for one image of the concrete input shape, so that tract
//! picks its kernels for the known shape, and a batch runs image by image on that plan:
//! up to `threads` images at a time on a shared rayon pool, whose threads also serve
//! tract-linalg's multithreaded kernels at batch 1. Measured on 2 cores (slim-bench's
//! `engines` benchmark, README): 0.09-0.81x the time of a plan with a symbolic batch at
//! batch 1, and image by image beat a plan for the whole batch of 32 on every model and
//! width (MobileNetV2's spent half its time in transposes and unfused bias additions
//! that the batch-1 plan does not have).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use tract_onnx::prelude::multithread::{self, Executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_core;

use super::profile::{NodeTime, Profile};
use super::{Engine, Outputs, Placement, Threads, check_input};
use crate::Error;

pub struct TractEngine {
    path: PathBuf,
    chw: [usize; 3],
    /// Optimised for `[1, C, H, W]`.
    plan: Arc<TypedSimplePlan>,
    /// `None`: the calling thread alone.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl TractEngine {
    pub fn load(
        path: &Path,
        proto: tract_onnx::pb::ModelProto,
        chw: [usize; 3],
        threads: Threads,
    ) -> Result<TractEngine, Error> {
        let threads = threads.map_or(1, NonZeroUsize::get);
        let pool = (threads > 1).then(|| pool(threads, path)).transpose()?;
        let [c, h, w] = chw;
        let one_image = InferenceFact::dt_shape(f32::datum_type(), tvec![1, c, h, w]);
        // No executor in the plan: each run names its own (see `run_one`).
        let plan = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .and_then(|m| m.with_input_fact(0, one_image))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| fail(path, e))?;
        Ok(TractEngine {
            path: path.to_path_buf(),
            chw,
            plan,
            pool,
        })
    }

    /// Where one image's kernels run when it is the only work: the pool, if there is one.
    fn kernel_executor(&self) -> Executor {
        match &self.pool {
            Some(pool) => Executor::MultiThread(pool.clone()),
            None => Executor::SingleThread,
        }
    }

    fn image_tensor(&self, image: &[f32]) -> Result<TValue, Error> {
        let [c, h, w] = self.chw;
        let t = Tensor::from_shape(&[1, c, h, w], image).map_err(|e| fail(&self.path, e))?;
        Ok(t.into())
    }

    /// Runs one image, its kernels on `executor`: its embedding and logits.
    ///
    /// An image that runs as one task of a batch on the pool must run its kernels on its
    /// own thread: a pool thread that waited inside a multithreaded kernel would take up
    /// another image's task, and tract's per-thread scratch space is not re-entrant.
    fn run_one(&self, image: &[f32], executor: Executor) -> Result<[Vec<f32>; 2], Error> {
        let input = self.image_tensor(image)?;
        let out = multithread::multithread_tract_scope(executor, || self.plan.run(tvec![input]))
            .map_err(|e| fail(&self.path, e))?;
        let take = |i: usize| -> Result<Vec<f32>, Error> {
            let view = out[i]
                .to_plain_array_view::<f32>()
                .map_err(|e| fail(&self.path, e))?;
            Ok(view.iter().copied().collect())
        };
        Ok([take(0)?, take(1)?])
    }
}

fn fail(path: &Path, e: TractError) -> Error {
    Error::Backend {
        backend: "tract",
        path: path.to_path_buf(),
        msg: format!("{e:#}"),
    }
}

/// One pool per thread count, shared by every graph in the process (a model's widths
/// run on one core set; a pool each would only multiply idle threads).
fn pool(threads: usize, path: &Path) -> Result<Arc<rayon::ThreadPool>, Error> {
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(p.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("slim-tract-{i}"))
        .build()
        .map_err(|e| Error::Backend {
            backend: "tract",
            path: path.to_path_buf(),
            msg: format!("cannot start a pool of {threads} threads: {e}"),
        })?;
    let pool = Arc::new(pool);
    pools.push((threads, pool.clone()));
    Ok(pool)
}

impl Engine for TractEngine {
    fn run(&self, image: &[f32], batch: usize) -> Result<Outputs, Error> {
        check_input(image, batch, self.chw)?;
        let per_image = image.len() / batch;
        let rows: Vec<[Vec<f32>; 2]> = match &self.pool {
            Some(pool) if batch > 1 => pool.install(|| {
                image
                    .par_chunks(per_image)
                    .map(|x| self.run_one(x, Executor::SingleThread))
                    .collect::<Result<_, _>>()
            })?,
            _ => image
                .chunks(per_image)
                .map(|x| self.run_one(x, self.kernel_executor()))
                .collect::<Result<_, _>>()?,
        };
        let mut out = Outputs {
            batch,
            embedding: Vec::with_capacity(batch * rows[0][0].len()),
            logits: Vec::with_capacity(batch * rows[0][1].len()),
        };
        for [embedding, logits] in rows {
            out.embedding.extend(embedding);
            out.logits.extend(logits);
        }
        Ok(out)
    }

    fn placement(&self) -> Placement {
        Placement::Tract
    }

    fn threads(&self) -> Option<usize> {
        Some(self.pool.as_ref().map_or(1, |p| p.current_num_threads()))
    }

    /// Every image of the batch runs on the one plan, one after another, its kernels on
    /// the pool when there is one.
    fn profile(&self, image: &[f32], batch: usize, runs: usize) -> Result<Profile, Error> {
        check_input(image, batch, self.chw)?;
        let fail = |e| fail(&self.path, e);
        let mut state = TypedSimpleState::new(&self.plan).map_err(fail)?;
        let mut seconds = vec![0.0; self.plan.model().nodes().len()];
        let runs = runs.max(1);
        for _ in 0..runs {
            for x in image.chunks(image.len() / batch) {
                let input = self.image_tensor(x)?;
                multithread::multithread_tract_scope(self.kernel_executor(), || {
                    state.run_plan_with_eval(tvec![input], |ctx, op_state, node, inputs| {
                        let t = Instant::now();
                        let out = tract_core::plan::eval(ctx, op_state, node, inputs);
                        seconds[node.id] += t.elapsed().as_secs_f64();
                        out
                    })
                })
                .map_err(fail)?;
            }
        }
        let model = self.plan.model();
        Ok(Profile {
            batch,
            runs,
            nodes: self
                .plan
                .order_without_consts()
                .iter()
                .map(|&id| NodeTime {
                    node: model.node(id).name.clone(),
                    op: model.node(id).op.name().to_string(),
                    ms: seconds[id] * 1e3 / runs as f64,
                })
                .collect(),
        })
    }
}

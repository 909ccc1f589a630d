//! Running a graph with tract inside the exporter: the float graph with its intermediate
//! tensors as outputs (to calibrate int8 ranges), a derived graph against the float one
//! (to check it), a derived graph on the reference images (its test data).
//!
//! Images run one at a time on a plan optimised for one image, on every core, each thread
//! folding its outputs into its own accumulator.

use tract_onnx::pb::{ModelProto, ValueInfoProto};
use tract_onnx::prelude::*;

/// An optimised tract plan of a graph whose outputs are all float32.
pub(crate) struct Runner {
    plan: Arc<TypedSimplePlan>,
    chw: [usize; 3],
}

impl Runner {
    /// The plan of `model` for one image of `chw`.
    pub fn new(model: &ModelProto, chw: [usize; 3]) -> Result<Runner, String> {
        let [c, h, w] = chw;
        let fact = InferenceFact::dt_shape(f32::datum_type(), tvec![1, c, h, w]);
        let plan = tract_onnx::onnx()
            .model_for_proto_model(model)
            .and_then(|m| m.with_input_fact(0, fact))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("tract cannot run it: {e:#}"))?;
        Ok(Runner { plan, chw })
    }

    /// The plan of `model` with `outputs` (tensor names) as its outputs instead of its own.
    pub fn with_outputs(
        model: &ModelProto,
        chw: [usize; 3],
        outputs: &[String],
    ) -> Result<Runner, String> {
        let mut model = model.clone();
        let graph = model.graph.as_mut().ok_or("the model holds no graph")?;
        graph.output = outputs
            .iter()
            .map(|name| ValueInfoProto {
                name: name.clone(),
                ..Default::default()
            })
            .collect();
        Runner::new(&model, chw)
    }

    fn run_one(&self, image: &[f32]) -> Result<Vec<Vec<f32>>, String> {
        let [c, h, w] = self.chw;
        let input = Tensor::from_shape(&[1, c, h, w], image).map_err(|e| format!("{e:#}"))?;
        let out = self
            .plan
            .run(tvec![input.into()])
            .map_err(|e| format!("tract failed to run it: {e:#}"))?;
        out.iter()
            .map(|t| {
                let view = t
                    .to_plain_array_view::<f32>()
                    .map_err(|e| format!("an output is not float32: {e:#}"))?;
                Ok(view.iter().copied().collect())
            })
            .collect()
    }

    /// Runs each of the `images` (`n` of them, CHW, back to back) and calls
    /// `step(acc, i, outputs)` with image `i`'s outputs, on one accumulator per thread
    /// (made by `init`); returns the accumulators.
    pub fn fold<A: Send>(
        &self,
        images: &[f32],
        n: usize,
        init: impl Fn() -> A + Sync,
        step: impl Fn(&mut A, usize, &[Vec<f32>]) + Sync,
    ) -> Result<Vec<A>, String> {
        let stride = self.chw.iter().product::<usize>();
        assert_eq!(images.len(), n * stride, "images of another shape");
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(n.max(1));
        let per_thread = n.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (init, step) = (&init, &step);
                    s.spawn(move || {
                        let mut acc = init();
                        for i in t * per_thread..((t + 1) * per_thread).min(n) {
                            let out = self.run_one(&images[i * stride..(i + 1) * stride])?;
                            step(&mut acc, i, &out);
                        }
                        Ok(acc)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// Every output of every image, each output's values of all images back to back.
    pub fn run_all(&self, images: &[f32], n: usize) -> Result<Vec<Vec<f32>>, String> {
        let mut rows: Vec<(usize, Vec<Vec<f32>>)> = self
            .fold(images, n, Vec::new, |acc, i, out| {
                acc.push((i, out.to_vec()))
            })?
            .into_iter()
            .flatten()
            .collect();
        rows.sort_by_key(|(i, _)| *i);
        let outputs = rows.first().map_or(0, |(_, o)| o.len());
        Ok((0..outputs)
            .map(|k| {
                rows.iter()
                    .flat_map(|(_, o)| o[k].iter().copied())
                    .collect()
            })
            .collect())
    }
}

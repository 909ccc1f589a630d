//! An exported model folder (manifest plus one graph per width, and per width its f16 and
//! int8 variants where exported) opened with one backend. Graphs load lazily on first use
//! and stay loaded; the model is `Send + Sync`, so one instance serves many threads.
//!
//! Every method that takes a graph takes `impl Into<Variant>`: a [`Width`] means that
//! width's float graph, a [`Variant`] names a precision too.

use slim_core::{Variant, Width};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use slim_core::manifest::Latency;
use slim_core::{Manifest, WidthEntry};
use slim_data::transform::Normalize;

use crate::engine::{self, Backend, Engine, Outputs, Threads};
use crate::select::{Budget, Candidate, Selection};
use crate::{Error, graph};

pub struct SlimModel {
    dir: PathBuf,
    manifest: Manifest,
    backend: Backend,
    norm: Normalize,
    /// Every graph, most accurate first ([`Manifest::variants`]); `engines` in this order.
    variants: Vec<Variant>,
    engines: Vec<OnceLock<Box<dyn Engine>>>,
    threads: Threads,
    calibration_file: Option<PathBuf>,
}

impl SlimModel {
    /// Opens `dir/manifest.json`; checks that every listed graph exists. Graphs themselves
    /// are read and checked when first used (or by [`SlimModel::load_all`]).
    pub fn open(dir: &Path, backend: Backend) -> Result<SlimModel, Error> {
        let manifest = Manifest::load(dir)?;
        let norm = Normalize::from(&manifest.input);
        let variants = manifest.variants();
        for &v in &variants {
            let p = dir.join(&manifest.variant(v).expect("listed").file);
            if !p.is_file() {
                return Err(Error::graph(
                    p,
                    format!("is listed in the manifest for width {v} but is missing"),
                ));
            }
        }
        let engines = variants.iter().map(|_| OnceLock::new()).collect();
        Ok(SlimModel {
            dir: dir.to_path_buf(),
            manifest,
            backend,
            norm,
            variants,
            engines,
            threads: None,
            calibration_file: None,
        })
    }

    /// Runs every graph on `threads` threads (tract's multithreaded kernels, ONNX
    /// Runtime's intra-op pool) instead of the engine's default ([`Threads`]). Widths
    /// loaded before are loaded again on next use.
    pub fn with_threads(mut self, threads: Threads) -> SlimModel {
        self.threads = threads;
        self.engines = self.variants.iter().map(|_| OnceLock::new()).collect();
        self
    }

    /// The threads asked for with [`SlimModel::with_threads`].
    pub fn threads(&self) -> Threads {
        self.threads
    }

    /// Caches calibrations at `path` instead of beside the model (e.g. when the model
    /// folder is read-only).
    pub fn with_calibration_path(mut self, path: impl Into<PathBuf>) -> SlimModel {
        self.calibration_file = Some(path.into());
        self
    }

    pub(crate) fn calibration_file(&self) -> Option<&PathBuf> {
        self.calibration_file.as_ref()
    }

    /// The most accurate graph (a width in a precision) within `budget`
    /// ([`crate::select()`]), judging latency by this device's cached calibration at
    /// `budget.latency_batch` when there is one, else by the latencies in the manifest.
    pub fn select(&self, budget: &Budget) -> Result<Selection, Error> {
        let batch = budget.latency_batch.max(1);
        let mut candidates = Candidate::from_manifest(&self.manifest, batch);
        let cal = match budget.max_latency_ms {
            Some(_) => self.cached_calibration(batch)?,
            None => None,
        };
        if let Some(cal) = cal {
            for c in &mut candidates {
                let l = cal
                    .variant(c.variant())
                    .expect("a cached calibration covers every graph");
                c.latency = Some(Latency::of(
                    &cal.key.provider,
                    &format!("{} (calibrated)", cal.key.device),
                    &l.latency,
                ));
            }
        }
        Ok(crate::select::choose(&candidates, budget)?)
    }

    /// The preprocessing the graphs expect (see [`crate::preprocess`]).
    pub fn normalize(&self) -> &Normalize {
        &self.norm
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Widths widest first.
    pub fn widths(&self) -> Vec<Width> {
        self.manifest.widths.iter().map(|e| e.width).collect()
    }

    /// Every graph, most accurate first: widest first, then f32, f16, int8.
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// `[C, H, W]` of one input image.
    pub fn input_chw(&self) -> [usize; 3] {
        let m = &self.manifest;
        [m.input.in_channels, m.input.image_size, m.input.image_size]
    }

    fn index(&self, v: Variant) -> Result<usize, Error> {
        if let Some(i) = self.variants.iter().position(|&x| x == v) {
            return Ok(i);
        }
        Err(match self.manifest.entry(v.width) {
            Some(_) => Error::NoSuchVariant {
                dir: self.dir.clone(),
                variant: v,
                available: self.variants.clone(),
            },
            None => Error::NoSuchWidth {
                dir: self.dir.clone(),
                width: v.width,
                available: self.widths(),
            },
        })
    }

    /// The manifest entry of a width's float graph, or of a variant.
    pub fn entry(&self, v: impl Into<Variant>) -> Result<&WidthEntry, Error> {
        let v = v.into();
        self.index(v)?;
        Ok(self.manifest.variant(v).expect("a variant of the manifest"))
    }

    /// The engine of a width's float graph, or of a variant, loading it on first use.
    /// Concurrent first uses may both load; one result is kept.
    pub fn engine(&self, v: impl Into<Variant>) -> Result<&dyn Engine, Error> {
        let v = v.into();
        let i = self.index(v)?;
        if let Some(e) = self.engines[i].get() {
            return Ok(e.as_ref());
        }
        let entry = self.entry(v)?;
        let path = self.dir.join(&entry.file);
        let g = graph::read(&path, &self.dir)?;
        g.check_interface(&path, self.input_chw())?;
        g.check_against(&path, entry, &self.manifest)?;
        let loaded = engine::load(
            &self.backend,
            &path,
            g.proto,
            self.input_chw(),
            self.threads,
        )?;
        Ok(self.engines[i].get_or_init(|| loaded).as_ref())
    }

    /// Whether a width's float graph, or a variant, is loaded already.
    pub fn is_loaded(&self, v: impl Into<Variant>) -> bool {
        self.index(v.into())
            .is_ok_and(|i| self.engines[i].get().is_some())
    }

    /// Loads every graph now (e.g. before serving, so no request pays for it).
    pub fn load_all(&self) -> Result<(), Error> {
        for &v in &self.variants {
            self.engine(v)?;
        }
        Ok(())
    }

    /// Runs `batch` preprocessed images through a width's float graph, or a variant.
    /// Outputs that are not all finite are an error, never an answer.
    pub fn run(
        &self,
        v: impl Into<Variant>,
        image: &[f32],
        batch: usize,
    ) -> Result<Outputs, Error> {
        let v = v.into();
        let out = self.engine(v)?.run(image, batch)?;
        for (output, values) in [
            (slim_core::metadata::EMBEDDING, &out.embedding),
            (slim_core::metadata::LOGITS, &out.logits),
        ] {
            let bad = values.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(Error::NonFinite {
                    path: self.dir.join(&self.entry(v)?.file),
                    variant: v,
                    output,
                    bad,
                    total: values.len(),
                    input_finite: image.iter().all(|v| v.is_finite()),
                });
            }
        }
        Ok(out)
    }
}

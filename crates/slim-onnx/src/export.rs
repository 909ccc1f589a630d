//! Exporting a checkpoint to a model folder:
//!
//! ```text
//! OUT/
//!   manifest.json                      every width in the folder, with MACs and params
//!   width-w1000/model.onnx             one graph per width (tag from slim_core::Width::tag)
//!   width-w1000/test_data_set_0/       ONNX test data, when the checkpoint has references:
//!     input_0.pb                         `image`     (checkpoint `reference.image`)
//!     output_0.pb                        `embedding` (`reference.w1000.embedding`)
//!     output_1.pb                        `logits`    (`reference.w1000.logits`)
//!   width-w250/...
//!   width-w1000-f16/model.onnx         with --precision f16: the f16 graph, its test data
//!   width-w1000-int8/model.onnx        with --precision int8: the int8 QDQ graph, likewise
//! ```
//!
//! The f16 and int8 graphs ([`crate::float16`], [`crate::quantize`]) are derived from the
//! float graph, checked against it on the calibration images ([`crate::agreement`]) and
//! listed as the `variants` of their width's manifest entry; their test data are their own
//! outputs on the reference images (computed with tract), so that another runtime can be
//! checked against them.
//!
//! Everything is checked before the first write; every file is written atomically; and if
//! a write fails anyway, the files and folders this export created are removed again, so an
//! export either completes or leaves no new file behind.

use slim_core::Width;
use std::path::{Path, PathBuf};

use prost::Message;
use slim_core::checkpoint::names;
use slim_core::manifest::{self, Manifest, WidthEntry};
use slim_core::metadata::GraphMetadata;
use slim_core::precision::{Derived, Precision};
use slim_core::{Checkpoint, Tensor, checkpoint, cost, fsutil};
use tract_onnx::pb::ModelProto;

use crate::agreement::agreement;
use crate::calibration::{self, CalibrationOptions, CalibrationSet};
use crate::error::ExportError;
use crate::graph::{EMBEDDING, INPUT, LOGITS, build_model};
use crate::proto::{entry as prop, float_tensor};
use crate::run::Runner;
use crate::{float16, quantize};

/// File name of each width's graph inside its folder.
pub const MODEL_FILE: &str = "model.onnx";
/// The ONNX test-data folder beside each graph.
pub const TEST_DATA_DIR: &str = "test_data_set_0";

/// Which widths to export.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WidthSelection {
    /// One width, which the checkpoint must hold (matched to a thousandth).
    One(Width),
    /// Every width of the checkpoint.
    All,
}

/// The bound on an f16 graph's logits' relative error from the float graph's.
pub const F16_TOLERANCE: f64 = 0.01;
/// The default bound on an int8 graph's logits' relative error (`--int8-tolerance`).
pub const INT8_TOLERANCE: f64 = 0.15;

/// What to export: widths, precisions, and the calibration images derived precisions need.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportOptions {
    pub widths: WidthSelection,
    /// Sorted, `f32` first (see [`Precision::parse_list`]).
    pub precisions: Vec<Precision>,
    /// Needed when `precisions` holds more than `f32`.
    pub calibration: Option<CalibrationOptions>,
    /// The bound on an int8 graph's logits' relative error from the float graph's.
    pub int8_tolerance: f64,
}

impl ExportOptions {
    /// The float graphs of `widths` only.
    pub fn float(widths: WidthSelection) -> ExportOptions {
        ExportOptions {
            widths,
            precisions: vec![Precision::F32],
            calibration: None,
            int8_tolerance: INT8_TOLERANCE,
        }
    }
}

/// What an export did.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// The manifest as written: the widths exported now and those kept from before.
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// The graphs written by this call, widest first, each width's float graph before
    /// its variants.
    pub exported: Vec<ExportedWidth>,
    /// Things worth telling the user that are not errors (e.g. no test data).
    pub notes: Vec<String>,
}

/// One graph written by an export.
#[derive(Clone, Debug)]
pub struct ExportedWidth {
    /// Its manifest entry (width, precision, relative file, MACs, params, size; a
    /// variant's entry for an f16 or int8 graph).
    pub entry: WidthEntry,
    /// The graph's path.
    pub model: PathBuf,
    /// Its test-data folder, when the checkpoint has reference outputs for the width.
    pub test_data: Option<PathBuf>,
}

/// The folder of width `w`'s float graph inside an export folder, e.g. `width-w250`.
pub fn width_dir(w: Width) -> String {
    format!("width-{}", w.tag())
}

/// The folder of width `w`'s graph in `precision`: [`width_dir`] for `f32`, else e.g.
/// `width-w250-int8`.
pub fn variant_dir(w: Width, precision: Precision) -> String {
    match precision {
        Precision::F32 => width_dir(w),
        p => format!("width-{}-{p}", w.tag()),
    }
}

/// Exports the float graphs of the selected widths: [`export_with`] of
/// [`ExportOptions::float`].
pub fn export(
    checkpoint: &Path,
    widths: WidthSelection,
    out_dir: &Path,
) -> Result<ExportReport, ExportError> {
    export_with(checkpoint, &ExportOptions::float(widths), out_dir)
}

/// Exports the selected widths of the checkpoint at `checkpoint` in the selected
/// precisions into `out_dir` (created if needed) and writes `out_dir/manifest.json`,
/// merged with an existing manifest of the same checkpoint (entries of another checkpoint
/// are dropped). The calibration images are read and checked before anything is written.
pub fn export_with(
    checkpoint: &Path,
    options: &ExportOptions,
    out_dir: &Path,
) -> Result<ExportReport, ExportError> {
    let derived: Vec<Precision> = options
        .precisions
        .iter()
        .copied()
        .filter(|p| !p.is_f32())
        .collect();
    let calibration_options = match (&options.calibration, derived.is_empty()) {
        (Some(c), false) => Some(c),
        (None, false) => {
            return Err(ExportError::Options(format!(
                "--precision {} needs --calibration-data: the int8 graph's activation ranges are measured on real images, and every derived graph is checked against the float graph on them",
                options
                    .precisions
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        (_, true) => None,
    };
    let ckpt = checkpoint::load(checkpoint).map_err(ExportError::from_load)?;
    let calibration = calibration_options
        .map(|c| CalibrationSet::load(c, &ckpt.config.input))
        .transpose()?;
    let plan = Plan {
        derived,
        calibration: calibration.as_ref(),
        int8_tolerance: options.int8_tolerance,
    };
    let widths = options.widths;
    let selected = match widths {
        WidthSelection::One(w) => {
            vec![ckpt.config.widths[ckpt.width_index(w).map_err(ExportError::Checkpoint)?]]
        }
        WidthSelection::All => ckpt.config.widths.clone(),
    };
    let mut notes = Vec::new();
    let references = selected
        .iter()
        .map(|&w| reference(&ckpt, w))
        .collect::<Result<Vec<_>, _>>()?;
    if ckpt.tensors.contains_key(names::REFERENCE_IMAGE) {
        for (&w, r) in selected.iter().zip(&references) {
            if r.is_none() {
                notes.push(format!(
                    "no reference.{}.embedding/logits in the checkpoint: width {w} has no test data",
                    w.tag()
                ));
            }
        }
    } else {
        notes.push(format!(
            "the checkpoint has no {} tensor: no test data written",
            names::REFERENCE_IMAGE
        ));
    }
    let mut files = Staging::default();
    files.create_dir(out_dir)?;
    // Held until the manifest is written: another export into this folder waits.
    let _lock = fsutil::lock_dir(out_dir).map_err(ExportError::Write)?;
    // The folder, width folders and their test data.
    let stale = fsutil::remove_stale_temporaries(out_dir, 2);
    if stale > 0 {
        notes.push(format!(
            "removed {stale} temporary files that interrupted writes had left"
        ));
    }
    let previous = previous_manifest(out_dir, &ckpt, &mut notes);
    let result = write_all(
        &ckpt,
        &selected,
        &references,
        &plan,
        previous,
        out_dir,
        &mut files,
        &mut notes,
    );
    if result.is_err() {
        files.rollback();
    }
    let (manifest, manifest_path, exported) = result?;
    Ok(ExportReport {
        manifest,
        manifest_path,
        exported,
        notes,
    })
}

/// Test data of one width: input image, expected embedding and logits.
struct Reference<'a> {
    image: &'a Tensor,
    embedding: &'a Tensor,
    logits: &'a Tensor,
}

/// The reference tensors of width `w`, shape-checked; `None` when the checkpoint lacks them.
fn reference(ckpt: &Checkpoint, w: Width) -> Result<Option<Reference<'_>>, ExportError> {
    let t = w.tag();
    let get = |name: &str| ckpt.tensors.get(name);
    let (Some(image), Some(embedding), Some(logits)) = (
        get(names::REFERENCE_IMAGE),
        get(&names::reference_embedding(&t)),
        get(&names::reference_logits(&t)),
    ) else {
        return Ok(None);
    };
    let c = &ckpt.config;
    let n = image.shape.first().copied().unwrap_or(0);
    let wanted = [
        (
            names::REFERENCE_IMAGE.to_string(),
            image,
            vec![
                n,
                c.input.in_channels,
                c.input.image_size,
                c.input.image_size,
            ],
        ),
        (
            names::reference_embedding(&t),
            embedding,
            vec![n, c.network().features_at(w)],
        ),
        (
            names::reference_logits(&t),
            logits,
            vec![n, c.num_classes()],
        ),
    ];
    for (name, tensor, shape) in wanted {
        if n == 0 || tensor.shape != shape {
            return Err(ExportError::Tensors {
                path: ckpt.path.clone(),
                msg: format!(
                    "tensor {name} has shape {:?} but the graph of width {w} needs {shape:?} \
                     with a batch of at least 1",
                    tensor.shape
                ),
            });
        }
    }
    Ok(Some(Reference {
        image,
        embedding,
        logits,
    }))
}

/// The folder's current manifest, when it describes the same checkpoint.
fn previous_manifest(
    out_dir: &Path,
    ckpt: &Checkpoint,
    notes: &mut Vec<String>,
) -> Option<Manifest> {
    let path = out_dir.join(manifest::FILE_NAME);
    if !path.exists() {
        return None;
    }
    match Manifest::load(out_dir) {
        Ok(m) if m.checkpoint_sha256 == ckpt.sha256 => Some(m),
        Ok(m) => {
            notes.push(format!(
                "{} described checkpoint {}; its widths are no longer listed",
                path.display(),
                m.checkpoint_sha256
            ));
            None
        }
        Err(e) => {
            notes.push(format!("replacing an unreadable manifest ({e})"));
            None
        }
    }
}

type Written = (Manifest, PathBuf, Vec<ExportedWidth>);

/// The derived precisions to export and what they need.
struct Plan<'a> {
    derived: Vec<Precision>,
    calibration: Option<&'a CalibrationSet>,
    int8_tolerance: f64,
}

#[allow(clippy::too_many_arguments)]
fn write_all(
    ckpt: &Checkpoint,
    selected: &[Width],
    references: &[Option<Reference<'_>>],
    plan: &Plan<'_>,
    previous: Option<Manifest>,
    out_dir: &Path,
    files: &mut Staging,
    notes: &mut Vec<String>,
) -> Result<Written, ExportError> {
    let config = &ckpt.config;
    let net = config.network();
    let mut manifest = Manifest {
        format: manifest::FORMAT.to_string(),
        backbone: config.backbone.name().to_string(),
        input: config.input.clone(),
        class_names: config.class_names.clone(),
        checkpoint_sha256: ckpt.sha256.clone(),
        widths: Vec::new(),
        cascade: None,
    };
    let previous_cascade = previous.as_ref().and_then(|m| m.cascade.clone());
    let mut exported = Vec::new();
    for (&w, reference) in selected.iter().zip(references) {
        let c = cost(&net, w, config.input.image_size, config.num_classes());
        let old = previous.as_ref().and_then(|m| m.entry(w));
        let mut entry = WidthEntry {
            width: w,
            file: format!("{}/{MODEL_FILE}", width_dir(w)),
            macs: c.macs,
            params: c.params,
            embedding_dim: net.features_at(w),
            // Same checkpoint, same graph: measurements of it still hold.
            accuracy: old.and_then(|e| e.accuracy.clone()),
            latency: old.map(|e| e.latency.clone()).unwrap_or_default(),
            precision: Precision::F32,
            bytes: None,
            derived: None,
            variants: Vec::new(),
        };
        let metadata = GraphMetadata::of_entry(&manifest, &entry, crate::PRODUCER);
        let model = build_model(ckpt, w, &metadata)?;
        let graphs = derive(ckpt, w, &model, plan)?;
        let (model_path, test_data) = write_graph(
            &model,
            &mut entry,
            reference.as_ref().map(Expected::Checkpoint),
            out_dir,
            files,
        )?;
        let mut written = vec![ExportedWidth {
            entry: entry.clone(),
            model: model_path,
            test_data,
        }];
        for (mut variant_model, precision, derived) in graphs {
            let mut variant = WidthEntry {
                precision,
                file: format!("{}/{MODEL_FILE}", variant_dir(w, precision)),
                derived: Some(derived),
                // Variants hang off the float entry only; not the ones pushed so far.
                variants: Vec::new(),
                ..entry.clone()
            };
            let old = old.and_then(|e| e.at(precision));
            variant.accuracy = old.and_then(|e| e.accuracy.clone());
            variant.latency = old.map(|e| e.latency.clone()).unwrap_or_default();
            let metadata = GraphMetadata::of_entry(&manifest, &variant, crate::PRODUCER);
            variant_model.metadata_props = metadata
                .to_props()
                .into_iter()
                .map(|(k, v)| prop(k, v))
                .collect();
            let expected = reference.as_ref().map(|r| Expected::Run(r.image));
            let (model_path, test_data) =
                write_graph(&variant_model, &mut variant, expected, out_dir, files)?;
            entry.variants.push(variant.clone());
            written.push(ExportedWidth {
                entry: variant,
                model: model_path,
                test_data,
            });
        }
        // Variants of this checkpoint's graph not derived now stay while their files do.
        for v in old.map(|e| e.variants.clone()).unwrap_or_default() {
            if entry.at(v.precision).is_none() && out_dir.join(&v.file).is_file() {
                entry.variants.push(v);
            }
        }
        entry.variants.sort_by_key(|v| v.precision);
        written[0].entry = entry;
        exported.extend(written);
    }

    let mut entries: Vec<WidthEntry> = exported
        .iter()
        .filter(|e| e.entry.precision.is_f32())
        .map(|e| e.entry.clone())
        .collect();
    for old in previous.map(|m| m.widths).unwrap_or_default() {
        if selected.iter().position(|&x| x == old.width).is_some() {
            continue;
        }
        if out_dir.join(&old.file).is_file() {
            entries.push(old);
        } else {
            notes.push(format!(
                "dropped width {} from the manifest: {} is gone",
                old.width, old.file
            ));
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.width));
    manifest.widths = entries;
    // Same checkpoint, same graphs: a cascade calibrated on them still holds while all
    // its widths are there.
    manifest.cascade = previous_cascade.filter(|c| {
        let kept = c
            .cascade
            .stages()
            .iter()
            .all(|s| manifest.entry(s.width).is_some());
        if !kept {
            notes.push("dropped the calibrated cascade: one of its widths is gone".into());
        }
        kept
    });
    let manifest_path = out_dir.join(manifest::FILE_NAME);
    let existed = manifest_path.exists();
    manifest.save(out_dir).map_err(ExportError::Write)?;
    if !existed {
        files.created_files.push(manifest_path.clone());
    }
    Ok((manifest, manifest_path, exported))
}

/// The f16 and int8 graphs of width `w` derived from its float graph `model`, each
/// checked against it on the calibration images.
fn derive(
    ckpt: &Checkpoint,
    w: Width,
    model: &ModelProto,
    plan: &Plan<'_>,
) -> Result<Vec<(ModelProto, Precision, Derived)>, ExportError> {
    let Some(set) = plan.calibration.filter(|_| !plan.derived.is_empty()) else {
        return Ok(Vec::new());
    };
    let input = &ckpt.config.input;
    let chw = [input.in_channels, input.image_size, input.image_size];
    let float = Runner::new(model, chw)
        .and_then(|r| r.run_all(&set.inputs, set.len))
        .map_err(|msg| ExportError::derive(w, Precision::F32, msg))?;
    let mut graphs = Vec::new();
    for &precision in &plan.derived {
        let fail = |msg: String| ExportError::derive(w, precision, msg);
        let (graph, tolerance, calibration) = match precision {
            Precision::F32 => continue,
            Precision::F16 => (float16::to_f16(model).map_err(fail)?, F16_TOLERANCE, None),
            Precision::Int8 => {
                let points = quantize::activation_points(model);
                let method = set.record.method;
                let ranges = Runner::with_outputs(model, chw, &points)
                    .and_then(|r| calibration::ranges(&r, &points, set, method))
                    .map_err(fail)?;
                let graph = quantize::to_int8(model, &ranges).map_err(fail)?;
                (graph, plan.int8_tolerance, Some(set.record.clone()))
            }
        };
        let outputs = Runner::new(&graph, chw)
            .and_then(|r| r.run_all(&set.inputs, set.len))
            .map_err(fail)?;
        let agreement = agreement(&float, &outputs, set.len, tolerance);
        if agreement.logits_rel_error.is_nan() || agreement.logits_rel_error > tolerance {
            return Err(fail(format!(
                "its logits are {:.4} from the float graph's (relative L2 over {} calibration images; top-1 agrees on {:.1}%), over the tolerance {tolerance}{}",
                agreement.logits_rel_error,
                set.len,
                100.0 * agreement.top1_agreement,
                match precision {
                    Precision::Int8 =>
                        ": try --calibration-method percentile, more --calibration-images, or a looser --int8-tolerance",
                    _ => "",
                }
            )));
        }
        graphs.push((
            graph,
            precision,
            Derived {
                calibration,
                agreement,
            },
        ));
    }
    Ok(graphs)
}

/// Where a graph's test-data outputs come from: the checkpoint's reference outputs (the
/// float graph, from training's own forward pass) or the graph itself run on an image.
enum Expected<'r, 'a> {
    Checkpoint(&'r Reference<'a>),
    Run(&'a Tensor),
}

/// Writes `model` as `entry.file` (recording its size in the entry) with its test data;
/// returns the graph's path and the test-data folder.
fn write_graph(
    model: &ModelProto,
    entry: &mut WidthEntry,
    expected: Option<Expected<'_, '_>>,
    out_dir: &Path,
    files: &mut Staging,
) -> Result<(PathBuf, Option<PathBuf>), ExportError> {
    let model_path = out_dir.join(&entry.file);
    let dir = model_path.parent().expect("a file inside a width folder");
    files.create_dir(dir)?;
    let bytes = model.encode_to_vec();
    entry.bytes = Some(bytes.len() as u64);
    files.write(&model_path, &bytes)?;
    let tensors = match expected {
        None => return Ok((model_path, None)),
        Some(Expected::Checkpoint(r)) => [
            (r.image.shape.clone(), r.image.data.clone()),
            (r.embedding.shape.clone(), r.embedding.data.clone()),
            (r.logits.shape.clone(), r.logits.data.clone()),
        ],
        Some(Expected::Run(image)) => {
            let n = image.shape[0];
            let chw = [image.shape[1], image.shape[2], image.shape[3]];
            let [embedding, logits]: [Vec<f32>; 2] = Runner::new(model, chw)
                .and_then(|r| r.run_all(&image.data, n))
                .and_then(|o| o.try_into().map_err(|_| "not two outputs".to_string()))
                .map_err(|msg| ExportError::derive(entry.width, entry.precision, msg))?;
            let (e, l) = (embedding.len() / n, logits.len() / n);
            [
                (image.shape.clone(), image.data.clone()),
                (vec![n, e], embedding),
                (vec![n, l], logits),
            ]
        }
    };
    let data_dir = dir.join(TEST_DATA_DIR);
    files.create_dir(&data_dir)?;
    for ((file, name), (shape, data)) in [
        ("input_0.pb", INPUT),
        ("output_0.pb", EMBEDDING),
        ("output_1.pb", LOGITS),
    ]
    .into_iter()
    .zip(tensors)
    {
        let proto = float_tensor(name, &shape, &data);
        files.write(&data_dir.join(file), &proto.encode_to_vec())?;
    }
    Ok((model_path, Some(data_dir)))
}

/// The files and folders an export created, to remove them again if it fails.
#[derive(Default)]
struct Staging {
    created_files: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
}

impl Staging {
    /// Creates `dir` and any missing parents, remembering which it created.
    fn create_dir(&mut self, dir: &Path) -> Result<(), ExportError> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .map(Path::to_path_buf)
            .collect();
        let result = std::fs::create_dir_all(dir);
        // Record what exists now even on failure: a parent may have been created.
        self.created_dirs
            .extend(missing.into_iter().rev().filter(|p| p.is_dir()));
        result.map_err(|io| ExportError::OutputDir {
            path: dir.to_path_buf(),
            io,
        })
    }

    /// Writes `path` atomically, remembering it when it is new.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
        let existed = path.exists();
        fsutil::atomic_write(path, bytes).map_err(ExportError::Write)?;
        if !existed {
            self.created_files.push(path.to_path_buf());
        }
        Ok(())
    }

    /// Removes what was created, newest first; best effort (the export already failed).
    fn rollback(self) {
        for f in self.created_files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        for d in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

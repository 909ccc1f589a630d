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
//! ```
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
use slim_core::{Checkpoint, Tensor, checkpoint, cost, fsutil};

use crate::error::ExportError;
use crate::graph::{EMBEDDING, INPUT, LOGITS, build_model};
use crate::proto::float_tensor;

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

/// What an export did.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// The manifest as written: the widths exported now and those kept from before.
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// The widths exported by this call, widest first.
    pub exported: Vec<ExportedWidth>,
    /// Things worth telling the user that are not errors (e.g. no test data).
    pub notes: Vec<String>,
}

/// One graph written by an export.
#[derive(Clone, Debug)]
pub struct ExportedWidth {
    /// Its manifest entry (width, relative file, MACs, params, embedding size).
    pub entry: WidthEntry,
    /// The graph's path.
    pub model: PathBuf,
    /// Its test-data folder, when the checkpoint has reference outputs for the width.
    pub test_data: Option<PathBuf>,
}

/// The folder of width `w` inside an export folder, e.g. `width-w250`.
pub fn width_dir(w: Width) -> String {
    format!("width-{}", w.tag())
}

/// Exports the selected widths of the checkpoint at `checkpoint` into `out_dir` (created if
/// needed) and writes `out_dir/manifest.json`, merged with an existing manifest of the same
/// checkpoint (entries of another checkpoint are dropped).
pub fn export(
    checkpoint: &Path,
    widths: WidthSelection,
    out_dir: &Path,
) -> Result<ExportReport, ExportError> {
    let ckpt = checkpoint::load(checkpoint).map_err(ExportError::from_load)?;
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

fn write_all(
    ckpt: &Checkpoint,
    selected: &[Width],
    references: &[Option<Reference<'_>>],
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
        let entry = WidthEntry {
            width: w,
            file: format!("{}/{MODEL_FILE}", width_dir(w)),
            macs: c.macs,
            params: c.params,
            embedding_dim: net.features_at(w),
            // Same checkpoint, same graph: measurements of it still hold.
            accuracy: old.and_then(|e| e.accuracy.clone()),
            latency: old.map(|e| e.latency.clone()).unwrap_or_default(),
        };
        let metadata = GraphMetadata::of_entry(&manifest, &entry, crate::PRODUCER);
        let model = build_model(ckpt, w, &metadata)?;
        let dir = out_dir.join(width_dir(w));
        files.create_dir(&dir)?;
        let model_path = dir.join(MODEL_FILE);
        files.write(&model_path, &model.encode_to_vec())?;
        let test_data = match reference {
            Some(r) => {
                let data_dir = dir.join(TEST_DATA_DIR);
                files.create_dir(&data_dir)?;
                for (file, name, t) in [
                    ("input_0.pb", INPUT, r.image),
                    ("output_0.pb", EMBEDDING, r.embedding),
                    ("output_1.pb", LOGITS, r.logits),
                ] {
                    let proto = float_tensor(name, &t.shape, &t.data);
                    files.write(&data_dir.join(file), &proto.encode_to_vec())?;
                }
                Some(data_dir)
            }
            None => None,
        };
        exported.push(ExportedWidth {
            entry,
            model: model_path,
            test_data,
        });
    }

    let mut entries: Vec<WidthEntry> = exported.iter().map(|e| e.entry.clone()).collect();
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

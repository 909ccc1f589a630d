//! The manifest `manifest.json` that `slim-export` writes beside the per-width graphs and
//! that the runtime and benchmark read: one entry per exported width with its cost.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::cascade::Cascade;
use crate::config::Preprocessing;
use crate::fsutil::atomic_write;
use crate::precision::{Derived, Precision, Variant};
use crate::stats::LatencySummary;
use crate::width::Width;

pub const FILE_NAME: &str = "manifest.json";
pub const FORMAT: &str = "slim-manifest/1";
/// Largest manifest read (a real one is a few KiB, even with many widths and latencies).
pub const MAX_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub backbone: String,
    /// The images every graph takes (stored as top-level fields of the JSON).
    #[serde(flatten)]
    pub input: Preprocessing,
    pub class_names: Vec<String>,
    /// SHA-256 of the checkpoint the graphs were exported from.
    pub checkpoint_sha256: String,
    /// Widest first.
    pub widths: Vec<WidthEntry>,
    /// The width cascade calibrated by `slim-bench --cascade --write-manifest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CalibratedCascade>,
}

/// A cascade over the model's widths and what it reached on the held-out images its
/// thresholds were chosen on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibratedCascade {
    #[serde(flatten)]
    pub cascade: Cascade,
    /// The top-1 in [0, 1] it was calibrated to reach.
    pub target_top1: f64,
    /// What it reached.
    pub top1: f64,
    /// Mean multiply-accumulates per image, every stage an image ran counted.
    pub mean_macs: f64,
    pub dataset: String,
    pub samples: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WidthEntry {
    pub width: Width,
    /// The ONNX graph, relative to the manifest's folder.
    pub file: String,
    pub macs: u64,
    pub params: u64,
    pub embedding_dim: usize,
    /// Measured top-1 accuracy in [0, 1], with what it was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Accuracy>,
    /// Measured latencies, one per device/backend/batch they were measured with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<Latency>,
    /// The precision of `file`: `f32` for the entries of [`Manifest::widths`], another
    /// for their [`WidthEntry::variants`].
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// Size of `file` in bytes (absent in manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// For a variant: how it was derived from the float graph and how close it stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<Derived>,
    /// The same width's graphs in other precisions, each a whole entry of its own (same
    /// width, MACs, params and embedding size; its own file, size and measurements).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<WidthEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
    pub dataset: String,
    pub samples: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub backend: String,
    pub device: String,
    pub batch: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    /// The manifest's figures of `summary`, measured with `backend` on `device`.
    pub fn of(backend: &str, device: &str, summary: &LatencySummary) -> Latency {
        Latency {
            backend: backend.to_string(),
            device: device.to_string(),
            batch: summary.batch,
            p50_ms: summary.p50_ms,
            p90_ms: summary.p90_ms,
            p99_ms: summary.p99_ms,
        }
    }
}

impl Manifest {
    /// Reads `dir/manifest.json` and checks it.
    pub fn load(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(FILE_NAME);
        let fail = |msg: String| Error::Manifest {
            path: path.clone(),
            msg,
        };
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let bytes = crate::fsutil::read_at_most(file, MAX_BYTES)
            .map_err(|e| Error::io(&path, e))?
            .ok_or_else(|| fail(format!("is larger than {} MiB: refused", MAX_BYTES >> 20)))?;
        let text = String::from_utf8(bytes).map_err(|e| fail(format!("is not UTF-8: {e}")))?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| fail(format!("does not parse: {e}")))?;
        if m.format != FORMAT {
            return Err(fail(format!("format {:?} is not {FORMAT:?}", m.format)));
        }
        if m.widths.is_empty() {
            return Err(fail("lists no widths".into()));
        }
        let widths: Vec<Width> = m.widths.iter().map(|w| w.width).collect();
        crate::width::check_list(&widths).map_err(&fail)?;
        m.input.check().map_err(&fail)?;
        crate::config::check_classes(&m.class_names).map_err(&fail)?;
        for w in &m.widths {
            check_inside(w).map_err(&fail)?;
        }
        for w in &m.widths {
            check_variants(w).map_err(&fail)?;
        }
        if let Some(c) = &m.cascade {
            c.cascade.check().map_err(&fail)?;
            if let Some(s) = c
                .cascade
                .stages()
                .iter()
                .find(|s| m.entry(s.width).is_none())
            {
                return Err(fail(format!(
                    "cascade: width {} is not one of the model's widths {widths:?}",
                    s.width
                )));
            }
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, Error> {
        let path = dir.join(FILE_NAME);
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        atomic_write(&path, text.as_bytes())?;
        Ok(path)
    }

    pub fn entry(&self, w: Width) -> Option<&WidthEntry> {
        self.widths.iter().find(|e| e.width == w)
    }

    /// Every graph of the model: each width's float graph and its variants, most accurate
    /// first as [`Variant`] orders them (widest first, then f32, f16, int8).
    pub fn variants(&self) -> Vec<Variant> {
        let mut all: Vec<Variant> = (self.widths.iter())
            .flat_map(|e| e.precisions().into_iter().map(|p| Variant::new(e.width, p)))
            .collect();
        all.sort();
        all
    }

    /// The entry of `v`'s graph, if the model has it.
    pub fn variant(&self, v: Variant) -> Option<&WidthEntry> {
        self.entry(v.width)?.at(v.precision)
    }

    /// The precisions every width of the model has a graph in (`f32` always), sorted.
    pub fn precisions(&self) -> Vec<Precision> {
        Precision::ALL
            .into_iter()
            .filter(|&p| self.widths.iter().all(|e| e.at(p).is_some()))
            .collect()
    }

    /// This manifest as if `precision`'s graphs were the model's: each width's entry
    /// replaced by its variant of that precision (itself for `f32`), the cascade kept only
    /// for `f32` (it was calibrated on the float graphs). Every width must have one.
    pub fn at_precision(&self, precision: Precision) -> Result<Manifest, String> {
        let widths = self
            .widths
            .iter()
            .map(|e| {
                e.at(precision).cloned().ok_or_else(|| {
                    format!(
                        "width {} has no {precision} graph (it has {}); export it with slim-export --precision",
                        e.width,
                        e.precisions()
                            .iter()
                            .map(|p| p.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest {
            widths,
            cascade: self.cascade.clone().filter(|_| precision.is_f32()),
            ..self.clone()
        })
    }
}

impl WidthEntry {
    /// The entry of this width's graph in `precision`: itself for its own precision, else
    /// the variant.
    pub fn at(&self, precision: Precision) -> Option<&WidthEntry> {
        if self.precision == precision {
            return Some(self);
        }
        self.variants.iter().find(|v| v.precision == precision)
    }

    /// Its precisions, its own first.
    pub fn precisions(&self) -> Vec<Precision> {
        std::iter::once(self.precision)
            .chain(self.variants.iter().map(|v| v.precision))
            .collect()
    }
}

/// A width's entry is float, and each of its variants has another precision (none twice),
/// the same width and cost, no variants of its own, and a record of how it was derived.
fn check_variants(e: &WidthEntry) -> Result<(), String> {
    if !e.precision.is_f32() {
        return Err(format!(
            "width {} is listed with precision {}; a width's entry is its f32 graph, other precisions go in its variants",
            e.width, e.precision
        ));
    }
    let mut seen = vec![Precision::F32];
    for v in &e.variants {
        let what = format!("width {}'s {} variant", e.width, v.precision);
        if seen.contains(&v.precision) {
            return Err(format!(
                "width {} lists precision {} twice",
                e.width, v.precision
            ));
        }
        seen.push(v.precision);
        if v.width != e.width
            || v.macs != e.macs
            || v.params != e.params
            || v.embedding_dim != e.embedding_dim
        {
            return Err(format!(
                "{what} says width {}, {} MACs, {} params, embedding {}; its width's entry says {}, {}, {}, {}",
                v.width,
                v.macs,
                v.params,
                v.embedding_dim,
                e.width,
                e.macs,
                e.params,
                e.embedding_dim
            ));
        }
        if !v.variants.is_empty() {
            return Err(format!("{what} has variants of its own"));
        }
        if v.derived.is_none() {
            return Err(format!("{what} has no \"derived\" record"));
        }
        check_inside(v)?;
    }
    Ok(())
}

/// The entry's file lies inside the model folder.
fn check_inside(e: &WidthEntry) -> Result<(), String> {
    let p = Path::new(&e.file);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "width {} names {:?}, which is outside the model folder",
            e.width, e.file
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed model's manifest with `edit` applied to its JSON text, loaded.
    fn load_edited(edit: impl Fn(&mut serde_json::Value)) -> Result<Manifest, Error> {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/fashion-mnist-resnet20")
            .join(FILE_NAME);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(dir.path().join(FILE_NAME), v.to_string()).unwrap();
        Manifest::load(dir.path())
    }

    #[test]
    fn a_manifest_over_the_size_bound_is_refused_before_it_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = vec![b' '; MAX_BYTES as usize + 1];
        text[0] = b'{';
        *text.last_mut().unwrap() = b'}';
        std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("manifest.json") && e.contains("larger than 16 MiB"),
            "{e}"
        );
    }

    /// A cascade over widths 0.25 and `w` with threshold `t`.
    fn cascade(t: f64, w: f64) -> serde_json::Value {
        serde_json::json!({
            "confidence": "max-prob",
            "stages": [{"width": 0.25, "threshold": t}, {"width": w, "threshold": 0.0}],
            "target_top1": 0.8, "top1": 0.8, "mean_macs": 1.0e6,
            "dataset": "d", "samples": 10
        })
    }

    #[test]
    fn every_field_a_model_depends_on_is_checked_where_the_manifest_is_read() {
        load_edited(|_| {}).unwrap();
        let m = load_edited(|v| v["cascade"] = cascade(0.9, 1.0)).unwrap();
        assert_eq!(
            m.cascade.unwrap().cascade.describe(),
            "max-prob: 0.25>=0.9, 1"
        );
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: [(&str, Edit); 11] = [
            (
                "0.5 twice",
                Box::new(|v| v["widths"][3]["width"] = 0.5.into()),
            ),
            (
                "width 0 is outside",
                Box::new(|v| v["widths"][3]["width"] = 0.0.into()),
            ),
            (
                "width 1.5 is outside",
                Box::new(|v| v["widths"][0]["width"] = 1.5.into()),
            ),
            (
                "image_size 100000 is outside 8..=4096",
                Box::new(|v| v["image_size"] = 100_000.into()),
            ),
            (
                "image_size 1099511627776 is outside",
                Box::new(|v| v["image_size"] = (1u64 << 40).into()),
            ),
            (
                "in_channels is 2",
                Box::new(|v| v["in_channels"] = 2.into()),
            ),
            (
                "must be positive",
                Box::new(|v| v["std"] = serde_json::json!([0.0])),
            ),
            (
                "0 classes",
                Box::new(|v| v["class_names"] = serde_json::json!([])),
            ),
            (
                "cascade: threshold 1.5 of width 0.25 is outside [0, 1]",
                Box::new(|v| v["cascade"] = cascade(1.5, 1.0)),
            ),
            (
                "cascade: width 0.3 is not one of the model's widths",
                Box::new(|v| v["cascade"] = cascade(0.5, 0.3)),
            ),
            (
                "unknown variant `entropy`",
                Box::new(|v| {
                    v["cascade"] = cascade(0.5, 1.0);
                    v["cascade"]["confidence"] = "entropy".into();
                }),
            ),
        ];
        for (want, edit) in cases {
            let err = load_edited(edit).unwrap_err().to_string();
            assert!(
                err.contains(FILE_NAME) && err.contains(want),
                "{want:?} not in: {err}"
            );
        }
    }

    #[test]
    fn variants_are_listed_most_accurate_first_and_found_by_width_and_precision() {
        let derived = serde_json::json!({"agreement": {"images": 8, "top1_agreement": 1.0,
            "logits_rel_error": 0.01, "embedding_rel_error": 0.01, "tolerance": 0.1}});
        let m = load_edited(|v| {
            for (i, p) in [(1, "int8"), (3, "f16"), (3, "int8")] {
                let mut e = v["widths"][i].clone();
                e["precision"] = p.into();
                e["file"] = format!("width-{i}-{p}/model.onnx").into();
                e["derived"] = derived.clone();
                e.as_object_mut().unwrap().remove("variants");
                v["widths"][i]["variants"]
                    .as_array_mut()
                    .map(|a| a.push(e.clone()))
                    .unwrap_or_else(|| v["widths"][i]["variants"] = serde_json::json!([e]));
            }
        })
        .unwrap();
        let w = |x: f64| Width::new(x).unwrap();
        let names: Vec<String> = m.variants().iter().map(|v| v.to_string()).collect();
        assert_eq!(
            names,
            [
                "1",
                "0.75",
                "0.75/int8",
                "0.5",
                "0.25",
                "0.25/f16",
                "0.25/int8"
            ]
        );
        let v = Variant::new(w(0.25), Precision::F16);
        assert_eq!(m.variant(v).unwrap().file, "width-3-f16/model.onnx");
        assert_eq!(
            m.variant(Variant::f32(w(0.5))).unwrap().precision,
            Precision::F32
        );
        assert!(m.variant(Variant::new(w(0.5), Precision::Int8)).is_none());
        assert_eq!(Variant::from(w(1.0)), Variant::f32(w(1.0)));
    }
}

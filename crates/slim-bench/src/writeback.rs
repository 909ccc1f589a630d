//! `--write-manifest`: the measured accuracy and latencies go back into the model's
//! `manifest.json`, where runtime budgets ([`slim_runtime::select`]) read them, each graph's
//! into its own entry (a width's float entry, or its f16/int8 variant inside it). A latency
//! entry with the same backend, device and batch size is replaced; others are kept.

use slim_core::manifest::Latency;
use slim_core::{Manifest, Precision, Variant, WidthEntry};

use crate::report::{Report, Source};

/// The entry of `v`'s graph in `manifest`, if it has one.
fn entry_mut(manifest: &mut Manifest, v: Variant) -> Option<&mut WidthEntry> {
    let entry = manifest.widths.iter_mut().find(|e| e.width == v.width)?;
    match v.precision {
        Precision::F32 => Some(entry),
        p => entry.variants.iter_mut().find(|e| e.precision == p),
    }
}

/// Copies `report`'s measured figures into `manifest` (latencies under `backend` and
/// `device`), each graph's into the entry of the same width and precision; returns how
/// many graph entries changed.
pub fn apply(manifest: &mut Manifest, report: &Report, backend: &str, device: &str) -> usize {
    let mut changed = 0;
    for w in &report.widths {
        let Some(entry) = entry_mut(manifest, w.variant()) else {
            continue;
        };
        let before = entry.clone();
        if let Some(a) = w.accuracy.as_ref().filter(|a| a.source == Source::Measured) {
            entry.accuracy = Some(a.figures.clone());
        }
        for l in &w.latency {
            let new = Latency::of(backend, device, l);
            match entry.latency.iter_mut().find(|e| {
                e.backend == new.backend && e.device == new.device && e.batch == new.batch
            }) {
                Some(old) => *old = new,
                None => entry.latency.push(new),
            }
        }
        changed += usize::from(*entry != before);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Machine;
    use crate::report::{Accuracy as Measured, Header, Versions, WidthReport};
    use slim_core::Width;
    use slim_core::stats::LatencySummary;

    fn entry(width: Width, latency: Vec<Latency>) -> WidthEntry {
        WidthEntry {
            width,
            file: format!("w{width}/model.onnx"),
            macs: 1000,
            params: 10,
            embedding_dim: 8,
            accuracy: None,
            latency,
            precision: Default::default(),
            bytes: None,
            derived: None,
            variants: vec![],
        }
    }

    fn latency(backend: &str, device: &str, batch: usize, p50_ms: f64) -> Latency {
        Latency {
            backend: backend.into(),
            device: device.into(),
            batch,
            p50_ms,
            p90_ms: p50_ms,
            p99_ms: p50_ms,
        }
    }

    fn report(widths: Vec<WidthReport>) -> Report {
        Report {
            cascade: None,
            header: Header {
                tool: "slim-bench test".into(),
                date_utc: "2000-01-01T00:00:00Z".into(),
                model: "m".into(),
                machine: Machine {
                    cpu: "cpu".into(),
                    logical_cores: 1,
                    physical_cores: Some(1),
                    os: "os".into(),
                    gpus: vec![],
                },
                backend: "tract".into(),
                provider: "tract".into(),
                intra_op_threads: Some(1),
                threads_note: String::new(),
                process_threads: None,
                versions: Versions {
                    slim_bench: "0".into(),
                    tract_onnx: "0".into(),
                    ort: None,
                    onnxruntime: None,
                },
                warmup: 1,
                runs: 3,
                evalset: None,
            },
            widths,
        }
    }

    fn measured(width: Width, source: Source, p50s: &[(usize, f64)]) -> WidthReport {
        WidthReport {
            width,
            precision: Precision::F32,
            macs: 1000,
            params: 10,
            bytes: Some(4096),
            provider: "tract".into(),
            load_ms: 1.0,
            memory: None,
            memory_note: None,
            accuracy: Some(Measured {
                figures: slim_core::manifest::Accuracy {
                    top1: 0.8,
                    top5: 0.99,
                    dataset: "set".into(),
                    samples: 100,
                },
                source,
            }),
            latency: p50s
                .iter()
                .map(|&(b, ms)| LatencySummary::new(b, &[ms, ms, ms]))
                .collect(),
        }
    }

    fn manifest(widths: Vec<WidthEntry>) -> Manifest {
        Manifest {
            format: slim_core::manifest::FORMAT.into(),
            backbone: "resnet20".into(),
            input: slim_core::Preprocessing {
                in_channels: 1,
                image_size: 8,
                mean: vec![0.5],
                std: vec![0.5],
            },
            class_names: vec!["a".into()],
            checkpoint_sha256: "x".into(),
            cascade: None,
            widths,
        }
    }

    #[test]
    fn replaces_the_same_backend_device_and_batch_and_keeps_the_rest() {
        let mut m = manifest(vec![
            entry(
                slim_test_utils::width(1.0),
                vec![
                    latency("tract", "cpu", 1, 9.0),
                    latency("ort-cpu", "cpu", 1, 3.0),
                    latency("tract", "other cpu", 1, 7.0),
                    latency("tract", "cpu", 32, 50.0),
                ],
            ),
            entry(slim_test_utils::width(0.5), vec![]),
        ]);
        let r = report(vec![
            measured(
                slim_test_utils::width(1.0),
                Source::Measured,
                &[(1, 2.0), (8, 6.0)],
            ),
            measured(slim_test_utils::width(0.5), Source::Manifest, &[(1, 1.0)]),
        ]);
        assert_eq!(apply(&mut m, &r, "tract", "cpu"), 2);
        let full = &m.widths[0];
        let p50 = |backend: &str, device: &str, batch: usize| {
            full.latency
                .iter()
                .filter(|l| l.backend == backend && l.device == device && l.batch == batch)
                .map(|l| l.p50_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            p50("tract", "cpu", 1),
            vec![2.0],
            "replaced, not duplicated"
        );
        assert_eq!(p50("tract", "cpu", 8), vec![6.0], "added");
        assert_eq!(
            p50("tract", "cpu", 32),
            vec![50.0],
            "kept: not measured now"
        );
        assert_eq!(p50("ort-cpu", "cpu", 1), vec![3.0], "kept: other backend");
        assert_eq!(
            p50("tract", "other cpu", 1),
            vec![7.0],
            "kept: other device"
        );
        let acc = full.accuracy.as_ref().unwrap();
        assert_eq!(
            (acc.top1, acc.samples, acc.dataset.as_str()),
            (0.8, 100, "set")
        );
        // An accuracy read from the manifest is not written back as a new measurement.
        assert_eq!(m.widths[1].accuracy, None);
        assert_eq!(m.widths[1].latency.len(), 1);
        // The same figures again change nothing.
        assert_eq!(apply(&mut m, &r, "tract", "cpu"), 0);
    }

    #[test]
    fn each_graph_goes_into_the_entry_of_its_width_and_precision() {
        let w1 = slim_test_utils::width(1.0);
        let variant = |precision: Precision| WidthEntry {
            precision,
            file: format!("w1/model.{precision}.onnx"),
            ..entry(w1, vec![])
        };
        let mut float = entry(w1, vec![]);
        float.variants = vec![variant(Precision::F16), variant(Precision::Int8)];
        let mut m = manifest(vec![float]);
        let mut int8 = measured(w1, Source::Measured, &[(1, 0.5)]);
        int8.precision = Precision::Int8;
        let mut narrow = measured(slim_test_utils::width(0.5), Source::Measured, &[(1, 0.1)]);
        narrow.precision = Precision::Int8;
        // A graph the manifest lacks (width 0.5) is left out.
        assert_eq!(
            apply(&mut m, &report(vec![int8, narrow]), "tract", "cpu"),
            1
        );
        let e = &m.widths[0];
        assert!(e.accuracy.is_none() && e.latency.is_empty(), "float: {e:?}");
        let f16 = &e.variants[0];
        assert!(
            f16.accuracy.is_none() && f16.latency.is_empty(),
            "f16: {f16:?}"
        );
        let int8 = &e.variants[1];
        assert_eq!(int8.accuracy.as_ref().map(|a| a.top1), Some(0.8));
        assert_eq!(
            int8.latency.iter().map(|l| l.p50_ms).collect::<Vec<_>>(),
            [0.5]
        );
    }
}

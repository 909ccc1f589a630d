//! `--write-manifest`: the measured accuracy and latencies go back into the model's
//! `manifest.json`, where runtime budgets ([`slim_runtime::select`]) read them. A latency
//! entry with the same backend, device and batch size is replaced; others are kept.

use slim_core::Manifest;
use slim_core::manifest::{Accuracy, Latency};

use crate::report::{Report, Source};

/// Copies `report`'s measured figures into `manifest` (latencies under `backend` and
/// `device`); returns how many width entries changed.
pub fn apply(manifest: &mut Manifest, report: &Report, backend: &str, device: &str) -> usize {
    let mut changed = 0;
    for w in &report.widths {
        let Some(entry) = manifest
            .widths
            .iter_mut()
            .find(|e| slim_core::width::tag(e.width) == slim_core::width::tag(w.width))
        else {
            continue;
        };
        let before = entry.clone();
        if let Some(a) = w.accuracy.as_ref().filter(|a| a.source == Source::Measured) {
            entry.accuracy = Some(Accuracy {
                top1: a.top1,
                top5: a.top5,
                dataset: a.dataset.clone(),
                samples: a.samples,
            });
        }
        for l in &w.latency {
            let new = Latency {
                backend: backend.to_string(),
                device: device.to_string(),
                batch: l.batch,
                p50_ms: l.p50_ms,
                p90_ms: l.p90_ms,
                p99_ms: l.p99_ms,
            };
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

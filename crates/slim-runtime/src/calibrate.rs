//! Latency calibration: each graph's latency percentiles (every width, and its f16 and
//! int8 variants where exported) measured on this device with the model's backend, cached beside the model (`calibration.json`, written atomically) and
//! reused by later opens. An entry is keyed by the provider that actually ran, the device
//! (CPU model and threads), the batch size and the checkpoint's hash; entries under other
//! keys are kept but ignored. A cache that does not parse is an error naming it.

use slim_core::{Precision, Variant, Width};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use slim_core::stats::LatencySummary;

use crate::{Error, SlimModel};

pub const FILE_NAME: &str = "calibration.json";
pub const FORMAT: &str = "slim-calibration/3";

/// What a calibration is valid for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// What ran the graphs, e.g. `tract` or `ort/CPU` (see [`crate::Engine::provider`]).
    pub provider: String,
    /// [`device`]: CPU model and thread count.
    pub device: String,
    pub batch: usize,
    /// The threads one run used, when set ([`crate::Engine::threads`]); `None`: the
    /// engine's default.
    pub threads: Option<usize>,
    pub checkpoint_sha256: String,
}

/// One graph's measured latency per call, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WidthLatency {
    pub width: Width,
    /// The graph's precision (absent in the file for f32, as caches before variants were).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// Stored as top-level fields of the entry.
    #[serde(flatten)]
    pub latency: LatencySummary,
}

/// Every graph's latency under one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub key: Key,
    /// Most accurate first, as [`SlimModel::variants`] lists them.
    pub widths: Vec<WidthLatency>,
}

impl Calibration {
    /// The latency of a width's float graph, or of a variant.
    pub fn variant(&self, v: impl Into<Variant>) -> Option<&WidthLatency> {
        let v = v.into();
        (self.widths.iter()).find(|w| w.width == v.width && w.precision == v.precision)
    }
}

impl WidthLatency {
    pub fn variant(&self) -> Variant {
        Variant::new(self.width, self.precision)
    }
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: String,
    entries: Vec<Calibration>,
}

/// `model name` of the first processor in a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// This device, as calibrations are keyed: the CPU model (or the architecture where
/// `/proc/cpuinfo` says none) and the threads this process may use.
pub fn device() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpu_model(&cpuinfo).unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {threads} threads")
}

/// Latencies in ms of `runs` calls of a width's float graph or a variant on `input` (one
/// batch of `batch`), after `warmup` untimed calls; `progress` is called after every
/// call, timed or not.
pub fn latency_samples(
    model: &SlimModel,
    width: impl Into<Variant>,
    input: &[f32],
    batch: usize,
    (warmup, runs): (usize, usize),
    mut progress: impl FnMut(),
) -> Result<Vec<f64>, Error> {
    let width = width.into();
    for _ in 0..warmup {
        model.run(width, input, batch)?;
        progress();
    }
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            model.run(width, input, batch)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            progress();
            Ok(ms)
        })
        .collect()
}

fn cache_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Calibration {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Every entry of the cache at `path`; none when there is no file.
pub fn read_cache(path: &Path) -> Result<Vec<Calibration>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // No file, or no folder where the cache would go: nothing cached yet.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(cache_error(path, format!("cannot be read: {e}"))),
    };
    let unparsed = |e: serde_json::Error| {
        cache_error(
            path,
            format!("does not parse ({e}); delete it to calibrate again"),
        )
    };
    #[derive(Deserialize)]
    struct Format {
        format: String,
    }
    let format = serde_json::from_str::<Format>(&text)
        .map_err(unparsed)?
        .format;
    if format != FORMAT && format.starts_with("slim-calibration/") {
        // An older cache: a cache can always be measured again, so it is stale, not wrong
        // (the next calibration replaces it).
        return Ok(Vec::new());
    }
    if format != FORMAT {
        return Err(cache_error(
            path,
            format!("format {format:?} is not {FORMAT:?}; delete it to calibrate again"),
        ));
    }
    Ok(serde_json::from_str::<CacheFile>(&text)
        .map_err(unparsed)?
        .entries)
}

/// Puts `cal` into the cache at `path` (replacing an entry with the same key), atomically.
pub fn write_cache(path: &Path, cal: &Calibration) -> Result<(), Error> {
    let mut entries = read_cache(path)?;
    entries.retain(|e| e.key != cal.key);
    entries.push(cal.clone());
    let file = CacheFile {
        format: FORMAT.into(),
        entries,
    };
    let text = serde_json::to_string_pretty(&file).expect("plain data serialises");
    slim_core::fsutil::atomic_write(path, text.as_bytes()).map_err(|e| {
        cache_error(
            path,
            format!(
                "cannot be written ({e}); give a writable cache path \
                 (SlimModel::with_calibration_path, slim-run --calibration-cache)"
            ),
        )
    })
}

/// A deterministic input batch for timing (latency does not depend on pixel values).
fn timing_input(model: &SlimModel, batch: usize) -> Vec<f32> {
    (0..batch * model.image_len())
        .map(|i| (i % 97) as f32 / 48.0 - 1.0)
        .collect()
}

impl SlimModel {
    /// Where calibrations are cached: `calibration.json` in the model folder unless
    /// [`SlimModel::with_calibration_path`] said otherwise.
    pub fn calibration_path(&self) -> PathBuf {
        self.calibration_file()
            .cloned()
            .unwrap_or_else(|| self.dir().join(FILE_NAME))
    }

    /// The key a calibration at `batch` has on this device with this backend (loads the
    /// widest width, to learn which provider actually runs).
    pub fn calibration_key(&self, batch: usize) -> Result<Key, Error> {
        let widest = self.engine(self.widths()[0])?;
        Ok(Key {
            provider: widest.placement().to_string(),
            device: device(),
            batch,
            threads: widest.threads(),
            checkpoint_sha256: self.manifest().checkpoint_sha256.clone(),
        })
    }

    /// The cached calibration at `batch` for this device and backend, if one covers every
    /// graph.
    pub fn cached_calibration(&self, batch: usize) -> Result<Option<Calibration>, Error> {
        let key = self.calibration_key(batch)?;
        let variants = self.variants();
        Ok(read_cache(&self.calibration_path())?
            .into_iter()
            .find(|c| c.key == key && variants.iter().all(|&v| c.variant(v).is_some())))
    }

    /// Each graph's latency at `batch`: the cached calibration when there is one (`true`
    /// in the answer), otherwise `runs` timed calls per graph (after a few untimed ones),
    /// then cached. `progress` is told the timed calls done so far and in all.
    pub fn calibrate(
        &self,
        batch: usize,
        runs: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Calibration, bool), Error> {
        let batch = batch.max(1);
        let runs = runs.max(1);
        if let Some(c) = self.cached_calibration(batch)? {
            return Ok((c, true));
        }
        let input = timing_input(self, batch);
        let total = runs * self.variants().len();
        let mut widths = Vec::new();
        for (i, &v) in self.variants().iter().enumerate() {
            let s = latency_samples(self, v, &input, batch, ((runs / 10).max(2), runs), || {})?;
            widths.push(WidthLatency {
                width: v.width,
                precision: v.precision,
                latency: LatencySummary::new(batch, &s),
            });
            progress((i + 1) * runs, total);
        }
        let cal = Calibration {
            key: self.calibration_key(batch)?,
            widths,
        };
        write_cache(&self.calibration_path(), &cal)?;
        Ok((cal, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_reads_the_first_model_name() {
        let info = "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t: x\n\
                    processor\t: 1\nmodel name\t: Other\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Example CPU @ 2.0GHz"));
        assert_eq!(cpu_model("flags: a"), None);
    }
}

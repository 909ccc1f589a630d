//! What a report was measured on: CPU, cores, OS, GPUs, date, and the versions of the
//! inference code, read from the running system so that every figure says where it came
//! from.

use std::path::Path;

use serde::{Deserialize, Serialize};
use slim_runtime::calibrate::cpu_model;

/// The machine, as far as this process can tell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name from `/proc/cpuinfo` (or the architecture where there is none).
    pub cpu: String,
    /// Logical cores this process may run on.
    pub logical_cores: usize,
    /// Distinct (package, core) pairs in `/proc/cpuinfo`.
    pub physical_cores: Option<usize>,
    /// Kernel, e.g. `Linux 6.1.0-18-amd64`.
    pub os: String,
    /// NVIDIA GPUs the driver lists under `/proc/driver/nvidia/gpus`.
    pub gpus: Vec<String>,
}

/// Distinct (`physical id`, `core id`) pairs of a `/proc/cpuinfo` text.
pub fn physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = std::collections::BTreeSet::new();
    let mut package = None;
    for line in cpuinfo.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "physical id" => package = Some(v.trim().to_string()),
            "core id" => {
                cores.insert((package.clone(), v.trim().to_string()));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// The `Model:` line of an NVIDIA driver `information` file.
fn gpu_model(information: &str) -> Option<String> {
    information.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "Model").then(|| v.trim().to_string())
    })
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let os = match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            Ok(release) => format!("Linux {}", release.trim()),
            Err(_) => std::env::consts::OS.to_string(),
        };
        let mut gpus: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("information")).ok())
            .filter_map(|info| gpu_model(&info))
            .collect();
        gpus.sort();
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            physical_cores: physical_cores(&cpuinfo),
            os,
            gpus,
        }
    }

    /// What ran the graphs, for the manifest's latency entries: the GPU when they ran on
    /// one ([`slim_runtime::Placement::on_gpu`]), else the CPU.
    pub fn device(&self, on_gpu: bool) -> String {
        match self.gpus.first() {
            Some(gpu) if on_gpu => gpu.clone(),
            None if on_gpu => "GPU (model unknown)".into(),
            _ => self.cpu.clone(),
        }
    }
}

/// Threads of this process now (`/proc/self/task`), where the OS says.
pub fn process_threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn utc_iso8601(unix_secs: u64) -> String {
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Now, as [`utc_iso8601`].
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_iso8601(secs)
}

/// Version and commit of the ONNX Runtime library: the version from its file name (e.g.
/// `libonnxruntime.so.1.31.1`, after following links), the commit from its build-info
/// string (`ORT Build Info: git-branch=rel-1.31.1, git-commit-id=6af1a93, ...`); the
/// library itself reports no version through the `ort` crate.
pub fn onnxruntime_version(build_info: &str, dylib: &Path) -> String {
    let field = |key: &str| {
        build_info
            .split(',')
            .find_map(|part| part.split_once(key).map(|(_, v)| v.trim().to_string()))
    };
    let file = std::fs::canonicalize(dylib).unwrap_or_else(|_| dylib.to_path_buf());
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let from_name = name
        .split_once(".so.")
        .map(|(_, v)| v.to_string())
        .or_else(|| {
            let stem = name.strip_suffix(".dylib")?;
            stem.split_once('.').map(|(_, v)| v.to_string())
        })
        .filter(|v| v.split('.').all(|p| p.parse::<u32>().is_ok()));
    let from_branch = field("git-branch=").and_then(|b| b.strip_prefix("rel-").map(str::to_string));
    let version = from_name
        .or(from_branch)
        .unwrap_or_else(|| "unknown version".into());
    match field("git-commit-id=") {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t\t: 0\n\n\
        processor\t: 1\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t\t: 0\n\n\
        processor\t: 2\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t\t: 1\n\n\
        processor\t: 3\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 1\ncore id\t\t: 0\n";

    #[test]
    fn cpuinfo_gives_the_physical_cores() {
        assert_eq!(physical_cores(CPUINFO), Some(3), "two threads share core 0");
        assert_eq!(physical_cores("processor : 0\n"), None);
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_device_is_the_gpu_only_when_the_graphs_ran_on_one() {
        let m = Machine {
            cpu: "AMD EPYC".into(),
            logical_cores: 2,
            physical_cores: Some(2),
            os: "Linux".into(),
            gpus: vec!["NVIDIA H100".into()],
        };
        assert_eq!(m.device(true), "NVIDIA H100");
        assert_eq!(m.device(false), "AMD EPYC");
        let no_gpu = Machine { gpus: vec![], ..m };
        assert_eq!(no_gpu.device(true), "GPU (model unknown)");
    }

    #[test]
    fn onnxruntime_version_from_file_name_and_build_info() {
        let info = "ORT Build Info: git-branch=rel-1.19.0, git-commit-id=26250ae, build type=Release, cmake cxx flags: -DX";
        let so = Path::new("/nowhere/libonnxruntime.so.1.31.1");
        assert_eq!(onnxruntime_version(info, so), "1.31.1 (commit 26250ae)");
        let plain = Path::new("/nowhere/libonnxruntime.so");
        assert_eq!(onnxruntime_version(info, plain), "1.19.0 (commit 26250ae)");
        let mac = Path::new("/nowhere/libonnxruntime.1.20.0.dylib");
        assert_eq!(onnxruntime_version("odd", mac), "1.20.0");
        assert_eq!(onnxruntime_version("odd", plain), "unknown version");
    }
}

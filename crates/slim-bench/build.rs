//! Records the versions of the inference crates this build links, read from the workspace's
//! Cargo.lock, so that every report can state them (`SLIM_BENCH_VERSION_<CRATE>`).

use std::path::Path;

/// The locked version of `name`, if the lock file lists it (the first entry if several).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == needle {
            let version = lines.next()?.trim();
            return version
                .strip_prefix("version = \"")?
                .strip_suffix('"')
                .map(str::to_string);
        }
    }
    None
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock_path = Path::new(&dir).join("../../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    for (name, var) in [("tract-onnx", "TRACT_ONNX"), ("ort", "ORT")] {
        let v = locked_version(&lock, name).unwrap_or_else(|| "unknown".into());
        println!("cargo::rustc-env=SLIM_BENCH_VERSION_{var}={v}");
    }
}

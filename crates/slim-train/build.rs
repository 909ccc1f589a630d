//! Adds an rpath to libtorch's lib folder, so this crate's binaries and tests find
//! libtorch without LD_LIBRARY_PATH. torch-sys declares `links = "tch"` and exports that
//! folder as `DEP_TCH_LIBTORCH_LIB` to crates that depend on it directly (link arguments
//! of a dependency's build script, such as tch's own rpath, do not reach this crate's
//! binaries).
//!
//! With the `cuda` feature, also links libtorch_cuda with `--no-as-needed`: nothing
//! references its symbols directly, so the default `--as-needed` drops it and libtorch
//! then sees no CUDA device. Its own dependencies (the nvidia-* libraries) must be
//! findable at link time: `SLIM_CUDA_LIBS`, ':'-separated folders (tools/build_cuda.sh
//! sets it).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=SLIM_CUDA_LIBS");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    if let Some(dir) = &lib {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        let dir = lib.expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
        let cuda = std::path::Path::new(&dir).join("libtorch_cuda.so");
        if !cuda.is_file() {
            panic!(
                "feature `cuda`: {} is missing; LIBTORCH must be a CUDA build of libtorch (the PyPI torch wheel is one)",
                cuda.display()
            );
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        if let Ok(libs) = std::env::var("SLIM_CUDA_LIBS") {
            for d in libs.split(':').filter(|d| !d.is_empty()) {
                println!("cargo:rustc-link-arg=-Wl,-rpath-link,{d}");
            }
        }
    }
}

//! Compiles `src/c10d.cpp` against libtorch's headers (beside the lib folder torch-sys
//! exports as `DEP_TCH_LIBTORCH_LIB`) and Gloo's. The torch wheel ships c10d's headers
//! and Gloo's symbols but not Gloo's headers: those come from Debian's `libgloo-dev`
//! (tools/setup.sh installs it) or the folder `GLOO_INCLUDE` names. Only types that
//! c10d's headers hold by `shared_ptr` come from them, so an older Gloo's headers serve.
//! With the `nccl` feature it also compiles c10d's NCCL backend, against the CUDA and NCCL
//! headers in the folders `SLIM_CUDA_INCLUDE` names.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/c10d.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=SLIM_CUDA_INCLUDE");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB"),
    );
    let include = lib
        .parent()
        .expect("libtorch's lib folder has a parent")
        .join("include");
    let c10d = include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    if !c10d.is_file() {
        panic!(
            "{} is missing: this libtorch has no c10d headers",
            c10d.display()
        );
    }
    let gloo =
        std::env::var("GLOO_INCLUDE").map_or_else(|_| PathBuf::from("/usr/include"), PathBuf::from);
    if !gloo.join("gloo/algorithm.h").is_file() {
        panic!(
            "{} is missing: Gloo's headers are needed to build slim-dist (Debian: apt-get install libgloo-dev, which tools/setup.sh does; or set GLOO_INCLUDE to the folder holding gloo/)",
            gloo.join("gloo/algorithm.h").display()
        );
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    if std::env::var_os("CARGO_FEATURE_NCCL").is_some() {
        let folders = std::env::var("SLIM_CUDA_INCLUDE").unwrap_or_default();
        let folders: Vec<PathBuf> = folders
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        if !folders.iter().any(|d| d.join("nccl.h").is_file()) {
            panic!(
                "feature `nccl`: no nccl.h in SLIM_CUDA_INCLUDE ({folders:?}); build with tools/build_cuda.sh, which installs CUDA's and NCCL's headers and sets it"
            );
        }
        build
            .includes(&folders)
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None);
    }
    build
        .cpp(true)
        .file("src/c10d.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .compile("slim_c10d");
}

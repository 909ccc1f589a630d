//! Adds an rpath to libtorch's lib folder, so this crate's binaries and tests find
//! libtorch without LD_LIBRARY_PATH. torch-sys declares `links = "tch"` and exports that
//! folder as `DEP_TCH_LIBTORCH_LIB` to crates that depend on it directly (link arguments
//! of a dependency's build script, such as tch's own rpath, do not reach this crate's
//! binaries).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

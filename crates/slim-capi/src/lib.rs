//! `slim-capi`: slim-runtime for C, C++, Swift, Kotlin (JNI) and anything else that calls
//! C. The header `include/slim.h` is generated from this crate by cbindgen.
//!
//! - [`error`]: status codes, `slim_last_error()`, and the guard that turns every error
//!   and every panic into a status (no unwind crosses into C);
//! - [`model`]: open a model folder, its widths and costs, select by budget, preprocess
//!   images, run a batch, top-k classes;
//! - [`adaptive`]: the adaptive width controller;
//! - [`cascade`]: the width cascade, narrowest first, wider only while unsure;
//! - [`variant`]: graphs by width and precision (f32, f16, int8): list, select by budget
//!   kept to some precisions, run and classify.
//!
//! Conventions, the same for every function:
//! - Handles are opaque and freed by their `_free` function (NULL is accepted there).
//! - Output buffers belong to the caller, who passes their capacity in elements; a buffer
//!   too small gets `SLIM_STATUS_BUFFER_TOO_SMALL` and nothing is written to it. A NULL
//!   output buffer means that output is not wanted.
//! - Every pointer argument points to what its documentation says for the whole call
//!   (this is the safety contract of every `unsafe` function here).
//! - Thread safety: a `SlimModel` and a `SlimAdaptive` may be used from any number of
//!   threads at once, except by their `_free`, which must be the last call on them.
//!   `slim_last_error()` is per thread.

// One safety contract for all (above); a `# Safety` section on each would repeat it.
#![allow(clippy::missing_safety_doc)]

pub mod adaptive;
pub mod cascade;
pub mod error;
pub mod model;
mod ptr;
pub mod variant;

pub use adaptive::SlimAdaptive;
pub use error::SlimStatus;
pub use model::SlimModel;

use std::ffi::c_char;

/// The library's version, e.g. "0.1.0" (static storage).
///
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn slim_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

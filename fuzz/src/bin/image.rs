//! An image file decoded and preprocessed for the committed model, as slim-run and the
//! runtime's `preprocess` do (format from the bytes, bounded decoding, resize, crop).

use std::panic::AssertUnwindSafe;
use std::path::Path;

use slim_runtime::{Backend, SlimModel};

fn main() {
    let model = SlimModel::open(&slim_fuzz::model_dir(), Backend::Tract).expect("the model opens");
    // A panic ends the process (panic = "abort"): nothing observes the model after one.
    let model = AssertUnwindSafe(model);
    afl::fuzz!(|data: &[u8]| {
        let mut out = Vec::new();
        let _ = model.preprocess(Path::new("fuzz-input"), data, &mut out);
    });
}

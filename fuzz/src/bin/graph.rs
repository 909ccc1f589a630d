//! A width's `model.onnx` as the runtime reads it: decoded and checked (`graph::read`,
//! the interface check), and when that passes, loaded into tract as `SlimModel` would.

use slim_runtime::engine::TractEngine;

fn main() {
    let scratch = slim_fuzz::Scratch::new();
    afl::fuzz!(|data: &[u8]| {
        let path = scratch.write("model.onnx", data);
        let Ok(g) = slim_runtime::graph::read(&path, scratch.dir()) else {
            return;
        };
        let chw = [1, 28, 28];
        if g.check_interface(&path, chw).is_ok() {
            let _ = TractEngine::load(&path, g.proto, chw, None);
        }
    });
}

//! A checkpoint's bytes as slim-export and slim-train read them (`checkpoint::from_bytes`).

use std::path::Path;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = slim_core::checkpoint::from_bytes(Path::new("fuzz.safetensors"), data);
    });
}

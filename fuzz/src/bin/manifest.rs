//! `manifest.json` as `Manifest::load` reads it (slim-run, slim-bench, the runtime).

fn main() {
    let scratch = slim_fuzz::Scratch::new();
    afl::fuzz!(|data: &[u8]| {
        scratch.write(slim_core::manifest::FILE_NAME, data);
        let _ = slim_core::Manifest::load(scratch.dir());
    });
}

//! The C API's per-call cost: `slim_model_run` (caller buffers, status, checks) against
//! `SlimModel::run` from Rust on the same model and input, per width at batch 1 and 32.
//!
//! ```sh
//! cargo bench -p slim-capi --bench overhead [-- MODEL_DIR [ROUNDS]]
//! ```
//! Both are timed in interleaved rounds (each round: `CALLS` calls of each, in alternating
//! order) so drifting load hits them alike; a figure is the median over rounds of the mean
//! time per call. The Python package's benchmark (`crates/slim-py/bench/overhead.py`)
//! compares the binding with this C API the same way.

use std::ffi::CString;
use std::time::Instant;

use slim::SlimStatus;
use slim::model::{SlimModel as CModel, slim_model_open, slim_model_run};
use slim_core::stats::percentile;
use slim_runtime::{Backend, SlimModel};

const CALLS: usize = 20;

/// Mean ms per call of `f` over `CALLS` calls.
fn mean_ms(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..CALLS {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / CALLS as f64
}

fn main() {
    let (dir, rounds) = slim_test_utils::bench_args();

    let rust = SlimModel::open(&dir, Backend::Tract).expect("the model opens");
    rust.load_all().expect("every width loads");
    let c_dir = CString::new(dir.display().to_string()).unwrap();
    let mut c: *mut CModel = std::ptr::null_mut();
    let status = unsafe { slim_model_open(c_dir.as_ptr(), std::ptr::null(), false, 0, &mut c) };
    assert_eq!(status, SlimStatus::Ok);

    let widths = rust.manifest().widths.clone();
    println!("| width | batch | Rust ms/call | C API ms/call | C / Rust |");
    println!("|---|---|---|---|---|");
    for e in [&widths[0], widths.last().unwrap()] {
        for batch in [1usize, 32] {
            let x: Vec<f32> = (0..batch * rust.image_len())
                .map(|i| (i % 97) as f32 / 48.0 - 1.0)
                .collect();
            let (mut emb, mut logits) =
                (vec![0f32; batch * e.embedding_dim], vec![0f32; batch * 10]);
            let mut via_rust = || {
                let out = rust.run(e.width, &x, batch).expect("runs");
                std::hint::black_box(out.logits.len());
            };
            let mut via_c = || {
                let s = unsafe {
                    slim_model_run(
                        c,
                        e.width.get(),
                        x.as_ptr(),
                        batch,
                        emb.as_mut_ptr(),
                        emb.len(),
                        logits.as_mut_ptr(),
                        logits.len(),
                    )
                };
                assert_eq!(s, SlimStatus::Ok);
            };
            mean_ms(&mut via_rust); // warm up both
            mean_ms(&mut via_c);
            let (mut r, mut k) = (Vec::<f64>::new(), Vec::<f64>::new());
            for round in 0..rounds {
                if round % 2 == 0 {
                    r.push(mean_ms(&mut via_rust));
                    k.push(mean_ms(&mut via_c));
                } else {
                    k.push(mean_ms(&mut via_c));
                    r.push(mean_ms(&mut via_rust));
                }
            }
            let (r, k) = (percentile(&r, 0.5).unwrap(), percentile(&k, 0.5).unwrap());
            println!("| {} | {batch} | {r:.4} | {k:.4} | {:.4} |", e.width, k / r);
        }
    }
    unsafe { slim::model::slim_model_free(c) };
}

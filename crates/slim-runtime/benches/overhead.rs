//! The runtime's cost: `SlimModel::run` against calling tract (and, with the `ort`
//! feature, ONNX Runtime) directly on the same graph, batch 1, per width; and each width's
//! latency with its ratio to width 1.0 beside the MACs ratio.
//!
//! ```sh
//! cargo bench -p slim-runtime --bench overhead [--features ort] [-- MODEL_DIR [ROUNDS]]
//! ```
//! Direct and runtime calls are timed in interleaved rounds (each round: `CALLS` calls of
//! each, in alternating order) so that drifting machine load hits them alike; a figure is
//! the median over rounds of the mean time per call.

use slim_core::Width;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use slim_core::stats::percentile;
use slim_runtime::{Backend, SlimModel};
use tract_onnx::prelude::*;

const CALLS: usize = 50;

/// One way of running a width on one image.
struct Variant {
    name: &'static str,
    run: Box<dyn FnMut()>,
}

fn tract_direct(path: &Path, chw: [usize; 3], x: Vec<f32>) -> TractResult<Box<dyn FnMut()>> {
    let [c, h, w] = chw;
    // The plan the runtime builds: optimised for one image of the concrete shape.
    let plan = tract_onnx::onnx()
        .model_for_path(path)?
        .with_input_fact(0, f32::fact([1, c, h, w]).into())?
        .into_optimized()?
        .into_runnable()?;
    Ok(Box::new(move || {
        let input = Tensor::from_shape(&[1, c, h, w], &x).expect("shape");
        let out = plan.run(tvec![input.into()]).expect("tract runs");
        std::hint::black_box(out[1].to_plain_array_view::<f32>().expect("f32").len());
    }))
}

#[cfg(feature = "ort")]
fn ort_direct(path: &Path, chw: [usize; 3], x: Vec<f32>) -> Box<dyn FnMut()> {
    use ort::session::Session;
    use ort::value::TensorRef;
    let env = slim_runtime::engine::ort::environment().expect("ONNX Runtime loads");
    let mut session = Session::builder(env)
        .expect("builder")
        // The same session options as the runtime's (see engine/ort.rs).
        .with_intra_op_spinning(false)
        .expect("config")
        .commit_from_file(path)
        .expect("ONNX Runtime loads the graph");
    let [c, h, w] = chw;
    Box::new(move || {
        let input = TensorRef::from_array_view(([1, c, h, w], x.as_slice())).expect("tensor");
        let out = session
            .run(ort::inputs!["image" => input])
            .expect("ort runs");
        let (_, logits) = out["logits"].try_extract_tensor::<f32>().expect("f32");
        std::hint::black_box(logits.len());
    })
}

fn runtime(model: &'static SlimModel, width: Width, x: Vec<f32>) -> Box<dyn FnMut()> {
    Box::new(move || {
        std::hint::black_box(model.run(width, &x, 1).expect("runtime runs").logits.len());
    })
}

fn main() {
    let (dir, rounds) = slim_test_utils::bench_args();
    let open = |backend| -> &'static SlimModel {
        let m = SlimModel::open(&dir, backend).unwrap_or_else(|e| panic!("{e}"));
        m.load_all().unwrap_or_else(|e| panic!("{e}"));
        Box::leak(Box::new(m))
    };
    let tract = open(Backend::Tract);
    #[cfg(feature = "ort")]
    let ort = open(Backend::Ort {
        provider: slim_runtime::Provider::Cpu,
        fallback: false,
    });
    let chw = tract.input_chw();
    let x: Vec<f32> = (0..tract.image_len())
        .map(|i| (i % 97) as f32 / 48.0 - 1.0)
        .collect();

    // Per width: the variants, then their medians.
    let mut table = Vec::new();
    let mut all: Vec<(Width, Vec<Variant>)> = Vec::new();
    for e in &tract.manifest().widths {
        let path = dir.join(&e.file);
        let v = Vec::from([
            Variant {
                name: "tract direct",
                run: tract_direct(&path, chw, x.clone()).expect("tract loads"),
            },
            Variant {
                name: "runtime tract",
                run: runtime(tract, e.width, x.clone()),
            },
            #[cfg(feature = "ort")]
            Variant {
                name: "ort direct",
                run: ort_direct(&path, chw, x.clone()),
            },
            #[cfg(feature = "ort")]
            Variant {
                name: "runtime ort",
                run: runtime(ort, e.width, x.clone()),
            },
        ]);
        all.push((e.width, v));
    }
    let total = (rounds * all.iter().map(|(_, v)| v.len()).sum::<usize>()) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rounds of {msg}").expect("template"),
    );
    bar.set_message(format!("{CALLS} calls"));
    let mut ms: Vec<Vec<Vec<f64>>> = all.iter().map(|(_, v)| vec![Vec::new(); v.len()]).collect();
    for (_, v) in &mut all {
        for var in v.iter_mut() {
            for _ in 0..10 {
                (var.run)(); // warm up
            }
        }
    }
    // Backend by backend (ONNX Runtime's spinning worker threads would slow whatever
    // runs right after it), direct and runtime in alternating order, with a pause before
    // each block so that no block inherits the previous one's spinning threads.
    let pairs = all[0].1.len() / 2;
    for pair in 0..pairs {
        for round in 0..rounds {
            for (i, (_, v)) in all.iter_mut().enumerate() {
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for j in order.map(|k| 2 * pair + k) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    let t = Instant::now();
                    for _ in 0..CALLS {
                        (v[j].run)();
                    }
                    ms[i][j].push(t.elapsed().as_secs_f64() * 1e3 / CALLS as f64);
                    bar.inc(1);
                }
            }
        }
    }
    bar.finish_and_clear();
    for (i, (w, v)) in all.iter().enumerate() {
        let med: Vec<f64> = ms[i]
            .iter()
            .map(|s| percentile(s, 0.5).expect("rounds"))
            .collect();
        table.push((*w, v.iter().map(|v| v.name).collect::<Vec<_>>(), med));
    }

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} on {}; batch 1; median over {rounds} rounds of the mean of {CALLS} calls\n",
        dir.display(),
        slim_runtime::calibrate::device(),
    );
    println!("## Overhead: runtime / direct on the same graph\n");
    println!("| width | backend | direct ms | runtime ms | runtime / direct |");
    println!("|---|---|---|---|---|");
    for (w, names, med) in &table {
        for pair in (0..names.len()).step_by(2) {
            let backend = names[pair].split(' ').next().expect("named");
            println!(
                "| {w} | {backend} | {:.4} | {:.4} | {:.3} |",
                med[pair],
                med[pair + 1],
                med[pair + 1] / med[pair]
            );
        }
    }
    println!("\n## Latency per width through the runtime ({threads} threads available)\n");
    let macs1 = tract.manifest().widths[0].macs as f64;
    let names = &table[0].1;
    print!("| width | MMACs | MACs / width 1.0 |");
    for pair in (1..names.len()).step_by(2) {
        print!(" {} ms | / width 1.0 |", names[pair]);
    }
    println!();
    println!("|---|---|---|{}", "---|---|".repeat(names.len() / 2));
    for ((w, _, med), e) in table.iter().zip(&tract.manifest().widths) {
        print!(
            "| {w} | {:.2} | {:.3} |",
            e.macs as f64 / 1e6,
            e.macs as f64 / macs1
        );
        for pair in (1..names.len()).step_by(2) {
            print!(" {:.4} | {:.3} |", med[pair], med[pair] / table[0].2[pair]);
        }
        println!();
    }
}

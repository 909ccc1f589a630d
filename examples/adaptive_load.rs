//! A real load run of the adaptive controller: client threads classify Fashion-MNIST
//! images one at a time under a p95 target while busy threads come and go, and the
//! controller steps down when the CPU is taken and back up when it is free.
//!
//! ```sh
//! cargo run --release -p slim-examples --example adaptive_load -- \
//!     models/fashion-mnist-resnet20 /usr/share/datasets/fashion-mnist
//! ```
//! Optional third and fourth arguments: the p95 target in ms (default: 1.5 times width
//! 1.0's p95 measured first, without load) and the busy threads (default: 2 per core).
//! Phases: 10 s calm, 10 s with the busy threads, 15 s calm; a line per second. The
//! controller's costs come from a calibration (cached in the temporary folder).

use slim_core::{Variant, Width};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use slim_core::stats::percentile;
use slim_data::Split;
use slim_runtime::adaptive::{Adaptive, Config, SystemClock};
use slim_runtime::calibrate::latency_samples;
use slim_runtime::{Backend, SlimModel};

const CLIENTS: usize = 2;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, data, rest @ ..] = args.as_slice() else {
        bail!("usage: adaptive_load MODEL_DIR DATASET [TARGET_P95_MS [BUSY_THREADS]]");
    };
    // Calibrated costs predict the latency of a wider width better than MACs do; the
    // cache goes to the temporary folder, not into the model.
    let cache = std::env::temp_dir().join("slim-adaptive-load-calibration.json");
    let model = SlimModel::open(Path::new(model_dir), Backend::Tract)?.with_calibration_path(cache);
    model.load_all()?;
    let (cal, reused) = model.calibrate(1, 100, |_, _| {})?;
    println!(
        "calibration ({}): {}",
        if reused { "cached" } else { "measured" },
        cal.widths
            .iter()
            .map(|w| format!("{} p50 {:.3} ms", w.width, w.latency.p50_ms))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let model = Arc::new(model);
    let ds = slim_data::open(Path::new(data), Split::Test)?;
    let mut images = Vec::new();
    for i in 0..64.min(ds.len()) {
        let mut x = Vec::new();
        model.normalize().apply(ds.image(i)?, &mut x);
        images.push(x);
    }
    let images = Arc::new(images);
    let target = match rest.first() {
        Some(t) => t.parse().context("TARGET_P95_MS must be a number")?,
        None => {
            let s = latency_samples(&model, Width::FULL, &images[0], 1, (20, 200), || {})?;
            let p95 = percentile(&s, 0.95).expect("samples");
            println!("width 1.0 unloaded: p95 {p95:.3} ms over 200 calls");
            1.5 * p95
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let busy_threads = match rest.get(1) {
        Some(b) => b.parse().context("BUSY_THREADS must be a number")?,
        None => 2 * cores,
    };
    println!(
        "target p95 {target:.3} ms; {CLIENTS} clients; {busy_threads} busy threads from 10 s to 20 s"
    );
    let cfg = Config {
        dwell: Duration::from_millis(300),
        cooldown: Duration::from_secs(1),
        ..Config::p95(target)
    };
    let ctrl = Arc::new(Adaptive::for_model(&model, cfg, SystemClock::default())?);

    let stop = Arc::new(AtomicBool::new(false));
    // Each client records (time since start, width, latency ms) of every request.
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (model, ctrl, images, stop) =
                (model.clone(), ctrl.clone(), images.clone(), stop.clone());
            std::thread::spawn(move || -> Result<Vec<(f64, Variant, f64)>> {
                let mut log = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (w, _) = ctrl.run(&model, &images[i % images.len()])?;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    log.push((start.elapsed().as_secs_f64(), w, ms));
                    i += CLIENTS;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(log)
            })
        })
        .collect();
    let busy = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..busy_threads)
        .map(|_| {
            let (busy, stop) = (busy.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if busy.load(Ordering::Relaxed) {
                        for k in 0..100_000u64 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(k);
                        }
                        std::hint::black_box(x);
                    } else {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect();
    for second in 0..35 {
        busy.store((10..20).contains(&second), Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().expect("busy thread");
    }
    let mut log = Vec::new();
    for c in clients {
        log.extend(c.join().expect("client thread")?);
    }

    println!("second  load  requests  p95 ms  widths served (share)");
    for second in 0..35 {
        let reqs: Vec<&(f64, Variant, f64)> =
            log.iter().filter(|r| r.0 as usize == second).collect();
        if reqs.is_empty() {
            continue;
        }
        let ms: Vec<f64> = reqs.iter().map(|r| r.2).collect();
        let mut shares = String::new();
        for &w in model.variants() {
            let k = reqs.iter().filter(|r| r.1 == w).count();
            if k > 0 {
                shares += &format!(" {w}:{:.0}%", 100.0 * k as f64 / reqs.len() as f64);
            }
        }
        println!(
            "{second:>6}  {:>4}  {:>8}  {:>6.3} {shares}",
            if (10..20).contains(&second) {
                "busy"
            } else {
                "-"
            },
            reqs.len(),
            percentile(&ms, 0.95).expect("requests")
        );
    }
    println!("switches:");
    for s in ctrl.switches() {
        println!(
            "  {:>6.2} s: {} -> {} (window p95 {:.3} ms, predicted {:.3} ms)",
            s.at.as_secs_f64(),
            s.from,
            s.to,
            s.observed_ms,
            s.predicted_ms
        );
    }
    for (phase, range) in [
        ("calm", 0.0..10.0),
        ("busy", 10.0..20.0),
        ("calm again", 20.0..35.0),
    ] {
        let ms: Vec<f64> = log
            .iter()
            .filter(|r| range.contains(&r.0))
            .map(|r| r.2)
            .collect();
        if let Some(p) = percentile(&ms, 0.95) {
            println!(
                "{phase}: {} requests, p95 {p:.3} ms (target {target:.3})",
                ms.len()
            );
        }
    }
    Ok(())
}

//! Threads and batches on the real model: the same outputs at 1 and 2 threads and at every
//! batch size as for its images one by one, the threads each engine reports, and per-node
//! profiles that account for a run.

use std::num::NonZeroUsize;

use slim_runtime::{Backend, SlimModel};
use slim_test_utils::{model as fixture, width};

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 89) as f32 / 44.0) - 1.0).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Tract];
    if cfg!(feature = "ort") {
        b.push(Backend::parse("ort").unwrap());
    }
    b
}

#[test]
fn two_threads_give_the_outputs_of_one_and_say_so() {
    for backend in backends() {
        let one = SlimModel::open(&fixture(), backend.clone()).unwrap();
        let two = SlimModel::open(&fixture(), backend.clone())
            .unwrap()
            .with_threads(NonZeroUsize::new(2));
        assert_eq!(two.threads(), NonZeroUsize::new(2));
        let x = ramp(8 * one.image_len());
        for w in one.widths() {
            let (a, b) = (one.run(w, &x, 8).unwrap(), two.run(w, &x, 8).unwrap());
            let d = max_diff(&a.logits, &b.logits).max(max_diff(&a.embedding, &b.embedding));
            assert!(
                d <= 1e-5,
                "{} width {w}: 1 vs 2 threads differ by {d}",
                backend.name()
            );
        }
        assert_eq!(two.engine(width(1.0)).unwrap().threads(), Some(2));
        let default = one.engine(width(1.0)).unwrap().threads();
        match backend {
            Backend::Tract => assert_eq!(default, Some(1), "tract: the calling thread"),
            _ => assert_eq!(default, None, "ONNX Runtime's own default"),
        }
    }
}

#[test]
fn threads_set_after_loading_load_the_widths_again() {
    let model = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    model.load_all().unwrap();
    let model = model.with_threads(NonZeroUsize::new(2));
    assert!(!model.is_loaded(width(0.5)));
    assert_eq!(model.engine(width(0.5)).unwrap().threads(), Some(2));
}

#[test]
fn every_batch_size_gets_the_answer_of_running_its_images_one_by_one() {
    for threads in [1, 2] {
        let model = SlimModel::open(&fixture(), Backend::Tract)
            .unwrap()
            .with_threads(NonZeroUsize::new(threads));
        let per_image = model.image_len();
        let x = ramp(9 * per_image);
        for w in model.widths() {
            let singles: Vec<_> = (0..9)
                .map(|i| {
                    model
                        .run(w, &x[i * per_image..(i + 1) * per_image], 1)
                        .unwrap()
                })
                .collect();
            for batch in [2, 5, 9] {
                let out = model.run(w, &x[..batch * per_image], batch).unwrap();
                assert_eq!(out.batch, batch);
                for (i, single) in singles.iter().take(batch).enumerate() {
                    assert_eq!(
                        out.logits_row(i),
                        &single.logits[..],
                        "{threads}T batch {batch}"
                    );
                    assert_eq!(out.embedding_row(i), &single.embedding[..]);
                }
            }
        }
    }
}

#[test]
fn a_profile_names_the_operators_of_a_run() {
    let model = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let engine = model.engine(width(1.0)).unwrap();
    let x = ramp(2 * model.image_len());
    let t = std::time::Instant::now();
    let p = engine.profile(&x, 2, 3).unwrap();
    let wall_ms_per_run = t.elapsed().as_secs_f64() * 1e3 / 3.0;
    assert_eq!((p.batch, p.runs), (2, 3));
    assert!(
        p.nodes.len() > 20,
        "ResNet-20 has more nodes than {}",
        p.nodes.len()
    );
    // Node times are parts of each run: none counted twice, none made up.
    assert!(
        p.total_ms() > 0.0 && p.total_ms() <= wall_ms_per_run,
        "{} ms of nodes in a {wall_ms_per_run} ms run",
        p.total_ms()
    );
    let ops = p.by_op();
    assert!(
        ops.iter()
            .any(|o| o.op.contains("Conv") || o.op.contains("MatMul")),
        "{ops:?}"
    );
    assert!(p.table().contains("| total |"));
    // A wrong input is refused here as in a run.
    assert!(engine.profile(&x, 3, 1).is_err());
    if cfg!(feature = "ort") {
        let ort = SlimModel::open(&fixture(), Backend::parse("ort").unwrap()).unwrap();
        let e = ort
            .engine(width(1.0))
            .unwrap()
            .profile(&x, 2, 1)
            .unwrap_err();
        assert!(e.to_string().contains("tract"), "{e}");
    }
}

#[test]
fn callers_on_many_threads_share_one_pool_safely() {
    // Batches spread over the pool and single images whose kernels use it, at once: a
    // pool thread must never take up an image while inside another's kernel.
    let model = std::sync::Arc::new(
        SlimModel::open(&fixture(), Backend::Tract)
            .unwrap()
            .with_threads(NonZeroUsize::new(2)),
    );
    let per_image = model.image_len();
    let x = std::sync::Arc::new(ramp(4 * per_image));
    let want: Vec<_> = [1, 4]
        .map(|b| model.run(width(1.0), &x[..b * per_image], b).unwrap())
        .into();
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let (m, x) = (model.clone(), x.clone());
            std::thread::spawn(move || {
                (0..20)
                    .map(|k| {
                        let b = if (i + k) % 2 == 0 { 1 } else { 4 };
                        (b, m.run(width(1.0), &x[..b * per_image], b).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for c in callers {
        for (b, out) in c.join().unwrap() {
            assert_eq!(out, want[usize::from(b == 4)], "batch {b}");
        }
    }
}

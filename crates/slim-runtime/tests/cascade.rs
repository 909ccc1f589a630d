//! The width cascade on the real model: every image answered by the width its confidences
//! say, each answer that width's own output, and the thresholds' ends behaving as fixed
//! widths.

use slim_runtime::cascade::{Cascade, Confidence, Stage, confidence_of};
use slim_runtime::{Backend, SlimModel};
use slim_test_utils::{fashion_mnist_pngs, model, width};

fn stages(thresholds: &[(f64, f64)]) -> Vec<Stage> {
    thresholds
        .iter()
        .map(|&(w, threshold)| Stage {
            width: width(w),
            threshold,
        })
        .collect()
}

#[test]
fn each_image_stops_at_the_first_width_sure_enough() {
    let m = SlimModel::open(&model(), Backend::Tract).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = fashion_mnist_pngs(dir.path(), 32);
    let paths: Vec<_> = images.iter().map(|(p, _)| p.clone()).collect();
    let inputs = m.preprocess_files(&paths).unwrap();
    let n = paths.len();
    let widths = [0.25, 0.5, 1.0];
    let fixed: Vec<_> = widths
        .iter()
        .map(|&w| m.run(width(w), &inputs, n).unwrap())
        .collect();

    for kind in [Confidence::MaxProb, Confidence::Margin] {
        // Threshold 0: the narrowest answers all, exactly as it does alone.
        let c = Cascade::new(kind, stages(&[(0.25, 0.0), (1.0, 0.0)])).unwrap();
        for (i, a) in m.cascade(&c, &inputs).unwrap().iter().enumerate() {
            assert_eq!((a.stage, a.logits.as_slice()), (0, fixed[0].logits_row(i)));
        }

        // Thresholds in between: each image goes on exactly while it is under them, and
        // its answer is that width's own (batched with other images, so within 1e-5).
        let t = 0.8;
        let c = Cascade::new(kind, stages(&[(0.25, t), (0.5, t), (1.0, 0.0)])).unwrap();
        let answers = m.cascade(&c, &inputs).unwrap();
        let mut per_stage = [0; 3];
        for (i, a) in answers.iter().enumerate() {
            let conf: Vec<f32> = (0..3)
                .map(|s| confidence_of(kind, fixed[s].logits_row(i)))
                .collect();
            let expected = (0..3).find(|&s| s == 2 || f64::from(conf[s]) >= t).unwrap();
            assert_eq!(a.stage, expected, "image {i}: confidences {conf:?}");
            assert_eq!(a.width, width(widths[expected]));
            let worst = a
                .logits
                .iter()
                .zip(fixed[expected].logits_row(i))
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "image {i}: {worst}");
            per_stage[expected] += 1;
        }
        assert_eq!(per_stage.iter().sum::<usize>(), n);
        assert!(
            per_stage[0] > 0 && per_stage[0] < n,
            "a threshold of {t} should split these 32 images: {per_stage:?}"
        );
    }

    // A width the model lacks is refused by name.
    let c = Cascade::new(Confidence::MaxProb, stages(&[(0.3, 0.5), (1.0, 0.0)])).unwrap();
    let e = m.cascade(&c, &inputs).unwrap_err().to_string();
    assert!(e.contains("no width 0.3"), "{e}");
}

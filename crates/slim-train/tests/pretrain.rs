//! Pretraining mechanics on a few real Fashion-MNIST images (skipped when the Debian
//! package is absent): exact resume, slow start, the NaN stop, refusing a checkpoint of
//! another architecture, MoCo v2's queue and MoCo v3's predictor, each framework's views.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slim_core::{Backbone, ModelConfig};
use slim_data::{Dataset, Split};
use slim_train::pretrain::{Augmentation, Framework, PretrainConfig, Trainer, checkpoint_path};
use slim_train::{Error, checkpoint};
use tch::Device;

mod common;
use common::{FASHION, config, data, model, serial};

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let c = slim_core::checkpoint::load(path).unwrap();
    c.tensors
        .into_iter()
        .filter(|(n, _)| !n.starts_with("reference."))
        .map(|(n, t)| (n, t.data))
        .collect()
}

/// Trains `c` for 16 steps in `dir/a`, and for 6 steps then (in a new trainer, as after
/// a kill) the other 10 in `dir/b`; asserts both end with the same tensors, training
/// state included. Returns `dir/b`.
fn straight_and_resumed_agree(c: PretrainConfig, ds: Arc<dyn Dataset>, dir: &Path) -> PathBuf {
    tch::set_num_threads(1);
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let mut straight = Trainer::new(&m, c.clone(), ds.clone(), &a, false, Device::Cpu, 2).unwrap();
    straight.run(None, &mut slim_core::Silent).unwrap();
    assert_eq!(straight.state().step, 16, "4 epochs of 4 batches");
    let mut first = Trainer::new(&m, c.clone(), ds.clone(), &b, false, Device::Cpu, 1).unwrap();
    first.run(Some(6), &mut slim_core::Silent).unwrap();
    drop(first);
    let mut resumed = Trainer::new(&m, c, ds, &b, true, Device::Cpu, 3).unwrap();
    assert_eq!(
        (
            resumed.state().step,
            resumed.state().epoch,
            resumed.state().position
        ),
        (6, 1, 2)
    );
    resumed.run(None, &mut slim_core::Silent).unwrap();
    let (wa, wb) = (weights(&checkpoint_path(&a)), weights(&checkpoint_path(&b)));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let d = ta
            .iter()
            .zip(tb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d <= 1e-5, "{na} differs by {d} after resume");
    }
    b
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    let dir = tempfile::tempdir().unwrap();
    let b = straight_and_resumed_agree(config(Framework::Simclr), ds, dir.path());
    // A second start without --resume refuses to overwrite the run.
    let m2 = model(
        &*slim_data::open(Path::new(FASHION), Split::Train).unwrap(),
        Backbone::Resnet20,
    );
    let err = Trainer::new(
        &m2,
        config(Framework::Simclr),
        data(32).unwrap(),
        &b,
        false,
        Device::Cpu,
        1,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn moco_v3_trains_its_predictor_and_resumes_exactly() {
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = PretrainConfig {
        slow_start_epoch: 1,
        temperature: 1.0,
        ..config(Framework::MocoV3)
    };
    let b = straight_and_resumed_agree(c.clone(), ds.clone(), dir.path());
    let saved = slim_core::checkpoint::load(&checkpoint_path(&b)).unwrap();
    assert_eq!(saved.tensors["train.predictor.fc1.weight"].shape, [32, 16]);
    assert!(saved.tensors.keys().any(|k| k.starts_with("train.key.")));
    assert!(
        !saved.tensors.contains_key("train.queue"),
        "v3 keeps no queue"
    );
    // Training moved the predictor away from a fresh one's initialisation.
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let fresh = Trainer::new(&m, c, ds, &dir.path().join("c"), false, Device::Cpu, 1).unwrap();
    fresh.save().unwrap();
    let init = slim_core::checkpoint::load(&checkpoint_path(&dir.path().join("c"))).unwrap();
    let (w0, w1) = (
        &init.tensors["train.predictor.fc1.weight"].data,
        &saved.tensors["train.predictor.fc1.weight"].data,
    );
    let moved = w0
        .iter()
        .zip(w1)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-4, "the predictor did not train: {moved}");
}

#[test]
fn sub_widths_join_only_at_the_slow_start_epoch() {
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(
        &m,
        config(Framework::Simclr),
        ds,
        dir.path(),
        false,
        Device::Cpu,
        2,
    )
    .unwrap();
    let bn = "stem.bn.w500.running_mean";
    t.run(Some(8), &mut slim_core::Silent).unwrap(); // epochs 0 and 1: full width only
    let before = slim_core::checkpoint::load(&checkpoint_path(dir.path())).unwrap();
    assert!(
        before.tensor(bn).data.iter().all(|&v| v == 0.0),
        "width 0.5 trained before the switch"
    );
    assert!(
        before
            .tensor("stem.bn.w1000.running_mean")
            .data
            .iter()
            .any(|&v| v != 0.0)
    );
    t.run(Some(1), &mut slim_core::Silent).unwrap();
    let after = slim_core::checkpoint::load(&checkpoint_path(dir.path())).unwrap();
    assert!(
        after.tensor(bn).data.iter().any(|&v| v != 0.0),
        "width 0.5 did not join"
    );
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 9);
    assert!(
        metrics
            .lines()
            .last()
            .unwrap()
            .contains("\"sub_widths_active\":true")
    );
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(Framework::Simclr);
    c.lr = 1e30;
    c.warmup_epochs = 0;
    let mut t = Trainer::new(&m, c, ds, dir.path(), false, Device::Cpu, 2).unwrap();
    let err = t.run(None, &mut slim_core::Silent).unwrap_err();
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");
    assert!(err.to_string().contains("NaN"), "{err}");
    // Whatever checkpoint exists loads and holds finite weights.
    if checkpoint_path(dir.path()).exists() {
        let (net, _vs, _) = checkpoint::load(&checkpoint_path(dir.path()), Device::Cpu).unwrap();
        assert!(
            net.named_tensors()
                .iter()
                .all(|(_, t)| t.isfinite().all().int64_value(&[]) == 1)
        );
    }
}

#[test]
fn resuming_with_another_architecture_is_refused() {
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(
        &model(ds.as_ref(), Backbone::Resnet20),
        config(Framework::Simclr),
        ds.clone(),
        dir.path(),
        false,
        Device::Cpu,
        2,
    )
    .unwrap();
    t.run(Some(1), &mut slim_core::Silent).unwrap();
    let other = model(ds.as_ref(), Backbone::MobilenetV2);
    let err = Trainer::new(
        &other,
        config(Framework::Simclr),
        ds.clone(),
        dir.path(),
        true,
        Device::Cpu,
        2,
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("checkpoint.safetensors")
            && msg.contains("resnet20")
            && msg.contains("mobilenet-v2"),
        "{msg}"
    );
    // A run of an older slim-train, whose heads had another layout, is refused by name.
    let path = checkpoint_path(dir.path());
    let c = slim_core::checkpoint::load(&path).unwrap();
    let mut state: serde_json::Value =
        serde_json::from_str(c.train_state.as_deref().unwrap()).unwrap();
    state["config"]
        .as_object_mut()
        .unwrap()
        .remove("head_layout");
    slim_core::checkpoint::save_with_state(&path, &c.config, &c.tensors, Some(&state.to_string()))
        .unwrap();
    let err = Trainer::new(
        &model(ds.as_ref(), Backbone::Resnet20),
        config(Framework::Simclr),
        ds,
        dir.path(),
        true,
        Device::Cpu,
        2,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("checkpoint.safetensors") && err.contains("layout generation 0"),
        "{err}"
    );
}

#[test]
fn moco_v2_fills_its_queue_and_resumes_it() {
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(Framework::MocoV2);
    c.slow_start_epoch = 0;
    let mut t = Trainer::new(&m, c.clone(), ds.clone(), dir.path(), false, Device::Cpu, 2).unwrap();
    t.run(Some(5), &mut slim_core::Silent).unwrap();
    assert_eq!(t.state().queue_ptr, (5 * 8) % 32);
    let saved = slim_core::checkpoint::load(&checkpoint_path(dir.path())).unwrap();
    assert_eq!(saved.tensors["train.queue"].shape, vec![32, 16]);
    assert!(saved.tensors.keys().any(|k| k.starts_with("train.key.")));
    let resumed = Trainer::new(&m, c, ds, dir.path(), true, Device::Cpu, 2).unwrap();
    assert_eq!(resumed.state().queue_ptr, 8);
}

#[test]
fn the_gpu_settings_train_on_any_device() {
    // Color augmentation on the device, bf16 convolutions and channels-last together,
    // run here on the CPU device: the run trains and writes a loadable checkpoint. The
    // whole run (4 epochs of 4 steps), not 8 steps: on a CPU with native bf16 (Intel Xeon,
    // avx512_bf16) the objective was still above its start after 8 steps (5.31 -> 5.40),
    // and 4.85 after 16.
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    tch::set_num_threads(1);
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let dir = tempfile::tempdir().unwrap();
    let c = PretrainConfig {
        augment_on_device: true,
        bf16: true,
        channels_last: true,
        slow_start_epoch: 0,
        ..config(Framework::Simclr)
    };
    let mut t = Trainer::new(&m, c, ds, dir.path(), false, Device::Cpu, 2).unwrap();
    let before = t.objective(2).unwrap();
    let path = t.run(None, &mut slim_core::Silent).unwrap();
    let after = t.objective(2).unwrap();
    assert!(before.is_finite() && after.is_finite());
    assert!(
        after < before,
        "objective {before} -> {after} after the run"
    );
    checkpoint::load(&path, Device::Cpu).unwrap();
}

#[test]
fn a_width_trained_alone_leaves_every_other_width_untouched() {
    let _serial = serial();
    let Some(ds) = data(32) else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let half = slim_test_utils::width(0.5);
    let c = PretrainConfig {
        alone: Some(half),
        ..config(Framework::Simclr)
    };
    let mut t = Trainer::new(&m, c, ds, dir.path(), false, Device::Cpu, 1).unwrap();
    t.run(Some(4), &mut slim_core::Silent).unwrap();
    let w = weights(&checkpoint_path(dir.path()));
    // BatchNorm's running statistics move only in a forward pass of their width.
    let moved = |tag: &str| {
        (w.iter())
            .filter(|(n, _)| n.contains(&format!(".bn.{tag}.running_mean")))
            .any(|(_, t)| t.iter().any(|&v| v != 0.0))
    };
    assert!(moved(&half.tag()), "width 0.5 trained");
    assert!(!moved(&slim_core::Width::FULL.tag()), "width 1.0 never ran");
    let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["contrastive"].as_array().unwrap().len(), 1, "{last}");
    assert_eq!(last["distillation"][0], 0.0);
}

/// The train state of a run of `config` three steps in, as its checkpoint stores it.
fn state_json(config: PretrainConfig) -> serde_json::Value {
    let state = slim_train::pretrain::TrainState {
        config,
        step: 3,
        epoch: 0,
        position: 3,
        queue_ptr: 0,
        skipped: 0,
    };
    serde_json::to_value(&state).unwrap()
}

#[test]
fn an_older_state_keeps_its_batchnorm_split_only_for_moco_v2() {
    // Earlier versions stored `moco_bn_splits` (default 8) for every framework and
    // applied it to MoCo v2 alone; it is read as `bn_splits`, now applied to all.
    for (framework, kept) in [(Framework::Simclr, 1), (Framework::MocoV2, 8)] {
        let mut json = state_json(config(framework));
        let c = json["config"].as_object_mut().unwrap();
        c.remove("bn_splits");
        c.insert("moco_bn_splits".into(), 8.into());
        let parsed = slim_train::pretrain::TrainState::parse(&json.to_string()).unwrap();
        assert_eq!(parsed.config.bn_splits, kept, "{framework:?}");
    }
}

/// Sixty-four gray-level RGB images of 64 pixels (blur applies from 64).
struct Levels;

impl slim_data::Dataset for Levels {
    fn len(&self) -> usize {
        64
    }
    fn class_names(&self) -> &[String] {
        &[]
    }
    fn label(&self, _: usize) -> usize {
        0
    }
    fn image(&self, i: usize) -> Result<slim_data::Image, slim_data::Error> {
        Ok(slim_data::Image::new(
            64,
            64,
            3,
            vec![(i * 4) as u8; 64 * 64 * 3],
        ))
    }
    fn describe(&self) -> String {
        "levels".into()
    }
}

/// Per view of a run's loader, the share of views drawn blurred and solarized.
fn drawn(framework: Framework, augmentation: Option<Augmentation>) -> [(f64, f64); 2] {
    let model = ModelConfig::new(
        Backbone::Resnet20,
        3,
        64,
        vec![],
        vec![0.5; 3],
        vec![0.25; 3],
    );
    let config = PretrainConfig {
        batch_size: 16,
        augment_on_device: true,
        augmentation,
        ..config(framework)
    };
    let batches: Vec<_> =
        slim_train::pretrain::loader(Arc::new(Levels), &model, &config, 1, (0, 1))
            .epoch(0)
            .collect();
    [0, 1].map(|v| {
        let colors: Vec<_> = batches.iter().flat_map(|b| &b.color[v]).collect();
        let share = |f: &dyn Fn(&slim_data::augment::Color) -> bool| {
            colors.iter().filter(|c| f(c)).count() as f64 / colors.len() as f64
        };
        (share(&|c| c.blur.is_some()), share(&|c| c.solarize))
    })
}

#[test]
fn each_framework_draws_its_views_from_its_augmentations() {
    let [first, second] = drawn(Framework::MocoV3, Some(Augmentation::MocoV3));
    assert_eq!(
        first,
        (1.0, 0.0),
        "MoCo v3's first view: always blurred, never solarized"
    );
    assert!(
        second.0 < 0.3 && second.1 > 0.0 && second.1 < 0.5,
        "MoCo v3's second view: {second:?}"
    );
    // SimCLR's and MoCo v2's views are alike: blur half the time, no solarization.
    for framework in [Framework::Simclr, Framework::MocoV2] {
        for (blur, solarize) in drawn(framework, Some(framework.default_augmentation())) {
            assert!(blur > 0.2 && blur < 0.8 && solarize == 0.0, "{framework:?}");
        }
    }
    // A MoCo v3 run of a version before its own augmentations goes on with MoCo v2's.
    for (_, solarize) in drawn(Framework::MocoV3, None) {
        assert_eq!(solarize, 0.0);
    }
}

#[test]
fn an_older_state_draws_the_augmentations_its_run_started_with() {
    let old = |framework| {
        let mut json = state_json(PretrainConfig {
            augmentation: Some(Augmentation::MocoV3),
            ..config(framework)
        });
        let text = json.to_string();
        let kept = slim_train::pretrain::TrainState::parse(&text).unwrap();
        assert_eq!(kept.config.augmentation(), Augmentation::MocoV3);
        json["config"]
            .as_object_mut()
            .unwrap()
            .remove("augmentation");
        let parsed = slim_train::pretrain::TrainState::parse(&json.to_string()).unwrap();
        parsed.config.augmentation()
    };
    assert_eq!(old(Framework::Simclr), Augmentation::Simclr);
    assert_eq!(old(Framework::MocoV2), Augmentation::MocoV2);
    assert_eq!(old(Framework::MocoV3), Augmentation::MocoV2);
}

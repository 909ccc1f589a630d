//! Trainable weight averaging on a short real Fashion-MNIST trajectory (skipped when the
//! Debian package is absent): the weights stay in the checkpoints' span (checked against
//! the raw checkpoints by least squares, not with the basis), TWA's objective is no worse
//! than the SWA point's, dependent checkpoints are dropped, per-block coefficients, the
//! BatchNorm recomputation, and each bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use slim_core::Backbone;
use slim_core::checkpoint::Precision;
use slim_data::Dataset;
use slim_train::pretrain::{Framework, PretrainConfig, Trainer, TrajectoryConfig, TrajectoryUnit};
use slim_train::twa::{Grouping, TwaConfig, list_checkpoints};
use slim_train::{Error, SlimNet, checkpoint};
use tch::{Device, Kind, Tensor};

mod common;
use common::{config, data, model, serial};

/// Pretrains 4 epochs of 8 batches, keeping a trajectory checkpoint every 4 steps.
fn trajectory(ds: Arc<dyn Dataset>, dir: &Path) -> Vec<PathBuf> {
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let c = PretrainConfig {
        trajectory: Some(TrajectoryConfig {
            every: 4,
            unit: TrajectoryUnit::Steps,
            precision: Precision::F32,
        }),
        ..config(Framework::Simclr)
    };
    let mut t = Trainer::new(&m, c, ds, dir, false, Device::Cpu, 2).unwrap();
    let plan = t.trajectory_plan().unwrap();
    assert_eq!(plan.count, 8);
    t.run(None, &mut slim_core::Silent).unwrap();
    let files = list_checkpoints(&[dir.join("trajectory")]).unwrap();
    assert_eq!(files.len(), 8);
    let on_disk = std::fs::metadata(&files[0]).unwrap().len() as usize;
    assert!(
        on_disk >= plan.bytes_each && on_disk < plan.bytes_each + 64 * 1024,
        "size {on_disk} vs planned {}",
        plan.bytes_each
    );
    files
}

fn twa_config(files: Vec<PathBuf>, grouping: Grouping) -> PretrainConfig {
    PretrainConfig {
        epochs: 2,
        warmup_epochs: 0,
        slow_start_epoch: 0,
        lr: 0.05,
        twa: Some(TwaConfig {
            checkpoints: files,
            grouping,
            max_basis_bytes: 1 << 30,
        }),
        ..config(Framework::Simclr)
    }
}

fn twa_trainer(
    ds: Arc<dyn Dataset>,
    files: Vec<PathBuf>,
    grouping: Grouping,
    out: &Path,
) -> Result<Trainer, Error> {
    let m = slim_core::checkpoint::load(&files[0])?.config;
    Trainer::new(
        &m,
        twa_config(files, grouping),
        ds,
        out,
        false,
        Device::Cpu,
        2,
    )
}

/// The trainable tensors (model without BatchNorm statistics, and the head) of a
/// checkpoint file, flattened into one float64 vector in name order.
fn flat_file(path: &Path) -> Tensor {
    let c = slim_core::checkpoint::load(path).unwrap();
    flat(
        c.tensors
            .iter()
            .map(|(n, t)| (n.clone(), Tensor::from_slice(&t.data)))
            .collect(),
    )
}

fn flat(tensors: BTreeMap<String, Tensor>) -> Tensor {
    let parts: Vec<Tensor> = tensors
        .into_iter()
        .filter(|(n, _)| !n.contains("running_") && !n.starts_with("reference."))
        .map(|(_, t)| t.flatten(0, -1).to_kind(Kind::Double))
        .collect();
    Tensor::cat(&parts, 0)
}

/// The trainer's current trainable weights, as [`flat_file`] orders them.
fn flat_trainer(dir: &Path, t: &Trainer) -> Tensor {
    let path = dir.join("now.safetensors");
    t.save().unwrap();
    std::fs::copy(slim_train::pretrain::checkpoint_path(dir), &path).unwrap();
    let c = slim_core::checkpoint::load(&path).unwrap();
    flat(
        c.tensors
            .iter()
            .filter(|(n, _)| !n.starts_with("train.twa.") && !n.starts_with("train.opt."))
            .map(|(n, t)| (n.clone(), Tensor::from_slice(&t.data)))
            .collect(),
    )
}

/// `‖w - C c*‖ / ‖w‖` for the least-squares `c*` over the checkpoints' rows `C`.
fn distance_from_span(files: &[PathBuf], w: &Tensor) -> f64 {
    let c = Tensor::stack(&files.iter().map(|f| flat_file(f)).collect::<Vec<_>>(), 1);
    let (coef, _, _, _) = c.linalg_lstsq(&w.unsqueeze(1), None, "gelsd");
    let r = c.matmul(&coef).squeeze_dim(1) - w;
    r.norm().double_value(&[]) / w.norm().double_value(&[])
}

#[test]
fn twa_trains_in_the_span_and_ends_no_worse_than_the_swa_point() {
    let _serial = serial();
    let Some(ds) = data(64) else { return };
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let files = trajectory(ds.clone(), &dir.path().join("pre"));
    let out = dir.path().join("twa");
    let mut t = twa_trainer(ds, files.clone(), Grouping::Global, &out).unwrap();
    let report = t.basis_report().unwrap();
    assert_eq!(report.ranks, vec![("all".to_string(), 8)]);
    assert!(report.dependent.is_empty());

    // Training starts at the plain mean of the checkpoints.
    let start = flat_trainer(&out, &t);
    let mean = Tensor::stack(&files.iter().map(|f| flat_file(f)).collect::<Vec<_>>(), 0)
        .mean_dim(0, false, None);
    let gap = (&start - &mean).norm().double_value(&[]) / mean.norm().double_value(&[]);
    assert!(gap < 1e-5, "start is {gap} away from the mean");

    let swa = t.objective(8).unwrap();
    t.run(None, &mut slim_core::Silent).unwrap();
    assert!(t.finished());
    let twa = t.objective(8).unwrap();
    assert!(swa.is_finite() && twa.is_finite());
    assert!(
        twa <= swa + 1e-6,
        "TWA objective {twa} is worse than the SWA point's {swa}"
    );

    let end = flat_trainer(&out, &t);
    let moved = (&end - &start).norm().double_value(&[]) / start.norm().double_value(&[]);
    assert!(moved > 1e-4, "TWA did not move ({moved})");
    let off = distance_from_span(&files, &end);
    assert!(off < 1e-5, "TWA weights are {off} (relative) off the span");
    assert!(t.subspace().unwrap().off_span() < 1e-5);
    // A weight-space step leaves the span: the check above can fail.
    let outside = &end + Tensor::randn_like(&end) * 1e-2;
    assert!(distance_from_span(&files, &outside) > 1e-3);
}

#[test]
fn dependent_checkpoints_add_no_direction_and_per_block_gives_each_block_a_rank() {
    let _serial = serial();
    let Some(ds) = data(64) else { return };
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let files = trajectory(ds.clone(), &dir.path().join("pre"));
    // A duplicate and an average of two checkpoints lie in the span already.
    let (a, b) = (
        slim_core::checkpoint::load(&files[0]).unwrap(),
        slim_core::checkpoint::load(&files[3]).unwrap(),
    );
    let mix: BTreeMap<String, slim_core::Tensor> = a
        .tensors
        .iter()
        .map(|(n, t)| {
            let data = t
                .data
                .iter()
                .zip(&b.tensors[n].data)
                .map(|(x, y)| 0.25 * x + 0.75 * y)
                .collect();
            (n.clone(), slim_core::Tensor::new(t.shape.clone(), data))
        })
        .collect();
    let mix_path = dir.path().join("mix.safetensors");
    slim_core::checkpoint::save_with_state(&mix_path, &a.config, &mix, a.train_state.as_deref())
        .unwrap();
    let chosen = vec![
        files[0].clone(),
        files[3].clone(),
        files[0].clone(),
        mix_path.clone(),
        files[7].clone(),
    ];
    let t = twa_trainer(
        ds.clone(),
        chosen.clone(),
        Grouping::Global,
        &dir.path().join("g"),
    )
    .unwrap();
    let r = t.basis_report().unwrap();
    assert_eq!(r.ranks, vec![("all".to_string(), 3)]);
    let dropped: Vec<&PathBuf> = r.dependent.iter().map(|(p, _)| p).collect();
    assert_eq!(dropped, vec![&files[0], &mix_path]);
    assert!(t.subspace().unwrap().off_span() < 1e-5);
    let start = flat_trainer(&dir.path().join("g"), &t);
    assert!(start.isfinite().all().int64_value(&[]) == 1);

    // Per block: the probes never train (the objective does not use them), so every
    // checkpoint holds the same probes and that block has rank 1.
    let mut t = twa_trainer(ds, chosen, Grouping::PerBlock, &dir.path().join("b")).unwrap();
    let ranks = t.basis_report().unwrap().ranks.clone();
    let labels: Vec<&str> = ranks.iter().map(|(l, _)| l.as_str()).collect();
    for block in ["stem", "layer1.0", "layer2.0", "layer3.2", "head", "probe"] {
        assert!(labels.contains(&block), "no block {block} in {labels:?}");
    }
    assert_eq!(labels.len(), 12, "stem, 9 residual blocks, head, probe");
    for (l, r) in &ranks {
        let expected = if l == "probe" { 1 } else { 3 };
        assert_eq!(*r, expected, "block {l}");
    }
    t.run(Some(3), &mut slim_core::Silent).unwrap();
    assert!(t.subspace().unwrap().off_span() < 1e-5);
}

#[test]
fn batchnorm_recompute_is_exact_over_all_batches_at_that_width_only() {
    let _serial = serial();
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let mut m = slim_core::ModelConfig::new(
        Backbone::Resnet20,
        1,
        12,
        vec!["a".into(), "b".into()],
        vec![0.0],
        vec![1.0],
    );
    m.widths = slim_test_utils::widths(&[1.0, 0.5]);
    let net = SlimNet::new(&vs.root(), &m).unwrap();
    let batches: Vec<Tensor> = (0..3)
        .map(|i| Tensor::randn([4 + i, 1, 12, 12], (Kind::Float, Device::Cpu)) * (1.0 + i as f64))
        .collect();
    let get = |name: &str| -> Tensor {
        net.named_tensors()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .copy()
    };
    let full_before = get("stem.bn.w1000.running_var");
    let deep_before = get("layer3.2.conv2.bn.w500.running_mean");
    net.recompute_batchnorm(slim_test_utils::width(0.5), &batches)
        .unwrap();
    // The stem sees the raw input: its statistics at width 0.5 (8 of 16 channels) are
    // the per-channel mean and unbiased variance over all the batches' images together,
    // not the mean of the batches' statistics (batches of 4, 5 and 6 images at scales 1,
    // 2 and 3: that would be 4.67 instead of 5.2 times the unit variance).
    let weight = get("stem.weight").narrow(0, 0, 8).to_kind(Kind::Double);
    let all = Tensor::cat(&batches, 0).to_kind(Kind::Double);
    let y = all.conv2d(&weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    let mean = y.mean_dim([0i64, 2, 3].as_slice(), false, None);
    let var = y.var_dim([0i64, 2, 3].as_slice(), true, false);
    let rm = get("stem.bn.w500.running_mean").to_kind(Kind::Double);
    let rv = get("stem.bn.w500.running_var").to_kind(Kind::Double);
    assert!((rm - mean).abs().max().double_value(&[]) < 1e-5);
    let scale = var.abs().max().double_value(&[]);
    assert!((&rv - &var).abs().max().double_value(&[]) < 1e-5 * scale);
    // The mean of the batches' variances is measurably off.
    let per_batch = batches
        .iter()
        .map(|x| {
            x.to_kind(Kind::Double)
                .conv2d(&weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
                .var_dim([0i64, 2, 3].as_slice(), true, false)
        })
        .fold(Tensor::zeros([8], (Kind::Double, Device::Cpu)), |a, v| {
            a + v / 3.0
        });
    assert!((rv - per_batch).abs().max().double_value(&[]) > 0.02 * scale);
    // Deeper layers changed too; the other width did not.
    let deep_after = get("layer3.2.conv2.bn.w500.running_mean");
    assert!((deep_after - deep_before).abs().max().double_value(&[]) > 1e-3);
    assert!(get("stem.bn.w1000.running_var").equal(&full_before));
}

#[test]
fn bad_trajectories_are_refused_naming_the_file() {
    let _serial = serial();
    let Some(ds) = data(64) else { return };
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let files = trajectory(ds.clone(), &dir.path().join("pre"));
    let out = |n: &str| dir.path().join(n);
    let msg = |r: Result<Trainer, Error>| match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };

    let e = msg(twa_trainer(
        ds.clone(),
        files[..1].to_vec(),
        Grouping::Global,
        &out("one"),
    ));
    assert!(e.contains("at least two checkpoints"), "{e}");

    let missing = dir.path().join("nope.safetensors");
    let e = list_checkpoints(&[missing]).unwrap_err().to_string();
    assert!(e.contains("nope.safetensors"), "{e}");

    // Another width list: same backbone, widths [1.0, 0.25].
    let mut other = slim_core::checkpoint::load(&files[0]).unwrap().config;
    other.widths = slim_test_utils::widths(&[1.0, 0.25]);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = SlimNet::new(&vs.root(), &other).unwrap();
    let odd = dir.path().join("odd-widths.safetensors");
    checkpoint::save(&odd, &net, &[]).unwrap();
    let e = msg(twa_trainer(
        ds.clone(),
        vec![files[0].clone(), odd],
        Grouping::Global,
        &out("w"),
    ));
    assert!(
        e.contains("odd-widths.safetensors") && e.contains("0.25"),
        "{e}"
    );

    // A model checkpoint without the projection head is not a trajectory checkpoint.
    let (net, _vs, _) = checkpoint::load(&files[1], Device::Cpu).unwrap();
    let headless = dir.path().join("headless.safetensors");
    checkpoint::save(&headless, &net, &[]).unwrap();
    let e = msg(twa_trainer(
        ds.clone(),
        vec![files[0].clone(), headless],
        Grouping::Global,
        &out("h"),
    ));
    assert!(
        e.contains("headless.safetensors") && e.contains("train.head"),
        "{e}"
    );

    // A basis over the memory limit is refused before anything is read.
    let m = slim_core::checkpoint::load(&files[0]).unwrap().config;
    let mut c = twa_config(files.clone(), Grouping::Global);
    c.twa.as_mut().unwrap().max_basis_bytes = 1 << 20;
    let e = msg(Trainer::new(&m, c, ds, &out("mem"), false, Device::Cpu, 2));
    assert!(e.contains("MiB") && e.contains("limit"), "{e}");
}

#[test]
fn a_resumed_twa_run_ends_where_an_uninterrupted_one_does() {
    let _serial = serial();
    let Some(ds) = data(64) else { return };
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let files = trajectory(ds.clone(), &dir.path().join("pre"));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut straight = twa_trainer(ds.clone(), files.clone(), Grouping::PerBlock, &a).unwrap();
    straight.run(None, &mut slim_core::Silent).unwrap();
    let mut first = twa_trainer(ds.clone(), files.clone(), Grouping::PerBlock, &b).unwrap();
    first.run(Some(5), &mut slim_core::Silent).unwrap();
    drop(first);
    let m = slim_core::checkpoint::load(&files[0]).unwrap().config;
    // The stored run config (checkpoint list, grouping) wins over the one passed here.
    let mut resumed =
        Trainer::new(&m, config(Framework::Simclr), ds, &b, true, Device::Cpu, 2).unwrap();
    assert_eq!(resumed.state().step, 5);
    resumed.run(None, &mut slim_core::Silent).unwrap();
    let (x, y) = (flat_trainer(&a, &straight), flat_trainer(&b, &resumed));
    let gap = (&x - &y).abs().max().double_value(&[]);
    assert!(gap < 1e-5, "resumed run differs by {gap}");
}

#[test]
fn the_basis_starts_at_the_slow_start_or_at_from_step() {
    let _serial = serial();
    let Some(ds) = data(64) else { return };
    let dir = tempfile::tempdir().unwrap();
    // 4 epochs of 8 steps, the sub-widths joining at epoch 2, a checkpoint every 4 steps.
    let files = trajectory(ds, dir.path());
    let kept = slim_train::twa::basis_checkpoints(&files, None, 2).unwrap();
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    let names: Vec<String> = kept.iter().map(name).collect();
    assert_eq!(
        names,
        [
            "step-00000020",
            "step-00000024",
            "step-00000028",
            "step-00000032"
        ]
        .map(|s| format!("{s}.safetensors"))
    );
    let kept = slim_train::twa::basis_checkpoints(&files, Some(28), 2).unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        slim_train::twa::basis_checkpoints(&files, Some(0), 2).unwrap(),
        files
    );
    let e = slim_train::twa::basis_checkpoints(&files, Some(33), 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--from-step 33 is after the last checkpoint (step 32)"),
        "{e}"
    );
    let e = slim_train::twa::basis_checkpoints(&files, Some(32), 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 of 8 checkpoints are at or after step 32"),
        "{e}"
    );
}

#[test]
fn a_moco_trajectory_keeps_its_key_encoder_and_twa_takes_it_up() {
    let _serial = serial();
    let Some(ds) = data(64) else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = model(ds.as_ref(), Backbone::Resnet20);
    let c = PretrainConfig {
        trajectory: Some(TrajectoryConfig {
            every: 8,
            unit: TrajectoryUnit::Steps,
            precision: Precision::F32,
        }),
        moco_queue: 16,
        ..config(Framework::MocoV2)
    };
    let mut t = Trainer::new(&m, c, ds.clone(), dir.path(), false, Device::Cpu, 2).unwrap();
    t.run(None, &mut slim_core::Silent).unwrap();
    let files = list_checkpoints(&[dir.path().join("trajectory")]).unwrap();
    let last = slim_core::checkpoint::load(files.last().unwrap()).unwrap();
    let key = |c: &slim_core::Checkpoint| {
        (c.tensors.iter())
            .filter(|(n, _)| n.starts_with("train.key.") || n.as_str() == "train.queue")
            .map(|(n, t)| (n.clone(), t.data.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let snapshot = key(&last);
    assert!(
        snapshot.contains_key("train.queue") && snapshot.len() > 10,
        "{:?}",
        snapshot.keys()
    );
    // TWA over them: its key encoder and queue are the last checkpoint's, as its first
    // checkpoint (written before any TWA step) shows.
    let out = dir.path().join("twa");
    let tc = PretrainConfig {
        framework: Framework::MocoV2,
        moco_queue: 16,
        ..twa_config(files, Grouping::Global)
    };
    let twa = Trainer::new(&m, tc, ds, &out, false, Device::Cpu, 2).unwrap();
    twa.save().unwrap();
    let saved = slim_core::checkpoint::load(&slim_train::pretrain::checkpoint_path(&out)).unwrap();
    assert_eq!(key(&saved), snapshot);
}

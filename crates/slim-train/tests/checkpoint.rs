//! Tests of the tch side of checkpoints: save → load round trips, reference outputs,
//! training state, and load errors that name the file.

use std::path::Path;

use slim_core::{Backbone, ModelConfig};
use slim_train::SlimNet;
use slim_train::checkpoint::{self, from_core, reference_image, train_tensor};
use tch::{Device, Kind, Tensor, nn};

fn resnet20() -> ModelConfig {
    ModelConfig::new(
        Backbone::Resnet20,
        1,
        28,
        (0..10).map(|i| format!("class{i}")).collect(),
        vec![0.286],
        vec![0.353],
    )
}

/// A resnet20 whose BatchNorms are away from their initial values, so that a load that
/// dropped them would show.
fn trained_net(vs: &nn::VarStore) -> SlimNet {
    let config = resnet20();
    let net = SlimNet::new(&vs.root(), &config).unwrap();
    let x = Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    tch::no_grad(|| {
        for &w in net.widths() {
            let _ = net.forward(&x, w, true);
        }
        for (name, mut t) in net.named_tensors() {
            if name.contains(".bn.") && !name.contains(".running_") {
                t += t.randn_like() * 0.1;
            }
        }
    });
    net
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn round_trip_keeps_every_tensor_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = trained_net(&vs);
    let head = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
    checkpoint::save(&path, &net, &[("head.weight", &head)]).unwrap();

    let (loaded, loaded_vs, ckpt) = checkpoint::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.config(), net.config());
    assert_eq!(loaded_vs.variables().len(), vs.variables().len());
    for ((name, a), (_, b)) in net.named_tensors().iter().zip(loaded.named_tensors()) {
        assert!(same(a, &b), "{name} differs after loading");
    }
    let x = Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    for &w in net.widths() {
        let (e0, l0) = tch::no_grad(|| net.forward_t(&x, w, false));
        let (e1, l1) = tch::no_grad(|| loaded.forward_t(&x, w, false));
        assert!(same(&e0, &e1) && same(&l0, &l1), "outputs at {w} differ");
    }

    let saved = train_tensor(&ckpt, "head.weight", Device::Cpu)
        .unwrap()
        .unwrap();
    assert!(same(&saved, &head));
    assert!(
        train_tensor(&ckpt, "absent", Device::Cpu)
            .unwrap()
            .is_none()
    );
}

#[test]
fn references_are_the_eval_outputs_of_the_saved_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = trained_net(&vs);
    checkpoint::save(&path, &net, &[]).unwrap();
    let (loaded, _vs, ckpt) = checkpoint::load(&path, Device::Cpu).unwrap();

    let image = ckpt.tensor("reference.image");
    assert_eq!(image, &reference_image(net.config()));
    assert_eq!(image.shape, [2, 1, 28, 28]);
    let mean = image.data.iter().sum::<f32>() / image.data.len() as f32;
    assert!(mean.abs() < 0.1, "reference image mean {mean}");
    let x = from_core(image, Device::Cpu).unwrap();
    let mut logits_by_width = Vec::new();
    for &w in loaded.widths() {
        let (emb, logits) = tch::no_grad(|| loaded.forward_t(&x, w, false));
        let t = w.tag();
        for (what, got) in [("embedding", emb), ("logits", logits)] {
            let want =
                from_core(ckpt.tensor(&format!("reference.{t}.{what}")), Device::Cpu).unwrap();
            assert_eq!(want.size(), got.size(), "reference.{t}.{what}");
            let diff = f64::try_from((want - &got).abs().max()).unwrap();
            assert!(diff <= 1e-6, "reference.{t}.{what} is off by {diff}");
            if what == "logits" {
                logits_by_width.push(got);
            }
        }
    }
    // Every width has its own outputs.
    assert!(!same(&logits_by_width[0], &logits_by_width[1]));
}

fn assert_names(err: impl std::fmt::Display, path: &Path) {
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    assert_names(
        checkpoint::load(&missing, Device::Cpu).err().unwrap(),
        &missing,
    );

    let path = dir.path().join("resnet20.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    checkpoint::save(&path, &SlimNet::new(&vs.root(), &resnet20()).unwrap(), &[]).unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_names(
        checkpoint::load(&truncated, Device::Cpu).err().unwrap(),
        &truncated,
    );

    // resnet20 weights under a resnet18-cifar config.
    let wrong = dir.path().join("wrong-config.safetensors");
    let tensors = slim_core::checkpoint::load(&path).unwrap().tensors;
    let config = ModelConfig {
        backbone: Backbone::Resnet18Cifar,
        ..resnet20()
    };
    std::fs::write(
        &wrong,
        slim_core::checkpoint::to_bytes(&config, &tensors, None).unwrap(),
    )
    .unwrap();
    let err = checkpoint::load(&wrong, Device::Cpu).err().unwrap();
    assert_names(&err, &wrong);
    assert!(err.to_string().contains("resnet18-cifar"), "{err}");
}

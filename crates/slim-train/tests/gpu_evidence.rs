//! tools/gpu_evidence.sh in its tiny CPU mode, on this test build's slim-train and the
//! CIFAR-10 copy beside the checkout: every step the GPU run takes (bench against the
//! PyTorch reference where torch imports, pretraining for the planned epochs, kNN, the
//! probe, the stripped model in pieces, the summary), so that GPU time is not spent
//! finding bugs. Skips when the data is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_gpu_evidence_script_runs_whole_in_its_tiny_mode() {
    let data = repo().join("../shared/data/cifar10-jpeg/cifar10-jpeg.zip");
    if !data.exists() {
        eprintln!("skipped: {} is absent", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = Command::new(repo().join("tools/gpu_evidence.sh"))
        .arg(&out)
        .arg("--tiny")
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_slim-train"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    // What the device sends back: at most 8 plain files under 16 MiB, plainly named.
    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() <= 8, "{files:?}");
    for f in &files {
        assert!(
            f.is_file() && f.metadata().unwrap().len() < 16 << 20,
            "{f:?}"
        );
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{name}"
        );
    }

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["tiny"], true);
    let ours = &summary["bench"]["ours"];
    assert_eq!(ours["settings"]["bf16"], true);
    assert_eq!(ours["settings"]["channels_last"], true);
    assert!(ours["slimmable_images_per_s_mean"].as_f64().unwrap() > 0.0);
    let ratio = ours["ratio_slim_over_full"].as_f64().unwrap();
    assert!(
        ratio.is_finite() && ratio > 1.0,
        "4 widths cost more than one: {ratio}"
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    match summary["bench"]["pytorch"].is_null() {
        true => assert!(md.contains("skipped: torch does not import here"), "{md}"),
        false => {
            let r = &summary["bench"]["pytorch"];
            assert_eq!(r["settings"], ours["settings"]);
            assert!(
                summary["targets"]["ours_over_pytorch_slimmable"]["reached"]
                    .as_f64()
                    .unwrap()
                    > 0.0
            );
        }
    }

    let p = &summary["pretrain"];
    let planned = p["planned_epochs"].as_u64().unwrap();
    assert!(planned >= 2, "{p}");
    assert_eq!(p["stopped_by_time_limit"], false);
    assert_eq!(p["epochs_done"].as_u64().unwrap(), planned, "{p}");
    // 256 images in batches of 16.
    assert_eq!(p["steps"].as_u64().unwrap(), planned * 16, "{p}");
    assert!(p["full_only_epoch_s"].as_f64().unwrap() > 0.0);
    assert!(p["slimmable_epoch_s"].as_f64().unwrap() > 0.0);

    for key in ["knn", "linear_probe"] {
        let rows = summary[key].as_array().unwrap();
        let widths: Vec<f64> = rows.iter().map(|r| r["width"].as_f64().unwrap()).collect();
        assert_eq!(widths, [1.0, 0.75, 0.5, 0.25], "{key}");
    }
    for r in summary["knn"].as_array().unwrap() {
        let (a, b) = (
            r["knn_top1"].as_f64().unwrap(),
            r["random_init_knn_top1"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b), "{r}");
    }

    // The pieces make the model that the summary names, without training state.
    let mut pieces: Vec<_> = (summary["model"]["pieces"].as_array().unwrap().iter())
        .map(|p| out.join(p.as_str().unwrap()))
        .collect();
    pieces.sort();
    assert!(!pieces.is_empty());
    let whole = dir.path().join("model.safetensors");
    let bytes: Vec<u8> = pieces
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    std::fs::write(&whole, bytes).unwrap();
    assert_eq!(
        slim_core::checkpoint::file_sha256(&whole).unwrap(),
        summary["model"]["sha256"].as_str().unwrap()
    );
    let model = slim_core::checkpoint::load(&whole).unwrap();
    assert!(model.train_state.is_none());
    assert!(!(model.tensors.keys()).any(|n| n.starts_with(slim_core::checkpoint::names::TRAIN)));
    assert_eq!(model.config.backbone.name(), "resnet20");
    assert!(md.contains("## Targets (issue 18)"), "{md}");
}

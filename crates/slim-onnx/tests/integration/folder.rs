//! The model folder: graph structure and metadata, manifest contents and merging, ONNX
//! test data, and (with `SLIM_PYTHON`) the ONNX checker and onnxruntime.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use prost::Message;
use slim_core::{Backbone, Manifest, Precision, Width, checkpoint, cost};
use slim_onnx::WidthSelection;
use slim_onnx::export::{TEST_DATA_DIR, width_dir};
use slim_onnx::graph::{IR_VERSION, OPSET};
use slim_onnx::metadata as meta;
use tract_onnx::pb::{ModelProto, TensorProto, tensor_shape_proto::dimension::Value};

use crate::common::{self, files_below, fixture};

fn decode_model(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn dims(v: &tract_onnx::pb::ValueInfoProto) -> Vec<String> {
    let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value
    else {
        panic!("{} is not a tensor", v.name)
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            Value::DimValue(n) => n.to_string(),
            Value::DimParam(p) => p.clone(),
        })
        .collect()
}

#[test]
fn graphs_metadata_and_manifest_match_the_checkpoint_and_slim_core_cost() {
    for backbone in Backbone::ALL {
        let f = fixture(backbone);
        let c = &f.config;
        let net = c.network();
        let sha = checkpoint::file_sha256(&f.checkpoint).unwrap();
        let manifest = Manifest::load(&f.out).unwrap();
        assert_eq!(manifest, f.report.manifest);
        assert_eq!(manifest.backbone, backbone.name());
        assert_eq!(
            (manifest.input.in_channels, manifest.input.image_size),
            (c.input.in_channels, c.input.image_size)
        );
        assert_eq!(
            (&manifest.input.mean, &manifest.input.std),
            (&c.input.mean, &c.input.std)
        );
        assert_eq!(manifest.class_names, c.class_names);
        assert_eq!(manifest.checkpoint_sha256, sha);
        let listed: Vec<Width> = manifest.widths.iter().map(|e| e.width).collect();
        assert_eq!(listed, c.widths, "widest first");

        for e in &manifest.widths {
            let w = e.width;
            let want = cost(&net, w, c.input.image_size, c.num_classes());
            assert_eq!(
                (e.macs, e.params),
                (want.macs, want.params),
                "{} {w}",
                backbone.name()
            );
            assert_eq!(e.embedding_dim, net.features_at(w));
            assert_eq!(e.file, format!("width-{}/model.onnx", w.tag()));

            let model = decode_model(&f.out.join(&e.file));
            assert_eq!(model.ir_version, IR_VERSION);
            assert_eq!(model.opset_import.len(), 1);
            assert_eq!(model.opset_import[0].version, OPSET);
            let props: HashMap<&str, &str> = model
                .metadata_props
                .iter()
                .map(|p| (p.key.as_str(), p.value.as_str()))
                .collect();
            let expect = [
                (meta::WIDTH, format!("{w:?}")),
                (meta::WIDTH_TAG, w.tag()),
                (meta::MACS, want.macs.to_string()),
                (meta::PARAMS, want.params.to_string()),
                (meta::EMBEDDING_DIM, net.features_at(w).to_string()),
                (meta::IMAGE_SIZE, c.input.image_size.to_string()),
                (meta::IN_CHANNELS, c.input.in_channels.to_string()),
                (meta::CHECKPOINT_SHA256, sha.clone()),
                (meta::BACKBONE, backbone.name().to_string()),
                (meta::PRODUCER, slim_onnx::PRODUCER.to_string()),
            ];
            for (k, v) in expect {
                assert_eq!(props.get(k).copied(), Some(v.as_str()), "{k}");
            }
            let json = |k: &str| serde_json::from_str::<serde_json::Value>(props[k]).unwrap();
            assert_eq!(json(meta::MEAN), serde_json::json!(c.input.mean));
            assert_eq!(json(meta::STD), serde_json::json!(c.input.std));
            assert_eq!(json(meta::CLASS_NAMES), serde_json::json!(c.class_names));

            let g = model.graph.as_ref().unwrap();
            let s = c.input.image_size.to_string();
            assert_eq!(g.input.len(), 1);
            assert_eq!(g.input[0].name, "image");
            assert_eq!(
                dims(&g.input[0]),
                ["N", &c.input.in_channels.to_string(), &s, &s]
            );
            let outputs: Vec<_> = g
                .output
                .iter()
                .map(|o| (o.name.as_str(), dims(o)))
                .collect();
            let f_dim = net.features_at(w).to_string();
            assert_eq!(
                outputs,
                [
                    ("embedding", vec!["N".to_string(), f_dim]),
                    ("logits", vec!["N".into(), "10".into()])
                ]
            );
            // One Conv per ConvBn, named after it; no BatchNorm left.
            let convs: Vec<&str> = g
                .node
                .iter()
                .filter(|n| n.op_type == "Conv")
                .map(|n| n.name.as_str())
                .collect();
            let want_convs: Vec<&str> = net.convs().iter().map(|c| c.name.as_str()).collect();
            assert_eq!(convs.len(), want_convs.len());
            assert!(want_convs.iter().all(|n| convs.contains(n)));
            assert!(g.node.iter().all(|n| n.op_type != "BatchNormalization"));
        }
    }
}

#[test]
fn test_data_holds_the_checkpoint_references() {
    let f = fixture(Backbone::Resnet50);
    let ckpt = checkpoint::load(&f.checkpoint).unwrap();
    for &w in &f.config.widths {
        let data = f.out.join(width_dir(w)).join(TEST_DATA_DIR);
        let exported = f
            .report
            .exported
            .iter()
            .find(|e| e.entry.width == w)
            .unwrap();
        if f.reference_widths.iter().position(|&x| x == w).is_none() {
            assert!(
                !data.exists(),
                "width {w} has no references, so no test data"
            );
            assert!(exported.test_data.is_none());
            assert!(
                f.report
                    .notes
                    .iter()
                    .any(|n| n.contains(&format!("reference.{}", w.tag())))
            );
            continue;
        }
        assert_eq!(exported.test_data.as_deref(), Some(data.as_path()));
        let tag = w.tag();
        for (file, name, tensor) in [
            ("input_0.pb", "image", "reference.image".to_string()),
            (
                "output_0.pb",
                "embedding",
                format!("reference.{tag}.embedding"),
            ),
            ("output_1.pb", "logits", format!("reference.{tag}.logits")),
        ] {
            let t =
                TensorProto::decode(std::fs::read(data.join(file)).unwrap().as_slice()).unwrap();
            let want = ckpt.tensor(&tensor);
            assert_eq!(t.name, name);
            assert_eq!(
                t.dims,
                want.shape.iter().map(|&d| d as i64).collect::<Vec<_>>()
            );
            let values: Vec<f32> = t
                .raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(values, want.data, "{file}");
        }
    }
}

#[test]
fn single_width_exports_merge_into_one_manifest_per_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(Backbone::Resnet20, 1, 16);
    let first = common::checkpoint(dir.path(), &config, 1, &[]);
    let out = dir.path().join("models");

    let r = slim_onnx::export(
        &first,
        WidthSelection::One(slim_test_utils::width(0.25)),
        &out,
    )
    .unwrap();
    assert_eq!(r.manifest.widths.len(), 1);
    assert!(
        r.notes.iter().any(|n| n.contains("no reference.image")),
        "{:?}",
        r.notes
    );
    // Measurements recorded in the manifest survive re-exporting the same checkpoint.
    let mut m = Manifest::load(&out).unwrap();
    m.widths[0].accuracy = Some(slim_core::manifest::Accuracy {
        top1: 0.5,
        top5: 0.9,
        dataset: "test".into(),
        samples: 10,
    });
    m.save(&out).unwrap();
    slim_onnx::export(
        &first,
        WidthSelection::One(slim_test_utils::width(1.0)),
        &out,
    )
    .unwrap();
    let r = slim_onnx::export(
        &first,
        WidthSelection::One(slim_test_utils::width(0.25)),
        &out,
    )
    .unwrap();
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m, r.manifest);
    assert_eq!(
        m.widths.iter().map(|e| e.width.get()).collect::<Vec<_>>(),
        [1.0, 0.25]
    );
    assert_eq!(
        m.entry(slim_test_utils::width(0.25))
            .unwrap()
            .accuracy
            .as_ref()
            .unwrap()
            .top1,
        0.5
    );
    assert_eq!(
        files_below(&out),
        [
            "manifest.json",
            "width-w1000/model.onnx",
            "width-w250/model.onnx"
        ]
    );

    // Another checkpoint replaces the entries of the first one.
    let second = common::checkpoint(dir.path(), &config, 2, &[]);
    let r = slim_onnx::export(
        &second,
        WidthSelection::One(slim_test_utils::width(0.5)),
        &out,
    )
    .unwrap();
    assert_eq!(
        r.manifest
            .widths
            .iter()
            .map(|e| e.width.get())
            .collect::<Vec<_>>(),
        [0.5]
    );
    assert_eq!(
        r.manifest.checkpoint_sha256,
        checkpoint::file_sha256(&second).unwrap()
    );
    assert!(
        r.notes.iter().any(|n| n.contains("no longer listed")),
        "{:?}",
        r.notes
    );
    assert_eq!(Manifest::load(&out).unwrap(), r.manifest);
}

#[test]
fn binary_prints_a_table_of_the_exported_widths() {
    let f = fixture(Backbone::Resnet20);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let run = Command::new(env!("CARGO_BIN_EXE_slim-export"))
        .arg("--checkpoint")
        .arg(&f.checkpoint)
        .args(["--width", "0.5", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "width",
            "precision",
            "MACs",
            "params",
            "KiB",
            "vs",
            "f32",
            "logits",
            "file"
        ]
    );
    let e = f
        .report
        .manifest
        .entry(slim_test_utils::width(0.5))
        .unwrap();
    let row: Vec<&str> = stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..4],
        ["0.5", "f32", &e.macs.to_string(), &e.params.to_string()]
    );
    assert_eq!(row[5], "-", "{stdout}");
    assert!(row[6].ends_with("width-w500/model.onnx"), "{stdout}");
    assert!(stdout.contains("manifest.json"), "{stdout}");
}

/// Every exported graph of every backbone.
fn all_models() -> Vec<String> {
    Backbone::ALL
        .iter()
        .flat_map(|&b| {
            let f = fixture(b);
            f.report
                .exported
                .iter()
                .map(|e| e.model.display().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn python() -> Option<String> {
    let p = std::env::var("SLIM_PYTHON").ok().filter(|p| !p.is_empty());
    if p.is_none() {
        eprintln!("SLIM_PYTHON is not set: skipping the ONNX checker");
    }
    p
}

#[test]
fn onnx_checker_accepts_every_graph() {
    let Some(python) = python() else { return };
    let models = all_models();
    let script = "import sys, onnx\n\
                  for p in sys.argv[1:]:\n    onnx.checker.check_model(p, full_check=True)\n    print('ok', p)";
    let run = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(&models)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "onnx.checker failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).lines().count(),
        models.len()
    );
}

#[test]
fn check_onnx_tool_passes_with_onnxruntime_on_the_test_data() {
    let Some(python) = python() else { return };
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_onnx.py");
    let dirs: Vec<_> = Backbone::ALL
        .iter()
        .map(|&b| fixture(b).out.clone())
        .collect();
    let run = Command::new(&python)
        .arg(&tool)
        .args(&dirs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok")).count(),
        all_models().len(),
        "{stdout}"
    );
}

#[test]
fn every_width_in_three_precisions_makes_a_manifest_that_loads() {
    let _alone = slim_test_utils::alone();
    let fashion = slim_test_utils::fashion_mnist();
    if !fashion.exists() {
        eprintln!("skipped: {} is absent", fashion.display());
        return;
    }
    let f = fixture(Backbone::Resnet20);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let options = slim_onnx::ExportOptions {
        precisions: Precision::ALL.to_vec(),
        calibration: Some(slim_onnx::calibration::CalibrationOptions {
            data: fashion,
            images: 64,
            method: slim_core::precision::RangeMethod::MinMax,
            resize: false,
        }),
        ..slim_onnx::ExportOptions::float(WidthSelection::All)
    };
    let r = slim_onnx::export_with(&f.checkpoint, &options, &out).unwrap();
    // Each width's float entry holds its f16 and int8 variants, which hold none.
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.variants(), r.manifest.variants());
    for e in &m.widths {
        assert_eq!(e.precisions(), Precision::ALL);
        assert!(e.variants.iter().all(|v| v.variants.is_empty()), "{e:?}");
    }
    assert_eq!(m.variants().len(), 4 * 3);
    for v in m.variants() {
        assert!(out.join(&m.variant(v).unwrap().file).is_file(), "{v}");
    }
    assert_eq!(r.exported.len(), 4 * 3);
}

//! slim-runtime on the real model in models/fashion-mnist-resnet20: lazy loading,
//! concurrent use, and every bad input refused with an error naming the file.

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use slim_runtime::{Backend, Error, SlimModel};
use tract_onnx::pb::{ModelProto, StringStringEntryProto, tensor_proto::DataLocation};

use slim_test_utils::{model as fixture, model_copy as copy};

fn ramp(model: &SlimModel, batch: usize) -> Vec<f32> {
    let n = batch * model.input_chw().iter().product::<usize>();
    (0..n).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect()
}

#[test]
fn widths_load_lazily_once_and_serve_many_threads() {
    let model = Arc::new(SlimModel::open(&fixture(), Backend::Tract).unwrap());
    assert_eq!(model.widths(), slim_core::width::DEFAULT_WIDTHS);
    assert!(!model.is_loaded(slim_test_utils::width(0.5)));
    let input = Arc::new(ramp(&model, 2));
    let first = model.run(slim_test_utils::width(0.5), &input, 2).unwrap();
    assert!(
        model.is_loaded(slim_test_utils::width(0.5))
            && !model.is_loaded(slim_test_utils::width(1.0))
    );
    let engine = model.engine(slim_test_utils::width(0.5)).unwrap() as *const _ as *const u8;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (m, x) = (model.clone(), input.clone());
            std::thread::spawn(move || m.run(slim_test_utils::width(0.5), &x, 2).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(
            t.join().unwrap(),
            first,
            "same input, same output on every thread"
        );
    }
    let again = model.engine(slim_test_utils::width(0.5)).unwrap() as *const _ as *const u8;
    assert_eq!(engine, again, "switching back to a loaded width reuses it");
    assert_eq!(first.logits.len(), 2 * 10);
    assert_eq!(
        first.embedding.len(),
        2 * model
            .entry(slim_test_utils::width(0.5))
            .unwrap()
            .embedding_dim
    );
}

#[test]
fn unknown_widths_and_wrong_input_sizes_are_errors() {
    let model = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let err = model
        .run(slim_test_utils::width(0.3), &ramp(&model, 1), 1)
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchWidth { .. }), "{err}");
    assert!(err.to_string().contains("0.3"), "{err}");
    let err = model
        .run(slim_test_utils::width(1.0), &[0.0; 10], 1)
        .unwrap_err();
    assert!(matches!(err, Error::InputSize { .. }), "{err}");
}

#[test]
fn a_missing_manifest_or_graph_names_the_file() {
    let (_d, dir) = copy();
    std::fs::remove_file(dir.join("width-w500/model.onnx")).unwrap();
    let err = SlimModel::open(&dir, Backend::Tract)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("width-w500/model.onnx") && err.contains("missing"),
        "{err}"
    );
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let err = SlimModel::open(&dir, Backend::Tract)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn a_truncated_graph_is_refused_naming_the_file() {
    let (_d, dir) = copy();
    let p = dir.join("width-w250/model.onnx");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    let err = model
        .run(slim_test_utils::width(0.25), &ramp(&model, 1), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("width-w250/model.onnx"), "{err}");
    // The other widths still work.
    model
        .run(slim_test_utils::width(1.0), &ramp(&model, 1), 1)
        .unwrap();
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut ModelProto)) {
    let mut proto = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    edit(&mut proto);
    std::fs::write(path, proto.encode_to_vec()).unwrap();
}

#[test]
fn metadata_that_disagrees_with_the_manifest_is_refused() {
    let (_d, dir) = copy();
    let p = dir.join("width-w750/model.onnx");
    rewrite(&p, |m| {
        for prop in &mut m.metadata_props {
            if prop.key == "macs" {
                prop.value = "12345".into();
            }
        }
    });
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    let err = model
        .run(slim_test_utils::width(0.75), &ramp(&model, 1), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("width-w750/model.onnx") && err.contains("macs") && err.contains("disagrees"),
        "{err}"
    );
}

#[test]
fn preprocessing_metadata_that_disagrees_with_the_manifest_is_refused() {
    let (_d, dir) = copy();
    for (file, key, value) in [
        ("width-w500/model.onnx", "mean", "[0.5]"),
        ("width-w250/model.onnx", "class_names", "[\"cat\",\"dog\"]"),
    ] {
        rewrite(&dir.join(file), |m| {
            for prop in &mut m.metadata_props {
                if prop.key == key {
                    prop.value = value.into();
                }
            }
        });
    }
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    for (w, file, key) in [
        (0.5, "width-w500/model.onnx", "mean = [0.5]"),
        (0.25, "width-w250/model.onnx", "class_names"),
    ] {
        let err = model
            .run(slim_test_utils::width(w), &ramp(&model, 1), 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(file) && err.contains(key) && err.contains("disagrees"),
            "{err}"
        );
    }
}

#[test]
fn a_manifest_whose_preprocessing_cannot_apply_is_refused() {
    let (_d, dir) = copy();
    let p = dir.join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("\"in_channels\": 1", "\"in_channels\": 3")).unwrap();
    let err = SlimModel::open(&dir, Backend::Tract)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("manifest.json") && err.contains("in_channels = 3"),
        "{err}"
    );
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let (_d, dir) = copy();
    let p = dir.join("width-w1000/model.onnx");
    rewrite(&p, |m| {
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.data_location = Some(DataLocation::External as i32);
        t.external_data = vec![StringStringEntryProto {
            key: "location".into(),
            value: "../../../etc/passwd".into(),
        }];
    });
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    let err = model
        .run(slim_test_utils::width(1.0), &ramp(&model, 1), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("outside the model folder") && err.contains("etc/passwd"),
        "{err}"
    );
}

#[test]
fn a_graph_that_computes_nan_is_an_error_not_an_answer() {
    let (_d, dir) = copy();
    rewrite(&dir.join("width-w500/model.onnx"), |m| {
        for t in &mut m.graph.as_mut().unwrap().initializer {
            for v in t.raw_data.chunks_exact_mut(4) {
                v.copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
    });
    for b in backends() {
        let model = SlimModel::open(&dir, b).unwrap();
        let x = ramp(&model, 2);
        let err = model
            .run(slim_test_utils::width(0.5), &x, 2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("width-w500/model.onnx")
                && err.contains("produced non-finite")
                && !err.contains("input"),
            "{err}"
        );
        // The other widths still answer.
        model.run(slim_test_utils::width(1.0), &x, 2).unwrap();
    }
}

/// Moves every initializer of width 1.0's graph into `weights.bin` beside it, as an ONNX
/// exporter writing external data does.
fn externalize(dir: &Path) {
    let graph = dir.join("width-w1000/model.onnx");
    let mut blob = Vec::new();
    rewrite(&graph, |m| {
        for t in &mut m.graph.as_mut().unwrap().initializer {
            let entry = |key: &str, value: String| StringStringEntryProto {
                key: key.into(),
                value,
            };
            t.external_data = vec![
                entry("location", "weights.bin".into()),
                entry("offset", blob.len().to_string()),
                entry("length", t.raw_data.len().to_string()),
            ];
            blob.append(&mut t.raw_data);
            t.data_location = Some(DataLocation::External as i32);
        }
    });
    std::fs::write(dir.join("width-w1000/weights.bin"), blob).unwrap();
}

/// Every backend this build can run here.
fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Tract];
    if cfg!(feature = "ort") && std::env::var_os("ORT_DYLIB_PATH").is_some() {
        backends.push(Backend::parse("ort").unwrap());
    }
    backends
}

#[test]
fn external_data_inside_the_model_folder_runs_on_every_engine_as_inline_data_does() {
    let (_d, dir) = copy();
    externalize(&dir);
    let full = slim_test_utils::width(1.0);
    let inline = SlimModel::open(&fixture(), Backend::Tract).unwrap();
    let x = ramp(&inline, 2);
    let want = inline.run(full, &x, 2).unwrap().logits;
    for b in backends() {
        let model = SlimModel::open(&dir, b).unwrap();
        let got = model.run(full, &x, 2).unwrap().logits;
        let d = got
            .iter()
            .zip(&want)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(
            d <= 1e-4,
            "{}: {d}",
            model.engine(full).unwrap().placement()
        );
    }
    // A data file cut short, or gone, is named on every engine.
    let data = dir.join("width-w1000/weights.bin");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() - 4]).unwrap();
    for err in errors_at_full_width(&dir) {
        assert!(
            err.contains("weights.bin") && err.contains("truncated"),
            "{err}"
        );
    }
    std::fs::remove_file(&data).unwrap();
    for err in errors_at_full_width(&dir) {
        assert!(
            err.contains("weights.bin") && err.contains("missing") && err.contains("initializer"),
            "{err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_graph_or_its_data_linked_from_outside_the_model_folder_is_refused() {
    let (_d, dir) = copy();
    let outside = tempfile::tempdir().unwrap();
    // The graph itself a link to a copy elsewhere.
    let graph = dir.join("width-w1000/model.onnx");
    let elsewhere = outside.path().join("model.onnx");
    std::fs::rename(&graph, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &graph).unwrap();
    for err in errors_at_full_width(&dir) {
        assert!(
            err.contains("width-w1000/model.onnx") && err.contains("outside the model folder"),
            "{err}"
        );
    }
    // A link that stays inside the folder is fine.
    std::fs::remove_file(&graph).unwrap();
    std::fs::rename(&elsewhere, dir.join("width-w1000/real.onnx")).unwrap();
    std::os::unix::fs::symlink("real.onnx", &graph).unwrap();
    let model = SlimModel::open(&dir, Backend::Tract).unwrap();
    model
        .run(slim_test_utils::width(1.0), &ramp(&model, 1), 1)
        .unwrap();
    // External data a link to elsewhere.
    std::fs::remove_file(&graph).unwrap();
    std::fs::rename(dir.join("width-w1000/real.onnx"), &graph).unwrap();
    externalize(&dir);
    let data = dir.join("width-w1000/weights.bin");
    let far = outside.path().join("weights.bin");
    std::fs::rename(&data, &far).unwrap();
    std::os::unix::fs::symlink(&far, &data).unwrap();
    for err in errors_at_full_width(&dir) {
        assert!(
            err.contains("weights.bin") && err.contains("outside the model folder"),
            "{err}"
        );
    }
}

#[cfg(feature = "ort")]
#[test]
fn tract_and_onnx_runtime_agree_on_the_trained_model() {
    let ort = Backend::Ort {
        provider: slim_runtime::Provider::Cpu,
        fallback: false,
    };
    let (a, b) = (
        SlimModel::open(&fixture(), Backend::Tract).unwrap(),
        SlimModel::open(&fixture(), ort).unwrap(),
    );
    let x = ramp(&a, 4);
    for w in a.widths() {
        let (oa, ob) = (a.run(w, &x, 4).unwrap(), b.run(w, &x, 4).unwrap());
        let d = oa
            .logits
            .iter()
            .zip(&ob.logits)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(d <= 1e-4, "width {w}: {d}");
    }
    assert_eq!(
        b.engine(slim_test_utils::width(1.0))
            .unwrap()
            .placement()
            .to_string(),
        "ort/CPU"
    );
}

/// The onnxruntime wheel that tools/setup.sh installs is CPU-only, so CUDA cannot
/// register: an error unless fallback was asked for, and then the fallback is reported.
#[cfg(feature = "ort-cuda")]
#[test]
fn a_provider_that_fails_to_register_is_an_error_or_a_reported_fallback() {
    use slim_runtime::Provider;
    let strict = SlimModel::open(
        &fixture(),
        Backend::Ort {
            provider: Provider::Cuda,
            fallback: false,
        },
    )
    .unwrap();
    let err = strict
        .engine(slim_test_utils::width(1.0))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("CUDA") && err.contains("register"), "{err}");
    let lenient = SlimModel::open(
        &fixture(),
        Backend::Ort {
            provider: Provider::Cuda,
            fallback: true,
        },
    )
    .unwrap();
    let used = lenient
        .engine(slim_test_utils::width(1.0))
        .unwrap()
        .placement()
        .to_string();
    assert!(
        used.contains("CPU") && used.contains("fallback") && used.contains("CUDA"),
        "{used}"
    );
}

/// Opens `dir` with every backend this build has and returns each one's error for width 1.0.
fn errors_at_full_width(dir: &Path) -> Vec<String> {
    backends()
        .into_iter()
        .map(|b| {
            let model = SlimModel::open(dir, b).unwrap();
            model
                .run(slim_test_utils::width(1.0), &ramp(&model, 1), 1)
                .unwrap_err()
                .to_string()
        })
        .collect()
}

/// A change to a graph.
type Edit = Box<dyn Fn(&mut ModelProto)>;

#[test]
fn a_graph_without_the_exported_interface_is_refused_by_name_on_every_engine() {
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            // A valid graph whose second output is named otherwise.
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                g.output[1].name = "output".into();
                for n in &mut g.node {
                    for o in &mut n.output {
                        if o == "logits" {
                            *o = "output".into();
                        }
                    }
                }
            }),
            &["has outputs [\"embedding\", \"output\"]", "\"logits\""],
        ),
        (
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                g.input[0].name = "input".into();
                for n in &mut g.node {
                    for i in &mut n.input {
                        if i == "image" {
                            *i = "input".into();
                        }
                    }
                }
            }),
            &["has inputs [\"input\"]", "\"image\" [N, 1, 28, 28]"],
        ),
        (
            Box::new(|m| {
                use tract_onnx::pb::tensor_shape_proto::dimension::Value;
                use tract_onnx::pb::type_proto::Value as Type;
                let g = m.graph.as_mut().unwrap();
                let Some(Type::TensorType(t)) = g.input[0].r#type.as_mut().unwrap().value.as_mut()
                else {
                    panic!("a tensor input")
                };
                t.shape.as_mut().unwrap().dim[1].value = Some(Value::DimValue(3));
            }),
            &["input \"image\" of shape [?, 3, 28, 28]", "[N, 1, 28, 28]"],
        ),
        (
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                let again = g.node[0].clone();
                g.node.insert(1, again);
            }),
            &["writes", "which is already defined"],
        ),
        (
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                g.node.swap(0, 1);
            }),
            &[
                "reads",
                "which no input, initializer or earlier node defines",
            ],
        ),
    ];
    for (edit, want) in cases {
        let (_d, dir) = copy();
        rewrite(&dir.join("width-w1000/model.onnx"), |m| edit(m));
        for err in errors_at_full_width(&dir) {
            assert!(err.contains("width-w1000/model.onnx"), "{err}");
            for w in want {
                assert!(err.contains(w), "{w:?} not in: {err}");
            }
        }
    }
}

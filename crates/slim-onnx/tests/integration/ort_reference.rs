//! The int8 graphs against an independent reference: onnxruntime's own static quantiser
//! (`onnxruntime.quantization.quantize_static`, issue 15), run by
//! `tests/ort_quantize_reference.py` with the project's Python (`SLIM_PYTHON`).
//!
//! `slim-export --precision f32,int8` writes a random-weight ResNet-20 (1 x 28 x 28, widths
//! 1.0 and 0.25) calibrated on 64 Fashion-MNIST images; the script quantises each width's
//! float graph with onnxruntime on exactly the calibration tensors the exporter used (read
//! here through the same `Args::options` and `CalibrationSet::load` as the exporter, written
//! as .npy), and reports both graphs' quantisation parameters and outputs; this test holds
//! them to the tolerances below:
//!
//! - (a) every activation both quantise (by tensor name): scale and zero point;
//! - (b) every `Conv`/`Gemm`: per-channel weight scales, the int8 weights, the int32 biases;
//! - (c) both graphs run in onnxruntime on the calibration images: logits and top-1; and
//!   onnxruntime's graph with slim-export's numbers put in: the same logits, bit for bit
//!   (so the graphs differ in their calibrated numbers only), and fused by onnxruntime
//!   into the same integer kernels.
//!
//! Nothing is skipped: without Python, onnxruntime or Fashion-MNIST the test fails and
//! names what is missing.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use slim_core::{Backbone, Precision, checkpoint, init};
use slim_onnx::calibration::CalibrationSet;
use slim_onnx::cli::Args;
use slim_onnx::export::{MODEL_FILE, variant_dir};

use crate::common;

/// Calibration images (evenly spaced over Fashion-MNIST's training split); the
/// percentile method needs 32 at least.
const IMAGES: usize = 64;

/// The tensors onnxruntime quantises and slim-export does not (documented in README, "f16
/// and int8 graphs per width"), with the reference run as slim-export documents its choices
/// (logits left in float): `GlobalAveragePool`'s output. onnxruntime quantises it as the
/// pool's output and passes its scale and zero point through `Flatten` to `embedding`,
/// which both graphs quantise for the probe over the same range, so both compute the same
/// values (checked: the logits with the same numbers are bit-identical); onnxruntime then
/// runs the pool as `QLinearGlobalAveragePool` where slim-export's graph pools in float.
const ONLY_ORT: &[&str] = &["global_pool"];
/// With onnxruntime's defaults it also quantises the logits (`Gemm`'s output), which
/// slim-export leaves in float: the graph output the user reads.
const ONLY_ORT_DEFAULTS: &[&str] = &["global_pool", "logits"];

/// The Python interpreter with onnxruntime: `SLIM_PYTHON` (from `.deps/env.sh`), else the
/// project's venv. Panics naming what is missing.
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("SLIM_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".deps/venv/bin/python"));
    let check = Command::new(&python)
        .args([
            "-c",
            "import numpy, onnx, onnxruntime, onnxruntime.quantization",
        ])
        .output();
    match check {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "{} cannot import numpy, onnx and onnxruntime.quantization, which this test needs as its reference; run tools/setup.sh:\n{}",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "no Python at {} ({e}); set SLIM_PYTHON (source .deps/env.sh) or run tools/setup.sh, which installs the venv with onnxruntime this test needs",
            python.display()
        ),
    }
}

/// `data` (`shape`, float32) as a NumPy .npy file (format 1.0).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + length (2) + header, padded to 64 bytes with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for v in data {
        f.write_all(&v.to_le_bytes()).unwrap();
    }
    f.flush().unwrap();
}

/// Exports the fixture with `method_args` (the calibration method's flags), runs the
/// reference script on every width (with `script_args`) and returns its report.
fn reference_report(dir: &Path, method_args: &[&str], script_args: &[&str]) -> Value {
    let python = python();
    let fashion = slim_test_utils::fashion_mnist();
    assert!(
        fashion.is_dir(),
        "Fashion-MNIST is not at {} (set FASHION_MNIST_DIR, or run tools/setup.sh, which installs it)",
        fashion.display()
    );
    let mut config = common::config(Backbone::Resnet20, 1, 28);
    config.widths = slim_test_utils::widths(&[1.0, 0.25]);
    let ckpt = dir.join("resnet20.safetensors");
    checkpoint::save(&ckpt, &config, &init::random_tensors(&config, 11)).unwrap();
    let out = dir.join("export");
    let images = IMAGES.to_string();
    let args: Vec<&str> = [
        "slim-export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--all",
        "--out",
        out.to_str().unwrap(),
        "--precision",
        "f32,int8",
        "--calibration-data",
        fashion.to_str().unwrap(),
        "--calibration-images",
        &images,
    ]
    .into_iter()
    .chain(method_args.iter().copied())
    .collect();
    let run = Command::new(env!("CARGO_BIN_EXE_slim-export"))
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "slim-export failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // The calibration tensors, as the exporter read them: the same arguments through the
    // same parser and loader.
    let options = Args::try_parse_from(&args).unwrap().options();
    let set = CalibrationSet::load(options.calibration.as_ref().unwrap(), &config.input).unwrap();
    assert_eq!(set.len, IMAGES);
    let (c, s) = (config.input.in_channels, config.input.image_size);
    let npy = dir.join("calibration.npy");
    write_npy(&npy, &[set.len, c, s, s], &set.inputs);

    let report = dir.join("report.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort_quantize_reference.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--calibration")
        .arg(&npy)
        .args(script_args)
        .arg("--work")
        .arg(dir.join("ort"))
        .arg("--report")
        .arg(&report);
    for &w in &config.widths {
        cmd.arg("--pair")
            .arg(out.join(variant_dir(w, Precision::F32)).join(MODEL_FILE))
            .arg(out.join(variant_dir(w, Precision::Int8)).join(MODEL_FILE));
    }
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "{} failed (exit {:?}):\n{}{}",
        script.display(),
        run.status.code(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("not a number in the report: {v}"))
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// What one method is held to.
struct Tolerances {
    /// Activation scales: the largest relative difference allowed.
    activation_scale: f64,
    /// Activation zero points: the largest difference allowed.
    zero_point: i64,
    /// Logits of the two int8 graphs run in onnxruntime: relative L2 bound.
    logits: f64,
}

/// Asserts the report against `tol`; prints the measured figures.
fn check(report: &Value, tol: &Tolerances) {
    eprintln!(
        "onnxruntime {} quantize_static ({}, {} images) against slim-export:",
        report["onnxruntime"].as_str().unwrap(),
        report["method"].as_str().unwrap(),
        report["images"]
    );
    let set = |xs: &[&str]| -> BTreeSet<String> { xs.iter().map(|s| s.to_string()).collect() };
    for pair in report["pairs"].as_array().unwrap() {
        let model = pair["ours"].as_str().unwrap();
        // (a) The quantised activations: the same tensors, scales and zero points.
        assert_eq!(
            names(&pair["activations_only_ours"]),
            BTreeSet::new(),
            "{model}: activations slim-export quantises and onnxruntime does not"
        );
        assert_eq!(
            names(&pair["activations_only_ort"]),
            set(ONLY_ORT),
            "{model}: activations onnxruntime quantises and slim-export does not"
        );
        if let Some(defaults) = pair["ort_defaults"].as_object() {
            assert_eq!(names(&defaults["activations_only_ours"]), BTreeSet::new());
            assert_eq!(
                names(&defaults["activations_only_ort"]),
                set(ONLY_ORT_DEFAULTS),
                "{model}: activations onnxruntime quantises by default and slim-export does not"
            );
        }
        let acts = pair["activations"].as_array().unwrap();
        // The image, the stem, 9 x (2 convolutions + residual sum), 2 downsamples, the
        // embedding.
        assert_eq!(acts.len(), 1 + 1 + 9 * 3 + 2 + 1, "{model}");
        let (mut worst_scale, mut worst_zp, mut zp_differ) = (0.0f64, 0i64, 0);
        for a in acts {
            let t = a["tensor"].as_str().unwrap();
            let (so, sr) = (f(&a["ours"]["scale"]), f(&a["ort"]["scale"]));
            let rel = (so - sr).abs() / so.abs().max(sr.abs());
            let dz = (a["ours"]["zero_point"].as_i64().unwrap()
                - a["ort"]["zero_point"].as_i64().unwrap())
            .abs();
            assert_eq!(a["ours"]["zero_point_type"], "uint8", "{model}: {t}: {a}");
            assert_eq!(a["ort"]["zero_point_type"], "uint8", "{model}: {t}: {a}");
            assert!(
                rel <= tol.activation_scale && dz <= tol.zero_point,
                "{model}: activation {t}: scale {so} against onnxruntime's {sr} (relative {rel:.2e}, bound {:.0e}), zero point {} against {} (bound {})",
                tol.activation_scale,
                a["ours"]["zero_point"],
                a["ort"]["zero_point"],
                tol.zero_point
            );
            worst_scale = worst_scale.max(rel);
            worst_zp = worst_zp.max(dz);
            zp_differ += usize::from(dz != 0);
        }
        // (b) Weights and biases of every Conv and Gemm.
        assert_eq!(
            names(&pair["weights_only_ours"]),
            BTreeSet::new(),
            "{model}"
        );
        assert_eq!(names(&pair["weights_only_ort"]), BTreeSet::new(), "{model}");
        let weights = pair["weights"].as_array().unwrap();
        assert_eq!(weights.len(), 21 + 1, "{model}: Conv and Gemm nodes");
        let (mut values, mut differ, mut worst_w_scale, mut worst_bias) = (0, 0, 0.0f64, 0.0f64);
        for w in weights {
            let node = w["node"].as_str().unwrap();
            let q = &w["weight"];
            assert_eq!(q["dtype_ours"], "int8", "{model}: {node}: {q}");
            assert_eq!(q["dtype_ort"], "int8", "{model}: {node}: {q}");
            assert_eq!(q["axis_ours"], q["axis_ort"], "{model}: {node}: {q}");
            assert_eq!(q["same_shape"], true, "{model}: {node}: {q}");
            assert_eq!(q["zero_points_zero"], true, "{model}: {node}: {q}");
            // The same max|w| / 127 per channel, computed in f32 here and in f64 rounded to
            // f32 there: equal, or one f32 rounding (6e-8 relative) apart.
            let scale = f(&q["scale_max_rel"]);
            assert!(scale <= 1.2e-7, "{model}: {node}: weight scales {q}");
            // Equal scales give equal integers; a tie rounded the other way is one apart.
            assert!(
                q["values_max_abs_diff"].as_i64().unwrap() <= 1,
                "{model}: {node}: {q}"
            );
            values += q["values"].as_u64().unwrap();
            differ += q["values_differ"].as_u64().unwrap();
            worst_w_scale = worst_w_scale.max(scale);
            let b = &w["bias"];
            assert_eq!(b["dtype_ours"], "int32", "{model}: {node}: {b}");
            assert_eq!(b["dtype_ort"], "int32", "{model}: {node}: {b}");
            // Bias scale = input scale x weight scale: as close as the input scales.
            assert!(
                f(&b["scale_max_rel"]) <= tol.activation_scale + 2e-7,
                "{model}: {node}: bias scales {b}"
            );
            // Both round the same float bias to their own grid: at most one step apart.
            let steps = f(&b["dequantized_max_steps"]);
            assert!(steps <= 1.0 + 1e-6, "{model}: {node}: biases {b}");
            worst_bias = worst_bias.max(steps);
        }
        assert!(
            differ * 10_000 <= values,
            "{model}: {differ} of {values} int8 weights differ (by one), more than 1 in 10,000"
        );
        // (c) Both graphs in onnxruntime on the calibration images.
        let o = &pair["outputs"];
        let logits = f(&o["logits_rel_l2"]);
        let top1 = f(&o["top1_agreement"]);
        assert!(
            logits <= tol.logits && top1 == 1.0,
            "{model}: the two int8 graphs' logits are {logits:.2e} apart (relative L2, bound {:.0e}), top-1 agrees on {:.1}% (bound 100%): {o}",
            tol.logits,
            100.0 * top1
        );
        // onnxruntime's graph with slim-export's numbers: slim-export's logits exactly, run
        // as QDQ in float and fused into integer kernels alike.
        for key in [
            "same_numbers_logits_rel_l2_unoptimised",
            "same_numbers_logits_rel_l2",
        ] {
            assert!(f(&o[key]) <= 1e-6, "{model}: {key}: {o}");
        }
        let (ours, ort) = (&o["fused_ours"], &o["fused_ort"]);
        for (op, n) in [("QLinearConv", 21), ("QLinearAdd", 9), ("QGemm", 1)] {
            assert_eq!(ours[op], n, "{model}: {op} after onnxruntime's fusion: {o}");
            assert_eq!(ort[op], n, "{model}: {op} after onnxruntime's fusion: {o}");
        }
        eprintln!(
            "  {model}:\n    {} activations: scales within {worst_scale:.1e} relative, zero points within {worst_zp} ({zp_differ} differ)\n    \
             {} Conv/Gemm: weight scales within {worst_w_scale:.1e} relative, {differ} of {values} int8 weights differ by one, biases within {worst_bias:.2} steps\n    \
             logits {logits:.2e} apart (relative L2; embedding {:.2e}), top-1 {:.0}%; from the float graph's: ours {:.4}, onnxruntime's {:.4}{}\n    \
             onnxruntime's graph with our numbers: logits {:.1e} from ours (unoptimised {:.1e})",
            acts.len(),
            weights.len(),
            f(&o["embedding_rel_l2"]),
            100.0 * top1,
            f(&o["ours_vs_float_logits_rel_l2"]),
            f(&o["ort_vs_float_logits_rel_l2"]),
            pair["ort_defaults"]
                .as_object()
                .map(|d| format!(
                    " (with its default quantised logits {:.4})",
                    f(&d["ort_vs_float_logits_rel_l2"])
                ))
                .unwrap_or_default(),
            f(&o["same_numbers_logits_rel_l2"]),
            f(&o["same_numbers_logits_rel_l2_unoptimised"]),
        );
    }
}

#[test]
fn int8_graphs_match_onnxruntime_quantize_static_with_min_max_calibration() {
    let _alone = slim_test_utils::alone();
    let dir = tempfile::tempdir().unwrap();
    let report = reference_report(
        dir.path(),
        &[],
        &["--method", "minmax", "--also-ort-defaults"],
    );
    check(
        &report,
        &Tolerances {
            // The same formula on ranges measured by tract here and by onnxruntime there:
            // float rounding apart (measured 6e-7).
            activation_scale: 1e-5,
            zero_point: 1,
            // Measured 7.6e-3 at width 1.0 and 0 at width 0.25. Width 1.0 of this random
            // network grows its activations 100-fold over its 20 layers, and the ranges'
            // float rounding (6e-7) moves a few values across a rounding boundary, which
            // the later layers amplify: with slim-export's numbers put in, onnxruntime's
            // graph gives slim-export's logits bit for bit (checked in `check`).
            logits: 2e-2,
        },
    );
}

#[test]
fn int8_graphs_match_onnxruntime_quantize_static_with_percentile_calibration() {
    let _alone = slim_test_utils::alone();
    let dir = tempfile::tempdir().unwrap();
    let report = reference_report(
        dir.path(),
        &[
            "--calibration-method",
            "percentile",
            "--percentile",
            "99.999",
        ],
        &["--method", "percentile", "--percentile", "99.999"],
    );
    check(
        &report,
        &Tolerances {
            // Both cut (100 - p) / 2 percent off each tail at the left edge of the
            // histogram bin where the cumulative share reaches it (`compute_percentile`,
            // asymmetric), on 2048 bins, but over different ranges: slim-export's histogram
            // spans the seen range [min, max], onnxruntime's (CalibTensorRangeSymmetric
            // False) spans [-M, M] with M = max(|min|, |max|), bins twice as wide for a
            // ReLU output. Each end of the range is then within one of onnxruntime's bins,
            // 2M / 2048, of the other's, and the range is at least about M wide (both hold
            // 0 and the cut tails are thin), so the scales are within 2 / 1024 relative
            // (measured 6.3e-4) and the zero points within 1. Exact agreement would need
            // onnxruntime's coarser bins here.
            activation_scale: 2.0 / 1024.0,
            zero_point: 1,
            // Measured 1.2e-2 at width 1.0, 4.2e-3 at width 0.25.
            logits: 3e-2,
        },
    );
}

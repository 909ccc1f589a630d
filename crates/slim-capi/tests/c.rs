//! The C API tested from C: `tests/c/api_test.c`, `tests/c/variants_test.c` (a model
//! exported in f32, f16 and int8), the example `examples/c/classify.c` (by its Makefile)
//! and the README's snippet are compiled with `cc` against `include/slim.h` and the built
//! `libslim.so`, and run under valgrind (errors and definite or indirect leaks fail the
//! run) on real Fashion-MNIST images, checked against the Rust API's answers.

use std::path::{Path, PathBuf};
use std::process::Command;

use slim_core::stats::LatencySummary;
use slim_core::{Manifest, Precision, Variant};
use slim_runtime::calibrate::{self, WidthLatency};
use slim_runtime::{Backend, Budget, Calibration, SlimModel};
use slim_test_utils::{fashion_mnist_pngs, model};

/// MACs per image that select width 0.5 of the committed model (7.8 MMACs; 0.75 is 17.5).
const MAX_MACS: u64 = 10_000_000;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder that holds the `libslim.so` cargo built with this test.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let deps = exe.parent().expect("target/<profile>/deps").to_path_buf();
    [deps.clone(), deps.parent().unwrap().to_path_buf()]
        .into_iter()
        .find(|d| d.join("libslim.so").is_file())
        .unwrap_or_else(|| panic!("no libslim.so beside {}", deps.display()))
}

/// Compiles `source` into `out` against the header and the library.
fn compile(source: &Path, out: &Path) {
    let lib = library_dir();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(source)
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lslim", "-lpthread", "-lm"])
        .status()
        .expect("run cc (tools/setup.sh installs a C compiler)");
    assert!(status.success(), "cc failed on {}", source.display());
}

/// `LD_LIBRARY_PATH` with the library of this test first: cargo runs tests with
/// `target/<profile>` on it, which outranks the programs' rpath, and where a `cargo build`
/// may have left a `libslim.so` of other sources (seen: a stale one answered for this one).
fn library_path() -> std::ffi::OsString {
    let inherited = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let dirs = std::iter::once(library_dir()).chain(std::env::split_paths(&inherited));
    std::env::join_paths(dirs).expect("library folders without ':'")
}

/// Runs `program args` under valgrind, with this test's library; returns its stdout.
fn valgrind(program: &Path, args: &[String]) -> String {
    let out = Command::new("valgrind")
        .env("LD_LIBRARY_PATH", library_path())
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
            "--quiet",
        ])
        .arg(program)
        .args(args)
        .output()
        .expect("run valgrind (tools/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{} under valgrind: {}\nstdout:\n{stdout}\nstderr:\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_c_api_answers_as_the_rust_api_without_errors_or_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let images = fashion_mnist_pngs(dir.path(), 8);
    let paths: Vec<&Path> = images.iter().map(|(p, _)| p.as_path()).collect();

    // What the Rust API answers.
    let m = SlimModel::open(&model(), Backend::Tract).unwrap();
    let budget = Budget {
        max_macs: Some(MAX_MACS),
        ..Budget::default()
    };
    let width = m.select(&budget).unwrap().width;
    assert_eq!(width.get(), 0.5, "the budget picks width 0.5");
    let inputs = m.preprocess_files(&paths).unwrap();
    let classes = m.classify(width, &inputs, 1).unwrap();

    let mut args = vec![
        model().display().to_string(),
        MAX_MACS.to_string(),
        width.get().to_string(),
    ];
    for (p, c) in paths.iter().zip(&classes) {
        args.push(p.display().to_string());
        args.push(c[0].index.to_string());
        args.push(format!("{:.9}", c[0].prob));
    }
    let program = dir.path().join("api_test");
    compile(&crate_dir().join("tests/c/api_test.c"), &program);
    let stdout = valgrind(&program, &args);
    assert!(stdout.contains("checks passed"), "{stdout}");
}

#[test]
fn the_c_example_classifies_images() {
    let dir = tempfile::tempdir().unwrap();
    let images = fashion_mnist_pngs(dir.path(), 3);
    let program = dir.path().join("classify");
    // Built by its own Makefile, as its README says, against the library of this test.
    let status = Command::new("make")
        .arg("-C")
        .arg(crate_dir().join("../../examples/c"))
        .arg(format!("LIB={}", library_dir().display()))
        .arg(format!("OUT={}", program.display()))
        .arg("CFLAGS=-std=c11 -Wall -Wextra -Werror -g")
        .status()
        .expect("run make");
    assert!(status.success(), "make -C examples/c failed");
    let mut args = vec![model().display().to_string(), "10".to_string()];
    args.extend(images.iter().map(|(p, _)| p.display().to_string()));
    let stdout = valgrind(&program, &args);
    assert!(stdout.contains("width 0.5"), "{stdout}");
    // One line per image, naming it and a class of the model.
    let m = SlimModel::open(&model(), Backend::Tract).unwrap();
    for (p, _) in &images {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&p.display().to_string()))
            .unwrap_or_else(|| panic!("no line for {}: {stdout}", p.display()));
        assert!(
            m.manifest().class_names.iter().any(|c| line.contains(c)),
            "{line}"
        );
    }

    // A missing model folder: exit status 1 and the message names it.
    let out = Command::new(&program)
        .env("LD_LIBRARY_PATH", library_path())
        .args(["/nonexistent/model", "10", "x.png"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/model"), "{stderr}");
}

/// The ```c block of the README's "Embedding" section.
fn readme_c_snippet() -> String {
    let readme = std::fs::read_to_string(crate_dir().join("../../README.md")).unwrap();
    let section = readme
        .split("\n## Embedding")
        .nth(1)
        .expect("the README has an Embedding section");
    let block = section.split("```c\n").nth(1).expect("a ```c block in it");
    block.split("\n```").next().unwrap().to_string()
}

#[test]
fn the_readme_c_snippet_compiles_and_classifies() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("snippet.c");
    std::fs::write(&source, readme_c_snippet()).unwrap();
    let program = dir.path().join("snippet");
    compile(&source, &program);
    let images = fashion_mnist_pngs(dir.path(), 1);
    let image = &images[0].0;
    let m = SlimModel::open(&model(), Backend::Tract).unwrap();
    let width = slim_test_utils::width(0.5);
    let top = &m
        .classify(width, &m.preprocess_files(&[image]).unwrap(), 1)
        .unwrap()[0][0];
    let args = [model().display().to_string(), image.display().to_string()];
    let stdout = valgrind(&program, &args);
    assert_eq!(stdout, format!("width 0.5: {} {:.2}\n", top.name, top.prob));
}

/// Caches a calibration of `m` at batch 1 with these p50s (ms), as tract measures them in
/// kind: int8 no faster than float; f16 of width 1.0 faster than float 1.0 but slower
/// than float 0.25. So a latency budget may choose an f16 graph, never an int8 one.
fn fake_calibration(m: &SlimModel) {
    let v = |w, p| Variant::new(slim_test_utils::width(w), p);
    use Precision::{F16, F32, Int8};
    let p50 = [
        (v(1.0, F32), 4.0),
        (v(1.0, F16), 3.0),
        (v(1.0, Int8), 4.5),
        (v(0.25, F32), 1.0),
        (v(0.25, F16), 0.9),
        (v(0.25, Int8), 1.2),
    ];
    let cal = Calibration {
        key: m.calibration_key(1).unwrap(),
        widths: (p50.iter())
            .map(|&(v, ms)| WidthLatency {
                width: v.width,
                precision: v.precision,
                latency: LatencySummary::new(1, &[ms]),
            })
            .collect(),
    };
    calibrate::write_cache(&m.calibration_path(), &cal).unwrap();
}

#[test]
fn the_c_api_lists_selects_and_runs_every_variant_as_the_rust_api() {
    let dir = tempfile::tempdir().unwrap();
    let full = slim_test_utils::variant_model(&dir.path().join("export"), &Precision::ALL)
        .expect("Fashion-MNIST is installed (tools/setup.sh)");
    // The same model without width 0.25's f16 graph: a variant it lacks.
    let partial = dir.path().join("partial");
    slim_test_utils::copy_dir(&full, &partial);
    let mut manifest = Manifest::load(&partial).unwrap();
    assert_eq!(manifest.widths[1].width.get(), 0.25);
    manifest.widths[1]
        .variants
        .retain(|v| v.precision != Precision::F16);
    manifest.save(&partial).unwrap();

    // One image: tract computes f16 slowly, and the C program runs under valgrind.
    let images = fashion_mnist_pngs(dir.path(), 1);
    let paths: Vec<&Path> = images.iter().map(|(p, _)| p.as_path()).collect();
    let m = SlimModel::open(&full, Backend::Tract).unwrap();
    let inputs = m.preprocess_files(&paths).unwrap();
    // What the Rust API lists and answers for every graph, in its order: a line per graph
    // (width, precision, MACs, params, bytes, embedding size), and each graph's
    // embeddings then logits as little-endian f32.
    let mut expected = String::new();
    let mut outputs = Vec::new();
    for &v in m.variants() {
        let e = m.entry(v).unwrap();
        expected += &format!(
            "{} {} {} {} {} {}\n",
            v.width.get(),
            v.precision,
            e.macs,
            e.params,
            e.bytes.expect("the export records each graph's size"),
            e.embedding_dim
        );
        let out = m.run(v, &inputs, paths.len()).unwrap();
        for x in out.embedding.iter().chain(&out.logits) {
            outputs.extend_from_slice(&x.to_le_bytes());
        }
    }
    assert_eq!(m.variants().len(), 6, "{expected}");
    let expected_file = dir.path().join("expected.txt");
    std::fs::write(&expected_file, &expected).unwrap();
    let outputs_file = dir.path().join("outputs.bin");
    std::fs::write(&outputs_file, &outputs).unwrap();
    fake_calibration(&m);

    let program = dir.path().join("variants_test");
    compile(&crate_dir().join("tests/c/variants_test.c"), &program);
    let mut args = vec![
        full.display().to_string(),
        partial.display().to_string(),
        expected_file.display().to_string(),
        outputs_file.display().to_string(),
    ];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let stdout = valgrind(&program, &args);
    assert!(stdout.contains("checks passed"), "{stdout}");
}

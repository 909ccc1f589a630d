//! The C API tested from C: `tests/c/api_test.c`, the example `examples/c/classify.c` (by
//! its Makefile) and the README's snippet are compiled with `cc` against
//! `include/slim.h` and the built `libslim.so`, and run
//! under valgrind (errors and definite or indirect leaks fail the run) on real
//! Fashion-MNIST images, checked against the Rust API's answers.

use std::path::{Path, PathBuf};
use std::process::Command;

use slim_runtime::{Backend, Budget, SlimModel};
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

/// Runs `program args` under valgrind; returns its stdout.
fn valgrind(program: &Path, args: &[String]) -> String {
    let out = Command::new("valgrind")
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

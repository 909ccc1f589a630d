//! The `slim-serve` binary as the README runs it: `serve` on a free port, `load` against
//! it with a JSON report, Ctrl-C (SIGINT) stops the server cleanly; bad arguments exit 1
//! with a message naming what is wrong.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn slim_serve() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slim-serve"))
}

#[test]
fn serve_load_and_stop_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    slim_test_utils::fashion_mnist_pngs(&images, 4);
    let model = slim_test_utils::model();
    let mut server = slim_serve()
        .args([
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .args(["--p95-ms", "50", "--workers", "2", "--calibration"])
        .arg(dir.path().join("calibration.json"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(line.contains("p95 target 50 ms, 2 model workers"), "{line}");
    let report = dir.path().join("report.json");
    let out = slim_serve()
        .args([
            "load",
            "--addr",
            &addr,
            "--seconds",
            "2",
            "--clients",
            "2",
            "--json",
        ])
        .arg(&report)
        .arg("--plot")
        .arg(dir.path().join("timeline"))
        .arg(&images)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("second      ok  refused  failed"),
        "{stdout}"
    );
    assert!(stdout.contains("2 clients, 2 s:"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["failed"].as_u64(), Some(0), "{v}");
    assert!(v["ok"].as_u64().unwrap() > 0, "{v}");
    let png = image::open(dir.path().join("timeline.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1200, 900));
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).unwrap();
    assert!(
        svg.contains("p95 target 50 ms"),
        "the target's legend is missing"
    );
    let kill = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_arguments_exit_1_naming_the_problem() {
    let out = slim_serve()
        .args(["serve", "--model", "/no/such/model", "--p95-ms", "5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/no/such/model"), "{err}");
    let model = slim_test_utils::model();
    let out = slim_serve()
        .args(["serve", "--model", model.to_str().unwrap(), "--p95-ms", "0"])
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--p95-ms: target 0 ms"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = slim_serve()
        .args(["load", "--addr", "127.0.0.1:1", "--seconds", "1"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("at least one image"), "{err}");
}

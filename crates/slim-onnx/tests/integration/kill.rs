//! `slim-export` killed at random points of its run, and two exports into one folder at
//! once: the folder's manifest is always whole and lists either what it listed before or
//! everything the export wrote, each listed graph complete; no width is ever lost.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use slim_core::{Backbone, Manifest};
use slim_onnx::WidthSelection;

use super::common;

/// Each listed width's files (graph and test data), by width tag.
fn listed(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let m = Manifest::load(dir).expect("a whole manifest");
    m.widths
        .iter()
        .map(|e| {
            let graph = std::fs::read(dir.join(&e.file)).expect("a listed graph exists");
            (e.width.tag(), graph)
        })
        .collect()
}

/// Temporary files of atomic writes left anywhere below `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(leftovers(&p));
        } else if p.to_string_lossy().contains(".tmp-") {
            out.push(p.display().to_string());
        }
    }
    out
}

fn export_cmd(ckpt: &Path, out: &Path, width: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slim-export"));
    c.arg("--checkpoint").arg(ckpt).arg("--out").arg(out);
    match width {
        Some(w) => c.args(["--width", w]),
        None => c.arg("--all"),
    };
    c
}

#[test]
fn a_killed_export_leaves_the_folder_as_before_or_complete() {
    let _alone = slim_test_utils::alone();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(Backbone::Resnet20, 1, 28);
    let ckpt = common::checkpoint(dir.path(), &config, 11, &config.widths);
    let complete_dir = dir.path().join("complete");
    slim_onnx::export(&ckpt, WidthSelection::All, &complete_dir).unwrap();
    let complete = listed(&complete_dir);
    let before_dir = dir.path().join("before");
    slim_onnx::export(
        &ckpt,
        WidthSelection::One(slim_test_utils::width(1.0)),
        &before_dir,
    )
    .unwrap();
    let before = listed(&before_dir);
    assert_eq!((before.len(), complete.len()), (1, 4));

    let out = dir.path().join("model");
    let mut outcomes = BTreeMap::new();
    let killed = slim_test_utils::kill_at_random_points(
        50,
        || {
            let _ = std::fs::remove_dir_all(&out);
            slim_test_utils::copy_dir(&before_dir, &out);
            export_cmd(&ckpt, &out, None)
        },
        |i| {
            let now = listed(&out);
            let outcome = if now == before {
                "as before"
            } else if now == complete {
                "complete"
            } else {
                panic!("run {i}: the folder lists {:?}", now.keys())
            };
            *outcomes.entry(outcome).or_insert(0) += 1;
        },
    );
    assert!(killed >= 25, "only {killed} of 50 runs were killed");
    assert!(outcomes.len() == 2, "{outcomes:?}");
    // A later export finishes the folder and sweeps what killed writes left.
    assert!(
        export_cmd(&ckpt, &out, None)
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(listed(&out), complete);
    assert_eq!(leftovers(&out), Vec::<String>::new());
}

#[test]
fn two_exports_into_one_folder_at_once_lose_no_width() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(Backbone::Resnet20, 1, 28);
    let ckpt = common::checkpoint(dir.path(), &config, 12, &[]);
    for round in 0..8 {
        let out = dir.path().join(format!("model-{round}"));
        let mut a = export_cmd(&ckpt, &out, Some("0.5")).spawn().unwrap();
        let mut b = export_cmd(&ckpt, &out, Some("0.25")).spawn().unwrap();
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
        let tags: Vec<String> = listed(&out).into_keys().collect();
        assert_eq!(tags, ["w250", "w500"], "round {round}");
    }
}

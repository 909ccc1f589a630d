//! Every command line in a `sh` block of the READMEs must parse, so that a renamed or
//! removed flag fails CI instead of a reader: `slim-train`, `slim-export`, `slim-bench`,
//! `slim-run` and `slim-serve` lines through the binaries' own clap definitions, `cargo` lines against
//! the workspace's packages, features, examples and benches, scripts against `tools/`,
//! `make -C DIR` against DIR's Makefile.
//! A line this test does not know is an error, so a new kind of snippet gets a check.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

/// The documents whose commands are checked, relative to the workspace root.
const DOCUMENTS: &[&str] = &["README.md", "models/README.md"];

/// What `$NAME` stands for in a snippet: any path parses.
const VARIABLES: &[(&str, &str)] = &[("$FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One command of a document: where it starts and its words.
#[derive(Debug)]
struct Snippet {
    place: String,
    words: Vec<String>,
}

/// The commands of every ```sh block of `text`: continuation lines joined, comments
/// dropped, variables replaced.
fn snippets(document: &str, text: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block && trimmed == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = strip_comment(line);
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        let code = code.trim_end();
        let continued = code.ends_with('\\');
        joined.push(' ');
        joined.push_str(code.trim_end_matches('\\'));
        if continued {
            pending = Some((start, joined));
            continue;
        }
        let mut joined = joined.trim().to_string();
        for (name, value) in VARIABLES {
            joined = joined.replace(name, value);
        }
        if !joined.is_empty() {
            out.push(Snippet {
                place: format!("{document}:{start}"),
                words: joined.split_whitespace().map(str::to_string).collect(),
            });
        }
    }
    assert!(
        pending.is_none(),
        "{document}: a command ends in a backslash"
    );
    out
}

/// `line` up to a `#` that starts a word (a shell comment).
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    let at = (0..b.len()).find(|&i| b[i] == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()));
    at.map_or(line, |i| &line[..i])
}

/// The workspace as `cargo metadata` describes it.
fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed");
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Checks a `cargo` line: its subcommand, and that every package, feature, example and
/// bench it names exists.
fn check_cargo(words: &[String], meta: &serde_json::Value) -> Result<(), String> {
    let packages = meta["packages"].as_array().expect("packages");
    let package = |name: &str| packages.iter().find(|p| p["name"] == name);
    let sub = words.get(1).map(String::as_str).unwrap_or("");
    if !["build", "run", "bench", "test"].contains(&sub) {
        return Err(format!("cargo {sub}: not a subcommand this check knows"));
    }
    let mut selected = None;
    let mut rest = words[2..].iter();
    while let Some(w) = rest.next() {
        let mut value = || rest.next().cloned().ok_or(format!("{w} lacks its value"));
        match w.as_str() {
            "--" => break,
            "--release" | "--workspace" => {}
            "-p" | "--package" => {
                let name = value()?;
                selected = Some(package(&name).ok_or(format!("no package {name}"))?);
            }
            "--features" => {
                for f in value()?.split(',') {
                    let (p, f) = match f.split_once('/') {
                        Some((p, f)) => (package(p).ok_or(format!("no package {p}"))?, f),
                        None => (selected.ok_or(format!("--features {f} without -p"))?, f),
                    };
                    if p["features"].get(f).is_none() {
                        return Err(format!("package {} has no feature {f}", p["name"]));
                    }
                }
            }
            "--example" | "--bench" | "--bin" => {
                let kind = &w[2..];
                let name = value()?;
                let p = selected.ok_or(format!("{w} {name} without -p"))?;
                let found = p["targets"].as_array().expect("targets").iter().any(|t| {
                    t["name"] == name.as_str()
                        && t["kind"]
                            .as_array()
                            .is_some_and(|k| k.iter().any(|k| k == kind))
                });
                if !found {
                    return Err(format!("package {} has no {kind} {name}", p["name"]));
                }
            }
            other => return Err(format!("cargo option {other}: not one this check knows")),
        }
    }
    Ok(())
}

/// Parses a line of one of the slim binaries with that binary's clap definition.
fn check_binary(name: &str, words: &[String]) -> Option<Result<(), String>> {
    let parsed = match name {
        "slim-train" => slim_train::cli::Cli::try_parse_from(words).map(drop),
        "slim-export" => slim_onnx::cli::Args::try_parse_from(words).map(drop),
        "slim-bench" => slim_bench::cli::Args::try_parse_from(words).map(drop),
        "slim-run" => slim_run::cli::Args::try_parse_from(words).map(drop),
        "slim-serve" => slim_serve::cli::Args::try_parse_from(words).map(drop),
        _ => return None,
    };
    Some(parsed.map_err(|e| e.to_string()))
}

/// `make -C DIR [TARGET...]`: DIR holds a Makefile that defines each target.
fn check_make(words: &[String]) -> Result<(), String> {
    let (dir, targets) = match words {
        [_, flag, dir, targets @ ..] if flag == "-C" => (dir, targets),
        _ => return Err("make: only `make -C DIR [TARGET...]` is checked".into()),
    };
    let makefile = root().join(dir).join("Makefile");
    let text = std::fs::read_to_string(&makefile).map_err(|e| format!("{dir}/Makefile: {e}"))?;
    for t in targets {
        if !text.lines().any(|l| l.starts_with(&format!("{t}:"))) {
            return Err(format!("{dir}/Makefile has no target {t}"));
        }
    }
    Ok(())
}

fn check(s: &Snippet, meta: &serde_json::Value) -> Result<(), String> {
    let first = s.words[0].as_str();
    let name = Path::new(first)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(first);
    if let Some(result) = check_binary(name, &s.words) {
        return result;
    }
    match first {
        "cargo" => check_cargo(&s.words, meta),
        "source" => {
            // Written by the setup script.
            let setup = std::fs::read_to_string(root().join("tools/setup.sh")).unwrap();
            match s.words.get(1) {
                Some(f) if setup.contains(f.trim_start_matches(".deps/")) => Ok(()),
                other => Err(format!(
                    "source {other:?}: not a file tools/setup.sh writes"
                )),
            }
        }
        "make" => check_make(&s.words),
        script if script.starts_with("tools/") => {
            let path = root().join(script);
            let mode = std::fs::metadata(&path)
                .map_err(|e| format!("{script}: {e}"))?
                .permissions();
            use std::os::unix::fs::PermissionsExt;
            if mode.mode() & 0o111 == 0 {
                return Err(format!("{script} is not executable"));
            }
            Ok(())
        }
        other => Err(format!("{other}: a command this check does not know")),
    }
}

#[test]
fn every_readme_command_parses() {
    let meta = metadata();
    let mut failures = Vec::new();
    let mut checked = 0;
    for doc in DOCUMENTS {
        let text = std::fs::read_to_string(root().join(doc)).expect("document exists");
        for s in snippets(doc, &text) {
            checked += 1;
            if let Err(e) = check(&s, &meta) {
                failures.push(format!("{}: `{}`:\n{e}", s.place, s.words.join(" ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The READMEs hold about two dozen commands: a parser that found none checked nothing.
    assert!(checked >= 20, "only {checked} commands found");
}

#[test]
fn snippets_join_continuations_and_drop_comments() {
    let text = "text\n```sh\n# a comment\nslim-bench --model m \\\n  --batch 1   # why\n\n```\n\
                ```\nnot sh\n```\n";
    let s = snippets("doc", text);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].place, "doc:4");
    assert_eq!(s[0].words, ["slim-bench", "--model", "m", "--batch", "1"]);
}

#[test]
fn a_renamed_flag_is_caught() {
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let meta = metadata();
    let bad = [
        "slim-bench --model m --json report.json",
        "slim-train pretrain --data d --no-such-flag",
        "cargo build --release -p slim-run --features no-such-feature",
        "cargo run -p slim-examples --example no_such_example",
        "tools/no-such-script.sh",
        "make -C examples/no-such-dir",
        "make -C examples/c no-such-target",
        "rm -rf /",
    ];
    for line in bad {
        let s = Snippet {
            place: "test".into(),
            words: words(line),
        };
        assert!(check(&s, &meta).is_err(), "{line} passed");
    }
    let good = Snippet {
        place: "test".into(),
        words: words("slim-export --checkpoint c --width 0.25 --out d"),
    };
    check(&good, &meta).unwrap();
}

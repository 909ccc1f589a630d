//! What every fuzz target shares: the input written where the reader expects a file (the
//! readers take paths, as their callers do), and the committed model that image inputs
//! are preprocessed for. Each target calls the same entry point as the binaries, so a
//! crash here is a crash there; a clean error is the expected outcome for most inputs.

use std::path::{Path, PathBuf};

/// A scratch folder holding one file, rewritten for every input.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("a scratch folder"),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `data` to `name` in the folder; its path.
    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, data).expect("the scratch file is written");
        path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// The committed Fashion-MNIST model folder.
pub fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fashion-mnist-resnet20")
}

//! CIFAR-10 and CIFAR-100 in their binary form, as downloaded (`cifar-10-binary.tar.gz`,
//! `cifar-100-binary.tar.gz`) or extracted (`cifar-10-batches-bin/`, `cifar-100-binary/`).
//! A record is the label byte(s) then 3 x 32 x 32 channel-planar pixels.

use std::io::Read;
use std::path::Path;

use crate::memory::InMemory;
use crate::{Error, Split};

const PIXELS: usize = 3 * 32 * 32;

/// Whether `path` is a CIFAR binary archive or its extracted folder.
pub fn looks_like(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.starts_with("cifar-10")
        && (name.ends_with(".tar.gz") || name.ends_with(".tgz") || path.is_dir())
}

/// The files of one split: (name, bytes) pairs, wherever they are found.
fn files(path: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let p = entry.map_err(|e| Error::io(path, e))?.path();
            if p.is_file() {
                let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
                out.push((p.file_name().unwrap().to_string_lossy().into_owned(), bytes));
            }
        }
    } else {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let bad =
            |e: std::io::Error| Error::at(path, format!("is not a readable .tar.gz archive: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = entry
                .path()
                .map_err(bad)?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = name.filter(|n| n.ends_with(".bin") || n.ends_with(".txt")) {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(bad)?;
                out.push((name, bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one split of the archive or folder at `path`, converting the pixels to HWC.
pub fn open(path: &Path, split: Split) -> Result<InMemory, Error> {
    let files = files(path)?;
    let get = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b);
    let hundred = get("train.bin").is_some() || get("fine_label_names.txt").is_some();
    let (label_bytes, wanted, names_file): (usize, Vec<String>, &str) = if hundred {
        (
            2,
            vec![format!("{}.bin", split.name())],
            "fine_label_names.txt",
        )
    } else {
        let wanted = match split {
            Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Split::Test => vec!["test_batch.bin".to_string()],
        };
        (1, wanted, "batches.meta.txt")
    };
    let record = label_bytes + PIXELS;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for name in &wanted {
        let bytes = get(name).ok_or_else(|| Error::at(path, format!("has no {name}")))?;
        if bytes.len() % record != 0 {
            return Err(Error::at(
                path,
                format!(
                    "{name} is {} bytes, not a whole number of {record}-byte records: truncated?",
                    bytes.len()
                ),
            ));
        }
        for rec in bytes.chunks_exact(record) {
            // CIFAR-100 stores (coarse, fine); the fine label is the class.
            labels.push(rec[label_bytes - 1] as u16);
            let planes = &rec[label_bytes..];
            pixels.extend((0..1024).flat_map(|p| [planes[p], planes[1024 + p], planes[2048 + p]]));
        }
    }
    let classes: Vec<String> = get(names_file)
        .map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_else(|| {
            (0..if hundred { 100 } else { 10 })
                .map(|i| i.to_string())
                .collect()
        });
    InMemory::new(
        "CIFAR binary",
        path,
        split,
        (32, 32, 3),
        pixels,
        labels,
        classes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    #[test]
    fn reads_an_extracted_cifar10_folder_and_refuses_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&root).unwrap();
        let mut rec = vec![7u8];
        rec.extend((0..PIXELS).map(|i| (i / 1024) as u8 * 100)); // R=0, G=100, B=200
        std::fs::write(
            root.join("test_batch.bin"),
            [rec.clone(), rec.clone()].concat(),
        )
        .unwrap();
        let names: String = (0..10).map(|i| format!("class{i}\n")).collect();
        std::fs::write(root.join("batches.meta.txt"), names).unwrap();
        assert!(looks_like(&root));
        let ds = open(&root, Split::Test).unwrap();
        assert_eq!((ds.len(), ds.label(1)), (2, 7));
        assert_eq!(ds.class_names()[7], "class7");
        assert_eq!(&ds.image(0).unwrap().data[..3], &[0, 100, 200]);
        let err = open(&root, Split::Train).err().unwrap();
        assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
        rec[0] = 10; // one past the last of 10 classes
        std::fs::write(root.join("test_batch.bin"), &rec).unwrap();
        let err = open(&root, Split::Test).err().unwrap();
        assert!(
            err.to_string().contains("label 10 is out of range"),
            "{err}"
        );
        std::fs::write(root.join("test_batch.bin"), vec![0u8; 100]).unwrap();
        let err = open(&root, Split::Test).err().unwrap();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

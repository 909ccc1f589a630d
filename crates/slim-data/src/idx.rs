//! MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`,
//! ...), as the Debian package `dataset-fashion-mnist` installs them. Read whole into
//! memory: Fashion-MNIST is 55 MB of pixels.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::memory::InMemory;
use crate::{Error, Split};

/// Fashion-MNIST's label names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

fn prefix(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "t10k",
    }
}

/// `dir/name` or `dir/name.gz`, whichever exists.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, Error> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::at(path, format!("is not a readable gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header with `dims` dimensions of unsigned bytes; returns the dimensions
/// and the payload.
fn parse<'a>(path: &Path, bytes: &'a [u8], dims: usize) -> Result<(Vec<usize>, &'a [u8]), Error> {
    let header = 4 + 4 * dims;
    if bytes.len() < header
        || bytes[0] != 0
        || bytes[1] != 0
        || bytes[2] != 0x08
        || bytes[3] as usize != dims
    {
        return Err(Error::at(
            path,
            format!("is not an IDX file of unsigned bytes with {dims} dimensions"),
        ));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let n: usize = shape.iter().product();
    let payload = &bytes[header..];
    if payload.len() != n {
        return Err(Error::at(
            path,
            format!(
                "holds {} bytes of data, its header says {n}: truncated?",
                payload.len()
            ),
        ));
    }
    Ok((shape, payload))
}

/// Whether `dir` holds IDX training images.
pub fn present(dir: &Path) -> bool {
    find(dir, "train-images-idx3-ubyte").is_some()
}

/// Reads one split's images and labels from `dir`.
pub fn open(dir: &Path, split: Split) -> Result<InMemory, Error> {
    let p = prefix(split);
    let missing = |what: &str| Error::at(dir, format!("has no {p}-{what}[.gz]"));
    let img_path =
        find(dir, &format!("{p}-images-idx3-ubyte")).ok_or_else(|| missing("images-idx3-ubyte"))?;
    let lab_path =
        find(dir, &format!("{p}-labels-idx1-ubyte")).ok_or_else(|| missing("labels-idx1-ubyte"))?;
    let img_bytes = read_maybe_gz(&img_path)?;
    let (shape, pixels) = parse(&img_path, &img_bytes, 3)?;
    let lab_bytes = read_maybe_gz(&lab_path)?;
    let (lshape, labels) = parse(&lab_path, &lab_bytes, 1)?;
    if lshape[0] != shape[0] {
        return Err(Error::at(
            &lab_path,
            format!("has {} labels for {} images", lshape[0], shape[0]),
        ));
    }
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let fashion = dir.to_string_lossy().to_lowercase().contains("fashion");
    let classes = if fashion && max < 10 {
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..=max).map(|i| i.to_string()).collect()
    };
    InMemory::new(
        "IDX",
        dir,
        split,
        (shape[1], shape[2], 1),
        pixels.to_vec(),
        labels.iter().map(|&l| u16::from(l)).collect(),
        classes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn reads_raw_files_and_rejects_truncated_ones() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            idx(&[2, 3, 4], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            idx(&[2], &[5, 1]),
        )
        .unwrap();
        let ds = open(dir.path(), Split::Train).unwrap();
        assert_eq!((ds.len(), ds.label(0), ds.label(1)), (2, 5, 1));
        let img = ds.image(1).unwrap();
        assert_eq!((img.height, img.width, img.channels), (3, 4, 1));
        assert_eq!(img.data[0], 12);
        assert_eq!(ds.class_names().len(), 6);
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            &idx(&[2], &[5, 1])[..9],
        )
        .unwrap();
        let err = open(dir.path(), Split::Train).err().unwrap();
        assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
        let err = open(dir.path(), Split::Test).err().unwrap();
        assert!(err.to_string().contains("t10k-images"), "{err}");
    }

    #[test]
    fn reads_the_installed_fashion_mnist() {
        let dir = Path::new("/usr/share/datasets/fashion-mnist");
        if !dir.exists() {
            eprintln!(
                "skipped: {} is not installed (tools/setup.sh installs it)",
                dir.display()
            );
            return;
        }
        let ds = open(dir, Split::Test).unwrap();
        assert_eq!(ds.len(), 10_000);
        assert_eq!(ds.class_names()[9], "Ankle boot");
        let img = ds.image(0).unwrap();
        assert_eq!((img.height, img.width), (28, 28));
        let mut counts = [0usize; 10];
        (0..ds.len()).for_each(|i| counts[ds.label(i)] += 1);
        assert_eq!(counts, [1000; 10]);
    }
}

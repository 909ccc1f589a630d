//! ImageFolder datasets: `root/<class>/<image>` as a folder tree or inside a zip archive
//! (e.g. the CIFAR-10 JPEG copy in `shared/data`). Class names are the sorted folder
//! names; a `train/` + `test/` pair at the top selects the split. Files are listed up
//! front and decoded on demand. What the listing passes over (files of other formats or
//! with no extension, files outside a class folder, hidden folders, class folders with
//! no image) is counted by reason and said in [`Dataset::describe`], never dropped
//! without a word.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Dataset, Error, Image, Split, decode};

const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "jfif"];

fn is_image(name: &str) -> bool {
    let lower = name.to_lowercase();
    EXTENSIONS.iter().any(|e| lower.ends_with(&format!(".{e}")))
}

enum Source {
    Dir,
    Zip(Mutex<zip::ZipArchive<BufReader<File>>>),
}

pub struct ImageFolder {
    path: PathBuf,
    split: Option<Split>,
    source: Source,
    /// (file path inside the root or the archive, label), sorted by path.
    samples: Vec<(String, usize)>,
    classes: Vec<String>,
    skipped: Skipped,
}

/// What a listing passed over: how many entries for each reason, with the first of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Skipped(BTreeMap<String, (usize, String)>);

impl Skipped {
    fn add(&mut self, reason: String, entry: &str) {
        self.0.entry(reason).or_insert((0, entry.to_string())).0 += 1;
    }

    /// Entries passed over, in all.
    pub fn total(&self) -> usize {
        self.0.values().map(|(n, _)| n).sum()
    }

    /// `reason -> (count, first entry)`.
    pub fn by_reason(&self) -> &BTreeMap<String, (usize, String)> {
        &self.0
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = (self.0.iter())
            .map(|(why, (n, first))| format!("{n} {why} (e.g. {first})"))
            .collect();
        write!(f, "passed over {}", parts.join(", "))
    }
}

/// Why `file` (below a class folder) is not listed, when it is not.
fn not_an_image(file: &str) -> Option<String> {
    if is_image(file) {
        return None;
    }
    let name = file.rsplit('/').next().unwrap_or(file);
    Some(match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => {
            format!(".{} files (not JPEG, PNG, WebP or BMP)", ext.to_lowercase())
        }
        _ => "files without an image extension".to_string(),
    })
}

/// Groups `(relative path)` entries below `prefix` by their first component; folders are
/// entries ending in `/`.
fn index(
    paths: impl Iterator<Item = String>,
    prefix: &str,
) -> (Vec<String>, Vec<(String, usize)>, Skipped) {
    let mut by_class: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut skipped = Skipped::default();
    for p in paths {
        let Some(rest) = p.strip_prefix(prefix).filter(|r| !r.is_empty()) else {
            continue;
        };
        if rest.ends_with('/') {
            // A folder entry of a zip: a class folder with no image is said below.
            if let Some(class) = rest.split('/').next().filter(|c| !c.is_empty()) {
                by_class.entry(class.to_string()).or_default();
            }
            continue;
        }
        let mut parts = rest.splitn(2, '/');
        match (parts.next(), parts.next()) {
            (Some(class), Some(_)) if class.starts_with('.') => {
                skipped.add("files in hidden folders".into(), &p)
            }
            (Some(class), Some(file)) if !class.is_empty() => match not_an_image(file) {
                None => by_class
                    .entry(class.to_string())
                    .or_default()
                    .push(p.clone()),
                Some(why) => {
                    skipped.add(why, &p);
                    by_class.entry(class.to_string()).or_default();
                }
            },
            _ => skipped.add("files outside any class folder".into(), &p),
        }
    }
    by_class.retain(|class, files| {
        if files.is_empty() && !class.starts_with('.') {
            skipped.add("class folders without an image".into(), class);
        }
        !files.is_empty() && !class.starts_with('.')
    });
    let classes: Vec<String> = by_class.keys().cloned().collect();
    let mut samples = Vec::new();
    for (label, files) in by_class.into_values().enumerate() {
        samples.extend(files.into_iter().map(|f| (f, label)));
    }
    samples.sort();
    (classes, samples, skipped)
}

/// `"train/"` when the top level holds both `train` and `test`, else `""`.
fn split_prefix(top: &[String], split: Split) -> Option<String> {
    let has = |n: &str| top.iter().any(|t| t == n);
    (has("train") && has("test")).then(|| format!("{}/", split.name()))
}

impl ImageFolder {
    pub fn open_dir(root: &Path, split: Split) -> Result<ImageFolder, Error> {
        let top: Vec<String> = std::fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let prefix = split_prefix(&top, split);
        let mut files = Vec::new();
        walk(root, root, &mut files)?;
        let (classes, samples, skipped) = index(files.into_iter(), prefix.as_deref().unwrap_or(""));
        Ok(ImageFolder {
            path: root.to_path_buf(),
            split: prefix.map(|_| split),
            source: Source::Dir,
            samples,
            classes,
            skipped,
        })
    }

    pub fn open_zip(path: &Path, split: Split) -> Result<ImageFolder, Error> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let archive = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| Error::at(path, format!("is not a readable zip archive: {e}")))?;
        let names = archive
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| Error::at(path, format!("has an unreadable entry name: {e}")))?;
        let mut top: Vec<String> = names
            .iter()
            .filter_map(|n| {
                n.split('/')
                    .next()
                    .filter(|_| n.contains('/'))
                    .map(String::from)
            })
            .collect();
        top.sort();
        top.dedup();
        let prefix = split_prefix(&top, split);
        let (classes, samples, skipped) = index(names.into_iter(), prefix.as_deref().unwrap_or(""));
        Ok(ImageFolder {
            path: path.to_path_buf(),
            split: prefix.map(|_| split),
            source: Source::Zip(Mutex::new(archive)),
            samples,
            classes,
            skipped,
        })
    }

    /// What the listing passed over, by reason.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// The path (inside the folder or archive) of sample `i`.
    pub fn file(&self, i: usize) -> &str {
        &self.samples[i].0
    }

    fn read(&self, i: usize) -> Result<(PathBuf, Vec<u8>), Error> {
        let name = &self.samples[i].0;
        match &self.source {
            Source::Dir => {
                let p = self.path.join(name);
                let bytes = decode::read_file(&p)?;
                Ok((p, bytes))
            }
            Source::Zip(archive) => {
                let shown = PathBuf::from(format!("{}:{name}", self.path.display()));
                let mut archive = archive.lock().unwrap_or_else(|p| p.into_inner());
                let entry = archive
                    .by_name(name)
                    .map_err(|e| Error::at(&shown, format!("cannot be read: {e}")))?;
                // Bounded by what is read, not by the size the archive claims.
                let bytes = decode::read_bounded(entry, &shown)?;
                Ok((shown, bytes))
            }
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        if p.is_dir() {
            if let Ok(rel) = p.strip_prefix(root) {
                // Listed as a zip lists folders, so that an empty class folder is seen.
                out.push(format!("{}/", rel.to_string_lossy().replace('\\', "/")));
            }
            walk(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn class_names(&self) -> &[String] {
        &self.classes
    }
    fn label(&self, i: usize) -> usize {
        self.samples[i].1
    }
    fn image(&self, i: usize) -> Result<Image, Error> {
        let (path, bytes) = self.read(i)?;
        decode(&path, &bytes)
    }
    fn describe(&self) -> String {
        let split = self
            .split
            .map(|s| format!("{} split, ", s.name()))
            .unwrap_or_default();
        let skipped = if self.skipped.total() > 0 {
            format!("; {}", self.skipped)
        } else {
            String::new()
        };
        format!(
            "ImageFolder {} ({split}{} images, {} classes{skipped})",
            self.path.display(),
            self.len(),
            self.classes.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn png(v: u8) -> Vec<u8> {
        let img =
            image::DynamicImage::ImageLuma8(image::ImageBuffer::from_pixel(5, 4, image::Luma([v])));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn folder_and_zip_agree_and_corrupt_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let files = [
            ("train/cat/a.png", png(1)),
            ("train/dog/b.png", png(2)),
            ("train/dog/c.png", b"corrupt".to_vec()),
            ("train/dog/notes.txt", b"not an image".to_vec()),
            ("train/dog/anim.GIF", b"GIF89a".to_vec()),
            ("train/dog/README", b"no extension".to_vec()),
            ("train/.cache/e.png", png(4)),
            ("train/stray.png", png(5)),
            ("train/empty/scan.tiff", b"II*".to_vec()),
            ("test/cat/d.png", png(3)),
        ];
        let zip_path = dir.path().join("data.zip");
        let mut zw = zip::ZipWriter::new(File::create(&zip_path).unwrap());
        for (name, bytes) in &files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            zw.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zw.write_all(bytes).unwrap();
        }
        zw.finish().unwrap();
        for ds in [
            ImageFolder::open_dir(&root, Split::Train).unwrap(),
            ImageFolder::open_zip(&zip_path, Split::Train).unwrap(),
        ] {
            assert_eq!(ds.class_names(), ["cat", "dog"]);
            assert_eq!(ds.len(), 3, "{}", ds.describe());
            let counts: Vec<(&str, usize)> = (ds.skipped().by_reason().iter())
                .map(|(why, (n, _))| (why.as_str(), *n))
                .collect();
            assert_eq!(
                counts,
                [
                    (".gif files (not JPEG, PNG, WebP or BMP)", 1),
                    (".tiff files (not JPEG, PNG, WebP or BMP)", 1),
                    (".txt files (not JPEG, PNG, WebP or BMP)", 1),
                    ("class folders without an image", 1),
                    ("files in hidden folders", 1),
                    ("files outside any class folder", 1),
                    ("files without an image extension", 1),
                ],
                "{}",
                ds.describe()
            );
            assert!(
                ds.describe().contains("passed over 1 .gif files")
                    && ds
                        .describe()
                        .contains("1 class folders without an image (e.g. empty)"),
                "{}",
                ds.describe()
            );
            assert_eq!((ds.label(0), ds.label(1)), (0, 1));
            assert_eq!(ds.image(1).unwrap().data[0], 2);
            let err = ds.image(2).unwrap_err().to_string();
            assert!(err.contains("c.png"), "{err}");
        }
        let test = crate::open(&zip_path, Split::Test).unwrap();
        assert_eq!(test.len(), 1);
        let err = crate::open(&dir.path().join("missing.zip"), Split::Test)
            .err()
            .unwrap();
        assert!(err.to_string().contains("missing.zip"), "{err}");
    }

    #[test]
    fn reads_the_shared_cifar10_jpeg_zip() {
        let zip = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/cifar10-jpeg/cifar10-jpeg.zip");
        if !zip.exists() {
            eprintln!("skipped: {} is absent", zip.display());
            return;
        }
        let ds = crate::open(&zip, Split::Test).unwrap();
        assert_eq!(ds.len(), 10_000);
        assert_eq!(ds.class_names()[0], "airplane");
        let img = ds.image(9_999).unwrap();
        assert_eq!((img.height, img.width, img.channels), (32, 32, 3));
        assert_eq!(ds.label(9_999), 9);
    }
}

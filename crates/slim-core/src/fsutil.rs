//! Atomic file writes: temporary file in the same folder, fsync, rename, fsync the folder.
//! A reader sees the old file or the new one, never half of one, even after a kill. And
//! a folder lock for read-modify-write of a file in it. And the bounded read every file
//! reader uses, so that no file's size decides an allocation.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use crate::Error;

/// All of `source` when it holds at most `max` bytes, `None` when it holds more (reading
/// stops at `max + 1` bytes).
pub fn read_at_most(source: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    source.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// What marks the temporary file of an [`atomic_write`]: `.{name}.tmp-{pid}`.
const TMP_MARK: &str = ".tmp-";

/// Removes, below `dir` (`depth` folders down), the temporary files of atomic writes whose
/// process is gone (killed before its rename); returns how many. Call it holding
/// [`lock_dir`], so that no live writer of the folder is mid-write. Linux only (a process
/// is alive while `/proc/<pid>` exists); elsewhere nothing is removed.
pub fn remove_stale_temporaries(dir: &Path, depth: usize) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            if depth > 0 {
                removed += remove_stale_temporaries(&p, depth - 1);
            }
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(TMP_MARK))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        let gone =
            |pid: u32| cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists();
        if pid.is_some_and(gone) && fs::remove_file(&p).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Holds an exclusive advisory lock on the folder `dir` until dropped (`flock` on the folder
/// itself, so no lock file is left behind; released by the kernel when the process dies).
/// slim-export and `slim-bench --write-manifest` read, change and write a manifest under
/// it, so two of them at once never lose each other's widths or figures.
pub fn lock_dir(dir: &Path) -> Result<fs::File, Error> {
    let f = fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    f.lock().map_err(|e| Error::io(dir, e))?;
    Ok(f)
}

/// Writes `bytes` to `path` atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file path")))?;
    let tmp = dir.join(format!(
        ".{}{TMP_MARK}{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            read_at_most(&b"two"[..], 3).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(read_at_most(&b"two"[..], 2).unwrap(), None);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_folder_is_an_error_naming_the_file() {
        let err = atomic_write(Path::new("/nonexistent-dir/x.bin"), b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.bin"), "{err}");
    }
}

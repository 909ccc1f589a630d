//! Peak memory of one width's work, on Linux: the resident high-water mark (`VmHWM` in
//! `/proc/self/status`) is reset to the current resident size by writing `5` to
//! `/proc/self/clear_refs`, and read again afterwards; the peak is reported over the
//! resident size before the width was loaded. Freed heap memory is first handed back to
//! the OS (glibc `malloc_trim`), so that a width reusing what an earlier one freed still
//! shows. Elsewhere, or when `/proc` refuses, there is no figure and the reason says why.

use serde::{Deserialize, Serialize};

const STATUS: &str = "/proc/self/status";
const CLEAR_REFS: &str = "/proc/self/clear_refs";

/// Peak resident memory while a width was loaded and measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakMemory {
    /// Resident size before (bytes).
    pub rss_before_bytes: u64,
    /// Resident high-water mark during the work (bytes).
    pub peak_rss_bytes: u64,
    /// `peak_rss_bytes - rss_before_bytes`: what this width's work added at its peak.
    pub peak_delta_bytes: u64,
}

/// A `kB` field of a `/proc/*/status` text, in bytes.
pub fn status_bytes(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        Some(kb * 1024)
    })
}

fn read_status(key: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(STATUS).map_err(|e| format!("cannot read {STATUS}: {e}"))?;
    status_bytes(&text, key).ok_or_else(|| format!("{STATUS} has no {key} line"))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim only returns free heap pages to the kernel; it takes no
    // pointers and is safe to call at any time from any thread.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

/// Started before a width's work; [`PeakTracker::finish`] after it.
pub struct PeakTracker {
    rss_before: u64,
}

impl PeakTracker {
    /// Resets the high-water mark, or says why it cannot.
    pub fn start() -> Result<PeakTracker, String> {
        release_free_heap();
        let rss_before = read_status("VmRSS")?;
        std::fs::write(CLEAR_REFS, "5")
            .map_err(|e| format!("cannot reset the peak through {CLEAR_REFS}: {e}"))?;
        Ok(PeakTracker { rss_before })
    }

    pub fn finish(&self) -> Result<PeakMemory, String> {
        let peak = read_status("VmHWM")?;
        Ok(PeakMemory {
            rss_before_bytes: self.rss_before,
            peak_rss_bytes: peak,
            peak_delta_bytes: peak.saturating_sub(self.rss_before),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse_to_bytes() {
        let text = "Name:\tslim-bench\nVmPeak:\t  200000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t    1000 kB\nThreads:\t3\n";
        assert_eq!(status_bytes(text, "VmHWM"), Some(12345 * 1024));
        assert_eq!(status_bytes(text, "VmRSS"), Some(1000 * 1024));
        assert_eq!(status_bytes(text, "VmSwap"), None);
        assert_eq!(status_bytes(text, "Threads"), None, "not a kB field");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fresh_allocation_shows_in_the_peak() {
        let Ok(t) = PeakTracker::start() else {
            eprintln!("skipped: {CLEAR_REFS} is not writable here");
            return;
        };
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let m = t.finish().unwrap();
        drop(block);
        assert!(m.peak_delta_bytes >= 60 << 20, "{m:?}");
    }
}

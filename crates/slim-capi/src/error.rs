//! Status codes, the thread-local last error, and the guard every exported function runs
//! its body in: a Rust error becomes a status code plus a message, and a panic is caught
//! there and becomes `SLIM_STATUS_PANIC`, so no unwind ever crosses into C.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use slim_runtime::Error;

/// What a call returned. `SLIM_STATUS_OK` is 0; on any other status,
/// `slim_last_error()` says what went wrong, naming the file involved where there is one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlimStatus {
    Ok = 0,
    /// A null pointer, a string that is not UTF-8, a value out of range, an input of the
    /// wrong size, or settings that cannot work.
    InvalidArgument = 1,
    /// The model folder, its manifest, a graph or the calibration cache is missing or
    /// malformed.
    Model = 2,
    /// An image that cannot be read or decoded.
    Image = 3,
    /// The model holds no such width, or not in the precision asked for (the message lists
    /// the graphs it has).
    NoSuchWidth = 4,
    /// No width meets the budget; the message names the nearest and by how much it misses.
    NoFit = 5,
    /// A caller's buffer is too small; the size it needs was written where the call says.
    BufferTooSmall = 6,
    /// The engine (tract or ONNX Runtime) failed.
    Backend = 7,
    /// Not available in this build or on this graph (e.g. ONNX Runtime without the `ort`
    /// feature).
    Unavailable = 8,
    /// A graph produced NaN or infinite outputs.
    NonFinite = 9,
    /// A bug: Rust panicked inside the call. The panic was caught; the message says where.
    Panic = 10,
}

/// A failed call: its status and message.
pub(crate) struct Failure {
    pub status: SlimStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: SlimStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(SlimStatus::InvalidArgument, message)
    }

    /// `name` needs `needed` elements but the caller gave `capacity`.
    pub fn too_small(name: &str, needed: usize, capacity: usize) -> Failure {
        Failure::new(
            SlimStatus::BufferTooSmall,
            format!("{name}: needs {needed} elements, the buffer holds {capacity}"),
        )
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match &e {
            Error::Core(_) | Error::Graph { .. } | Error::Calibration { .. } => SlimStatus::Model,
            Error::Data(_) => SlimStatus::Image,
            Error::Backend { .. } => SlimStatus::Backend,
            Error::Unavailable(_) => SlimStatus::Unavailable,
            Error::Invalid(_) | Error::InputSize { .. } => SlimStatus::InvalidArgument,
            Error::NoFit(_) => SlimStatus::NoFit,
            Error::NoSuchWidth { .. } | Error::NoSuchVariant { .. } => SlimStatus::NoSuchWidth,
            Error::NonFinite { .. } => SlimStatus::NonFinite,
        };
        Failure::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message with an interior NUL is cut there rather than lost.
    let bytes = message.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let c = CString::new(&bytes[..end]).expect("no NUL before `end`");
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The message of the last call on this thread that did not return `SLIM_STATUS_OK`
/// (empty before any failure). Valid until the next failing call on this thread; copy it
/// to keep it. Never NULL. Thread-safe: each thread has its own.
#[unsafe(no_mangle)]
pub extern "C" fn slim_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs `body`; an error or a panic becomes a status with its message kept for
/// `slim_last_error()`.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> SlimStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SlimStatus::Ok,
        Ok(Err(f)) => {
            set_last_error(&f.message);
            f.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            set_last_error(&format!(
                "internal error (a bug in slim-runtime, please report it): {what}"
            ));
            SlimStatus::Panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        unsafe { CStr::from_ptr(slim_last_error()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_panic_is_caught_and_reported() {
        let status = guard(|| panic!("boom at the boundary"));
        assert_eq!(status, SlimStatus::Panic);
        assert!(last().contains("boom at the boundary"), "{}", last());
    }

    #[test]
    fn an_error_keeps_its_status_and_message_and_ok_keeps_the_last_error() {
        let status = guard(|| Err(Failure::too_small("logits", 20, 10)));
        assert_eq!(status, SlimStatus::BufferTooSmall);
        assert_eq!(last(), "logits: needs 20 elements, the buffer holds 10");
        assert_eq!(guard(|| Ok(())), SlimStatus::Ok);
        assert_eq!(last(), "logits: needs 20 elements, the buffer holds 10");
        // Another thread has its own last error.
        let other = std::thread::spawn(last).join().unwrap();
        assert_eq!(other, "");
        // An interior NUL cuts the message instead of losing it.
        guard(|| Err(Failure::invalid("before\0after")));
        assert_eq!(last(), "before");
    }
}

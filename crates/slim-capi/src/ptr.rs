//! Checked reads of what C passes in: strings, handles, input batches and output buffers.
//! Each names the argument it refuses, so the last error says which one was wrong.

use std::ffi::{CStr, c_char};

use slim_core::Width;

use crate::error::Failure;

/// A NUL-terminated UTF-8 string argument.
pub(crate) fn string<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string that outlives the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|e| Failure::invalid(format!("{name} is not UTF-8: {e}")))
}

/// A handle or struct argument that must not be NULL.
pub(crate) fn reference<'a, T>(p: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: a non-NULL handle came from this library and is not freed yet; a struct
    // pointer points to one initialised value.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
}

/// Where a result goes: a non-NULL pointer to one value.
pub(crate) fn out<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller passes a pointer to writable storage for one value.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
}

/// `len` values at `p` (an input the caller owns).
pub(crate) fn slice<'a, T>(p: *const T, len: usize, name: &str) -> Result<&'a [T], Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    // SAFETY: the caller passes `len` initialised values at `p`.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// An output buffer of `capacity` values, or `None` when the caller passed NULL (it does
/// not want that output).
pub(crate) fn buffer<'a, T>(p: *mut T, capacity: usize) -> Option<&'a mut [T]> {
    // SAFETY: a non-NULL buffer has room for `capacity` values.
    (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p, capacity) })
}

/// Copies `values` into `buf` (NULL: skipped); refuses a buffer too small, writing nothing.
pub(crate) fn fill<T: Copy>(
    buf: Option<&mut [T]>,
    values: &[T],
    name: &str,
) -> Result<(), Failure> {
    match buf {
        None => Ok(()),
        Some(b) if b.len() < values.len() => Err(Failure::too_small(name, values.len(), b.len())),
        Some(b) => {
            b[..values.len()].copy_from_slice(values);
            Ok(())
        }
    }
}

/// A width argument (e.g. 0.25).
pub(crate) fn width(w: f64) -> Result<Width, Failure> {
    Width::new(w).map_err(|e| Failure::invalid(format!("width: {e}")))
}

/// `a * b` for sizes a caller gave, refused when it overflows.
pub(crate) fn product(a: usize, b: usize, name: &str) -> Result<usize, Failure> {
    a.checked_mul(b)
        .ok_or_else(|| Failure::invalid(format!("{name}: {a} x {b} overflows")))
}

/// Frees a handle that `Box::into_raw` made (NULL is ignored).
///
/// # Safety
/// A non-NULL `p` came from this library's `Box::into_raw`, is freed once, and is not in
/// use by another call.
pub(crate) unsafe fn free<T>(p: *mut T) {
    if !p.is_null() {
        drop(unsafe { Box::from_raw(p) });
    }
}

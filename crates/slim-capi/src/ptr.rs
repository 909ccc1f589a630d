//! Checked reads of what C passes in: strings, handles, input batches and output buffers.
//! Each names the argument it refuses, so the last error says which one was wrong.

use std::ffi::{CStr, c_char};

use slim_core::{Precision, Variant, Width};

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

/// A precision argument: "f32", "f16" or "int8"; NULL means "f32" (the float graph).
pub(crate) fn precision(p: *const c_char) -> Result<Precision, Failure> {
    if p.is_null() {
        return Ok(Precision::F32);
    }
    string(p, "precision")?
        .parse()
        .map_err(|e| Failure::invalid(format!("precision: {e}")))
}

/// A graph argument: a width and a precision name (NULL: "f32").
pub(crate) fn variant(w: f64, p: *const c_char) -> Result<Variant, Failure> {
    Ok(Variant::new(width(w)?, precision(p)?))
}

/// A list of precisions such as "f32,int8"; NULL means every precision (`None`).
pub(crate) fn precisions(p: *const c_char) -> Result<Option<Vec<Precision>>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    let text = string(p, "precisions")?;
    let mut list = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(Failure::invalid(format!(
                "precisions {text:?}: an empty name; list names such as \"f32,int8\", or pass NULL for every precision"
            )));
        }
        let p: Precision = part
            .parse()
            .map_err(|e| Failure::invalid(format!("precisions {text:?}: {e}")))?;
        if !list.contains(&p) {
            list.push(p);
        }
    }
    Ok(Some(list))
}

/// The NUL-terminated name of `p` (static storage).
pub(crate) fn precision_name(p: Precision) -> *const c_char {
    match p {
        Precision::F32 => c"f32".as_ptr(),
        Precision::F16 => c"f16".as_ptr(),
        Precision::Int8 => c"int8".as_ptr(),
    }
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

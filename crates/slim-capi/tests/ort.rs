//! The C API's ONNX Runtime backend (feature `ort`): the same logits as tract's through
//! the same calls, made to the exported functions themselves (the library's Rust face).
#![cfg(feature = "ort")]

use std::ffi::{CStr, CString};
use std::ptr;

use slim::SlimStatus;
use slim::model::{SlimModel, slim_model_free, slim_model_open, slim_model_run};
use slim_test_utils::model;

fn open(backend: &str, fallback: bool) -> (SlimStatus, *mut SlimModel) {
    let dir = CString::new(model().display().to_string()).unwrap();
    let backend = CString::new(backend).unwrap();
    let mut m = ptr::null_mut();
    let status = unsafe { slim_model_open(dir.as_ptr(), backend.as_ptr(), fallback, 1, &mut m) };
    (status, m)
}

fn logits(m: *const SlimModel, width: f64, input: &[f32], batch: usize) -> Vec<f32> {
    let mut out = vec![0f32; batch * 10];
    let status = unsafe {
        slim_model_run(
            m,
            width,
            input.as_ptr(),
            batch,
            ptr::null_mut(),
            0,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    assert_eq!(status, SlimStatus::Ok, "{:?}", unsafe {
        CStr::from_ptr(slim::error::slim_last_error())
    });
    out
}

#[test]
fn ort_answers_as_tract_through_the_c_api() {
    let (s, tract) = open("tract", false);
    assert_eq!(s, SlimStatus::Ok);
    let (s, ort) = open("ort", false);
    assert_eq!(s, SlimStatus::Ok);
    let batch = 4;
    let input: Vec<f32> = (0..batch * 28 * 28)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    for width in [1.0, 0.25] {
        let (a, b) = (
            logits(tract, width, &input, batch),
            logits(ort, width, &input, batch),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-4,
            "width {width}: tract and ort differ by {worst}"
        );
    }
    unsafe {
        slim_model_free(tract);
        slim_model_free(ort);
    }
}

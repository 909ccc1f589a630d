//! Integration tests of `slim-onnx`, in one test binary so that tract is linked once.
//!
//! - `numerics`: exported graphs run in tract against an independent naive forward pass;
//! - `folder`: the model folder (metadata, manifest, test data, merging, ONNX checker);
//! - `errors`: bad inputs fail with messages naming the file, leaving no stray files;
//! - `kill`: exports killed at random points, and exports into one folder at once;
//! - `ort_reference`: int8 graphs against onnxruntime's `quantize_static` on the same images.

mod common;
mod errors;
mod folder;
mod kill;
mod numerics;
mod ort_reference;

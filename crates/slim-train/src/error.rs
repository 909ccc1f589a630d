//! The crate's error type: slim-core's errors (config, checkpoint files, each naming the
//! file involved) and libtorch's.

/// Everything that can go wrong in `slim-train`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] slim_core::Error),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A width that is not one of the model's trained widths.
    #[error("width {width} is not one of the model's widths {widths:?}")]
    Width { width: f64, widths: Vec<f64> },
}

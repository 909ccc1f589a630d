//! `slim-serve`: an HTTP classification service over slim-runtime that holds an
//! end-to-end latency target by choosing the width, and the load client that soaks it.
//!
//! - [`service`]: the bounded queue, the model workers and admission control; the adaptive
//!   controller sees each request's queue wait plus model time;
//! - [`http`]: hyper and axum, body and time limits, `/classify`, `/stats`, `/metrics`;
//! - [`metrics`]: the Prometheus metrics;
//! - [`load`]: closed-loop clients, a line per second, resident memory from `/metrics`;
//! - [`plot`]: a load run drawn over time;
//! - [`cli`]: the `serve` and `load` subcommands.

pub mod cli;
pub mod http;
pub mod load;
pub mod metrics;
pub mod plot;
pub mod service;

/// What the library's parts fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] slim_runtime::Error),
    /// The load client could not talk to the service.
    #[error("{0}")]
    Client(String),
    /// The timeline could not be drawn or written.
    #[error(transparent)]
    Plot(#[from] slim_bench::Error),
}

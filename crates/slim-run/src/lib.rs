//! `slim-run`: classify images with an exported slimmable model at the most accurate
//! width within a budget of MACs, parameters, latency and accuracy ([`cli`]).

pub mod cli;

//! What the service counts, in the Prometheus text format (`GET /metrics`): the end-to-end
//! latency (arrival to answer), the model call and the queue wait as histograms per width,
//! requests by status, requests refused by reason, width switches, the current width and
//! queue depth, and the process's resident memory.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// Why a request was refused before the model saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The queue held as many requests as it may (503).
    QueueFull,
    /// The body was over the size limit (413).
    TooLarge,
    /// The body did not arrive within the body timeout (408).
    SlowBody,
    /// The image could not be decoded or had the wrong size (400).
    BadImage,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::TooLarge => "too_large",
            Refusal::SlowBody => "slow_body",
            Refusal::BadImage => "bad_image",
        }
    }
}

/// The service's metrics; cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    pub request_seconds: HistogramVec,
    pub model_seconds: HistogramVec,
    pub queue_seconds: Histogram,
    pub responses: IntCounterVec,
    refused: IntCounterVec,
    pub switches: IntCounter,
    pub width: Gauge,
    pub queue_depth: IntGauge,
    resident: IntGauge,
}

/// Latency buckets in seconds: 0.25 ms to 2 s, each sqrt(2) times the last (doubling
/// buckets put 5 and 7.9 ms in one, too coarse to read a p95 against a 10 ms target).
fn buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_25, std::f64::consts::SQRT_2, 27).expect("valid buckets")
}

impl Metrics {
    pub fn new(target_ms: f64) -> Metrics {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets()),
                &["width"],
            )
            .expect("valid histogram")
        };
        let request_seconds = histogram(
            "slim_request_seconds",
            "Time from a classification request's arrival (body read) to its answer, queue wait included, by the width that served it.",
        );
        let model_seconds = histogram(
            "slim_model_seconds",
            "Time of the model call alone, by width.",
        );
        let queue_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "slim_queue_seconds",
                "Time a request waited in the queue for a model worker.",
            )
            .buckets(buckets()),
        )
        .expect("valid histogram");
        let responses = IntCounterVec::new(
            Opts::new(
                "slim_responses_total",
                "Responses by route and HTTP status.",
            ),
            &["route", "status"],
        )
        .expect("valid counter");
        let refused = IntCounterVec::new(
            Opts::new(
                "slim_refused_total",
                "Classification requests refused before the model ran, by reason.",
            ),
            &["reason"],
        )
        .expect("valid counter");
        let switches = IntCounter::new(
            "slim_width_switches_total",
            "Width switches made by the adaptive controller.",
        )
        .expect("valid counter");
        let width =
            Gauge::new("slim_width", "The width that new requests run at.").expect("valid gauge");
        let queue_depth = IntGauge::new(
            "slim_queue_depth",
            "Requests waiting for or in a model worker.",
        )
        .expect("valid gauge");
        let target = Gauge::new(
            "slim_target_seconds",
            "The end-to-end latency target for the controller's quantile.",
        )
        .expect("valid gauge");
        target.set(target_ms / 1e3);
        let resident = IntGauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )
        .expect("valid gauge");
        for c in [
            Box::new(request_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(model_seconds.clone()),
            Box::new(queue_seconds.clone()),
            Box::new(responses.clone()),
            Box::new(refused.clone()),
            Box::new(switches.clone()),
            Box::new(width.clone()),
            Box::new(queue_depth.clone()),
            Box::new(target),
            Box::new(resident.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for r in [
            Refusal::QueueFull,
            Refusal::TooLarge,
            Refusal::SlowBody,
            Refusal::BadImage,
        ] {
            refused.with_label_values(&[r.label()]); // listed at 0 from the start
        }
        Metrics {
            registry,
            request_seconds,
            model_seconds,
            queue_seconds,
            responses,
            refused,
            switches,
            width,
            queue_depth,
            resident,
        }
    }

    pub fn refuse(&self, why: Refusal) {
        self.refused.with_label_values(&[why.label()]).inc();
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        if let Some(bytes) = resident_bytes() {
            self.resident.set(bytes as i64);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The process's resident set size, from `VmRSS` in `/proc/self/status` (Linux); `None`
/// elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The value of the sample `name` (with its labels exactly as written, e.g.
/// `slim_responses_total{route="classify",status="200"}`) in a text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

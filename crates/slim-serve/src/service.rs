//! The classification service behind the HTTP layer. Requests wait in one bounded queue
//! for a model worker thread; a request that finds the queue full is refused at once
//! (admission control) instead of waiting past any target. The adaptive controller is fed
//! each request's time from arrival to answer, the queue wait included, so the width it
//! chooses holds the latency that clients see, not only the model call's.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::{Value, json};
use slim_core::Width;
use slim_runtime::SlimModel;
use slim_runtime::adaptive::Adaptive;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, Refusal};

/// How the service runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Model worker threads (each runs one request at a time).
    pub workers: usize,
    /// Requests that may wait for a worker; one more is refused with 503.
    pub queue: usize,
    /// Classes in each answer.
    pub top_k: usize,
}

/// One classification answered.
#[derive(Debug)]
pub struct Answer {
    pub width: Width,
    pub json: Value,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    /// Refused before the model ran, with the message for the client.
    Refused(Refusal, String),
    /// The model failed on a valid image (a server error).
    Model(String),
}

struct Job {
    body: axum::body::Bytes,
    arrived: Instant,
    reply: oneshot::Sender<Result<Answer, Failure>>,
}

/// The model, its controller and the worker threads; dropping it lets the workers finish
/// the queued requests and stop.
pub struct Service {
    pub model: Arc<SlimModel>,
    pub ctrl: Arc<Adaptive>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    jobs: Option<SyncSender<Job>>,
    depth: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<()>>,
}

impl Service {
    pub fn start(
        model: SlimModel,
        ctrl: Adaptive,
        metrics: Metrics,
        settings: Settings,
    ) -> Service {
        let (model, ctrl, metrics) = (Arc::new(model), Arc::new(ctrl), Arc::new(metrics));
        metrics.width.set(ctrl.width().get());
        let (tx, rx) = sync_channel::<Job>(settings.queue);
        let rx = Arc::new(Mutex::new(rx));
        let depth = Arc::new(AtomicUsize::new(0));
        let workers = (0..settings.workers.max(1))
            .map(|_| {
                let worker = Worker {
                    model: model.clone(),
                    ctrl: ctrl.clone(),
                    metrics: metrics.clone(),
                    depth: depth.clone(),
                    top_k: settings.top_k,
                };
                let rx = rx.clone();
                std::thread::spawn(move || worker.serve(&rx))
            })
            .collect();
        Service {
            model,
            ctrl,
            metrics,
            settings,
            jobs: Some(tx),
            depth,
            workers,
        }
    }

    /// Requests queued or running now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Queues one image (the request body, fully read at `arrived`); the answer comes on
    /// the receiver. A full queue refuses it at once.
    pub fn submit(
        &self,
        body: axum::body::Bytes,
        arrived: Instant,
    ) -> Result<oneshot::Receiver<Result<Answer, Failure>>, Failure> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.jobs.as_ref().expect("the sender lives until drop");
        self.depth.fetch_add(1, Ordering::Relaxed);
        match jobs.try_send(Job {
            body,
            arrived,
            reply,
        }) {
            Ok(()) => {
                self.metrics.queue_depth.set(self.depth() as i64);
                Ok(answer)
            }
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                let msg = match e {
                    TrySendError::Full(_) => format!(
                        "all {} model workers are busy and {} requests wait already; retry later",
                        self.settings.workers, self.settings.queue
                    ),
                    TrySendError::Disconnected(_) => "the service is stopping".to_string(),
                };
                Err(Failure::Refused(Refusal::QueueFull, msg))
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.jobs = None; // workers see the channel close once it is empty
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

struct Worker {
    model: Arc<SlimModel>,
    ctrl: Arc<Adaptive>,
    metrics: Arc<Metrics>,
    depth: Arc<AtomicUsize>,
    top_k: usize,
}

impl Worker {
    fn serve(&self, jobs: &Mutex<Receiver<Job>>) {
        let mut input = Vec::new();
        loop {
            let job = {
                let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
                match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            let result = self.answer(&job, &mut input);
            self.depth.fetch_sub(1, Ordering::Relaxed);
            self.metrics
                .queue_depth
                .set(self.depth.load(Ordering::Relaxed) as i64);
            let _ = job.reply.send(result); // a client that left is not an error here
        }
    }

    fn answer(&self, job: &Job, input: &mut Vec<f32>) -> Result<Answer, Failure> {
        let queued = job.arrived.elapsed();
        self.metrics.queue_seconds.observe(queued.as_secs_f64());
        let m = &self.model;
        input.clear();
        m.preprocess(Path::new("request body"), &job.body, input)
            .map_err(|e| Failure::Refused(Refusal::BadImage, e.to_string()))?;
        let graph = self.ctrl.variant();
        let t = Instant::now();
        let out = m
            .run(graph, input, 1)
            .map_err(|e| Failure::Model(e.to_string()))?;
        let model_s = t.elapsed().as_secs_f64();
        let top: Vec<Value> =
            slim_runtime::top_k(out.logits_row(0), self.top_k, &m.manifest().class_names)
                .into_iter()
                .map(|c| json!({ "class": c.name, "index": c.index, "prob": c.prob }))
                .collect();
        let total_s = job.arrived.elapsed().as_secs_f64();
        if self.ctrl.observe(graph, total_s * 1e3).is_some() {
            self.metrics.switches.inc();
            self.metrics.width.set(self.ctrl.width().get());
        }
        let label = graph.to_string();
        self.metrics
            .request_seconds
            .with_label_values(&[&label])
            .observe(total_s);
        self.metrics
            .model_seconds
            .with_label_values(&[&label])
            .observe(model_s);
        let provider = m
            .engine(graph)
            .map(|e| e.placement().to_string())
            .unwrap_or_default();
        Ok(Answer {
            width: graph.width,
            json: json!({
                "width": graph.width,
                "precision": graph.precision.name(),
                "provider": provider,
                "queue_ms": queued.as_secs_f64() * 1e3,
                "model_ms": model_s * 1e3,
                "total_ms": total_s * 1e3,
                "top": top,
            }),
        })
    }
}

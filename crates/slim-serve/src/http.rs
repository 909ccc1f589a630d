//! The HTTP layer, on hyper (HTTP/1.1 with keep-alive) and axum's router:
//! `POST /classify` (an image body; its top classes and the width that served it as JSON),
//! `GET /stats` (the controller's state as JSON) and `GET /metrics` (Prometheus text).
//! Limits: a body over `max_body` is refused with 413 before it is read, one that does not
//! arrive within `body_timeout` with 408, a full queue with 503 and `Retry-After`; a request
//! head not complete within `header_timeout` gets a 408 and its connection is closed
//! (hyper's header read timeout, which also closes a kept-alive connection left idle that
//! long: that one silently, as no request was begun).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Refusal;
use crate::service::{Failure, Service};

/// What the HTTP layer accepts.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Longest wait for a whole body once its head has arrived.
    pub body_timeout: Duration,
    /// Longest wait for a request head (and for the next one on an idle connection).
    pub header_timeout: Duration,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
}

/// Longest wait for open connections at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

struct App {
    service: Service,
    limits: Limits,
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/classify", post(classify))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .fallback(|req: Request| async move {
            let msg = format!(
                "no route {} {}; try POST /classify, GET /stats or GET /metrics",
                req.method(),
                req.uri().path()
            );
            error(StatusCode::NOT_FOUND, msg)
        })
        .with_state(app)
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

fn count(app: &App, route: &str, status: StatusCode) {
    let status = status.as_u16().to_string();
    app.service
        .metrics
        .responses
        .with_label_values(&[route, &status])
        .inc();
}

async fn classify(State(app): State<Arc<App>>, req: Request) -> Response {
    let response = classify_inner(&app, req).await;
    count(&app, "classify", response.status());
    response
}

async fn classify_inner(app: &App, req: Request) -> Response {
    let max = app.limits.max_body;
    let refuse = |why: Refusal, status: StatusCode, msg: String| {
        app.service.metrics.refuse(why);
        error(status, msg)
    };
    let too_large = || format!("bodies over {max} bytes are refused");
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return refuse(
            Refusal::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large(),
        );
    }
    let body = Limited::new(req.into_body(), max).collect();
    let body = match tokio::time::timeout(app.limits.body_timeout, body).await {
        Err(_) => {
            let msg = format!(
                "the body did not arrive within {} ms",
                app.limits.body_timeout.as_millis()
            );
            return refuse(Refusal::SlowBody, StatusCode::REQUEST_TIMEOUT, msg);
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(
                Refusal::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                too_large(),
            );
        }
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            );
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    let answer = app
        .service
        .submit(body, Instant::now())
        .map(|rx| async move {
            rx.await
                .unwrap_or_else(|_| Err(Failure::Model("a model worker stopped".into())))
        });
    let result = match answer {
        Ok(pending) => pending.await,
        Err(refused) => Err(refused),
    };
    match result {
        Ok(a) => (StatusCode::OK, axum::Json(a.json)).into_response(),
        Err(Failure::Refused(Refusal::QueueFull, msg)) => {
            let mut r = refuse(Refusal::QueueFull, StatusCode::SERVICE_UNAVAILABLE, msg);
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        Err(Failure::Refused(why, msg)) => refuse(why, StatusCode::BAD_REQUEST, msg),
        Err(Failure::Model(msg)) => error(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    let s = &app.service;
    let c = &s.ctrl;
    let switches: Vec<Value> = c
        .switches()
        .iter()
        .map(|s| {
            json!({
                "at_s": s.at.as_secs_f64(),
                "from": s.from.width,
                "from_precision": s.from.precision.name(),
                "to": s.to.width,
                "to_precision": s.to.precision.name(),
                "observed_ms": s.observed_ms,
                "predicted_ms": s.predicted_ms,
            })
        })
        .collect();
    count(&app, "stats", StatusCode::OK);
    axum::Json(json!({
        "width": c.width(),
        "precision": c.variant().precision.name(),
        "target_ms": c.config().target_ms,
        "quantile": c.config().quantile,
        "window_ms": c.observed_ms(),
        "queue_depth": s.depth(),
        "workers": s.settings.workers,
        "queue": s.settings.queue,
        "switches": switches,
    }))
    .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    count(&app, "metrics", StatusCode::OK);
    let text = app.service.metrics.render();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Body::from(text))
        .expect("a valid response")
}

/// Serves `service` on `listener` until `shutdown` completes; then stops accepting, lets
/// open connections finish, and drops the service (its workers finish the queue).
pub async fn serve(
    listener: TcpListener,
    service: Service,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let header_timeout = limits.header_timeout;
    let app = Arc::new(App { service, limits });
    let router = router(app.clone());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            s = listener.accept() => match s {
                Ok(s) => s,
                // e.g. out of file descriptors: wait a little instead of spinning
                Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok((stream, reply)) = Watched::new(stream) else {
            continue; // the connection is already gone
        };
        let begun = stream.begun.clone();
        let service = TowerToHyperService::new(router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        let timeout_body = json!({ "error": format!("the request head did not arrive within {} ms", header_timeout.as_millis()) }).to_string();
        tokio::spawn(async move {
            // A client's broken or timed-out connection ends only itself.
            if let Err(e) = conn.await
                && e.is_timeout()
                && begun.load(Ordering::Relaxed)
            {
                request_timeout(reply, &timeout_body);
            }
            drop(permit);
        });
    }
    drop(listener);
    // Idle connections close now, busy ones after their answer.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    drop(router);
    drop(Arc::into_inner(app));
    Ok(())
}

/// A connection that notes whether a request has begun arriving since the last response
/// was written, so that a head cut off by the header timeout can be told from an idle
/// kept-alive connection.
struct Watched {
    stream: TcpStream,
    begun: Arc<AtomicBool>,
}

impl Watched {
    /// The watched stream and a second handle on the same socket, for a reply after hyper
    /// has given the stream up.
    fn new(stream: TcpStream) -> std::io::Result<(Watched, std::net::TcpStream)> {
        let std = stream.into_std()?;
        let reply = std.try_clone()?;
        let stream = TcpStream::from_std(std)?;
        let begun = Arc::new(AtomicBool::new(false));
        Ok((Watched { stream, begun }, reply))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            me.begun.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        me.begun.store(false, Ordering::Relaxed);
        Pin::new(&mut me.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        me.begun.store(false, Ordering::Relaxed);
        Pin::new(&mut me.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Answers a request whose head timed out with 408, best effort: a small write into an
/// empty send buffer, on a socket that closes when `reply` is dropped.
fn request_timeout(mut reply: std::net::TcpStream, body: &str) {
    let _ = write!(
        reply,
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A service running on its own threads (a tokio runtime for the HTTP layer, the model
/// workers); for tests and embedding.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Binds `addr` (port 0 picks a free one) and serves on `io_threads` runtime threads.
    pub fn start(
        addr: &str,
        service: Service,
        limits: Limits,
        io_threads: usize,
    ) -> std::io::Result<Running> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(io_threads.max(1))
            .enable_all()
            .build()?;
        let listener = rt.block_on(TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(serve(listener, service, limits, async move {
                let _ = stopped.await;
            }))
        });
        Ok(Running {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops accepting, waits for open connections and queued requests.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

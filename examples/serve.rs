//! A small HTTP classification service on `std::net` that holds a p95 latency target
//! with the adaptive controller: `POST /classify` an image (JPEG, PNG, WebP, BMP) and get
//! the top-5 classes as JSON with the width that served it; `GET /stats` shows the width,
//! the window's p95 and every switch. A `load` mode is a client that sends images from
//! several threads and prints a line per second.
//!
//! ```sh
//! cargo run --release -p slim-examples --example serve -- \
//!     serve models/fashion-mnist-resnet20 127.0.0.1:8080 5     # p95 target 5 ms
//! curl --data-binary @shoe.png http://127.0.0.1:8080/classify
//! cargo run --release -p slim-examples --example serve -- \
//!     load 127.0.0.1:8080 shoe.png 20 4                        # 20 s, 4 clients
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use slim_core::stats::percentile;
use slim_runtime::adaptive::{Adaptive, Config};
use slim_runtime::preprocess::MAX_FILE_BYTES;
use slim_runtime::{Backend, SlimModel};

/// Largest request head (request line and headers) read.
const MAX_HEAD: usize = 16 << 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", model, addr, target, rest @ ..] => {
            let threads = rest
                .first()
                .map_or(Ok(4), |t| t.parse())
                .context("THREADS")?;
            serve(
                Path::new(model),
                addr,
                target.parse().context("P95_MS")?,
                threads,
            )
        }
        ["load", addr, image, secs, clients] => load(
            addr,
            Path::new(image),
            secs.parse().context("SECONDS")?,
            clients.parse().context("CLIENTS")?,
        ),
        _ => bail!(
            "usage: serve serve MODEL_DIR ADDR P95_MS [THREADS]\n       serve load ADDR IMAGE SECONDS CLIENTS"
        ),
    }
}

struct Service {
    model: SlimModel,
    ctrl: Adaptive,
}

fn serve(model_dir: &Path, addr: &str, target_ms: f64, threads: usize) -> Result<()> {
    // Calibrated costs (cached in the temporary folder) predict the wider widths'
    // latency for the controller's steps up.
    let cache = std::env::temp_dir().join("slim-serve-calibration.json");
    let model = SlimModel::open(model_dir, Backend::Tract)?.with_calibration_path(cache);
    model.load_all()?; // no request pays for loading
    model.calibrate(1, 30, |_, _| {})?;
    let ctrl = Adaptive::for_model(&model, Config::p95(target_ms), Default::default())?;
    let service = Arc::new(Service { model, ctrl });
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    println!("listening on {addr}, p95 target {target_ms} ms, {threads} threads");
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (listener, service) = (listener.try_clone(), service.clone());
            std::thread::spawn(move || -> Result<()> {
                let listener = listener?;
                loop {
                    let (stream, _) = listener.accept()?;
                    if let Err(e) = handle(&service, stream) {
                        eprintln!("connection: {e:#}");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread")?;
    }
    Ok(())
}

/// Reads one request, answers it, closes the connection.
fn handle(service: &Service, stream: TcpStream) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let (status, body) = match request(&mut reader) {
        Ok((method, path, body)) => route(service, &method, &path, &body),
        Err((status, msg)) => (status, json!({ "error": msg })),
    };
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Content Too Large",
        _ => "Error",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

type Request = (String, String, Vec<u8>);

/// Method, path and body of one request; a status and a message for a bad one.
fn request(reader: &mut impl BufRead) -> Result<Request, (u16, String)> {
    let mut head = Vec::new();
    let mut line = String::new();
    let mut length = None;
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64)
            .read_line(&mut line)
            .map_err(|e| (400, format!("cannot read the request: {e}")))?;
        if n == 0 || !line.ends_with('\n') {
            return Err((400, "truncated or oversized request head".into()));
        }
        let l = line.trim_end().to_string();
        if l.is_empty() {
            break;
        }
        let (key, value) = l.split_once(':').unwrap_or((l.as_str(), ""));
        if key.trim().eq_ignore_ascii_case("content-length") {
            let n = value.trim().parse::<u64>();
            length = Some(n.map_err(|_| (400, "bad Content-Length".to_string()))?);
        }
        head.push(l);
    }
    let first = head.first().ok_or((400, "empty request".to_string()))?;
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut body = Vec::new();
    if method == "POST" {
        let n = length.ok_or((411, "POST needs a Content-Length".to_string()))?;
        if n > MAX_FILE_BYTES {
            return Err((
                413,
                format!("images over {} MiB are refused", MAX_FILE_BYTES >> 20),
            ));
        }
        body.resize(n as usize, 0);
        reader
            .read_exact(&mut body)
            .map_err(|e| (400, format!("body shorter than its Content-Length: {e}")))?;
    }
    Ok((method.to_string(), path.to_string(), body))
}

fn route(service: &Service, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    match (method, path) {
        ("POST", "/classify") => match classify(service, body) {
            Ok(v) => (200, v),
            Err(e) => (400, json!({ "error": format!("{e:#}") })),
        },
        ("GET", "/stats") => {
            let c = &service.ctrl;
            let switches: Vec<Value> = c
                .switches()
                .iter()
                .map(|s| json!({ "at_s": s.at.as_secs_f64(), "from": s.from, "to": s.to, "observed_ms": s.observed_ms }))
                .collect();
            (
                200,
                json!({
                    "width": c.width(),
                    "target_ms": c.config().target_ms,
                    "window_p95_ms": c.observed_ms(),
                    "switches": switches,
                }),
            )
        }
        _ => (
            404,
            json!({ "error": format!("no route {method} {path}; try POST /classify or GET /stats") }),
        ),
    }
}

fn classify(service: &Service, body: &[u8]) -> Result<Value> {
    let m = &service.model;
    let mut input = Vec::new();
    m.preprocess(Path::new("request body"), body, &mut input)?;
    let t = Instant::now();
    let (width, out) = service.ctrl.run(m, &input)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let top: Vec<Value> = slim_runtime::top_k(out.logits_row(0), 5, &m.manifest().class_names)
        .into_iter()
        .map(|c| json!({ "class": c.name, "index": c.index, "prob": c.prob }))
        .collect();
    Ok(json!({
        "width": width,
        "provider": m.engine(width)?.placement().to_string(),
        "model_ms": ms,
        "top": top,
    }))
}

/// Sends `image` from `clients` threads for `secs` seconds; prints per second the
/// requests, their p95 (round trip) and the widths that served them.
fn load(addr: &str, image: &Path, secs: u64, clients: usize) -> Result<()> {
    let bytes = Arc::new(
        std::fs::read(image).with_context(|| format!("{}: cannot be read", image.display()))?,
    );
    let start = Instant::now();
    let threads: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (bytes, addr) = (bytes.clone(), addr.to_string());
            std::thread::spawn(move || -> Result<Vec<(f64, f64, f64)>> {
                let mut log = Vec::new();
                while start.elapsed().as_secs() < secs {
                    let t = Instant::now();
                    let reply = post(&addr, &bytes)?;
                    let width = reply["width"]
                        .as_f64()
                        .with_context(|| format!("no width in {reply}"))?;
                    log.push((
                        start.elapsed().as_secs_f64(),
                        t.elapsed().as_secs_f64() * 1e3,
                        width,
                    ));
                }
                Ok(log)
            })
        })
        .collect();
    let mut log = Vec::new();
    for t in threads {
        log.extend(t.join().expect("client thread")?);
    }
    println!("second  requests  p95 ms  widths");
    for s in 0..secs {
        let reqs: Vec<_> = log.iter().filter(|r| r.0 as u64 == s).collect();
        let ms: Vec<f64> = reqs.iter().map(|r| r.1).collect();
        let Some(p95) = percentile(&ms, 0.95) else {
            continue;
        };
        let mut widths: Vec<f64> = reqs.iter().map(|r| r.2).collect();
        widths.sort_by(|a, b| b.total_cmp(a));
        widths.dedup();
        println!("{s:>6}  {:>8}  {p95:>6.2}  {widths:?}", reqs.len());
    }
    Ok(())
}

fn post(addr: &str, body: &[u8]) -> Result<Value> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    write!(
        s,
        "POST /classify HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let (head, json) = reply
        .split_once("\r\n\r\n")
        .context("reply without a body")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{head}: {json}");
    }
    Ok(serde_json::from_str(json)?)
}

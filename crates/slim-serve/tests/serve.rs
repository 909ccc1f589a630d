//! The service on the committed model over real loopback HTTP: answers equal to the
//! runtime's, metrics that count what happened, a clear status for every bad request
//! (413, 408, 404, 405, 400, 503 with Retry-After), a closed connection for a client that
//! never finishes its head, a controller that steps down when the queue wait (not the model
//! call) breaks the target, and eight closed-loop clients without a failed request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::Value;
use slim_runtime::adaptive::{Adaptive, Config};
use slim_runtime::{Backend, SlimModel};
use slim_serve::http::{Limits, Running};
use slim_serve::metrics::{Metrics, sample};
use slim_serve::service::{Service, Settings};

fn limits() -> Limits {
    Limits {
        max_body: 1 << 20,
        body_timeout: Duration::from_millis(400),
        header_timeout: Duration::from_millis(400),
        max_connections: 64,
    }
}

fn start(target_ms: f64, workers: usize, queue: usize) -> Running {
    let model = SlimModel::open(&slim_test_utils::model(), Backend::Tract).unwrap();
    let ctrl = Adaptive::for_model(&model, Config::p95(target_ms), Default::default()).unwrap();
    let settings = Settings {
        workers,
        queue,
        top_k: 5,
    };
    let service = Service::start(model, ctrl, Metrics::new(target_ms), settings);
    Running::start("127.0.0.1:0", service, limits(), 1).unwrap()
}

fn images(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let pngs = slim_test_utils::fashion_mnist_pngs(dir.path(), n);
    (dir, pngs.into_iter().map(|(p, _)| p).collect())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Status, headers we look at, and the body of `method path` with `body`.
fn call(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Option<String>, String) {
    let url = format!("http://{addr}{path}");
    let a = agent();
    let mut r = match method {
        "GET" => a.get(&url).call().unwrap(),
        _ => a.post(&url).send(body).unwrap(),
    };
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        retry,
        r.body_mut().read_to_string().unwrap(),
    )
}

fn metrics(addr: &str) -> String {
    let (status, _, text) = call(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    text
}

fn value(text: &str, name: &str) -> f64 {
    sample(text, name).unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

/// Writes `parts` with `pause` between them on a raw connection; returns what the server
/// sent before closing (or within 5 s) and how long that took.
fn raw(addr: &str, parts: &[&[u8]], pause: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        if s.write_all(p).is_err() {
            break; // the server closed first
        }
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    (String::from_utf8_lossy(&reply).into_owned(), t.elapsed())
}

/// Eight clients sending `files` to `server` for 3 s.
fn eight_clients(server: &Running, files: &[PathBuf]) -> slim_serve::load::Settings {
    slim_serve::load::Settings {
        addr: server.addr.to_string(),
        images: files.iter().map(|f| std::fs::read(f).unwrap()).collect(),
        seconds: 3,
        clients: 8,
        timeout: Duration::from_secs(10),
    }
}

#[test]
fn answers_as_the_runtime_does_and_metrics_count_each_request() {
    let server = start(1000.0, 2, 8);
    let addr = server.addr.to_string();
    let (_dir, files) = images(3);
    let model = SlimModel::open(&slim_test_utils::model(), Backend::Tract).unwrap();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let (status, _, body) = call(&addr, "POST", "/classify", &bytes);
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["width"].as_f64(), Some(1.0), "{v}");
        let mut input = Vec::new();
        model.preprocess(f, &bytes, &mut input).unwrap();
        let out = model.run(slim_test_utils::width(1.0), &input, 1).unwrap();
        let want = slim_runtime::top_k(out.logits_row(0), 5, &model.manifest().class_names);
        let got = v["top"].as_array().unwrap();
        assert_eq!(got.len(), 5);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["class"].as_str(), Some(w.name.as_str()), "{v}");
            assert!(
                (g["prob"].as_f64().unwrap() - w.prob as f64).abs() < 1e-6,
                "{v}"
            );
        }
        let total = v["total_ms"].as_f64().unwrap();
        assert!(total >= v["model_ms"].as_f64().unwrap(), "{v}");
        assert!(total >= v["queue_ms"].as_f64().unwrap(), "{v}");
    }
    let text = metrics(&addr);
    let ok = r#"slim_responses_total{route="classify",status="200"}"#;
    assert_eq!(value(&text, ok), 3.0);
    assert_eq!(
        value(&text, r#"slim_request_seconds_count{width="1"}"#),
        3.0
    );
    assert_eq!(value(&text, r#"slim_model_seconds_count{width="1"}"#), 3.0);
    assert_eq!(value(&text, "slim_queue_seconds_count"), 3.0);
    assert_eq!(
        value(&text, r#"slim_refused_total{reason="queue_full"}"#),
        0.0
    );
    assert_eq!(value(&text, "slim_width"), 1.0);
    assert_eq!(value(&text, "slim_target_seconds"), 1.0);
    assert!(
        value(&text, "process_resident_memory_bytes") > 1e6,
        "{text}"
    );
    // Every histogram's buckets are cumulative and end at +Inf with the count.
    let inf = value(&text, r#"slim_request_seconds_bucket{width="1",le="+Inf"}"#);
    assert_eq!(inf, 3.0);
    let (status, _, stats) = call(&addr, "GET", "/stats", b"");
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["target_ms"].as_f64(), Some(1000.0), "{stats}");
    assert_eq!(stats["workers"].as_u64(), Some(2), "{stats}");
    assert_eq!(stats["queue_depth"].as_u64(), Some(0), "{stats}");
    server.stop().unwrap();
}

#[test]
fn bad_requests_get_a_clear_status_and_the_service_goes_on() {
    let server = start(1000.0, 1, 8);
    let addr = server.addr.to_string();
    let (status, _, body) = call(&addr, "POST", "/classify", b"not an image");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("request body"), "{body}");
    let (status, _, body) = call(&addr, "GET", "/nope", b"");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no route GET /nope"), "{body}");
    let (status, _, _) = call(&addr, "GET", "/classify", b"");
    assert_eq!(status, 405);
    // Declared too large: refused from the head, before any body byte is read.
    let (reply, _) = raw(
        &addr,
        &[b"POST /classify HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n"],
        Duration::ZERO,
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // Chunked, no length declared: 1 MiB is taken, one byte more is refused.
    let mut chunked =
        b"POST /classify HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..16 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend(std::iter::repeat_n(0u8, 1 << 16));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"1\r\nX\r\n");
    let (reply, _) = raw(&addr, &[&chunked], Duration::ZERO);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // A body that stops arriving: 408 once the body timeout passes.
    let (reply, took) = raw(
        &addr,
        &[
            b"POST /classify HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789",
            b"more",
        ],
        Duration::from_secs(2),
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("did not arrive within 400 ms"), "{reply}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A head that never ends: 408 after the header timeout, and the connection closed.
    let (reply, took) = raw(
        &addr,
        &[b"POST /classify HTTP/1.1\r\nHost: t\r\n", b"X-Slow: 1\r\n"],
        Duration::from_secs(2),
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        reply.contains("head did not arrive within 400 ms"),
        "{reply}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A kept-alive connection left idle is closed without a word.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let mut rest = Vec::new();
    let t = Instant::now();
    let _ = s.read_to_end(&mut rest);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("HTTP/1.1 408"), "{rest}");
    let text = metrics(&addr);
    assert_eq!(
        value(&text, r#"slim_refused_total{reason="bad_image"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"slim_refused_total{reason="too_large"}"#),
        2.0
    );
    assert_eq!(
        value(&text, r#"slim_refused_total{reason="slow_body"}"#),
        1.0
    );
    // Still serving.
    let (_dir, files) = images(1);
    let (status, _, body) = call(
        &addr,
        "POST",
        "/classify",
        &std::fs::read(&files[0]).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_full_queue_refuses_with_503_and_retry_after() {
    let server = start(1000.0, 1, 1);
    let addr = server.addr.to_string();
    let (_dir, files) = images(1);
    let bytes = Arc::new(std::fs::read(&files[0]).unwrap());
    let (mut ok, mut refused) = (0, 0);
    for _round in 0..20 {
        let barrier = Arc::new(Barrier::new(12));
        let clients: Vec<_> = (0..12)
            .map(|_| {
                let (barrier, bytes, addr) = (barrier.clone(), bytes.clone(), addr.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    call(&addr, "POST", "/classify", &bytes)
                })
            })
            .collect();
        for c in clients {
            let (status, retry, body) = c.join().unwrap();
            match status {
                200 => ok += 1,
                503 => {
                    refused += 1;
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert!(body.contains("busy"), "{body}");
                }
                s => panic!("{s}: {body}"),
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0 && ok > 0, "{ok} answered, {refused} refused");
    let text = metrics(&addr);
    assert_eq!(
        value(&text, r#"slim_refused_total{reason="queue_full"}"#),
        refused as f64
    );
    let answered = r#"slim_responses_total{route="classify",status="200"}"#;
    assert_eq!(value(&text, answered), ok as f64);
    assert_eq!(value(&text, "slim_queue_depth"), 0.0);
}

/// One worker, eight clients: the model call alone fits the target at width 1.0, but the
/// wait behind seven others does not, and the controller must see that.
#[test]
fn the_controller_steps_down_when_the_queue_wait_breaks_the_target() {
    let (_dir, files) = images(8);
    let probe = start(1000.0, 1, 16);
    let bytes = std::fs::read(&files[0]).unwrap();
    let mut model_ms = Vec::new();
    for _ in 0..20 {
        let (_, _, body) = call(&probe.addr.to_string(), "POST", "/classify", &bytes);
        let v: Value = serde_json::from_str(&body).unwrap();
        model_ms.push(v["model_ms"].as_f64().unwrap());
    }
    probe.stop().unwrap();
    let target = 2.0 * slim_core::stats::percentile(&model_ms, 0.95).unwrap();
    let server = start(target, 1, 16);
    let settings = eight_clients(&server, &files);
    let report = slim_serve::load::run(&settings, |_| {}).unwrap();
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.switches >= 1, "target {target} ms: {report:?}");
    let text = metrics(&settings.addr);
    assert!(value(&text, "slim_width") < 1.0, "{text}");
}

#[test]
fn eight_clients_load_it_without_a_failed_request() {
    let server = start(1000.0, 2, 64);
    let (_dir, files) = images(8);
    let settings = eight_clients(&server, &files);
    let mut lines = 0;
    let report = slim_serve::load::run(&settings, |_| lines += 1).unwrap();
    assert_eq!(lines, 3);
    assert_eq!(
        (report.failed, report.refused),
        (0, 0),
        "{:?}",
        report.failures
    );
    assert!(report.ok > 0);
    assert_eq!(report.seconds.len(), 3);
    assert!(
        report.seconds.iter().all(|s| s.resident_mib.is_some()),
        "{report:?}"
    );
    assert!(report.resident_peak_mib >= report.resident_start_mib);
    assert!(report.p50_ms <= report.p95_ms && report.p95_ms <= report.p99_ms);
    let text = metrics(&settings.addr);
    let answered = r#"slim_responses_total{route="classify",status="200"}"#;
    assert_eq!(value(&text, answered), report.ok as f64);
    let json = report.to_json();
    assert_eq!(json["seconds"].as_array().unwrap().len(), 3);
}

//! The load client: `clients` threads, each on its own kept-alive connection, send images
//! to `POST /classify` one after another (a closed loop) for a set time, while the main
//! thread scrapes `GET /metrics` once a second for the server's resident memory, width
//! and switches. Every request is timed from send to the last byte of its answer.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slim_core::stats::percentile;

use crate::Error;
use crate::metrics::sample;

/// What to send, where, and for how long.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `host:port` of the service.
    pub addr: String,
    /// Image files' bytes, sent in turn (each client starts at its own offset).
    pub images: Vec<Vec<u8>>,
    pub seconds: u64,
    pub clients: usize,
    /// Longest wait for one answer before the request counts as failed.
    pub timeout: Duration,
}

/// What became of one request.
#[derive(Clone, Debug)]
enum Outcome {
    /// 200, served at this width.
    Ok(f64),
    /// 503: refused by admission control.
    Refused,
    /// Anything else: a status other than 200 and 503, a broken connection, a timeout.
    Failed(String),
}

struct Record {
    /// Seconds since the start, when the answer was complete.
    at: f64,
    ms: f64,
    outcome: Outcome,
}

/// One second of the run.
#[derive(Clone, Debug)]
pub struct Second {
    pub second: u64,
    pub ok: usize,
    pub refused: usize,
    pub failed: usize,
    /// Round-trip p95 of the second's answered requests.
    pub p95_ms: Option<f64>,
    /// Width of each answered request, with its count, widest first.
    pub widths: Vec<(f64, usize)>,
    /// The server's resident memory, scraped at the end of the second.
    pub resident_mib: Option<f64>,
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct Report {
    pub target_ms: f64,
    pub clients: usize,
    pub seconds: Vec<Second>,
    pub ok: usize,
    pub refused: usize,
    pub failed: usize,
    /// Up to 10 distinct failure messages.
    pub failures: Vec<String>,
    /// Round trip of answered requests: p50, p95, p99.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Share of answered requests slower than the target.
    pub over_target: f64,
    /// Seconds whose p95 was over the target.
    pub seconds_over_target: usize,
    pub widths: Vec<(f64, usize)>,
    /// Width switches the server made during the run.
    pub switches: u64,
    /// Resident memory at the first and last scrape, and the most seen, in MiB.
    pub resident_start_mib: f64,
    pub resident_peak_mib: f64,
    pub resident_end_mib: f64,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GETs `path` and returns its body; any status but 200 is an error.
fn get(agent: &ureq::Agent, addr: &str, path: &str) -> Result<String, Error> {
    let url = format!("http://{addr}{path}");
    let fail = |why: String| Error::Client(format!("GET {url}: {why}"));
    let mut r = agent.get(&url).call().map_err(|e| fail(e.to_string()))?;
    let body = r
        .body_mut()
        .read_to_string()
        .map_err(|e| fail(e.to_string()))?;
    if r.status() != 200 {
        return Err(fail(format!("{}: {body}", r.status())));
    }
    Ok(body)
}

/// One scrape of `/metrics`: resident MiB and switches so far.
fn scrape(agent: &ureq::Agent, addr: &str) -> Result<(Option<f64>, Option<f64>), Error> {
    let text = get(agent, addr, "/metrics")?;
    let rss = sample(&text, "process_resident_memory_bytes").map(|b| b / (1 << 20) as f64);
    Ok((rss, sample(&text, "slim_width_switches_total")))
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Outcome {
    let mut r = match agent
        .post(url)
        .header("content-type", "application/octet-stream")
        .send(body)
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let status = r.status().as_u16();
    let text = match r.body_mut().read_to_string() {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(format!("{status}: reading the answer: {e}")),
    };
    match status {
        200 => match serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["width"].as_f64())
        {
            Some(w) => Outcome::Ok(w),
            None => Outcome::Failed(format!("200 without a width: {text}")),
        },
        503 => Outcome::Refused,
        s => Outcome::Failed(format!("{s}: {text}")),
    }
}

fn widths_of<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<(f64, usize)> {
    let mut widths: Vec<(f64, usize)> = Vec::new();
    for r in records {
        if let Outcome::Ok(w) = r.outcome {
            match widths.iter_mut().find(|(x, _)| *x == w) {
                Some((_, n)) => *n += 1,
                None => widths.push((w, 1)),
            }
        }
    }
    widths.sort_by(|a, b| b.0.total_cmp(&a.0));
    widths
}

/// Puts each record in the bucket of the second it completed in, the last bucket taking
/// those after the end.
fn file(by_second: &mut [Vec<Record>], records: impl Iterator<Item = Record>) {
    let last = by_second.len() - 1;
    for r in records {
        by_second[(r.at as usize).min(last)].push(r);
    }
}

/// The second `s` from its own records.
fn second(s: u64, records: &[Record], resident_mib: Option<f64>) -> Second {
    let ms: Vec<f64> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Ok(_)))
        .map(|r| r.ms)
        .collect();
    Second {
        second: s,
        ok: ms.len(),
        refused: records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Refused))
            .count(),
        failed: records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .count(),
        p95_ms: percentile(&ms, 0.95),
        widths: widths_of(records.iter()),
        resident_mib,
    }
}

/// Runs the load; `on_second` sees each second as it ends (from what has arrived by then).
pub fn run(settings: &Settings, mut on_second: impl FnMut(&Second)) -> Result<Report, Error> {
    if settings.images.is_empty() || settings.clients == 0 || settings.seconds == 0 {
        return Err(Error::Client(
            "load needs at least one image, one client and one second".into(),
        ));
    }
    let scraper = agent(settings.timeout);
    let stats: Value = serde_json::from_str(&get(&scraper, &settings.addr, "/stats")?)
        .map_err(|e| Error::Client(format!("GET /stats: not JSON: {e}")))?;
    let target_ms = stats["target_ms"]
        .as_f64()
        .ok_or_else(|| Error::Client(format!("GET /stats: no target_ms in {stats}")))?;
    let (rss0, switches0) = scrape(&scraper, &settings.addr)?;
    let start = Instant::now();
    let end = start + Duration::from_secs(settings.seconds);
    let (tx, rx) = mpsc::channel::<Record>();
    let clients: Vec<_> = (0..settings.clients)
        .map(|c| {
            let (tx, s) = (tx.clone(), settings.clone());
            std::thread::spawn(move || {
                let agent = agent(s.timeout);
                let url = format!("http://{}/classify", s.addr);
                let mut i = c;
                while Instant::now() < end {
                    let t = Instant::now();
                    let outcome = post(&agent, &url, &s.images[i % s.images.len()]);
                    i += 1;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    let at = start.elapsed().as_secs_f64();
                    if tx.send(Record { at, ms, outcome }).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    // Records by the second they completed in; the last bucket holds those answered after
    // the end (requests still in flight when time was up).
    let mut by_second: Vec<Vec<Record>> = (0..=settings.seconds).map(|_| Vec::new()).collect();
    let mut resident = vec![rss0];
    for s in 0..settings.seconds {
        let tick = start + Duration::from_secs(s + 1);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        file(&mut by_second, rx.try_iter());
        let rss = scrape(&scraper, &settings.addr).ok().and_then(|m| m.0);
        resident.push(rss);
        on_second(&second(s, &by_second[s as usize], rss));
    }
    for c in clients {
        c.join()
            .map_err(|_| Error::Client("a client thread panicked".into()))?;
    }
    file(&mut by_second, rx.try_iter());
    let (rss_end, switches1) = scrape(&scraper, &settings.addr)?;
    resident.push(rss_end);
    Ok(report(
        settings,
        target_ms,
        &by_second,
        &resident,
        switches1.unwrap_or(0.0) - switches0.unwrap_or(0.0),
    ))
}

fn report(
    settings: &Settings,
    target_ms: f64,
    by_second: &[Vec<Record>],
    resident: &[Option<f64>],
    switches: f64,
) -> Report {
    let seconds: Vec<Second> = (0..settings.seconds)
        .map(|s| {
            let rss = resident.get(s as usize + 1).copied().flatten();
            second(s, &by_second[s as usize], rss)
        })
        .collect();
    let records = || by_second.iter().flatten();
    let ms: Vec<f64> = records()
        .filter(|r| matches!(r.outcome, Outcome::Ok(_)))
        .map(|r| r.ms)
        .collect();
    let q = |p| percentile(&ms, p).unwrap_or(f64::NAN);
    let mut failures: Vec<String> = Vec::new();
    for r in records() {
        if let Outcome::Failed(m) = &r.outcome
            && failures.len() < 10
            && !failures.contains(m)
        {
            failures.push(m.clone());
        }
    }
    let seen: Vec<f64> = resident.iter().flatten().copied().collect();
    let count = |f: fn(&Outcome) -> bool| records().filter(|r| f(&r.outcome)).count();
    Report {
        target_ms,
        clients: settings.clients,
        ok: ms.len(),
        refused: count(|o| matches!(o, Outcome::Refused)),
        failed: count(|o| matches!(o, Outcome::Failed(_))),
        failures,
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        over_target: ms.iter().filter(|&&m| m > target_ms).count() as f64 / ms.len().max(1) as f64,
        seconds_over_target: seconds
            .iter()
            .filter(|s| s.p95_ms.is_some_and(|p| p > target_ms))
            .count(),
        widths: widths_of(records()),
        switches: switches.max(0.0) as u64,
        resident_start_mib: seen.first().copied().unwrap_or(f64::NAN),
        resident_peak_mib: seen.iter().copied().fold(f64::NAN, f64::max),
        resident_end_mib: seen.last().copied().unwrap_or(f64::NAN),
        seconds,
    }
}

impl Report {
    /// The report as JSON, every second included.
    pub fn to_json(&self) -> Value {
        let seconds: Vec<Value> = self
            .seconds
            .iter()
            .map(|s| {
                json!({
                    "second": s.second, "ok": s.ok, "refused": s.refused, "failed": s.failed,
                    "p95_ms": s.p95_ms, "widths": s.widths, "resident_mib": s.resident_mib,
                })
            })
            .collect();
        json!({
            "target_ms": self.target_ms, "clients": self.clients,
            "ok": self.ok, "refused": self.refused, "failed": self.failed,
            "failures": self.failures,
            "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
            "over_target": self.over_target, "seconds_over_target": self.seconds_over_target,
            "widths": self.widths, "switches": self.switches,
            "resident_mib": { "start": self.resident_start_mib, "peak": self.resident_peak_mib, "end": self.resident_end_mib },
            "seconds": seconds,
        })
    }
}

//! The one [`Progress`] display of the command layer: an indicatif bar when stderr is a
//! terminal, otherwise a line at the start of each phase, every few seconds while it
//! runs (done/total, percent, elapsed, remaining, the job's status) and at its end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use slim_core::Progress;

/// Seconds between two progress lines in a log, unless `SLIM_PROGRESS_SECS` says otherwise.
pub const DEFAULT_LINE_SECS: f64 = 5.0;

/// Draws the progress that libraries report.
pub struct Reporter {
    mode: Mode,
    every: Duration,
    phase: Option<Phase>,
}

enum Mode {
    Bar,
    Lines(Box<dyn Write + Send>),
    Hidden,
}

struct Phase {
    what: String,
    unit: String,
    total: u64,
    /// Units already done when the phase began (a resumed run): the rate leaves them out.
    first: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// A bar on stderr when it is a terminal, else lines on stderr every
    /// `SLIM_PROGRESS_SECS` seconds (default 5).
    pub fn stderr() -> Self {
        if std::io::stderr().is_terminal() {
            return Self::with_mode(Mode::Bar, Duration::ZERO);
        }
        let every = match std::env::var("SLIM_PROGRESS_SECS") {
            Err(_) => DEFAULT_LINE_SECS,
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => s,
                _ => {
                    eprintln!(
                        "warning: SLIM_PROGRESS_SECS={v:?} is not a number of seconds >= 0; \
                         using {DEFAULT_LINE_SECS}"
                    );
                    DEFAULT_LINE_SECS
                }
            },
        };
        Self::lines(Duration::from_secs_f64(every), Box::new(std::io::stderr()))
    }

    /// Plain lines into `out`, at most one per `every` while a phase runs.
    pub fn lines(every: Duration, out: Box<dyn Write + Send>) -> Self {
        Self::with_mode(Mode::Lines(out), every)
    }

    /// Shows nothing but notes (on stderr).
    pub fn hidden() -> Self {
        Self::with_mode(Mode::Hidden, Duration::ZERO)
    }

    fn with_mode(mode: Mode, every: Duration) -> Self {
        Self {
            mode,
            every,
            phase: None,
        }
    }

    fn begin_at(&mut self, what: &str, total: u64, unit: &str, done: u64, now: Instant) {
        self.end();
        let bar = matches!(self.mode, Mode::Bar).then(|| {
            let bar = ProgressBar::new(total).with_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed_precise}}<{{eta_precise}} {{msg}}"
                ))
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            bar.set_position(done);
            bar.reset_eta();
            bar
        });
        let phase = Phase {
            what: what.to_string(),
            unit: unit.to_string(),
            total,
            first: done,
            done,
            started: now,
            last_line: now,
            bar,
        };
        if done > 0 && total > 0 {
            self.write_line(format!(
                "{what}: {total} {unit}, {done} already done, continuing"
            ));
        } else if total > 0 {
            self.write_line(format!("{what}: {total} {unit}"));
        } else {
            self.write_line(format!("{what}: started"));
        }
        self.phase = Some(phase);
    }

    fn update_at(&mut self, done: u64, status: &str, now: Instant) {
        let Some(p) = self.phase.as_mut() else {
            return;
        };
        p.done = done;
        if let Some(bar) = &p.bar {
            bar.set_position(done);
            bar.set_message(status.to_string());
            return;
        }
        if now.duration_since(p.last_line) < self.every {
            return;
        }
        p.last_line = now;
        let line = p.line(status, now);
        self.write_line(line);
    }

    fn end_at(&mut self, now: Instant) {
        let Some(p) = self.phase.take() else {
            return;
        };
        match &p.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.write_line(format!(
                "{}: {}{} {} in {}",
                p.what,
                p.done,
                if p.total > 0 {
                    format!("/{}", p.total)
                } else {
                    String::new()
                },
                p.unit,
                clock(now.duration_since(p.started))
            )),
        }
    }

    fn write_line(&mut self, line: String) {
        if let Mode::Lines(out) = &mut self.mode {
            // A log that cannot be written must not stop the work it describes.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

impl Phase {
    /// `what: done/total unit (pct%), elapsed, remaining | status`.
    fn line(&self, status: &str, now: Instant) -> String {
        let elapsed = now.duration_since(self.started);
        let mut line = format!("{}: {}", self.what, self.done);
        if self.total > 0 {
            let pct = 100.0 * self.done as f64 / self.total as f64;
            line += &format!("/{} {} ({pct:.1}%)", self.total, self.unit);
        } else {
            line += &format!(" {}", self.unit);
        }
        line += &format!(", {} elapsed", clock(elapsed));
        if self.total > 0 {
            let new = self.done.saturating_sub(self.first);
            let left = self.total.saturating_sub(self.done);
            if new > 0 {
                let rest = elapsed.mul_f64(left as f64 / new as f64);
                line += &format!(", {} left", clock(rest));
            } else {
                line += ", time left unknown";
            }
        }
        if !status.is_empty() {
            line += " | ";
            line += status;
        }
        line
    }
}

impl Progress for Reporter {
    fn begin(&mut self, what: &str, total: u64, unit: &str, done: u64) {
        self.begin_at(what, total, unit, done, Instant::now());
    }

    fn update(&mut self, done: u64, status: &str) {
        self.update_at(done, status, Instant::now());
    }

    fn note(&mut self, line: &str) {
        match self.phase.as_ref().and_then(|p| p.bar.as_ref()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn end(&mut self) {
        self.end_at(Instant::now());
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = self.phase.as_ref().and_then(|p| p.bar.as_ref()) {
            bar.finish_and_clear();
        }
    }
}

/// `1h02m03s`, `5m40s`, `12s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(str::to_string).collect()
        }
    }

    #[test]
    fn a_log_gets_a_line_every_interval_with_the_time_left() {
        let log = Log::default();
        let mut r = Reporter::lines(Duration::from_secs(5), Box::new(log.clone()));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        r.begin_at("pretrain", 100, "steps", 0, at(0));
        // One step a second: lines at 5 s and 10 s only.
        for s in 1..=12 {
            r.update_at(s, &format!("loss {s}"), at(s));
        }
        r.end_at(at(12));
        let lines = log.lines();
        assert_eq!(
            lines,
            [
                "pretrain: 100 steps",
                "pretrain: 5/100 steps (5.0%), 5s elapsed, 1m35s left | loss 5",
                "pretrain: 10/100 steps (10.0%), 10s elapsed, 1m30s left | loss 10",
                "pretrain: 12/100 steps in 12s",
            ]
        );
    }

    #[test]
    fn a_resumed_phase_measures_its_rate_from_where_it_began() {
        let log = Log::default();
        let mut r = Reporter::lines(Duration::ZERO, Box::new(log.clone()));
        let t0 = Instant::now();
        r.begin_at("pretrain", 100, "steps", 50, t0);
        r.update_at(50, "", t0);
        r.update_at(60, "", t0 + Duration::from_secs(10));
        let lines = log.lines();
        assert_eq!(lines[0], "pretrain: 100 steps, 50 already done, continuing");
        assert!(lines[1].ends_with("time left unknown"), "{}", lines[1]);
        assert_eq!(
            lines[2],
            "pretrain: 60/100 steps (60.0%), 10s elapsed, 40s left"
        );
    }

    #[test]
    fn an_unknown_total_gives_counts_without_a_percentage() {
        let log = Log::default();
        let mut r = Reporter::lines(Duration::ZERO, Box::new(log.clone()));
        let t0 = Instant::now();
        r.begin_at("scan", 0, "files", 0, t0);
        r.update_at(3, "", t0 + Duration::from_secs(3725));
        r.end_at(t0 + Duration::from_secs(3725));
        assert_eq!(
            log.lines(),
            [
                "scan: started",
                "scan: 3 files, 1h02m05s elapsed",
                "scan: 3 files in 1h02m05s"
            ]
        );
    }

    #[test]
    fn a_new_phase_ends_the_previous_one() {
        let log = Log::default();
        let mut r = Reporter::lines(Duration::from_secs(60), Box::new(log.clone()));
        let t0 = Instant::now();
        r.begin_at("train features", 10, "images", 0, t0);
        r.update_at(10, "", t0);
        r.begin_at("test features", 4, "images", 0, t0);
        r.end_at(t0);
        assert_eq!(
            log.lines(),
            [
                "train features: 10 images",
                "train features: 10/10 images in 0s",
                "test features: 4 images",
                "test features: 0/4 images in 0s",
            ]
        );
    }
}

//! Progress of long work. Libraries report through [`Progress`] and draw nothing; the
//! command layer (`slim-cli`'s `Reporter`) draws it: a bar on a terminal, a line every
//! few seconds in a log.

/// What a long job says about itself while it runs, one phase at a time.
pub trait Progress {
    /// A phase named `what` begins: `total` units (`unit`: "steps", "images"), of which
    /// `done` are already behind it (a resumed run).
    fn begin(&mut self, what: &str, total: u64, unit: &str, done: u64);
    /// `done` of the phase's units are finished; `status` is a short state line (loss,
    /// speed), possibly empty.
    fn update(&mut self, done: u64, status: &str);
    /// A line to show whatever the display (a warning), above any bar.
    fn note(&mut self, line: &str);
    /// The phase is over.
    fn end(&mut self);
}

/// Reports nothing: for tests and callers that want no output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn begin(&mut self, _: &str, _: u64, _: &str, _: u64) {}
    fn update(&mut self, _: u64, _: &str) {}
    fn note(&mut self, _: &str) {}
    fn end(&mut self) {}
}

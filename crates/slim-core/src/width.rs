//! Widths and the one channel rule every part of the toolchain uses.
//!
//! A width `w` in (0, 1] keeps the first `scaled(c, w) = max(1, floor(c * w))` channels of
//! every layer that has `c` channels at full width (SlimCLR's `int(c * w)`). The image
//! channels entering the stem are never sliced. Every weight of a sub-network is the
//! leading block of the full network's weight: `W[..scaled(out), ..scaled(in)]`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A network width in (0, 1]: the fraction of every layer's channels kept.
///
/// Two widths are the same width when they agree to a thousandth (their [`Width::tag`]),
/// so equality, order and hashing follow the tag, never the float's last bits; it shows
/// and serialises as the number it was given (`0.25`). A width read from a file is
/// checked by [`check_list`] where the file is read.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Width(f64);

/// The widths SlimCLR trains by default, widest first.
pub const DEFAULT_WIDTHS: [Width; 4] = [Width(1.0), Width(0.75), Width(0.5), Width(0.25)];

impl Width {
    /// The full network.
    pub const FULL: Width = Width(1.0);

    /// A width in [0.001, 1] (a thousandth is what a [`Width::tag`] tells apart).
    pub fn new(w: f64) -> Result<Width, String> {
        if (0.001..=1.0).contains(&w) {
            Ok(Width(w))
        } else {
            Err(format!("width {w} is outside (0, 1] (or under 0.001)"))
        }
    }

    /// The fraction itself, for arithmetic.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Thousandths: 1000 for 1.0, 250 for 0.25.
    pub fn milli(self) -> u32 {
        (self.0 * 1000.0).round() as u32
    }

    /// A key-safe tag: `w1000` for 1.0, `w250` for 0.25 (thousandths, no dot, so it can
    /// be a path component in tch and a tensor-name component in safetensors).
    pub fn tag(self) -> String {
        format!("w{}", self.milli())
    }

    pub fn is_full(self) -> bool {
        self == Width::FULL
    }
}

impl PartialEq for Width {
    fn eq(&self, other: &Width) -> bool {
        self.milli() == other.milli()
    }
}

impl Eq for Width {}

impl std::hash::Hash for Width {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.milli().hash(state)
    }
}

impl PartialOrd for Width {
    fn partial_cmp(&self, other: &Width) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Narrowest first; sort with `b.cmp(a)` (or [`check_list`]) for widest first.
impl Ord for Width {
    fn cmp(&self, other: &Width) -> std::cmp::Ordering {
        self.milli().cmp(&other.milli())
    }
}

/// As the number (`0.25`, `1.0`), so a list reads `[1.0, 0.5]` in messages.
impl fmt::Debug for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Parses a command-line width, e.g. `0.25`, checked as [`Width::new`].
impl std::str::FromStr for Width {
    type Err = String;
    fn from_str(s: &str) -> Result<Width, String> {
        let w: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number"))?;
        Width::new(w)
    }
}

/// Channels kept at width `w` out of `channels` at full width.
pub fn scaled(channels: usize, w: Width) -> usize {
    // The small epsilon keeps e.g. 0.3 * 10 = 2.9999999999999996 at 3, as `int()` on the
    // decimal value would.
    ((channels as f64 * w.0 + 1e-9).floor() as usize).max(1)
}

/// TF-slim's `make_divisible(v, divisor)` with `min_value` 1, as slimmable_networks'
/// MobileNetV2 (`models/s_mobilenet_v2.py`, `_make_divisible`) rounds channels: `v` to the
/// nearest multiple of `divisor`, at least 1, one multiple more when that falls over 10%
/// short of `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut rounded = (((v + d / 2.0).floor() as usize) / divisor * divisor).max(1);
    if (rounded as f64) < 0.9 * v {
        rounded += divisor;
    }
    rounded
}

/// Checks a list of some widths (a manifest may hold a few): non-empty, every width in
/// [0.001, 1], distinct to a thousandth. Returns the widths sorted widest first.
pub fn check_list(widths: &[Width]) -> Result<Vec<Width>, String> {
    if widths.is_empty() {
        return Err("the width list is empty".into());
    }
    let mut sorted = widths.to_vec();
    for &w in &sorted {
        Width::new(w.0)?;
    }
    sorted.sort_by(|a, b| b.cmp(a));
    if let Some(p) = sorted.windows(2).find(|p| p[0] == p[1]) {
        return Err(format!(
            "widths {widths:?} list {} twice (to a thousandth)",
            p[0]
        ));
    }
    Ok(sorted)
}

/// Checks the widths of a trained network: [`check_list`], and the full width 1.0 among
/// them. Returns the widths sorted widest first.
pub fn validate(widths: &[Width]) -> Result<Vec<Width>, Error> {
    let sorted = check_list(widths).map_err(Error::Config)?;
    if !sorted[0].is_full() {
        return Err(Error::Config(format!(
            "widths {widths:?} do not include the full width 1.0"
        )));
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_rule_matches_int_of_product() {
        let w = |x| Width::new(x).unwrap();
        assert_eq!(scaled(64, w(0.25)), 16);
        assert_eq!(scaled(64, w(0.75)), 48);
        assert_eq!(scaled(3, w(0.75)), 2);
        assert_eq!(scaled(10, w(0.3)), 3);
        assert_eq!(scaled(2, w(0.25)), 1, "never zero channels");
        assert_eq!(scaled(2048, Width::FULL), 2048);
    }

    #[test]
    fn tags_are_distinct_and_dot_free() {
        let w = |x| Width::new(x).unwrap();
        assert_eq!(Width::FULL.tag(), "w1000");
        assert_eq!(w(0.25).tag(), "w250");
        assert!(!w(0.125).tag().contains('.'));
    }

    #[test]
    fn widths_compare_order_and_show_by_their_tag() {
        let w = |x| Width::new(x).unwrap();
        assert_eq!(w(0.3), w(0.1 + 0.2), "same thousandth, different float");
        assert_ne!(w(0.25), w(0.251));
        assert!(w(0.25) < w(0.5) && w(1.0) > w(0.75));
        assert_eq!(w(0.25).to_string(), "0.25");
        assert_eq!(Width::FULL.to_string(), "1");
        assert_eq!(serde_json::to_string(&w(0.25)).unwrap(), "0.25");
        assert_eq!("0.5".parse::<Width>().unwrap(), w(0.5));
        assert!("0".parse::<Width>().unwrap_err().contains("outside"));
        assert!("1.5".parse::<Width>().is_err() && "half".parse::<Width>().is_err());
        let set: std::collections::HashSet<Width> = [w(0.3), w(0.1 + 0.2)].into();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn validate_sorts_and_rejects_bad_lists() {
        // As read from a file: not yet checked.
        let ws = |xs: &[f64]| -> Vec<Width> { xs.iter().map(|&x| Width(x)).collect() };
        assert_eq!(
            validate(&ws(&[0.25, 1.0, 0.5])).unwrap(),
            ws(&[1.0, 0.5, 0.25])
        );
        assert!(validate(&[]).is_err());
        assert!(validate(&ws(&[1.0, 0.0])).is_err());
        assert!(validate(&ws(&[1.0, 1.5])).is_err());
        assert!(validate(&ws(&[0.5, 0.25])).is_err());
        let twice = validate(&ws(&[1.0, 0.5, 0.5])).unwrap_err().to_string();
        assert!(twice.contains("[1.0, 0.5, 0.5] list 0.5 twice"), "{twice}");
    }
}

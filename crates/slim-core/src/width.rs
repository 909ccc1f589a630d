//! Widths and the one channel rule every part of the toolchain uses.
//!
//! A width `w` in (0, 1] keeps the first `scaled(c, w) = max(1, floor(c * w))` channels of
//! every layer that has `c` channels at full width (SlimCLR's `int(c * w)`). The image
//! channels entering the stem are never sliced. Every weight of a sub-network is the
//! leading block of the full network's weight: `W[..scaled(out), ..scaled(in)]`.

use crate::Error;

/// The widths SlimCLR trains by default, widest first.
pub const DEFAULT_WIDTHS: [f64; 4] = [1.0, 0.75, 0.5, 0.25];

/// Channels kept at width `w` out of `channels` at full width.
pub fn scaled(channels: usize, w: f64) -> usize {
    // The small epsilon keeps e.g. 0.3 * 10 = 2.9999999999999996 at 3, as `int()` on the
    // decimal value would.
    ((channels as f64 * w + 1e-9).floor() as usize).max(1)
}

/// A key-safe tag for a width: `w1000` for 1.0, `w250` for 0.25 (thousandths, no dot, so
/// it can be a path component in tch and a tensor-name component in safetensors).
pub fn tag(w: f64) -> String {
    format!("w{}", (w * 1000.0).round() as u32)
}

/// Checks a list of some widths (a manifest may hold a few): non-empty, every width in
/// [0.001, 1] (a thousandth is what a [`tag`] tells apart), distinct to a thousandth.
/// Returns the widths sorted widest first.
pub fn check_list(widths: &[f64]) -> Result<Vec<f64>, String> {
    if widths.is_empty() {
        return Err("the width list is empty".into());
    }
    let mut sorted = widths.to_vec();
    for &w in &sorted {
        if !(0.001..=1.0).contains(&w) {
            return Err(format!("width {w} is outside (0, 1] (or under 0.001)"));
        }
    }
    sorted.sort_by(|a, b| b.total_cmp(a));
    if let Some(p) = sorted.windows(2).find(|p| tag(p[0]) == tag(p[1])) {
        return Err(format!(
            "widths {widths:?} list {} twice (to a thousandth)",
            p[0]
        ));
    }
    Ok(sorted)
}

/// Checks the widths of a trained network: [`check_list`], and the full width 1.0 among
/// them. Returns the widths sorted widest first.
pub fn validate(widths: &[f64]) -> Result<Vec<f64>, Error> {
    let sorted = check_list(widths).map_err(Error::Config)?;
    if (sorted[0] - 1.0).abs() > 1e-9 {
        return Err(Error::Config(format!(
            "widths {widths:?} do not include the full width 1.0"
        )));
    }
    Ok(sorted)
}

/// Finds `w` in `widths` (to a thousandth), or says which widths there are.
pub fn find(widths: &[f64], w: f64) -> Option<usize> {
    widths.iter().position(|&x| tag(x) == tag(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_rule_matches_int_of_product() {
        assert_eq!(scaled(64, 0.25), 16);
        assert_eq!(scaled(64, 0.75), 48);
        assert_eq!(scaled(3, 0.75), 2);
        assert_eq!(scaled(10, 0.3), 3);
        assert_eq!(scaled(2, 0.25), 1, "never zero channels");
        assert_eq!(scaled(2048, 1.0), 2048);
    }

    #[test]
    fn tags_are_distinct_and_dot_free() {
        assert_eq!(tag(1.0), "w1000");
        assert_eq!(tag(0.25), "w250");
        assert!(!tag(0.125).contains('.'));
    }

    #[test]
    fn validate_sorts_and_rejects_bad_lists() {
        assert_eq!(validate(&[0.25, 1.0, 0.5]).unwrap(), vec![1.0, 0.5, 0.25]);
        assert!(validate(&[]).is_err());
        assert!(validate(&[1.0, 0.0]).is_err());
        assert!(validate(&[1.0, 1.5]).is_err());
        assert!(validate(&[0.5, 0.25]).is_err());
        assert!(validate(&[1.0, 0.5, 0.5]).is_err());
    }
}

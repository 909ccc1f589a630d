//! The numeric precisions a width's graph is exported in, and what the manifest records of
//! a graph derived from the float one: how its int8 activation ranges were calibrated, and
//! how far its outputs are from the float graph's.
//!
//! Every precision's graph takes float32 images and gives float32 outputs, so the runtime
//! feeds them all alike; what differs is inside: `f16` computes in half precision, `int8`
//! is a QDQ graph (weights int8 per output channel, symmetric; activations uint8 with a
//! zero point, from ranges calibrated on real images).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::width::Width;

/// A graph's precision. The manifest and the command line spell it `f32`, `f16`, `int8`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Int8];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// A comma-separated list such as `f32,f16,int8`: every name known, none twice, and
    /// `f32` among them (the other precisions are derived from the float graph, which is
    /// always exported). Sorted as [`Precision::ALL`].
    pub fn parse_list(text: &str) -> Result<Vec<Precision>, String> {
        let mut list = Vec::new();
        for part in text.split(',').map(str::trim) {
            let p: Precision = part.parse()?;
            if list.contains(&p) {
                return Err(format!("precision {p} is listed twice in {text:?}"));
            }
            list.push(p);
        }
        if !list.contains(&Precision::F32) {
            return Err(format!(
                "{text:?} lacks f32: the float graph is always exported, the others are derived from it"
            ));
        }
        list.sort();
        Ok(list)
    }
}

/// One graph of a model: a width in a precision, the unit the runtime chooses among.
/// Ordered as the runtime ranks them when nothing measured says otherwise: wider first,
/// then `f32`, `f16`, `int8` (more bits first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub width: Width,
    pub precision: Precision,
}

impl Variant {
    pub fn new(width: Width, precision: Precision) -> Variant {
        Variant { width, precision }
    }

    /// `width`'s float graph.
    pub fn f32(width: Width) -> Variant {
        Variant::new(width, Precision::F32)
    }
}

impl From<Width> for Variant {
    fn from(width: Width) -> Variant {
        Variant::f32(width)
    }
}

impl Ord for Variant {
    /// Most accurate first by default: wider, then more bits.
    fn cmp(&self, other: &Variant) -> std::cmp::Ordering {
        (other.width.cmp(&self.width)).then(self.precision.cmp(&other.precision))
    }
}

impl PartialOrd for Variant {
    fn partial_cmp(&self, other: &Variant) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `0.5` for a float graph, `0.5/int8` for another precision.
impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.precision {
            Precision::F32 => write!(f, "{}", self.width),
            p => write!(f, "{}/{p}", self.width),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Precision, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision {s:?}: one of f32, f16, int8"))
    }
}

/// How activation ranges are taken from the calibration images' values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum RangeMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// The values cut at `(100 - percentile) / 2` percent on each side, from a histogram
    /// of 2048 bins over the seen range (as onnxruntime's percentile calibrator does).
    Percentile { percentile: f64 },
}

impl RangeMethod {
    /// Images the method needs at least: one for min-max; for a percentile, enough that
    /// the cut tail is not the outliers of a handful of images.
    pub fn min_images(&self) -> usize {
        match self {
            RangeMethod::MinMax => 1,
            RangeMethod::Percentile { .. } => 32,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RangeMethod::MinMax => "min-max".into(),
            RangeMethod::Percentile { percentile } => format!("percentile {percentile}"),
        }
    }
}

/// The images an int8 graph's activation ranges were calibrated on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    #[serde(flatten)]
    pub method: RangeMethod,
    /// The `--calibration-data` path as given, and what it was read as.
    pub data: String,
    pub description: String,
    pub images: usize,
    /// Images that did not decode and were skipped.
    pub skipped: usize,
}

/// How far a derived graph's outputs are from the float graph's, measured at export on
/// the calibration images (or on the reference images when there are none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub images: usize,
    /// Share of images whose top-1 class is the float graph's.
    pub top1_agreement: f64,
    /// `||logits - float logits|| / ||float logits||` over all images.
    pub logits_rel_error: f64,
    /// The same for the embedding.
    pub embedding_rel_error: f64,
    /// The bound on `logits_rel_error` the export was held to.
    pub tolerance: f64,
}

/// What the manifest records of a graph derived from its width's float graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// For int8: its activation ranges' images and method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    pub agreement: Agreement,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checked_by_name_and_need_the_float_graph() {
        assert_eq!(
            Precision::parse_list("int8, f32").unwrap(),
            [Precision::F32, Precision::Int8]
        );
        for (text, want) in [
            (
                "f32,int4",
                "unknown precision \"int4\": one of f32, f16, int8",
            ),
            ("f32,f16,f16", "precision f16 is listed twice"),
            ("int8", "lacks f32"),
            ("", "unknown precision \"\""),
        ] {
            let e = Precision::parse_list(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let p: Precision = serde_json::from_str("\"int8\"").unwrap();
        assert_eq!(p, Precision::Int8);
        let e = serde_json::from_str::<Precision>("\"bf16\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `bf16`"), "{e}");
    }

    #[test]
    fn range_methods_round_trip_as_the_manifest_spells_them() {
        let m = RangeMethod::Percentile { percentile: 99.99 };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"method":"percentile","percentile":99.99}"#);
        assert_eq!(serde_json::from_str::<RangeMethod>(&text).unwrap(), m);
        assert_eq!(
            serde_json::to_string(&RangeMethod::MinMax).unwrap(),
            r#"{"method":"min-max"}"#
        );
    }
}

//! The width cascade's description, as the runtime runs it and the manifest stores it:
//! stages narrowest first, each with the confidence at or over which its answer is kept.

use serde::{Deserialize, Serialize};

use crate::width::Width;

/// How sure a prediction is, from its logits' softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// The most probable class's probability.
    MaxProb,
    /// The top probability minus the second.
    Margin,
}

impl Confidence {
    /// Parses `max-prob` or `margin`.
    pub fn parse(s: &str) -> Result<Confidence, String> {
        match s {
            "max-prob" => Ok(Confidence::MaxProb),
            "margin" => Ok(Confidence::Margin),
            _ => Err(format!("cascade confidence {s:?}: use max-prob or margin")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Confidence::MaxProb => "max-prob",
            Confidence::Margin => "margin",
        }
    }
}

/// One stage: its width and the confidence at or over which its answer is kept.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub width: Width,
    pub threshold: f64,
}

/// The stages, narrowest first; the last keeps every answer it gets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cascade {
    confidence: Confidence,
    stages: Vec<Stage>,
}

impl Cascade {
    /// Checks `stages`: at least one, widths strictly increasing, every threshold in
    /// [0, 1] (the last stage's is not used).
    pub fn new(confidence: Confidence, stages: Vec<Stage>) -> Result<Cascade, String> {
        let c = Cascade { confidence, stages };
        c.check()?;
        Ok(c)
    }

    /// Every width of `widths` (any order) as a stage, narrowest first, all with
    /// `threshold`.
    pub fn shared(
        confidence: Confidence,
        widths: &[Width],
        threshold: f64,
    ) -> Result<Cascade, String> {
        let mut widths = widths.to_vec();
        widths.sort();
        let stages = widths
            .into_iter()
            .map(|width| Stage { width, threshold })
            .collect();
        Cascade::new(confidence, stages)
    }

    /// What [`Cascade::new`] checks, for a cascade read from a file.
    pub fn check(&self) -> Result<(), String> {
        if self.stages.is_empty() {
            return Err("cascade: needs at least one stage".into());
        }
        if let Some(s) = self
            .stages
            .iter()
            .find(|s| !(0.0..=1.0).contains(&s.threshold))
        {
            return Err(format!(
                "cascade: threshold {} of width {} is outside [0, 1]",
                s.threshold, s.width
            ));
        }
        if let Some(p) = self.stages.windows(2).find(|p| p[0].width >= p[1].width) {
            return Err(format!(
                "cascade: widths must grow from stage to stage, but {} comes before {}",
                p[0].width, p[1].width
            ));
        }
        Ok(())
    }

    pub fn confidence(&self) -> Confidence {
        self.confidence
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// `confidence: width>=threshold, ...`, e.g. `max-prob: 0.25>=0.9, 0.5>=0.9, 1`.
    pub fn describe(&self) -> String {
        let last = self.stages.len() - 1;
        let stages: Vec<String> = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| match i == last {
                true => s.width.to_string(),
                false => format!("{}>={}", s.width, s.threshold),
            })
            .collect();
        format!("{}: {}", self.confidence.name(), stages.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(x: f64) -> Width {
        Width::new(x).unwrap()
    }

    #[test]
    fn bad_stages_are_refused_by_name() {
        let stage = |width, threshold| Stage {
            width: w(width),
            threshold,
        };
        let c = |stages| Cascade::new(Confidence::MaxProb, stages).map(drop);
        let err = |stages| c(stages).unwrap_err();
        assert!(err(vec![]).contains("at least one stage"));
        assert!(err(vec![stage(0.25, 1.5), stage(1.0, 0.0)]).contains("1.5 of width 0.25"));
        assert!(err(vec![stage(0.25, -0.1)]).contains("outside [0, 1]"));
        assert!(err(vec![stage(0.25, f64::NAN)]).contains("outside [0, 1]"));
        assert!(err(vec![stage(0.5, 0.9), stage(0.25, 0.0)]).contains("0.5 comes before 0.25"));
        c(vec![stage(0.25, 0.0), stage(0.5, 1.0), stage(1.0, 0.3)]).unwrap();
    }

    #[test]
    fn a_shared_threshold_orders_the_widths_and_round_trips_through_json() {
        let c = Cascade::shared(Confidence::Margin, &[w(1.0), w(0.25), w(0.5)], 0.8).unwrap();
        let widths: Vec<f64> = c.stages().iter().map(|s| s.width.get()).collect();
        assert_eq!(widths, [0.25, 0.5, 1.0]);
        assert_eq!(c.describe(), "margin: 0.25>=0.8, 0.5>=0.8, 1");
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"margin\""), "{json}");
        assert_eq!(serde_json::from_str::<Cascade>(&json).unwrap(), c);
        assert!(Cascade::shared(Confidence::MaxProb, &[w(1.0)], 2.0).is_err());
        assert_eq!(Confidence::parse("margin").unwrap(), Confidence::Margin);
        assert!(
            Confidence::parse("entropy")
                .unwrap_err()
                .contains("max-prob or margin")
        );
    }
}

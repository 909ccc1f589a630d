//! The width cascade (anytime inference): every image runs at the narrowest width first
//! and goes on to the next wider width only while its prediction's confidence is under
//! that stage's threshold, so easy images cost the narrow width and hard ones the wide.
//! Confidence is the top softmax probability or the margin between the top two.

use slim_core::Width;

use crate::{Error, SlimModel};

/// How sure a prediction is, from its logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidence {
    /// The most probable class's softmax probability.
    MaxProb,
    /// The top softmax probability minus the second.
    Margin,
}

impl Confidence {
    /// Parses `max-prob` or `margin`.
    pub fn parse(s: &str) -> Result<Confidence, Error> {
        match s {
            "max-prob" => Ok(Confidence::MaxProb),
            "margin" => Ok(Confidence::Margin),
            _ => Err(Error::Invalid(format!(
                "cascade confidence {s:?}: use max-prob or margin"
            ))),
        }
    }

    /// The confidence of one image's `logits`, in [0, 1], from the same softmax as
    /// [`crate::top_k`].
    pub fn of(self, logits: &[f32]) -> f32 {
        let top = crate::top_k(logits, 2, &[]);
        let prob = |i: usize| top.get(i).map_or(0.0, |c| c.prob);
        match self {
            Confidence::MaxProb => prob(0),
            Confidence::Margin => prob(0) - prob(1),
        }
    }
}

/// One stage: its width and the confidence at or over which its answer is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    pub width: Width,
    pub threshold: f64,
}

/// The stages, narrowest first; the last keeps every answer it gets.
#[derive(Clone, Debug, PartialEq)]
pub struct Cascade {
    confidence: Confidence,
    stages: Vec<Stage>,
}

impl Cascade {
    /// Checks `stages`: at least one, widths strictly increasing, every threshold in
    /// [0, 1] (the last stage's is not used).
    pub fn new(confidence: Confidence, stages: Vec<Stage>) -> Result<Cascade, Error> {
        let bad = |msg: String| Err(Error::Invalid(format!("cascade: {msg}")));
        if stages.is_empty() {
            return bad("needs at least one stage".into());
        }
        if let Some(s) = stages.iter().find(|s| !(0.0..=1.0).contains(&s.threshold)) {
            return bad(format!(
                "threshold {} of width {} is outside [0, 1]",
                s.threshold, s.width
            ));
        }
        if let Some(p) = stages.windows(2).find(|p| p[0].width >= p[1].width) {
            return bad(format!(
                "widths must grow from stage to stage, but {} comes before {}",
                p[0].width, p[1].width
            ));
        }
        Ok(Cascade { confidence, stages })
    }

    pub fn confidence(&self) -> Confidence {
        self.confidence
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }
}

/// One image's answer from a cascade.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The width that answered.
    pub width: Width,
    /// Its stage (0: the narrowest).
    pub stage: usize,
    /// The confidence of the answer.
    pub confidence: f32,
    /// The answering width's logits.
    pub logits: Vec<f32>,
}

impl SlimModel {
    /// Runs the batch `inputs` through `cascade`: all images at the first stage, then only
    /// those still under their stage's threshold at the next, in one batch per stage.
    /// Returns one answer per image, in order.
    pub fn cascade(&self, cascade: &Cascade, inputs: &[f32]) -> Result<Vec<Answer>, Error> {
        let n = self.batch_of(inputs)?;
        let len = self.image_len();
        let mut answers: Vec<Option<Answer>> = vec![None; n];
        let mut pending: Vec<usize> = (0..n).collect();
        let last = cascade.stages.len() - 1;
        for (stage, s) in cascade.stages.iter().enumerate() {
            let batch: Vec<f32> = pending
                .iter()
                .flat_map(|&i| &inputs[i * len..(i + 1) * len])
                .copied()
                .collect();
            let out = self.run(s.width, &batch, pending.len())?;
            let mut still = Vec::new();
            for (row, &i) in pending.iter().enumerate() {
                let logits = out.logits_row(row);
                let confidence = cascade.confidence.of(logits);
                if stage == last || f64::from(confidence) >= s.threshold {
                    answers[i] = Some(Answer {
                        width: s.width,
                        stage,
                        confidence,
                        logits: logits.to_vec(),
                    });
                } else {
                    still.push(i);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("the last stage answers all"))
            .collect())
    }
}

/// One width's outputs on a held-out set, for [`calibrate`].
pub struct Held {
    pub width: Width,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// Logits per image, in the set's order.
    pub logits: Vec<Vec<f32>>,
}

/// A calibrated cascade and what it reached on the held-out set.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibrated {
    pub cascade: Cascade,
    pub top1: f64,
    /// Mean multiply-accumulates per image, every stage an image ran counted.
    pub mean_macs: f64,
    /// Images answered per stage.
    pub answered: Vec<usize>,
}

/// The cascade over `held` (narrowest first) with the least mean MACs whose top-1 on
/// `labels` is at least `min_top1`. One threshold is shared by every stage, searched
/// over [0, 1] in steps of 0.001; an error names the best top-1 any threshold reaches
/// when none reaches `min_top1`.
pub fn calibrate(
    held: &[Held],
    labels: &[usize],
    confidence: Confidence,
    min_top1: f64,
) -> Result<Calibrated, Error> {
    let bad = |msg: String| Err(Error::Invalid(format!("cascade calibration: {msg}")));
    if held.is_empty() || labels.is_empty() {
        return bad("needs at least one width and one labelled image".into());
    }
    if let Some(h) = held.iter().find(|h| h.logits.len() != labels.len()) {
        return bad(format!(
            "width {} has {} outputs for {} labels",
            h.width,
            h.logits.len(),
            labels.len()
        ));
    }
    if !(0.0..=1.0).contains(&min_top1) {
        return bad(format!("target top-1 {min_top1} is outside [0, 1]"));
    }
    let conf: Vec<Vec<f32>> = held
        .iter()
        .map(|h| h.logits.iter().map(|l| confidence.of(l)).collect())
        .collect();
    let right: Vec<Vec<bool>> = held
        .iter()
        .map(|h| {
            h.logits
                .iter()
                .zip(labels)
                .map(|(l, &y)| {
                    crate::top_k(l, 1, &[])
                        .first()
                        .is_some_and(|c| c.index == y)
                })
                .collect()
        })
        .collect();
    let last = held.len() - 1;
    let n = labels.len();
    let judge = |t: f64| {
        let (mut hits, mut macs, mut answered) = (0usize, 0u64, vec![0usize; held.len()]);
        for i in 0..n {
            let stop = (0..=last)
                .find(|&s| s == last || f64::from(conf[s][i]) >= t)
                .expect("the last stage stops");
            hits += usize::from(right[stop][i]);
            macs += held[..=stop].iter().map(|h| h.macs).sum::<u64>();
            answered[stop] += 1;
        }
        (hits as f64 / n as f64, macs as f64 / n as f64, answered)
    };
    let mut best: Option<(f64, f64, f64, Vec<usize>)> = None;
    let mut best_top1 = 0f64;
    for step in 0..=1000 {
        let t = step as f64 / 1000.0;
        let (top1, mean_macs, answered) = judge(t);
        best_top1 = best_top1.max(top1);
        if top1 >= min_top1 && best.as_ref().is_none_or(|b| mean_macs < b.2) {
            best = Some((t, top1, mean_macs, answered));
        }
    }
    let Some((t, top1, mean_macs, answered)) = best else {
        return bad(format!(
            "no threshold reaches top-1 {:.2}%; the best is {:.2}%",
            min_top1 * 100.0,
            best_top1 * 100.0
        ));
    };
    let stages = held
        .iter()
        .map(|h| Stage {
            width: h.width,
            threshold: t,
        })
        .collect();
    Ok(Calibrated {
        cascade: Cascade::new(confidence, stages)?,
        top1,
        mean_macs,
        answered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(x: f64) -> Width {
        Width::new(x).unwrap()
    }

    #[test]
    fn confidence_is_the_softmax_top_or_its_margin() {
        let logits = [1.0f32, 3.0, 2.0];
        let e = [1f64.exp(), 3f64.exp(), 2f64.exp()];
        let sum: f64 = e.iter().sum();
        let top = Confidence::MaxProb.of(&logits) as f64;
        let margin = Confidence::Margin.of(&logits) as f64;
        assert!((top - e[1] / sum).abs() < 1e-6, "{top}");
        assert!((margin - (e[1] - e[2]) / sum).abs() < 1e-6, "{margin}");
        assert_eq!(
            Confidence::Margin.of(&[5.0, 5.0]),
            0.0,
            "a tie has no margin"
        );
        assert!((Confidence::MaxProb.of(&[1000.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(Confidence::parse("margin").unwrap(), Confidence::Margin);
        assert!(Confidence::parse("entropy").is_err());
    }

    #[test]
    fn calibration_takes_the_cheapest_threshold_that_reaches_the_target() {
        // Two widths, four images of classes 0/1. The narrow width is sure and right on
        // images 0 and 1, unsure and wrong on 2 and 3; the wide one is right on all.
        let sure = |c: usize| {
            if c == 0 {
                vec![4.0, 0.0]
            } else {
                vec![0.0, 4.0]
            }
        };
        let unsure = |c: usize| {
            if c == 0 {
                vec![0.0, 0.1]
            } else {
                vec![0.1, 0.0]
            }
        };
        let labels = [0, 1, 0, 1];
        let held = [
            Held {
                width: w(0.25),
                macs: 10,
                logits: vec![sure(0), sure(1), unsure(0), unsure(1)],
            },
            Held {
                width: w(1.0),
                macs: 100,
                logits: labels.iter().map(|&c| sure(c)).collect(),
            },
        ];
        let c = calibrate(&held, &labels, Confidence::MaxProb, 1.0).unwrap();
        // Images 2 and 3 go on (confidence 0.525 < t), 0 and 1 stop (0.982 >= t): the
        // cheapest threshold that does so is the first step above 0.525.
        assert_eq!(c.top1, 1.0);
        assert_eq!(c.answered, vec![2, 2]);
        assert_eq!(c.mean_macs, (2.0 * 10.0 + 2.0 * 110.0) / 4.0);
        assert_eq!(c.cascade.stages()[0].threshold, 0.525);
        // Half right is reached by the narrow width alone, at its cost.
        let c = calibrate(&held, &labels, Confidence::MaxProb, 0.5).unwrap();
        assert_eq!((c.answered.clone(), c.mean_macs), (vec![4, 0], 10.0));
        // Unreachable targets and mismatched inputs are refused by name.
        let wrong = [Held {
            width: w(0.25),
            macs: 10,
            logits: held[0].logits.clone(),
        }];
        let e = calibrate(&wrong, &labels, Confidence::MaxProb, 0.9).unwrap_err();
        assert!(e.to_string().contains("the best is 50.00%"), "{e}");
        let e = calibrate(&held, &labels[..3], Confidence::MaxProb, 0.5).unwrap_err();
        assert!(e.to_string().contains("4 outputs for 3 labels"), "{e}");
    }

    #[test]
    fn bad_stages_are_refused_by_name() {
        let stage = |width, threshold| Stage {
            width: w(width),
            threshold,
        };
        let c = |stages| Cascade::new(Confidence::MaxProb, stages).map(drop);
        let err = |stages| c(stages).unwrap_err().to_string();
        assert!(err(vec![]).contains("at least one stage"));
        assert!(err(vec![stage(0.25, 1.5), stage(1.0, 0.0)]).contains("1.5 of width 0.25"));
        assert!(err(vec![stage(0.25, -0.1)]).contains("outside [0, 1]"));
        assert!(err(vec![stage(0.25, f64::NAN)]).contains("outside [0, 1]"));
        assert!(err(vec![stage(0.5, 0.9), stage(0.25, 0.0)]).contains("0.5 comes before 0.25"));
        c(vec![stage(0.25, 0.0), stage(0.5, 1.0), stage(1.0, 0.3)]).unwrap();
    }
}

//! The width cascade (anytime inference): every image runs at the narrowest width first
//! and goes on to the next wider width only while its prediction's confidence is under
//! that stage's threshold, so easy images cost the narrow width and hard ones the wide.
//! Confidence is the top softmax probability or the margin between the top two. A
//! [`Sweep`] judges any threshold on every width's held-out outputs and calibrates the
//! cheapest cascade (its widths and threshold) that reaches a target top-1.

use slim_core::Width;
pub use slim_core::cascade::{Cascade, Confidence, Stage};

use crate::{Error, SlimModel};

/// The confidence of one image's `logits` in [0, 1], from the same softmax as
/// [`crate::top_k`].
pub fn confidence_of(confidence: Confidence, logits: &[f32]) -> f32 {
    let top = crate::top_k(logits, 2, &[]);
    let prob = |i: usize| top.get(i).map_or(0.0, |c| c.prob);
    match confidence {
        Confidence::MaxProb => prob(0),
        Confidence::Margin => prob(0) - prob(1),
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
    /// The cascade to run: with `over`, every width narrowest first, all at its threshold
    /// with its confidence; without, the one `slim-bench --cascade --write-manifest`
    /// calibrated into the manifest.
    pub fn cascade_with(&self, over: Option<(Confidence, f64)>) -> Result<Cascade, Error> {
        match over {
            Some((confidence, threshold)) => {
                Cascade::shared(confidence, &self.widths(), threshold).map_err(Error::Invalid)
            }
            None => self
                .manifest()
                .cascade
                .as_ref()
                .map(|c| c.cascade.clone())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: the manifest has no calibrated cascade (slim-bench --cascade \
                         --write-manifest stores one), and no threshold was given",
                        self.dir().join(slim_core::manifest::FILE_NAME).display()
                    ))
                }),
        }
    }

    /// Runs the batch `inputs` through `cascade`: all images at the first stage, then only
    /// those still under their stage's threshold at the next, in one batch per stage.
    /// Returns one answer per image, in order.
    pub fn cascade(&self, cascade: &Cascade, inputs: &[f32]) -> Result<Vec<Answer>, Error> {
        let n = self.batch_of(inputs)?;
        let len = self.image_len();
        let mut answers: Vec<Option<Answer>> = vec![None; n];
        let mut pending: Vec<usize> = (0..n).collect();
        let last = cascade.stages().len() - 1;
        for (stage, s) in cascade.stages().iter().enumerate() {
            let batch: Vec<f32> = pending
                .iter()
                .flat_map(|&i| &inputs[i * len..(i + 1) * len])
                .copied()
                .collect();
            let out = self.run(s.width, &batch, pending.len())?;
            let mut still = Vec::new();
            for (row, &i) in pending.iter().enumerate() {
                let logits = out.logits_row(row);
                let confidence = confidence_of(cascade.confidence(), logits);
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

/// One width's outputs on a labelled set, for a [`Sweep`].
pub struct Held {
    pub width: Width,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// Logits per image, in the set's order.
    pub logits: Vec<Vec<f32>>,
}

/// What a cascade reaches on a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    /// Its stages' widths, narrowest first.
    pub widths: Vec<Width>,
    /// The first stage's threshold (a calibrated cascade's, shared by every stage).
    pub threshold: f64,
    pub top1: f64,
    /// Mean multiply-accumulates per image, every stage an image ran counted.
    pub mean_macs: f64,
    /// Images answered per stage.
    pub answered: Vec<usize>,
}

/// Every width's outputs on a labelled set, narrowest first, ready to judge any shared
/// threshold without running a graph again.
pub struct Sweep<'a> {
    held: &'a [Held],
    confidence: Confidence,
    /// Per width, per image: the confidence and whether the top class is the label.
    judged: Vec<Vec<(f32, bool)>>,
}

impl<'a> Sweep<'a> {
    /// Checks that every width of `held` has one output per label.
    pub fn new(held: &'a [Held], labels: &[usize], confidence: Confidence) -> Result<Self, Error> {
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
        if let Some(p) = held.windows(2).find(|p| p[0].width >= p[1].width) {
            return bad(format!(
                "widths must come narrowest first, but {} comes before {}",
                p[0].width, p[1].width
            ));
        }
        let judged = held
            .iter()
            .map(|h| {
                h.logits
                    .iter()
                    .zip(labels)
                    .map(|(l, &y)| {
                        let right = crate::top_k(l, 1, &[])
                            .first()
                            .is_some_and(|c| c.index == y);
                        (confidence_of(confidence, l), right)
                    })
                    .collect()
            })
            .collect();
        Ok(Sweep {
            held,
            confidence,
            judged,
        })
    }

    /// What `cascade` reaches; every width of it must be held.
    pub fn judge(&self, cascade: &Cascade) -> Result<Reached, Error> {
        let chain = cascade
            .stages()
            .iter()
            .map(|s| {
                let h = self.held.iter().position(|h| h.width == s.width);
                h.map(|h| (h, s.threshold)).ok_or_else(|| {
                    Error::Invalid(format!("cascade: width {} is not held", s.width))
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(self.chain_at(&chain))
    }

    /// What the cascade of the stages `chain` (an index into the held widths, growing,
    /// and its threshold) reaches.
    fn chain_at(&self, chain: &[(usize, f64)]) -> Reached {
        let last = chain.len() - 1;
        let n = self.judged[0].len();
        let (mut hits, mut macs, mut answered) = (0usize, 0u64, vec![0usize; chain.len()]);
        let cost: Vec<u64> = chain
            .iter()
            .scan(0, |sum, &(h, _)| {
                *sum += self.held[h].macs;
                Some(*sum)
            })
            .collect();
        for i in 0..n {
            let stop = (0..=last)
                .find(|&s| {
                    let (h, t) = chain[s];
                    s == last || f64::from(self.judged[h][i].0) >= t
                })
                .expect("the last stage stops");
            hits += usize::from(self.judged[chain[stop].0][i].1);
            macs += cost[stop];
            answered[stop] += 1;
        }
        Reached {
            widths: chain.iter().map(|&(h, _)| self.held[h].width).collect(),
            threshold: chain[0].1,
            top1: hits as f64 / n as f64,
            mean_macs: macs as f64 / n as f64,
            answered,
        }
    }

    /// The cascade with the least mean MACs whose top-1 is at least `min_top1`: over
    /// every chain of the held widths that ends at the widest (so with 4 widths, 8
    /// chains: all four, 0.25 then 1.0, ..., 1.0 alone) and every shared threshold in
    /// [0, 1] in steps of 0.001. An error names the best top-1 any of them reaches when
    /// none reaches `min_top1`.
    pub fn calibrate(&self, min_top1: f64) -> Result<(Cascade, Reached), Error> {
        if !(0.0..=1.0).contains(&min_top1) {
            return Err(Error::Invalid(format!(
                "cascade calibration: target top-1 {min_top1} is outside [0, 1]"
            )));
        }
        let widest = self.held.len() - 1;
        let mut best: Option<Reached> = None;
        let mut best_top1 = 0f64;
        for mask in 0..1usize << widest {
            let chain: Vec<usize> = (0..widest)
                .filter(|&h| mask & (1 << h) != 0)
                .chain([widest])
                .collect();
            for step in 0..=1000 {
                let t = step as f64 / 1000.0;
                let stages: Vec<(usize, f64)> = chain.iter().map(|&h| (h, t)).collect();
                let r = self.chain_at(&stages);
                best_top1 = best_top1.max(r.top1);
                if r.top1 >= min_top1 && best.as_ref().is_none_or(|b| r.mean_macs < b.mean_macs) {
                    best = Some(r);
                }
                if chain.len() == 1 {
                    break;
                }
            }
        }
        let Some(best) = best else {
            return Err(Error::Invalid(format!(
                "cascade calibration: no cascade reaches top-1 {:.2}%; the best is {:.2}%",
                min_top1 * 100.0,
                best_top1 * 100.0
            )));
        };
        let cascade = Cascade::shared(self.confidence, &best.widths, best.threshold)
            .map_err(Error::Invalid)?;
        Ok((cascade, best))
    }
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
        let top = confidence_of(Confidence::MaxProb, &logits) as f64;
        let margin = confidence_of(Confidence::Margin, &logits) as f64;
        assert!((top - e[1] / sum).abs() < 1e-6, "{top}");
        assert!((margin - (e[1] - e[2]) / sum).abs() < 1e-6, "{margin}");
        assert_eq!(
            confidence_of(Confidence::Margin, &[5.0, 5.0]),
            0.0,
            "a tie has no margin"
        );
        assert!((confidence_of(Confidence::MaxProb, &[1000.0, 0.0]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn calibration_takes_the_cheapest_widths_and_threshold_that_reach_the_target() {
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
        let sweep = Sweep::new(&held, &labels, Confidence::MaxProb).unwrap();
        let (cascade, c) = sweep.calibrate(1.0).unwrap();
        // Images 2 and 3 go on (confidence 0.525 < t), 0 and 1 stop (0.982 >= t): the
        // cheapest threshold that does so is the first step above 0.525.
        assert_eq!(c.top1, 1.0);
        assert_eq!(c.answered, vec![2, 2]);
        assert_eq!(c.mean_macs, (2.0 * 10.0 + 2.0 * 110.0) / 4.0);
        assert_eq!(cascade.stages()[0].threshold, 0.525);
        assert_eq!(c.threshold, 0.525);
        assert_eq!(sweep.judge(&cascade).unwrap(), c);
        // Half right is reached by the narrow width alone, at its cost.
        let (_, c) = sweep.calibrate(0.5).unwrap();
        assert_eq!((c.answered.clone(), c.mean_macs), (vec![4, 0], 10.0));
        // A middle width as unsure as the narrow one only adds cost: it is skipped.
        let three = [
            Held {
                width: w(0.25),
                macs: 10,
                logits: held[0].logits.clone(),
            },
            Held {
                width: w(0.5),
                macs: 50,
                logits: held[0].logits.clone(),
            },
            Held {
                width: w(1.0),
                macs: 100,
                logits: held[1].logits.clone(),
            },
        ];
        let sweep = Sweep::new(&three, &labels, Confidence::MaxProb).unwrap();
        let (cascade, c) = sweep.calibrate(1.0).unwrap();
        assert_eq!(c.widths, vec![w(0.25), w(1.0)]);
        assert_eq!(cascade.describe(), "max-prob: 0.25>=0.525, 1");
        assert_eq!(c.mean_macs, 60.0);
        let all = Cascade::shared(Confidence::MaxProb, &[w(0.25), w(0.5), w(1.0)], 0.525);
        assert_eq!(
            sweep.judge(&all.unwrap()).unwrap().mean_macs,
            (2.0 * 10.0 + 2.0 * 160.0) / 4.0
        );
        let e = sweep
            .judge(&Cascade::shared(Confidence::MaxProb, &[w(0.75)], 0.5).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("width 0.75 is not held"), "{e}");
        // Unreachable targets and mismatched inputs are refused by name.
        let wrong = [Held {
            width: w(0.25),
            macs: 10,
            logits: held[0].logits.clone(),
        }];
        let sweep = Sweep::new(&wrong, &labels, Confidence::MaxProb).unwrap();
        let e = sweep.calibrate(0.9).unwrap_err();
        assert!(e.to_string().contains("the best is 50.00%"), "{e}");
        let e = Sweep::new(&held, &labels[..3], Confidence::MaxProb)
            .err()
            .unwrap();
        assert!(e.to_string().contains("4 outputs for 3 labels"), "{e}");
    }
}

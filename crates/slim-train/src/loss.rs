//! The losses of SlimCLR (arXiv 2209.15525) and the smoothed InfoNCE of arXiv 2212.07158,
//! as pure functions on tensors.
//!
//! # Logit layout
//!
//! Every contrastive logit matrix here has **one row per anchor and the positive in
//! column 0**, followed by that anchor's negatives in a fixed order, so that
//!
//! - the contrastive loss is cross-entropy with target 0 ([`infonce`]);
//! - two widths' logits for the same batch are column-aligned, and the full width's row
//!   can serve directly as the distillation target of a sub-width's row
//!   ([`distillation`]);
//! - the smoothed InfoNCE target can tell the positive from the negatives
//!   ([`smoothed_infonce`]).
//!
//! Logits are cosine similarities divided by the contrastive temperature τ:
//! `logit = cos(a, b) / τ`. [`nt_xent_logits`] (SimCLR), [`moco_logits`] (MoCo v2) and
//! [`in_batch_logits`] (MoCo v3) produce them.
//!
//! # Weights
//!
//! [`LossWeights`] holds SlimCLR's weighting of the per-width losses: the full width's
//! contrastive loss times [`LossWeights::full`], each sub-width's contrastive loss times
//! [`LossWeights::sub_contrastive`] plus its distillation loss (toward the full width's
//! logits) times [`LossWeights::sub_distillation`].

use serde::{Deserialize, Serialize};
use slim_core::Width;
use tch::{Kind, Tensor};

/// PyTorch's `F.normalize` epsilon.
const NORM_EPS: f64 = 1e-12;

/// `x / max(‖x‖₂, 1e-12)` along the last dimension (PyTorch's `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
        .clamp_min(NORM_EPS)
}

/// `N`, after checking that `a` and `b` are both `[N, D]` with the same shape.
///
/// # Panics
/// Naming `function` and both shapes, if not.
fn same_rows(function: &str, a: &Tensor, b: &Tensor) -> i64 {
    let size = a.size();
    assert!(
        size.len() == 2 && b.size() == size,
        "{function}: {:?} and {:?} must both be [N, D] (student and teacher, or two views)",
        size,
        b.size()
    );
    size[0]
}

/// Reorders the columns of a similarity matrix `sim` `[R, C]` into this module's layout: row
/// `i` gets column `positive(i)` first, then every other column in ascending order,
/// leaving out column `i` itself when `skip_self` (a sample compared with itself).
fn positive_first(sim: &Tensor, positive: impl Fn(i64) -> i64, skip_self: bool) -> Tensor {
    let &[rows, cols] = sim.size().as_slice() else {
        unreachable!("callers pass a 2-D similarity matrix")
    };
    let mut index = Vec::with_capacity((rows * cols) as usize);
    for i in 0..rows {
        let pos = positive(i);
        index.push(pos);
        index.extend((0..cols).filter(|&j| j != pos && !(skip_self && j == i)));
    }
    let width = index.len() as i64 / rows.max(1);
    let index = Tensor::from_slice(&index)
        .view([rows, width])
        .to_device(sim.device());
    sim.gather(1, &index, false)
}

/// SimCLR's NT-Xent logits for two views `z1`, `z2` (`[N, D]`, any scale: both are
/// L2-normalized here).
///
/// With `z = cat(normalize(z1), normalize(z2))` (`[2N, D]`, rows `0..N` from `z1`, rows
/// `N..2N` from `z2`), row `i` of the logits is
///
/// `[cos(z_i, z_pos(i)), cos(z_i, z_j) for j ∉ {i, pos(i)} in ascending j] / temperature`
///
/// where `pos(i) = i + N` for `i < N` and `i - N` otherwise: the positive is in column 0,
/// the self-similarity is left out, and the `2N - 2` negatives follow in ascending sample
/// order (so two widths' logits of the same batch are column-aligned).
///
/// Returns the logits `[2N, 2N - 1]` and the targets `[2N]` (`Int64`, all 0: the
/// positive's column), on `z1`'s device.
///
/// # Panics
/// If `z1` and `z2` are not both `[N, D]` with the same shape.
pub fn nt_xent_logits(z1: &Tensor, z2: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let n = same_rows("nt_xent_logits", z1, z2);
    let device = z1.device();
    let z = l2_normalize(&Tensor::cat(&[z1, z2], 0));
    let sim = z.mm(&z.tr()) / temperature;
    let m = 2 * n;
    let logits = positive_first(&sim, |i| (i + n) % m, true);
    let targets = Tensor::zeros([m], (Kind::Int64, device));
    (logits, targets)
}

/// SimCLR's NT-Xent loss: [`infonce`] of [`nt_xent_logits`], i.e. the cross-entropy with
/// target 0 averaged over all `2N` rows (both views as anchors). Symmetric in `z1`, `z2`.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Tensor {
    infonce(&nt_xent_logits(z1, z2, temperature).0)
}

/// MoCo's logits `[N, 1 + K]`: row `i` is
/// `[cos(q_i, k_i), q̂_i · queue_0, …, q̂_i · queue_{K-1}] / temperature`, positive in
/// column 0.
///
/// `q` and `k` (`[N, D]`) are L2-normalized here; `queue` (`[K, D]`) is taken as it is
/// (MoCo stores normalized keys). `k` and `queue` are used as given: pass them without
/// gradient (MoCo's keys come from the momentum encoder under no-grad).
///
/// # Panics
/// On mismatched shapes.
pub fn moco_logits(q: &Tensor, k: &Tensor, queue: &Tensor, temperature: f64) -> Tensor {
    assert!(
        q.dim() == 2 && k.size() == q.size() && queue.dim() == 2 && queue.size()[1] == q.size()[1],
        "moco_logits: q {:?}, k {:?} must be [N, D] and queue {:?} [K, D]",
        q.size(),
        k.size(),
        queue.size()
    );
    let q = l2_normalize(q);
    let k = l2_normalize(k);
    let positive = (&q * &k).sum_dim_intlist([1i64].as_slice(), true, None);
    let negatives = q.mm(&queue.tr());
    Tensor::cat(&[positive, negatives], 1) / temperature
}

/// MoCo v3's logits `[N, N]` of queries `q` against the keys `k` of the same batch (both
/// `[N, D]`, L2-normalized here): row `i` is
///
/// `[cos(q_i, k_i), cos(q_i, k_j) for j ≠ i in ascending j] / temperature`
///
/// so the positive (the other view of the same image) is in column 0 and the other
/// images' keys are the negatives; no queue. Pass `k` without gradient (momentum keys).
///
/// # Panics
/// If `q` and `k` are not both `[N, D]` with the same shape.
pub fn in_batch_logits(q: &Tensor, k: &Tensor, temperature: f64) -> Tensor {
    same_rows("in_batch_logits", q, k);
    let sim = l2_normalize(q).mm(&l2_normalize(k).tr()) / temperature;
    positive_first(&sim, |i| i, false)
}

/// InfoNCE: cross-entropy of `logits` `[N, C]` with the positive in column 0 (target 0),
/// averaged over rows: `mean_i(-log_softmax(logits_i)[0])`.
pub fn infonce(logits: &Tensor) -> Tensor {
    -logits.log_softmax(-1, None).select(1, 0).mean(None)
}

/// SlimCLR's online distillation of a sub-width (student) toward the full width
/// (teacher), for two column-aligned logit matrices `[N, C]` over [positive, negatives]:
///
/// `T_s · T_t · (1/N) Σ_i KL(softmax(teacher_i / T_t) ‖ softmax(student_i / T_s))`
///
/// (`batchmean`), i.e. "KL with teacher and student temperatures, scaled by T²" when
/// `T_s = T_t = T` (SlimCLR's defaults: 5 and 5). The teacher is detached here: no
/// gradient reaches it.
///
/// The inputs are divided by `T_s` / `T_t` as given: SlimCLR distils the raw cosines for
/// SimCLR and MoCo v2 (its InfoNCE returns the logits before their division by τ) and
/// MoCo v3's logits `q·k / τ`; the trainer passes each what the reference does.
///
/// SlimCLR's reference code uses the cross-entropy form `-Σ p_t log p_s` scaled by `T_s²`;
/// the KL here differs from it by the teacher's entropy (a constant: same gradient) and
/// equals 0 when the student matches the teacher.
///
/// # Panics
/// If the shapes differ or are not `[N, C]`.
pub fn distillation(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    t_student: f64,
    t_teacher: f64,
) -> Tensor {
    let n = same_rows("distillation", student_logits, teacher_logits) as f64;
    let log_p_teacher = (teacher_logits.detach() / t_teacher).log_softmax(-1, None);
    let p_teacher = log_p_teacher.exp();
    let log_p_student = (student_logits / t_student).log_softmax(-1, None);
    let kl = (p_teacher * (log_p_teacher - log_p_student)).sum(None) / n;
    kl * (t_student * t_teacher)
}

/// The smoothed-InfoNCE target distribution `[N, C]` for `logits` `[N, C]` (positive in
/// column 0): `1 - alpha` on column 0 and `alpha / top_k` on each of the `top_k` negatives
/// (columns `1..C`) with the largest logits in that row, 0 elsewhere. Every row sums to 1.
/// Computed from the detached logits, so it carries no gradient. Ties between equal
/// negatives are broken by libtorch's `topk`.
///
/// # Panics
/// If `alpha` is outside [0, 1], or `alpha > 0` and `top_k` is not in `1..=C-1`.
pub fn smoothed_targets(logits: &Tensor, alpha: f64, top_k: usize) -> Tensor {
    assert!(
        (0.0..=1.0).contains(&alpha),
        "smoothed_targets: alpha {alpha} is outside [0, 1]"
    );
    assert_eq!(logits.dim(), 2, "smoothed_targets: logits must be [N, C]");
    let logits = logits.detach();
    let [rows, columns] = logits.size()[..] else {
        unreachable!()
    };
    let positive = Tensor::full([rows, 1], 1.0 - alpha, (logits.kind(), logits.device()));
    let negatives = logits.narrow(1, 1, columns - 1);
    if alpha == 0.0 {
        return Tensor::cat(&[positive, negatives.zeros_like()], 1);
    }
    let k = top_k as i64;
    assert!(
        k >= 1 && k < columns,
        "smoothed_targets: top_k {top_k} must be in 1..={} (the negatives per row)",
        columns - 1
    );
    let (_, index) = negatives.topk(k, 1, true, false);
    let spread = negatives
        .zeros_like()
        .scatter_value(1, &index, alpha / top_k as f64);
    Tensor::cat(&[positive, spread], 1)
}

/// Smoothed InfoNCE (arXiv 2212.07158, for small models): the soft cross-entropy
/// `mean_i(-Σ_j target_ij · log_softmax(logits_i)_j)` with the target of
/// [`smoothed_targets`]: `1 - alpha` on the positive (column 0), `alpha` spread evenly
/// over each row's `top_k` most similar negatives. `alpha = 0` is exactly [`infonce`].
///
/// # Panics
/// As [`smoothed_targets`].
pub fn smoothed_infonce(logits: &Tensor, alpha: f64, top_k: usize) -> Tensor {
    if alpha == 0.0 {
        return infonce(logits);
    }
    soft_cross_entropy(logits, &smoothed_targets(logits, alpha, top_k))
}

/// When smoothed InfoNCE's α applies, as light-moco's `main_moco.py` sets it each epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum AlphaSchedule {
    /// 0 before this epoch, then the full α (light-moco's `--warm`; 0: from the start).
    Warm(usize),
    /// `α · (1 - (1 + cos(π · epoch / epochs)) / 2)`, rising from 0 over the run
    /// (light-moco's `--smooth_cos`).
    Cosine,
}

impl AlphaSchedule {
    /// The smoothing weight of `epoch` (counted from 0) of `epochs`, for a final `alpha`.
    pub fn alpha_at(self, epoch: usize, epochs: usize, alpha: f64) -> f64 {
        match self {
            AlphaSchedule::Warm(warm) if epoch < warm => 0.0,
            AlphaSchedule::Warm(_) => alpha,
            AlphaSchedule::Cosine => {
                let phase = std::f64::consts::PI * epoch as f64 / epochs.max(1) as f64;
                alpha * (1.0 - 0.5 * (1.0 + phase.cos()))
            }
        }
    }
}

/// Soft cross-entropy `mean_i(-Σ_j teacher_probs_ij · log_softmax(student_logits_i)_j)`
/// for `[N, C]` inputs, the teacher detached. Used by the switchable linear probe: a
/// sub-width's probe trains on `0.5 · CE(labels) + 0.5 · soft CE(full width's softmax)`.
///
/// # Panics
/// If the shapes differ or are not `[N, C]`.
pub fn soft_cross_entropy(student_logits: &Tensor, teacher_probs: &Tensor) -> Tensor {
    let n = same_rows("soft_cross_entropy", student_logits, teacher_probs) as f64;
    -(teacher_probs.detach() * student_logits.log_softmax(-1, None)).sum(None) / n
}

/// SlimCLR's per-width loss weights:
///
/// `loss = full · L_c(1.0) + Σ_{w < 1} (sub_contrastive · L_c(w) + sub_distillation · L_d(w))`
///
/// where `L_c` is a width's contrastive loss and `L_d` its [`distillation`] toward the
/// full width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    /// The full width's contrastive weight.
    pub full: f64,
    /// Each sub-width's contrastive weight.
    pub sub_contrastive: f64,
    /// Each sub-width's distillation weight (0 without distillation).
    pub sub_distillation: f64,
}

impl LossWeights {
    /// SlimCLR's re-weighting by model size: the full width gets
    /// `1 + Σ widths - max(widths)` (2.5 for 1.0 / 0.75 / 0.5 / 0.25), each sub-width 1.0,
    /// split into 0.5 contrastive + 0.5 distillation when `distill` (SlimCLR's
    /// `aux_loss_w = 0.5`), all contrastive otherwise.
    pub fn reweighted(widths: &[Width], distill: bool) -> LossWeights {
        let max = widths
            .iter()
            .map(|w| w.get())
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = widths.iter().map(|w| w.get()).sum();
        let (sub_contrastive, sub_distillation) = if distill { (0.5, 0.5) } else { (1.0, 0.0) };
        LossWeights {
            full: 1.0 + sum - max,
            sub_contrastive,
            sub_distillation,
        }
    }

    /// No re-weighting: every contrastive loss weighs 1.0, and each sub-width's
    /// distillation 1.0 as well when `distill` (0 otherwise).
    pub fn uniform(distill: bool) -> LossWeights {
        LossWeights {
            full: 1.0,
            sub_contrastive: 1.0,
            sub_distillation: if distill { 1.0 } else { 0.0 },
        }
    }
}

/// Each width's total loss weight under SlimCLR's re-weighting, in the order of `widths`:
/// `1 + Σ widths - max(widths)` for the widest, 1.0 for every other (which
/// [`LossWeights::reweighted`] splits between contrastive and distillation).
/// `[1.0, 0.75, 0.5, 0.25]` gives `[2.5, 1.0, 1.0, 1.0]`.
pub fn width_weights(widths: &[Width]) -> Vec<f64> {
    let widest = widths.iter().max();
    let full = LossWeights::reweighted(widths, false).full;
    widths
        .iter()
        .map(|w| if Some(w) == widest { full } else { 1.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::FRAC_1_SQRT_2;

    fn t2(rows: &[&[f64]]) -> Tensor {
        let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
    }

    fn scalar(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let &[n, c] = t.size().as_slice() else {
            panic!("not 2-D")
        };
        (0..n)
            .map(|i| (0..c).map(|j| t.double_value(&[i, j])).collect())
            .collect()
    }

    /// `-x[0] + ln Σ exp(x)`, in plain f64.
    fn ce0(x: &[f64]) -> f64 {
        -x[0] + x.iter().map(|v| v.exp()).sum::<f64>().ln()
    }

    /// `ln softmax(x)`, in plain f64.
    fn log_softmax(x: &[f64]) -> Vec<f64> {
        let lse = x.iter().map(|v| v.exp()).sum::<f64>().ln();
        x.iter().map(|v| v - lse).collect()
    }

    /// Deterministic "random" values (no global RNG: tests run in parallel).
    fn pseudo_random(n: i64, d: i64, seed: f64) -> Tensor {
        let v: Vec<f64> = (0..n * d)
            .map(|i| (seed + 12.9898 * i as f64).sin() * 43.758 % 1.0)
            .collect();
        Tensor::from_slice(&v).view([n, d])
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn nt_xent_logits_layout_and_value_by_hand() {
        // z = [e1, e2, (1,1)/√2, (-1,0)] after normalization (z2 deliberately unnormalized).
        let z1 = t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let z2 = t2(&[&[1.0, 1.0], &[-2.0, 0.0]]);
        let tau = 0.5;
        let (logits, targets) = nt_xent_logits(&z1, &z2, tau);
        assert_eq!(logits.size(), [4, 3]);
        assert_eq!(targets.size(), [4]);
        assert_eq!(targets.kind(), Kind::Int64);
        assert_eq!(targets.abs().sum(Kind::Int64).int64_value(&[]), 0);
        let r = FRAC_1_SQRT_2;
        // Row i: [cos(i, pos(i)), cos(i, j) for the other j ascending]; pos: 0<->2, 1<->3.
        let expected: Vec<Vec<f64>> = [
            [r, 0.0, -1.0],  // 0: s02 | s01, s03
            [0.0, 0.0, r],   // 1: s13 | s10, s12
            [r, r, -r],      // 2: s20 | s21, s23
            [0.0, -1.0, -r], // 3: s31 | s30, s32
        ]
        .iter()
        .map(|row| row.iter().map(|c| c / tau).collect())
        .collect();
        for (got, want) in rows(&logits).iter().zip(&expected) {
            for (g, w) in got.iter().zip(want) {
                assert!(close(*g, *w, 1e-12), "{got:?} vs {want:?}");
            }
        }
        let want = expected.iter().map(|row| ce0(row)).sum::<f64>() / 4.0;
        let got = scalar(&nt_xent(&z1, &z2, tau));
        assert!(close(got, want, 1e-12), "{got} vs {want}");
    }

    #[test]
    fn nt_xent_is_symmetric_in_the_views() {
        let z1 = pseudo_random(5, 8, 1.0);
        let z2 = pseudo_random(5, 8, 2.0);
        let a = scalar(&nt_xent(&z1, &z2, 0.2));
        let b = scalar(&nt_xent(&z2, &z1, 0.2));
        assert!(close(a, b, 1e-12), "{a} vs {b}");
        // In f32 too, to rounding.
        let (f1, f2) = (z1.to_kind(Kind::Float), z2.to_kind(Kind::Float));
        let a32 = scalar(&nt_xent(&f1, &f2, 0.2));
        assert!(close(a32, a, 1e-5), "{a32} vs {a}");
    }

    #[test]
    fn aligned_positives_with_orthogonal_negatives_beat_random() {
        let eye = Tensor::eye(4, (Kind::Double, tch::Device::Cpu));
        let aligned = scalar(&nt_xent(&eye, &eye, 0.5));
        // By hand: each row is [1/τ, 0 × 6].
        let want = ce0(&[2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(close(aligned, want, 1e-12), "{aligned} vs {want}");
        for seed in [1.0, 2.0, 3.0] {
            let random = scalar(&nt_xent(
                &pseudo_random(4, 4, seed),
                &pseudo_random(4, 4, seed + 10.0),
                0.5,
            ));
            assert!(aligned < random, "aligned {aligned} vs random {random}");
        }
    }

    #[test]
    fn moco_logits_and_infonce_by_hand() {
        let q = t2(&[&[1.0, 0.0], &[0.0, 2.0]]);
        let k = t2(&[&[1.0, 1.0], &[0.0, -3.0]]);
        let queue = t2(&[&[0.0, 1.0], &[-1.0, 0.0], &[1.0, 0.0]]);
        let tau = 0.2;
        let logits = moco_logits(&q, &k, &queue, tau);
        let r = FRAC_1_SQRT_2;
        let expected: Vec<Vec<f64>> = [[r, 0.0, -1.0, 1.0], [-1.0, 1.0, 0.0, 0.0]]
            .iter()
            .map(|row| row.iter().map(|c| c / tau).collect())
            .collect();
        assert_eq!(logits.size(), [2, 4]);
        for (got, want) in rows(&logits).iter().zip(&expected) {
            for (g, w) in got.iter().zip(want) {
                assert!(close(*g, *w, 1e-12), "{got:?} vs {want:?}");
            }
        }
        let want = (ce0(&expected[0]) + ce0(&expected[1])) / 2.0;
        let got = scalar(&infonce(&logits));
        assert!(close(got, want, 1e-12), "{got} vs {want}");
        // The same as libtorch's cross-entropy with target 0 (which tch computes in f32).
        let ce =
            logits.cross_entropy_for_logits(&Tensor::zeros([2], (Kind::Int64, tch::Device::Cpu)));
        assert!(close(scalar(&ce), want, 1e-6));
    }

    #[test]
    fn in_batch_logits_put_the_positive_first_by_hand() {
        // q = [e1, (1,1)/√2, e2] after normalization; k = [e1, e2, -e1] (k0 unnormalized).
        let q = t2(&[&[2.0, 0.0], &[1.0, 1.0], &[0.0, 3.0]]);
        let k = t2(&[&[5.0, 0.0], &[0.0, 1.0], &[-1.0, 0.0]]);
        let r = FRAC_1_SQRT_2;
        let want = [
            [1.0, 0.0, -1.0], // q0·k0 | q0·k1, q0·k2
            [r, r, -r],       // q1·k1 | q1·k0, q1·k2
            [0.0, 0.0, 1.0],  // q2·k2 | q2·k0, q2·k1
        ];
        let got = rows(&in_batch_logits(&q, &k, 0.5));
        for (g, w) in got.iter().zip(want) {
            for (a, b) in g.iter().zip(w) {
                assert!(close(*a, b / 0.5, 1e-12), "{got:?}");
            }
        }
    }

    #[test]
    fn distillation_by_hand() {
        // Row 1: teacher uniform (any T_t), student [0, 2] / 2 = [0, 1].
        // Row 2: teacher [3, 0] / 3 = [1, 0], student [1, 1] / 2 uniform.
        let student = t2(&[&[0.0, 2.0], &[1.0, 1.0]]);
        let teacher = t2(&[&[0.0, 0.0], &[3.0, 0.0]]);
        let e = 1f64.exp();
        let q1 = [1.0 / (1.0 + e), e / (1.0 + e)];
        let kl1 = 0.5 * (0.5 / q1[0]).ln() + 0.5 * (0.5 / q1[1]).ln();
        let p2 = [e / (1.0 + e), 1.0 / (1.0 + e)];
        let kl2 = p2[0] * (p2[0] / 0.5).ln() + p2[1] * (p2[1] / 0.5).ln();
        let want = (kl1 + kl2) / 2.0 * (2.0 * 3.0);
        let got = scalar(&distillation(&student, &teacher, 2.0, 3.0));
        assert!(close(got, want, 1e-12), "{got} vs {want}");
        // libtorch's kl_div (batchmean) agrees.
        let kl = (&student / 2.0).log_softmax(-1, None).kl_div(
            &(&teacher / 3.0).softmax(-1, None),
            tch::Reduction::Sum,
            false,
        ) / 2.0
            * 6.0;
        assert!(close(scalar(&kl), want, 1e-12));
    }

    #[test]
    fn distillation_is_zero_at_the_teacher_and_positive_elsewhere() {
        let teacher = pseudo_random(6, 11, 4.0) * 5.0;
        let same = scalar(&distillation(&teacher, &teacher, 5.0, 5.0));
        assert_eq!(same, 0.0);
        let student = pseudo_random(6, 11, 5.0) * 5.0;
        assert!(scalar(&distillation(&student, &teacher, 5.0, 5.0)) > 0.0);
    }

    #[test]
    fn distillation_gradient_reaches_the_student_only() {
        let student = pseudo_random(3, 5, 6.0).set_requires_grad(true);
        let teacher = pseudo_random(3, 5, 7.0).set_requires_grad(true);
        distillation(&student, &teacher, 5.0, 5.0).backward();
        let g = student.grad();
        assert!(g.defined());
        assert!(scalar(&g.abs().sum(None)) > 0.0);
        assert!(
            !teacher.grad().defined(),
            "the teacher must get no gradient"
        );
    }

    #[test]
    fn smoothed_with_alpha_zero_is_infonce() {
        let logits = pseudo_random(4, 9, 8.0) * 10.0;
        let a = scalar(&smoothed_infonce(&logits, 0.0, 3));
        assert_eq!(a, scalar(&infonce(&logits)));
        // The general path with a one-hot target agrees to rounding.
        let one_hot = smoothed_targets(&logits, 0.0, 3);
        let b = scalar(&soft_cross_entropy(&logits, &one_hot));
        assert!(close(a, b, 1e-12), "{a} vs {b}");
    }

    #[test]
    fn smoothed_targets_put_alpha_on_the_top_k_negatives() {
        // Row 0: the positive is the largest, negatives 3 and 2 are the top 2.
        // Row 1: a negative beats the positive; negatives 1 and 4 are the top 2.
        let logits = t2(&[&[5.0, 1.0, 3.0, 2.0, 0.0], &[0.0, 4.0, -1.0, 0.5, 6.0]]);
        let target = smoothed_targets(&logits, 0.2, 2);
        let want = [[0.8, 0.0, 0.1, 0.1, 0.0], [0.8, 0.1, 0.0, 0.0, 0.1]];
        for (got, want) in rows(&target).iter().zip(&want) {
            for (g, w) in got.iter().zip(want) {
                assert!(close(*g, *w, 1e-12), "{got:?} vs {want:?}");
            }
            assert!(close(got.iter().sum(), 1.0, 1e-12));
            assert_eq!(got[1..].iter().filter(|&&v| v > 0.0).count(), 2);
        }
        // Wider rows: exactly top_k nonzero negatives, each alpha / top_k, rows sum to 1.
        let logits = pseudo_random(7, 33, 9.0);
        for top_k in [1, 5, 32] {
            let target = smoothed_targets(&logits, 0.3, top_k);
            for row in rows(&target) {
                assert!(close(row.iter().sum(), 1.0, 1e-12));
                assert!(close(row[0], 0.7, 1e-12));
                let spread: Vec<f64> = row[1..].iter().copied().filter(|&v| v > 0.0).collect();
                assert_eq!(spread.len(), top_k);
                assert!(spread.iter().all(|&v| close(v, 0.3 / top_k as f64, 1e-12)));
            }
        }
    }

    #[test]
    fn smoothed_infonce_by_hand() {
        let x = [5.0, 1.0, 3.0, 2.0, 0.0];
        let logits = t2(&[&x]);
        let l = log_softmax(&x);
        let want = -(0.8 * l[0] + 0.1 * l[2] + 0.1 * l[3]);
        let got = scalar(&smoothed_infonce(&logits, 0.2, 2));
        assert!(close(got, want, 1e-12), "{got} vs {want}");
        // Smoothing toward hard negatives raises the loss of a confident row.
        assert!(got > scalar(&infonce(&logits)));
    }

    #[test]
    #[should_panic(expected = "top_k")]
    fn smoothed_rejects_more_top_k_than_negatives() {
        let _ = smoothed_targets(&t2(&[&[1.0, 0.0, 0.0]]), 0.1, 3);
    }

    #[test]
    fn alpha_follows_light_moco_s_schedules() {
        let warm = AlphaSchedule::Warm(3);
        assert_eq!(
            (0..5)
                .map(|e| warm.alpha_at(e, 10, 0.2))
                .collect::<Vec<_>>(),
            [0.0, 0.0, 0.0, 0.2, 0.2]
        );
        assert_eq!(AlphaSchedule::Warm(0).alpha_at(0, 10, 0.2), 0.2);
        // light-moco's adjust_smooth: (1 - 0.5 (1 + cos(pi e / E))) * smooth.
        let cos = AlphaSchedule::Cosine;
        assert_eq!(cos.alpha_at(0, 10, 0.2), 0.0);
        assert!(close(cos.alpha_at(5, 10, 0.2), 0.1, 1e-12));
        assert!(close(cos.alpha_at(10, 10, 0.2), 0.2, 1e-12));
        assert!(close(
            cos.alpha_at(2, 10, 0.2),
            0.2 * (1.0 - 0.5 * (1.0 + (0.2 * std::f64::consts::PI).cos())),
            1e-12
        ));
    }

    #[test]
    fn soft_cross_entropy_by_hand() {
        // softmax([0, ln 3]) = [1/4, 3/4].
        let student = t2(&[&[0.0, 3f64.ln()], &[0.0, 0.0]]);
        let teacher = t2(&[&[0.5, 0.5], &[1.0, 0.0]]);
        let want = (-(0.5 * 0.25f64.ln() + 0.5 * 0.75f64.ln()) - 0.5f64.ln()) / 2.0;
        let got = scalar(&soft_cross_entropy(&student, &teacher));
        assert!(close(got, want, 1e-12), "{got} vs {want}");
        // One-hot teachers give the hard cross-entropy (which tch computes in f32).
        let labels = Tensor::from_slice(&[1i64, 0]);
        let hard = student.cross_entropy_for_logits(&labels);
        let one_hot = t2(&[&[0.0, 1.0], &[1.0, 0.0]]);
        assert!(close(
            scalar(&soft_cross_entropy(&student, &one_hot)),
            scalar(&hard),
            1e-6
        ));
        // The teacher gets no gradient.
        let s = student.set_requires_grad(true);
        let t = teacher.set_requires_grad(true);
        soft_cross_entropy(&s, &t).backward();
        assert!(s.grad().defined());
        assert!(!t.grad().defined());
    }

    #[test]
    fn slimclr_weights() {
        let widths = slim_core::width::DEFAULT_WIDTHS;
        let w = LossWeights::reweighted(&widths, true);
        assert_eq!(w.full, 2.5);
        assert_eq!((w.sub_contrastive, w.sub_distillation), (0.5, 0.5));
        let w = LossWeights::reweighted(&widths, false);
        assert_eq!(
            (w.full, w.sub_contrastive, w.sub_distillation),
            (2.5, 1.0, 0.0)
        );
        assert_eq!(width_weights(&widths), vec![2.5, 1.0, 1.0, 1.0]);
        assert_eq!(
            width_weights(&slim_test_utils::widths(&[0.25, 1.0, 0.5])),
            vec![1.0, 1.75, 1.0]
        );
        assert_eq!(width_weights(&slim_test_utils::widths(&[1.0])), vec![1.0]);
        let u = LossWeights::uniform(true);
        assert_eq!(
            (u.full, u.sub_contrastive, u.sub_distillation),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(LossWeights::uniform(false).sub_distillation, 0.0);
    }
}

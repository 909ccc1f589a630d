//! How far a derived graph's outputs are from its float graph's on the same images: the
//! check every f16 and int8 graph passes before it is written ([`slim_core::precision::Agreement`]).

use slim_core::precision::Agreement;

/// Compares `derived` with `float`: each the `[embedding, logits]` of `n` images, values
/// of all images back to back; `tolerance` is recorded as the bound it is held to.
pub fn agreement(float: &[Vec<f32>], derived: &[Vec<f32>], n: usize, tolerance: f64) -> Agreement {
    let rel = |k: usize| {
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (a, b) in float[k].iter().zip(&derived[k]) {
            diff += (f64::from(*a) - f64::from(*b)).powi(2);
            norm += f64::from(*a).powi(2);
        }
        if norm > 0.0 {
            (diff / norm).sqrt()
        } else {
            diff.sqrt()
        }
    };
    let classes = float[1].len() / n.max(1);
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0
    };
    let same = float[1]
        .chunks(classes.max(1))
        .zip(derived[1].chunks(classes.max(1)))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    Agreement {
        images: n,
        top1_agreement: same as f64 / n.max(1) as f64,
        logits_rel_error: rel(1),
        embedding_rel_error: rel(0),
        tolerance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_relative_to_the_float_outputs_and_top1_is_compared_per_image() {
        let float = vec![vec![1.0, 0.0, 0.0, 2.0], vec![3.0, 0.0, 0.0, 4.0]];
        let derived = vec![vec![1.0, 0.0, 0.0, 2.0], vec![3.0, 0.0, 4.5, 4.0]];
        let a = agreement(&float, &derived, 2, 0.1);
        assert_eq!(a.embedding_rel_error, 0.0);
        assert!((a.logits_rel_error - 4.5 / 5.0).abs() < 1e-12);
        assert_eq!(a.top1_agreement, 0.5);
    }
}

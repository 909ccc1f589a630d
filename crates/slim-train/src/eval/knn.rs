//! The weighted cosine kNN monitor (Wu et al. 2018) per width.

use tch::{Device, Kind, Tensor};

use super::FeatureSet;
use crate::loss::l2_normalize;

/// The kNN monitor's neighbour count (Wu et al. 2018; MoCo / SimCLR reproductions).
pub const DEFAULT_KNN_K: usize = 200;
/// The kNN monitor's temperature: neighbour `j` votes with weight `exp(cos_j / T)`.
/// 0.1, as MoCo's CIFAR-10 demo monitors with (`knn_t`); Wu et al.'s memory bank used 0.07.
pub const DEFAULT_KNN_TEMPERATURE: f64 = 0.1;

/// Upper bound on the elements of one `[test rows, train rows]` similarity block of the
/// kNN (64 MiB of float32).
const KNN_BLOCK_ELEMENTS: usize = 1 << 24;

/// The weighted cosine kNN prediction of Wu et al. 2018 for each row of `test` `[M, D]`
/// against `train` `[N, D]` with labels `train_labels` `[N]` (int, in `0..num_classes`):
/// rows are L2-normalized, each test row takes its `min(k, N)` most cosine-similar
/// training rows, neighbour `j` votes for its class with weight `exp(cos_j / T)`, and the
/// prediction is the class with the largest summed weight (ties broken by libtorch's
/// argmax). The weights are computed as `exp((cos_j - cos_max) / T)`, the same up to a
/// per-row factor, so that small temperatures do not overflow.
///
/// Computed on `train`'s device in blocks of test rows (at most 2^24 similarities at a
/// time). Returns `[M]` int64 on the CPU.
///
/// # Panics
/// If `train` is empty, the shapes disagree, `k` is 0 or `temperature` is not positive.
pub fn knn_predict(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    num_classes: usize,
    k: usize,
    temperature: f64,
) -> Tensor {
    let rows = (KNN_BLOCK_ELEMENTS / (train.size()[0].max(1) as usize)).max(1);
    knn_predict_blocked(train, train_labels, test, num_classes, k, temperature, rows)
}

fn knn_predict_blocked(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    num_classes: usize,
    k: usize,
    temperature: f64,
    block_rows: usize,
) -> Tensor {
    let (ts, qs) = (train.size(), test.size());
    assert!(
        ts.len() == 2 && qs.len() == 2 && ts[1] == qs[1],
        "knn: train {ts:?} and test {qs:?} must be [N, D] and [M, D]"
    );
    assert!(ts[0] > 0, "knn: the training set is empty");
    assert_eq!(
        train_labels.size(),
        [ts[0]],
        "knn: one label per training row"
    );
    assert!(k > 0, "knn: k must be positive");
    assert!(temperature > 0.0, "knn: the temperature must be positive");
    let device = train.device();
    let k = (k as i64).min(ts[0]);
    let classes = num_classes as i64;
    tch::no_grad(|| {
        let bank = l2_normalize(&train.to_kind(Kind::Float)).tr();
        let labels = train_labels.to_device(device).to_kind(Kind::Int64);
        let mut preds = Vec::new();
        let mut start = 0;
        while start < qs[0] {
            let len = (block_rows as i64).min(qs[0] - start);
            let q = test
                .narrow(0, start, len)
                .to_device(device)
                .to_kind(Kind::Float);
            let sim = l2_normalize(&q).matmul(&bank);
            let (values, index) = sim.topk(k, 1, true, true);
            let neighbour = labels.take(&index);
            let weights = ((&values - values.narrow(1, 0, 1)) / temperature).exp();
            let votes = Tensor::zeros([len, classes], (Kind::Float, device))
                .scatter_add(1, &neighbour, &weights);
            preds.push(votes.argmax(1, false).to_device(Device::Cpu));
            start += len;
        }
        if preds.is_empty() {
            Tensor::zeros([0], (Kind::Int64, Device::Cpu))
        } else {
            Tensor::cat(&preds, 0)
        }
    })
}

/// [`knn_accuracy`] of every width of two feature sets of the same widths, in order.
pub fn knn_per_width(
    train: &FeatureSet,
    test: &FeatureSet,
    num_classes: usize,
    k: usize,
    temperature: f64,
) -> Vec<f64> {
    train
        .per_width
        .iter()
        .zip(&test.per_width)
        .map(|(tr, te)| {
            knn_accuracy(
                tr,
                &train.labels,
                te,
                &test.labels,
                num_classes,
                k,
                temperature,
            )
        })
        .collect()
}

/// The fraction of `test` rows whose [`knn_predict`] class equals `test_labels` (0.0 for
/// an empty test set). `k` = [`DEFAULT_KNN_K`] and `temperature` =
/// [`DEFAULT_KNN_TEMPERATURE`] are the usual monitor settings.
///
/// # Panics
/// As [`knn_predict`], or if `test_labels` is not `[M]`.
pub fn knn_accuracy(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    num_classes: usize,
    k: usize,
    temperature: f64,
) -> f64 {
    let m = test.size()[0];
    assert_eq!(test_labels.size(), [m], "knn: one label per test row");
    if m == 0 {
        return 0.0;
    }
    let pred = knn_predict(train, train_labels, test, num_classes, k, temperature);
    let correct = pred
        .eq_tensor(&test_labels.to_device(Device::Cpu).to_kind(Kind::Int64))
        .sum(Kind::Int64)
        .int64_value(&[]);
    correct as f64 / m as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_blocks_do_not_change_the_predictions() {
        let train = Tensor::randn([57, 5], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(3, [57], (Kind::Int64, Device::Cpu));
        let test = Tensor::randn([23, 5], (Kind::Float, Device::Cpu));
        let all = knn_predict_blocked(&train, &labels, &test, 3, 7, 0.1, 1000);
        for rows in [1, 4, 22] {
            let blocked = knn_predict_blocked(&train, &labels, &test, 3, 7, 0.1, rows);
            assert!(all.equal(&blocked), "{rows} rows per block");
        }
        assert_eq!(all.size(), [23]);
    }
}

//! MoCo's full-width momentum key encoder: its construction, its keys for a batch, its
//! momentum update (constant for MoCo v2, MoCo v3's cosine rise to 1) and MoCo v2's queue.

use std::sync::Arc;

use slim_core::Width;
use slim_core::checkpoint::{Checkpoint, names};
use tch::{Device, Kind, Tensor, nn};

use super::data_parallel::{self, DataParallel};
use super::{Framework, PretrainConfig, head_of, tune};
use crate::head::SlimHead;
use crate::model::SyncBatchNorm;
use crate::{SlimNet, loss};

/// The full-width momentum key encoder, and its queue for MoCo v2.
pub(super) struct Moco {
    _vs: nn::VarStore,
    pub(super) net: SlimNet,
    pub(super) head: SlimHead,
    /// (name, key-encoder variable, the query variable it follows), sorted by name.
    pub(super) pairs: Vec<(String, Tensor, Tensor)>,
    /// `[K, D]` L2-normalized keys (MoCo v2).
    pub(super) queue: Option<Tensor>,
}

/// The key encoder's L2-normalized keys for one batch.
pub(super) enum Keys {
    /// MoCo v2: view 2's keys, compared with view 1's queries and then queued.
    Queued(Tensor),
    /// MoCo v3: each view's keys, compared with the other view's queries.
    Batch([Tensor; 2]),
}

impl Moco {
    /// A key encoder of `model` (and the head `config` asks for) starting equal to the
    /// query network held in `query`, with MoCo v2's queue of random unit keys.
    pub(super) fn new(
        query: &nn::VarStore,
        model: &slim_core::ModelConfig,
        config: &PretrainConfig,
        device: Device,
        sync: Option<&Arc<SyncBatchNorm>>,
    ) -> Result<Moco, crate::Error> {
        let kvs = nn::VarStore::new(device);
        let mut net = SlimNet::new(&kvs.root(), model)?;
        tune(&mut net, config, sync);
        let head = head_of(&net, &(kvs.root() / "train" / "head"), config, sync);
        let (q, k) = (query.variables(), kvs.variables());
        let mut pairs: Vec<(String, Tensor, Tensor)> = k
            .into_iter()
            .map(|(name, kv)| {
                let qv = q[&name].shallow_clone();
                (name, kv, qv)
            })
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            pairs
                .iter()
                .for_each(|(_, k, q)| k.shallow_clone().copy_(q))
        });
        let queue = (config.framework == Framework::MocoV2).then(|| {
            loss::l2_normalize(&Tensor::randn(
                [config.moco_queue as i64, config.head_out as i64],
                (Kind::Float, device),
            ))
        });
        Ok(Moco {
            _vs: kvs,
            net,
            head,
            pairs,
            queue,
        })
    }

    /// What a checkpoint keeps of it, named without `train.`: the key encoder's variables
    /// (`key.*`) and MoCo v2's queue.
    pub(super) fn tensors(&self) -> Vec<(String, Tensor)> {
        let keys = (self.pairs.iter())
            .map(|(n, k, _)| (format!("{}{n}", names::KEY_ENCODER), k.shallow_clone()));
        let queue = (self.queue.iter()).map(|q| (names::QUEUE.to_string(), q.shallow_clone()));
        keys.chain(queue).collect()
    }

    /// Takes the key encoder and the queue from `c` (a checkpoint or trajectory checkpoint
    /// of a MoCo run); the message says what is missing.
    pub(super) fn load(&mut self, c: &Checkpoint, device: Device) -> Result<(), String> {
        tch::no_grad(|| {
            for (name, k, _) in &self.pairs {
                let key = names::train(&format!("{}{name}", names::KEY_ENCODER));
                let t = c
                    .tensors
                    .get(&key)
                    .ok_or_else(|| format!("key-encoder tensor {key} is missing"))?;
                let t = crate::checkpoint::from_core(t, device).map_err(|e| e.to_string())?;
                k.shallow_clone().copy_(&t);
            }
            if let (Some(queue), Some(q)) = (
                &mut self.queue,
                crate::checkpoint::train_tensor(c, names::QUEUE, device)
                    .map_err(|e| e.to_string())?,
            ) {
                *queue = q;
            }
            Ok(())
        })
    }

    /// The keys of the two views: view 2's for MoCo v2 (queued after the step), both for
    /// MoCo v3. MoCo v2's key batch goes through the key encoder shuffled by `shuffle`
    /// (then put back in order), so that its BatchNorm groups other images than the
    /// query's: MoCo's shuffling BN, over the split groups of one device or, with `dp`,
    /// over the ranks (each encodes a slice of the shuffled global batch, as MoCo's
    /// `_batch_shuffle_ddp`). With `dp` the keys are every rank's (the global batch).
    pub(super) fn keys(
        &self,
        x1: &Tensor,
        x2: &Tensor,
        shuffle: u64,
        dp: Option<&DataParallel>,
    ) -> Result<Keys, crate::Error> {
        let key = |x: &Tensor| {
            tch::no_grad(|| {
                loss::l2_normalize(&self.head.forward(
                    &self.net.forward(x, Width::FULL, true),
                    Width::FULL,
                    true,
                ))
            })
        };
        let global = |t: Tensor| data_parallel::global(dp, t);
        Ok(match self.queue {
            Some(_) => {
                let x2 = global(x2.shallow_clone())?;
                let n = x2.size()[0] as usize;
                let order: Vec<i64> = slim_core::rng::SplitMix64(shuffle)
                    .permutation(n)
                    .into_iter()
                    .map(|i| i as i64)
                    .collect();
                let order = Tensor::from_slice(&order).to_device(x2.device());
                let (start, rows) = dp.map_or((0, n as i64), DataParallel::own_rows);
                let mine = order.narrow(0, start, rows);
                let shuffled = global(key(&x2.index_select(0, &mine)))?;
                Keys::Queued(shuffled.index_select(0, &order.argsort(0, false)))
            }
            None => Keys::Batch([global(key(x1))?, global(key(x2))?]),
        })
    }

    /// After a step: the key encoder moves toward the query network by `1 - momentum`,
    /// and MoCo v2's queue takes `keys` at `*queue_ptr`, which advances (wrapping).
    pub(super) fn follow(&mut self, momentum: f64, keys: Option<Keys>, queue_ptr: &mut usize) {
        tch::no_grad(|| {
            for (_, kv, qv) in &self.pairs {
                let _ = kv
                    .shallow_clone()
                    .g_mul_scalar_(momentum)
                    .g_add_(&(qv * (1.0 - momentum)));
            }
            if let (Some(queue), Some(Keys::Queued(k))) = (&self.queue, keys) {
                let len = queue.size()[0];
                let ptr = *queue_ptr as i64;
                let take = (k.size()[0]).min(len - ptr);
                queue.narrow(0, ptr, take).copy_(&k.narrow(0, 0, take));
                *queue_ptr = ((ptr + take) % len) as usize;
            }
        });
    }
}

/// The key encoder's momentum at `step` of `total`: constant (MoCo v2), or MoCo v3's
/// cosine rise.
pub(super) fn momentum_at(config: &PretrainConfig, step: usize, total: usize) -> f64 {
    match config.framework {
        Framework::MocoV3 => cosine_momentum(config.moco_momentum, step, total),
        _ => config.moco_momentum,
    }
}

/// MoCo v3's (and BYOL's) momentum at `step` of `total`: `base` at the first step, rising
/// along a half cosine to 1 at the last.
fn cosine_momentum(base: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    1.0 - (1.0 - base) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_momentum_rises_from_its_base_to_one() {
        let m = |step| super::cosine_momentum(0.99, step, 100);
        assert!((m(0) - 0.99).abs() < 1e-12);
        assert!((m(50) - 0.995).abs() < 1e-12);
        assert!((m(100) - 1.0).abs() < 1e-12);
        assert!(m(25) < m(50) && m(50) < m(75));
    }
}

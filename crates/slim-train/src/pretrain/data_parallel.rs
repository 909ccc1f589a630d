//! Data parallelism over a [`slim_dist::Group`], as DDP runs SlimCLR: every rank holds the
//! whole model and trains on its part of each global batch ([`Loader::shard`]); the
//! ranks start from rank 0's weights, check they run the same configuration, and sum
//! their gradients before each (identical) update. SimCLR gathers every rank's
//! projections (MoCo its queries and keys) so that each rank computes the loss of the
//! global batch, with gradient through its own part (SlimCLR's `all_gather`); the sum of
//! the ranks' gradients is then the gradient of one device with the global batch.
//! BatchNorm statistics are per rank, or every rank's with `sync_bn`
//! ([`SyncBatchNorm`]); MoCo v2's key encoder sees a slice of the global batch shuffled
//! across the ranks, and every rank queues the global batch's keys.
//!
//! [`Loader::shard`]: slim_data::loader::Loader::shard

use std::cell::{OnceCell, RefCell};
use std::sync::Arc;

use slim_dist::Group;
use tch::{Device, Kind, Tensor, nn};

use super::PretrainConfig;
use crate::Error;
use crate::model::SyncBatchNorm;

/// Where a trainer runs: its device, its loader's decoding threads, and the group of
/// data-parallel ranks it belongs to (none: one process).
pub struct Placement {
    pub device: Device,
    pub workers: usize,
    pub group: Option<Group>,
}

impl Placement {
    /// One process on `device`.
    pub fn local(device: Device, workers: usize) -> Placement {
        Placement {
            device,
            workers,
            group: None,
        }
    }
}

pub(super) struct DataParallel {
    group: Arc<Group>,
    /// Where this rank trains: its collectives' tensors live there (NCCL takes CUDA
    /// tensors only).
    device: Device,
    /// Synchronised BatchNorm, when the config asks for it.
    sync: OnceCell<Arc<SyncBatchNorm>>,
    /// Each rank's rows in the current step's batch (ranks may skip corrupt images).
    rows: RefCell<Vec<i64>>,
}

/// Refuses a run that cannot train on `ranks` ranks: one whose config was made for
/// another number (a resumed run's global batch, schedule and data order depend on it),
/// and what is not data-parallel yet.
pub(super) fn check(config: &PretrainConfig, ranks: usize, resumed: bool) -> Result<(), Error> {
    if config.ranks != ranks {
        return Err(Error::DataParallel(match resumed {
            true => format!(
                "the checkpoint was written by a run of {} ranks and this one has {ranks}: resume it with {} (its global batch, schedule and data order depend on it)",
                config.ranks, config.ranks
            ),
            false => format!(
                "the config says {} ranks, the group has {ranks}",
                config.ranks
            ),
        }));
    }
    if ranks > 1 && config.sync_bn && config.bn_splits > 1 {
        return Err(Error::DataParallel(format!(
            "synchronised BatchNorm takes the statistics of every rank's whole batch; a split in {} groups contradicts it: choose one",
            config.bn_splits
        )));
    }
    if ranks > 1 && config.twa.is_some() {
        return Err(Error::DataParallel(
            "TWA does not train data-parallel yet; run it in one process".into(),
        ));
    }
    Ok(())
}

/// Every rank's rows of `local` with `dp` (see [`DataParallel::global_rows`]), `local`
/// itself in one process.
pub(super) fn global(dp: Option<&DataParallel>, local: Tensor) -> Result<Tensor, Error> {
    match dp {
        Some(dp) => dp.global_rows(&local),
        None => Ok(local),
    }
}

fn collective(e: slim_dist::Error) -> Error {
    Error::DataParallel(e.to_string())
}

impl DataParallel {
    pub(super) fn new(group: Group, device: Device) -> DataParallel {
        DataParallel {
            group: Arc::new(group),
            device,
            sync: OnceCell::new(),
            rows: RefCell::new(Vec::new()),
        }
    }

    /// The synchronised BatchNorm every network of the run shares, if `config` asks for
    /// it.
    pub(super) fn sync_batch_norm(&self, config: &PretrainConfig) -> Option<Arc<SyncBatchNorm>> {
        config.sync_bn.then(|| {
            let group = &self.group;
            Arc::clone(
                self.sync
                    .get_or_init(|| Arc::new(SyncBatchNorm::new(Arc::clone(group)))),
            )
        })
    }

    /// Fails with the first collective error a synchronised BatchNorm met since the last
    /// check (a forward pass cannot return one).
    pub(super) fn check_sync(&self) -> Result<(), Error> {
        match self.sync.get().and_then(|s| s.take_error()) {
            Some(e) => Err(Error::DataParallel(e)),
            None => Ok(()),
        }
    }

    /// The time this rank spent in collectives since the last call.
    pub(super) fn take_collective_time(&self) -> std::time::Duration {
        self.group.take_busy()
    }

    pub(super) fn rank(&self) -> usize {
        self.group.rank()
    }

    pub(super) fn ranks(&self) -> usize {
        self.group.world()
    }

    /// Every rank's copy of the small CPU tensor `t`, in rank order, on the CPU (gathered
    /// on this rank's device).
    fn gather(&self, t: &Tensor) -> Result<Vec<Tensor>, Error> {
        let parts = self
            .group
            .all_gather(&t.to_device(self.device))
            .map_err(collective)?;
        Ok(parts.iter().map(|p| p.to_device(Device::Cpu)).collect())
    }

    /// Every rank's `bytes`, in rank order.
    fn gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let lens = self.gather(&Tensor::from_slice(&[bytes.len() as i64]))?;
        let lens: Vec<usize> = lens.iter().map(|t| t.int64_value(&[0]) as usize).collect();
        let longest = lens.iter().copied().max().unwrap_or(0);
        let mut padded = bytes.to_vec();
        padded.resize(longest, 0);
        let parts = self.gather(&Tensor::from_slice(&padded))?;
        Ok(parts
            .iter()
            .zip(lens)
            .map(|(t, n)| Vec::<u8>::try_from(t).expect("a byte tensor")[..n].to_vec())
            .collect())
    }

    /// Refuses to start unless every rank runs what rank 0 runs: `described` is a JSON
    /// object (the model and the pretraining config); the error names each field that
    /// differs and its values.
    pub(super) fn agree(&self, described: &serde_json::Value) -> Result<(), Error> {
        let mine = serde_json::to_vec(described).expect("plain data");
        let all = self.gather_bytes(&mine)?;
        let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap_or_default();
        let lead = parse(&all[0]);
        let mut differences = Vec::new();
        for (rank, bytes) in all.iter().enumerate().skip(1) {
            let theirs = parse(bytes);
            differences.extend(
                differing_fields(&lead, &theirs, "")
                    .into_iter()
                    .map(|(field, a, b)| format!("{field}: rank 0 has {a}, rank {rank} has {b}")),
            );
        }
        match differences.is_empty() {
            true => Ok(()),
            false => Err(Error::DataParallel(format!(
                "the ranks were started with different configurations; start every rank with the same flags and data ({})",
                differences.join("; ")
            ))),
        }
    }

    /// Copies rank 0's `vs` (weights and BatchNorm statistics) into every rank's.
    pub(super) fn broadcast_from_lead(&self, vs: &nn::VarStore) -> Result<(), Error> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| -> Result<(), Error> {
            for (_, var) in vars {
                let mut flat = var.to_kind(Kind::Float).contiguous();
                self.group.broadcast(&mut flat, 0).map_err(collective)?;
                var.shallow_clone().copy_(&flat);
            }
            Ok(())
        })
    }

    /// The start of a step on batch `position` with `rows` images here: checks that every
    /// rank is at the same position and keeps their row counts for [`Self::global_rows`].
    pub(super) fn begin_step(&self, position: usize, rows: usize) -> Result<(), Error> {
        let all = self.gather(&Tensor::from_slice(&[position as i64, rows as i64]))?;
        let all: Vec<(i64, i64)> = all
            .iter()
            .map(|t| (t.int64_value(&[0]), t.int64_value(&[1])))
            .collect();
        if let Some((rank, (p, _))) = all.iter().enumerate().find(|(_, (p, _))| *p != all[0].0) {
            return Err(Error::DataParallel(format!(
                "rank {rank} is at batch {p} while rank 0 is at batch {}: the ranks are out of step (a rank's whole batch failed to decode?)",
                all[0].0
            )));
        }
        *self.rows.borrow_mut() = all.into_iter().map(|(_, r)| r).collect();
        Ok(())
    }

    /// This rank's part of the current step's global rows: (first row, rows).
    pub(super) fn own_rows(&self) -> (i64, i64) {
        let rows = self.rows.borrow();
        (rows[..self.rank()].iter().sum(), rows[self.rank()])
    }

    /// Every rank's rows of `local` (`[n, D]`, this rank's part of the batch), in rank
    /// order, this rank's own part being `local` itself so that the gradient flows through
    /// it (the others' parts are constants).
    pub(super) fn global_rows(&self, local: &Tensor) -> Result<Tensor, Error> {
        let rows = self.rows.borrow();
        let longest = rows.iter().copied().max().unwrap_or(0);
        let n = local.size()[0];
        let detached = local.detach();
        let padded = match longest - n {
            0 => detached,
            pad => {
                let mut size = local.size();
                size[0] = pad;
                Tensor::cat(
                    &[
                        detached,
                        Tensor::zeros(size, (local.kind(), local.device())),
                    ],
                    0,
                )
            }
        };
        let parts = self.group.all_gather(&padded).map_err(collective)?;
        let parts: Vec<Tensor> = parts
            .into_iter()
            .zip(rows.iter())
            .enumerate()
            .map(|(rank, (p, &r))| match rank == self.rank() {
                true => local.shallow_clone(),
                false => p.narrow(0, 0, r).to_device(local.device()),
            })
            .collect();
        Ok(Tensor::cat(&parts, 0))
    }

    /// Sums every defined gradient of `params` over the ranks (in 25 MiB buckets).
    pub(super) fn sum_gradients(&self, params: &[(String, Tensor)]) -> Result<(), Error> {
        let mut grads: Vec<Tensor> = params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(Tensor::defined)
            .collect();
        self.group
            .all_reduce_sum_each(&mut grads)
            .map_err(collective)
    }
}

/// The fields (dotted paths) where `a` and `b` differ, with both values.
fn differing_fields(
    a: &serde_json::Value,
    b: &serde_json::Value,
    at: &str,
) -> Vec<(String, String, String)> {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    let null = serde_json::Value::Null;
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    differing_fields(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), &path)
                })
                .collect()
        }
        _ if a == b => Vec::new(),
        _ => vec![(at.to_string(), a.to_string(), b.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_fields_are_named_by_path() {
        let a = serde_json::json!({"config": {"lr": 0.3, "epochs": 4}, "model": {"widths": [1.0]}});
        let b = serde_json::json!({"config": {"lr": 0.5, "epochs": 4}, "model": {"widths": [1.0, 0.5]}});
        assert_eq!(
            differing_fields(&a, &b, ""),
            vec![
                (
                    "config.lr".to_string(),
                    "0.3".to_string(),
                    "0.5".to_string()
                ),
                (
                    "model.widths".to_string(),
                    "[1.0]".to_string(),
                    "[1.0,0.5]".to_string()
                ),
            ]
        );
        assert!(differing_fields(&a, &a, "").is_empty());
    }
}

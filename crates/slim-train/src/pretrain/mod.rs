//! SlimCLR pretraining (arXiv 2209.15525): every width runs forward on the same batch,
//! the losses are summed, one backward pass updates the shared weights.
//!
//! Frameworks: SimCLR (NT-Xent over the batch), MoCo v2 (a full-width momentum key
//! encoder and a queue of its keys) and MoCo v3 (a predictor on every width's query, the
//! full-width momentum keys of both views, in-batch negatives, no queue). SlimCLR's three
//! techniques, each switchable:
//! - slow start: only the full width trains until `slow_start_epoch`, then the
//!   sub-widths join and the learning rate re-peaks ([`Schedule`]);
//! - online distillation: the full width's detached similarity logits over
//!   [positive, negatives] teach each sub-width ([`loss::distillation`]);
//! - loss re-weighting by model size ([`LossWeights`]).
//!
//! Smoothed InfoNCE (arXiv 2212.07158) can replace the contrastive term. A checkpoint is
//! written atomically every `checkpoint_every` steps with everything `--resume` needs to
//! continue exactly: weights, head, momentum buffers, key encoder, queue, and the data
//! position (the loader's order and augmentations are functions of seed, epoch, index).
//!
//! The parts: [`config`] (what defines a run and where it stands), `resume`, `moco` (the
//! key encoder and queue), `objective` (the slimmable loss and one step), `trajectory`
//! (checkpoints for TWA), `run` (the loop and the checkpoint), [`data_parallel`] (ranks
//! of one run); the weight update is an [`Update`](crate::optim::Update).

pub mod config;
pub mod data_parallel;
mod moco;
mod objective;
mod resume;
mod run;
mod trajectory;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slim_data::Dataset;
use slim_data::augment::Augment;
use slim_data::loader::{Loader, LoaderConfig};
use tch::{Device, Kind, nn};

pub use config::{
    Augmentation, Framework, PretrainConfig, TrainState, TrajectoryConfig, TrajectoryPlan,
    TrajectoryUnit,
};
use data_parallel::DataParallel;
pub use data_parallel::Placement;
use moco::Moco;

use crate::head::{HeadLayout, SlimHead};
use crate::model::SyncBatchNorm;
use crate::optim::{Optimizer, Schedule, Update};
use crate::twa::{BasisReport, Subspace};
use crate::{Error, SlimNet};

pub struct Trainer {
    vs: nn::VarStore,
    net: SlimNet,
    head: SlimHead,
    /// MoCo v3's predictor.
    predictor: Option<SlimHead>,
    moco: Option<Moco>,
    update: Box<dyn Update>,
    /// What [`Subspace::build`] reported, for a TWA run.
    basis: Option<BasisReport>,
    schedule: Schedule,
    loader: Loader,
    state: TrainState,
    out: PathBuf,
    device: Device,
    /// The other ranks of a data-parallel run.
    dp: Option<DataParallel>,
}

/// The checkpoint a run in `out` writes and resumes from.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.join("checkpoint.safetensors")
}

/// Mixed precision, memory order and BatchNorm's statistics (split groups, or `sync`:
/// every rank's batch) as `config` asks.
fn tune(net: &mut SlimNet, config: &PretrainConfig, sync: Option<&Arc<SyncBatchNorm>>) {
    net.set_bn_splits(config.bn_splits);
    net.set_bn_sync(sync.cloned());
    if config.bf16 {
        net.set_compute_kind(Kind::BFloat16);
    }
    if config.channels_last {
        net.to_channels_last();
    }
}

/// The two-view loader of a run (rank `rank` of `ranks`): its augmentations at the crop
/// scale asked for, shuffled and seeded by the config.
pub fn loader(
    dataset: Arc<dyn Dataset>,
    model: &slim_core::ModelConfig,
    config: &PretrainConfig,
    workers: usize,
    (rank, ranks): (usize, usize),
) -> Loader {
    let augment = config.augmentation().views(model.input.image_size);
    let augment = augment
        .into_iter()
        .map(|aug| Augment {
            scale: config.crop_scale,
            ..aug
        })
        .collect();
    Loader::new(
        dataset,
        LoaderConfig {
            batch_size: config.batch_size,
            views: 2,
            augment,
            normalize: slim_data::transform::Normalize::from(&model.input),
            workers,
            seed: config.seed,
            shuffle: true,
            drop_last: true,
            prefetch: 2 * workers.max(1),
            color_on_device: config.augment_on_device,
        },
    )
    .shard(rank, ranks)
}

fn head_of(
    net: &SlimNet,
    vs: &nn::Path,
    c: &PretrainConfig,
    sync: Option<&Arc<SyncBatchNorm>>,
) -> SlimHead {
    let layout = match c.framework {
        Framework::Simclr => HeadLayout::Simclr,
        Framework::MocoV2 => HeadLayout::MocoV2,
        Framework::MocoV3 => HeadLayout::MocoV3Projector,
    };
    let sizes = (net.network().features, c.head_hidden.max(1), c.head_out);
    let mut head = SlimHead::new(vs, layout, sizes, net.widths(), net.config().bn_eps);
    head.set_bn_splits(c.bn_splits);
    head.set_bn_sync(sync.cloned());
    head
}

impl Trainer {
    /// A new run, or (with `resume`) the run whose checkpoint is in `out`, in one process
    /// on `device`. A resumed run keeps its stored [`PretrainConfig`]; a checkpoint of
    /// another architecture is refused. Initialisation draws from libtorch's process-wide
    /// generator, seeded here with the config's seed: runs are reproducible when no other
    /// thread draws from it meanwhile.
    pub fn new(
        model: &slim_core::ModelConfig,
        config: PretrainConfig,
        dataset: Arc<dyn Dataset>,
        out: &Path,
        resume: bool,
        device: Device,
        workers: usize,
    ) -> Result<Trainer, Error> {
        let placement = Placement::local(device, workers);
        Trainer::placed(model, config, dataset, out, resume, placement)
    }

    /// As [`Trainer::new`], as one rank of `placement.group` when it has one: every rank
    /// gives the same arguments (checked: the start fails naming what differs), the run's
    /// `config.ranks` equals the group's size, and every rank shares `out` (rank 0 writes,
    /// all read it on `resume`).
    pub fn placed(
        model: &slim_core::ModelConfig,
        config: PretrainConfig,
        dataset: Arc<dyn Dataset>,
        out: &Path,
        resume: bool,
        placement: Placement,
    ) -> Result<Trainer, Error> {
        let Placement {
            device,
            workers,
            group,
        } = placement;
        let dp = group.map(|g| DataParallel::new(g, device));
        let (rank, ranks) = dp.as_ref().map_or((0, 1), |d| (d.rank(), d.ranks()));
        std::fs::create_dir_all(out).map_err(|e| Error::Io {
            path: out.to_path_buf(),
            io: e,
        })?;
        let resumed = resume::read(out, model, resume)?;
        let config = resumed.as_ref().map_or(config, |(_, s)| s.config.clone());
        data_parallel::check(&config, ranks, resumed.is_some())?;
        tch::manual_seed(config.seed as i64);
        let vs = nn::VarStore::new(device);
        let mut net = SlimNet::new(&vs.root(), model)?;
        let sync = dp.as_ref().and_then(|d| d.sync_batch_norm(&config));
        tune(&mut net, &config, sync.as_ref());
        let head = head_of(
            &net,
            &(vs.root() / "train" / "head"),
            &config,
            sync.as_ref(),
        );
        let predictor = (config.framework == Framework::MocoV3).then(|| {
            let mut predictor = SlimHead::new(
                &(vs.root() / "train" / "predictor"),
                HeadLayout::MocoV3Predictor,
                (
                    config.head_out,
                    config.predictor_hidden.max(1),
                    config.head_out,
                ),
                net.widths(),
                net.config().bn_eps,
            );
            predictor.set_bn_splits(config.bn_splits);
            predictor.set_bn_sync(sync.clone());
            predictor
        });
        let params = crate::optim::trainable_named(&vs);
        let (update, basis): (Box<dyn Update>, _) = match &config.twa {
            Some(twa) => {
                let (subspace, report) =
                    Subspace::build(params, model, twa, &config.optimizer, device)?;
                // Start at the checkpoints' mean (a resumed run restores its own point).
                subspace.apply();
                (Box::new(subspace), Some(report))
            }
            None => (
                Box::new(Optimizer::new(config.optimizer.clone(), params)),
                None,
            ),
        };
        let mut moco = match config.framework.has_key_encoder() {
            true => Some(Moco::new(&vs, model, &config, device, sync.as_ref())?),
            false => None,
        };
        // TWA of a MoCo run: the objective's keys come from the run's own key encoder and
        // queue, as its last trajectory checkpoint holds them.
        if let (Some(m), Some(last)) = (
            &mut moco,
            config.twa.as_ref().and_then(|t| t.checkpoints.last()),
        ) {
            let c = slim_core::checkpoint::load(last)?;
            m.load(&c, device)
                .map_err(|msg| Error::Twa(format!("{}: {msg}", last.display())))?;
        }
        let loader = loader(dataset, model, &config, workers, (rank, ranks));
        let spe = loader.batches_per_epoch();
        if spe == 0 {
            return Err(Error::Data(slim_data::Error::at(
                out,
                format!(
                    "the dataset holds fewer images than one batch of {}",
                    config.batch_size
                ),
            )));
        }
        let schedule = Schedule {
            base_lr: config.lr,
            total_steps: config.epochs * spe,
            warmup_steps: config.warmup_epochs * spe,
            milestones: config.decay.milestones(config.epochs, spe),
            switch: (config.slow_start_epoch > 0 && config.slow_start_epoch < config.epochs)
                .then_some((
                    config.slow_start_epoch * spe,
                    config.slim_start_lr.unwrap_or(config.lr),
                )),
        };
        let state = TrainState {
            config,
            step: 0,
            epoch: 0,
            position: 0,
            queue_ptr: 0,
            skipped: 0,
        };
        let mut trainer = Trainer {
            vs,
            net,
            head,
            predictor,
            moco,
            update,
            basis,
            schedule,
            loader,
            state,
            out: out.to_path_buf(),
            device,
            dp,
        };
        if let Some((c, s)) = resumed {
            trainer.restore(&c, s)?;
        }
        if let Some(dp) = &trainer.dp {
            dp.agree(&serde_json::json!({ "model": model, "state": &trainer.state }))?;
            dp.broadcast_from_lead(&trainer.vs)?;
        }
        Ok(trainer)
    }

    /// Whether this process writes the run's files: rank 0, or the only process.
    pub fn lead(&self) -> bool {
        self.dp.as_ref().is_none_or(|d| d.rank() == 0)
    }
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    pub fn net(&self) -> &SlimNet {
        &self.net
    }

    /// Whether the run has taken all its steps.
    pub fn finished(&self) -> bool {
        self.state.step >= self.schedule.total_steps
    }

    /// The subspace of a TWA run.
    pub fn subspace(&self) -> Option<&Subspace> {
        self.update.subspace()
    }

    /// What building a TWA run's basis found.
    pub fn basis_report(&self) -> Option<&BasisReport> {
        self.basis.as_ref()
    }
}

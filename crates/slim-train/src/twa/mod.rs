//! Trainable Weight Averaging (TWA, arXiv 2205.13104) for slimmable networks.
//!
//! The trainable weights are constrained to the span of checkpoints from the training
//! trajectory: `w = Pᵀβ`, with `P` an orthonormal basis of the span (Gram-Schmidt, two
//! passes, linearly dependent checkpoints dropped) and `β` the coefficients that training
//! updates with the projected gradient `P g` (SGD with momentum in coefficient space,
//! which is projected-gradient SGD in weight space because `P` is orthonormal). Training
//! starts from the checkpoints' mean, the SWA point. Slicing a width out of the shared
//! weights is linear, so one `β` serves every width.
//!
//! [`Grouping::PerBlock`] gives every layer block (the stem, each residual block, the
//! probes, the projection head) its own basis and coefficients.
//!
//! The basis is kept per parameter tensor (`[rank, numel]` blocks of `P`'s columns), and
//! every operation is a sum over tensors of per-tensor products: Gram-Schmidt's inner
//! products, `P g`, and `Pᵀβ` (no sum at all). A process that holds only some tensors'
//! blocks computes partial sums of `rank` numbers; summing those across processes (an
//! all-reduce) is all a multi-process version needs, which is the paper's scheme for
//! large models. Memory: `rank × parameters` floats of basis, reported by [`Subspace::build`]
//! and bounded by its `max_bytes`.

mod compare;
mod files;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use slim_core::ModelConfig;
use tch::{Device, Kind, Tensor};

use crate::optim::Update;
use crate::{Error, checkpoint};

pub use compare::{Compared, comparison_table, swa_network};
pub use files::{basis_checkpoints, block_of, list_checkpoints, trajectory_dir};

/// Residual norm, relative to the checkpoint's own norm, under which a checkpoint counts
/// as linearly dependent on the ones before it and adds no direction.
const DEPENDENT_TOLERANCE: f64 = 1e-5;

/// One set of coefficients for all weights, or one per layer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grouping {
    Global,
    PerBlock,
}

/// What TWA trains in: the checkpoints spanning the subspace and how it is grouped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TwaConfig {
    pub checkpoints: Vec<PathBuf>,
    pub grouping: Grouping,
    /// Refuse a basis larger than this many bytes.
    pub max_basis_bytes: usize,
}

/// What [`Subspace::build`] found.
#[derive(Clone, Debug, Serialize)]
pub struct BasisReport {
    pub checkpoints: usize,
    /// Trainable parameters (scalars) in the subspace.
    pub parameters: usize,
    /// (block, rank) per group.
    pub ranks: Vec<(String, usize)>,
    /// (checkpoint, block) pairs that added no direction (linearly dependent).
    pub dependent: Vec<(PathBuf, String)>,
    /// Bytes of the basis (float32).
    pub basis_bytes: usize,
}

struct Group {
    label: String,
    /// Indices into `Subspace::params`.
    members: Vec<usize>,
    /// Per member: `[rank, numel]`, orthonormal rows over the group's members together.
    basis: Vec<Tensor>,
    /// Coefficients of the checkpoints' mean.
    mean: Tensor,
    coef: Tensor,
    velocity: Tensor,
}

/// The span of some checkpoints, with coefficients that place the model's weights in it.
pub struct Subspace {
    params: Vec<(String, Tensor)>,
    groups: Vec<Group>,
    momentum: f64,
    weight_decay: f64,
}

fn dot(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x * y).sum(Kind::Double).double_value(&[]))
        .sum()
}

impl Subspace {
    /// The orthonormal basis of `checkpoints`' values of `params` (the model's trainable
    /// variables, by checkpoint name), grouped by `grouping`, with the coefficients set to
    /// the checkpoints' mean. Every checkpoint must hold `config`'s model; fewer than two
    /// checkpoints, another architecture or widths, a missing tensor, or a basis over
    /// `max_bytes` is an error naming the file.
    pub fn build(
        params: Vec<(String, Tensor)>,
        config: &ModelConfig,
        twa: &TwaConfig,
        optimizer: &crate::optim::OptimizerConfig,
        device: Device,
    ) -> Result<(Subspace, BasisReport), Error> {
        let paths = &twa.checkpoints;
        if paths.len() < 2 {
            return Err(Error::Twa(format!(
                "TWA needs at least two checkpoints to span a subspace, got {}{}",
                paths.len(),
                paths
                    .first()
                    .map_or(String::new(), |p| format!(" ({})", p.display()))
            )));
        }
        let parameters: usize = params.iter().map(|(_, t)| t.numel()).sum();
        let worst = paths.len() * parameters * 4;
        if worst > twa.max_basis_bytes {
            return Err(Error::Twa(format!(
                "a basis of {} checkpoints x {parameters} parameters needs up to {:.1} MiB, over the limit of {:.1} MiB: use fewer checkpoints or raise the limit",
                paths.len(),
                worst as f64 / (1 << 20) as f64,
                twa.max_basis_bytes as f64 / (1 << 20) as f64
            )));
        }
        let network = config.network();
        let mut labels: Vec<String> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, (name, _)) in params.iter().enumerate() {
            let label = match twa.grouping {
                Grouping::Global => "all".to_string(),
                Grouping::PerBlock => block_of(&network, name),
            };
            match labels.iter().position(|l| *l == label) {
                Some(g) => members[g].push(i),
                None => {
                    labels.push(label);
                    members.push(vec![i]);
                }
            }
        }
        // rows[g][r][m]: basis row r of group g, member m, flattened.
        let mut rows: Vec<Vec<Vec<Tensor>>> = labels.iter().map(|_| Vec::new()).collect();
        let mut mean: Vec<Tensor> = params
            .iter()
            .map(|(_, t)| Tensor::zeros([t.numel() as i64], (Kind::Float, device)))
            .collect();
        let mut dependent = Vec::new();
        let n = paths.len() as f64;
        for path in paths {
            let c = slim_core::checkpoint::load(path)?;
            if c.config.backbone != config.backbone || c.config.widths != config.widths {
                return Err(Error::Twa(format!(
                    "{}: holds {} at widths {:?}, but the first checkpoint holds {} at widths {:?}",
                    path.display(),
                    c.config.backbone.name(),
                    c.config.widths,
                    config.backbone.name(),
                    config.widths
                )));
            }
            if &c.config != config {
                return Err(Error::Twa(format!(
                    "{}: its model config (channels, size, classes or normalization) differs from the first checkpoint's",
                    path.display()
                )));
            }
            let values: Vec<Tensor> = params
                .iter()
                .map(|(name, t)| {
                    let v = c.tensors.get(name).ok_or_else(|| {
                        Error::Twa(format!(
                            "{}: holds no tensor {name} (a trajectory checkpoint of `slim-train pretrain --trajectory-every` holds the model and the projection head)",
                            path.display()
                        ))
                    })?;
                    let v = checkpoint::from_core(v, device)?;
                    if v.size() != t.size() {
                        return Err(Error::Twa(format!(
                            "{}: tensor {name} has shape {:?}, the model's is {:?}",
                            path.display(),
                            v.size(),
                            t.size()
                        )));
                    }
                    Ok(v.flatten(0, -1))
                })
                .collect::<Result<_, Error>>()?;
            for (m, v) in mean.iter_mut().zip(&values) {
                *m += v / n;
            }
            for (g, group) in members.iter().enumerate() {
                let mut v: Vec<Tensor> = group.iter().map(|&i| values[i].copy()).collect();
                let norm0 = dot(&v, &v).sqrt();
                // Classical Gram-Schmidt twice ("twice is enough") keeps the basis
                // orthonormal to float32 precision.
                for _ in 0..2 {
                    for row in &rows[g] {
                        let c = dot(&v, row);
                        for (x, b) in v.iter_mut().zip(row) {
                            *x -= b * c;
                        }
                    }
                }
                let norm = dot(&v, &v).sqrt();
                if norm0 == 0.0 || norm <= DEPENDENT_TOLERANCE * norm0 {
                    dependent.push((path.clone(), labels[g].clone()));
                    continue;
                }
                rows[g].push(v.into_iter().map(|x| x / norm).collect());
            }
        }
        let mut groups = Vec::new();
        let mut basis_bytes = 0;
        for ((label, group), group_rows) in labels.into_iter().zip(members).zip(rows) {
            let rank = group_rows.len();
            let basis: Vec<Tensor> = (0..group.len())
                .map(|m| Tensor::stack(&group_rows.iter().map(|r| &r[m]).collect::<Vec<_>>(), 0))
                .collect();
            basis_bytes += basis.iter().map(|b| b.numel() * 4).sum::<usize>();
            let mean_g: Vec<Tensor> = group.iter().map(|&i| mean[i].shallow_clone()).collect();
            let coef = project(&basis, &mean_g);
            groups.push(Group {
                label,
                members: group,
                basis,
                velocity: coef.zeros_like(),
                mean: coef.copy(),
                coef,
            });
            debug_assert!(rank > 0);
        }
        let report = BasisReport {
            checkpoints: paths.len(),
            parameters,
            ranks: groups
                .iter()
                .map(|g| (g.label.clone(), g.coef.numel()))
                .collect(),
            dependent,
            basis_bytes,
        };
        let subspace = Subspace {
            params,
            groups,
            momentum: optimizer.momentum,
            weight_decay: optimizer.weight_decay,
        };
        Ok((subspace, report))
    }

    /// Writes `Pᵀβ` into the parameters.
    pub fn apply(&self) {
        tch::no_grad(|| {
            for g in &self.groups {
                for (&i, b) in g.members.iter().zip(&g.basis) {
                    let w = g.coef.unsqueeze(0).matmul(b).squeeze_dim(0);
                    let p = &self.params[i].1;
                    p.shallow_clone().copy_(&w.view(p.size().as_slice()));
                }
            }
        });
    }

    /// The weights at the checkpoints' mean (the SWA point), by name, without touching
    /// the parameters.
    pub fn mean_weights(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for g in &self.groups {
            for (&i, b) in g.members.iter().zip(&g.basis) {
                let (name, p) = &self.params[i];
                let w = g.mean.unsqueeze(0).matmul(b).squeeze_dim(0);
                out.push((name.clone(), w.view(p.size().as_slice())));
            }
        }
        out
    }

    /// `(name, rank)` of every group.
    pub fn ranks(&self) -> Vec<(String, usize)> {
        self.groups
            .iter()
            .map(|g| (g.label.clone(), g.coef.numel()))
            .collect()
    }

    /// The parameters' distance from the span, relative to their norm: `‖w - PᵀPw‖ / ‖w‖`.
    pub fn off_span(&self) -> f64 {
        let (mut res, mut total) = (0.0, 0.0);
        tch::no_grad(|| {
            for g in &self.groups {
                let w: Vec<Tensor> = g
                    .members
                    .iter()
                    .map(|&i| self.params[i].1.flatten(0, -1))
                    .collect();
                let c = project(&g.basis, &w);
                for (x, b) in w.iter().zip(&g.basis) {
                    let r = x - c.unsqueeze(0).matmul(b).squeeze_dim(0);
                    res += (&r * &r).sum(Kind::Double).double_value(&[]);
                    total += (x * x).sum(Kind::Double).double_value(&[]);
                }
            }
        });
        (res / total.max(f64::MIN_POSITIVE)).sqrt()
    }
}

impl Update for Subspace {
    fn params_mut(&mut self) -> &mut [(String, Tensor)] {
        &mut self.params
    }

    /// One SGD-with-momentum step on the coefficients from the projected gradient `P g`
    /// (weight decay acts on `β`, which is `‖w‖²`'s gradient in the span), then `Pᵀβ`.
    fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for g in &mut self.groups {
                let grads: Vec<Tensor> = g
                    .members
                    .iter()
                    .map(|&i| {
                        let p = &self.params[i].1;
                        let grad = p.grad();
                        if grad.defined() {
                            grad.flatten(0, -1)
                        } else {
                            p.zeros_like().flatten(0, -1)
                        }
                    })
                    .collect();
                let mut update = project(&g.basis, &grads);
                if self.weight_decay > 0.0 {
                    update += &g.coef * self.weight_decay;
                }
                let _ = g.velocity.g_mul_scalar_(self.momentum).g_add_(&update);
                let _ = g.coef.g_sub_(&(&g.velocity * lr));
            }
        });
        self.apply();
    }

    /// Coefficients and momentum as `(name, tensor)` for a checkpoint.
    fn state(&self) -> Vec<(String, &Tensor)> {
        self.groups
            .iter()
            .flat_map(|g| {
                [
                    (format!("twa.{}.coef", g.label), &g.coef),
                    (format!("twa.{}.velocity", g.label), &g.velocity),
                ]
            })
            .collect()
    }

    /// Restores coefficients and momentum found by `get(name)`, then applies them;
    /// returns how many tensors were restored.
    fn restore(&mut self, get: &mut dyn FnMut(&str) -> Option<Tensor>) -> usize {
        let mut n = 0;
        tch::no_grad(|| {
            for g in &mut self.groups {
                for (field, t) in [("coef", &mut g.coef), ("velocity", &mut g.velocity)] {
                    if let Some(v) = get(&format!("twa.{}.{field}", g.label))
                        && v.size() == t.size()
                    {
                        t.copy_(&v);
                        n += 1;
                    }
                }
            }
        });
        self.apply();
        n
    }

    fn subspace(&self) -> Option<&Subspace> {
        Some(self)
    }
}

/// `P x` for a basis split by member: `Σ_m basis_m x_m`, a `[rank]` vector.
fn project(basis: &[Tensor], x: &[Tensor]) -> Tensor {
    basis
        .iter()
        .zip(x)
        .map(|(b, v)| b.matmul(v))
        .reduce(|a, b| a + b)
        .expect("a group has members")
}

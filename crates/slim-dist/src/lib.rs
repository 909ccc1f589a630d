//! Data-parallel collectives on libtorch's own c10d, the engine PyTorch's DDP uses: ranks
//! meet at a `TCPStore` served by rank 0 and talk through the Gloo backend (CPU tensors)
//! or, built with the `nccl` feature, NCCL (CUDA tensors).
//!
//! [`Rendezvous`] is where and who: read from the variables torchrun sets (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) or given directly.
//! [`Group::join`] meets the other ranks; its collectives block until every rank has
//! called them, and fail with [`Error::Collective`] (never hang past the timeout) when a
//! rank is gone.

mod env;

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_void};
use std::time::Duration;

use tch::{Kind, Tensor};

pub use env::{Backend, Rendezvous};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A launch variable (or the flag standing for it) that cannot be used.
    #[error("{name}={value:?}: {problem}")]
    Launch {
        name: &'static str,
        value: String,
        problem: String,
    },
    /// What c10d reported for a collective (a rank gone, a timeout, a refused address).
    #[error("rank {rank} of {world}: {op} failed: {message}")]
    Collective {
        op: &'static str,
        rank: usize,
        world: usize,
        message: String,
    },
}

unsafe extern "C" {
    fn slim_dist_free_error(e: *mut c_char);
    fn slim_dist_new(
        addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_long,
        ifname: *const c_char,
        nccl: c_int,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn slim_dist_drop(g: *mut c_void);
    fn slim_dist_all_reduce_sum(g: *mut c_void, t: *mut c_void) -> *mut c_char;
    fn slim_dist_all_reduce_sum_grad(
        g: *mut c_void,
        t: *mut c_void,
        out: *mut *mut torch_sys::C_tensor,
    ) -> *mut c_char;
    fn slim_dist_all_gather(
        g: *mut c_void,
        t: *mut c_void,
        world: c_int,
        out: *mut *mut torch_sys::C_tensor,
    ) -> *mut c_char;
    fn slim_dist_broadcast(g: *mut c_void, t: *mut c_void, root: c_int) -> *mut c_char;
    fn slim_dist_barrier(g: *mut c_void) -> *mut c_char;
    fn slim_dist_take_busy_ns(g: *mut c_void) -> i64;
}

/// Takes the C side's error string, if any.
fn checked(e: *mut c_char) -> Result<(), String> {
    if e.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null error is a NUL-terminated string the C side malloc'd for us.
    let message = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
    unsafe { slim_dist_free_error(e) };
    Err(message)
}

fn handle(t: &Tensor) -> *mut c_void {
    t.as_ptr() as *mut c_void
}

/// One rank's membership of a process group.
pub struct Group {
    raw: *mut c_void,
    rank: usize,
    world: usize,
}

// SAFETY: a c10d process group may be used from any thread, and by several at once (its
// collectives are queued in call order); `raw` is only freed on drop.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: `raw` came from slim_dist_new and is dropped once.
        unsafe { slim_dist_drop(self.raw) }
    }
}

/// Gradients are summed in flat buckets of at most this many bytes (DDP's default).
const BUCKET_BYTES: i64 = 25 << 20;

impl Group {
    /// Meets the other ranks: rank 0 serves the store at `MASTER_ADDR:MASTER_PORT`, the
    /// others connect to it; all wait up to `timeout` for each other.
    pub fn join(r: &Rendezvous) -> Result<Group, Error> {
        let err = |message: String| Error::Collective {
            op: "joining the group",
            rank: r.rank,
            world: r.world,
            message,
        };
        let addr = CString::new(r.addr.as_str()).map_err(|e| err(e.to_string()))?;
        let ifname =
            CString::new(r.ifname.clone().unwrap_or_default()).map_err(|e| err(e.to_string()))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C strings; `raw` is written only on success.
        let e = unsafe {
            slim_dist_new(
                addr.as_ptr(),
                c_int::from(r.port),
                r.rank as c_int,
                r.world as c_int,
                r.timeout.as_millis().min(c_long::MAX as u128) as c_long,
                ifname.as_ptr(),
                c_int::from(r.backend == Backend::Nccl),
                &mut raw,
            )
        };
        checked(e).map_err(err)?;
        Ok(Group {
            raw,
            rank: r.rank,
            world: r.world,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    fn fail(&self, op: &'static str) -> impl FnOnce(String) -> Error {
        let (rank, world) = (self.rank, self.world);
        move |message| Error::Collective {
            op,
            rank,
            world,
            message,
        }
    }

    /// Sums `t` over the ranks, in place.
    ///
    /// # Panics
    /// If `t` is not contiguous (a collective writes its storage directly).
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), Error> {
        assert!(
            t.is_contiguous(),
            "all_reduce_sum needs a contiguous tensor"
        );
        // SAFETY: `raw` is live; `t` is a live tensor handle.
        checked(unsafe { slim_dist_all_reduce_sum(self.raw, handle(t)) })
            .map_err(self.fail("all-reduce"))
    }

    /// The sum of `t` over the ranks, as a new tensor the gradient flows through: in the
    /// backward pass each rank's gradient of `t` becomes the sum of every rank's gradient
    /// of the result (synchronised BatchNorm's statistics). Every rank must then run its
    /// backward pass, which all-reduces too.
    pub fn all_reduce_sum_differentiable(&self, t: &Tensor) -> Result<Tensor, Error> {
        let mut out = std::ptr::null_mut();
        // SAFETY: `raw` is live; `out` receives a new tensor we own, on success.
        checked(unsafe { slim_dist_all_reduce_sum_grad(self.raw, handle(t), &mut out) })
            .map_err(self.fail("differentiable all-reduce"))?;
        // SAFETY: a new tensor handle the C side allocated for us.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// Sums every tensor of `tensors` (float32, each contiguous or not) over the ranks, in
    /// place, in flat buckets of up to 25 MiB: one collective per bucket instead of one per
    /// tensor.
    pub fn all_reduce_sum_each(&self, tensors: &mut [Tensor]) -> Result<(), Error> {
        let mut start = 0;
        while start < tensors.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < tensors.len()
                && (end == start || bytes + 4 * tensors[end].numel() as i64 <= BUCKET_BYTES)
            {
                bytes += 4 * tensors[end].numel() as i64;
                end += 1;
            }
            let flat: Vec<Tensor> = tensors[start..end]
                .iter()
                .map(|t| t.to_kind(Kind::Float).reshape([-1]))
                .collect();
            let mut bucket = Tensor::cat(&flat, 0);
            self.all_reduce_sum(&mut bucket)?;
            let mut offset = 0;
            for t in &mut tensors[start..end] {
                let n = t.numel() as i64;
                let part = bucket.narrow(0, offset, n).view_as(t).to_kind(t.kind());
                t.copy_(&part);
                offset += n;
            }
            start = end;
        }
        Ok(())
    }

    /// Every rank's `t` (the same shape on every rank), in rank order. No gradient flows
    /// through the result.
    pub fn all_gather(&self, t: &Tensor) -> Result<Vec<Tensor>, Error> {
        let mut out = vec![std::ptr::null_mut(); self.world];
        // SAFETY: `out` has room for `world` handles, which the C side fills on success.
        checked(unsafe {
            slim_dist_all_gather(self.raw, handle(t), self.world as c_int, out.as_mut_ptr())
        })
        .map_err(self.fail("all-gather"))?;
        // SAFETY: each handle is a new tensor the C side allocated for us to own.
        Ok(out
            .into_iter()
            .map(|p| unsafe { Tensor::from_ptr(p) })
            .collect())
    }

    /// Rank `root`'s `t` into every rank's `t`, in place.
    ///
    /// # Panics
    /// If `t` is not contiguous.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), Error> {
        assert!(t.is_contiguous(), "broadcast needs a contiguous tensor");
        // SAFETY: as in all_reduce_sum.
        checked(unsafe { slim_dist_broadcast(self.raw, handle(t), root as c_int) })
            .map_err(self.fail("broadcast"))
    }

    /// The time spent in this group's collectives (all-reduce, all-gather, broadcast,
    /// including those a backward pass runs) since the last call.
    pub fn take_busy(&self) -> Duration {
        // SAFETY: `raw` is live.
        let ns = unsafe { slim_dist_take_busy_ns(self.raw) };
        Duration::from_nanos(ns.max(0) as u64)
    }

    /// Waits until every rank has come here.
    pub fn barrier(&self) -> Result<(), Error> {
        // SAFETY: `raw` is live.
        checked(unsafe { slim_dist_barrier(self.raw) }).map_err(self.fail("barrier"))
    }
}

//! Who and where a rank is, from the variables torchrun sets for each process it starts.

use std::time::Duration;

use crate::Error;

/// One rank's place in a group and how to reach rank 0's store.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendezvous {
    pub rank: usize,
    pub world: usize,
    /// The rank among this machine's processes (its device index on a GPU machine).
    pub local_rank: usize,
    pub addr: String,
    pub port: u16,
    /// How long a rank waits for the others (joining, and in each collective).
    pub timeout: Duration,
    /// The network interface Gloo binds (`GLOO_SOCKET_IFNAME`, as torch.distributed
    /// reads it); `None`: the one this machine's hostname resolves to.
    pub ifname: Option<String>,
    pub backend: Backend,
}

/// The collective library under the group: Gloo (CPU tensors, and CUDA ones through the
/// host), or NCCL (CUDA tensors; built with the `nccl` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    Nccl,
}

impl Backend {
    /// Whether this build has the NCCL backend.
    pub const NCCL_BUILT: bool = cfg!(feature = "nccl");
}

impl Rendezvous {
    /// The variables torchrun sets: `WORLD_SIZE`, `RANK`, `LOCAL_RANK` (default: `RANK`),
    /// `MASTER_ADDR`, `MASTER_PORT`, and `GLOO_SOCKET_IFNAME` if set; the backend is Gloo
    /// (the caller picks NCCL for GPU ranks). `Ok(None)` when
    /// `WORLD_SIZE` is unset: not a distributed launch. `get` reads one variable
    /// (`std::env::var(..).ok()` in a process).
    pub fn from_vars(
        get: impl Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Option<Rendezvous>, Error> {
        let Some(world) = get("WORLD_SIZE") else {
            return Ok(None);
        };
        let number = |name: &'static str, value: &str| {
            value.trim().parse::<usize>().map_err(|e| Error::Launch {
                name,
                value: value.to_string(),
                problem: format!("not a whole number ({e})"),
            })
        };
        let required = |name: &'static str| {
            get(name).ok_or_else(|| Error::Launch {
                name,
                value: String::new(),
                problem:
                    "unset, while WORLD_SIZE is set (torchrun and `slim-train launch` set both)"
                        .into(),
            })
        };
        let world_n = number("WORLD_SIZE", &world)?;
        if world_n == 0 {
            return Err(Error::Launch {
                name: "WORLD_SIZE",
                value: world,
                problem: "a group needs at least one rank".into(),
            });
        }
        let rank_s = required("RANK")?;
        let rank = number("RANK", &rank_s)?;
        if rank >= world_n {
            return Err(Error::Launch {
                name: "RANK",
                value: rank_s,
                problem: format!("ranks run from 0 to WORLD_SIZE - 1 = {}", world_n - 1),
            });
        }
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => number("LOCAL_RANK", &v)?,
            None => rank,
        };
        let addr = required("MASTER_ADDR")?;
        if addr.trim().is_empty() {
            return Err(Error::Launch {
                name: "MASTER_ADDR",
                value: addr,
                problem: "empty: name rank 0's host".into(),
            });
        }
        let port_s = required("MASTER_PORT")?;
        let port = match port_s.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(Error::Launch {
                    name: "MASTER_PORT",
                    value: port_s,
                    problem: "not a TCP port (1 to 65535)".into(),
                });
            }
        };
        Ok(Some(Rendezvous {
            rank,
            world: world_n,
            local_rank,
            addr: addr.trim().to_string(),
            port,
            timeout,
            ifname: get("GLOO_SOCKET_IFNAME").filter(|s| !s.is_empty()),
            backend: Backend::Gloo,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Result<Option<Rendezvous>, Error> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Rendezvous::from_vars(|k| map.get(k).cloned(), Duration::from_secs(5))
    }

    #[test]
    fn torchrun_s_variables_give_a_rendezvous() {
        let r = vars(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((r.rank, r.world, r.local_rank, r.port), (3, 4, 1, 29500));
        assert_eq!(r.addr, "node0");
        assert_eq!(r.ifname, None);
        assert_eq!(vars(&[]).unwrap(), None, "no WORLD_SIZE: not distributed");
    }

    #[test]
    fn bad_variables_are_named() {
        let base = [
            ("WORLD_SIZE", "2"),
            ("RANK", "0"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ];
        let with = |k: &str, v: &str| {
            let mut p: Vec<(&str, &str)> = base.iter().copied().filter(|(n, _)| *n != k).collect();
            if !v.is_empty() {
                p.push((k, v));
            }
            vars(&p).unwrap_err().to_string()
        };
        let e = with("RANK", "2");
        assert!(
            e.starts_with("RANK=\"2\"") && e.contains("WORLD_SIZE - 1 = 1"),
            "{e}"
        );
        assert!(with("WORLD_SIZE", "0").contains("at least one rank"));
        assert!(with("WORLD_SIZE", "two").contains("not a whole number"));
        assert!(with("MASTER_PORT", "70000").contains("not a TCP port"));
        assert!(with("MASTER_ADDR", "").starts_with("MASTER_ADDR"));
        assert!(with("RANK", "").contains("unset"));
    }
}

//! `slim-train launch`: starts the ranks of a data-parallel run on this machine, one
//! process each, with the variables torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), and stops them all when one fails.
//! On several machines, run it on each with the same `--nnodes`, `--master-addr` and
//! `--master-port` and its own `--node-rank`.

use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::args::positive;

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Processes (ranks) on this machine: one per GPU, or one per group of CPU cores.
    #[arg(long, value_parser = positive)]
    pub nproc: usize,
    /// Machines in the run.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub nnodes: usize,
    /// This machine's index among them (0 serves the rendezvous).
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// Address of machine 0, which every rank can reach.
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port of the rendezvous on machine 0 (default: a free port; several machines must
    /// name one).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// The command each rank runs: `pretrain` and its flags, every rank the same.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// A port nothing listens on now, for a one-machine run.
fn free_port(addr: &str) -> Result<u16> {
    let listener = std::net::TcpListener::bind((addr, 0))
        .with_context(|| format!("--master-addr {addr}: cannot bind a port there"))?;
    Ok(listener.local_addr()?.port())
}

pub fn launch(a: &LaunchArgs) -> Result<()> {
    if a.command.first().map(String::as_str) != Some("pretrain") {
        bail!(
            "launch runs `pretrain` on every rank (got {:?}): slim-train launch --nproc N -- pretrain --data ... --out ...",
            a.command.first().map_or("nothing", String::as_str)
        );
    }
    if a.node_rank >= a.nnodes {
        bail!(
            "--node-rank {} is not below --nnodes {}",
            a.node_rank,
            a.nnodes
        );
    }
    if a.nnodes > 1 && a.master_port.is_none() {
        bail!(
            "--master-port: a run on {} machines must name the port every machine meets at",
            a.nnodes
        );
    }
    let port = match a.master_port {
        Some(p) => p,
        None => free_port(&a.master_addr)?,
    };
    let world = a.nnodes * a.nproc;
    let exe = std::env::current_exe().context("finding this program to start its ranks")?;
    // As torchrun: one OpenMP thread per rank unless the caller chose (N ranks of all
    // cores each would oversubscribe the machine).
    let threads = std::env::var("OMP_NUM_THREADS").ok();
    if threads.is_none() && a.nproc > 1 {
        eprintln!(
            "launch: OMP_NUM_THREADS=1 for each rank (set it to give each rank more threads)"
        );
    }
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(a.nproc);
    for local in 0..a.nproc {
        let rank = a.node_rank * a.nproc + local;
        let mut command = Command::new(&exe);
        command
            .args(&a.command)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("LOCAL_WORLD_SIZE", a.nproc.to_string())
            .env("MASTER_ADDR", &a.master_addr)
            .env("MASTER_PORT", port.to_string());
        if threads.is_none() && a.nproc > 1 {
            command.env("OMP_NUM_THREADS", "1");
        }
        match command.spawn() {
            Ok(child) => children.push((rank, child)),
            Err(e) => {
                stop(&mut children);
                return Err(e).with_context(|| format!("starting rank {rank}"));
            }
        }
    }
    eprintln!(
        "launch: ranks {}..{} of {world} started, rendezvous at {}:{port}",
        a.node_rank * a.nproc,
        (a.node_rank + 1) * a.nproc - 1,
        a.master_addr
    );
    let failed = wait_all(&mut children)?;
    if let Some((rank, status)) = failed {
        stop(&mut children);
        bail!("rank {rank} failed ({status}); the other ranks were stopped");
    }
    Ok(())
}

/// Waits until every child has exited, or one has failed: that one's rank and status.
fn wait_all(children: &mut Vec<(usize, Child)>) -> Result<Option<(usize, ExitStatus)>> {
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            let (rank, child) = &mut children[i];
            match child
                .try_wait()
                .with_context(|| format!("waiting for rank {rank}"))?
            {
                Some(status) if status.success() => {
                    children.remove(i);
                }
                Some(status) => {
                    let rank = *rank;
                    children.remove(i);
                    return Ok(Some((rank, status)));
                }
                None => i += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(None)
}

/// Kills the ranks still running and reaps them.
fn stop(children: &mut Vec<(usize, Child)>) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
    children.clear();
}

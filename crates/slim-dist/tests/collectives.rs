//! Two ranks in two threads of this process, each with its own c10d group (c10d allows
//! that): the collectives' values, and a rank that leaves making the other fail instead of
//! hanging. (slim-train's tests run ranks as separate processes.)

use std::time::{Duration, Instant};

use slim_dist::{Backend, Group, Rendezvous};
use tch::Tensor;

fn rendezvous(rank: usize, world: usize, port: u16, timeout: Duration) -> Rendezvous {
    Rendezvous {
        rank,
        world,
        local_rank: rank,
        addr: "127.0.0.1".into(),
        port,
        timeout,
        ifname: Some("lo".into()),
        backend: Backend::Gloo,
    }
}

/// Runs `f(group)` on each of `world` ranks, each in its own thread.
fn ranks<T: Send + 'static>(
    world: usize,
    timeout: Duration,
    f: impl Fn(Group) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let port = slim_test_utils::free_port();
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let f = f.clone();
            std::thread::spawn(move || {
                f(Group::join(&rendezvous(rank, world, port, timeout)).unwrap())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.reshape([-1])).unwrap()
}

#[test]
fn collectives_give_every_rank_the_same_values() {
    let out = ranks(2, Duration::from_secs(60), |g| {
        let r = g.rank() as f32;
        let mut sum = Tensor::from_slice(&[1.0f32 + r, 10.0 * r]);
        g.all_reduce_sum(&mut sum).unwrap();
        let gathered = g
            .all_gather(&Tensor::from_slice(&[r, r + 0.5]).view([1, 2]))
            .unwrap();
        let mut b = Tensor::from_slice(&[r + 7.0]);
        g.broadcast(&mut b, 1).unwrap();
        // Buckets: a float matrix, a non-contiguous view's copy and a double vector.
        let mut each = vec![
            Tensor::from_slice(&[r; 6]).view([2, 3]),
            Tensor::from_slice(&[1.0f64 + r as f64, 2.0]),
        ];
        g.all_reduce_sum_each(&mut each).unwrap();
        g.barrier().unwrap();
        assert!(g.take_busy() > Duration::ZERO && g.take_busy() == Duration::ZERO);
        (
            values(&sum),
            gathered.iter().map(values).collect::<Vec<_>>(),
            values(&b),
            values(&each[0]),
            Vec::<f64>::try_from(&each[1]).unwrap(),
        )
    });
    for (sum, gathered, b, each0, each1) in out {
        assert_eq!(sum, vec![3.0, 10.0]);
        assert_eq!(gathered, vec![vec![0.0, 0.5], vec![1.0, 1.5]]);
        assert_eq!(b, vec![8.0]);
        assert_eq!(each0, vec![1.0; 6]);
        assert_eq!(each1, vec![3.0, 4.0]);
    }
}

#[test]
fn a_rank_that_leaves_fails_the_others_instead_of_hanging() {
    let timeout = Duration::from_secs(20);
    let out = ranks(2, timeout, |g| {
        if g.rank() == 1 {
            drop(g);
            return None;
        }
        let start = Instant::now();
        let mut t = Tensor::from_slice(&[1.0f32]);
        let e = g.all_reduce_sum(&mut t).unwrap_err();
        Some((e.to_string(), start.elapsed()))
    });
    let (message, waited) = out[0].clone().unwrap();
    assert!(
        message.starts_with("rank 0 of 2: all-reduce failed"),
        "{message}"
    );
    assert!(
        waited <= timeout + Duration::from_secs(10),
        "waited {waited:?}"
    );
}

#[test]
fn nobody_at_the_address_is_an_error_after_the_timeout() {
    let r = Rendezvous {
        rank: 1,
        ..rendezvous(1, 2, slim_test_utils::free_port(), Duration::from_secs(2))
    };
    let e = Group::join(&r)
        .err()
        .expect("no rank 0 serves the store")
        .to_string();
    assert!(
        e.starts_with("rank 1 of 2: joining the group failed"),
        "{e}"
    );
}

#[test]
fn the_differentiable_sum_sends_every_rank_the_sum_of_the_gradients() {
    let out = ranks(2, Duration::from_secs(60), |g| {
        let r = g.rank() as f64;
        let x = Tensor::from_slice(&[1.0 + r, 2.0]).set_requires_grad(true);
        let sum = g.all_reduce_sum_differentiable(&x).unwrap();
        // Rank r's loss: (r + 1) * sum[0] + sum[1]^2.
        let loss = sum.get(0) * (r + 1.0) + sum.get(1) * sum.get(1);
        loss.backward();
        (
            Vec::<f64>::try_from(&sum).unwrap(),
            Vec::<f64>::try_from(x.grad()).unwrap(),
        )
    });
    for (sum, grad) in out {
        assert_eq!(sum, vec![3.0, 4.0]);
        // d/dx of the two ranks' losses added: (1 + 2, 2 * 4 + 2 * 4).
        assert_eq!(grad, vec![3.0, 16.0]);
    }
}

#[test]
fn nccl_is_refused_by_a_build_without_it() {
    if Backend::NCCL_BUILT {
        return;
    }
    let r = Rendezvous {
        backend: Backend::Nccl,
        ..rendezvous(0, 1, slim_test_utils::free_port(), Duration::from_secs(10))
    };
    let e = Group::join(&r)
        .err()
        .expect("no NCCL in this build")
        .to_string();
    assert!(e.contains("this build has no NCCL backend"), "{e}");
}

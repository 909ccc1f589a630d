//! Where one graph's time goes: the wall time of every node of the plan that runs it,
//! averaged over runs and summed by operator, as tract's own profiler reports it.

use std::fmt::Write as _;

/// One node's mean time per run.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTime {
    pub node: String,
    /// The operator, as the engine names it (tract: e.g. `Conv`, `OptMatMul`, `Add`).
    pub op: String,
    pub ms: f64,
}

/// The profile of `runs` runs at batch `batch`.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub batch: usize,
    pub runs: usize,
    /// Nodes in evaluation order.
    pub nodes: Vec<NodeTime>,
}

/// One operator's share of a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    pub op: String,
    pub nodes: usize,
    pub ms: f64,
}

impl Profile {
    /// Mean time per run spent in the nodes.
    pub fn total_ms(&self) -> f64 {
        self.nodes.iter().map(|n| n.ms).sum()
    }

    /// Time per operator, most expensive first.
    pub fn by_op(&self) -> Vec<OpTime> {
        let mut ops: Vec<OpTime> = Vec::new();
        for n in &self.nodes {
            match ops.iter_mut().find(|o| o.op == n.op) {
                Some(o) => {
                    o.nodes += 1;
                    o.ms += n.ms;
                }
                None => ops.push(OpTime {
                    op: n.op.clone(),
                    nodes: 1,
                    ms: n.ms,
                }),
            }
        }
        ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        ops
    }

    /// A markdown table of the operators, with their share of the total.
    pub fn table(&self) -> String {
        let total = self.total_ms();
        let mut s = String::from("| operator | nodes | ms per run | share |\n|---|---|---|---|\n");
        for o in self.by_op() {
            let share = if total > 0.0 { o.ms / total } else { 0.0 };
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {:.1}% |",
                o.op,
                o.nodes,
                o.ms,
                100.0 * share
            );
        }
        let _ = writeln!(s, "| total | {} | {total:.3} | 100% |", self.nodes.len());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, ms: f64) -> NodeTime {
        NodeTime {
            node: format!("n{ms}"),
            op: op.into(),
            ms,
        }
    }

    #[test]
    fn operators_are_summed_and_ranked() {
        let p = Profile {
            batch: 1,
            runs: 3,
            nodes: vec![node("Conv", 1.0), node("Add", 0.5), node("Conv", 2.0)],
        };
        let ops = p.by_op();
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].op.as_str(), ops[0].nodes, ops[0].ms),
            ("Conv", 2, 3.0)
        );
        assert_eq!((ops[1].op.as_str(), ops[1].nodes), ("Add", 1));
        assert_eq!(p.total_ms(), 3.5);
        let t = p.table();
        assert!(t.contains("| Conv | 2 | 3.000 | 85.7% |"), "{t}");
        assert!(t.contains("| total | 3 | 3.500 | 100% |"), "{t}");
    }
}

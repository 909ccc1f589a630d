//! Tests of `SlimNet` against slim-core's description of the network: tensor names and
//! shapes, parameters used per width against the cost model, output shapes, first-k
//! slicing and switchable BatchNorm.

use slim_core::Width;
use std::collections::HashMap;

use slim_core::checkpoint::expected_tensors;
use slim_core::{Backbone, ModelConfig, cost, width};
use slim_train::SlimNet;
use tch::{Device, Kind, Tensor, nn};

fn config(
    backbone: Backbone,
    in_channels: usize,
    image_size: usize,
    classes: usize,
) -> ModelConfig {
    ModelConfig::new(
        backbone,
        in_channels,
        image_size,
        (0..classes).map(|i| format!("class{i}")).collect(),
        vec![0.5; in_channels],
        vec![0.25; in_channels],
    )
}

/// A small input size per backbone that keeps CPU forward passes cheap.
fn small(backbone: Backbone) -> ModelConfig {
    match backbone {
        Backbone::Resnet20 => config(backbone, 1, 28, 10),
        Backbone::Resnet18Cifar | Backbone::MobilenetV2 => config(backbone, 3, 32, 10),
        Backbone::Resnet50 => config(backbone, 3, 64, 10),
    }
}

fn build(config: &ModelConfig) -> (nn::VarStore, SlimNet) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = SlimNet::new(&vs.root(), config).unwrap();
    (vs, net)
}

fn input(config: &ModelConfig, n: i64) -> Tensor {
    let s = config.input.image_size as i64;
    Tensor::randn(
        [n, config.input.in_channels as i64, s, s],
        (Kind::Float, Device::Cpu),
    )
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn tensors_are_named_and_shaped_as_the_checkpoint_format_says() {
    for backbone in Backbone::ALL {
        let config = small(backbone);
        let (vs, net) = build(&config);
        let got: Vec<(String, Vec<usize>)> = net
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.size().iter().map(|&d| d as usize).collect()))
            .collect();
        let want = expected_tensors(&config);
        assert_eq!(got, want, "{}", backbone.name());
        // The var store's own names are the checkpoint names too.
        let mut stored: Vec<String> = vs.variables().into_keys().collect();
        let mut names: Vec<String> = want.into_iter().map(|(n, _)| n).collect();
        stored.sort();
        names.sort();
        assert_eq!(stored, names, "{}", backbone.name());
        // Running statistics are buffers, everything else trains.
        let buffers = names.iter().filter(|n| n.contains(".running_")).count();
        assert_eq!(vs.trainable_variables().len(), names.len() - buffers);
    }
}

#[test]
fn parameters_used_at_each_width_match_the_cost_model() {
    for backbone in Backbone::ALL {
        let config = match backbone {
            Backbone::Resnet50 => config(backbone, 3, 224, 1000),
            _ => small(backbone),
        };
        let (_vs, net) = build(&config);
        for &w in &width::DEFAULT_WIDTHS {
            let used: i64 = net
                .parameters_at(w)
                .iter()
                .map(Tensor::numel)
                .map(|n| n as i64)
                .sum();
            let want = cost(
                &config.network(),
                w,
                config.input.image_size,
                config.num_classes(),
            );
            assert_eq!(used as u64, want.params, "{} at width {w}", backbone.name());
        }
    }
}

#[test]
fn forward_gives_the_embedding_and_logits_shapes_of_every_width() {
    for backbone in Backbone::ALL {
        let config = small(backbone);
        let (_vs, net) = build(&config);
        let x = input(&config, 2);
        let network = config.network();
        for &w in net.widths() {
            for train in [false, true] {
                let (emb, logits) = tch::no_grad(|| net.forward_t(&x, w, train));
                let what = format!("{} at {w} (train {train})", backbone.name());
                assert_eq!(emb.size(), [2, network.features_at(w) as i64], "{what}");
                assert_eq!(logits.size(), [2, 10], "{what}");
                assert!(bool::try_from(logits.isfinite().all()).unwrap(), "{what}");
            }
        }
    }
}

#[test]
fn unknown_widths_are_reported() {
    let (_vs, net) = build(&small(Backbone::Resnet20));
    let err = net
        .width_index(slim_test_utils::width(0.3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("0.3") && err.contains("0.25"), "{err}");
    let x = input(net.config(), 1);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        net.forward(&x, slim_test_utils::width(0.3), false)
    }));
    assert!(panic.is_err());
}

/// Changing weights outside the leading blocks of width `w` (and other widths' BatchNorms
/// and probes) leaves the outputs at `w` unchanged, in train and eval mode; changing the
/// last output row, or the last input column, of a leading block changes them (so the
/// blocks are neither too small nor too large). The edge checks use train mode: batch
/// statistics keep activations normalized, where untrained running statistics can leave
/// a channel all zero or saturated after ReLU6, and a change in it invisible.
fn check_slicing(backbone: Backbone, w: Width, edge_convs: &[&str]) {
    let config = small(backbone);
    let (_vs, net) = build(&config);
    let x = input(&config, 2);
    let run = |w: Width, train: bool| tch::no_grad(|| net.forward_t(&x, w, train).1);
    // Train mode first: it updates width w's running statistics, which eval mode reads.
    let before_train = run(w, true);
    let (before_eval, before_full) = (run(w, false), run(slim_test_utils::width(1.0), false));
    let network = config.network();
    let convs: HashMap<&str, &slim_core::ConvBn> = network
        .convs()
        .into_iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let tag = w.tag();
    tch::no_grad(|| {
        for (name, mut t) in net.named_tensors() {
            let mut noise = t.randn_like().abs();
            if let Some(conv) = name.strip_suffix(".weight").and_then(|n| convs.get(n)) {
                let (cin, cout) = conv.channels_at(w);
                let block = noise.narrow(0, 0, cout as i64);
                let mut block = if conv.depthwise {
                    block
                } else {
                    block.narrow(1, 0, cin as i64)
                };
                let _ = block.zero_();
            } else if name.contains(&format!(".{tag}.")) {
                let _ = noise.zero_();
            }
            t += noise;
        }
    });
    let what = format!("{} at {w}", backbone.name());
    assert!(
        same(&run(w, false), &before_eval),
        "{what}: eval output moved"
    );
    assert!(
        same(&run(w, true), &before_train),
        "{what}: train output moved"
    );
    assert!(
        !same(&run(slim_test_utils::width(1.0), false), &before_full),
        "the perturbation did nothing"
    );

    for edge_conv in edge_convs {
        let conv = convs[*edge_conv];
        let (cin, cout) = conv.channels_at(w);
        let weight = net
            .named_tensors()
            .into_iter()
            .find(|(n, _)| *n == format!("{edge_conv}.weight"))
            .unwrap()
            .1;
        let block = weight.narrow(0, 0, cout as i64);
        let block = if conv.depthwise {
            block
        } else {
            block.narrow(1, 0, cin as i64)
        };
        let mut edges = vec![("last output channel", block.narrow(0, cout as i64 - 1, 1))];
        if !conv.depthwise {
            edges.push(("last input channel", block.narrow(1, cin as i64 - 1, 1)));
        }
        for (edge_name, mut edge) in edges {
            let saved = edge.copy();
            tch::no_grad(|| edge += edge.randn_like());
            assert!(
                !same(&run(w, true), &before_train),
                "{what}: the {edge_name} of {edge_conv} is not read"
            );
            tch::no_grad(|| edge.copy_(&saved));
            assert!(same(&run(w, true), &before_train));
        }
    }
}

#[test]
fn a_width_reads_only_the_leading_blocks_of_the_weights() {
    check_slicing(
        Backbone::Resnet20,
        slim_test_utils::width(0.5),
        &["layer2.1.conv1", "layer3.0.downsample"],
    );
    check_slicing(
        Backbone::MobilenetV2,
        slim_test_utils::width(0.5),
        &["blocks.3.depthwise", "blocks.3.project"],
    );
}

#[test]
fn batchnorm_statistics_are_switched_per_width() {
    let config = small(Backbone::Resnet20);
    let (vs, net) = build(&config);
    let stats = || -> Vec<(String, Tensor)> {
        let mut v: Vec<_> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.contains(".running_"))
            .map(|(n, t)| (n, t.copy()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let x = input(&config, 4);
    let initial = stats();
    let _ = tch::no_grad(|| net.forward(&x, slim_test_utils::width(0.5), false));
    assert!(
        initial
            .iter()
            .zip(stats())
            .all(|((_, a), (_, b))| same(a, &b)),
        "eval changed stats"
    );

    let _ = net.forward(&x, slim_test_utils::width(0.5), true);
    let mut changed = 0;
    for ((name, before), (_, after)) in initial.iter().zip(stats()) {
        if name.contains(".bn.w500.") {
            assert!(!same(before, &after), "{name} was not updated by its width");
            changed += 1;
        } else {
            assert!(same(before, &after), "{name} was updated by width 0.5");
        }
    }
    assert_eq!(changed, 2 * config.network().convs().len());
}

#[test]
fn gradients_reach_exactly_the_parameters_a_width_uses() {
    let config = small(Backbone::MobilenetV2);
    let (vs, net) = build(&config);
    let w = slim_test_utils::width(0.5);
    let logits = net.forward_t(&input(&config, 4), w, true).1;
    let labels = Tensor::from_slice(&[0i64, 3, 7, 9]);
    logits.cross_entropy_for_logits(&labels).backward();
    let variables = vs.variables();
    let tag = w.tag();
    for c in config.network().convs() {
        let grad = variables[&format!("{}.weight", c.name)].grad();
        let (cin, cout) = c.channels_at(w);
        let outside = grad.copy();
        let block = |t: &Tensor| {
            let rows = t.narrow(0, 0, cout as i64);
            if c.depthwise {
                rows
            } else {
                rows.narrow(1, 0, cin as i64)
            }
        };
        let inside = f64::try_from(block(&grad).abs().sum(Kind::Double)).unwrap();
        let _ = block(&outside).zero_();
        let outside = f64::try_from(outside.abs().sum(Kind::Double)).unwrap();
        assert!(inside > 0.0, "{}: no gradient inside the block", c.name);
        assert_eq!(outside, 0.0, "{}: gradient outside the block", c.name);
    }
    for (name, t) in &variables {
        let own = name.contains(&format!(".{tag}.")) && !name.contains(".running_");
        if name.contains(".bn.") || name.starts_with("probe.") {
            assert_eq!(t.grad().defined(), own, "{name}");
        }
    }
}

/// Embedding of every width in train mode, and the gradient of a fixed random projection
/// of them with respect to the conv weight `grad_of`.
fn pass(net: &SlimNet, x: &Tensor, grad_of: &str) -> (Vec<Tensor>, Tensor) {
    let weight = net
        .named_tensors()
        .into_iter()
        .find(|(n, _)| n == grad_of)
        .unwrap()
        .1;
    weight.shallow_clone().zero_grad();
    let outs: Vec<Tensor> = net
        .widths()
        .iter()
        .map(|&w| net.forward(x, w, true))
        .collect();
    let loss = outs
        .iter()
        .map(|o| {
            let r = Tensor::from_slice(
                &(0..o.numel())
                    .map(|i| ((i * 7919) % 13) as f32 - 6.0)
                    .collect::<Vec<_>>(),
            )
            .view(o.size().as_slice())
            .to_kind(o.kind());
            (o * r).sum(Kind::Double)
        })
        .reduce(|a, b| a + b)
        .unwrap();
    loss.backward();
    (outs, weight.grad().copy())
}

fn twin(config: &ModelConfig) -> (nn::VarStore, SlimNet, nn::VarStore, SlimNet) {
    tch::manual_seed(11);
    let (vs_a, a) = build(config);
    let (mut vs_b, b) = build(config);
    vs_b.copy(&vs_a).unwrap();
    (vs_a, a, vs_b, b)
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / a.abs().max().double_value(&[])
}

/// In float64, so that the comparison is exact up to rounding: in float32 the stem's
/// gradient through a deep random network in train-mode BatchNorm is ill-conditioned and
/// another summation order alone moves it by ~1%.
#[test]
fn channels_last_changes_the_memory_order_not_the_results() {
    let config = small(Backbone::Resnet20);
    let (mut va, a, mut vb, b) = twin(&config);
    va.double();
    vb.double();
    b.to_channels_last();
    let w = b
        .named_tensors()
        .into_iter()
        .find(|(n, _)| n == "layer1.0.conv1.weight")
        .unwrap()
        .1;
    assert_eq!(w.stride()[1], 1, "NHWC strides: channels innermost");
    let x = input(&config, 4).to_kind(Kind::Double);
    let xl = slim_train::model::channels_last(&x);
    assert!(same(&x, &xl));
    let (oa, ga) = pass(&a, &x, "stem.weight");
    let (ob, gb) = pass(&b, &xl, "stem.weight");
    for (p, q) in oa.iter().zip(&ob) {
        assert!(max_rel(p, q) < 1e-10, "outputs differ by {}", max_rel(p, q));
    }
    let rel = (&ga - &gb).norm().double_value(&[]) / ga.norm().double_value(&[]);
    assert!(rel < 1e-10, "gradients differ by {rel}");
}

#[test]
fn bf16_convolutions_stay_close_to_float32_and_keep_float32_weights() {
    let config = small(Backbone::Resnet20);
    let (_va, a, _vb, mut b) = twin(&config);
    b.set_compute_kind(Kind::BFloat16);
    let x = input(&config, 8);
    let (oa, ga) = pass(&a, &x, "layer3.2.conv1.weight");
    let (ob, gb) = pass(&b, &x, "layer3.2.conv1.weight");
    for (p, q) in oa.iter().zip(&ob) {
        assert_eq!(q.kind(), Kind::Float);
        let rel = max_rel(p, q);
        // bfloat16 keeps 8 significant bits: errors of a few 1e-3 per conv, not 0.
        assert!(rel > 1e-6 && rel < 0.1, "bf16 vs f32 relative error {rel}");
    }
    assert_eq!(gb.kind(), Kind::Float);
    let cos = (&ga * &gb).sum(Kind::Double).double_value(&[])
        / (ga.norm().double_value(&[]) * gb.norm().double_value(&[]));
    // Measured 0.977 (float32 itself moves this gradient by ~1%, see above); a broken
    // bf16 path (no gradient, wrong weights) gives ~0.
    assert!(cos > 0.95, "gradient direction cosine {cos}");
}

#[test]
fn split_batchnorm_normalizes_each_group_by_its_own_statistics() {
    let config = small(Backbone::Resnet20);
    let (_vs, mut net) = build(&config);
    let x = input(&config, 8);
    // Odd samples (group 1 of 2) made very different; even ones (group 0) kept.
    let odd = Tensor::from_slice(&[0i64, 1, 0, 1, 0, 1, 0, 1])
        .to_kind(Kind::Float)
        .view([8, 1, 1, 1]);
    let y = &x + &odd * 5.0;
    let even = Tensor::from_slice(&[0i64, 2, 4, 6]);
    let full = slim_test_utils::width(1.0);
    let evens = |net: &SlimNet, x: &Tensor| net.forward(x, full, true).index_select(0, &even);
    // Whole-batch statistics: the odd samples move the even ones' embeddings.
    assert!(!evens(&net, &x).allclose(&evens(&net, &y), 1e-4, 1e-4, false));
    // Two groups: the even samples' embeddings do not depend on the odd ones at all.
    net.set_bn_splits(2);
    let (a, b) = (evens(&net, &x), evens(&net, &y));
    assert!(a.allclose(&b, 1e-5, 1e-5, false), "{}", (a - b).abs().max());
    // Groups of one image are not statistics: such a batch is normalized whole.
    net.set_bn_splits(8);
    let whole = evens(&net, &x);
    net.set_bn_splits(1);
    assert!(whole.allclose(&evens(&net, &x), 1e-5, 1e-5, false));
}

//! Builds the ONNX graph of one width by walking the backbone's layer list
//! ([`slim_core::Network`]), so that every backbone is exported by the same code.
//!
//! Each `ConvBn` becomes one `Conv` whose weight is the leading `[out, in]` block of the
//! shared full-width weight with the width's own BatchNorm folded in (eval mode):
//! `W' = W * s`, `B' = beta - mean * s` with `s = gamma / sqrt(var + eps)` per output
//! channel, computed in f64 and stored as f32. Activations are `Relu`, or `Clip(0, 6)` for
//! ReLU6; a residual block is its body, its shortcut (or the identity), `Add`, then the
//! block's activation. The backbone ends with `GlobalAveragePool` and `Flatten` into the
//! output `embedding` `[N, features]`, and the width's probe, a `Gemm` with `transB = 1`,
//! gives the output `logits` `[N, classes]`.
//!
//! Names: the conv of layer `layer1.0.conv1` is the node `layer1.0.conv1` with the
//! initializers `layer1.0.conv1.weight` / `.bias` and the output `layer1.0.conv1`; its ReLU
//! is `layer1.0.conv1.relu`; a block's sum is `layer1.0.add`, then `layer1.0.relu`.

use slim_core::Width;
use slim_core::metadata::GraphMetadata;
use slim_core::{Activation, Checkpoint, ConvBn, Layer, Tensor};
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

use crate::error::ExportError;
use crate::proto::{
    Dim, entry, float_scalar, float_tensor, float_value_info, int_attr, ints_attr, node,
};

/// The ONNX operator set the graphs use (`Clip` takes min/max as inputs since 11).
pub const OPSET: i64 = 13;
/// The ONNX IR version written (the one that goes with opsets up to 18).
pub const IR_VERSION: i64 = 8;
pub use slim_core::metadata::{BATCH, EMBEDDING, INPUT, LOGITS};

/// The graph of width `w` (which must be one of the checkpoint's widths) as an ONNX
/// model carrying `metadata` (what the caller computed of that width: cost, input,
/// normalization, classes, checkpoint).
pub fn build_model(
    ckpt: &Checkpoint,
    w: Width,
    metadata: &GraphMetadata,
) -> Result<ModelProto, ExportError> {
    let w = ckpt.config.widths[ckpt.width_index(w).map_err(ExportError::Checkpoint)?];
    let config = &ckpt.config;
    let net = config.network();
    let tag = w.tag();
    let mut b = Builder {
        ckpt,
        w,
        tag: tag.clone(),
        nodes: Vec::new(),
        initializers: Vec::new(),
        clip_bounds: false,
    };

    let mut x = INPUT.to_string();
    for (i, layer) in net.layers.iter().enumerate() {
        x = match layer {
            Layer::ConvBn(c) => b.conv_bn(c, &x)?,
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let name = format!("maxpool.{i}");
                let attrs = vec![
                    ints_attr("kernel_shape", &[*kernel, *kernel]),
                    ints_attr("strides", &[*stride, *stride]),
                    ints_attr("pads", &[*padding; 4]),
                ];
                b.nodes.push(node("MaxPool", &name, &[&x], &name, attrs));
                name
            }
            Layer::Residual {
                body,
                shortcut,
                activation,
            } => {
                let block = body
                    .first()
                    .and_then(|c| c.name.rsplit_once('.'))
                    .map_or_else(|| format!("block.{i}"), |(prefix, _)| prefix.to_string());
                let mut y = x.clone();
                for c in body {
                    y = b.conv_bn(c, &y)?;
                }
                let skip = match shortcut {
                    Some(c) => b.conv_bn(c, &x)?,
                    None => x.clone(),
                };
                let sum = format!("{block}.add");
                b.nodes.push(node("Add", &sum, &[&y, &skip], &sum, vec![]));
                b.activation(*activation, &sum, &block)
            }
        };
    }

    b.nodes.push(node(
        "GlobalAveragePool",
        "global_pool",
        &[&x],
        "global_pool",
        vec![],
    ));
    b.nodes.push(node(
        "Flatten",
        "flatten",
        &["global_pool"],
        EMBEDDING,
        vec![int_attr("axis", 1)],
    ));
    let features = net.features_at(w);
    let classes = config.num_classes();
    let (pw, pb) = (format!("probe.{tag}.weight"), format!("probe.{tag}.bias"));
    let weight = b.tensor(&pw, &[classes, features])?;
    let bias = b.tensor(&pb, &[classes])?;
    b.initializers
        .push(float_tensor(&pw, &weight.shape, &weight.data));
    b.initializers
        .push(float_tensor(&pb, &bias.shape, &bias.data));
    b.nodes.push(node(
        "Gemm",
        "probe",
        &[EMBEDDING, &pw, &pb],
        LOGITS,
        vec![int_attr("transB", 1)],
    ));

    let batch = Dim::Param(BATCH);
    let side = Dim::Fixed(config.input.image_size);
    let graph = GraphProto {
        name: format!("{}-{tag}", config.backbone.name()),
        node: b.nodes,
        initializer: b.initializers,
        input: vec![float_value_info(
            INPUT,
            &[batch, Dim::Fixed(config.input.in_channels), side, side],
            "images normalized with the metadata's mean and std, NCHW",
        )],
        output: vec![
            float_value_info(
                EMBEDDING,
                &[batch, Dim::Fixed(features)],
                "global-average-pooled backbone features",
            ),
            float_value_info(
                LOGITS,
                &[batch, Dim::Fixed(classes)],
                "linear probe scores, in class_names order",
            ),
        ],
        doc_string: format!(
            "Slimmable {} at width {w}, BatchNorm folded into the convolutions.",
            config.backbone.name()
        ),
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "slim-onnx".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        doc_string: graph.doc_string.clone(),
        graph: Some(graph),
        metadata_props: metadata
            .to_props()
            .into_iter()
            .map(|(k, v)| entry(k, v))
            .collect(),
        ..Default::default()
    })
}

struct Builder<'a> {
    ckpt: &'a Checkpoint,
    w: Width,
    tag: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Whether the shared `Clip` bounds of ReLU6 are among the initializers yet.
    clip_bounds: bool,
}

impl<'a> Builder<'a> {
    /// A checkpoint tensor, checked to have `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<&'a Tensor, ExportError> {
        let fail = |msg: String| ExportError::Tensors {
            path: self.ckpt.path.clone(),
            msg,
        };
        let ckpt: &'a Checkpoint = self.ckpt;
        let t = ckpt.tensors.get(name).ok_or_else(|| {
            fail(format!(
                "tensor {name} is missing: the config ({}) does not match the weights",
                self.ckpt.config.backbone.name()
            ))
        })?;
        if t.shape != shape {
            return Err(fail(format!(
                "tensor {name} has shape {:?} but the config ({}) needs {shape:?}",
                t.shape,
                self.ckpt.config.backbone.name()
            )));
        }
        Ok(t)
    }

    /// Adds the folded conv of `c` and its activation; returns the output's name.
    fn conv_bn(&mut self, c: &ConvBn, input: &str) -> Result<String, ExportError> {
        let (cin, cout) = c.channels_at(self.w);
        let full = c.weight_shape();
        let weight = self.tensor(&format!("{}.weight", c.name), &full)?;
        let bn = |p: &str| self.tensor(&format!("{}.bn.{}.{p}", c.name, self.tag), &[cout]);
        let (gamma, beta, mean, var) = (
            bn("weight")?,
            bn("bias")?,
            bn("running_mean")?,
            bn("running_var")?,
        );

        // Leading block [cout, cin_per_group, k, k] of the full [out, in_per_group, k, k].
        let per_group = if c.depthwise { 1 } else { cin };
        let k2 = c.kernel * c.kernel;
        let eps = self.ckpt.config.bn_eps;
        let mut folded = Vec::with_capacity(cout * per_group * k2);
        let mut bias = Vec::with_capacity(cout);
        for o in 0..cout {
            let scale = f64::from(gamma.data[o]) / (f64::from(var.data[o]) + eps).sqrt();
            for i in 0..per_group {
                let start = (o * full[1] + i) * k2;
                folded.extend(
                    weight.data[start..start + k2]
                        .iter()
                        .map(|&v| (f64::from(v) * scale) as f32),
                );
            }
            bias.push((f64::from(beta.data[o]) - f64::from(mean.data[o]) * scale) as f32);
        }

        let (wname, bname) = (format!("{}.weight", c.name), format!("{}.bias", c.name));
        let mut wt = float_tensor(&wname, &[cout, per_group, c.kernel, c.kernel], &folded);
        wt.doc_string = format!("{} with bn.{} folded in", wname, self.tag);
        self.initializers.push(wt);
        self.initializers.push(float_tensor(&bname, &[cout], &bias));
        let attrs = vec![
            ints_attr("kernel_shape", &[c.kernel, c.kernel]),
            ints_attr("strides", &[c.stride, c.stride]),
            ints_attr("pads", &[c.padding; 4]),
            ints_attr("dilations", &[1, 1]),
            int_attr("group", c.groups_at(self.w) as i64),
        ];
        self.nodes.push(node(
            "Conv",
            &c.name,
            &[input, &wname, &bname],
            &c.name,
            attrs,
        ));
        Ok(self.activation(c.activation, &c.name, &c.name))
    }

    /// Applies `act` to `input`, naming the node after `prefix`; returns the output's name.
    fn activation(&mut self, act: Activation, input: &str, prefix: &str) -> String {
        match act {
            Activation::None => input.to_string(),
            Activation::Relu => {
                let name = format!("{prefix}.relu");
                self.nodes
                    .push(node("Relu", &name, &[input], &name, vec![]));
                name
            }
            Activation::Relu6 => {
                const MIN: &str = "relu6.min";
                const MAX: &str = "relu6.max";
                if !self.clip_bounds {
                    self.initializers.push(float_scalar(MIN, 0.0));
                    self.initializers.push(float_scalar(MAX, 6.0));
                    self.clip_bounds = true;
                }
                let name = format!("{prefix}.relu6");
                self.nodes
                    .push(node("Clip", &name, &[input, MIN, MAX], &name, vec![]));
                name
            }
        }
    }
}

//! ONNX graph writing with tract-onnx's generated protobuf types (`tract_onnx::pb`), and the
//! fp32 CNN9-max graph.
//!
//! Graph contract (architecture.md §5): opset 17, input `input` `[1,1,100,96]` f32, outputs `embedding`
//! `[1,512]`, `logits_<head>` `[1,C]` per head, then `block3` `[1,512]` (block 3's pooled
//! features, which wide heads read beside the embedding). Encoder: 4 blocks of (Conv3x3 pad 1 → Relu)×2
//! with BatchNorm folded into the convs, MaxPool 2×2 after blocks 1–3, then ReduceMean over
//! frequency (axis 3) and ReduceMax over time (axis 2), as aiSFX's `EmbeddingNet.forward`
//! (`torch.mean(x, dim=3)` then `torch.max(x, dim=2)`). Heads: MatMul + Add (no Gemm, which
//! tract-onnx would need to rewrite anyway), Relu between.

use crate::fold::FoldedModel;
use crate::weights::{HeadInput, BLOCK3_FEATURES_DIM};
use prost::Message;
use sfxtag_core::frontend::{N_MELS, WINDOW_FRAMES};
use tract_onnx::pb;

pub const OPSET: i64 = 17;
/// ONNX IR version matching opset 17.
pub const IR_VERSION: i64 = 8;
pub const INPUT: &str = "input";
pub const EMBEDDING: &str = "embedding";
/// Output of block 3's pooled features (`[1,512]`), the second half of a wide head's input.
pub const BLOCK3: &str = "block3";
/// The input of heads that read both (`[1,1024]`; internal).
const EMBEDDING_BLOCK3: &str = "embedding_block3";
pub const INPUT_SHAPE: [usize; 4] = [1, 1, WINDOW_FRAMES, N_MELS];

/// Output name of a head's logits.
pub fn logits_name(head: &str) -> String {
    format!("logits_{head}")
}

/// Name of conv layer `i`'s post-ReLU activation (an extra output of the calibration graph).
pub fn activation_name(i: usize) -> String {
    format!("relu{i}")
}

pub(crate) const F32: i32 = pb::tensor_proto::DataType::Float as i32;
pub(crate) const U8: i32 = pb::tensor_proto::DataType::Uint8 as i32;
pub(crate) const I8: i32 = pb::tensor_proto::DataType::Int8 as i32;
pub(crate) const I32: i32 = pb::tensor_proto::DataType::Int32 as i32;

/// Accumulates nodes and initializers.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
}

pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
}

fn value_info(name: &str, elem: i32, shape: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem,
                shape: Some(pb::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            denotation: String::new(),
                            value: Some(Value::DimValue(d as i64)),
                        })
                        .collect(),
                }),
            })),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    pub(crate) fn input(&mut self, name: &str, elem: i32, shape: &[usize]) {
        self.inputs.push(value_info(name, elem, shape));
    }

    pub(crate) fn output(&mut self, name: &str, elem: i32, shape: &[usize]) {
        self.outputs.push(value_info(name, elem, shape));
    }

    /// Adds an initializer from little-endian raw bytes; returns its name.
    pub(crate) fn init_raw(
        &mut self,
        name: &str,
        elem: i32,
        dims: &[usize],
        raw: Vec<u8>,
    ) -> String {
        self.inits.push(pb::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: elem,
            name: name.to_string(),
            raw_data: raw,
            ..Default::default()
        });
        name.to_string()
    }

    pub(crate) fn init_f32(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init_raw(name, F32, dims, raw)
    }

    pub(crate) fn init_i8(&mut self, name: &str, dims: &[usize], v: &[i8]) -> String {
        let raw = v.iter().map(|&x| x as u8).collect();
        self.init_raw(name, I8, dims, raw)
    }

    pub(crate) fn init_u8(&mut self, name: &str, dims: &[usize], v: &[u8]) -> String {
        self.init_raw(name, U8, dims, v.to_vec())
    }

    pub(crate) fn init_i32(&mut self, name: &str, dims: &[usize], v: &[i32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init_raw(name, I32, dims, raw)
    }

    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<(&str, Attr)>,
    ) {
        use pb::attribute_proto::AttributeType;
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                let mut p = pb::AttributeProto {
                    name: name.to_string(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => {
                        p.r#type = AttributeType::Int as i32;
                        p.i = i;
                    }
                    Attr::Ints(v) => {
                        p.r#type = AttributeType::Ints as i32;
                        p.ints = v;
                    }
                }
                p
            })
            .collect();
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.to_string(),
            domain: String::new(),
            attribute,
            doc_string: String::new(),
        });
    }

    pub(crate) fn finish(self, graph_name: &str, doc: &str) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "sfxtag-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: graph_name.into(),
                initializer: self.inits,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

pub(crate) fn conv_attrs() -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", Attr::Ints(vec![3, 3])),
        ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ("strides", Attr::Ints(vec![1, 1])),
    ]
}

pub(crate) fn pool_attrs() -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", Attr::Ints(vec![2, 2])),
        ("strides", Attr::Ints(vec![2, 2])),
    ]
}

/// The last conv of block 3 (its pooled output is block 3's output).
pub(crate) const BLOCK3_LAST_CONV: usize = 5;

/// Whether a 2×2 max-pool follows conv layer `i` (after blocks 1–3).
pub(crate) fn pool_after(i: usize) -> bool {
    i % 2 == 1 && i < 7
}

/// `x` (f32 `[1,512,T,F]`) → ReduceMean over F → ReduceMax over T → `embedding`; `block3`
/// (f32 `[1,256,T,F]`, block 3's output) → ReduceMean over F → ReduceMax and ReduceMean over T,
/// times the model's `block3_scale` → `block3`; then the heads (fp32 MatMul + Add), each on the
/// embedding or on `[embedding, block3]` as its first layer's width says → `logits_<head>`.
/// Shared by the fp32 and int8 graphs.
pub(crate) fn pool_and_heads(g: &mut GraphBuilder, m: &FoldedModel, x: &str, block3: &str) {
    g.node(
        "ReduceMean",
        &[x],
        "freq_mean",
        vec![("axes", Attr::Ints(vec![3])), ("keepdims", Attr::Int(0))],
    );
    g.node(
        "ReduceMax",
        &["freq_mean"],
        EMBEDDING,
        vec![("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(0))],
    );
    g.output(EMBEDDING, F32, &[1, crate::weights::EMBEDDING_DIM]);
    block3_features(g, m, block3);
    if m.heads
        .iter()
        .any(|h| h.input() == HeadInput::EmbeddingBlock3)
    {
        g.node(
            "Concat",
            &[EMBEDDING, BLOCK3],
            EMBEDDING_BLOCK3,
            vec![("axis", Attr::Int(1))],
        );
    }
    for h in &m.heads {
        let mut cur = match h.input() {
            HeadInput::Embedding => EMBEDDING,
            HeadInput::EmbeddingBlock3 => EMBEDDING_BLOCK3,
        }
        .to_string();
        for (l, lin) in h.layers.iter().enumerate() {
            let (o, i) = (lin.weight.shape[0], lin.weight.shape[1]);
            // MatMul wants [in, out]: transpose PyTorch's [out, in].
            let mut wt = vec![0f32; i * o];
            for r in 0..o {
                for c in 0..i {
                    wt[c * o + r] = lin.weight.data[r * i + c];
                }
            }
            let p = format!("head_{}_fc{l}", h.name);
            let w = g.init_f32(&format!("{p}_w"), &[i, o], &wt);
            let b = g.init_f32(&format!("{p}_b"), &[o], &lin.bias);
            g.node("MatMul", &[&cur, &w], &format!("{p}_mm"), vec![]);
            let out = if l == 2 {
                logits_name(&h.name)
            } else {
                format!("{p}_out")
            };
            g.node("Add", &[&format!("{p}_mm"), &b], &out, vec![]);
            if l < 2 {
                g.node("Relu", &[&out], &format!("{p}_relu"), vec![]);
                cur = format!("{p}_relu");
            } else {
                g.output(&out, F32, &[1, h.n_classes()]);
            }
        }
    }
    // Last, so that the embedding and the logits keep their output positions.
    g.output(BLOCK3, F32, &[1, BLOCK3_FEATURES_DIM]);
}

/// `block3` output: block 3's output averaged over frequency, then its maximum and its mean over
/// time per channel, each channel times `m.block3_scale` (undoing equalisation).
fn block3_features(g: &mut GraphBuilder, m: &FoldedModel, block3: &str) {
    g.node(
        "ReduceMean",
        &[block3],
        "block3_freq_mean",
        vec![("axes", Attr::Ints(vec![3])), ("keepdims", Attr::Int(0))],
    );
    g.node(
        "ReduceMax",
        &["block3_freq_mean"],
        "block3_time_max",
        vec![("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(0))],
    );
    g.node(
        "ReduceMean",
        &["block3_freq_mean"],
        "block3_time_mean",
        vec![("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(0))],
    );
    let unscaled = m.block3_scale.iter().all(|&s| s == 1.0);
    let cat = if unscaled { BLOCK3 } else { "block3_pooled" };
    g.node(
        "Concat",
        &["block3_time_max", "block3_time_mean"],
        cat,
        vec![("axis", Attr::Int(1))],
    );
    if !unscaled {
        // Max and mean commute with a positive per-channel scale: scaling after pooling is exact.
        let twice: Vec<f32> = m
            .block3_scale
            .iter()
            .chain(&m.block3_scale)
            .copied()
            .collect();
        let s = g.init_f32("block3_scale", &[1, BLOCK3_FEATURES_DIM], &twice);
        g.node("Mul", &[cat, &s], BLOCK3, vec![]);
    }
}

/// The fp32 graph. With `with_activations`, every conv's post-ReLU tensor is an extra output
/// (`relu0`…`relu7`), for calibration.
pub fn fp32_model(m: &FoldedModel, with_activations: bool) -> pb::ModelProto {
    let mut g = GraphBuilder::default();
    g.input(INPUT, F32, &INPUT_SHAPE);
    let mut x = INPUT.to_string();
    let mut block3 = String::new();
    let (mut t, mut f) = (WINDOW_FRAMES, N_MELS);
    for (i, c) in m.convs.iter().enumerate() {
        let w = g.init_f32(&format!("conv{i}_w"), &[c.out_ch, c.in_ch, 3, 3], &c.weight);
        let b = g.init_f32(&format!("conv{i}_b"), &[c.out_ch], &c.bias);
        g.node("Conv", &[&x, &w, &b], &format!("conv{i}"), conv_attrs());
        let r = activation_name(i);
        g.node("Relu", &[&format!("conv{i}")], &r, vec![]);
        if with_activations {
            g.output(&r, F32, &[1, c.out_ch, t, f]);
        }
        x = r;
        if pool_after(i) {
            let p = format!("pool{i}");
            g.node("MaxPool", &[&x], &p, pool_attrs());
            x = p;
            t /= 2;
            f /= 2;
        }
        if i == BLOCK3_LAST_CONV {
            block3 = x.clone();
        }
    }
    pool_and_heads(&mut g, m, &x, &block3);
    g.finish(
        "cnn9_max_fp32",
        "sfxtag CNN9-max encoder, fp32, BatchNorm folded",
    )
}

/// The output names of ONNX bytes, in order, read without building the graph.
pub fn output_names(onnx: &[u8]) -> Result<Vec<String>, prost::DecodeError> {
    let m = pb::ModelProto::decode(onnx)?;
    Ok(m.graph
        .map(|g| g.output.into_iter().map(|o| o.name).collect())
        .unwrap_or_default())
}

/// Serialised protobuf bytes.
pub fn to_bytes(m: &pb::ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

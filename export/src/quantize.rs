//! The int8 QOperator graph of docs/architecture.md §5.
//!
//! - `QuantizeLinear` on the input (u8; the normalised log-mel is ≥ 0, so zero point 0).
//! - Each conv is a `QLinearConv`: u8 activations, s8 weights with one symmetric per-tensor
//!   scale (`max|w|/127`, zero point 0), int32 bias with scale `x_scale·w_scale`. Its output is
//!   u8 with zero point 0 and range `[0, max]` of the post-ReLU activation: the saturation at 0
//!   *is* the ReLU, so no Relu node. Per-tensor, not per-channel: tract requantises per-channel
//!   outputs with generic ops (52.6 ms vs 16.9 ms per window, architecture.md §5); cross-layer
//!   equalisation ([`crate::equalize`]) recovers the accuracy per-channel would have given.
//! - `MaxPool` directly on the u8 tensors (max commutes with a monotonic quantiser).
//! - One `DequantizeLinear` after the last conv, then ReduceMean/ReduceMax in f32.
//! - Heads: fp32 `MatMul + Add` on the dequantised embedding. They cost ≈0.17 M MAC per head
//!   against 1.93 G for the encoder, so quantising them buys no speed, and keeping them in f32
//!   keeps head top-1 agreement with fp32 at the level the embedding allows. The price is file
//!   size (≈0.7 MB per head).

use crate::calibrate::Ranges;
use crate::fold::FoldedModel;
use crate::graph::{self, GraphBuilder, F32};
use tract_onnx::pb;

/// The quantisation parameters chosen for one conv (for the report and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvQuant {
    pub x_scale: f32,
    pub w_scale: f32,
    pub y_scale: f32,
}

/// u8 scale of a `[0, hi]` range; a dead (all-zero) tensor gets scale 1 so nothing divides by 0.
pub fn u8_scale(hi: f32) -> f32 {
    if hi > 0.0 && hi.is_finite() {
        hi / 255.0
    } else {
        1.0
    }
}

/// Symmetric per-tensor s8 weights: `(q, scale)` with `w ≈ q·scale`, `q ∈ [−127, 127]`.
pub fn quantize_weights(w: &[f32]) -> (Vec<i8>, f32) {
    let max = w.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let q = w
        .iter()
        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scale)
}

/// int32 bias in the accumulator's scale `x_scale·w_scale`.
pub fn quantize_bias(b: &[f32], acc_scale: f32) -> Vec<i32> {
    b.iter()
        .map(|v| {
            ((*v as f64) / (acc_scale as f64))
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

/// Builds the int8 graph from folded (ideally equalised) weights and calibrated ranges.
pub fn int8_model(m: &FoldedModel, r: &Ranges) -> (pb::ModelProto, Vec<ConvQuant>) {
    let mut g = GraphBuilder::default();
    g.input(graph::INPUT, F32, &graph::INPUT_SHAPE);
    let zp_u8 = g.init_u8("zp_u8", &[], &[0]);
    let zp_i8 = g.init_i8("zp_i8", &[], &[0]);
    let mut x_scale = u8_scale(r.input_max);
    let mut xs_name = g.init_f32("input_scale", &[], &[x_scale]);
    g.node(
        "QuantizeLinear",
        &[graph::INPUT, &xs_name, &zp_u8],
        "input_q",
        vec![],
    );
    let mut x = "input_q".to_string();
    let mut report = Vec::new();
    for (i, c) in m.convs.iter().enumerate() {
        let (wq, w_scale) = quantize_weights(&c.weight);
        let y_scale = u8_scale(r.activation_max[i]);
        let bq = quantize_bias(&c.bias, x_scale * w_scale);
        let w = g.init_i8(&format!("conv{i}_wq"), &[c.out_ch, c.in_ch, 3, 3], &wq);
        let ws = g.init_f32(&format!("conv{i}_w_scale"), &[], &[w_scale]);
        let ys = g.init_f32(&format!("relu{i}_scale"), &[], &[y_scale]);
        let b = g.init_i32(&format!("conv{i}_bq"), &[c.out_ch], &bq);
        let y = format!("relu{i}_q");
        g.node(
            "QLinearConv",
            &[&x, &xs_name, &zp_u8, &w, &ws, &zp_i8, &ys, &zp_u8, &b],
            &y,
            graph::conv_attrs(),
        );
        report.push(ConvQuant {
            x_scale,
            w_scale,
            y_scale,
        });
        x = y;
        x_scale = y_scale;
        xs_name = ys;
        if graph::pool_after(i) {
            let p = format!("pool{i}_q");
            g.node("MaxPool", &[&x], &p, graph::pool_attrs());
            x = p;
        }
        if i == graph::BLOCK3_LAST_CONV {
            g.node(
                "DequantizeLinear",
                &[&x, &xs_name, &zp_u8],
                "block3_f32",
                vec![],
            );
        }
    }
    g.node(
        "DequantizeLinear",
        &[&x, &xs_name, &zp_u8],
        "last_f32",
        vec![],
    );
    graph::pool_and_heads(&mut g, m, "last_f32", "block3_f32");
    (
        g.finish(
            "cnn9_max_int8",
            "sfxtag CNN9-max encoder, int8 QOperator: u8 activations, s8 per-tensor weights, \
             BatchNorm folded, cross-layer equalised; fp32 heads",
        ),
        report,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_quantisation_is_symmetric_and_bounded() {
        let (q, s) = quantize_weights(&[-2.0, 0.5, 1.0]);
        assert_eq!(q, vec![-127, 32, 64]);
        assert!((s - 2.0 / 127.0).abs() < 1e-7);
        let (q, s) = quantize_weights(&[0.0, 0.0]);
        assert_eq!((q, s), (vec![0, 0], 1.0));
    }

    #[test]
    fn bias_uses_accumulator_scale() {
        assert_eq!(quantize_bias(&[0.5, -0.25], 0.01), vec![50, -25]);
        assert_eq!(quantize_bias(&[1e30], 1e-30)[0], i32::MAX);
    }
}

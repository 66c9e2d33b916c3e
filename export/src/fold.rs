//! BatchNorm folding: the deployable graph has biased convs and no BatchNorm.
//!
//! `BN(conv(x, w)) = γ·(conv(x, w) − μ)/√(σ²+ε) + β = conv(x, w') + b'` with
//! `w' = w·γ/√(σ²+ε)` (per output channel) and `b' = β − μ·γ/√(σ²+ε)`. Computed in f64 so
//! that folding itself adds no error beyond the final f32 rounding.

use crate::weights::{conv_channels, Cnn9Weights, Head, CHANNELS};

/// A conv3x3 with bias, BatchNorm folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedConv {
    pub in_ch: usize,
    pub out_ch: usize,
    /// `[out, in, 3, 3]`, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl FoldedConv {
    /// Weights of output channel `o` (`in·9` values).
    pub fn out_channel(&self, o: usize) -> &[f32] {
        let n = self.in_ch * 9;
        &self.weight[o * n..(o + 1) * n]
    }
}

/// The encoder with folded convs, plus the heads unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedModel {
    pub convs: Vec<FoldedConv>,
    pub heads: Vec<Head>,
    /// Per channel of block 3's output, what its activations must be multiplied by to be the
    /// folded network's (1 until cross-layer equalisation divides a channel: the graph undoes
    /// it before block 3's pooled features are read).
    pub block3_scale: Vec<f32>,
}

/// Folds every BatchNorm into its conv. `w` must be valid ([`Cnn9Weights::validate`]).
pub fn fold(w: &Cnn9Weights) -> FoldedModel {
    let convs = w
        .convs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (in_ch, out_ch) = conv_channels(i);
            let per = in_ch * 9;
            let mut weight = vec![0f32; out_ch * per];
            let mut bias = vec![0f32; out_ch];
            for o in 0..out_ch {
                let k =
                    c.bn.weight[o] as f64 / (c.bn.running_var[o] as f64 + c.bn.eps as f64).sqrt();
                for j in 0..per {
                    weight[o * per + j] = (c.weight.data[o * per + j] as f64 * k) as f32;
                }
                bias[o] = (c.bn.bias[o] as f64 - c.bn.running_mean[o] as f64 * k) as f32;
            }
            FoldedConv {
                in_ch,
                out_ch,
                weight,
                bias,
            }
        })
        .collect();
    FoldedModel {
        convs,
        heads: w.heads.clone(),
        block3_scale: vec![1.0; CHANNELS[2]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_matches_batchnorm_on_a_pointwise_example() {
        let mut w = Cnn9Weights::random(5, &[]);
        let bn = &mut w.convs[0].bn;
        (
            bn.weight[2],
            bn.bias[2],
            bn.running_mean[2],
            bn.running_var[2],
        ) = (2.0, 0.5, 0.25, 3.0);
        let f = fold(&w);
        let c = &w.convs[0];
        // BN(conv(x)) for an input that is 1 at the kernel centre only: conv = w[o,0,1,1].
        let conv = c.weight.data[2 * 9 + 4];
        let want = 2.0 * (conv - 0.25) / (3.0f32 + 1e-5).sqrt() + 0.5;
        let got = f.convs[0].weight[2 * 9 + 4] + f.convs[0].bias[2];
        assert!((want - got).abs() < 1e-6, "{want} vs {got}");
    }
}

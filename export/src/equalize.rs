//! Cross-layer equalisation (Nagel et al., "Data-Free Quantization Through Weight Equalization
//! and Bias Correction", ICCV 2019) of consecutive folded convs.
//!
//! Why: with per-tensor int8 weights, a conv whose output channels have very different weight
//! ranges (aiSFX's first conv: 21×) wastes most of the 8 bits on the small channels. ReLU and
//! max-pooling are positively homogeneous (`relu(x/s) = relu(x)/s`, max-pool likewise per
//! channel), so dividing output channel c of conv k (weights and bias) by `s_c > 0` and
//! multiplying input channel c of conv k+1 by `s_c` leaves the network function unchanged in
//! exact arithmetic. Choosing `s_c = √(r1_c / r2_c)`, where `r1_c` is the max |w| of conv k's
//! output channel c and `r2_c` the max |w| of conv k+1's input channel c, makes both ranges
//! `√(r1_c·r2_c)`: the per-channel ranges of every inner conv become as equal as the pair allows.
//! Each conv sits in two pairs, so the sweep is repeated until the scales settle.
//! The last conv is not equalised with the heads: that would rescale the published embedding.

use crate::fold::FoldedModel;

/// What equalisation did, for the export log.
#[derive(Debug, Clone, PartialEq)]
pub struct EqualizeReport {
    pub sweeps: usize,
    /// Per conv: max/min of its output channels' weight ranges, before and after.
    pub range_spread_before: Vec<f32>,
    pub range_spread_after: Vec<f32>,
}

/// Ratio of the largest to the smallest non-zero output-channel weight range of each conv.
pub fn range_spread(m: &FoldedModel) -> Vec<f32> {
    m.convs
        .iter()
        .map(|c| {
            let r: Vec<f32> = (0..c.out_ch)
                .map(|o| c.out_channel(o).iter().fold(0f32, |a, v| a.max(v.abs())))
                .filter(|r| *r > 0.0)
                .collect();
            let hi = r.iter().cloned().fold(0f32, f32::max);
            let lo = r.iter().cloned().fold(f32::INFINITY, f32::min);
            if r.is_empty() {
                1.0
            } else {
                hi / lo
            }
        })
        .collect()
}

/// Equalises every consecutive conv pair in place (at most `max_sweeps` sweeps; stops when no
/// scale moves by more than 1e-4).
pub fn equalize(m: &mut FoldedModel, max_sweeps: usize) -> EqualizeReport {
    let before = range_spread(m);
    let mut sweeps = 0;
    for _ in 0..max_sweeps {
        sweeps += 1;
        let mut moved = 0f64;
        for k in 0..m.convs.len().saturating_sub(1) {
            let (a, b) = m.convs.split_at_mut(k + 1);
            let (c1, c2) = (&mut a[k], &mut b[0]);
            let per1 = c1.in_ch * 9;
            for ch in 0..c1.out_ch {
                let r1 = c1.weight[ch * per1..(ch + 1) * per1]
                    .iter()
                    .fold(0f64, |a, v| a.max(v.abs() as f64));
                let mut r2 = 0f64;
                for o in 0..c2.out_ch {
                    let base = (o * c2.in_ch + ch) * 9;
                    for v in &c2.weight[base..base + 9] {
                        r2 = r2.max(v.abs() as f64);
                    }
                }
                // A dead channel on either side carries nothing: leave it alone.
                if r1 <= 0.0 || r2 <= 0.0 {
                    continue;
                }
                let s = (r1 / r2).sqrt();
                moved = moved.max((s - 1.0).abs());
                for v in &mut c1.weight[ch * per1..(ch + 1) * per1] {
                    *v = (*v as f64 / s) as f32;
                }
                c1.bias[ch] = (c1.bias[ch] as f64 / s) as f32;
                if k == crate::graph::BLOCK3_LAST_CONV {
                    // Block 3's pooled features are read by heads: the graph undoes this.
                    m.block3_scale[ch] = (m.block3_scale[ch] as f64 * s) as f32;
                }
                for o in 0..c2.out_ch {
                    let base = (o * c2.in_ch + ch) * 9;
                    for v in &mut c2.weight[base..base + 9] {
                        *v = (*v as f64 * s) as f32;
                    }
                }
            }
        }
        if moved < 1e-4 {
            break;
        }
    }
    EqualizeReport {
        sweeps,
        range_spread_before: before,
        range_spread_after: range_spread(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fold, graph, parity, runtime::TractModel, synthetic_windows, Cnn9Weights};

    #[test]
    fn equalisation_preserves_the_fp32_function_and_narrows_ranges() {
        let w = Cnn9Weights::random(11, &[("h", 3)]);
        let f = fold::fold(&w);
        let mut e = f.clone();
        let rep = equalize(&mut e, 20);
        assert_ne!(
            f.convs[0].weight, e.convs[0].weight,
            "equalisation did nothing"
        );
        assert!(
            rep.range_spread_after[0] < rep.range_spread_before[0],
            "{rep:?}"
        );
        let run = |m: &FoldedModel| {
            let t = TractModel::from_bytes(&graph::to_bytes(&graph::fp32_model(m, false))).unwrap();
            t.run(&synthetic_windows(1, 3)[0]).unwrap()
        };
        let (a, b) = (run(&f), run(&e));
        let c = parity::cosine(&a[0], &b[0]);
        assert!(c > 0.999_999, "embedding changed: cosine {c}");
        let rel = a[1]
            .iter()
            .zip(&b[1])
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(rel < 1e-4, "logits changed by {rel}");
        // Block 3's pooled features are read by heads: the graph undoes equalisation's scales.
        assert!(
            e.block3_scale.iter().any(|s| (s - 1.0).abs() > 1e-3),
            "block 3 was not rescaled"
        );
        let rel = a[2]
            .iter()
            .zip(&b[2])
            .map(|(x, y)| (x - y).abs() / x.abs().max(1e-2))
            .fold(0f32, f32::max);
        assert!(rel < 1e-4, "block 3's features changed by {rel}");
    }
}

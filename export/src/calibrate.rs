//! Activation ranges for per-tensor u8 quantisation, measured by running the fp32 graph (with
//! every post-ReLU tensor as an extra output) in tract over calibration windows.
//!
//! Two methods (architecture.md §5: both measured within fold noise of each other on kNN macro-F1):
//! - `minmax`: the largest value seen. Never clips; wastes resolution on rare outliers.
//! - `percentile`: the 99.99th percentile of all values of the tensor over all windows
//!   (exact, via a running top-k), so the rare largest 0.01 % saturate in exchange for a finer
//!   step on everything else.
//!
//! Post-ReLU tensors are ≥ 0, so every range is `[0, hi]` and the zero point is 0 (which is also
//! what folds ReLU into the quantised conv output). The input range is measured the same way.

use crate::fold::FoldedModel;
use crate::graph;
use crate::runtime::{TractError, TractModel};
use sfxtag_core::frontend::ModelWindow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Calibration {
    #[default]
    MinMax,
    /// 99.99th percentile.
    Percentile,
}

impl Calibration {
    pub const PERCENTILE: f64 = 99.99;

    pub fn name(&self) -> &'static str {
        match self {
            Calibration::MinMax => "minmax",
            Calibration::Percentile => "percentile-99.99",
        }
    }
}

/// Upper ends of the quantisation ranges: the input and each conv's post-ReLU output.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranges {
    pub input_max: f32,
    pub activation_max: Vec<f32>,
    /// fp32 embeddings of the calibration windows (a by-product, for the z-score statistics).
    pub embeddings: Vec<Vec<f32>>,
}

/// Keeps the `k` largest values seen (for an exact upper percentile without storing everything).
struct TopK {
    k: usize,
    vals: Vec<f32>,
    max: f32,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k: k.max(1),
            vals: Vec::new(),
            max: 0.0,
        }
    }

    fn push(&mut self, xs: &[f32]) {
        for &x in xs {
            if x > self.max {
                self.max = x;
            }
        }
        let take = self.k.min(xs.len());
        let mut buf: Vec<f32> = xs.to_vec();
        let n = buf.len();
        buf.select_nth_unstable_by(n - take, |a, b| a.total_cmp(b));
        self.vals.extend_from_slice(&buf[n - take..]);
        if self.vals.len() > 4 * self.k {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        let n = self.vals.len();
        if n > self.k {
            self.vals
                .select_nth_unstable_by(n - self.k, |a, b| a.total_cmp(b));
            self.vals.drain(..n - self.k);
        }
    }

    /// The k-th largest value seen.
    fn kth(&mut self) -> f32 {
        self.shrink();
        self.vals.iter().cloned().fold(f32::INFINITY, f32::min)
    }
}

/// Runs the fp32 calibration graph over `windows` and returns the ranges.
pub fn calibrate(
    m: &FoldedModel,
    windows: &[Box<ModelWindow>],
    method: Calibration,
) -> Result<Ranges, TractError> {
    let model = TractModel::from_bytes(&graph::to_bytes(&graph::fp32_model(m, true)))?;
    let emb_idx = model
        .output_index(graph::EMBEDDING)
        .ok_or_else(|| TractError("calibration graph has no embedding output".into()))?;
    let act_idx: Vec<usize> = (0..m.convs.len())
        .map(|i| {
            model
                .output_index(&graph::activation_name(i))
                .ok_or_else(|| TractError(format!("no output {}", graph::activation_name(i))))
        })
        .collect::<Result<_, _>>()?;
    let frac = 1.0 - Calibration::PERCENTILE / 100.0;
    let k_for = |per_window: usize| match method {
        Calibration::MinMax => 1,
        Calibration::Percentile => {
            ((per_window * windows.len()) as f64 * frac).ceil().max(1.0) as usize
        }
    };
    let in_len = graph::INPUT_SHAPE.iter().product::<usize>();
    let mut input = TopK::new(k_for(in_len));
    let mut acts: Vec<Option<TopK>> = vec![];
    acts.resize_with(m.convs.len(), || None);
    let mut embeddings = Vec::with_capacity(windows.len());
    for w in windows {
        let flat: Vec<f32> = w.iter().flatten().copied().collect();
        input.push(&flat);
        let out = model.run(w)?;
        for (i, &ix) in act_idx.iter().enumerate() {
            let a = acts[i].get_or_insert_with(|| TopK::new(k_for(out[ix].len())));
            a.push(&out[ix]);
        }
        embeddings.push(out[emb_idx].clone());
    }
    let pick = |t: &mut TopK| match method {
        Calibration::MinMax => t.max,
        Calibration::Percentile => t.kth(),
    };
    Ok(Ranges {
        input_max: pick(&mut input),
        activation_max: acts
            .iter_mut()
            .map(|a| a.as_mut().map(pick).unwrap_or(0.0))
            .collect(),
        embeddings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_gives_exact_upper_percentile() {
        let mut t = TopK::new(3);
        t.push(&[1.0, 9.0, 3.0, 7.0]);
        t.push(&[8.0, 2.0, 0.5]);
        // Largest three: 9, 8, 7 → third largest is 7.
        assert_eq!(t.kth(), 7.0);
        assert_eq!(t.max, 9.0);
    }
}

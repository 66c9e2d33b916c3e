//! Parity measures: int8 vs fp32 embeddings and head decisions on held-out windows.

use crate::graph;
use crate::runtime::{TractError, TractModel};
use sfxtag_core::frontend::ModelWindow;
use std::collections::BTreeMap;

/// Cosine similarity (1 for two zero vectors: identical, and nothing to publish anyway).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        1.0
    } else if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// int8-vs-fp32 agreement over a set of windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Parity {
    pub windows: usize,
    pub cosines: Vec<f64>,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    /// Head name → fraction of windows whose top-1 class agrees.
    pub head_top1: BTreeMap<String, f64>,
}

/// Runs both models on `windows` and compares `embedding` and every `logits_<head>`.
pub fn compare(
    a: &TractModel,
    b: &TractModel,
    heads: &[String],
    windows: &[Box<ModelWindow>],
) -> Result<Parity, TractError> {
    let idx = |m: &TractModel, name: &str| {
        m.output_index(name)
            .ok_or_else(|| TractError(format!("model has no output {name}")))
    };
    let (ea, eb) = (idx(a, graph::EMBEDDING)?, idx(b, graph::EMBEDDING)?);
    let mut head_idx = Vec::new();
    for h in heads {
        let n = graph::logits_name(h);
        head_idx.push((idx(a, &n)?, idx(b, &n)?));
    }
    let mut cosines = Vec::new();
    let mut agree = vec![0usize; heads.len()];
    for w in windows {
        let (oa, ob) = (a.run(w)?, b.run(w)?);
        cosines.push(cosine(&oa[ea], &ob[eb]));
        for (k, (ia, ib)) in head_idx.iter().enumerate() {
            if argmax(&oa[*ia]) == argmax(&ob[*ib]) {
                agree[k] += 1;
            }
        }
    }
    let n = windows.len().max(1) as f64;
    Ok(Parity {
        windows: windows.len(),
        cosine_mean: cosines.iter().sum::<f64>() / n,
        cosine_min: cosines.iter().cloned().fold(1.0, f64::min),
        cosines,
        head_top1: heads
            .iter()
            .zip(agree)
            .map(|(h, c)| (h.clone(), c as f64 / n))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_argmax() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-12);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(argmax(&[0.1, 0.5, 0.5, -1.0]), 1);
    }
}

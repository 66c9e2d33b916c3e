//! Making a score mean a probability: temperature scaling of a head's logits (one scalar `T`,
//! softmax(logits / T), fitted by minimising the negative log-likelihood of held-out
//! predictions), and per-class confidence thresholds chosen so that a label called confident is
//! right at a target rate on held-out data.

/// Mean negative log-likelihood of `labels` under softmax(logits / t); `logits` is
/// `labels.len() × classes` row-major.
pub fn nll(logits: &[f32], classes: usize, labels: &[usize], t: f32) -> f64 {
    let mut total = 0.0f64;
    for (row, &y) in logits.chunks_exact(classes).zip(labels) {
        let m = row.iter().map(|v| v / t).fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = row
            .iter()
            .map(|&v| ((v / t) as f64 - m).exp())
            .sum::<f64>()
            .ln()
            + m;
        total += lse - (row[y] / t) as f64;
    }
    total / labels.len().max(1) as f64
}

/// The temperature in `[0.05, 20]` that minimises [`nll`] (golden-section search on `ln T`; the
/// NLL is unimodal in `T` for fixed logits).
pub fn fit_temperature(logits: &[f32], classes: usize, labels: &[usize]) -> f32 {
    if labels.is_empty() {
        return 1.0;
    }
    let f = |lt: f64| nll(logits, classes, labels, lt.exp() as f32);
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

/// One held-out prediction: the predicted class, its probability, and whether it was right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub class: usize,
    pub prob: f32,
    pub correct: bool,
}

/// Fewest predictions of a class for a threshold of its own; rarer classes get the global one.
pub const MIN_PREDICTIONS: usize = 20;

/// The lowest probability threshold at which predictions are right at least `precision` of
/// the time (over those at or above it), or `None` when no threshold gets there.
pub fn threshold_for(decisions: &[Decision], precision: f32) -> Option<f32> {
    let mut d: Vec<&Decision> = decisions.iter().collect();
    d.sort_by(|a, b| b.prob.total_cmp(&a.prob));
    let (mut right, mut best) = (0usize, None);
    for (i, x) in d.iter().enumerate() {
        right += x.correct as usize;
        // Only cut between distinct probabilities.
        if d.get(i + 1).is_some_and(|n| n.prob == x.prob) {
            continue;
        }
        if right as f32 >= precision * (i + 1) as f32 {
            best = Some(x.prob);
        }
    }
    best
}

/// Per-class thresholds: each class with [`MIN_PREDICTIONS`] held-out predictions gets its
/// own; the others, and classes whose own threshold cannot reach `precision`, get the global
/// threshold (over all predictions), else 1.0 (never confident).
pub fn thresholds(decisions: &[Decision], classes: usize, precision: f32) -> Vec<f32> {
    let global = threshold_for(decisions, precision).unwrap_or(1.0);
    (0..classes)
        .map(|c| {
            let own: Vec<Decision> = decisions.iter().copied().filter(|d| d.class == c).collect();
            if own.len() >= MIN_PREDICTIONS {
                threshold_for(&own, precision).unwrap_or(global.max(0.99))
            } else {
                global
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Over-confident logits: the true class is likely but the logits are scaled by 4.
    fn overconfident(n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let y = rng.random_range(0..4usize);
            for c in 0..4 {
                let base = if c == y { 1.0 } else { 0.0 } + rng.random_range(-1.2..1.2f32);
                logits.push(4.0 * base);
            }
            labels.push(y);
        }
        (logits, labels)
    }

    #[test]
    fn temperature_scaling_lowers_validation_nll() {
        let (fit_l, fit_y) = overconfident(2000, 1);
        let (val_l, val_y) = overconfident(2000, 2);
        let t = fit_temperature(&fit_l, 4, &fit_y);
        assert!(t > 1.5, "over-confident logits need T > 1, got {t}");
        let before = nll(&val_l, 4, &val_y, 1.0);
        let after = nll(&val_l, 4, &val_y, t);
        assert!(after < before * 0.9, "NLL {before} → {after}");
    }

    #[test]
    fn thresholds_reach_the_precision() {
        // Probabilities 0.1..1.0; right exactly when prob ≥ 0.6, plus one lucky low one.
        let mut d: Vec<Decision> = (1..=10)
            .flat_map(|i| {
                (0..5).map(move |_| Decision {
                    class: 0,
                    prob: i as f32 / 10.0,
                    correct: i >= 6,
                })
            })
            .collect();
        d[0].correct = true;
        assert_eq!(threshold_for(&d, 1.0), Some(0.6));
        assert_eq!(threshold_for(&d, 0.8), Some(0.5)); // 25 right of 30 at ≥ 0.5
        assert_eq!(threshold_for(&d[..5], 0.9), None);
        let t = thresholds(&d, 2, 1.0);
        assert_eq!(t, vec![0.6, 0.6]); // class 1 has no predictions: global
    }
}

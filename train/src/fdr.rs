//! 'Focal' dataset reweighting (paper §5.3.2, eq. 1): α_d = (1 − β^{n_e}) / (1 − β), where n_e
//! is the epoch at which dataset d's training macro-F1 first crossed 90 %; the weights are then
//! normalised to sum to D, the number of datasets. Slow (hard) datasets get larger weights.

/// The training-set macro-F1 a dataset must reach to count as converged.
pub const CONVERGED_F1: f64 = 0.9;

/// Normalised weights for datasets that converged at `epochs[d]` (≥ 1), with 0 < β < 1.
pub fn weights(epochs: &[u32], beta: f64) -> Vec<f64> {
    assert!(beta > 0.0 && beta < 1.0, "β must lie in (0, 1), got {beta}");
    let raw: Vec<f64> = epochs
        .iter()
        .map(|&n| (1.0 - beta.powi(n.max(1) as i32)) / (1.0 - beta))
        .collect();
    let sum: f64 = raw.iter().sum();
    let d = epochs.len() as f64;
    raw.iter().map(|a| a * d / sum).collect()
}

/// The first epoch (1-based) whose training macro-F1 reaches [`CONVERGED_F1`]; datasets that
/// never converge count as converging one epoch after the last observed.
pub fn convergence_epoch(train_f1_per_epoch: &[f64]) -> u32 {
    train_f1_per_epoch
        .iter()
        .position(|&f| f >= CONVERGED_F1)
        .map(|i| i as u32 + 1)
        .unwrap_or(train_f1_per_epoch.len() as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_equation_one() {
        let beta = 0.999;
        let w = weights(&[2, 10, 50], beta);
        let a: Vec<f64> = [2, 10, 50]
            .iter()
            .map(|&n| (1.0 - beta.powi(n)) / (1.0 - beta))
            .collect();
        let s: f64 = a.iter().sum();
        for (wi, ai) in w.iter().zip(&a) {
            assert!((wi - ai * 3.0 / s).abs() < 1e-12);
        }
        assert!((w.iter().sum::<f64>() - 3.0).abs() < 1e-12);
        // Slower-converging datasets weigh more.
        assert!(w[0] < w[1] && w[1] < w[2]);
        // Equal convergence gives equal weights of 1.
        assert_eq!(weights(&[4, 4], 0.9), vec![1.0, 1.0]);
    }

    #[test]
    fn convergence_epoch_is_the_first_crossing() {
        assert_eq!(convergence_epoch(&[0.2, 0.85, 0.91, 0.95]), 3);
        assert_eq!(convergence_epoch(&[0.2, 0.5]), 3);
    }
}

//! Class priors of a batch: re-weighting a head's posteriors for the mix of classes a batch of
//! recordings holds.
//!
//! A head learns the class mix of its training data; a recording session or a library holds a
//! few Categories in very different proportions. The expectation–maximisation of Saerens,
//! Latinne and Decaestecker (2002, "Adjusting the outputs of a classifier to new a priori
//! probabilities") estimates the batch's priors from the posteriors alone (no labels) and
//! re-weights every posterior by `batch prior / training prior`. Pure arithmetic on fixed
//! slices: the trainer measures it and the daemon applies it with the same code.

use alloc::vec;
use alloc::vec::Vec;

/// The training prior's weight in clips that `sfxtag classify --batch-priors` uses unless told
/// otherwise (and the trainer reports): a handful of files stays close to the head's own mix, a
/// session of hundreds follows its own.
pub const DEFAULT_STRENGTH: f32 = 30.0;

/// Settings of [`adapt_priors`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorAdaptation {
    /// Pseudo-count of the training prior in each update: the estimate is
    /// `(Σ posteriors + strength · training prior) / (n + strength)`. 0 is plain maximum
    /// likelihood; a few clips' worth keeps a small batch from collapsing onto one class.
    pub strength: f32,
    /// Stop when no prior moves by more than this.
    pub tolerance: f32,
    pub max_iterations: usize,
}

impl Default for PriorAdaptation {
    fn default() -> Self {
        Self {
            strength: 0.0,
            tolerance: 1e-5,
            max_iterations: 200,
        }
    }
}

/// What [`adapt_priors`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptedPriors {
    /// The batch's estimated class priors (sum 1).
    pub priors: Vec<f32>,
    pub iterations: usize,
}

/// Re-weights `probs` (rows of `width` posteriors, each summing to 1, from a head trained with
/// class priors `train_prior`) in place for the batch's own priors, estimated by EM.
///
/// Classes with a zero training prior keep probability 0. An empty batch is left as it is and
/// gets the training prior back.
pub fn adapt_priors(
    probs: &mut [f32],
    width: usize,
    train_prior: &[f32],
    settings: PriorAdaptation,
) -> AdaptedPriors {
    assert_eq!(train_prior.len(), width, "one training prior per class");
    assert_eq!(probs.len() % width.max(1), 0, "whole rows");
    let total: f32 = train_prior.iter().sum();
    let train: Vec<f32> = train_prior
        .iter()
        .map(|p| p / total.max(f32::MIN_POSITIVE))
        .collect();
    let n = probs.len() / width.max(1);
    if n == 0 || width == 0 {
        return AdaptedPriors {
            priors: train,
            iterations: 0,
        };
    }
    let original = probs.to_vec();
    let mut prior = train.clone();
    let mut sums = vec![0f32; width];
    let mut iterations = 0;
    while iterations < settings.max_iterations {
        iterations += 1;
        reweight(&original, probs, width, &train, &prior);
        sums.iter_mut().for_each(|s| *s = 0.0);
        for row in probs.chunks_exact(width) {
            sums.iter_mut().zip(row).for_each(|(s, p)| *s += p);
        }
        let denom = n as f32 + settings.strength;
        let mut moved = 0f32;
        for ((p, s), t) in prior.iter_mut().zip(&sums).zip(&train) {
            let next = (s + settings.strength * t) / denom;
            moved = moved.max((next - *p).abs());
            *p = next;
        }
        if moved < settings.tolerance {
            break;
        }
    }
    reweight(&original, probs, width, &train, &prior);
    AdaptedPriors {
        priors: prior,
        iterations,
    }
}

/// `out = normalise(original · prior / train)` row by row.
fn reweight(original: &[f32], out: &mut [f32], width: usize, train: &[f32], prior: &[f32]) {
    for (src, dst) in original
        .chunks_exact(width)
        .zip(out.chunks_exact_mut(width))
    {
        let mut sum = 0f32;
        for k in 0..width {
            let w = if train[k] > 0.0 {
                prior[k] / train[k]
            } else {
                0.0
            };
            dst[k] = src[k] * w;
            sum += dst[k];
        }
        if sum > 0.0 {
            dst.iter_mut().for_each(|v| *v /= sum);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch mostly of class A, from a head trained 50/50: EM finds A's larger prior, and
    /// the adapted posteriors move the ambiguous clips to the common class.
    #[test]
    fn recovers_the_batch_prior_and_moves_ambiguous_clips() {
        // Three kinds of clip: clearly A, ambiguous (leaning to B), clearly B.
        let kinds = [[0.9f32, 0.1], [0.45, 0.55], [0.1, 0.9]];
        let mut probs = Vec::new();
        let mut add = |kind: usize, count: usize| {
            for _ in 0..count {
                probs.extend_from_slice(&kinds[kind]);
            }
        };
        add(0, 600);
        add(1, 330);
        add(2, 70);
        let before_ambiguous = probs[600 * 2];
        let out = adapt_priors(&mut probs, 2, &[0.5, 0.5], PriorAdaptation::default());
        assert!(out.priors[0] > 0.8, "estimated prior {:?}", out.priors);
        assert!((out.priors.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        // The ambiguous clip leaned to B before and leans to A after.
        assert!(before_ambiguous < 0.5);
        assert!(probs[600 * 2] > 0.5, "{}", probs[600 * 2]);
        // Every row still sums to 1.
        for row in probs.chunks_exact(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-5);
        }
    }

    /// A batch whose mix is the training mix stays as it is.
    #[test]
    fn a_batch_with_the_training_mix_is_unchanged() {
        let mut probs = vec![0.8f32, 0.2, 0.2, 0.8];
        let before = probs.clone();
        let out = adapt_priors(&mut probs, 2, &[1.0, 1.0], PriorAdaptation::default());
        assert!((out.priors[0] - 0.5).abs() < 1e-4);
        for (a, b) in probs.iter().zip(&before) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    /// The pseudo-count pulls the estimate toward the training prior, and a class the head
    /// was never trained on stays at zero.
    #[test]
    fn strength_shrinks_toward_training_and_untrained_classes_stay_zero() {
        let row = [0.7f32, 0.3, 0.0];
        let mut a: Vec<f32> = row.repeat(20);
        let mut b = a.clone();
        let train = [0.5, 0.5, 0.0];
        let free = adapt_priors(&mut a, 3, &train, PriorAdaptation::default());
        let held = adapt_priors(
            &mut b,
            3,
            &train,
            PriorAdaptation {
                strength: 20.0,
                ..Default::default()
            },
        );
        assert!(free.priors[0] > held.priors[0]);
        assert!(held.priors[0] > 0.5);
        assert_eq!(free.priors[2], 0.0);
        assert!(a.chunks_exact(3).all(|r| r[2] == 0.0));
    }

    #[test]
    fn an_empty_batch_returns_the_training_prior() {
        let out = adapt_priors(&mut [], 2, &[3.0, 1.0], PriorAdaptation::default());
        assert_eq!(out.priors, vec![0.75, 0.25]);
        assert_eq!(out.iterations, 0);
    }
}

//! The paper's evaluation (§4.3): frozen embeddings z-scored with training statistics, a
//! k-nearest-neighbour classifier fit on the train split and scored on the test split with
//! macro-F1, and the Davies–Bouldin index of the embedding space. Pure Rust, no libtorch.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum MetricsError {
    #[error("no training embeddings to fit on")]
    EmptyTrain,
    #[error("no test embeddings to score")]
    EmptyTest,
    #[error("embedding {index} has dimension {found}, expected {expected}")]
    Dimension {
        index: usize,
        found: usize,
        expected: usize,
    },
    #[error("{0} labels for {1} embeddings")]
    LabelCount(usize, usize),
    #[error("the Davies–Bouldin index needs at least 2 clusters, got {0}")]
    TooFewClusters(usize),
    #[error("k must be at least 1")]
    ZeroK,
}

/// Per-dimension mean and standard deviation (population), fit on training embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct ZScore {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ZScore {
    /// Fits the statistics; a dimension with zero variance gets std 1 (it is constant anyway).
    pub fn fit(x: &[Vec<f32>]) -> Result<Self, MetricsError> {
        let first = x.first().ok_or(MetricsError::EmptyTrain)?;
        let d = first.len();
        check_dims(x, d)?;
        let n = x.len() as f64;
        let mut mean = vec![0.0f64; d];
        for v in x {
            for (m, &e) in mean.iter_mut().zip(v) {
                *m += e as f64 / n;
            }
        }
        let mut var = vec![0.0f64; d];
        for v in x {
            for ((s, &e), &m) in var.iter_mut().zip(v).zip(&mean) {
                *s += (e as f64 - m).powi(2) / n;
            }
        }
        Ok(Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: var
                .iter()
                .map(|&v| if v > 1e-24 { v.sqrt() as f32 } else { 1.0 })
                .collect(),
        })
    }

    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        v.iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((x, m), s)| (x - m) / s)
            .collect()
    }
}

fn check_dims(x: &[Vec<f32>], d: usize) -> Result<(), MetricsError> {
    match x.iter().position(|v| v.len() != d) {
        Some(index) => Err(MetricsError::Dimension {
            index,
            found: x[index].len(),
            expected: d,
        }),
        None => Ok(()),
    }
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-NN classification with Euclidean distance (on z-scored embeddings, as scikit-learn's
/// default `KNeighborsClassifier` the paper used). Majority vote; ties go to the class of the
/// nearest neighbour among the tied ones.
pub fn knn_predict(
    train: &[Vec<f32>],
    train_labels: &[usize],
    test: &[Vec<f32>],
    k: usize,
) -> Result<Vec<usize>, MetricsError> {
    if k == 0 {
        return Err(MetricsError::ZeroK);
    }
    let d = train.first().ok_or(MetricsError::EmptyTrain)?.len();
    if train.len() != train_labels.len() {
        return Err(MetricsError::LabelCount(train_labels.len(), train.len()));
    }
    check_dims(train, d)?;
    check_dims(test, d)?;
    let k = k.min(train.len());
    let mut out = Vec::with_capacity(test.len());
    let mut order: Vec<(f32, usize)> = Vec::with_capacity(train.len());
    for q in test {
        order.clear();
        order.extend(train.iter().enumerate().map(|(i, t)| (sq_dist(q, t), i)));
        order.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
        let mut nearest = order[..k].to_vec();
        nearest.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut votes: Vec<(usize, usize, usize)> = Vec::new(); // (label, count, first rank)
        for (rank, &(_, i)) in nearest.iter().enumerate() {
            let l = train_labels[i];
            match votes.iter_mut().find(|v| v.0 == l) {
                Some(v) => v.1 += 1,
                None => votes.push((l, 1, rank)),
            }
        }
        let best = votes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .expect("k ≥ 1 gives a vote");
        out.push(best.0);
    }
    Ok(out)
}

/// Macro-averaged F1 over the classes present in `truth` or `pred` (scikit-learn's
/// `f1_score(average='macro')`: a class never predicted and never true does not count; a class
/// with no true positives scores 0).
pub fn macro_f1(truth: &[usize], pred: &[usize]) -> Result<f64, MetricsError> {
    if truth.len() != pred.len() {
        return Err(MetricsError::LabelCount(pred.len(), truth.len()));
    }
    if truth.is_empty() {
        return Err(MetricsError::EmptyTest);
    }
    let mut classes: Vec<usize> = truth.iter().chain(pred).copied().collect();
    classes.sort_unstable();
    classes.dedup();
    let mut sum = 0.0;
    for &c in &classes {
        let tp = truth
            .iter()
            .zip(pred)
            .filter(|(t, p)| **t == c && **p == c)
            .count() as f64;
        let fp = truth
            .iter()
            .zip(pred)
            .filter(|(t, p)| **t != c && **p == c)
            .count() as f64;
        let fn_ = truth
            .iter()
            .zip(pred)
            .filter(|(t, p)| **t == c && **p != c)
            .count() as f64;
        let denom = 2.0 * tp + fp + fn_;
        sum += if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
    }
    Ok(sum / classes.len() as f64)
}

/// Davies–Bouldin index (lower is better), as scikit-learn computes it: Euclidean distances,
/// S_i = mean distance of cluster i's points to its centroid, R_ij = (S_i + S_j) / d(c_i, c_j),
/// DB = mean_i max_{j≠i} R_ij.
pub fn davies_bouldin(x: &[Vec<f32>], labels: &[usize]) -> Result<f64, MetricsError> {
    if x.len() != labels.len() {
        return Err(MetricsError::LabelCount(labels.len(), x.len()));
    }
    let d = x.first().ok_or(MetricsError::EmptyTest)?.len();
    check_dims(x, d)?;
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() < 2 {
        return Err(MetricsError::TooFewClusters(classes.len()));
    }
    let mut centroids = vec![vec![0.0f64; d]; classes.len()];
    let mut counts = vec![0usize; classes.len()];
    for (v, l) in x.iter().zip(labels) {
        let c = classes.binary_search(l).expect("label from the list");
        counts[c] += 1;
        for (s, &e) in centroids[c].iter_mut().zip(v) {
            *s += e as f64;
        }
    }
    for (c, n) in centroids.iter_mut().zip(&counts) {
        c.iter_mut().for_each(|s| *s /= *n as f64);
    }
    let dist = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut scatter = vec![0.0f64; classes.len()];
    for (v, l) in x.iter().zip(labels) {
        let c = classes.binary_search(l).expect("label from the list");
        let v64: Vec<f64> = v.iter().map(|&e| e as f64).collect();
        scatter[c] += dist(&v64, &centroids[c]) / counts[c] as f64;
    }
    let mut total = 0.0;
    for i in 0..classes.len() {
        let mut worst = 0.0f64;
        for j in 0..classes.len() {
            if i != j {
                let sep = dist(&centroids[i], &centroids[j]);
                // scikit-learn: coincident centroids give an infinite ratio, replaced by 0.
                let r = if sep > 0.0 {
                    (scatter[i] + scatter[j]) / sep
                } else {
                    0.0
                };
                worst = worst.max(r);
            }
        }
        total += worst;
    }
    Ok(total / classes.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_matches_a_hand_computed_example() {
        // truth 0 0 1 1 2, pred 0 1 1 1 0:
        // class 0: tp 1, fp 1, fn 1 → 0.5; class 1: tp 2, fp 1, fn 0 → 0.8; class 2: tp 0 → 0.
        let f = macro_f1(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0]).unwrap();
        assert!((f - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12, "{f}");
        assert_eq!(macro_f1(&[1, 2], &[1, 2]).unwrap(), 1.0);
        assert!(macro_f1(&[], &[]).is_err());
    }

    #[test]
    fn knn_votes_and_breaks_ties_by_distance() {
        let train = vec![
            vec![0.0, 0.0],
            vec![0.1, 0.0],
            vec![5.0, 5.0],
            vec![5.2, 5.0],
        ];
        let labels = [7, 7, 3, 3];
        let test = vec![vec![0.05, 0.0], vec![4.9, 5.1]];
        assert_eq!(knn_predict(&train, &labels, &test, 3).unwrap(), vec![7, 3]);
        // k = 2 with one neighbour from each class: the nearer one wins.
        let train = vec![vec![0.0], vec![1.0]];
        assert_eq!(
            knn_predict(&train, &[1, 2], &[vec![0.4]], 2).unwrap(),
            vec![1]
        );
        assert_eq!(
            knn_predict(&train, &[1, 2], &[vec![0.6]], 2).unwrap(),
            vec![2]
        );
        assert_eq!(
            knn_predict(&train, &[1, 2], &[vec![0.6]], 0),
            Err(MetricsError::ZeroK)
        );
    }

    #[test]
    fn davies_bouldin_matches_a_hand_computed_example() {
        // Cluster A: (0,0),(2,0) centroid (1,0), S=1. Cluster B: (10,0),(10,4) centroid (10,2),
        // S=2. d(cA,cB) = sqrt(81+4) = sqrt(85). R = 3/sqrt(85) for both → DB = 3/sqrt(85).
        let x = vec![
            vec![0.0, 0.0],
            vec![2.0, 0.0],
            vec![10.0, 0.0],
            vec![10.0, 4.0],
        ];
        let db = davies_bouldin(&x, &[0, 0, 1, 1]).unwrap();
        assert!((db - 3.0 / 85f64.sqrt()).abs() < 1e-9, "{db}");
        assert_eq!(
            davies_bouldin(&x, &[0, 0, 0, 0]),
            Err(MetricsError::TooFewClusters(1))
        );
    }

    #[test]
    fn zscore_uses_training_statistics() {
        let z = ZScore::fit(&[vec![1.0, 5.0], vec![3.0, 5.0]]).unwrap();
        assert_eq!(z.mean, vec![2.0, 5.0]);
        assert_eq!(z.std, vec![1.0, 1.0]);
        assert_eq!(z.apply(&[4.0, 6.0]), vec![2.0, 1.0]);
        assert!(matches!(
            ZScore::fit(&[vec![1.0], vec![1.0, 2.0]]),
            Err(MetricsError::Dimension { index: 1, .. })
        ));
    }
}

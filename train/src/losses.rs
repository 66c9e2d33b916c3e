//! The paper's losses (§3.2): cross-entropy, and joint CE + a metric loss on cosine similarity
//! (contrastive, triplet or circle) over all pairs / triplets of the batch (online mining), plus
//! the RegularFace regulariser on the classifier weights. Margins follow the defaults of
//! pytorch-metric-learning, which the reference implementation used.

use tch::{Kind, Tensor};

/// Which metric loss joins CE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricLoss {
    /// CE only.
    None,
    /// Positive pairs pulled above `pos_margin`, negatives pushed below `neg_margin`.
    Contrastive { pos_margin: f64, neg_margin: f64 },
    /// s(a,n) − s(a,p) + margin over all valid triplets.
    Triplet { margin: f64 },
    /// Circle loss (Sun et al. 2020) with relaxation `m` and scale `gamma`.
    Circle { m: f64, gamma: f64 },
}

impl MetricLoss {
    pub fn contrastive() -> Self {
        MetricLoss::Contrastive {
            pos_margin: 1.0,
            neg_margin: 0.0,
        }
    }
    pub fn triplet() -> Self {
        MetricLoss::Triplet { margin: 0.05 }
    }
    pub fn circle() -> Self {
        MetricLoss::Circle {
            m: 0.4,
            gamma: 80.0,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            MetricLoss::None => "ce",
            MetricLoss::Contrastive { .. } => "contrastive",
            MetricLoss::Triplet { .. } => "triplet",
            MetricLoss::Circle { .. } => "circle",
        }
    }
}

/// Cosine-similarity matrix `[B, B]` of embeddings `[B, D]`.
pub fn cosine_matrix(emb: &Tensor) -> Tensor {
    let n = emb
        .linalg_norm(2.0, &[1i64][..], true, Kind::Float)
        .clamp_min(1e-12);
    let e = emb / n;
    e.matmul(&e.transpose(0, 1))
}

/// Masks of positive pairs (same label, i ≠ j) and negative pairs (different labels).
fn pair_masks(labels: &Tensor) -> (Tensor, Tensor) {
    let b = labels.size()[0];
    let same = labels.unsqueeze(0).eq_tensor(&labels.unsqueeze(1));
    let eye = Tensor::eye(b, (Kind::Bool, labels.device()));
    let pos = same.logical_and(&eye.logical_not());
    let neg = same.logical_not();
    (pos, neg)
}

/// Mean of the strictly positive entries of `losses` where `mask` holds (pml's AvgNonZero):
/// easy pairs already satisfied do not dilute the gradient. Zero when none remains.
fn avg_non_zero(losses: &Tensor, mask: &Tensor) -> Tensor {
    let l = losses * mask.to_kind(Kind::Float);
    let count = l.gt(0.0).to_kind(Kind::Float).sum(Kind::Float);
    l.sum(Kind::Float) / count.clamp_min(1.0)
}

/// The metric loss of a batch of embeddings `[B, D]` with integer labels `[B]`.
pub fn metric_loss(kind: MetricLoss, emb: &Tensor, labels: &Tensor) -> Tensor {
    let s = cosine_matrix(emb);
    let (pos, neg) = pair_masks(labels);
    match kind {
        MetricLoss::None => Tensor::zeros([], (Kind::Float, emb.device())),
        MetricLoss::Contrastive {
            pos_margin,
            neg_margin,
        } => {
            let lp = (s.g_mul_scalar(-1.0) + pos_margin).relu();
            let ln = (&s - neg_margin).relu();
            avg_non_zero(&lp, &pos) + avg_non_zero(&ln, &neg)
        }
        MetricLoss::Triplet { margin } => {
            // [a, p, n] = s(a,n) − s(a,p) + margin over valid (a,p,n).
            let sap = s.unsqueeze(2);
            let san = s.unsqueeze(1);
            let l = (san - sap + margin).relu();
            let valid = pos.unsqueeze(2).logical_and(&neg.unsqueeze(1));
            avg_non_zero(&l, &valid)
        }
        MetricLoss::Circle { m, gamma } => {
            let big = 1e4;
            let posf = pos.to_kind(Kind::Float);
            let negf = neg.to_kind(Kind::Float);
            let ap = (s.g_mul_scalar(-1.0) + 1.0 + m).relu().detach();
            let an = (&s + m).relu().detach();
            let logit_p: Tensor = (ap * (&s - (1.0 - m))).g_mul_scalar(-gamma)
                - (posf.g_mul_scalar(-1.0) + 1.0) * big;
            let logit_n: Tensor =
                (an * (&s - m)).g_mul_scalar(gamma) - (negf.g_mul_scalar(-1.0) + 1.0) * big;
            let l =
                (logit_p.logsumexp([1i64], false) + logit_n.logsumexp([1i64], false)).softplus();
            // Only anchors with at least one positive and one negative count.
            let has = posf
                .sum_dim_intlist(&[1i64][..], false, Kind::Float)
                .gt(0.0)
                .logical_and(
                    &negf
                        .sum_dim_intlist(&[1i64][..], false, Kind::Float)
                        .gt(0.0),
                )
                .to_kind(Kind::Float);
            (l * &has).sum(Kind::Float) / has.sum(Kind::Float).clamp_min(1.0)
        }
    }
}

/// RegularFace (Zhao et al. 2019): the mean over classes of the largest cosine similarity between
/// a class's weight vector and any other's — pushes class centres apart. `weights`: `[C, D]`.
pub fn regularface(weights: &Tensor) -> Tensor {
    let c = weights.size()[0];
    if c < 2 {
        return Tensor::zeros([], (Kind::Float, weights.device()));
    }
    let s = cosine_matrix(weights);
    let eye = Tensor::eye(c, (Kind::Float, weights.device()));
    (s - eye * 2.0).amax([1i64], false).mean(Kind::Float)
}

/// Joint loss: CE + `metric_weight` · metric + `reg_weight` · RegularFace.
pub struct JointLoss {
    pub metric: MetricLoss,
    pub metric_weight: f64,
    pub reg_weight: f64,
}

impl JointLoss {
    pub fn compute(
        &self,
        logits: &Tensor,
        emb: &Tensor,
        labels: &Tensor,
        classifier: Option<&Tensor>,
    ) -> Tensor {
        let mut loss = logits.cross_entropy_for_logits(labels);
        if self.metric != MetricLoss::None {
            loss += metric_loss(self.metric, emb, labels) * self.metric_weight;
            if let Some(w) = classifier {
                if self.reg_weight > 0.0 {
                    loss += regularface(w) * self.reg_weight;
                }
            }
        }
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn separated() -> (Tensor, Tensor) {
        // Two tight, orthogonal clusters.
        let e = Tensor::from_slice2(&[
            [1.0f32, 0.0, 0.0],
            [0.99, 0.01, 0.0],
            [0.0, 1.0, 0.0],
            [0.01, 0.99, 0.0],
        ]);
        (e, Tensor::from_slice(&[0i64, 0, 1, 1]))
    }

    fn mixed() -> (Tensor, Tensor) {
        let e = Tensor::from_slice2(&[
            [1.0f32, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.99, 0.01, 0.0],
            [0.01, 0.99, 0.0],
        ]);
        (e, Tensor::from_slice(&[0i64, 0, 1, 1]))
    }

    #[test]
    fn metric_losses_prefer_separated_classes() {
        for kind in [
            MetricLoss::contrastive(),
            MetricLoss::triplet(),
            MetricLoss::circle(),
        ] {
            let (e, l) = separated();
            let good = metric_loss(kind, &e, &l).double_value(&[]);
            let (e, l) = mixed();
            let bad = metric_loss(kind, &e, &l).double_value(&[]);
            assert!(good.is_finite() && bad.is_finite(), "{kind:?}");
            assert!(
                good < bad,
                "{}: separated {good} vs mixed {bad}",
                kind.name()
            );
        }
        // Triplet on perfectly separated clusters with margin 0.05: every triplet satisfied.
        let (e, l) = separated();
        assert_eq!(
            metric_loss(MetricLoss::triplet(), &e, &l).double_value(&[]),
            0.0
        );
    }

    #[test]
    fn gradients_flow_through_every_loss() {
        for kind in [
            MetricLoss::contrastive(),
            MetricLoss::triplet(),
            MetricLoss::circle(),
        ] {
            let e = Tensor::randn([8, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let l = Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2, 3, 3]);
            let loss = metric_loss(kind, &e, &l);
            loss.backward();
            let g = e.grad().abs().sum(Kind::Float).double_value(&[]);
            assert!(g > 0.0, "{}", kind.name());
        }
    }

    #[test]
    fn regularface_is_max_off_diagonal_cosine() {
        let w = Tensor::from_slice2(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]]);
        // Row maxima: 0.7071, 0.7071, 0.7071.
        let r = regularface(&w).double_value(&[]);
        assert!((r - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-5, "{r}");
    }
}

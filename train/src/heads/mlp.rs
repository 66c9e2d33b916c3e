//! The MLP head (`in → 256 → ReLU → 128 → ReLU → C`, the encoder's head shape, so `export`
//! writes it into the model graph as it is) on frozen embeddings, trained on CPU with libtorch:
//! balanced batches (class, then source group, then clip, then window, each drawn uniformly, so
//! neither a big class nor a big source nor a long clip dominates), dropout, label smoothing,
//! AdamW.

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::ops::Range;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Tensor};

/// Hidden widths of the head.
pub const HIDDEN: [i64; 2] = [256, 128];

/// Training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    pub dropout: f64,
    pub label_smoothing: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub steps: usize,
    pub batch: usize,
    pub seed: u64,
    /// Classes are drawn with probability ∝ (clips of the class)^power: 0 draws every class
    /// equally often (class-balanced), 1 as often as the corpus holds it; 0.3 (the default) was
    /// the best of 0, 0.3 and 0.5 by leave-one-source-out accuracy.
    pub class_power: f64,
    /// Average the weights over the last this fraction of the steps (stochastic weight
    /// averaging: one head with the steadiness of an ensemble); 0 keeps the last weights.
    pub swa: f64,
    /// Heads trained with different seeds and merged into one wider head whose logits are
    /// their mean ([`merge`]); 1: a single head.
    pub ensemble: usize,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            dropout: 0.3,
            label_smoothing: 0.1,
            lr: 1e-3,
            weight_decay: 1e-3,
            steps: 1500,
            batch: 256,
            seed: 0,
            class_power: 0.3,
            swa: 0.25,
            ensemble: 1,
        }
    }
}

/// Rows of the training matrix, organised for balanced sampling: class → group → clip → rows.
#[derive(Debug, Clone, Default)]
pub struct Sampler {
    pub by_class: Vec<Vec<Vec<Range<usize>>>>,
}

impl Sampler {
    /// `clips` are `(class, group, rows)`; empty classes are kept (never drawn).
    pub fn new(classes: usize, clips: impl Iterator<Item = (usize, usize, Range<usize>)>) -> Self {
        let mut tmp: Vec<std::collections::BTreeMap<usize, Vec<Range<usize>>>> =
            vec![Default::default(); classes];
        for (c, g, r) in clips {
            if !r.is_empty() {
                tmp[c].entry(g).or_default().push(r);
            }
        }
        Self {
            by_class: tmp.into_iter().map(|m| m.into_values().collect()).collect(),
        }
    }

    fn non_empty(&self) -> Vec<usize> {
        (0..self.by_class.len())
            .filter(|&c| !self.by_class[c].is_empty())
            .collect()
    }

    /// One balanced batch of `(row, class)` (classes drawn equally often).
    pub fn batch<R: Rng>(&self, n: usize, rng: &mut R) -> Vec<(usize, usize)> {
        self.batch_with(n, 0.0, rng)
    }

    /// One batch of `(row, class)`, classes drawn ∝ (clips of the class)^`power`; groups,
    /// clips and windows within a class uniformly.
    pub fn batch_with<R: Rng>(&self, n: usize, power: f64, rng: &mut R) -> Vec<(usize, usize)> {
        let classes = self.non_empty();
        let weights: Vec<f64> = classes
            .iter()
            .map(|&c| {
                let clips: usize = self.by_class[c].iter().map(Vec::len).sum();
                (clips as f64).powf(power)
            })
            .collect();
        let total: f64 = weights.iter().sum();
        (0..n)
            .map(|_| {
                let mut u = rng.random_range(0.0..total);
                let mut k = 0;
                while k + 1 < weights.len() && u >= weights[k] {
                    u -= weights[k];
                    k += 1;
                }
                let c = classes[k];
                let groups = &self.by_class[c];
                let clips = &groups[rng.random_range(0..groups.len())];
                let rows = &clips[rng.random_range(0..clips.len())];
                (rng.random_range(rows.clone()), c)
            })
            .collect()
    }
}

/// A trained head.
pub struct Mlp {
    pub vs: nn::VarStore,
    layers: Vec<nn::Linear>,
    dropout: f64,
    pub d_in: i64,
    pub classes: i64,
}

impl Mlp {
    pub fn new(d_in: i64, classes: i64, dropout: f64) -> Self {
        Self::with_hidden(d_in, [HIDDEN[0], HIDDEN[1]], classes, dropout)
    }

    /// A head with other hidden widths (a merged ensemble is `k ×` [`HIDDEN`] wide).
    pub fn with_hidden(d_in: i64, hidden: [i64; 2], classes: i64, dropout: f64) -> Self {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root();
        let dims = [d_in, hidden[0], hidden[1], classes];
        let layers = (0..3)
            .map(|i| {
                nn::linear(
                    &p / format!("fc{i}"),
                    dims[i],
                    dims[i + 1],
                    Default::default(),
                )
            })
            .collect();
        Self {
            vs,
            layers,
            dropout,
            d_in,
            classes,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                h = h.relu().dropout(self.dropout, train);
            } else {
                h = h.dropout(self.dropout * 0.5, train);
            }
            h = l.forward(&h);
        }
        h
    }

    /// Logits for `rows` rows of `x` (row-major, `d_in` wide), row-major `rows × classes`.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() as i64 / self.d_in;
        if n == 0 {
            return Vec::new();
        }
        self.logits_t(&Tensor::from_slice(x).view([n, self.d_in]))
    }

    /// Logits of the rows of a `n × d_in` tensor, row-major `n × classes`.
    pub fn logits_t(&self, x: &Tensor) -> Vec<f32> {
        let out = tch::no_grad(|| self.forward(x, false));
        Vec::<f32>::try_from(out.flatten(0, -1)).expect("f32 logits")
    }

    /// The hidden layers' widths.
    pub fn widths(&self) -> [i64; 2] {
        [self.layers[0].ws.size()[0], self.layers[1].ws.size()[0]]
    }

    /// `(weight [out × in], bias [out])` of each layer, row-major, for export.
    pub fn layers(&self) -> Vec<(Vec<f32>, Vec<f32>)> {
        self.layers
            .iter()
            .map(|l| {
                let w = Vec::<f32>::try_from(l.ws.flatten(0, -1)).expect("f32");
                let b =
                    Vec::<f32>::try_from(l.bs.as_ref().expect("bias").flatten(0, -1)).expect("f32");
                (w, b)
            })
            .collect()
    }
}

/// One head whose logits are the mean of `heads`' logits: the hidden layers side by side
/// (block-diagonal), the output layer's weights and biases divided by their number. It has the
/// shape of a single head (`in → h₁ → ReLU → h₂ → ReLU → C`), so it exports as one.
pub fn merge(heads: &[Mlp]) -> Result<Mlp> {
    let Some(first) = heads.first() else {
        bail!("no heads to merge");
    };
    if heads
        .iter()
        .any(|h| h.d_in != first.d_in || h.classes != first.classes || h.widths() != first.widths())
    {
        bail!("heads of different shapes cannot be merged");
    }
    let k = heads.len() as i64;
    let [h1, h2] = first.widths();
    let merged = Mlp::with_hidden(first.d_in, [k * h1, k * h2], first.classes, first.dropout);
    let bias = |l: &nn::Linear| l.bs.as_ref().expect("a linear with bias").shallow_clone();
    tch::no_grad(|| {
        let [l0, l1, l2] = [&merged.layers[0], &merged.layers[1], &merged.layers[2]];
        let (w0, b0) = (l0.ws.shallow_clone(), bias(l0));
        let (mut w1, b1) = (l1.ws.shallow_clone(), bias(l1));
        let (mut w2, mut b2) = (l2.ws.shallow_clone(), bias(l2));
        let _ = w1.zero_();
        let _ = w2.zero_();
        let _ = b2.zero_();
        for (j, h) in heads.iter().enumerate() {
            let j = j as i64;
            let [s0, s1, s2] = [&h.layers[0], &h.layers[1], &h.layers[2]];
            w0.narrow(0, j * h1, h1).copy_(&s0.ws);
            b0.narrow(0, j * h1, h1).copy_(&bias(s0));
            w1.narrow(0, j * h2, h2).narrow(1, j * h1, h1).copy_(&s1.ws);
            b1.narrow(0, j * h2, h2).copy_(&bias(s1));
            w2.narrow(1, j * h2, h2).copy_(&(&s2.ws / k as f64));
            b2 += bias(s2) / k as f64;
        }
    });
    Ok(merged)
}

/// Trains a head on `x` (`rows × d_in`, row-major) with batches from `sampler`.
pub fn train(x: &[f32], d_in: usize, sampler: &Sampler, cfg: &MlpConfig) -> Result<Mlp> {
    let n = x.len() / d_in;
    train_on(
        &Tensor::from_slice(x).view([n as i64, d_in as i64]),
        sampler,
        cfg,
    )
}

/// [`train`] on rows already in a `rows × d_in` tensor: one head, or `cfg.ensemble` heads
/// (seeds `seed`, `seed + 7919`, …) merged into one.
pub fn train_on(xt: &Tensor, sampler: &Sampler, cfg: &MlpConfig) -> Result<Mlp> {
    if cfg.ensemble <= 1 {
        return train_one(xt, sampler, cfg);
    }
    let heads = (0..cfg.ensemble as u64)
        .map(|j| {
            let c = MlpConfig {
                seed: cfg.seed + 7919 * j,
                ..cfg.clone()
            };
            train_one(xt, sampler, &c)
        })
        .collect::<Result<Vec<_>>>()?;
    merge(&heads)
}

fn train_one(xt: &Tensor, sampler: &Sampler, cfg: &MlpConfig) -> Result<Mlp> {
    let classes = sampler.by_class.len();
    if sampler.non_empty().len() < 2 {
        bail!("a head needs training clips of at least two classes");
    }
    tch::manual_seed(cfg.seed as i64);
    let d_in = xt.size()[1] as usize;
    let mlp = Mlp::new(d_in as i64, classes as i64, cfg.dropout);
    let mut opt = nn::AdamW {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&mlp.vs, cfg.lr)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let swa_from = ((1.0 - cfg.swa.clamp(0.0, 1.0)) * cfg.steps as f64) as usize;
    let mut avg: Option<Vec<Tensor>> = None;
    let mut averaged = 0i64;
    for step in 0..cfg.steps {
        // Cosine learning-rate decay to a tenth.
        let t = step as f64 / cfg.steps.max(1) as f64;
        opt.set_lr(cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())));
        let b = sampler.batch_with(cfg.batch, cfg.class_power, &mut rng);
        let idx = Tensor::from_slice(&b.iter().map(|(r, _)| *r as i64).collect::<Vec<_>>());
        let y = Tensor::from_slice(&b.iter().map(|(_, c)| *c as i64).collect::<Vec<_>>());
        let logits = mlp.forward(&xt.index_select(0, &idx), true);
        let loss = logits.cross_entropy_loss::<Tensor>(
            &y,
            None,
            tch::Reduction::Mean,
            -100,
            cfg.label_smoothing,
        );
        opt.backward_step(&loss);
        if cfg.swa > 0.0 && step >= swa_from {
            tch::no_grad(|| {
                let vars = mlp.vs.trainable_variables();
                match &mut avg {
                    None => avg = Some(vars.iter().map(|v| v.copy()).collect()),
                    Some(a) => {
                        // Running mean: a += (v − a) / n.
                        for (a, v) in a.iter_mut().zip(&vars) {
                            let d = (v - &*a) / (averaged + 1) as f64;
                            *a += d;
                        }
                    }
                }
            });
            averaged += 1;
        }
    }
    if let Some(a) = avg {
        tch::no_grad(|| {
            for (mut v, a) in mlp.vs.trainable_variables().into_iter().zip(a) {
                v.copy_(&a);
            }
        });
    }
    Ok(mlp)
}

/// Row-wise softmax of `logits` (`rows × classes`) at temperature `t`.
pub fn softmax_rows(logits: &[f32], classes: usize, t: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(classes) {
        let m = row.iter().map(|v| v / t).fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|v| (v / t - m).exp()).collect();
        let s: f32 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

/// Mean of tensors' rows per clip: `probs` is `rows × classes`, `clips` the row ranges.
pub fn mean_per_clip(probs: &[f32], classes: usize, clips: &[Range<usize>]) -> Vec<f32> {
    let mut out = vec![0f32; clips.len() * classes];
    for (i, r) in clips.iter().enumerate() {
        let o = &mut out[i * classes..(i + 1) * classes];
        for row in r.clone() {
            for (a, b) in o.iter_mut().zip(&probs[row * classes..(row + 1) * classes]) {
                *a += b;
            }
        }
        let n = r.len().max(1) as f32;
        o.iter_mut().for_each(|v| *v /= n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian blobs per class in 8-d: a head must separate them.
    type Clips = Vec<(usize, usize, Range<usize>)>;

    fn blobs(n: usize, seed: u64) -> (Vec<f32>, Clips) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut clips = Vec::new();
        for i in 0..n {
            let c = i % 3;
            for d in 0..8 {
                let centre = if d == c { 3.0 } else { 0.0 };
                x.push(centre + rng.random_range(-1.0..1.0f32));
            }
            clips.push((c, i % 2, i..i + 1));
        }
        (x, clips)
    }

    #[test]
    fn balanced_batches_cover_classes_and_groups() {
        let (_, clips) = blobs(60, 1);
        let s = Sampler::new(4, clips.into_iter()); // class 3 has no clips
        let mut rng = StdRng::seed_from_u64(0);
        let b = s.batch(3000, &mut rng);
        let mut per = [0usize; 4];
        for (_, c) in &b {
            per[*c] += 1;
        }
        assert_eq!(per[3], 0);
        for c in 0..3 {
            assert!((800..1200).contains(&per[c]), "{per:?}");
        }
    }

    #[test]
    fn a_head_learns_separable_classes() {
        let (x, clips) = blobs(300, 2);
        let s = Sampler::new(3, clips.into_iter());
        let cfg = MlpConfig {
            steps: 300,
            batch: 64,
            ..Default::default()
        };
        let m = train(&x, 8, &s, &cfg).unwrap();
        let (xt, clips_t) = blobs(90, 3);
        let p = softmax_rows(&m.logits(&xt), 3, 1.0);
        let right = clips_t
            .iter()
            .enumerate()
            .filter(|(i, (c, _, _))| {
                let row = &p[i * 3..i * 3 + 3];
                let best = (0..3).max_by(|a, b| row[*a].total_cmp(&row[*b])).unwrap();
                best == *c
            })
            .count();
        assert!(right >= 85, "{right}/90");
        let layers = m.layers();
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[0].0.len(), 8 * 256);
        assert_eq!(layers[2].1.len(), 3);
    }

    #[test]
    fn a_merged_ensemble_gives_the_mean_of_its_heads_logits() {
        let (x, clips) = blobs(120, 4);
        let s = Sampler::new(3, clips.into_iter());
        let heads: Vec<Mlp> = (0..3)
            .map(|seed| {
                let cfg = MlpConfig {
                    steps: 40,
                    batch: 32,
                    seed,
                    ..Default::default()
                };
                train(&x, 8, &s, &cfg).unwrap()
            })
            .collect();
        let merged = merge(&heads).unwrap();
        assert_eq!(merged.widths(), [3 * HIDDEN[0], 3 * HIDDEN[1]]);
        let want: Vec<f32> = {
            let all: Vec<Vec<f32>> = heads.iter().map(|h| h.logits(&x)).collect();
            (0..all[0].len())
                .map(|i| all.iter().map(|l| l[i]).sum::<f32>() / 3.0)
                .collect()
        };
        let got = merged.logits(&x);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
        let one = Mlp::new(8, 2, 0.0);
        assert!(merge(&[merged, one]).is_err());
    }

    #[test]
    fn one_class_is_refused() {
        let s = Sampler::new(2, std::iter::once((0, 0, 0..1)));
        assert!(train(&[0.0; 8], 8, &s, &MlpConfig::default()).is_err());
    }
}

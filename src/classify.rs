//! Classification of one window: the model's labelled UCS head (softmax of the logits at the
//! manifest's calibration temperature, so a score is a probability) and/or cosine kNN over a
//! reference set, the user's own references mixed in with a configured weight, an optional
//! restriction to chosen Categories, and the decision whether the best label is *confident*
//! (its probability passes the label's threshold) or the window is "unknown". Pure: no I/O.

pub use crate::label::Label;
use crate::refs::{Neighbour, RefSet};
use serde::Serialize;
use sfxtag_core::manifest::{HeadSpec, Taxonomy};
use sfxtag_core::ucs;
use std::collections::BTreeMap;

/// Confidence threshold of a head that gives none in its manifest.
pub const DEFAULT_HEAD_THRESHOLD: f32 = 0.5;
/// Confidence threshold of kNN vote shares (no calibration behind them).
pub const DEFAULT_KNN_THRESHOLD: f32 = 0.6;
/// Default weight of the user's references against the model.
pub const DEFAULT_USER_WEIGHT: f32 = 0.5;

/// Where the best label of a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopSource {
    /// The model's labelled head.
    Head,
    /// kNN votes over the model's reference set.
    Knn,
    /// kNN votes over the user's own references (`enroll --ucs-library`).
    User,
    /// Nothing can label this model's output (no labelled head, no reference set), or the
    /// window was silent and not classified.
    None,
}

/// The classification of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub top: Vec<Label>,
    pub top_source: TopSource,
    /// Whether `top[0]` passes its threshold; when false the window is "unknown" and `top`
    /// holds only the best guesses.
    pub confident: bool,
    /// The threshold `top[0]` had to pass.
    pub threshold: f32,
    /// The k nearest references (when a reference set is loaded).
    pub neighbours: Option<Vec<Neighbour>>,
    /// kNN votes (when a reference set is loaded), also when the head fills `top`.
    pub knn_top: Option<Vec<Label>>,
}

impl Prediction {
    /// An empty prediction (nothing to classify with, or a window not run through the model).
    pub fn empty() -> Self {
        Self {
            top: Vec::new(),
            top_source: TopSource::None,
            confident: false,
            threshold: 1.0,
            neighbours: None,
            knn_top: None,
        }
    }

    /// The confident label, if any.
    pub fn label(&self) -> Option<&Label> {
        if self.confident {
            self.top.first()
        } else {
            None
        }
    }

    /// The confident label as a slice (empty when unknown): what events and recordings act on.
    pub fn confident_top(&self) -> &[Label] {
        match self.label() {
            Some(_) => &self.top[..1],
            None => &[],
        }
    }

    /// The privacy filter's verdict: the first of `categories` that one of the top labels
    /// names with at least `min_score` (guesses count: the filter errs on the side of privacy).
    pub fn private_category(&self, categories: &[String], min_score: f32) -> Option<&str> {
        self.top.iter().find_map(|l| {
            let c = l.category.as_deref()?;
            (l.score >= min_score && categories.iter().any(|x| x == c)).then_some(c)
        })
    }
}

/// Numerically stable softmax of `logits` into `out` (same length).
pub fn softmax_into(logits: &[f32], out: &mut [f32]) {
    softmax_t_into(logits, 1.0, out)
}

/// Softmax of `logits / temperature` into `out`.
pub fn softmax_t_into(logits: &[f32], temperature: f32, out: &mut [f32]) {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = if l.is_finite() {
            ((l - max) / t).exp()
        } else {
            0.0
        };
        sum += *o;
    }
    if sum > 0.0 && sum.is_finite() {
        for o in out.iter_mut() {
            *o /= sum;
        }
    }
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    idx.truncate(k);
    idx
}

/// `(x - mean) / std` per dimension into `out`.
pub fn zscore_into(raw: &[f32], mean: &[f32], std: &[f32], out: &mut [f32]) {
    for (((o, &x), &m), &s) in out.iter_mut().zip(raw).zip(mean).zip(std) {
        *o = (x - m) / s;
    }
}

/// The labelled UCS head used for `top`.
#[derive(Debug, Clone)]
pub struct HeadClassifier {
    pub name: String,
    pub taxonomy: Taxonomy,
    pub labels: Vec<String>,
    pub temperature: f32,
    /// Per-label thresholds from the manifest (empty: none given).
    pub thresholds: Vec<f32>,
    /// Per label, the head's training mix (the manifest's `train_prior`; empty: uniform).
    pub train_prior: Vec<f32>,
    probs: Vec<f32>,
}

impl HeadClassifier {
    fn from_spec(h: &HeadSpec) -> Self {
        Self {
            name: h.name.clone(),
            taxonomy: h.taxonomy,
            labels: h.labels.clone(),
            temperature: h.temperature(),
            thresholds: h.thresholds.clone(),
            train_prior: h.train_prior.clone(),
            probs: vec![0.0; h.labels.len()],
        }
    }

    /// The first head with label names and a UCS taxonomy, with its index among the heads.
    pub fn pick(heads: &[HeadSpec]) -> Option<(usize, Self)> {
        heads.iter().enumerate().find_map(|(i, h)| {
            let ucs = matches!(h.taxonomy, Taxonomy::UcsCategory | Taxonomy::UcsCatId);
            (ucs && !h.labels.is_empty()).then(|| (i, Self::from_spec(h)))
        })
    }

    /// Calibrated probabilities of one window's logits.
    fn probs(&mut self, logits: &[f32]) -> &[f32] {
        let n = logits.len().min(self.probs.len());
        softmax_t_into(&logits[..n], self.temperature, &mut self.probs[..n]);
        &self.probs[..n]
    }

    /// Top-k labels of one window's logits.
    pub fn classify(&mut self, logits: &[f32], k: usize) -> Vec<Label> {
        let taxonomy = self.taxonomy;
        let probs = self.probs(logits).to_vec();
        top_k(&probs, k)
            .into_iter()
            .map(|(i, p)| Label::new(&self.labels[i], taxonomy, p))
            .collect()
    }
}

/// A CatID head beside a Category head: names the most likely CatID of a predicted Category.
#[derive(Debug, Clone)]
pub struct CatIdHead {
    pub name: String,
    labels: Vec<String>,
    categories: Vec<&'static str>,
    temperature: f32,
    probs: Vec<f32>,
}

impl CatIdHead {
    /// A labelled `ucs-catid` head other than `primary`, when `primary` is a Category head.
    pub fn pick(heads: &[HeadSpec], primary: usize) -> Option<(usize, Self)> {
        if heads.get(primary)?.taxonomy != Taxonomy::UcsCategory {
            return None;
        }
        heads.iter().enumerate().find_map(|(i, h)| {
            (i != primary && h.taxonomy == Taxonomy::UcsCatId && !h.labels.is_empty()).then(|| {
                (
                    i,
                    Self {
                        name: h.name.clone(),
                        categories: h
                            .labels
                            .iter()
                            .map(|l| ucs::lookup(l).map_or("", |e| e.category))
                            .collect(),
                        labels: h.labels.clone(),
                        temperature: h.temperature(),
                        probs: vec![0.0; h.labels.len()],
                    },
                )
            })
        })
    }

    fn update(&mut self, logits: &[f32]) {
        let n = logits.len().min(self.probs.len());
        softmax_t_into(&logits[..n], self.temperature, &mut self.probs[..n]);
    }

    /// The most likely CatID of `category` in the last window, if the head knows one.
    fn best_in(&self, category: &str) -> Option<&str> {
        self.categories
            .iter()
            .zip(&self.probs)
            .enumerate()
            .filter(|(_, (c, _))| **c == category)
            .max_by(|a, b| a.1 .1.total_cmp(b.1 .1))
            .map(|(i, _)| self.labels[i].as_str())
    }
}

/// What the user decides about labels (config `[labels]`, CLI flags).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelPolicy {
    /// One threshold for every label, replacing the model's.
    pub threshold: Option<f32>,
    /// Thresholds of single labels (a Category, CatID or custom label), over everything else.
    pub thresholds: BTreeMap<String, f32>,
    /// Only these UCS Categories may be predicted (None: all).
    pub categories: Option<Vec<String>>,
    /// Weight of the user's references against the model, 0–1.
    pub user_weight: f32,
}

impl Default for LabelPolicy {
    fn default() -> Self {
        Self {
            threshold: None,
            thresholds: BTreeMap::new(),
            categories: None,
            user_weight: DEFAULT_USER_WEIGHT,
        }
    }
}

/// Head and/or kNN classification of z-scored embeddings.
pub struct Classifier {
    pub head: Option<HeadClassifier>,
    pub catid: Option<CatIdHead>,
    /// The model's reference set.
    pub refs: Option<RefSet>,
    /// The user's own references, labelled first (weighted by `policy.user_weight`).
    pub user: Option<RefSet>,
    pub policy: LabelPolicy,
    /// Labels in `top`.
    pub top_k: usize,
    /// Neighbours for kNN.
    pub knn_k: usize,
}

/// One label's accumulated score from the model and from the user's references.
struct Mass {
    label: String,
    taxonomy: Taxonomy,
    model: f32,
    user: f32,
}

impl Classifier {
    /// A classifier with the default policy.
    pub fn new(
        head: Option<HeadClassifier>,
        refs: Option<RefSet>,
        top_k: usize,
        knn_k: usize,
    ) -> Self {
        Self {
            head,
            catid: None,
            refs,
            user: None,
            policy: LabelPolicy::default(),
            top_k,
            knn_k,
        }
    }

    /// Whether anything can put labels on this model's output.
    pub fn can_label(&self) -> bool {
        self.head.is_some()
            || self.refs.as_ref().is_some_and(|r| !r.is_empty())
            || self.user.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// A one-line description for logs and `--help` output.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.head {
            parts.push(format!(
                "head '{}' ({} labels{})",
                h.name,
                h.labels.len(),
                if h.temperature != 1.0 {
                    format!(", calibrated T = {:.2}", h.temperature)
                } else {
                    String::new()
                }
            ));
        }
        if let Some(c) = &self.catid {
            parts.push(format!("CatIDs from head '{}'", c.name));
        }
        if let Some(r) = &self.refs {
            parts.push(format!(
                "kNN k={} over {} references ({} labels, taxonomy {})",
                self.knn_k,
                r.len(),
                r.label_count(),
                crate::refs::taxonomy_name(r.taxonomy)
            ));
        }
        if let Some(u) = &self.user {
            parts.push(format!(
                "your {} references (weight {:.2})",
                u.len(),
                self.policy.user_weight
            ));
        }
        if let Some(c) = &self.policy.categories {
            parts.push(format!("only {}", c.join(", ")));
        }
        if parts.is_empty() {
            "no labels: the model has no labelled UCS head and no kNN reference set is loaded \
             (give --refs FILE, or build one with `sfxtag enroll`); embeddings are still produced"
                .to_string()
        } else {
            parts.join(" + ")
        }
    }

    /// The taxonomy `top` labels are in.
    fn primary_taxonomy(&self) -> Option<Taxonomy> {
        self.head
            .as_ref()
            .map(|h| h.taxonomy)
            .or(self.refs.as_ref().map(|r| r.taxonomy))
            .or(self.user.as_ref().map(|r| r.taxonomy))
    }

    /// The threshold a label must pass to be confident.
    pub fn threshold_for(&self, label: &Label, source: TopSource) -> f32 {
        if let Some(t) = self
            .policy
            .thresholds
            .get(&label.label)
            .or(label
                .catid
                .as_ref()
                .and_then(|c| self.policy.thresholds.get(c)))
            .or(label
                .category
                .as_ref()
                .and_then(|c| self.policy.thresholds.get(c)))
        {
            return *t;
        }
        if let Some(t) = self.policy.threshold {
            return t;
        }
        match (&self.head, source) {
            (Some(h), TopSource::Head | TopSource::User) => h
                .labels
                .iter()
                .position(|l| *l == label.label)
                .and_then(|i| h.thresholds.get(i).copied())
                .unwrap_or(DEFAULT_HEAD_THRESHOLD),
            _ => DEFAULT_KNN_THRESHOLD,
        }
    }

    /// Classifies one window: `z` is the z-scored embedding, `head_logits` the labelled
    /// head's, `catid_logits` the CatID head's (beside a Category head).
    pub fn classify(
        &mut self,
        z: &[f32],
        head_logits: Option<&[f32]>,
        catid_logits: Option<&[f32]>,
    ) -> Prediction {
        let Some(primary) = self.primary_taxonomy() else {
            return Prediction::empty();
        };
        let user_w = match &self.user {
            Some(u) if !u.is_empty() => self.policy.user_weight.clamp(0.0, 1.0),
            _ => 0.0,
        };
        let mut mass: Vec<Mass> = Vec::new();
        let mut add = |label: &str, taxonomy: Taxonomy, model: f32, user: f32| match mass
            .iter_mut()
            .find(|m| m.label == label)
        {
            Some(m) => {
                m.model += model;
                m.user += user;
            }
            None => mass.push(Mass {
                label: label.to_string(),
                taxonomy,
                model,
                user,
            }),
        };
        // The model's own distribution: the head, else the reference set's votes.
        let mut from_head = false;
        let (neighbours, knn_top) = match &mut self.refs {
            Some(r) if !r.is_empty() => {
                let n = r.nearest(z, self.knn_k);
                let votes = r.vote(&n, usize::MAX);
                if self.head.is_none() {
                    for v in &votes {
                        add(&v.label, r.taxonomy, (1.0 - user_w) * v.score, 0.0);
                    }
                }
                let mut shown = votes;
                shown.truncate(self.top_k);
                (Some(n), Some(shown))
            }
            _ => (None, None),
        };
        if let (Some(h), Some(l)) = (&mut self.head, head_logits) {
            from_head = true;
            let taxonomy = h.taxonomy;
            let probs = h.probs(l).to_vec();
            for (i, p) in probs.iter().enumerate() {
                add(&h.labels[i], taxonomy, (1.0 - user_w) * p, 0.0);
            }
        }
        // The user's references, in the primary taxonomy.
        if user_w > 0.0 {
            let u = self.user.as_mut().expect("user weight needs a user set");
            let n = u.nearest(z, self.knn_k);
            for v in u.vote(&n, usize::MAX) {
                if let Some(label) = to_taxonomy(&v.label, u.taxonomy, primary) {
                    add(&label, primary, 0.0, user_w * v.score);
                }
            }
        }
        if let Some(allowed) = &self.policy.categories {
            mass.retain(|m| {
                category_of(&m.label, m.taxonomy).is_some_and(|c| allowed.iter().any(|a| a == c))
            });
            let total: f32 = mass.iter().map(|m| m.model + m.user).sum();
            if total > 0.0 {
                for m in mass.iter_mut() {
                    m.model /= total;
                    m.user /= total;
                }
            }
        }
        mass.sort_by(|a, b| {
            (b.model + b.user)
                .total_cmp(&(a.model + a.user))
                .then(a.label.cmp(&b.label))
        });
        mass.truncate(self.top_k);
        if let (Some(c), Some(l)) = (&mut self.catid, catid_logits) {
            c.update(l);
        }
        let top: Vec<Label> = mass
            .iter()
            .map(|m| {
                let l = Label::new(&m.label, m.taxonomy, m.model + m.user);
                match (&self.catid, catid_logits.is_some(), l.category.clone()) {
                    (Some(c), true, Some(cat)) if l.catid.is_none() => match c.best_in(&cat) {
                        Some(id) => l.with_catid(id),
                        None => l,
                    },
                    _ => l,
                }
            })
            .collect();
        let top_source = match mass.first() {
            None => TopSource::None,
            Some(m) if m.user > m.model => TopSource::User,
            Some(_) if from_head => TopSource::Head,
            Some(_) => TopSource::Knn,
        };
        let (confident, threshold) = match top.first() {
            Some(l) => {
                let t = self.threshold_for(l, top_source);
                (l.score >= t, t)
            }
            None => (false, 1.0),
        };
        Prediction {
            top,
            top_source,
            confident,
            threshold,
            neighbours,
            knn_top,
        }
    }
}

/// The UCS Category of a label, where its taxonomy has one.
fn category_of(label: &str, taxonomy: Taxonomy) -> Option<&'static str> {
    match taxonomy {
        Taxonomy::UcsCatId => ucs::lookup(label).map(|e| e.category),
        Taxonomy::UcsCategory => ucs::label_categories().into_iter().find(|c| *c == label),
        Taxonomy::Custom => None,
    }
}

/// A label moved to another taxonomy (a CatID to its Category); None when it cannot be.
fn to_taxonomy(label: &str, from: Taxonomy, to: Taxonomy) -> Option<String> {
    match (from, to) {
        (a, b) if a == b => Some(label.to_string()),
        (Taxonomy::UcsCatId, Taxonomy::UcsCategory) => {
            ucs::lookup(label).map(|e| e.category.to_string())
        }
        _ => None,
    }
}

/// A whole file's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct FileLabels {
    /// Mean of the classified windows' scores, best first.
    pub top: Vec<Label>,
    /// Where most windows' best label came from.
    pub top_source: TopSource,
    /// Whether `top[0]` passes its threshold.
    pub confident: bool,
    /// Every window was below the silence floor.
    pub silent: bool,
}

impl FileLabels {
    /// The confident label, if any.
    pub fn label(&self) -> Option<&Label> {
        if self.confident {
            self.top.first()
        } else {
            None
        }
    }

    /// The confident label as a slice (empty when unknown): what events and recordings act on.
    pub fn confident_top(&self) -> &[Label] {
        match self.label() {
            Some(_) => &self.top[..1],
            None => &[],
        }
    }

    /// The privacy filter's verdict: the first of `categories` that one of the top labels
    /// names with at least `min_score` (guesses count: the filter errs on the side of privacy).
    pub fn private_category(&self, categories: &[String], min_score: f32) -> Option<&str> {
        self.top.iter().find_map(|l| {
            let c = l.category.as_deref()?;
            (l.score >= min_score && categories.iter().any(|x| x == c)).then_some(c)
        })
    }
}

/// The training prior's weight, in files, in batch prior adaptation.
pub const DEFAULT_BATCH_PRIOR_STRENGTH: f32 = sfxtag_core::priors::DEFAULT_STRENGTH;

impl Classifier {
    /// A file's labels from its windows' predictions (silent windows left out).
    pub fn file_labels(
        &self,
        windows: &[(Vec<Label>, TopSource)],
        silent_windows: usize,
    ) -> FileLabels {
        let tops: Vec<Vec<Label>> = windows.iter().map(|w| w.0.clone()).collect();
        let top = aggregate(&tops, self.top_k);
        let count = |s: TopSource| windows.iter().filter(|w| w.1 == s).count();
        let top_source = [TopSource::Head, TopSource::User, TopSource::Knn]
            .into_iter()
            .max_by_key(|s| count(*s))
            .filter(|s| count(*s) > 0)
            .unwrap_or(TopSource::None);
        let confident = top
            .first()
            .is_some_and(|l| l.score >= self.threshold_for(l, top_source));
        FileLabels {
            silent: windows.is_empty() && silent_windows > 0,
            top,
            top_source,
            confident,
        }
    }

    /// Batch prior adaptation (`sfxtag classify --batch-priors`): re-weights the head's
    /// file-level probabilities for the mix of Categories the batch of files holds, estimated
    /// from the probabilities themselves (EM, `sfxtag_core::priors`; `strength` is the
    /// training mix's weight in files). Applies to the files the head labelled, whose `top`
    /// must hold every head label (a classifier with `top_k` ≥ the head's labels); the others
    /// keep their scores. Every file then keeps its best `keep` labels, and confidence is
    /// decided again. Returns the batch's estimated mix `(label, share)`, largest first, or
    /// None when no file was labelled by the head.
    pub fn adapt_batch(
        &self,
        files: &mut [FileLabels],
        strength: f32,
        keep: usize,
    ) -> Option<Vec<(String, f32)>> {
        let head = self.head.as_ref();
        let adapted: Vec<usize> = (0..files.len())
            .filter(|&i| head.is_some() && files[i].top_source == TopSource::Head)
            .filter(|&i| !files[i].silent && !files[i].top.is_empty())
            .collect();
        let mut mix = None;
        if let (Some(h), false) = (head, adapted.is_empty()) {
            let n = h.labels.len();
            let mut rows = vec![0f32; adapted.len() * n];
            for (row, &i) in rows.chunks_exact_mut(n).zip(&adapted) {
                for l in &files[i].top {
                    if let Some(k) = h.labels.iter().position(|x| *x == l.label) {
                        row[k] = l.score;
                    }
                }
                let sum: f32 = row.iter().sum();
                if sum > 0.0 {
                    row.iter_mut().for_each(|v| *v /= sum);
                }
            }
            let train = if h.train_prior.len() == n {
                h.train_prior.clone()
            } else {
                vec![1.0; n]
            };
            let out = sfxtag_core::priors::adapt_priors(
                &mut rows,
                n,
                &train,
                sfxtag_core::priors::PriorAdaptation {
                    strength,
                    ..Default::default()
                },
            );
            for (row, &i) in rows.chunks_exact(n).zip(&adapted) {
                for l in files[i].top.iter_mut() {
                    if let Some(k) = h.labels.iter().position(|x| *x == l.label) {
                        l.score = row[k];
                    }
                }
                files[i]
                    .top
                    .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.label.cmp(&b.label)));
            }
            let mut m: Vec<(String, f32)> = h.labels.iter().cloned().zip(out.priors).collect();
            m.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            mix = Some(m);
        }
        for f in files.iter_mut() {
            f.top.truncate(keep);
            f.confident = f
                .top
                .first()
                .is_some_and(|l| l.score >= self.threshold_for(l, f.top_source));
        }
        mix
    }
}

/// Per-file aggregation: mean of the per-window scores of each label, top-k.
pub fn aggregate(windows: &[Vec<Label>], k: usize) -> Vec<Label> {
    let mut acc: Vec<(Label, f32)> = Vec::new();
    for w in windows {
        for l in w {
            match acc.iter_mut().find(|(a, _)| a.label == l.label) {
                Some((_, s)) => *s += l.score,
                None => acc.push((l.clone(), l.score)),
            }
        }
    }
    let n = windows.len().max(1) as f32;
    let mut out: Vec<Label> = acc
        .into_iter()
        .map(|(mut l, s)| {
            l.score = s / n;
            l
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.label.cmp(&b.label)));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut p = [0.0; 3];
        softmax_into(&[1.0, 3.0, 2.0], &mut p);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[2] && p[2] > p[0]);
        // Huge logits do not overflow.
        softmax_into(&[1000.0, 0.0, -1000.0], &mut p);
        assert!((p[0] - 1.0).abs() < 1e-6 && p.iter().all(|x| x.is_finite()));
        // A temperature above 1 flattens, keeping the order.
        let mut q = [0.0; 3];
        softmax_t_into(&[1.0, 3.0, 2.0], 4.0, &mut q);
        softmax_into(&[1.0, 3.0, 2.0], &mut p);
        assert!(q[1] < p[1] && q[1] > q[2] && q[2] > q[0]);
    }

    #[test]
    fn top_k_orders_and_truncates() {
        assert_eq!(
            top_k(&[0.1, 0.5, 0.3, 0.5], 3),
            vec![(1, 0.5), (3, 0.5), (2, 0.3)]
        );
        assert!(top_k(&[], 3).is_empty());
    }

    fn head(name: &str, labels: &[&str], tax: Taxonomy) -> HeadSpec {
        HeadSpec {
            name: name.into(),
            output: format!("logits_{name}"),
            taxonomy: tax,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            n_classes: labels.len().max(3),
            calibration: None,
            thresholds: Vec::new(),
            train_prior: Vec::new(),
        }
    }

    #[test]
    fn picks_only_labelled_ucs_heads() {
        let unlabelled = head("h", &[], Taxonomy::UcsCatId);
        let custom = head("h", &["a", "b"], Taxonomy::Custom);
        let ucs = head("h", &["DOORWood", "DOORKnck"], Taxonomy::UcsCatId);
        assert!(HeadClassifier::pick(&[unlabelled.clone(), custom.clone()]).is_none());
        let (i, h) = HeadClassifier::pick(&[unlabelled, custom, ucs]).unwrap();
        assert_eq!(i, 2);
        assert_eq!(h.labels.len(), 2);
    }

    #[test]
    fn head_top_comes_first_and_knn_is_reported_beside_it() {
        let (_, h) =
            HeadClassifier::pick(&[head("h", &["DOORWood", "DOORKnck"], Taxonomy::UcsCatId)])
                .unwrap();
        let mut refs = RefSet::new("m", "1", Taxonomy::UcsCatId, 2);
        refs.add("ANMLFarm", "a.wav", 0, &[1.0, 0.0]);
        let mut c = Classifier::new(Some(h), Some(refs), 2, 1);
        let p = c.classify(&[1.0, 0.1], Some(&[0.0, 2.0]), None);
        assert_eq!(p.top_source, TopSource::Head);
        assert_eq!(p.top[0].label, "DOORKnck");
        assert_eq!(p.knn_top.as_ref().unwrap()[0].label, "ANMLFarm");
        assert_eq!(p.neighbours.as_ref().unwrap().len(), 1);
        // Without the head the kNN votes fill `top`.
        c.head = None;
        let p = c.classify(&[1.0, 0.1], None, None);
        assert_eq!(p.top_source, TopSource::Knn);
        assert_eq!(p.top[0].catid.as_deref(), Some("ANMLFarm"));
        // Neither: empty, and said so.
        c.refs = None;
        assert!(!c.can_label());
        assert!(c.describe().contains("no labels"));
        let p = c.classify(&[1.0, 0.1], None, None);
        assert_eq!((p.top.len(), p.top_source), (0, TopSource::None));
        assert!(!p.confident);
    }

    /// Ten files of a session mostly of doors, each a near tie between DOORS and ANIMALS:
    /// alone each leans to ANIMALS, together they are doors; a file the head did not label
    /// keeps its scores, and every file keeps `keep` labels.
    #[test]
    fn a_batch_of_doors_moves_its_ties_to_doors() {
        let mut c = category_classifier(Vec::new(), 1.0);
        c.head.as_mut().unwrap().train_prior = vec![1.0 / 3.0; 3];
        let file = |scores: [f32; 3], source: TopSource| FileLabels {
            top: ["ANIMALS", "DOORS", "VOICES"]
                .iter()
                .zip(scores)
                .map(|(l, p)| Label::new(l, Taxonomy::UcsCategory, p))
                .collect(),
            top_source: source,
            confident: false,
            silent: false,
        };
        let mut files: Vec<FileLabels> = (0..6)
            .map(|_| file([0.1, 0.85, 0.05], TopSource::Head))
            .chain((0..4).map(|_| file([0.48, 0.42, 0.1], TopSource::Head)))
            .collect();
        files.push(file([0.5, 0.3, 0.2], TopSource::User));
        assert_eq!(files[7].top[0].label, "ANIMALS");
        let mix = c.adapt_batch(&mut files, 0.0, 2).unwrap();
        assert_eq!(mix[0].0, "DOORS");
        assert!(mix[0].1 > 0.7, "{mix:?}");
        assert_eq!(files[7].top[0].label, "DOORS", "{:?}", files[7].top);
        assert!(files.iter().all(|f| f.top.len() == 2));
        // The user-labelled file is untouched but for its length.
        assert_eq!(files[10].top[0].label, "ANIMALS");
        assert_eq!(files[10].top[0].score, 0.5);
        // The default threshold (0.5) decides confidence on the adapted score.
        assert!(files[0].confident);
        // A strong training prior holds a small batch near the head's own mix.
        let mut held: Vec<FileLabels> = (0..4)
            .map(|_| file([0.48, 0.42, 0.1], TopSource::Head))
            .collect();
        c.adapt_batch(&mut held, 1000.0, 3).unwrap();
        assert_eq!(held[0].top[0].label, "ANIMALS");
        // No head-labelled file: nothing to estimate.
        let mut user = vec![file([0.5, 0.3, 0.2], TopSource::User)];
        assert!(c.adapt_batch(&mut user, 0.0, 3).is_none());
    }

    fn category_classifier(thresholds: Vec<f32>, temperature: f32) -> Classifier {
        let mut cat = head(
            "category",
            &["ANIMALS", "DOORS", "VOICES"],
            Taxonomy::UcsCategory,
        );
        cat.thresholds = thresholds;
        cat.calibration = Some(sfxtag_core::manifest::HeadCalibration {
            method: "temperature".into(),
            temperature,
            fitted_on: String::new(),
        });
        let id = head(
            "catid",
            &["ANMLFarm", "ANMLDog", "DOORKnck"],
            Taxonomy::UcsCatId,
        );
        let heads = [cat, id];
        let (i, h) = HeadClassifier::pick(&heads).unwrap();
        let mut c = Classifier::new(Some(h), None, 3, 5);
        c.catid = CatIdHead::pick(&heads, i).map(|x| x.1);
        c
    }

    #[test]
    fn calibrated_scores_decide_confidence_per_label() {
        let mut c = category_classifier(vec![0.9, 0.5, 0.5], 1.0);
        // ANIMALS at ≈ 0.84: below its own threshold 0.9 → unknown, best guesses still listed.
        let p = c.classify(&[0.0; 2], Some(&[3.0, 1.0, 0.5]), Some(&[0.0, 2.0, 0.0]));
        assert_eq!(p.top[0].label, "ANIMALS");
        assert!(!p.confident && p.label().is_none());
        assert_eq!(p.threshold, 0.9);
        // The CatID head names the CatID within the Category.
        assert_eq!(p.top[0].catid.as_deref(), Some("ANMLDog"));
        // DOORS at ≈ 0.84 passes its 0.5.
        let p = c.classify(&[0.0; 2], Some(&[1.0, 3.0, 0.5]), None);
        assert!(p.confident);
        assert_eq!(p.label().unwrap().label, "DOORS");
        // A config threshold replaces the model's.
        c.policy.threshold = Some(0.95);
        assert!(
            !c.classify(&[0.0; 2], Some(&[1.0, 3.0, 0.5]), None)
                .confident
        );
        c.policy.thresholds.insert("DOORS".into(), 0.2);
        assert!(
            c.classify(&[0.0; 2], Some(&[1.0, 3.0, 0.5]), None)
                .confident
        );
        // The temperature flattens: the same logits at T = 4 are not confident.
        let mut c = category_classifier(vec![0.5; 3], 4.0);
        let p = c.classify(&[0.0; 2], Some(&[1.0, 3.0, 0.5]), None);
        assert!(p.top[0].score < 0.5 && !p.confident, "{:?}", p.top);
    }

    #[test]
    fn categories_restrict_and_renormalise() {
        let mut c = category_classifier(vec![0.5; 3], 1.0);
        c.policy.categories = Some(vec!["DOORS".into(), "VOICES".into()]);
        let p = c.classify(&[0.0; 2], Some(&[3.0, 1.0, 0.5]), None);
        assert_eq!(p.top.len(), 2);
        assert_eq!(p.top[0].label, "DOORS");
        assert!((p.top.iter().map(|l| l.score).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn user_references_weigh_in_and_say_so() {
        let mut c = category_classifier(vec![0.5; 3], 1.0);
        let mut user = RefSet::new("m", "1", Taxonomy::UcsCatId, 2);
        user.add("DOORKnck", "mine.wav", 0, &[1.0, 0.0]);
        c.user = Some(user);
        c.policy.user_weight = 0.7;
        // The model says ANIMALS (≈ 0.84); the user's door knock wins with weight 0.7.
        let p = c.classify(&[1.0, 0.0], Some(&[3.0, 1.0, 0.5]), None);
        assert_eq!(p.top[0].label, "DOORS");
        assert_eq!(p.top_source, TopSource::User);
        assert!(c.describe().contains("your 1 references"));
        c.policy.user_weight = 0.1;
        let p = c.classify(&[1.0, 0.0], Some(&[3.0, 1.0, 0.5]), None);
        assert_eq!(
            (p.top[0].label.as_str(), p.top_source),
            ("ANIMALS", TopSource::Head)
        );
    }

    #[test]
    fn privacy_counts_guesses_above_the_floor() {
        let p = Prediction {
            top: vec![
                Label::new("ANIMALS", Taxonomy::UcsCategory, 0.5),
                Label::new("VOICES", Taxonomy::UcsCategory, 0.3),
            ],
            top_source: TopSource::Head,
            confident: false,
            threshold: 0.6,
            neighbours: None,
            knn_top: None,
        };
        let voices = vec!["VOICES".to_string()];
        assert_eq!(p.private_category(&voices, 0.25), Some("VOICES"));
        assert_eq!(p.private_category(&voices, 0.35), None);
        assert!(p.confident_top().is_empty());
        let sure = Prediction {
            confident: true,
            ..p
        };
        assert_eq!(sure.confident_top().len(), 1);
    }

    #[test]
    fn aggregate_means_scores_over_windows() {
        let w = |a: f32, b: f32| {
            vec![
                Label::new("DOORWood", Taxonomy::UcsCatId, a),
                Label::new("DOORKnck", Taxonomy::UcsCatId, b),
            ]
        };
        let agg = aggregate(&[w(0.9, 0.1), w(0.1, 0.5)], 1);
        assert_eq!(agg.len(), 1);
        assert_eq!(agg[0].label, "DOORWood");
        assert!((agg[0].score - 0.5).abs() < 1e-6);
    }
}

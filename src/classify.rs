//! Classification: the model's labelled UCS head (softmax, top-k) and/or cosine kNN over an
//! enrolled reference set, on z-scored embeddings. Pure: no I/O, no tract.

use crate::refs::{Neighbour, RefSet};
use serde::Serialize;
use sfxtag_core::manifest::{HeadSpec, Taxonomy};
use sfxtag_core::ucs;

/// One label with its score, resolved against UCS where the taxonomy is UCS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    /// The label as the model / reference set names it.
    pub label: String,
    /// UCS CatID (taxonomy `ucs-catid`), else null.
    pub catid: Option<String>,
    /// UCS category (`ucs-catid` and `ucs-category`), else null.
    pub category: Option<String>,
    /// UCS subcategory (`ucs-catid`), else null.
    pub subcategory: Option<String>,
    pub score: f32,
}

impl Label {
    /// Resolves `label` in `taxonomy`.
    pub fn new(label: &str, taxonomy: Taxonomy, score: f32) -> Self {
        let (catid, category, subcategory) = match taxonomy {
            Taxonomy::UcsCatId => match ucs::lookup(label) {
                Some(e) => (
                    Some(e.cat_id.to_string()),
                    Some(e.category.to_string()),
                    Some(e.subcategory.to_string()),
                ),
                None => (None, None, None),
            },
            Taxonomy::UcsCategory => (None, Some(label.to_string()), None),
            Taxonomy::Custom => (None, None, None),
        };
        Self {
            label: label.to_string(),
            catid,
            category,
            subcategory,
            score,
        }
    }

    /// A short display form: the CatID, else the label.
    pub fn short(&self) -> &str {
        self.catid.as_deref().unwrap_or(&self.label)
    }
}

/// Where the `top` list of a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopSource {
    /// The model's labelled head.
    Head,
    /// kNN votes over the reference set.
    Knn,
    /// Nothing can label this model's output (no labelled head, no reference set).
    None,
}

/// The classification of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub top: Vec<Label>,
    pub top_source: TopSource,
    /// The k nearest references (when a reference set is loaded).
    pub neighbours: Option<Vec<Neighbour>>,
    /// kNN votes (when a reference set is loaded), also when the head fills `top`.
    pub knn_top: Option<Vec<Label>>,
}

/// Numerically stable softmax of `logits` into `out` (same length).
pub fn softmax_into(logits: &[f32], out: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = if l.is_finite() { (l - max).exp() } else { 0.0 };
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
    probs: Vec<f32>,
}

impl HeadClassifier {
    /// The first head with label names and a UCS taxonomy, with its index among the heads.
    pub fn pick(heads: &[HeadSpec]) -> Option<(usize, Self)> {
        heads.iter().enumerate().find_map(|(i, h)| {
            let ucs = matches!(h.taxonomy, Taxonomy::UcsCategory | Taxonomy::UcsCatId);
            (ucs && !h.labels.is_empty()).then(|| {
                (
                    i,
                    Self {
                        name: h.name.clone(),
                        taxonomy: h.taxonomy,
                        labels: h.labels.clone(),
                        probs: vec![0.0; h.labels.len()],
                    },
                )
            })
        })
    }

    /// Top-k labels of one window's logits.
    pub fn classify(&mut self, logits: &[f32], k: usize) -> Vec<Label> {
        let n = logits.len().min(self.probs.len());
        softmax_into(&logits[..n], &mut self.probs[..n]);
        top_k(&self.probs[..n], k)
            .into_iter()
            .map(|(i, p)| Label::new(&self.labels[i], self.taxonomy, p))
            .collect()
    }
}

/// Head and/or kNN classification of z-scored embeddings.
pub struct Classifier {
    pub head: Option<HeadClassifier>,
    pub refs: Option<RefSet>,
    /// Labels in `top`.
    pub top_k: usize,
    /// Neighbours for kNN.
    pub knn_k: usize,
}

impl Classifier {
    /// Whether anything can put labels on this model's output.
    pub fn can_label(&self) -> bool {
        self.head.is_some() || self.refs.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// A one-line description for logs and `--help` output.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.head {
            parts.push(format!("head '{}' ({} labels)", h.name, h.labels.len()));
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
        if parts.is_empty() {
            "no labels: the model has no labelled UCS head and no kNN reference set is loaded \
             (give --refs FILE, or build one with `sfxtag enroll`); embeddings are still produced"
                .to_string()
        } else {
            parts.join(" + ")
        }
    }

    /// Classifies one window: `z` is the z-scored embedding, `head_logits` the labelled head's.
    pub fn classify(&mut self, z: &[f32], head_logits: Option<&[f32]>) -> Prediction {
        let head_top = match (&mut self.head, head_logits) {
            (Some(h), Some(l)) => Some(h.classify(l, self.top_k)),
            _ => None,
        };
        let (neighbours, knn_top) = match &mut self.refs {
            Some(r) if !r.is_empty() => {
                let n = r.nearest(z, self.knn_k);
                let votes = r.vote(&n, self.top_k);
                (Some(n), Some(votes))
            }
            _ => (None, None),
        };
        let (top, top_source) = match (head_top, &knn_top) {
            (Some(t), _) => (t, TopSource::Head),
            (None, Some(v)) => (v.clone(), TopSource::Knn),
            (None, None) => (Vec::new(), TopSource::None),
        };
        Prediction {
            top,
            top_source,
            neighbours,
            knn_top,
        }
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
    }

    #[test]
    fn top_k_orders_and_truncates() {
        assert_eq!(
            top_k(&[0.1, 0.5, 0.3, 0.5], 3),
            vec![(1, 0.5), (3, 0.5), (2, 0.3)]
        );
        assert!(top_k(&[], 3).is_empty());
    }

    #[test]
    fn labels_resolve_against_ucs() {
        let l = Label::new("DOORWood", Taxonomy::UcsCatId, 0.5);
        assert_eq!(l.category.as_deref(), Some("DOORS"));
        assert_eq!(l.subcategory.as_deref(), Some("WOOD"));
        let c = Label::new("DOORS", Taxonomy::UcsCategory, 0.5);
        assert_eq!((c.catid, c.category.as_deref()), (None, Some("DOORS")));
        let x = Label::new("bark", Taxonomy::Custom, 0.5);
        assert_eq!(x.short(), "bark");
    }

    fn head(labels: &[&str], tax: Taxonomy) -> HeadSpec {
        HeadSpec {
            name: "h".into(),
            output: "logits_h".into(),
            taxonomy: tax,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            n_classes: labels.len().max(3),
        }
    }

    #[test]
    fn picks_only_labelled_ucs_heads() {
        let unlabelled = head(&[], Taxonomy::UcsCatId);
        let custom = head(&["a", "b"], Taxonomy::Custom);
        let ucs = head(&["DOORWood", "DOORKnck"], Taxonomy::UcsCatId);
        assert!(HeadClassifier::pick(&[unlabelled.clone(), custom.clone()]).is_none());
        let (i, h) = HeadClassifier::pick(&[unlabelled, custom, ucs]).unwrap();
        assert_eq!(i, 2);
        assert_eq!(h.labels.len(), 2);
    }

    #[test]
    fn head_top_comes_first_and_knn_is_reported_beside_it() {
        let (_, h) =
            HeadClassifier::pick(&[head(&["DOORWood", "DOORKnck"], Taxonomy::UcsCatId)]).unwrap();
        let mut refs = RefSet::new("m", "1", Taxonomy::UcsCatId, 2);
        refs.add("ANMLFarm", "a.wav", 0, &[1.0, 0.0]);
        let mut c = Classifier {
            head: Some(h),
            refs: Some(refs),
            top_k: 2,
            knn_k: 1,
        };
        let p = c.classify(&[1.0, 0.1], Some(&[0.0, 2.0]));
        assert_eq!(p.top_source, TopSource::Head);
        assert_eq!(p.top[0].label, "DOORKnck");
        assert_eq!(p.knn_top.as_ref().unwrap()[0].label, "ANMLFarm");
        assert_eq!(p.neighbours.as_ref().unwrap().len(), 1);
        // Without the head the kNN votes fill `top`.
        c.head = None;
        let p = c.classify(&[1.0, 0.1], None);
        assert_eq!(p.top_source, TopSource::Knn);
        assert_eq!(p.top[0].catid.as_deref(), Some("ANMLFarm"));
        // Neither: empty, and said so.
        c.refs = None;
        assert!(!c.can_label());
        assert!(c.describe().contains("no labels"));
        let p = c.classify(&[1.0, 0.1], None);
        assert_eq!((p.top.len(), p.top_source), (0, TopSource::None));
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

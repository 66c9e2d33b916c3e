//! Enrolled reference sets for kNN classification (`sfxtag enroll`).
//!
//! A reference file is versioned JSON:
//! ```json
//! {"format": "sfxtag-refs", "version": 1, "model": "aisfx-cnn9", "model_version": "0.1.2",
//!  "taxonomy": "ucs-catid", "dim": 512, "zscored": true,
//!  "entries": [{"label": "DOORWood", "source": "door.wav", "window": 0,
//!               "embedding": "<base64 of dim little-endian f32>"}]}
//! ```
//! Embeddings are z-scored with the model's `embedding_mean`/`embedding_std`, so a set only fits
//! the model it was enrolled with (checked at load). Any taxonomy works; UCS labels are validated.
//! Classification is cosine kNN: the `k` most similar references, votes weighted by similarity.

mod read;

use crate::label::Label;
use base64::Engine;
use serde::Serialize;
use sfxtag_core::manifest::{check_labels, Taxonomy};
use std::path::Path;

/// Value of the `format` field.
pub const FORMAT: &str = "sfxtag-refs";
/// The version this code reads and writes.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RefsError {
    #[error("cannot read reference set {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write reference set {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a sfxtag reference set: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: reference set version {found} is not supported (this sfxtag reads version {VERSION})")]
    Version { path: String, found: u32 },
    #[error("{path} was enrolled with model '{found}', but the loaded model is '{expected}': embeddings of different models are not comparable; re-enroll with this model")]
    ModelMismatch {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{path}: embedding dimension {found} does not match the model's {expected}")]
    DimMismatch {
        path: String,
        found: usize,
        expected: usize,
    },
    #[error("{path}: taxonomy is {found}, cannot add labels of taxonomy {expected} (use a separate reference file)")]
    TaxonomyMismatch {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{path}: entry {index}: {message}")]
    Entry {
        path: String,
        index: usize,
        message: String,
    },
    #[error("invalid label: {0}")]
    Label(String),
}

pub fn taxonomy_name(t: Taxonomy) -> &'static str {
    match t {
        Taxonomy::UcsCategory => "ucs-category",
        Taxonomy::UcsCatId => "ucs-catid",
        Taxonomy::Custom => "custom",
    }
}

pub fn parse_taxonomy(s: &str) -> Option<Taxonomy> {
    match s {
        "ucs-category" => Some(Taxonomy::UcsCategory),
        "ucs-catid" => Some(Taxonomy::UcsCatId),
        "custom" => Some(Taxonomy::Custom),
        _ => None,
    }
}

/// The file format as written; [`read`] streams it back.
#[derive(Serialize)]
struct FileEntry {
    label: String,
    source: String,
    window: u64,
    embedding: String,
}

#[derive(Serialize)]
struct FileFormat {
    format: String,
    version: u32,
    model: String,
    model_version: String,
    taxonomy: Taxonomy,
    dim: usize,
    zscored: bool,
    entries: Vec<FileEntry>,
}

/// One neighbour of a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    pub label: String,
    pub catid: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    /// Cosine similarity.
    pub score: f32,
    /// The enrolled file and window.
    pub source: String,
    pub window: u64,
}

/// An in-memory reference set.
#[derive(Debug, Clone)]
pub struct RefSet {
    pub model: String,
    pub model_version: String,
    pub taxonomy: Taxonomy,
    pub dim: usize,
    labels: Vec<String>,
    sources: Vec<(String, u64)>,
    /// Row-major `len × dim`, z-scored.
    data: Vec<f32>,
    /// L2 norm of each row.
    norms: Vec<f32>,
    /// Scratch of similarities (kept to avoid reallocating per query).
    sims: Vec<(usize, f32)>,
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// `Σ aᵢ·bᵢ` in 16 running partial sums: one running sum is a chain of dependent additions the
/// compiler may not reorder, so it stays scalar; 16 independent ones vectorise. The kNN search
/// does 2 696 × 512 of these multiply-adds per window with the shipped reference set.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (a_blocks, b_blocks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f32; LANES];
    for (x, y) in a_blocks.zip(b_blocks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl RefSet {
    pub fn new(model: &str, model_version: &str, taxonomy: Taxonomy, dim: usize) -> Self {
        Self {
            model: model.into(),
            model_version: model_version.into(),
            taxonomy,
            dim,
            labels: Vec::new(),
            sources: Vec::new(),
            data: Vec::new(),
            norms: Vec::new(),
            sims: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether any reference came from `source` (an enrolled file).
    pub fn has_source(&self, source: &str) -> bool {
        self.sources.iter().any(|(s, _)| s == source)
    }

    /// Number of distinct labels.
    pub fn label_count(&self) -> usize {
        let mut l: Vec<&String> = self.labels.iter().collect();
        l.sort();
        l.dedup();
        l.len()
    }

    /// Validates a label for this set's taxonomy.
    pub fn check_label(&self, label: &str) -> Result<(), RefsError> {
        if label.trim().is_empty() {
            return Err(RefsError::Label("empty label".into()));
        }
        check_labels(self.taxonomy, &[label.to_string()], "label")
            .map_err(|e| RefsError::Label(e.to_string()))
    }

    /// Adds one z-scored embedding (length `dim`).
    /// Room for `n` more rows (one allocation instead of doubling while loading).
    pub fn reserve(&mut self, n: usize) {
        self.labels.reserve(n);
        self.sources.reserve(n);
        self.data.reserve(n * self.dim);
        self.norms.reserve(n);
    }

    pub fn add(&mut self, label: &str, source: &str, window: u64, z: &[f32]) {
        assert_eq!(z.len(), self.dim, "embedding length");
        self.labels.push(label.to_string());
        self.sources.push((source.to_string(), window));
        self.data.extend_from_slice(z);
        self.norms.push(norm(z));
    }

    /// The `k` most cosine-similar references, most similar first.
    pub fn nearest(&mut self, z: &[f32], k: usize) -> Vec<Neighbour> {
        let qn = norm(z).max(1e-12);
        self.sims.clear();
        for (i, row) in self.data.chunks_exact(self.dim).enumerate() {
            self.sims
                .push((i, dot(row, z) / (qn * self.norms[i].max(1e-12))));
        }
        let k = k.min(self.sims.len());
        if k == 0 {
            return Vec::new();
        }
        self.sims
            .select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = &mut self.sims[..k];
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        top.iter()
            .map(|&(i, s)| {
                let l = Label::new(&self.labels[i], self.taxonomy, s);
                Neighbour {
                    label: l.label,
                    catid: l.catid,
                    category: l.category,
                    subcategory: l.subcategory,
                    score: s,
                    source: self.sources[i].0.clone(),
                    window: self.sources[i].1,
                }
            })
            .collect()
    }

    /// Similarity-weighted votes of `neighbours`: each label's share of the total (positive)
    /// similarity, as a score in 0..=1; best `top` labels first.
    pub fn vote(&self, neighbours: &[Neighbour], top: usize) -> Vec<Label> {
        let mut acc: Vec<(&str, f32)> = Vec::new();
        let weight = |s: f32| s.max(0.0);
        let total: f32 = neighbours.iter().map(|n| weight(n.score)).sum();
        for n in neighbours {
            let w = if total > 0.0 {
                weight(n.score) / total
            } else {
                1.0 / neighbours.len() as f32
            };
            match acc.iter_mut().find(|(l, _)| *l == n.label) {
                Some((_, s)) => *s += w,
                None => acc.push((&n.label, w)),
            }
        }
        acc.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        acc.truncate(top);
        acc.into_iter()
            .map(|(l, s)| Label::new(l, self.taxonomy, s))
            .collect()
    }

    /// Loads a reference file and checks it fits the model `model_id` with `dim` dimensions.
    pub fn load(path: &Path, model_id: &str, dim: usize) -> Result<Self, RefsError> {
        let p = path.display().to_string();
        let rerr = |source| RefsError::Read {
            path: p.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(rerr)?;
        let len = file.metadata().map_err(rerr)?.len();
        read::read(file, &p, model_id, dim, Some(len))
    }

    pub fn from_json(text: &str, p: &str, model_id: &str, dim: usize) -> Result<Self, RefsError> {
        read::read(text.as_bytes(), p, model_id, dim, Some(text.len() as u64))
    }

    pub fn to_json(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let entries = self
            .data
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(i, row)| {
                let bytes: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
                FileEntry {
                    label: self.labels[i].clone(),
                    source: self.sources[i].0.clone(),
                    window: self.sources[i].1,
                    embedding: b64.encode(bytes),
                }
            })
            .collect();
        let f = FileFormat {
            format: FORMAT.into(),
            version: VERSION,
            model: self.model.clone(),
            model_version: self.model_version.clone(),
            taxonomy: self.taxonomy,
            dim: self.dim,
            zscored: true,
            entries,
        };
        serde_json::to_string(&f).expect("reference set serialises")
    }

    /// Writes atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<(), RefsError> {
        let p = path.display().to_string();
        let tmp = path.with_extension("tmp");
        let werr = |source| RefsError::Write {
            path: p.clone(),
            source,
        };
        std::fs::write(&tmp, self.to_json()).map_err(werr)?;
        std::fs::rename(&tmp, path).map_err(werr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> RefSet {
        let mut s = RefSet::new("m", "1", Taxonomy::UcsCatId, 3);
        s.add("DOORWood", "d1.wav", 0, &[1.0, 0.0, 0.0]);
        s.add("DOORWood", "d2.wav", 1, &[0.9, 0.1, 0.0]);
        s.add("ANMLFarm", "a.wav", 0, &[0.0, 1.0, 0.0]);
        s
    }

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for len in [0, 1, 15, 16, 17, 33, 512] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!(
                (dot(&a, &b) as f64 - plain).abs() < 1e-4,
                "length {len}: {} vs {plain}",
                dot(&a, &b)
            );
        }
        assert_eq!(dot(&[1.0; 20], &[2.0; 20]), 40.0);
    }

    #[test]
    fn nearest_is_cosine_and_sorted() {
        let mut s = set();
        let n = s.nearest(&[2.0, 0.0, 0.0], 2);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].source, "d1.wav");
        assert!((n[0].score - 1.0).abs() < 1e-6);
        assert!(n[1].score < n[0].score);
        assert_eq!(n[0].category.as_deref(), Some("DOORS"));
        // k larger than the set.
        assert_eq!(s.nearest(&[0.0, 1.0, 0.0], 10).len(), 3);
    }

    #[test]
    fn votes_are_similarity_shares() {
        let mut s = set();
        let n = s.nearest(&[0.5, 0.6, 0.0], 3);
        let v = s.vote(&n, 5);
        let total: f32 = v.iter().map(|l| l.score).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert_eq!(v[0].label, "DOORWood"); // two fairly similar door refs outvote one sheep
        let v1 = s.vote(&s.clone().nearest(&[0.0, 1.0, 0.0], 1), 5);
        assert_eq!((v1[0].label.as_str(), v1[0].score), ("ANMLFarm", 1.0));
    }

    #[test]
    fn json_round_trip_and_checks() {
        let s = set();
        let text = s.to_json();
        let back = RefSet::from_json(&text, "r.json", "m", 3).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back.data, s.data);
        assert!(matches!(
            RefSet::from_json(&text, "r.json", "other", 3),
            Err(RefsError::ModelMismatch { .. })
        ));
        assert!(matches!(
            RefSet::from_json(&text, "r.json", "m", 4),
            Err(RefsError::DimMismatch { .. })
        ));
        let v2 = text.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            RefSet::from_json(&v2, "r.json", "m", 3),
            Err(RefsError::Version { found: 2, .. })
        ));
        let bad = text.replace("DOORWood", "DOORWOOD");
        let err = RefSet::from_json(&bad, "r.json", "m", 3).unwrap_err();
        assert!(err.to_string().contains("entry 0"), "{err}");
        assert!(RefSet::from_json("{}", "r.json", "m", 3).is_err());
    }

    #[test]
    fn streamed_reader_accepts_any_key_order_and_names_bad_entries() {
        let s = set();
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        // Entries first, header last (a tool may reorder keys): same set.
        let mut o = v.as_object().unwrap().clone();
        let entries = o.remove("entries").unwrap();
        let reordered = format!(
            "{{\"entries\":{},{}",
            entries,
            &serde_json::Value::Object(o).to_string()[1..]
        );
        let back = RefSet::from_json(&reordered, "r.json", "m", 3).unwrap();
        assert_eq!(
            (back.data.clone(), back.labels.clone()),
            (s.data.clone(), s.labels.clone())
        );
        assert_eq!(back.norms, s.norms);
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = v.clone();
            f(&mut v);
            RefSet::from_json(&v.to_string(), "r.json", "m", 3)
                .unwrap_err()
                .to_string()
        };
        let e = with(&|v| v["entries"][1]["embedding"] = "not base64!".into());
        assert!(e.contains("entry 1") && e.contains("base64"), "{e}");
        let e = with(&|v| v["entries"][2]["embedding"] = "AACAfwAAAAAAAAAA".into()); // +inf
        assert!(e.contains("entry 2") && e.contains("non-finite"), "{e}");
        let e = with(&|v| v["entries"][0]["embedding"] = "AAAAAA==".into());
        assert!(e.contains("entry 0") && e.contains("expected 12"), "{e}");
        let e = with(&|v| {
            v["entries"][0].as_object_mut().unwrap().remove("label");
        });
        assert!(e.contains("entry 0"), "{e}");
        let e = with(&|v| v["extra"] = 1.into());
        assert!(e.contains("extra"), "{e}");
        let e = with(&|v| {
            v.as_object_mut().unwrap().remove("taxonomy");
        });
        assert!(e.contains("missing field `taxonomy`"), "{e}");
        let e = with(&|v| v["zscored"] = false.into());
        assert!(e.contains("z-scored"), "{e}");
        let e = RefSet::from_json("{\"format\":\"sfxtag-refs\",", "r.json", "m", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a sfxtag reference set"), "{e}");
    }

    #[test]
    fn custom_taxonomy_accepts_any_label() {
        let s = RefSet::new("m", "1", Taxonomy::Custom, 2);
        assert!(s.check_label("my dog").is_ok());
        assert!(s.check_label(" ").is_err());
        let u = RefSet::new("m", "1", Taxonomy::UcsCatId, 2);
        assert!(u.check_label("DOORWood").is_ok());
        assert!(u.check_label("NotACatId").is_err());
    }
}

//! Leave-one-source-out (LOSO) evaluation of the ways to put UCS Category labels on frozen
//! embeddings: for each source group, train on every other group, test on that one (file level:
//! the mean of the window posteriors), on clean audio and on the same audio mixed with another
//! source's ambience.
//!
//! Methods:
//! - (a) `shipped-knn`: today's kNN over the shipped reference set (minus the held-out group's
//!   references), CatID votes summed per Category;
//! - (b) `corpus-knn`: kNN over the whole corpus, class-balanced (a cap of windows per clip and
//!   per class);
//! - (c) `mlp`: the MLP head on clean windows;
//! - (d) `mlp-noise`: the same, trained on clean and noise-mixed windows;
//! - (e) `mlp-noise-aisfx`: (d) with the released aiSFX heads' posteriors as extra inputs, and
//!   `ensemble`: the mean of (d) and (b).
//!
//! MLP scores are calibrated by temperature scaling, cross-fitted: the temperature of a fold is
//! fitted on the out-of-fold logits of every other fold, so no fold calibrates on itself.

use super::calibrate::{self, Decision};
use super::data::Labelled;
use super::embed::{pick_windows, EncoderSpec, SilenceSummary, Store, Variant, BLOCK3_AUX};
use super::knn::KnnIndex;
use super::mlp::{self, MlpConfig, Sampler};
use super::shipped::ShippedRefs;
use crate::corpus::{self, CorpusIndex};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The methods compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    ShippedKnn,
    CorpusKnn,
    Mlp,
    MlpNoise,
    MlpNoiseAisfx,
    Ensemble,
}

impl Method {
    /// The method a report names.
    pub fn from_name(name: &str) -> Option<Method> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    pub const ALL: [Method; 6] = [
        Method::ShippedKnn,
        Method::CorpusKnn,
        Method::Mlp,
        Method::MlpNoise,
        Method::MlpNoiseAisfx,
        Method::Ensemble,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Method::ShippedKnn => "(a) shipped-knn",
            Method::CorpusKnn => "(b) corpus-knn",
            Method::Mlp => "(c) mlp",
            Method::MlpNoise => "(d) mlp-noise",
            Method::MlpNoiseAisfx => "(e) mlp-noise-aisfx",
            Method::Ensemble => "(e) ensemble d+b",
        }
    }
    /// The method's short name (command line).
    pub fn key(self) -> &'static str {
        match self {
            Method::ShippedKnn => "shipped-knn",
            Method::CorpusKnn => "corpus-knn",
            Method::Mlp => "mlp",
            Method::MlpNoise => "mlp-noise",
            Method::MlpNoiseAisfx => "mlp-noise-aisfx",
            Method::Ensemble => "ensemble",
        }
    }

    /// Whether the method's scores come from logits (and are temperature-calibrated).
    pub fn has_logits(self) -> bool {
        matches!(self, Method::Mlp | Method::MlpNoise | Method::MlpNoiseAisfx)
    }
    /// Whether the daemon can run the method from a model directory (an MLP head in the
    /// encoder graph).
    pub fn exportable(self) -> bool {
        matches!(self, Method::Mlp | Method::MlpNoise)
    }
}

/// What the heads and the corpus kNN read of each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Features {
    /// The encoder's embedding (with the extra columns of an `embed --from-trunk --pool` store).
    #[default]
    Embedding,
    /// The embedding, then block 3's pooled features (the store's `block3` entry, which
    /// `embed` writes when the encoder graph has that output); the exported graph feeds a
    /// head both.
    EmbeddingBlock3,
}

impl Features {
    /// The command-line name.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .expect("every feature set is named")
            .get_name()
            .to_string()
    }
}

/// Seed offset of every head trained on the whole corpus: the fixture scores of the report and
/// the exported heads come from the same training run, so the report describes the shipped
/// heads (not a sibling trained with another seed).
pub const WHOLE_CORPUS_SEED: u64 = 500;

/// Evaluation settings.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub cache: PathBuf,
    /// The model whose encoder made the embeddings (z-score statistics, shipped refs).
    pub model: PathBuf,
    pub noisy: Variant,
    pub mlp: MlpConfig,
    /// Neighbours of the corpus kNN.
    pub knn_k: usize,
    /// Windows per clip in the corpus kNN reference set.
    pub knn_windows_per_clip: usize,
    /// Reference windows per class in the corpus kNN (evenly subsampled above this).
    pub knn_per_class: usize,
    /// A group is a fold when it has at least this many test clips (others always train).
    pub min_test_clips: usize,
    /// Weight of the user's enrolled references against the model in the few-shot curve.
    pub user_weight: f32,
    /// Precision a confident label must reach on held-out data (per-class thresholds).
    pub precision: f32,
    /// The methods to evaluate (all by default; fewer for quick experiments).
    pub methods: Vec<Method>,
    /// A folder of audio with true labels (`labels.csv`): every method, trained on the whole
    /// corpus, is also scored on it.
    pub fixtures: Option<PathBuf>,
    /// Evaluate at most this many folds (quick experiments; 0: only the fixtures).
    pub max_folds: Option<usize>,
    /// Evaluate only these source groups' folds (e.g. those an encoder never trained on).
    pub folds: Vec<String>,
    /// The embeddings' folder instead of `<cache>/embeddings` (another encoder's).
    pub store: Option<PathBuf>,
    /// What the heads read of each window.
    pub features: Features,
    /// Windows quieter than this (RMS dBFS) are left out of training and testing, as the
    /// daemon's silence gate leaves them unclassified (-120: every window).
    pub silence_floor_dbfs: f32,
    /// Pseudo-counts of the batch prior adaptation measured on each held-out source (one
    /// row of the report per value; none: not measured).
    pub prior_strengths: Vec<f32>,
    /// Write every method's out-of-fold file-level posteriors here (JSON lines, one per test
    /// clip), to fuse methods or other models' outputs outside the trainer.
    pub posteriors: Option<PathBuf>,
    pub progress: bool,
}

impl EvalOptions {
    pub fn new(cache: impl Into<PathBuf>, model: impl Into<PathBuf>) -> Self {
        Self {
            cache: cache.into(),
            model: model.into(),
            noisy: Variant::Noisy {
                snr_db: 10.0,
                seed: 1,
            },
            mlp: MlpConfig::default(),
            knn_k: 10,
            knn_windows_per_clip: 4,
            knn_per_class: 1500,
            min_test_clips: 15,
            user_weight: 0.5,
            precision: 0.8,
            methods: Method::ALL.to_vec(),
            fixtures: None,
            max_folds: None,
            folds: Vec::new(),
            store: None,
            features: Features::Embedding,
            silence_floor_dbfs: sfxtag_core::frontend::DEFAULT_SILENCE_FLOOR_DBFS,
            prior_strengths: vec![0.0, 10.0, sfxtag_core::priors::DEFAULT_STRENGTH],
            posteriors: None,
            progress: true,
        }
    }
}

/// Scores of one method on one fold and variant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    pub clips: usize,
    pub top1: f64,
    pub top3: f64,
    pub macro_f1: f64,
    /// Accuracy of the 50 % / 80 % most confident predictions.
    pub sel50: f64,
    pub sel80: f64,
}

/// Scores by method, variant (`clean`/`noisy`) and source group.
pub type ScoresByMethod = BTreeMap<String, BTreeMap<String, BTreeMap<String, Scores>>>;

/// Everything the evaluation measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalReport {
    pub categories: Vec<String>,
    pub catids: Vec<String>,
    /// Fold groups, in order.
    pub folds: Vec<String>,
    /// Groups that only ever train (too few test clips).
    pub train_only: Vec<String>,
    /// method → variant (`clean`/`noisy`) → group → scores.
    pub scores: ScoresByMethod,
    /// method → (window NLL at T = 1, with the cross-fitted T, the pooled T).
    pub calibration: BTreeMap<String, (f64, f64, f32)>,
    /// The default method (best exportable clean mean top-1).
    pub default_method: String,
    /// CatID head of the default method: group → (clips, top-1).
    pub catid: BTreeMap<String, (usize, f64)>,
    /// Default method restricted to the held-out group's own Categories: group → scores.
    pub restricted: BTreeMap<String, Scores>,
    /// Few-shot: k → (clips, top-1 with k enrolled per Category, top-1 of the model alone on
    /// the same clips), summed over folds.
    pub fewshot: BTreeMap<usize, (usize, f64, f64)>,
    /// Per-class thresholds of the default method (pooled out-of-fold window predictions).
    pub thresholds: Vec<f32>,
    /// Fixtures: method → (right, scored, per file "file: want → got score").
    pub fixtures: BTreeMap<String, (usize, usize, Vec<String>)>,
    /// Temperature of the CatID head (pooled out-of-fold window logits).
    pub catid_temperature: f32,
    /// Out-of-vocabulary test clips (Category not a head class), per group.
    pub out_of_vocabulary: BTreeMap<String, usize>,
    /// Default method, clean, pooled over folds, per class: (file-level support, recall,
    /// precision, window-level recall of "probability ≥ 0.25", the privacy filter's test).
    pub per_class: BTreeMap<String, (usize, f64, f64, f64)>,
    /// What the heads read (reports before this field: the embedding).
    pub features: Features,
    /// Windows below this level were left out (reports before this field: none, -120).
    #[serde(default = "every_window")]
    pub silence_floor_dbfs: f32,
    /// Windows left out by the floor, and clips whose every window is below it (kept whole),
    /// in the clean store.
    pub silence: (usize, usize),
    /// Batch prior adaptation (`sfxtag_core::priors`) of the logit methods' file-level
    /// posteriors, each held-out source one batch: strength → method → variant → group → scores.
    pub adapted: BTreeMap<String, ScoresByMethod>,
    pub seconds: f64,
}

/// The floor of reports that kept every window.
fn every_window() -> f32 {
    sfxtag_core::frontend::MIN_LEVEL_DBFS
}

/// Everything the folds share, loaded once.
pub struct Setup {
    pub clean: Store,
    pub lab: Labelled,
    /// Per clean clip: its rows in the noisy part of `x`, and the group of the mixed ambience.
    pub noisy_rows: Vec<Option<(Range<usize>, usize)>>,
    /// z-scored rows: clean rows, then noisy rows.
    pub x: Tensor,
    /// `x` with the aiSFX heads' posteriors appended.
    pub x_aux: Tensor,
    pub shipped: Option<ShippedRefs>,
    /// Group index of each shipped reference (None: a source outside the corpus).
    pub shipped_groups: Vec<Option<usize>>,
    pub shipped_k: usize,
    /// Width of a row of `x`.
    pub dim: usize,
    pub features: Features,
    /// Width of the model's embedding (the first columns of every row of `x`).
    pub emb_dim: usize,
    /// The z-score statistics `x` was made with (the `--model` manifest's for the embedding,
    /// the clean rows' own for the columns after it): an exported head folds exactly these into
    /// its first layer, since the graph feeds it raw features.
    pub zscore_mean: Vec<f32>,
    pub zscore_std: Vec<f32>,
    /// Windows below this level are not in `x` (as the daemon does not classify them).
    pub silence_floor_dbfs: f32,
    /// What the floor left out of the clean store.
    pub silence: SilenceSummary,
}

/// Raw feature rows of `store`: each window's row (the embedding and any extra columns), then,
/// with `block3` (where they sit in an aux row), block 3's pooled features.
fn feature_rows(store: &Store, block3: Option<&Range<usize>>) -> Vec<f32> {
    let width = store.dim + block3.map_or(0, |b| b.len());
    let mut out = Vec::with_capacity(store.rows() * width);
    for r in 0..store.rows() {
        out.extend_from_slice(store.row(r));
        if let Some(b) = block3 {
            out.extend_from_slice(&store.aux_row(r)[b.clone()]);
        }
    }
    out
}

/// z-scores rows of width `mean.len()` in place.
fn zscore_in_place(rows: &mut [f32], mean: &[f32], std: &[f32]) {
    for row in rows.chunks_exact_mut(mean.len()) {
        for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
            *x = (*x - m) / s;
        }
    }
}

/// `(mean, std)` of every column of rows `d` wide: the z-score of features the model's
/// manifest has no statistics for (block 3's, `embed --from-trunk --pool`'s extra columns).
fn column_stats(rows: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (rows.len() / d).max(1) as f64;
    let (mut sum, mut sq) = (vec![0f64; d], vec![0f64; d]);
    for row in rows.chunks_exact(d) {
        for (i, v) in row.iter().enumerate() {
            sum[i] += *v as f64;
            sq[i] += (*v as f64) * (*v as f64);
        }
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std = sq
        .iter()
        .zip(&sum)
        .map(|(q, s)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-6))
        .collect();
    (mean, std)
}

/// Per-head softmax of aux logits, scaled to unit-ish range, appended to `z` rows.
fn with_aux(z: &[f32], dim: usize, store: &Store) -> Vec<f32> {
    let a = store.aux_dim();
    let mut out = Vec::with_capacity(z.len() / dim * (dim + a));
    for (r, row) in z.chunks_exact(dim).enumerate() {
        append_aux(&mut out, row, store.aux_row(r), &store.aux);
    }
    out
}

/// One row of `[z ; per-head softmax of the aux logits]` (block 3's features are not logits:
/// they are in `z` when the heads read them).
fn append_aux(out: &mut Vec<f32>, z: &[f32], aux: &[f32], layout: &[(String, usize)]) {
    out.extend_from_slice(z);
    let mut off = 0;
    for (name, n) in layout {
        if name == BLOCK3_AUX {
            off += n;
            continue;
        }
        let p = mlp::softmax_rows(&aux[off..off + n], *n, 1.0);
        // √n keeps a head's posteriors on the scale of the z-scored embedding.
        out.extend(p.iter().map(|v| v * (*n as f32).sqrt()));
        off += n;
    }
}

/// Audio with true labels outside the corpus (`labels.csv`: `file,ucs_catid,…`), embedded.
pub struct Fixtures {
    pub files: Vec<String>,
    /// True Category index (None: not a head class).
    pub truth: Vec<Option<usize>>,
    pub truth_names: Vec<String>,
    /// Window rows per file.
    pub rows: Vec<Range<usize>>,
    pub x: Tensor,
    pub x_aux: Tensor,
}

impl Fixtures {
    /// Embeds the fixtures with `model`'s encoder into `setup`'s features.
    pub fn load(dir: &Path, model: &Path, setup: &Setup) -> Result<Self> {
        let lab = &setup.lab;
        let enc = EncoderSpec::load(model)?;
        let (mean, std) = (&setup.zscore_mean, &setup.zscore_std);
        let block3 = match setup.features {
            Features::Embedding => None,
            Features::EmbeddingBlock3 => Some(
                super::embed::block3_range(&enc.aux)
                    .context("the model's encoder has no block 3 output")?,
            ),
        };
        let text = std::fs::read_to_string(dir.join("labels.csv"))
            .with_context(|| format!("{}: no labels.csv", dir.display()))?;
        let (dim, aux_dim) = (
            enc.manifest.encoder.embedding_dim,
            enc.aux.iter().map(|a| a.1).sum::<usize>(),
        );
        let width = setup.dim;
        let (mut z, mut za) = (Vec::new(), Vec::new());
        let mut f = Fixtures {
            files: Vec::new(),
            truth: Vec::new(),
            truth_names: Vec::new(),
            rows: Vec::new(),
            x: Tensor::new(),
            x_aux: Tensor::new(),
        };
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let mut cols = line.splitn(3, ',');
            let (Some(file), Some(catid)) = (cols.next(), cols.next()) else {
                bail!("{}: bad row {line:?}", dir.display());
            };
            let cat = sfxtag_core::ucs::lookup(catid)
                .with_context(|| format!("{}: {catid} is not a UCS CatID", dir.display()))?
                .category;
            let (rows, levels) = super::embed::embed_file(&enc, &dir.join(file), 16)?;
            // The windows the daemon classifies (all of them if it would call the file silent).
            let any_loud = levels.iter().any(|l| *l >= setup.silence_floor_dbfs);
            let first = z.len() / width;
            for (row, level) in rows.chunks_exact(dim + aux_dim).zip(&levels) {
                if any_loud && *level < setup.silence_floor_dbfs {
                    continue;
                }
                let (emb, aux) = row.split_at(dim);
                let b3 = block3.as_ref().map_or(&[][..], |b| &aux[b.clone()]);
                let zr: Vec<f32> = emb
                    .iter()
                    .chain(b3)
                    .zip(mean)
                    .zip(std)
                    .map(|((x, m), s)| (x - m) / s)
                    .collect();
                append_aux(&mut za, &zr, aux, &enc.aux);
                z.extend(zr);
            }
            f.files.push(file.to_string());
            f.truth.push(lab.categories.iter().position(|c| c == cat));
            f.truth_names.push(cat.to_string());
            f.rows.push(first..z.len() / width);
        }
        let n = (z.len() / width) as i64;
        f.x = Tensor::from_slice(&z).view([n, width as i64]);
        f.x_aux = Tensor::from_slice(&za).view([n, (za.len() as i64) / n.max(1)]);
        Ok(f)
    }
}

impl Setup {
    pub fn load(opts: &EvalOptions) -> Result<Self> {
        let enc = EncoderSpec::load(&opts.model)?;
        let (mean, std) = (
            &enc.manifest.encoder.embedding_mean,
            &enc.manifest.encoder.embedding_std,
        );
        let mut clean = Store::load(&opts.cache, opts.store.as_deref(), &Variant::Clean)?;
        let mut noisy = Store::load(&opts.cache, opts.store.as_deref(), &opts.noisy)?;
        let silence = clean.drop_silent(opts.silence_floor_dbfs)?;
        noisy.drop_silent(opts.silence_floor_dbfs)?;
        let lab = Labelled::new(&clean)?;
        let emb_dim = mean.len();
        if noisy.dim != clean.dim || clean.dim < emb_dim {
            bail!(
                "the clean ({}) and noisy ({}) embeddings must both be at least the model's {emb_dim} wide",
                clean.dim,
                noisy.dim,
            );
        }
        let block3 = match opts.features {
            Features::Embedding => None,
            Features::EmbeddingBlock3 => match (clean.block3_range(), noisy.block3_range()) {
                (Some(c), Some(n)) if c == n => Some(c),
                _ => bail!(
                    "--features embedding-block3: the embeddings hold no block 3 features (embed \
                     again with a model whose encoder has the `{BLOCK3_AUX}` output, as every \
                     model this version exports)"
                ),
            },
        };
        let mut z = feature_rows(&clean, block3.as_ref());
        let mut zn = feature_rows(&noisy, block3.as_ref());
        let dim = clean.dim + block3.as_ref().map_or(0, |b| b.len());
        // Columns past the model's embedding are z-scored by the clean rows' own statistics.
        let (mut mean, mut std) = (mean.clone(), std.clone());
        if dim > mean.len() {
            let (m, s) = column_stats(&z, dim);
            mean.extend_from_slice(&m[emb_dim..]);
            std.extend_from_slice(&s[emb_dim..]);
        }
        zscore_in_place(&mut z, &mean, &std);
        zscore_in_place(&mut zn, &mean, &std);
        let mut za = with_aux(&z, dim, &clean);
        let base = clean.rows();
        let zna = with_aux(&zn, dim, &noisy);
        z.extend_from_slice(&zn);
        za.extend_from_slice(&zna);
        let by_key: HashMap<(&str, &str), usize> = noisy
            .clips
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.dataset.as_str(), c.rel_path.as_str()), i))
            .collect();
        let noisy_rows = clean
            .clips
            .iter()
            .map(|c| {
                let i = *by_key.get(&(c.dataset.as_str(), c.rel_path.as_str()))?;
                let n = &noisy.clips[i];
                let g = lab.group_index(n.noise_group.as_deref()?)?;
                (n.windows > 0).then(|| (base + n.first..base + n.first + n.windows, g))
            })
            .collect();
        let rows = (z.len() / dim) as i64;
        let x = Tensor::from_slice(&z).view([rows, dim as i64]);
        let width = (za.len() as i64) / rows;
        let x_aux = Tensor::from_slice(&za).view([rows, width]);
        // The shipped reference set, if the model has one (its rows are embeddings: they are
        // compared with the embedding columns of every row).
        let (shipped, shipped_groups, shipped_k) = match &enc.manifest.knn {
            Some(k) => {
                let r = ShippedRefs::load(&opts.model.join(&k.file))?;
                let index = CorpusIndex::load(&opts.cache)?;
                let groups = r
                    .sources
                    .iter()
                    .map(|s| {
                        let pkg = ShippedRefs::package_of(s)?;
                        let p = corpus::package(pkg)?;
                        lab.group_index(&index.group_of(p.dataset))
                    })
                    .collect();
                (Some(r), groups, k.k)
            }
            _ => (None, Vec::new(), 5),
        };
        Ok(Self {
            clean,
            lab,
            noisy_rows,
            x,
            x_aux,
            shipped,
            shipped_groups,
            shipped_k,
            dim,
            features: opts.features,
            emb_dim,
            zscore_mean: mean,
            zscore_std: std,
            silence_floor_dbfs: opts.silence_floor_dbfs,
            silence,
        })
    }

    /// Whether the graph can compute every column of `x` (an exported head reads them all):
    /// the embedding, and block 3's features, but not the other pooled columns of a
    /// `embed --from-trunk --pool` store.
    pub fn exportable_features(&self) -> bool {
        self.clean.dim == self.emb_dim
    }

    fn rows_tensor(&self, rows: &[usize], aux: bool) -> Tensor {
        let idx = Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
        if aux { &self.x_aux } else { &self.x }.index_select(0, &idx)
    }

    fn rows_vec(&self, rows: &[usize]) -> Vec<f32> {
        self.rows_vec_cols(rows, self.dim)
    }

    /// The first `cols` columns of `rows` of `x`.
    fn rows_vec_cols(&self, rows: &[usize], cols: usize) -> Vec<f32> {
        let t = self.rows_tensor(rows, false).narrow(1, 0, cols as i64);
        Vec::<f32>::try_from(t.contiguous().flatten(0, -1)).expect("f32 rows")
    }
}

/// Window logits of a fold's test clips, with each window's position among them.
#[derive(Debug, Clone, Default)]
struct WindowLogits {
    clean: Vec<f32>,
    clean_owner: Vec<usize>,
    noisy: Vec<f32>,
    noisy_owner: Vec<usize>,
}

/// How an MLP head is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    /// Also train on the noise-mixed windows (whose ambience is not from the held-out group).
    pub noise: bool,
    /// The aiSFX heads' posteriors as extra inputs.
    pub aux: bool,
}

impl Method {
    /// The MLP recipe of a logit method.
    pub fn recipe(self) -> Recipe {
        Recipe {
            noise: matches!(self, Method::MlpNoise | Method::MlpNoiseAisfx),
            aux: self == Method::MlpNoiseAisfx,
        }
    }
}

/// File-level predictions of one method on one fold.
#[derive(Debug, Clone, Default)]
struct FoldPreds {
    /// Test clip indices.
    clips: Vec<usize>,
    /// Width of the probability rows (classes, or classes + 1 with an "other" column).
    width: usize,
    clean: Vec<f32>,
    noisy: Vec<f32>,
    /// For logit methods: window logits and each window's clip position.
    logits: Option<WindowLogits>,
}

/// Scores of file-level probabilities (`width ≥ classes` wide) against true classes.
pub fn score(probs: &[f32], width: usize, truth: &[usize]) -> Scores {
    let n = truth.len();
    if n == 0 {
        return Scores::default();
    }
    let mut conf = Vec::with_capacity(n);
    let (mut top1, mut top3) = (0usize, 0usize);
    let mut pred = Vec::with_capacity(n);
    for (row, &y) in probs.chunks_exact(width).zip(truth) {
        let mut order: Vec<usize> = (0..width).collect();
        order.sort_by(|a, b| row[*b].total_cmp(&row[*a]).then(a.cmp(b)));
        top1 += (order[0] == y) as usize;
        top3 += order[..3.min(width)].contains(&y) as usize;
        pred.push(order[0]);
        conf.push((row[order[0]], order[0] == y));
    }
    // Macro-F1 over the classes present in the truth.
    let mut classes: Vec<usize> = truth.to_vec();
    classes.sort();
    classes.dedup();
    let f1: f64 = classes
        .iter()
        .map(|&c| {
            let tp = pred
                .iter()
                .zip(truth)
                .filter(|(p, t)| **p == c && **t == c)
                .count();
            let fp = pred
                .iter()
                .zip(truth)
                .filter(|(p, t)| **p == c && **t != c)
                .count();
            let fn_ = pred
                .iter()
                .zip(truth)
                .filter(|(p, t)| **p != c && **t == c)
                .count();
            if tp == 0 {
                0.0
            } else {
                2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
            }
        })
        .sum::<f64>()
        / classes.len() as f64;
    conf.sort_by(|a, b| b.0.total_cmp(&a.0));
    let sel = |frac: f64| {
        let m = ((n as f64 * frac).round() as usize).max(1);
        conf[..m].iter().filter(|c| c.1).count() as f64 / m as f64
    };
    Scores {
        clips: n,
        top1: top1 as f64 / n as f64,
        top3: top3 as f64 / n as f64,
        macro_f1: f1,
        sel50: sel(0.5),
        sel80: sel(0.8),
    }
}

/// Clip-level mean of window-level rows.
fn per_clip(rows: &[f32], width: usize, owner: &[usize], n_clips: usize) -> Vec<f32> {
    let mut out = vec![0f32; n_clips * width];
    let mut count = vec![0usize; n_clips];
    for (row, &o) in rows.chunks_exact(width).zip(owner) {
        for (a, b) in out[o * width..(o + 1) * width].iter_mut().zip(row) {
            *a += b;
        }
        count[o] += 1;
    }
    for (o, c) in count.iter().enumerate() {
        if *c > 0 {
            out[o * width..(o + 1) * width]
                .iter_mut()
                .for_each(|v| *v /= *c as f32);
        }
    }
    out
}

/// Window rows of test clips: `(rows, owner position)`, clean or noisy.
fn test_rows(setup: &Setup, clips: &[usize], noisy: bool) -> (Vec<usize>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut owner = Vec::new();
    for (pos, &c) in clips.iter().enumerate() {
        let r = if noisy {
            match &setup.noisy_rows[c] {
                Some((r, _)) => r.clone(),
                None => continue,
            }
        } else {
            setup.lab.clips[c].rows.clone()
        };
        for row in r {
            rows.push(row);
            owner.push(pos);
        }
    }
    (rows, owner)
}

/// Trains an MLP for a fold. `classes_of` gives a clip's class; `noise` adds noise-mixed rows
/// (whose ambience is not from the held-out group).
pub fn fold_mlp(
    setup: &Setup,
    train: &[usize],
    classes: usize,
    classes_of: impl Fn(usize) -> Option<usize>,
    held_out: usize,
    recipe: Recipe,
    cfg: &MlpConfig,
) -> Result<mlp::Mlp> {
    let Recipe { noise, aux } = recipe;
    let mut parts = Vec::new();
    for &c in train {
        let Some(k) = classes_of(c) else { continue };
        let g = setup.lab.clips[c].group;
        parts.push((k, g, setup.lab.clips[c].rows.clone()));
        if noise {
            if let Some((r, ng)) = &setup.noisy_rows[c] {
                if *ng != held_out {
                    parts.push((k, g, r.clone()));
                }
            }
        }
    }
    let sampler = Sampler::new(classes, parts.into_iter());
    mlp::train_on(if aux { &setup.x_aux } else { &setup.x }, &sampler, cfg)
}

fn mlp_preds(setup: &Setup, m: &mlp::Mlp, test: &[usize], aux: bool) -> FoldPreds {
    let classes = m.classes as usize;
    let (rc, oc) = test_rows(setup, test, false);
    let (rn, on) = test_rows(setup, test, true);
    FoldPreds {
        clips: test.to_vec(),
        width: classes,
        clean: Vec::new(),
        noisy: Vec::new(),
        logits: Some(WindowLogits {
            clean: m.logits_t(&setup.rows_tensor(&rc, aux)),
            clean_owner: oc,
            noisy: m.logits_t(&setup.rows_tensor(&rn, aux)),
            noisy_owner: on,
        }),
    }
}

fn knn_preds(setup: &Setup, idx: &KnnIndex, test: &[usize]) -> FoldPreds {
    let (rc, oc) = test_rows(setup, test, false);
    let (rn, on) = test_rows(setup, test, true);
    let w = idx.classes;
    FoldPreds {
        clips: test.to_vec(),
        width: w,
        clean: per_clip(
            &idx.vote(&setup.rows_vec_cols(&rc, idx.dim())),
            w,
            &oc,
            test.len(),
        ),
        noisy: per_clip(
            &idx.vote(&setup.rows_vec_cols(&rn, idx.dim())),
            w,
            &on,
            test.len(),
        ),
        logits: None,
    }
}

/// The corpus kNN reference rows of the training clips: a few windows per clip, at most
/// `per_class` rows per class (evenly thinned).
fn corpus_knn(setup: &Setup, train: &[usize], opts: &EvalOptions) -> KnnIndex {
    let classes = setup.lab.categories.len();
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for &c in train {
        let clip = &setup.lab.clips[c];
        let Some(k) = clip.category else { continue };
        let r = clip.rows.clone();
        for w in pick_windows(r.len(), opts.knn_windows_per_clip) {
            by_class[k].push(r.start + w);
        }
    }
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (k, rs) in by_class.iter().enumerate() {
        for i in pick_windows(rs.len(), opts.knn_per_class) {
            rows.push(rs[i]);
            labels.push(k);
        }
    }
    KnnIndex::new(
        &setup.rows_vec(&rows),
        setup.dim,
        &labels,
        classes,
        opts.knn_k,
    )
}

/// The shipped references minus the held-out group's, with an "other" class for Categories
/// that are not head classes.
fn shipped_knn(setup: &Setup, held_out: usize) -> Option<KnnIndex> {
    let r = setup.shipped.as_ref()?;
    let classes = setup.lab.categories.len();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, l) in r.labels.iter().enumerate() {
        if setup.shipped_groups[i] == Some(held_out) {
            continue;
        }
        let cat = sfxtag_core::ucs::lookup(l).map(|e| e.category);
        let k = cat
            .and_then(|c| setup.lab.categories.iter().position(|x| x == c))
            .unwrap_or(classes);
        rows.extend_from_slice(&r.rows[i * r.dim..(i + 1) * r.dim]);
        labels.push(k);
    }
    Some(KnnIndex::new(
        &rows,
        r.dim,
        &labels,
        classes + 1,
        setup.shipped_k,
    ))
}

/// The clips of a fold: every clip of the other groups trains (a head uses those of its
/// classes); the held-out group's clips with a head class are the test.
pub fn split(lab: &Labelled, held_out: usize) -> (Vec<usize>, Vec<usize>) {
    let train = (0..lab.clips.len())
        .filter(|&c| lab.clips[c].group != held_out)
        .collect();
    let test = (0..lab.clips.len())
        .filter(|&c| lab.clips[c].group == held_out && lab.clips[c].category.is_some())
        .collect();
    (train, test)
}

/// A fold's file-level probabilities and true Categories per variant: `clean`, and `noisy` for
/// the clips that have a noisy version.
fn fold_variants(setup: &Setup, fp: &FoldPreds) -> [(&'static str, Vec<f32>, Vec<usize>); 2] {
    let truth: Vec<usize> = fp
        .clips
        .iter()
        .map(|&c| setup.lab.clips[c].category.expect("labelled"))
        .collect();
    let keep: Vec<usize> = (0..fp.clips.len())
        .filter(|&i| setup.noisy_rows[fp.clips[i]].is_some())
        .collect();
    let noisy: Vec<f32> = keep
        .iter()
        .flat_map(|&i| fp.noisy[i * fp.width..(i + 1) * fp.width].to_vec())
        .collect();
    let noisy_truth = keep.iter().map(|&i| truth[i]).collect();
    [
        ("clean", fp.clean.clone(), truth),
        ("noisy", noisy, noisy_truth),
    ]
}

/// One test clip's out-of-fold file-level posteriors (`heads --posteriors`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PosteriorRow {
    pub method: String,
    /// The held-out source group.
    pub fold: String,
    pub dataset: String,
    pub rel_path: String,
    /// The true Category (a head class: out-of-vocabulary clips are not test rows).
    pub category: String,
    /// One probability per head class, in the report's `categories` order.
    pub clean: Vec<f32>,
    /// The same for the clip mixed with an ambience (none where it has no noisy version).
    pub noisy: Option<Vec<f32>>,
}

/// The rows of one method's fold: every test clip with its clean and noisy posteriors.
fn posterior_rows(
    lab: &Labelled,
    has_noisy: impl Fn(usize) -> bool,
    method: Method,
    fold: &str,
    fp: &FoldPreds,
) -> Vec<PosteriorRow> {
    let classes = lab.categories.len();
    fp.clips
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let clip = &lab.clips[c];
            let row = |p: &[f32]| p[i * fp.width..i * fp.width + classes].to_vec();
            PosteriorRow {
                method: method.key().to_string(),
                fold: fold.to_string(),
                dataset: clip.dataset.clone(),
                rel_path: clip.rel_path.clone(),
                category: clip.category_name.clone().unwrap_or_default(),
                clean: row(&fp.clean),
                noisy: has_noisy(c).then(|| row(&fp.noisy)),
            }
        })
        .collect()
}

/// The class mix a Category head trained without `held_out` (none: on every source) learned:
/// its training clips per class, to the sampler's power (`mlp::Sampler::batch_with`), as shares.
pub fn training_prior(
    lab: &Labelled,
    held_out: Option<usize>,
    classes: usize,
    power: f64,
) -> Vec<f32> {
    let mut clips = vec![0usize; classes];
    for c in lab.clips.iter().filter(|c| Some(c.group) != held_out) {
        if let Some(k) = c.category {
            clips[k] += 1;
        }
    }
    let w: Vec<f64> = clips
        .iter()
        .map(|&n| if n == 0 { 0.0 } else { (n as f64).powf(power) })
        .collect();
    let total: f64 = w.iter().sum();
    w.iter()
        .map(|x| (x / total.max(f64::MIN_POSITIVE)) as f32)
        .collect()
}

/// Runs the whole evaluation. `log` receives one line per fold.
pub fn run(
    opts: &EvalOptions,
    mut log: impl FnMut(&str),
) -> Result<(EvalReport, Setup, OutOfFold)> {
    let t0 = std::time::Instant::now();
    let setup = Setup::load(opts)?;
    let lab = &setup.lab;
    let classes = lab.categories.len();
    let mut report = EvalReport {
        categories: lab.categories.clone(),
        catids: lab.catids.clone(),
        features: opts.features,
        silence_floor_dbfs: opts.silence_floor_dbfs,
        silence: (setup.silence.windows_dropped, setup.silence.silent_clips),
        ..Default::default()
    };
    if !super::embed::keeps_every_window(opts.silence_floor_dbfs) {
        log(&format!(
            "silence floor {} dBFS: {} clean windows left out; {} clips below it throughout (kept whole)",
            opts.silence_floor_dbfs, setup.silence.windows_dropped, setup.silence.silent_clips
        ));
    }
    // Folds: groups with enough labelled test clips.
    let mut folds = Vec::new();
    for (g, name) in lab.groups.iter().enumerate() {
        let n = lab
            .clips
            .iter()
            .filter(|c| c.group == g && c.category.is_some())
            .count();
        let oov = lab
            .clips
            .iter()
            .filter(|c| c.group == g && c.category.is_none() && c.category_name.is_some())
            .count();
        report.out_of_vocabulary.insert(name.clone(), oov);
        if n >= opts.min_test_clips {
            folds.push(g);
        } else {
            report.train_only.push(name.clone());
        }
    }
    if !opts.folds.is_empty() {
        if let Some(f) = opts.folds.iter().find(|f| !lab.groups.contains(f)) {
            bail!("--folds: '{f}' is not a source group of the corpus");
        }
        folds.retain(|&g| opts.folds.contains(&lab.groups[g]));
    }
    if let Some(n) = opts.max_folds {
        folds.truncate(n);
        if n == 0 {
            fixture_scores(opts, &setup, &mut report)?;
            report.seconds = t0.elapsed().as_secs_f64();
            return Ok((report, setup, OutOfFold::default()));
        }
    } else if folds.len() < 2 {
        bail!("leave-one-source-out needs at least two source groups with {}+ labelled clips; found {}", opts.min_test_clips, folds.len());
    }
    report.folds = folds.iter().map(|&g| lab.groups[g].clone()).collect();
    let mut preds: BTreeMap<Method, Vec<(usize, FoldPreds)>> = BTreeMap::new();
    // Per fold: (group, test clips, window logits, each window's clip position).
    let mut catid_preds: Vec<CatIdFold> = Vec::new();
    for (fi, &g) in folds.iter().enumerate() {
        let tf = std::time::Instant::now();
        let (train, test) = split(lab, g);
        let cat_of = |c: usize| lab.clips[c].category;
        let cfg = MlpConfig {
            seed: opts.mlp.seed + fi as u64,
            ..opts.mlp.clone()
        };
        let mut timing = Vec::new();
        let mut tick = std::time::Instant::now();
        let mut lap = |what: &str, tick: &mut std::time::Instant| {
            timing.push(format!("{what} {:.1}s", tick.elapsed().as_secs_f64()));
            *tick = std::time::Instant::now();
        };
        let wants = |m: Method| opts.methods.contains(&m);
        if let Some(idx) = shipped_knn(&setup, g).filter(|_| wants(Method::ShippedKnn)) {
            preds
                .entry(Method::ShippedKnn)
                .or_default()
                .push((g, knn_preds(&setup, &idx, &test)));
        }
        lap("a", &mut tick);
        if wants(Method::CorpusKnn) || wants(Method::Ensemble) {
            let cknn = corpus_knn(&setup, &train, opts);
            preds
                .entry(Method::CorpusKnn)
                .or_default()
                .push((g, knn_preds(&setup, &cknn, &test)));
        }
        lap("b", &mut tick);
        for (m, noise, aux) in [
            (Method::Mlp, false, false),
            (Method::MlpNoise, true, false),
            (Method::MlpNoiseAisfx, true, true),
        ] {
            let needed = wants(m) || (m == Method::MlpNoise && wants(Method::Ensemble));
            if !needed {
                continue;
            }
            let model = fold_mlp(
                &setup,
                &train,
                classes,
                cat_of,
                g,
                Recipe { noise, aux },
                &cfg,
            )?;
            preds
                .entry(m)
                .or_default()
                .push((g, mlp_preds(&setup, &model, &test, aux)));
            lap(m.name(), &mut tick);
        }
        // CatID head (the MlpNoise recipe) on the clips whose CatID is a class.
        let id_test: Vec<usize> = (0..lab.clips.len())
            .filter(|&c| lab.clips[c].group == g && lab.clips[c].catid.is_some())
            .collect();
        if !id_test.is_empty() && lab.catids.len() >= 2 && wants(Method::MlpNoise) {
            let m = fold_mlp(
                &setup,
                &train,
                lab.catids.len(),
                |c| lab.clips[c].catid,
                g,
                Method::MlpNoise.recipe(),
                &cfg,
            )?;
            let (rc, oc) = test_rows(&setup, &id_test, false);
            catid_preds.push(CatIdFold {
                group: g,
                clips: id_test,
                logits: m.logits_t(&setup.rows_tensor(&rc, false)),
                owner: oc,
            });
        }
        lap("catid", &mut tick);
        log(&format!(
            "fold {}/{} {}: {} test clips ({:.1} s: {})",
            fi + 1,
            folds.len(),
            lab.groups[g],
            test.len(),
            tf.elapsed().as_secs_f64(),
            timing.join(", ")
        ));
    }
    // Cross-fitted temperatures, then file-level probabilities of the logit methods.
    let mut oof = OutOfFold::default();
    for (m, folds_p) in preds.iter_mut() {
        if !m.has_logits() {
            continue;
        }
        let labels_of = |fp: &FoldPreds, owner: &[usize]| -> Vec<usize> {
            owner
                .iter()
                .map(|&o| {
                    lab.clips[fp.clips[o]]
                        .category
                        .expect("test clips are labelled")
                })
                .collect()
        };
        let all: Vec<(Vec<f32>, Vec<usize>)> = folds_p
            .iter()
            .map(|(_, fp)| {
                let w = fp.logits.as_ref().expect("logit method");
                (w.clean.clone(), labels_of(fp, &w.clean_owner))
            })
            .collect();
        let (mut nll1, mut nllt, mut n) = (0.0, 0.0, 0usize);
        for (i, (_, fp)) in folds_p.iter_mut().enumerate() {
            let (mut l, mut y) = (Vec::new(), Vec::new());
            for (j, (lj, yj)) in all.iter().enumerate() {
                if j != i {
                    l.extend_from_slice(lj);
                    y.extend_from_slice(yj);
                }
            }
            let t = calibrate::fit_temperature(&l, classes, &y);
            let WindowLogits {
                clean: lc,
                clean_owner: oc,
                noisy: ln,
                noisy_owner: on,
            } = fp.logits.clone().expect("logit method");
            let (own_l, own_y) = &all[i];
            nll1 += calibrate::nll(own_l, classes, own_y, 1.0) * own_y.len() as f64;
            nllt += calibrate::nll(own_l, classes, own_y, t) * own_y.len() as f64;
            n += own_y.len();
            fp.clean = per_clip(
                &mlp::softmax_rows(&lc, classes, t),
                classes,
                &oc,
                fp.clips.len(),
            );
            fp.noisy = per_clip(
                &mlp::softmax_rows(&ln, classes, t),
                classes,
                &on,
                fp.clips.len(),
            );
        }
        let (pl, py): (Vec<f32>, Vec<usize>) =
            all.iter()
                .fold((Vec::new(), Vec::new()), |(mut l, mut y), (a, b)| {
                    l.extend_from_slice(a);
                    y.extend_from_slice(b);
                    (l, y)
                });
        let pooled_t = calibrate::fit_temperature(&pl, classes, &py);
        report.calibration.insert(
            m.name().to_string(),
            (nll1 / n.max(1) as f64, nllt / n.max(1) as f64, pooled_t),
        );
        oof.logits.insert(*m, (pl, py, pooled_t));
    }
    // The ensemble of (d) and (b).
    if let (Some(d), Some(b)) = (preds.get(&Method::MlpNoise), preds.get(&Method::CorpusKnn)) {
        let e: Vec<(usize, FoldPreds)> = d
            .iter()
            .zip(b)
            .map(|((g, pd), (_, pb))| {
                let mix =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect();
                (
                    *g,
                    FoldPreds {
                        clips: pd.clips.clone(),
                        width: pd.width,
                        clean: mix(&pd.clean, &pb.clean),
                        noisy: mix(&pd.noisy, &pb.noisy),
                        logits: None,
                    },
                )
            })
            .collect();
        preds.insert(Method::Ensemble, e);
    }
    // Scores per method, variant and fold.
    for (m, folds_p) in &preds {
        let entry = report.scores.entry(m.name().to_string()).or_default();
        for (g, fp) in folds_p {
            for (variant, p, truth) in fold_variants(&setup, fp) {
                entry
                    .entry(variant.into())
                    .or_default()
                    .insert(lab.groups[*g].clone(), score(&p, fp.width, &truth));
            }
        }
    }
    if let Some(path) = &opts.posteriors {
        use std::io::Write as _;
        let cannot = || format!("cannot write {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(cannot)?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).with_context(cannot)?);
        let has_noisy = |c: usize| setup.noisy_rows[c].is_some();
        for (m, folds_p) in &preds {
            for (g, fp) in folds_p {
                for row in posterior_rows(lab, has_noisy, *m, &lab.groups[*g], fp) {
                    serde_json::to_writer(&mut out, &row)?;
                    out.write_all(b"\n").with_context(cannot)?;
                }
            }
        }
        out.flush().with_context(cannot)?;
    }
    // The same posteriors re-weighted for each held-out source's own mix of Categories, as
    // `sfxtag classify` does for a batch of files (the source's clips are the batch).
    for &strength in &opts.prior_strengths {
        let settings = sfxtag_core::priors::PriorAdaptation {
            strength,
            ..Default::default()
        };
        let per_strength = report.adapted.entry(format!("{strength}")).or_default();
        for (m, folds_p) in preds.iter().filter(|(m, _)| m.has_logits()) {
            let entry = per_strength.entry(m.name().to_string()).or_default();
            for (g, fp) in folds_p {
                let prior = training_prior(lab, Some(*g), classes, opts.mlp.class_power);
                for (variant, mut p, truth) in fold_variants(&setup, fp) {
                    sfxtag_core::priors::adapt_priors(&mut p, fp.width, &prior, settings);
                    entry
                        .entry(variant.into())
                        .or_default()
                        .insert(lab.groups[*g].clone(), score(&p, fp.width, &truth));
                }
            }
        }
    }
    // The default: the best exportable method on clean mean top-1, ties (see `choose_default`)
    // going to the better one on noisy audio.
    let candidates: Vec<Candidate> = Method::ALL
        .iter()
        .filter(|m| m.exportable())
        .filter_map(|m| {
            let v = report.scores.get(m.name())?;
            Some(Candidate {
                method: *m,
                clean: v
                    .get("clean")?
                    .iter()
                    .map(|(g, x)| (g.clone(), x.top1))
                    .collect(),
                noisy_mean: v
                    .get("noisy")
                    .map(|p| mean_of(p, |x| x.top1))
                    .unwrap_or(0.0),
            })
        })
        .collect();
    let best = choose_default(&candidates).context("no exportable method was evaluated")?;
    report.default_method = best.name().to_string();
    oof.default_method = Some(best);
    let default_preds = &preds[&best];
    // Per-class recall and precision of the default method (pooled over folds).
    {
        let mut tp = vec![0usize; classes];
        let mut support = vec![0usize; classes];
        let mut predicted = vec![0usize; classes];
        for (_, fp) in default_preds {
            for (i, &c) in fp.clips.iter().enumerate() {
                let y = lab.clips[c].category.expect("labelled");
                let row = &fp.clean[i * fp.width..(i + 1) * fp.width];
                let p = (0..fp.width)
                    .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                    .expect("classes");
                support[y] += 1;
                if p < classes {
                    predicted[p] += 1;
                }
                tp[y] += (p == y) as usize;
            }
        }
        let mut flagged = vec![(0usize, 0usize); classes];
        if let Some((l, y, t)) = oof.logits.get(&best) {
            for (row, &yy) in mlp::softmax_rows(l, classes, *t)
                .chunks_exact(classes)
                .zip(y)
            {
                flagged[yy].1 += 1;
                flagged[yy].0 += (row[yy] >= 0.25) as usize;
            }
        }
        for k in 0..classes {
            report.per_class.insert(
                lab.categories[k].clone(),
                (
                    support[k],
                    tp[k] as f64 / support[k].max(1) as f64,
                    tp[k] as f64 / predicted[k].max(1) as f64,
                    flagged[k].0 as f64 / flagged[k].1.max(1) as f64,
                ),
            );
        }
    }
    // Restricted to the held-out group's own Categories.
    for (g, fp) in default_preds {
        let truth: Vec<usize> = fp
            .clips
            .iter()
            .map(|&c| lab.clips[c].category.expect("labelled"))
            .collect();
        let mut own = truth.clone();
        own.sort();
        own.dedup();
        let p: Vec<f32> = fp
            .clean
            .chunks_exact(fp.width)
            .flat_map(|row| {
                (0..fp.width)
                    .map(|k| if own.contains(&k) { row[k] } else { 0.0 })
                    .collect::<Vec<_>>()
            })
            .collect();
        report
            .restricted
            .insert(lab.groups[*g].clone(), score(&p, fp.width, &truth));
    }
    // Per-class thresholds from the default method's out-of-fold window predictions.
    if let Some((l, y, t)) = oof
        .logits
        .get(&best)
        .or_else(|| oof.logits.get(&Method::MlpNoise))
    {
        let p = mlp::softmax_rows(l, classes, *t);
        let decisions: Vec<Decision> = p
            .chunks_exact(classes)
            .zip(y)
            .map(|(row, &truth)| {
                let k = (0..classes)
                    .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                    .expect("classes");
                Decision {
                    class: k,
                    prob: row[k],
                    correct: k == truth,
                }
            })
            .collect();
        report.thresholds = calibrate::thresholds(&decisions, classes, opts.precision);
    }
    // CatID level (and its pooled temperature, for the exported CatID head).
    let (mut cl, mut cy) = (Vec::new(), Vec::new());
    for f in &catid_preds {
        cl.extend_from_slice(&f.logits);
        cy.extend(
            f.owner
                .iter()
                .map(|&o| lab.clips[f.clips[o]].catid.expect("labelled")),
        );
    }
    if !cy.is_empty() {
        let t = calibrate::fit_temperature(&cl, lab.catids.len(), &cy);
        report.catid_temperature = t;
        oof.catid = Some((cl, cy, t));
    }
    for CatIdFold {
        group: g,
        clips,
        logits,
        owner,
    } in &catid_preds
    {
        let nc = lab.catids.len();
        let probs = per_clip(&mlp::softmax_rows(logits, nc, 1.0), nc, owner, clips.len());
        let truth: Vec<usize> = clips
            .iter()
            .map(|&c| lab.clips[c].catid.expect("labelled"))
            .collect();
        let s = score(&probs, nc, &truth);
        report
            .catid
            .insert(lab.groups[*g].clone(), (s.clips, s.top1));
    }
    // Few-shot: enroll k clips per Category of the held-out group.
    for k in [1usize, 3, 5, 10] {
        let (mut n, mut with, mut alone) = (0usize, 0f64, 0f64);
        for (g, fp) in default_preds {
            let _ = g;
            let mut by_cat: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (pos, &c) in fp.clips.iter().enumerate() {
                by_cat
                    .entry(lab.clips[c].category.expect("labelled"))
                    .or_default()
                    .push(pos);
            }
            let mut enrolled = Vec::new();
            let mut enrolled_labels = Vec::new();
            let mut rest = Vec::new();
            for (cat, positions) in &by_cat {
                if positions.len() > k {
                    for (i, &pos) in positions.iter().enumerate() {
                        if i < k {
                            for row in lab.clips[fp.clips[pos]].rows.clone() {
                                enrolled.push(row);
                                enrolled_labels.push(*cat);
                            }
                        } else {
                            rest.push(pos);
                        }
                    }
                } else {
                    rest.extend_from_slice(positions);
                }
            }
            if enrolled.is_empty() || rest.is_empty() {
                continue;
            }
            let user = KnnIndex::new(
                &setup.rows_vec(&enrolled),
                setup.dim,
                &enrolled_labels,
                fp.width,
                opts.knn_k.min(enrolled.len()),
            );
            let rest_clips: Vec<usize> = rest.iter().map(|&p| fp.clips[p]).collect();
            let (rows, owner) = test_rows(&setup, &rest_clips, false);
            let pu = per_clip(
                &user.vote(&setup.rows_vec(&rows)),
                fp.width,
                &owner,
                rest.len(),
            );
            for (i, &pos) in rest.iter().enumerate() {
                let truth = lab.clips[fp.clips[pos]].category.expect("labelled");
                let pd = &fp.clean[pos * fp.width..(pos + 1) * fp.width];
                let pu = &pu[i * fp.width..(i + 1) * fp.width];
                let argmax = |v: &mut dyn Iterator<Item = f32>| {
                    v.enumerate()
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|x| x.0)
                        .unwrap_or(0)
                };
                let w = opts.user_weight;
                let comb = argmax(&mut pd.iter().zip(pu).map(|(d, u)| (1.0 - w) * d + w * u));
                with += (comb == truth) as usize as f64;
                alone += (argmax(&mut pd.iter().copied()) == truth) as usize as f64;
                n += 1;
            }
        }
        if n > 0 {
            report
                .fewshot
                .insert(k, (n, with / n as f64, alone / n as f64));
        }
    }
    fixture_scores(opts, &setup, &mut report)?;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok((report, setup, oof))
}

/// Scores every evaluated method, trained on the whole corpus, on the fixtures.
fn fixture_scores(opts: &EvalOptions, setup: &Setup, report: &mut EvalReport) -> Result<()> {
    let lab = &setup.lab;
    let classes = lab.categories.len();
    let Some(dir) = &opts.fixtures else {
        return Ok(());
    };
    if !setup.exportable_features() {
        bail!(
            "--fixtures: the embeddings are {} wide, the model's encoder gives {}",
            setup.clean.dim,
            setup.emb_dim
        );
    }
    {
        let fx = Fixtures::load(dir, &opts.model, setup)?;
        let all: Vec<usize> = (0..lab.clips.len()).collect();
        let cfg = MlpConfig {
            seed: opts.mlp.seed + WHOLE_CORPUS_SEED,
            ..opts.mlp.clone()
        };
        let owner: Vec<usize> = fx
            .rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| std::iter::repeat_n(i, r.len()))
            .collect();
        let mut per_method: BTreeMap<Method, Vec<f32>> = BTreeMap::new();
        let x_rows = Vec::<f32>::try_from(fx.x.flatten(0, -1)).expect("f32");
        let emb_rows = Vec::<f32>::try_from(
            fx.x.narrow(1, 0, setup.emb_dim as i64)
                .contiguous()
                .flatten(0, -1),
        )
        .expect("f32");
        for m in opts.methods.clone() {
            let (probs, width) = match m {
                Method::ShippedKnn => match shipped_knn(setup, usize::MAX) {
                    Some(idx) => (idx.vote(&emb_rows), idx.classes),
                    None => continue,
                },
                Method::CorpusKnn => {
                    let idx = corpus_knn(setup, &all, opts);
                    (idx.vote(&x_rows), idx.classes)
                }
                Method::Mlp | Method::MlpNoise | Method::MlpNoiseAisfx => {
                    let aux = m.recipe().aux;
                    let model = fold_mlp(
                        setup,
                        &all,
                        classes,
                        |c| lab.clips[c].category,
                        usize::MAX,
                        m.recipe(),
                        &cfg,
                    )?;
                    let t = report.calibration.get(m.name()).map_or(1.0, |x| x.2);
                    let l = model.logits_t(if aux { &fx.x_aux } else { &fx.x });
                    (mlp::softmax_rows(&l, classes, t), classes)
                }
                Method::Ensemble => continue,
            };
            per_method.insert(m, per_clip(&probs, width, &owner, fx.files.len()));
        }
        if let (Some(d), Some(b)) = (
            per_method.get(&Method::MlpNoise),
            per_method.get(&Method::CorpusKnn),
        ) {
            let e = d.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect();
            per_method.insert(Method::Ensemble, e);
        }
        for (m, p) in &per_method {
            let width = p.len() / fx.files.len().max(1);
            let mut right = 0;
            let mut lines = Vec::new();
            for (i, file) in fx.files.iter().enumerate() {
                let row = &p[i * width..(i + 1) * width];
                let k = (0..width)
                    .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                    .expect("classes");
                let got = lab.categories.get(k).map_or("(other)", String::as_str);
                right += (fx.truth[i] == Some(k)) as usize;
                lines.push(format!(
                    "{file}: {} → {got} {:.2}",
                    fx.truth_names[i], row[k]
                ));
            }
            report
                .fixtures
                .insert(m.name().to_string(), (right, fx.files.len(), lines));
        }
    }
    Ok(())
}

/// The CatID head's predictions on one fold.
struct CatIdFold {
    group: usize,
    clips: Vec<usize>,
    logits: Vec<f32>,
    owner: Vec<usize>,
}

/// Out-of-fold window logits of the logit methods (for the final model's calibration).
#[derive(Default)]
pub struct OutOfFold {
    /// method → (window logits, window labels, pooled temperature)
    pub logits: BTreeMap<Method, (Vec<f32>, Vec<usize>, f32)>,
    /// The CatID head's (window logits, labels, pooled temperature).
    pub catid: Option<(Vec<f32>, Vec<usize>, f32)>,
    pub default_method: Option<Method>,
}

/// Mean over folds of one score.
pub fn mean_of(s: &BTreeMap<String, Scores>, f: impl Fn(&Scores) -> f64) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    s.values().map(f).sum::<f64>() / s.len() as f64
}

/// One exportable method's LOSO result, as the choice of the default sees it.
pub struct Candidate {
    pub method: Method,
    /// Clean top-1 per fold (source group).
    pub clean: BTreeMap<String, f64>,
    /// Mean top-1 on the noisy variant.
    pub noisy_mean: f64,
}

/// The default method: the best clean mean top-1 over the folds, except that methods within one
/// standard error of it (of the paired per-fold differences) are a statistical tie, and a tie
/// goes to the best noisy mean top-1 — a microphone in the field rarely hears clean audio.
pub fn choose_default(c: &[Candidate]) -> Option<Method> {
    let mean = |m: &BTreeMap<String, f64>| m.values().sum::<f64>() / m.len().max(1) as f64;
    let best = c
        .iter()
        .max_by(|a, b| mean(&a.clean).total_cmp(&mean(&b.clean)))?;
    let tied = |x: &Candidate| {
        let d: Vec<f64> = best
            .clean
            .iter()
            .filter_map(|(g, b)| x.clean.get(g).map(|v| b - v))
            .collect();
        match super::compare::paired_mean_se(&d) {
            Some((mu, se)) => mu <= se,
            None => std::ptr::eq(x, best),
        }
    };
    c.iter()
        .filter(|x| tied(x))
        .max_by(|a, b| a.noisy_mean.total_cmp(&b.noisy_mean))
        .map(|x| x.method)
}

impl EvalReport {
    /// Mean clean top-1 of a method.
    pub fn mean_top1(&self, method: Method, variant: &str) -> Option<f64> {
        Some(mean_of(
            self.scores.get(method.name())?.get(variant)?,
            |s| s.top1,
        ))
    }

    /// The report as Markdown: the summary table, per-source tables, calibration, CatID,
    /// restricted and few-shot results.
    pub fn markdown(&self, command: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Command: `{command}` ({:.0} s). {} head classes (UCS Categories), {} folds (source groups with ≥ their minimum of labelled clips); always in training: {}.\n",
            self.seconds,
            self.categories.len(),
            self.folds.len(),
            if self.train_only.is_empty() { "none".to_string() } else { self.train_only.join(", ") }
        );
        let _ = writeln!(
            s,
            "{}\n",
            if !super::embed::keeps_every_window(self.silence_floor_dbfs) {
                format!(
                    "Windows below {} dBFS (the daemon's silence gate) left out of training and testing: {} clean windows; {} clips are below it throughout and keep every window.",
                    self.silence_floor_dbfs, self.silence.0, self.silence.1
                )
            } else {
                "Every window trained and tested (no silence floor).".to_string()
            }
        );
        let _ = writeln!(s, "### Mean over folds (file level)\n");
        let _ = writeln!(s, "| method | variant | top-1 | top-3 | macro-F1 | sel. acc. @50 % | sel. acc. @80 % | clips |");
        let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (m, vars) in &self.scores {
            for (v, per) in vars {
                let n: usize = per.values().map(|x| x.clips).sum();
                let _ = writeln!(
                    s,
                    "| {m} | {v} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {n} |",
                    mean_of(per, |x| x.top1),
                    mean_of(per, |x| x.top3),
                    mean_of(per, |x| x.macro_f1),
                    mean_of(per, |x| x.sel50),
                    mean_of(per, |x| x.sel80),
                );
            }
        }
        if let (Some(a), Some(d)) = (
            self.scores
                .get(Method::ShippedKnn.name())
                .and_then(|v| v.get("clean"))
                .map(|p| mean_of(p, |x| x.top1)),
            self.scores
                .get(&self.default_method)
                .and_then(|v| v.get("clean"))
                .map(|p| mean_of(p, |x| x.top1)),
        ) {
            let _ = writeln!(
                s,
                "\nDefault: **{}** (the best clean mean top-1, or within one paired standard error of it and the best on noisy audio), clean mean top-1 {:.3}, {:+.3} over (a) ({:.3}).\n",
                self.default_method,
                d,
                d - a,
                a
            );
        } else {
            // Without baseline (a) there is no default line; the table still needs its blank line.
            s.push('\n');
        }
        if !self.adapted.is_empty() {
            let _ = writeln!(
                s,
                "### Each source as one batch: priors adapted (mean over folds)\n"
            );
            let _ = writeln!(s, "The file-level posteriors of each held-out source re-weighted for the source's own mix of Categories, estimated from them without labels (`sfxtag_core::priors`; strength: the training prior's pseudo-count in clips).\n");
            let _ = writeln!(s, "| method | variant | strength | top-1 | top-1 per clip alone | top-3 | macro-F1 | sel. acc. @50 % |");
            let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            let mut strengths: Vec<(&String, _)> = self.adapted.iter().collect();
            strengths.sort_by(|a, b| {
                let v = |s: &str| s.parse::<f64>().unwrap_or(f64::INFINITY);
                v(a.0).total_cmp(&v(b.0))
            });
            for (strength, methods) in strengths {
                for (m, vars) in methods {
                    for (v, per) in vars {
                        let alone = self
                            .scores
                            .get(m)
                            .and_then(|x| x.get(v))
                            .map(|p| mean_of(p, |x| x.top1))
                            .unwrap_or(f64::NAN);
                        let _ = writeln!(
                            s,
                            "| {m} | {v} | {strength} | {:.3} | {alone:.3} | {:.3} | {:.3} | {:.3} |",
                            mean_of(per, |x| x.top1),
                            mean_of(per, |x| x.top3),
                            mean_of(per, |x| x.macro_f1),
                            mean_of(per, |x| x.sel50),
                        );
                    }
                }
            }
            s.push('\n');
        }
        let _ = writeln!(s, "### Top-1 per source (clean / noisy)\n");
        let methods: Vec<&String> = self.scores.keys().collect();
        let _ = write!(s, "| source | clips | out of vocabulary |");
        for m in &methods {
            let _ = write!(s, " {m} |");
        }
        let _ = write!(s, "\n| --- | ---: | ---: |");
        for _ in &methods {
            let _ = write!(s, " ---: |");
        }
        let _ = writeln!(s);
        for g in &self.folds {
            let clips = self
                .scores
                .values()
                .next()
                .and_then(|v| v.get("clean"))
                .and_then(|p| p.get(g))
                .map(|x| x.clips)
                .unwrap_or(0);
            let _ = write!(
                s,
                "| {g} | {clips} | {} |",
                self.out_of_vocabulary.get(g).copied().unwrap_or(0)
            );
            for m in &methods {
                let get = |v: &str| {
                    self.scores[*m]
                        .get(v)
                        .and_then(|p| p.get(g))
                        .map(|x| format!("{:.2}", x.top1))
                        .unwrap_or_else(|| "–".into())
                };
                let _ = write!(s, " {} / {} |", get("clean"), get("noisy"));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "\n### Calibration (window level, out of fold)\n");
        let _ = writeln!(
            s,
            "| method | NLL at T = 1 | NLL, cross-fitted T | pooled T |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
        for (m, (a, b, t)) in &self.calibration {
            let _ = writeln!(s, "| {m} | {a:.3} | {b:.3} | {t:.2} |");
        }
        if !self.catid.is_empty() {
            let n: usize = self.catid.values().map(|x| x.0).sum();
            let mean = self.catid.values().map(|x| x.1).sum::<f64>() / self.catid.len() as f64;
            let _ = writeln!(
                s,
                "\n### CatID head ({} CatIDs with ≥ 15 clips; the (d) recipe)\n\nMean top-1 CatID accuracy over {} sources: {mean:.3} ({n} clips whose CatID is a class).",
                self.catids.len(),
                self.catid.len()
            );
        }
        if !self.restricted.is_empty() {
            let _ = writeln!(
                s,
                "\n### Restricted to the held-out source's own Categories (`[labels] categories`)\n\nDefault method, clean: mean top-1 {:.3} (unrestricted {:.3}).",
                mean_of(&self.restricted, |x| x.top1),
                self.scores
                    .get(&self.default_method)
                    .and_then(|v| v.get("clean"))
                    .map(|p| mean_of(p, |x| x.top1))
                    .unwrap_or(0.0)
            );
        }
        if !self.fixtures.is_empty() {
            let _ = writeln!(s, "\n### The fixtures (13 CC0 recordings outside the corpus; trained on every source)\n");
            let _ = writeln!(s, "| method | right Categories |");
            let _ = writeln!(s, "| --- | ---: |");
            for (m, (r, n, _)) in &self.fixtures {
                let _ = writeln!(s, "| {m} | {r}/{n} |");
            }
        }
        if !self.per_class.is_empty() {
            let _ = writeln!(
                s,
                "\n### Per Category (default method, clean, pooled over folds)\n"
            );
            let _ = writeln!(
                s,
                "| Category | test clips | recall | precision | windows with p ≥ 0.25 |"
            );
            let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
            for (c, (n, r, p, f)) in &self.per_class {
                let _ = writeln!(s, "| {c} | {n} | {r:.3} | {p:.3} | {f:.3} |");
            }
        }
        if !self.fewshot.is_empty() {
            let _ = writeln!(
                s,
                "\n### Few-shot: k clips per Category of the held-out source enrolled\n"
            );
            let _ = writeln!(
                s,
                "| k | test clips | top-1 with enrolment | top-1 of the model alone (same clips) |"
            );
            let _ = writeln!(s, "| ---: | ---: | ---: | ---: |");
            for (k, (n, w, a)) in &self.fewshot {
                let _ = writeln!(s, "| {k} | {n} | {w:.3} | {a:.3} |");
            }
        }
        s
    }
}

/// Where `heads` writes its outputs.
pub fn report_paths(out: &Path) -> (PathBuf, PathBuf) {
    (out.join("loso.json"), out.join("loso.md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(method: Method, clean: &[f64], noisy_mean: f64) -> Candidate {
        Candidate {
            method,
            clean: clean
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("g{i}"), *v))
                .collect(),
            noisy_mean,
        }
    }

    #[test]
    fn block3_features_follow_the_embedding_and_are_not_taken_for_logits() {
        let store = Store {
            dim: 2,
            aux: vec![("logits_a".into(), 2), (BLOCK3_AUX.into(), 3)],
            clips: Vec::new(),
            groups: Vec::new(),
            emb: vec![1.0, 2.0, 3.0, 4.0],
            aux_rows: vec![0.0, 0.0, 5.0, 6.0, 7.0, 1.0, 1.0, 7.0, 8.0, 9.0],
        };
        let b3 = store.block3_range();
        assert_eq!(b3, Some(2..5));
        let rows = feature_rows(&store, b3.as_ref());
        assert_eq!(rows, [1.0, 2.0, 5.0, 6.0, 7.0, 3.0, 4.0, 7.0, 8.0, 9.0]);
        assert_eq!(feature_rows(&store, None), [1.0, 2.0, 3.0, 4.0]);
        let (mean, std) = column_stats(&rows, 5);
        assert_eq!(mean, [2.0, 3.0, 6.0, 7.0, 8.0]);
        assert!(std.iter().all(|s| (s - 1.0).abs() < 1e-6), "{std:?}");
        let mut z = rows.clone();
        zscore_in_place(&mut z, &mean, &std);
        assert_eq!(z, [-1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        // (e)'s inputs: the features, then the logits' softmax (× √2); block 3 is no head.
        let mut out = Vec::new();
        append_aux(&mut out, &z[..5], store.aux_row(0), &store.aux);
        assert_eq!(out.len(), 7);
        assert!(out[5..]
            .iter()
            .all(|v| (v - 0.5 * 2f32.sqrt()).abs() < 1e-6));
    }

    #[test]
    fn the_default_is_the_best_clean_unless_tied_then_the_best_noisy() {
        // (d) trails (c) by 0.01 on average with per-fold differences of ±0.1: a tie, and (d) is
        // better on noisy audio.
        let c = candidate(Method::Mlp, &[0.50, 0.40, 0.60, 0.30], 0.30);
        let d = candidate(Method::MlpNoise, &[0.39, 0.51, 0.49, 0.37], 0.35);
        assert_eq!(choose_default(&[c, d]), Some(Method::MlpNoise));
        // The same lead, fold by fold (no spread): not a tie, clean wins.
        let c = candidate(Method::Mlp, &[0.50, 0.40, 0.60, 0.30], 0.30);
        let d = candidate(Method::MlpNoise, &[0.49, 0.39, 0.59, 0.29], 0.35);
        assert_eq!(choose_default(&[c, d]), Some(Method::Mlp));
        assert_eq!(choose_default(&[]), None);
    }

    #[test]
    fn scores_count_top1_top3_f1_and_selective_accuracy() {
        // 4 clips, 3 classes: right, right (low confidence), wrong but 2nd, wrong.
        let probs = [
            0.9, 0.05, 0.05, //
            0.4, 0.3, 0.3, //
            0.2, 0.7, 0.1, //
            0.1, 0.1, 0.8, //
        ];
        let s = score(&probs, 3, &[0, 0, 0, 1]);
        assert_eq!(s.clips, 4);
        assert!((s.top1 - 0.5).abs() < 1e-9);
        assert!((s.top3 - 1.0).abs() < 1e-9);
        // class 0: tp 2, fn 1, fp 0 → 0.8; class 1: tp 0 → 0 → macro 0.4
        assert!((s.macro_f1 - 0.4).abs() < 1e-9);
        // most confident half: 0.9 (right), 0.8 (wrong) → 0.5
        assert!((s.sel50 - 0.5).abs() < 1e-9);
        // An "other" column (width 4) that wins is wrong.
        let s = score(&[0.1, 0.1, 0.1, 0.7], 4, &[0]);
        assert_eq!(s.top1, 0.0);
    }

    #[test]
    fn folds_never_leak_the_held_out_source() {
        use super::super::data::LabelledClip;
        let clip = |group: usize, category: Option<usize>| LabelledClip {
            group,
            dataset: format!("d{group}"),
            rel_path: String::new(),
            category,
            catid: None,
            category_name: None,
            rows: 0..1,
        };
        let lab = Labelled {
            clips: vec![
                clip(0, Some(0)),
                clip(1, Some(1)),
                clip(1, None),
                clip(2, Some(0)),
                clip(1, Some(0)),
            ],
            categories: vec!["A".into(), "B".into()],
            catids: vec![],
            groups: vec!["x".into(), "y".into(), "z".into()],
        };
        for g in 0..3 {
            let (train, test) = split(&lab, g);
            assert!(train.iter().all(|&c| lab.clips[c].group != g));
            assert!(test.iter().all(|&c| lab.clips[c].group == g));
            assert!(test.iter().all(|&c| lab.clips[c].category.is_some()));
            assert_eq!(train.len() + test.len() + (g == 1) as usize, 5);
        }
        // The training prior counts only the folds' training clips, to the sampler's power.
        let p = training_prior(&lab, Some(1), 3, 1.0);
        assert_eq!(p, vec![1.0, 0.0, 0.0]);
        let p = training_prior(&lab, None, 2, 1.0);
        assert!(
            (p[0] - 0.75).abs() < 1e-6 && (p[1] - 0.25).abs() < 1e-6,
            "{p:?}"
        );
        let p = training_prior(&lab, None, 2, 0.0);
        assert_eq!(p, vec![0.5, 0.5]);
    }

    #[test]
    fn posterior_rows_name_each_test_clip_with_its_own_probabilities() {
        use super::super::data::LabelledClip;
        let clip = |rel: &str, category: usize, name: &str| LabelledClip {
            group: 0,
            dataset: "d".into(),
            rel_path: rel.into(),
            category: Some(category),
            catid: None,
            category_name: Some(name.into()),
            rows: 0..1,
        };
        let lab = Labelled {
            clips: vec![
                clip("a.wav", 0, "A"),
                clip("b.wav", 1, "B"),
                clip("c.wav", 1, "B"),
            ],
            categories: vec!["A".into(), "B".into()],
            catids: vec![],
            groups: vec!["g".into()],
        };
        // Test clips 2 and 0, rows one column wider than the classes (an "other" column).
        let fp = FoldPreds {
            clips: vec![2, 0],
            width: 3,
            clean: vec![0.1, 0.8, 0.1, 0.7, 0.2, 0.1],
            noisy: vec![0.3, 0.6, 0.1, 0.5, 0.4, 0.1],
            logits: None,
        };
        let rows = posterior_rows(&lab, |c| c == 0, Method::MlpNoise, "g", &fp);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].rel_path.as_str(), rows[0].category.as_str()),
            ("c.wav", "B")
        );
        assert_eq!(rows[0].clean, vec![0.1, 0.8]);
        assert_eq!(rows[0].noisy, None, "clip 2 has no noisy version");
        assert_eq!(
            (rows[1].rel_path.as_str(), rows[1].category.as_str()),
            ("a.wav", "A")
        );
        assert_eq!(rows[1].clean, vec![0.7, 0.2]);
        assert_eq!(rows[1].noisy, Some(vec![0.5, 0.4]));
        assert_eq!(
            (rows[1].method.as_str(), rows[1].fold.as_str()),
            ("mlp-noise", "g")
        );
    }

    #[test]
    fn per_clip_means_windows() {
        let rows = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5];
        assert_eq!(per_clip(&rows, 2, &[0, 0, 1], 2), vec![0.5, 0.5, 0.5, 0.5]);
    }
}

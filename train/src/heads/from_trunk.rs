//! Embedding stores computed from the cached trunk: a block 4 (the released one, or one that
//! `finetune` trained) run over the trunk's windows, written in the layout of [`super::embed`]
//! so that `heads` evaluates any block 4 by leave-one-source-out without running blocks 1–3 again.
//!
//! This is how every fine-tuned configuration is compared with the frozen encoder at a fraction
//! of the cost of `embed` (block 4 alone is about a quarter of the encoder's forward pass, and the
//! noisy audio is decoded and mixed once, by `trunk --noisy`, for all of them). The windows are
//! the trunk's (≤ 4 per clip, plus the offset pass), so a comparison must take both encoders'
//! stores from here; the store has no aux logits (the released aiSFX heads are not run).
//!
//! Blocks 1–3 of `weights` must be the ones the trunk was built with (`finetune` trains block 4
//! alone and writes blocks 1–3 unchanged); [`embed`] checks it against the trunk's record.

use super::embed::{store_dir, ClipEntry, StoreIndex, Variant, STORE_VERSION};
use crate::model::{self, Cnn9, EMBEDDING_DIM, TRUNK_SHAPE};
use crate::trunk::{self, TrunkDataset};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// Trunk windows through block 4 at once.
const BATCH: usize = 64;

/// What a store row holds: the encoder's embedding alone, or with more pooled features
/// appended (for measuring whether the heads gain from them; only `max` exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Pool {
    /// The embedding: block 4 averaged over frequency, maximum over time (512).
    #[default]
    Max,
    /// The embedding, then block 4's time average (1024).
    MaxMean,
    /// `max-mean`, then block 3's output averaged over frequency, maximum and mean over time
    /// (1536).
    MaxMeanBlock3,
}

impl Pool {
    /// Row width.
    pub fn dim(self) -> usize {
        let e = EMBEDDING_DIM as usize;
        match self {
            Pool::Max => e,
            Pool::MaxMean => 2 * e,
            Pool::MaxMeanBlock3 => 2 * e + 2 * TRUNK_SHAPE[0] as usize,
        }
    }
    /// What the store's input key adds (nothing for the plain embedding: its stores stay valid).
    fn key(self) -> String {
        use clap::ValueEnum;
        match self {
            Pool::Max => String::new(),
            _ => format!(
                "|{}",
                self.to_possible_value()
                    .expect("every pool is named")
                    .get_name()
            ),
        }
    }
}

/// What `embed --from-trunk` does.
#[derive(Debug, Clone)]
pub struct FromTrunkOptions {
    pub cache: PathBuf,
    /// Encoder weights whose block 4 runs (aiSFX `.pth` or export-scheme safetensors).
    pub weights: PathBuf,
    pub variant: Variant,
    /// Where the stores go (default `<cache>/embeddings`, as `embed`).
    pub store: Option<PathBuf>,
    pub pool: Pool,
    pub progress: bool,
}

/// What [`embed`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FromTrunkSummary {
    pub datasets_built: usize,
    pub datasets_reused: usize,
    pub windows: usize,
}

/// Block 4 of an encoder, in inference mode.
pub struct Block4 {
    _vs: nn::VarStore,
    model: Cnn9,
}

impl Block4 {
    pub fn new(w: &sfxtag_export::weights::Cnn9Weights) -> Result<Self> {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Cnn9::from_block(&vs.root(), &[], false, 4);
        let n = model::init_encoder(&vs, w)?;
        if n != vs.variables().len() {
            bail!(
                "the weights filled {n} of block 4's {} tensors",
                vs.variables().len()
            );
        }
        Ok(Self { _vs: vs, model })
    }

    /// Raw 512-d embeddings of trunk rows (f16 bytes, [`trunk::ROW_BYTES`] each): rows × 512.
    pub fn embed_rows(&self, rows: &[u8]) -> Vec<f32> {
        self.pooled_rows(rows, Pool::Max)
    }

    /// Rows of `pool.dim()` features of trunk rows (the embedding first).
    pub fn pooled_rows(&self, rows: &[u8], pool: Pool) -> Vec<f32> {
        let n = (rows.len() / trunk::ROW_BYTES) as i64;
        let x = Tensor::from_data_size(
            rows,
            &[n, TRUNK_SHAPE[0], TRUNK_SHAPE[1], TRUNK_SHAPE[2]],
            Kind::Half,
        )
        .to_kind(Kind::Float);
        let e = tch::no_grad(|| {
            if pool == Pool::Max {
                return self.model.embed(&x, 0, false);
            }
            // [B, C, T, F] → mean over frequency → [B, C, T]; the embedding is its max over T.
            let h = self
                .model
                .features(&x, 0, false)
                .mean_dim(3, false, Kind::Float);
            let mut parts = vec![h.amax(2, false), h.mean_dim(2, false, Kind::Float)];
            if pool == Pool::MaxMeanBlock3 {
                let b3 = x.mean_dim(3, false, Kind::Float);
                parts.push(b3.amax(2, false));
                parts.push(b3.mean_dim(2, false, Kind::Float));
            }
            Tensor::cat(&parts, 1)
        });
        Vec::<f32>::try_from(e.contiguous().view([-1])).expect("a float tensor")
    }
}

/// Runs `weights`' block 4 over every dataset of a variant of the trunk cache and writes the
/// embedding store; a re-run reuses every dataset whose trunk and weights are unchanged.
pub fn embed(opts: &FromTrunkOptions) -> Result<FromTrunkSummary> {
    let bytes = fs::read(&opts.weights)
        .with_context(|| format!("cannot read {}", opts.weights.display()))?;
    let sha = sfxtag_core::manifest::sha256_hex(&bytes);
    let w = trunk::load_weights(&opts.weights)?;
    let datasets = trunk::open_variant(&opts.cache, &opts.variant)?;
    check_trunk_weights(&opts.cache, &datasets, &w)?;
    let block4 = Block4::new(&w)?;
    let dir = store_dir(&opts.cache, opts.store.as_deref(), &opts.variant);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let total: usize = datasets.iter().map(|d| d.rows.len()).sum();
    let pb = if opts.progress {
        let pb = ProgressBar::new(total as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "block 4 {msg:24} [{bar:30}] {pos}/{len} windows {elapsed_precise} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let mut summary = FromTrunkSummary::default();
    for d in &datasets {
        let name = &d.index.dataset;
        let key = sfxtag_core::manifest::sha256_hex(
            format!("{}|{sha}|from-trunk{}", d.index.input_key, opts.pool.key()).as_bytes(),
        );
        let json = dir.join(format!("{name}.json"));
        let f32_path = dir.join(format!("{name}.f32"));
        let reusable = fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice::<StoreIndex>(&b).ok())
            .is_some_and(|old| {
                old.version == STORE_VERSION && old.input_key == key && f32_path.exists()
            });
        if reusable {
            summary.datasets_reused += 1;
            pb.inc(d.rows.len() as u64);
            continue;
        }
        pb.set_message(name.clone());
        let tmp = dir.join(format!("{name}.f32.tmp"));
        let mut out = std::io::BufWriter::new(
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
        );
        let n = d.rows.len();
        let mut start = 0;
        while start < n {
            let end = (start + BATCH).min(n);
            let mut rows = Vec::with_capacity((end - start) * trunk::ROW_BYTES);
            for r in start..end {
                rows.extend_from_slice(d.rows.row_bytes(r));
            }
            for v in block4.pooled_rows(&rows, opts.pool) {
                out.write_all(&v.to_le_bytes())?;
            }
            pb.inc((end - start) as u64);
            start = end;
        }
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &f32_path)?;
        let idx = StoreIndex {
            version: STORE_VERSION,
            dataset: name.clone(),
            variant: opts.variant.name(),
            encoder_sha256: sha.clone(),
            dim: opts.pool.dim(),
            aux: Vec::new(),
            max_windows: d.index.max_windows,
            input_key: key,
            clips: d
                .index
                .clips
                .iter()
                .map(|c| ClipEntry {
                    dataset: name.clone(),
                    rel_path: c.rel_path.clone(),
                    native_label: c.native_label.clone(),
                    ucs_catid: c.ucs_catid.clone(),
                    first: c.first,
                    windows: c.windows,
                    noise_group: c.noise_group.clone(),
                    // The trunk's windows record no level: such stores keep every window.
                    levels_dbfs: Vec::new(),
                })
                .collect(),
            skipped: d.index.skipped.clone(),
        };
        fs::write(&json, serde_json::to_vec_pretty(&idx)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        summary.datasets_built += 1;
        summary.windows += n;
    }
    pb.finish_and_clear();
    Ok(summary)
}

/// Refuses weights whose blocks 1–3 differ from those the trunk was built with: their block 4
/// would run on features it was not trained on.
fn check_trunk_weights(
    cache: &Path,
    datasets: &[TrunkDataset],
    w: &sfxtag_export::weights::Cnn9Weights,
) -> Result<()> {
    let want = trunk::trunk_tensors_sha256(w);
    for d in datasets {
        match &d.index.trunk_tensors_sha256 {
            Some(have) if *have != want => bail!(
                "blocks 1–3 of these weights are not the ones the trunk cache in {} was built with \
                 (a block 4 from `finetune` on this cache, or the weights given to `trunk`, fit it)",
                trunk::trunk_dir(cache).display()
            ),
            Some(_) => {}
            None => bail!(
                "{}: the trunk cache does not record its blocks 1–3 (an older cache: run `sfxtag-train trunk` again)",
                d.index.dataset
            ),
        }
    }
    Ok(())
}

//! The cached trunk: the frozen encoder's blocks 1–3 run once over corpus windows, their output
//! (256 × 12 × 12 per window) stored as f16 and memory-mapped, so that block 4 and the heads
//! train on CPU at a quarter of the encoder's forward cost and none of the trunk's backward.
//!
//! Windows are the daemon's (100 frames, 50 % overlap), at most `max_windows` per clip, evenly
//! spaced; with `offset_pass` a second set starts 25 frames later (more variety for the same
//! clips). The noisy variant runs the same windows of each clip mixed with an ambience of another
//! source group (as `embed --noisy` mixes them), so a block 4 can be scored on noisy audio
//! without running the whole encoder again; it lives in a sub-folder named after the variant.
//! Per dataset, under `<cache>/trunk/` (or `<cache>/trunk/<variant>/`): `<dataset>.f16` (rows of [`ROW_BYTES`], f16
//! little-endian, C × T × F order) and `<dataset>.json` ([`TrunkIndex`]). A re-run reuses every
//! dataset whose prepared clips, duplicate list, encoder and settings are unchanged, so an
//! interrupted build resumes where it stopped.

use crate::corpus::{self, CorpusIndex};
use crate::heads::embed::{self, pick_windows, Variant};
use crate::model::{self, Cnn9, TRUNK_SHAPE};
use crate::prepare::{self, Split};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sfxtag_core::frontend::{model_windows, MelFrame, ModelWindow, N_MELS, WINDOW_FRAMES};
use sfxtag_export::weights::Cnn9Weights;
use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// Bump when the layout or the window choice changes.
pub const TRUNK_VERSION: u32 = 1;
/// Bytes of one cached window (f16).
pub const ROW_BYTES: usize = (TRUNK_SHAPE[0] * TRUNK_SHAPE[1] * TRUNK_SHAPE[2]) as usize * 2;
/// Default cap of windows per clip: fewer, better-spread windows keep the CPU budget.
pub const DEFAULT_MAX_WINDOWS: usize = 4;
/// Start of the offset pass's windows, in frames (half a hop).
pub const OFFSET_FRAMES: usize = 25;
/// Windows run through the trunk at once.
const BATCH: usize = 32;

/// Loads encoder weights: a released aiSFX `.pth` checkpoint, or a safetensors file in the
/// export scheme (what `finetune` writes).
pub fn load_weights(path: &Path) -> Result<Cnn9Weights> {
    let w = if path.extension().is_some_and(|e| e == "safetensors") {
        Cnn9Weights::from_safetensors(path)
    } else {
        sfxtag_export::aisfx::load_checkpoint(path)
    };
    w.with_context(|| format!("cannot read encoder weights from {}", path.display()))
}

/// The rows of one dataset's trunk file (memory-mapped, or in memory).
pub struct TrunkRows {
    bytes: Bytes,
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::fmt::Debug for TrunkRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrunkRows({} rows)", self.len())
    }
}

impl TrunkRows {
    /// Maps `path`; its size must be a whole number of rows.
    pub fn open(path: &Path) -> Result<Self> {
        let f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: the file is written once (renamed into place) and never modified afterwards.
        let map = unsafe { memmap2::Mmap::map(&f) }
            .with_context(|| format!("cannot map {}", path.display()))?;
        if map.len() % ROW_BYTES != 0 {
            bail!(
                "{}: {} bytes is not a whole number of {ROW_BYTES}-byte rows (a partial write?)",
                path.display(),
                map.len()
            );
        }
        Ok(Self {
            bytes: Bytes::Mapped(map),
        })
    }

    /// Rows held in memory (tests, tiny runs).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        assert_eq!(bytes.len() % ROW_BYTES, 0, "whole rows only");
        Self {
            bytes: Bytes::Owned(bytes),
        }
    }

    fn all(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        self.all().len() / ROW_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` (f16 little-endian).
    pub fn row_bytes(&self, i: usize) -> &[u8] {
        &self.all()[i * ROW_BYTES..(i + 1) * ROW_BYTES]
    }
}

/// One clip's rows in a dataset's trunk file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrunkClip {
    pub rel_path: String,
    pub native_label: String,
    pub ucs_catid: Option<String>,
    pub split: Split,
    pub first: usize,
    pub windows: usize,
    /// The source group of the ambience mixed in (noisy variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_group: Option<String>,
}

/// `<dataset>.json` of the trunk cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrunkIndex {
    pub version: u32,
    pub dataset: String,
    /// The source group (LOSO folds and encoder splits are by group).
    pub group: String,
    /// sha256 of the weights file blocks 1–3 come from.
    pub encoder_sha256: String,
    /// [`trunk_tensors_sha256`] of those weights: what a block 4 run on this cache must share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk_tensors_sha256: Option<String>,
    pub input_key: String,
    pub max_windows: usize,
    pub offset_pass: bool,
    pub clips: Vec<TrunkClip>,
    /// `clean`, or the noisy variant's name (`noisy-snr10-seed1`).
    #[serde(default = "clean_variant")]
    pub variant: String,
    /// Clips that gave no window (unreadable audio in the noisy pass), with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<(String, String)>,
}

fn clean_variant() -> String {
    Variant::Clean.name()
}

/// What `trunk` does.
#[derive(Debug, Clone)]
pub struct TrunkOptions {
    pub cache: PathBuf,
    /// Encoder weights (aiSFX `.pth` or export-scheme safetensors).
    pub weights: PathBuf,
    pub max_windows: usize,
    pub offset_pass: bool,
    /// Clean audio (the mel cache), or every clip mixed with an ambience first.
    pub variant: Variant,
    pub threads: usize,
    pub progress: bool,
}

/// Folder of the (clean) trunk cache.
pub fn trunk_dir(cache: &Path) -> PathBuf {
    cache.join("trunk")
}

/// Folder of a variant of the trunk cache: the clean one, or a sub-folder per noisy variant.
pub fn variant_dir(cache: &Path, variant: &Variant) -> PathBuf {
    match variant {
        Variant::Clean => trunk_dir(cache),
        Variant::Noisy { .. } => trunk_dir(cache).join(variant.name()),
    }
}

/// The trunk (blocks 1–3, inference mode) with `w`'s weights.
pub struct Trunk {
    _vs: nn::VarStore,
    model: Cnn9,
}

impl Trunk {
    pub fn new(w: &Cnn9Weights) -> Result<Self> {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Cnn9::trunk(&vs.root());
        let n = model::init_encoder(&vs, w)?;
        if n != vs.variables().len() {
            bail!(
                "the weights filled {n} of the trunk's {} tensors",
                vs.variables().len()
            );
        }
        Ok(Self { _vs: vs, model })
    }

    /// Trunk outputs of `windows`, f32 `[N, 256, 12, 12]`.
    pub fn run(&self, windows: &[&ModelWindow]) -> Tensor {
        let _guard = tch::no_grad_guard();
        let mut flat = Vec::with_capacity(windows.len() * WINDOW_FRAMES * N_MELS);
        for w in windows {
            for frame in w.iter() {
                flat.extend_from_slice(frame);
            }
        }
        let x = Tensor::from_slice(&flat).view([
            windows.len() as i64,
            1,
            WINDOW_FRAMES as i64,
            N_MELS as i64,
        ]);
        self.model.features(&x, 0, false)
    }

    /// The cached form of [`Trunk::run`]: f16 bytes, one [`ROW_BYTES`] row per window.
    pub fn rows(&self, windows: &[&ModelWindow]) -> Vec<u8> {
        to_f16_bytes(&self.run(windows))
    }
}

/// f16 little-endian bytes of a float tensor (row-major).
pub fn to_f16_bytes(t: &Tensor) -> Vec<u8> {
    let h = t.to_kind(Kind::Half).contiguous().view([-1]);
    let n = h.numel();
    let mut out = vec![0u8; n * 2];
    h.copy_data_u8(&mut out, n);
    out
}

/// The windows of one clip that the cache holds: up to `max` evenly spaced 50 %-overlap
/// windows, then (with `offset_pass`) as many again starting [`OFFSET_FRAMES`] later.
pub fn clip_windows(mel: &[MelFrame], max: usize, offset_pass: bool) -> Vec<Box<ModelWindow>> {
    let mut all = model_windows(mel);
    let mut out: Vec<Box<ModelWindow>> = Vec::new();
    for i in pick_windows(all.len(), max).into_iter().rev() {
        out.push(all.swap_remove(i));
    }
    out.reverse();
    if offset_pass && mel.len() > OFFSET_FRAMES + WINDOW_FRAMES / 2 {
        let mut shifted = model_windows(&mel[OFFSET_FRAMES..]);
        let mut extra: Vec<Box<ModelWindow>> = Vec::new();
        for i in pick_windows(shifted.len(), max).into_iter().rev() {
            extra.push(shifted.swap_remove(i));
        }
        extra.reverse();
        out.extend(extra);
    }
    out
}

/// sha256 of blocks 1–3's tensors (names, shapes, f32 values): equal for the released weights
/// and for every encoder `finetune` writes from them, whatever block 4 holds.
pub fn trunk_tensors_sha256(w: &Cnn9Weights) -> String {
    let mut bytes = Vec::new();
    for (name, shape, data) in w.named_tensors() {
        if !["encoder.block1.", "encoder.block2.", "encoder.block3."]
            .iter()
            .any(|b| name.starts_with(b))
        {
            continue;
        }
        bytes.extend_from_slice(format!("{name}{shape:?}").as_bytes());
        for v in data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    sfxtag_core::manifest::sha256_hex(&bytes)
}

/// What a dataset's rows are made from.
fn input_key(
    idx: &prepare::PreparedIndex,
    excluded: &HashSet<(String, String)>,
    extra: &str,
) -> String {
    let mut s = String::new();
    for c in &idx.clips {
        let dup = excluded.contains(&(idx.dataset.clone(), c.rel_path.clone()));
        s.push_str(&format!(
            "{}|{}|{}|{dup}|{}|{:?}|{:?}\n",
            c.rel_path, c.size, c.mtime_ns, c.native_label, c.ucs_catid, c.split
        ));
    }
    s.push_str(extra);
    sfxtag_core::manifest::sha256_hex(s.as_bytes())
}

/// What `build` did.
#[derive(Debug, Default, Clone)]
pub struct BuildSummary {
    pub datasets_built: usize,
    pub datasets_reused: usize,
    pub clips: usize,
    pub windows: usize,
    pub bytes: u64,
    /// Clips that gave no window (unreadable audio in the noisy pass).
    pub skipped: usize,
}

/// Builds (or completes) the trunk cache of every prepared dataset of the corpus.
pub fn build(opts: &TrunkOptions) -> Result<BuildSummary> {
    tch::set_num_threads(opts.threads.max(1) as i32);
    let weights_bytes = fs::read(&opts.weights)
        .with_context(|| format!("cannot read {}", opts.weights.display()))?;
    let sha = sfxtag_core::manifest::sha256_hex(&weights_bytes);
    let weights = load_weights(&opts.weights)?;
    let tensors_sha = trunk_tensors_sha256(&weights);
    let trunk = Trunk::new(&weights)?;
    let index = CorpusIndex::load(&opts.cache)?;
    let excluded = corpus::dedup::excluded(&opts.cache)?;
    let dir = variant_dir(&opts.cache, &opts.variant);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pool = match opts.variant {
        Variant::Clean => Vec::new(),
        Variant::Noisy { .. } => embed::ambience_pool(&index, &opts.cache, &excluded)?,
    };
    let mut summary = BuildSummary::default();
    // Plan first, so the progress bar knows the whole job.
    let mut todo = Vec::new();
    for d in &index.datasets {
        let pidx_path = prepare::dataset_dir(&opts.cache, &d.name).join("index.json");
        let Ok(bytes) = fs::read(&pidx_path) else {
            bail!(
                "{} is not prepared (run `sfxtag-train prepare --any-dataset --cache {}`)",
                d.name,
                opts.cache.display()
            );
        };
        let pidx: prepare::PreparedIndex = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: bad index", pidx_path.display()))?;
        let key = input_key(
            &pidx,
            &excluded,
            &match opts.variant {
                // (The clean key predates the variants: caches built before stay valid.)
                Variant::Clean => format!("{}|{}|{sha}", opts.max_windows, opts.offset_pass),
                Variant::Noisy { .. } => format!(
                    "{}|{}|{sha}|{}",
                    opts.max_windows,
                    opts.offset_pass,
                    opts.variant.name()
                ),
            },
        );
        let json = dir.join(format!("{}.json", d.name));
        let old = fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice::<TrunkIndex>(&b).ok())
            .filter(|old| {
                old.version == TRUNK_VERSION
                    && old.input_key == key
                    && dir.join(format!("{}.f16", d.name)).exists()
            });
        if let Some(mut old) = old {
            // The key holds the weights file's hash, so an index from before the blocks 1–3
            // record was kept can be given it now.
            if old.trunk_tensors_sha256.is_none() {
                old.trunk_tensors_sha256 = Some(tensors_sha.clone());
                fs::write(&json, serde_json::to_vec(&old)?)
                    .with_context(|| format!("cannot write {}", json.display()))?;
            }
            summary.datasets_reused += 1;
            continue;
        }
        todo.push((d.name.clone(), d.group().to_string(), pidx, key));
    }
    let total: u64 = todo
        .iter()
        .flat_map(|t| t.2.clips.iter())
        .map(|c| c.frames)
        .sum();
    let pb = if opts.progress {
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "trunk {msg:24} [{bar:30}] {percent:>3}% {elapsed_precise} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    for (name, group, pidx, key) in todo {
        pb.set_message(name.clone());
        // The clean variant reads the mel cache; the noisy one decodes and mixes each clip.
        let prepared = match opts.variant {
            Variant::Clean => Some(prepare::load_prepared(&opts.cache, &name)?),
            Variant::Noisy { .. } => None,
        };
        let f16 = dir.join(format!("{name}.f16"));
        let tmp = dir.join(format!("{name}.f16.tmp"));
        let mut w = std::io::BufWriter::new(
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
        );
        let mut clips = Vec::new();
        let mut row = 0usize;
        let mut pending: Vec<Box<ModelWindow>> = Vec::new();
        let flush = |pending: &mut Vec<Box<ModelWindow>>,
                     w: &mut std::io::BufWriter<fs::File>|
         -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let refs: Vec<&ModelWindow> = pending.iter().map(|b| &**b).collect();
            w.write_all(&trunk.rows(&refs))?;
            pending.clear();
            Ok(())
        };
        let mut skipped = Vec::new();
        for (k, c) in pidx.clips.iter().enumerate() {
            if excluded.contains(&(name.clone(), c.rel_path.clone())) {
                continue;
            }
            let (windows, noise_group) = match (&prepared, opts.variant) {
                (Some(p), _) => {
                    // The prepared clips are the index's, in its order.
                    let mel = p
                        .clips
                        .get(k)
                        .filter(|m| m.rel_path == c.rel_path)
                        .map(|m| &m.mel)
                        .with_context(|| {
                            format!("{name}: {} missing from the mel cache", c.rel_path)
                        })?;
                    (clip_windows(mel, opts.max_windows, opts.offset_pass), None)
                }
                (None, Variant::Noisy { snr_db, seed }) => {
                    match embed::noisy_mel(c, &group, &pool, snr_db, seed) {
                        Ok((mel, ng)) => (
                            clip_windows(&mel, opts.max_windows, opts.offset_pass),
                            Some(ng),
                        ),
                        Err(e) => {
                            skipped.push((c.rel_path.clone(), format!("{e:#}")));
                            pb.inc(c.frames);
                            continue;
                        }
                    }
                }
                (None, Variant::Clean) => unreachable!("the clean variant has its mel cache"),
            };
            clips.push(TrunkClip {
                rel_path: c.rel_path.clone(),
                native_label: c.native_label.clone(),
                ucs_catid: c.ucs_catid.clone(),
                split: c.split,
                first: row,
                windows: windows.len(),
                noise_group,
            });
            row += windows.len();
            pending.extend(windows);
            if pending.len() >= BATCH {
                flush(&mut pending, &mut w)?;
            }
            pb.inc(c.frames);
        }
        flush(&mut pending, &mut w)?;
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &f16)?;
        summary.datasets_built += 1;
        summary.clips += clips.len();
        summary.windows += row;
        summary.bytes += (row * ROW_BYTES) as u64;
        let idx = TrunkIndex {
            version: TRUNK_VERSION,
            dataset: name.clone(),
            group,
            encoder_sha256: sha.clone(),
            trunk_tensors_sha256: Some(tensors_sha.clone()),
            input_key: key,
            max_windows: opts.max_windows,
            offset_pass: opts.offset_pass,
            clips,
            variant: opts.variant.name(),
            skipped,
        };
        if !idx.skipped.is_empty() {
            pb.println(format!(
                "{name}: {} clip(s) skipped, e.g. {}: {}",
                idx.skipped.len(),
                idx.skipped[0].0,
                idx.skipped[0].1
            ));
            summary.skipped += idx.skipped.len();
        }
        let json = dir.join(format!("{name}.json"));
        fs::write(&json, serde_json::to_vec(&idx)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        drop(pidx);
    }
    pb.finish_and_clear();
    Ok(summary)
}

/// One dataset of the trunk cache, opened.
pub struct TrunkDataset {
    pub index: TrunkIndex,
    pub rows: std::sync::Arc<TrunkRows>,
}

/// Opens every dataset of the (clean) trunk cache (sorted by name).
pub fn open(cache: &Path) -> Result<Vec<TrunkDataset>> {
    open_variant(cache, &Variant::Clean)
}

/// Opens every dataset of a variant of the trunk cache (sorted by name).
pub fn open_variant(cache: &Path, variant: &Variant) -> Result<Vec<TrunkDataset>> {
    let dir = variant_dir(cache, variant);
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "no trunk cache in {} (run `sfxtag-train trunk --cache {}{}`)",
                dir.display(),
                cache.display(),
                if matches!(variant, Variant::Noisy { .. }) {
                    " --noisy"
                } else {
                    ""
                }
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for json in names {
        let index: TrunkIndex = serde_json::from_slice(&fs::read(&json)?)
            .with_context(|| format!("{}: bad trunk index", json.display()))?;
        if index.version != TRUNK_VERSION {
            bail!(
                "{}: trunk cache version {} (this build reads {TRUNK_VERSION}); run `sfxtag-train trunk` again",
                json.display(),
                index.version
            );
        }
        let rows = TrunkRows::open(&json.with_extension("f16"))?;
        let want: usize = index.clips.iter().map(|c| c.windows).sum();
        if rows.len() != want {
            bail!(
                "{}: {} rows, the index lists {want}; run `sfxtag-train trunk` again",
                json.with_extension("f16").display(),
                rows.len()
            );
        }
        out.push(TrunkDataset {
            index,
            rows: std::sync::Arc::new(rows),
        });
    }
    if out.is_empty() {
        bail!("the trunk cache in {} is empty", dir.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(frames: usize) -> Vec<MelFrame> {
        (0..frames)
            .map(|t| {
                let mut f = [0f32; N_MELS];
                for (b, v) in f.iter_mut().enumerate() {
                    *v = ((t * 7 + b * 3) % 50) as f32 * 0.1;
                }
                f
            })
            .collect()
    }

    #[test]
    fn windows_are_capped_and_the_offset_pass_adds_shifted_ones() {
        let mel = ramp(1000); // 19 windows
        assert_eq!(clip_windows(&mel, 4, false).len(), 4);
        let both = clip_windows(&mel, 4, true);
        assert_eq!(both.len(), 8);
        // The offset pass's first window starts 25 frames in.
        let first = model_windows(&mel[OFFSET_FRAMES..]).remove(0);
        assert_eq!(*both[4], *first);
        // A short clip gives one (zero-padded) window and no offset window.
        assert_eq!(clip_windows(&ramp(40), 4, true).len(), 1);
    }
}

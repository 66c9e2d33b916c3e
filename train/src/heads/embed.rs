//! Frozen-encoder embeddings of every corpus window, computed once and cached: the input of the
//! heads and of the leave-one-source-out evaluation.
//!
//! Windows are the daemon's (100 frames, 50 % overlap, a short clip zero-padded to one window),
//! at most `max_windows` per clip (evenly spaced, so a long ambience does not outweigh a hundred
//! short effects). Each window row holds the encoder's raw 512-d embedding and, beside it, the
//! logits of the model's other heads (the released aiSFX heads: features for idea (e)) and, when
//! the encoder graph has the output, block 3's pooled features (aux entry [`BLOCK3_AUX`]).
//!
//! Variants: `clean` reads the prepared mel cache; `noisy` decodes each clip again, mixes it with
//! an ambience from another source group at a fixed SNR, and computes fresh mel frames (field
//! recordings are not clean). Per dataset, under `<cache>/embeddings/<variant>/`:
//! `<dataset>.f32` (rows × (dim + aux) little-endian f32) and `<dataset>.json` ([`StoreIndex`]).
//! A re-run recomputes only datasets whose prepared clips, encoder or settings changed.
//!
//! Each window also records its level (RMS dBFS of its samples, as the daemon's silence gate
//! measures it), so the heads can leave out the windows the daemon never classifies.

use crate::corpus::{self, CorpusIndex};
use crate::prepare::{self, PreparedIndex};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sfxtag_core::audio::decode_mono_44k;
use sfxtag_core::frontend::{mel_spectrogram, model_windows, window_level_dbfs, MelFrame};
use sfxtag_core::manifest::{Manifest, MANIFEST_FILE};
use sfxtag_export::TractModel;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The aux entry holding block 3's pooled features (the graph output of that name).
pub const BLOCK3_AUX: &str = sfxtag_export::graph::BLOCK3;

/// Bump when the store layout or the window choice changes.
/// 2: window levels (`ClipEntry::levels_dbfs`).
pub const STORE_VERSION: u32 = 2;
/// Default cap of windows per clip.
pub const DEFAULT_MAX_WINDOWS: usize = 16;
/// Ambiences shorter than this are not used as background.
const MIN_AMBIENCE_S: f64 = 3.0;

/// Which audio the embeddings are of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variant {
    Clean,
    /// Mixed with an ambience of another source group at `snr_db`.
    Noisy {
        snr_db: f32,
        seed: u64,
    },
}

impl Variant {
    /// Folder name under `<cache>/embeddings/`.
    pub fn name(&self) -> String {
        match self {
            Variant::Clean => "clean".into(),
            Variant::Noisy { snr_db, seed } => format!("noisy-snr{snr_db}-seed{seed}"),
        }
    }
}

/// One clip's windows in a store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClipEntry {
    pub dataset: String,
    pub rel_path: String,
    pub native_label: String,
    pub ucs_catid: Option<String>,
    /// Row of the first window in the dataset's file.
    pub first: usize,
    pub windows: usize,
    /// The source group of the ambience mixed in (noisy variant).
    #[serde(default)]
    pub noise_group: Option<String>,
    /// Level of each window (RMS dBFS of the audio it was made of, [`window_level_dbfs`]);
    /// empty in stores made without levels (version 1, `embed --from-trunk`).
    #[serde(default)]
    pub levels_dbfs: Vec<f32>,
}

/// `<dataset>.json` of a store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreIndex {
    pub version: u32,
    pub dataset: String,
    pub variant: String,
    /// sha256 of the encoder file that made the rows.
    pub encoder_sha256: String,
    pub dim: usize,
    /// Logits of the model's other heads, in this order, after the embedding.
    pub aux: Vec<(String, usize)>,
    pub max_windows: usize,
    /// What the rows were made from: a hash of the prepared clips (paths, sizes, mtimes) and
    /// the duplicate list.
    pub input_key: String,
    pub clips: Vec<ClipEntry>,
    /// Clips that produced no window (unreadable in the noisy pass), with the reason.
    #[serde(default)]
    pub skipped: Vec<(String, String)>,
}

/// What `embed` does.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    pub cache: PathBuf,
    /// Model directory (its fp32 encoder is used when it has one, unless `int8`).
    pub model: PathBuf,
    pub variant: Variant,
    pub max_windows: usize,
    pub threads: usize,
    pub progress: bool,
    /// Where the stores go instead of `<cache>/embeddings` (embeddings of another encoder).
    pub store: Option<PathBuf>,
    /// Run the model's int8 encoder (what the daemon runs) instead of its fp32 twin.
    pub int8: bool,
}

/// The encoder of a model directory, as the trainer runs it.
pub struct EncoderSpec {
    pub onnx: Vec<u8>,
    pub sha256: String,
    pub embedding_output: String,
    pub dim: usize,
    pub aux: Vec<(String, usize)>,
    pub manifest: Manifest,
}

impl EncoderSpec {
    /// The model's fp32 twin when it has one (the reference the heads are trained on).
    pub fn load(model: &Path) -> Result<Self> {
        Self::load_precision(model, false)
    }

    /// With `int8`, the model's int8 encoder (its `encoder.file`), as the daemon runs it.
    pub fn load_precision(model: &Path, int8: bool) -> Result<Self> {
        let manifest = Manifest::load(model).with_context(|| {
            format!(
                "{} is not a usable model directory (no valid {MANIFEST_FILE})",
                model.display()
            )
        })?;
        let file = match (int8, &manifest.encoder.fp32_file) {
            (false, Some(fp32)) => fp32.clone(),
            _ => manifest.encoder.file.clone(),
        };
        let onnx = fs::read(model.join(&file))
            .with_context(|| format!("cannot read {}", model.join(&file).display()))?;
        let sha256 = sfxtag_core::manifest::sha256_hex(&onnx);
        let mut aux: Vec<(String, usize)> = manifest
            .heads
            .iter()
            .map(|h| (h.output.clone(), h.n_classes))
            .collect();
        let outputs = sfxtag_export::graph::output_names(&onnx)
            .with_context(|| format!("{} is not an ONNX model", model.join(&file).display()))?;
        if outputs.iter().any(|o| o == BLOCK3_AUX) {
            aux.push((
                BLOCK3_AUX.to_string(),
                sfxtag_export::weights::BLOCK3_FEATURES_DIM,
            ));
        }
        Ok(Self {
            sha256,
            embedding_output: manifest.encoder.embedding_output.clone(),
            dim: manifest.encoder.embedding_dim,
            aux,
            onnx,
            manifest,
        })
    }

    /// A runner for this encoder (one per thread: tract plans run single-threaded).
    fn runner(&self) -> Result<Runner> {
        let model = TractModel::from_bytes(&self.onnx).map_err(|e| anyhow::anyhow!("{e}"))?;
        let emb = model
            .output_index(&self.embedding_output)
            .with_context(|| format!("the encoder has no output {}", self.embedding_output))?;
        let aux = self
            .aux
            .iter()
            .map(|(o, _)| {
                model
                    .output_index(o)
                    .with_context(|| format!("the encoder has no output {o}"))
            })
            .collect::<Result<_>>()?;
        Ok(Runner { model, emb, aux })
    }
}

struct Runner {
    model: TractModel,
    emb: usize,
    aux: Vec<usize>,
}

impl Runner {
    /// Appends one row per window: embedding, then the aux logits; returns the windows picked.
    fn rows(&self, mel: &[MelFrame], max_windows: usize, out: &mut Vec<f32>) -> Result<Vec<usize>> {
        let windows = model_windows(mel);
        let pick = pick_windows(windows.len(), max_windows);
        for &w in &pick {
            let outs = self
                .model
                .run(&windows[w])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            out.extend_from_slice(&outs[self.emb]);
            for &a in &self.aux {
                out.extend_from_slice(&outs[a]);
            }
        }
        Ok(pick)
    }
}

/// At most `max` of `n` window indices, evenly spaced, first and last included.
pub fn pick_windows(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    if max == 1 {
        return vec![n / 2];
    }
    (0..max).map(|i| i * (n - 1) / (max - 1)).collect()
}

/// `<root>/<variant>`, with `root` the given store folder or `<cache>/embeddings`.
pub fn store_dir(cache: &Path, store: Option<&Path>, variant: &Variant) -> PathBuf {
    store
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache.join("embeddings"))
        .join(variant.name())
}

/// A stable key of what a dataset's rows are made from.
fn input_key(idx: &PreparedIndex, excluded: &HashSet<(String, String)>, extra: &str) -> String {
    let mut s = String::new();
    for c in &idx.clips {
        let dup = excluded.contains(&(idx.dataset.clone(), c.rel_path.clone()));
        s.push_str(&format!(
            "{}|{}|{}|{dup}|{}|{:?}\n",
            c.rel_path, c.size, c.mtime_ns, c.native_label, c.ucs_catid
        ));
    }
    s.push_str(extra);
    sfxtag_core::manifest::sha256_hex(s.as_bytes())
}

/// The ambience pool of the noisy variant: `(group, path)` of AMBIENCE clips long enough to lie
/// under another clip.
pub(crate) fn ambience_pool(
    index: &CorpusIndex,
    cache: &Path,
    excluded: &HashSet<(String, String)>,
) -> Result<Vec<(String, PathBuf)>> {
    let mut pool = Vec::new();
    for d in &index.datasets {
        let p = prepare::dataset_dir(cache, &d.name).join("index.json");
        let Ok(bytes) = fs::read(&p) else { continue };
        let idx: PreparedIndex = serde_json::from_slice(&bytes)?;
        for c in &idx.clips {
            let amb = c
                .ucs_catid
                .as_deref()
                .and_then(sfxtag_core::ucs::lookup)
                .is_some_and(|e| e.category == "AMBIENCE");
            if amb
                && c.duration_s >= MIN_AMBIENCE_S
                && !excluded.contains(&(d.name.clone(), c.rel_path.clone()))
            {
                pool.push((d.group().to_string(), c.path.clone()));
            }
        }
    }
    if pool.is_empty() {
        bail!("the noisy variant needs AMBIENCE clips of at least {MIN_AMBIENCE_S} s in the corpus; there are none");
    }
    Ok(pool)
}

/// A deterministic 64-bit hash (FNV-1a) for choosing backgrounds and offsets.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Mixes `noise` (looped, from `offset`) under `signal` so that the signal-to-noise ratio over
/// the clip is `snr_db`. A silent signal or noise is left as it is.
pub fn mix_at_snr(signal: &[f32], noise: &[f32], offset: usize, snr_db: f32) -> Vec<f32> {
    let rms = |x: &mut dyn Iterator<Item = f32>| {
        let (s, n) = x.fold((0f64, 0usize), |(s, n), v| {
            (s + (v as f64) * (v as f64), n + 1)
        });
        if n == 0 {
            0.0
        } else {
            (s / n as f64).sqrt()
        }
    };
    if noise.is_empty() {
        return signal.to_vec();
    }
    let at = |i: usize| noise[(offset + i) % noise.len()];
    let s_rms = rms(&mut signal.iter().copied());
    let n_rms = rms(&mut (0..signal.len()).map(at));
    if s_rms <= 0.0 || n_rms <= 0.0 {
        return signal.to_vec();
    }
    let gain = (s_rms / n_rms / 10f64.powf(snr_db as f64 / 20.0)) as f32;
    signal
        .iter()
        .enumerate()
        .map(|(i, &s)| s + gain * at(i))
        .collect()
}

/// One clip's rows, their count, and the group of the ambience mixed in (noisy variant).
/// A clip's rows, its windows' levels and the ambience's group (noisy variant).
type ClipRows = (Vec<f32>, Vec<f32>, Option<String>);

/// Computes (or reuses) the embeddings of every dataset of the prepared corpus.
pub fn embed(opts: &EmbedOptions) -> Result<()> {
    let enc = EncoderSpec::load_precision(&opts.model, opts.int8)?;
    let index = CorpusIndex::load(&opts.cache)?;
    let excluded = corpus::dedup::excluded(&opts.cache)?;
    let dir = store_dir(&opts.cache, opts.store.as_deref(), &opts.variant);
    fs::create_dir_all(&dir)?;
    let pool = match opts.variant {
        Variant::Clean => Vec::new(),
        Variant::Noisy { .. } => ambience_pool(&index, &opts.cache, &excluded)?,
    };
    let group_of: HashMap<&str, &str> = index
        .datasets
        .iter()
        .map(|d| (d.name.as_str(), d.group()))
        .collect();
    for d in &index.datasets {
        let pidx_path = prepare::dataset_dir(&opts.cache, &d.name).join("index.json");
        let pidx: PreparedIndex =
            serde_json::from_slice(&fs::read(&pidx_path).with_context(|| {
                format!(
                    "{} is not prepared (run `sfxtag-train prepare --any-dataset --cache {}`)",
                    d.name,
                    opts.cache.display()
                )
            })?)?;
        let key = input_key(
            &pidx,
            &excluded,
            &format!("{}|{}", opts.max_windows, opts.variant.name()),
        );
        let json = dir.join(format!("{}.json", d.name));
        if let Ok(Ok(old)) = fs::read(&json).map(|b| serde_json::from_slice::<StoreIndex>(&b)) {
            if old.version == STORE_VERSION
                && old.input_key == key
                && old.encoder_sha256 == enc.sha256
                && dir.join(format!("{}.f32", d.name)).exists()
            {
                continue;
            }
        }
        let todo: Vec<&prepare::PreparedEntry> = pidx
            .clips
            .iter()
            .filter(|c| !excluded.contains(&(d.name.clone(), c.rel_path.clone())))
            .collect();
        let mels = match opts.variant {
            Variant::Clean => Some(prepare::load_prepared(&opts.cache, &d.name)?),
            Variant::Noisy { .. } => None,
        };
        let mel_of: HashMap<&str, &Vec<MelFrame>> = mels
            .as_ref()
            .map(|m| {
                m.clips
                    .iter()
                    .map(|c| (c.rel_path.as_str(), &c.mel))
                    .collect()
            })
            .unwrap_or_default();
        let group = group_of.get(d.name.as_str()).copied().unwrap_or(&d.name);
        let pb = progress_bar(opts.progress, todo.len(), &d.name);
        let results: Mutex<Vec<Option<Result<ClipRows>>>> =
            Mutex::new((0..todo.len()).map(|_| None).collect());
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| -> Result<()> {
            let mut handles = Vec::new();
            for _ in 0..opts.threads.max(1) {
                handles.push(s.spawn(|| -> Result<()> {
                    let runner = enc.runner()?;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(c) = todo.get(i) else { break };
                        let r = (|| -> Result<ClipRows> {
                            let mut rows = Vec::new();
                            let (picks, samples, noise) = match opts.variant {
                                Variant::Clean => {
                                    let mel =
                                        mel_of.get(c.rel_path.as_str()).with_context(|| {
                                            format!("{} missing from the mel cache", c.rel_path)
                                        })?;
                                    // The mel cache holds no samples: decoded again for the
                                    // window levels (the decoder is the one prepare used).
                                    let a = decode_mono_44k(&c.path).with_context(|| {
                                        format!("cannot decode {}", c.path.display())
                                    })?;
                                    let picks = runner.rows(mel, opts.max_windows, &mut rows)?;
                                    (picks, a.samples, None)
                                }
                                Variant::Noisy { snr_db, seed } => {
                                    let (mixed, ng) = noisy_audio(c, group, &pool, snr_db, seed)?;
                                    let mel = mel_spectrogram(&mixed);
                                    let picks = runner.rows(&mel, opts.max_windows, &mut rows)?;
                                    (picks, mixed, Some(ng))
                                }
                            };
                            let levels = picks
                                .iter()
                                .map(|&w| window_level_dbfs(&samples, w))
                                .collect();
                            Ok((rows, levels, noise))
                        })();
                        results.lock().expect("no panics while held")[i] = Some(r);
                        pb.inc(1);
                    }
                    Ok(())
                }));
            }
            for h in handles {
                h.join().expect("embedding thread panicked")?;
            }
            Ok(())
        })?;
        pb.finish_and_clear();
        let mut clips = Vec::new();
        let mut skipped = Vec::new();
        let tmp = dir.join(format!("{}.f32.tmp", d.name));
        let mut w = std::io::BufWriter::new(fs::File::create(&tmp)?);
        let mut row = 0usize;
        for (c, r) in todo
            .iter()
            .zip(results.into_inner().expect("threads joined"))
        {
            match r.expect("every clip processed") {
                Ok((rows, levels_dbfs, noise_group)) => {
                    let n = levels_dbfs.len();
                    for v in &rows {
                        w.write_all(&v.to_le_bytes())?;
                    }
                    clips.push(ClipEntry {
                        dataset: d.name.clone(),
                        rel_path: c.rel_path.clone(),
                        native_label: c.native_label.clone(),
                        ucs_catid: c.ucs_catid.clone(),
                        first: row,
                        windows: n,
                        noise_group,
                        levels_dbfs,
                    });
                    row += n;
                }
                Err(e) => skipped.push((c.rel_path.clone(), format!("{e:#}"))),
            }
        }
        w.flush()?;
        drop(w);
        fs::rename(&tmp, dir.join(format!("{}.f32", d.name)))?;
        let idx = StoreIndex {
            version: STORE_VERSION,
            dataset: d.name.clone(),
            variant: opts.variant.name(),
            encoder_sha256: enc.sha256.clone(),
            dim: enc.dim,
            aux: enc.aux.clone(),
            max_windows: opts.max_windows,
            input_key: key,
            clips,
            skipped,
        };
        if !idx.skipped.is_empty() {
            eprintln!(
                "{}: {} clip(s) skipped, e.g. {}: {}",
                d.name,
                idx.skipped.len(),
                idx.skipped[0].0,
                idx.skipped[0].1
            );
        }
        fs::write(&json, serde_json::to_vec_pretty(&idx)?)?;
    }
    Ok(())
}

fn progress_bar(show: bool, n: usize, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>16} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(name.to_string());
    pb
}

/// The clip's mel frames after mixing in an ambience of another group; returns the group too.
pub(crate) fn noisy_mel(
    c: &prepare::PreparedEntry,
    group: &str,
    pool: &[(String, PathBuf)],
    snr_db: f32,
    seed: u64,
) -> Result<(Vec<MelFrame>, String)> {
    let (mixed, ng) = noisy_audio(c, group, pool, snr_db, seed)?;
    Ok((mel_spectrogram(&mixed), ng))
}

/// The clip mixed with an ambience of another group (chosen and placed by a hash of the clip,
/// its group and `seed`); returns the ambience's group too.
pub(crate) fn noisy_audio(
    c: &prepare::PreparedEntry,
    group: &str,
    pool: &[(String, PathBuf)],
    snr_db: f32,
    seed: u64,
) -> Result<(Vec<f32>, String)> {
    let others: Vec<&(String, PathBuf)> = pool.iter().filter(|(g, _)| g != group).collect();
    if others.is_empty() {
        bail!("no ambience from another source group");
    }
    let h = fnv(&[c.rel_path.as_bytes(), group.as_bytes(), &seed.to_le_bytes()]);
    let (ng, npath) = others[(h % others.len() as u64) as usize];
    let signal =
        decode_mono_44k(&c.path).with_context(|| format!("cannot decode {}", c.path.display()))?;
    let noise = decode_mono_44k(npath)
        .with_context(|| format!("cannot decode the ambience {}", npath.display()))?;
    let offset = ((h >> 32) as usize) % noise.samples.len().max(1);
    let mixed = mix_at_snr(&signal.samples, &noise.samples, offset, snr_db);
    Ok((mixed, ng.clone()))
}

/// Embeddings of a whole store in memory.
#[derive(Debug, Clone)]
pub struct Store {
    pub dim: usize,
    pub aux: Vec<(String, usize)>,
    pub clips: Vec<ClipEntry>,
    /// Source group per clip (parallel to `clips`).
    pub groups: Vec<String>,
    /// Rows × dim raw embeddings; a clip's rows are `first..first + windows` of this matrix
    /// (re-based when datasets are concatenated).
    pub emb: Vec<f32>,
    /// Rows × aux logits.
    pub aux_rows: Vec<f32>,
}

impl Store {
    pub fn rows(&self) -> usize {
        self.emb.len() / self.dim.max(1)
    }
    pub fn aux_dim(&self) -> usize {
        self.aux.iter().map(|(_, n)| n).sum()
    }
    /// One window's embedding.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.emb[r * self.dim..(r + 1) * self.dim]
    }
    pub fn aux_row(&self, r: usize) -> &[f32] {
        let a = self.aux_dim();
        &self.aux_rows[r * a..(r + 1) * a]
    }
    /// Where block 3's features sit in an aux row, if the store has them.
    pub fn block3_range(&self) -> Option<std::ops::Range<usize>> {
        block3_range(&self.aux)
    }

    /// Loads every dataset of a variant (all of the corpus index, in its order) from `store`
    /// (default `<cache>/embeddings`).
    pub fn load(cache: &Path, store: Option<&Path>, variant: &Variant) -> Result<Self> {
        let index = CorpusIndex::load(cache)?;
        let dir = store_dir(cache, store, variant);
        let mut st = Store {
            dim: 0,
            aux: Vec::new(),
            clips: Vec::new(),
            groups: Vec::new(),
            emb: Vec::new(),
            aux_rows: Vec::new(),
        };
        for d in &index.datasets {
            let json = dir.join(format!("{}.json", d.name));
            let idx: StoreIndex = serde_json::from_slice(&fs::read(&json).with_context(|| {
                format!(
                    "no {} embeddings of {} (run `sfxtag-train embed --cache {}`{})",
                    variant.name(),
                    d.name,
                    cache.display(),
                    if matches!(variant, Variant::Noisy { .. }) {
                        " --noisy"
                    } else {
                        ""
                    }
                )
            })?)?;
            if st.dim == 0 {
                st.dim = idx.dim;
                st.aux = idx.aux.clone();
            } else if st.dim != idx.dim || st.aux != idx.aux {
                bail!(
                    "{}: embeddings of another encoder than the other datasets' (run embed again)",
                    json.display()
                );
            }
            let width = idx.dim + idx.aux.iter().map(|(_, n)| n).sum::<usize>();
            let bytes = fs::read(dir.join(format!("{}.f32", d.name)))?;
            let n_rows: usize = idx.clips.iter().map(|c| c.windows).sum();
            if bytes.len() != n_rows * width * 4 {
                bail!(
                    "{}: {} bytes, expected {} rows × {width} floats (corrupt: run embed again)",
                    dir.join(format!("{}.f32", d.name)).display(),
                    bytes.len(),
                    n_rows
                );
            }
            let base = st.rows();
            for row in bytes.chunks_exact(width * 4) {
                for (k, b) in row.chunks_exact(4).enumerate() {
                    let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    if k < idx.dim {
                        st.emb.push(v);
                    } else {
                        st.aux_rows.push(v);
                    }
                }
            }
            for mut c in idx.clips {
                c.first += base;
                st.groups.push(d.group().to_string());
                st.clips.push(c);
            }
        }
        if st.clips.is_empty() {
            bail!("no embeddings in {}", dir.display());
        }
        Ok(st)
    }
}

/// Whether a silence floor keeps every window (it is at or below the lowest level recorded).
pub fn keeps_every_window(floor_dbfs: f32) -> bool {
    floor_dbfs <= sfxtag_core::frontend::MIN_LEVEL_DBFS
}

/// What [`Store::drop_silent`] left out.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SilenceSummary {
    /// Windows below the floor, left out.
    pub windows_dropped: usize,
    /// Clips whose every window is below the floor: all their windows are kept (the daemon
    /// calls such a clip silent; the evaluation scores it on those windows).
    pub silent_clips: usize,
}

impl Store {
    /// Leaves out the windows below `floor_dbfs`, as the daemon's silence gate does (a floor
    /// of -120 or less keeps every window). A clip whose every window is below the floor keeps
    /// them all. Stores made without window levels are refused unless every window is kept.
    pub fn drop_silent(&mut self, floor_dbfs: f32) -> Result<SilenceSummary> {
        let mut summary = SilenceSummary::default();
        if keeps_every_window(floor_dbfs) {
            return Ok(summary);
        }
        if let Some(c) = self
            .clips
            .iter()
            .find(|c| c.windows > 0 && c.levels_dbfs.len() != c.windows)
        {
            bail!(
                "{}/{}: the embeddings hold no window levels (made by an older `embed` or by \
                 `embed --from-trunk`): run `embed` again, or keep every window with \
                 --silence-floor -120",
                c.dataset,
                c.rel_path
            );
        }
        let (dim, aux) = (self.dim, self.aux_dim());
        let (mut emb, mut aux_rows) = (Vec::new(), Vec::new());
        let mut next = 0;
        for c in &mut self.clips {
            let loud: Vec<usize> = (0..c.windows)
                .filter(|&w| c.levels_dbfs[w] >= floor_dbfs)
                .collect();
            let keep: Vec<usize> = if loud.is_empty() && c.windows > 0 {
                summary.silent_clips += 1;
                (0..c.windows).collect()
            } else {
                loud
            };
            summary.windows_dropped += c.windows - keep.len();
            for &w in &keep {
                let r = c.first + w;
                emb.extend_from_slice(&self.emb[r * dim..(r + 1) * dim]);
                aux_rows.extend_from_slice(&self.aux_rows[r * aux..(r + 1) * aux]);
            }
            c.levels_dbfs = keep.iter().map(|&w| c.levels_dbfs[w]).collect();
            c.first = next;
            c.windows = keep.len();
            next += keep.len();
        }
        self.emb = emb;
        self.aux_rows = aux_rows;
        Ok(summary)
    }
}

/// Where block 3's features sit in an aux row of layout `aux`.
pub fn block3_range(aux: &[(String, usize)]) -> Option<std::ops::Range<usize>> {
    let mut off = 0;
    for (name, n) in aux {
        if name == BLOCK3_AUX {
            return Some(off..off + n);
        }
        off += n;
    }
    None
}

/// Runs the encoder over the mel frames of one audio file (for the fixtures and `enroll`-style
/// use in the evaluation): rows of embedding + aux logits, and each window's level.
pub fn embed_file(
    enc: &EncoderSpec,
    path: &Path,
    max_windows: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let a = decode_mono_44k(path).with_context(|| format!("cannot decode {}", path.display()))?;
    let mel = mel_spectrogram(&a.samples);
    let mut rows = Vec::new();
    let picks = enc.runner()?.rows(&mel, max_windows, &mut rows)?;
    let levels = picks
        .iter()
        .map(|&w| window_level_dbfs(&a.samples, w))
        .collect();
    Ok((rows, levels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_capped_evenly() {
        assert_eq!(pick_windows(3, 16), vec![0, 1, 2]);
        assert_eq!(pick_windows(100, 4), vec![0, 33, 66, 99]);
        assert_eq!(pick_windows(7, 1), vec![3]);
        assert!(pick_windows(0, 4).is_empty());
    }

    #[test]
    fn mixing_hits_the_snr() {
        let signal: Vec<f32> = (0..44100).map(|i| (i as f32 * 0.05).sin()).collect();
        let noise: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mixed = mix_at_snr(&signal, &noise, 17, 10.0);
        let diff: Vec<f32> = mixed.iter().zip(&signal).map(|(m, s)| m - s).collect();
        let p = |x: &[f32]| x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        let snr = 10.0 * (p(&signal) / p(&diff)).log10();
        assert!((snr - 10.0).abs() < 0.01, "{snr}");
        // Silence stays silence.
        assert_eq!(mix_at_snr(&[0.0; 10], &noise, 0, 10.0), vec![0.0; 10]);
    }

    #[test]
    fn the_int8_encoder_is_run_only_when_asked() {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/aisfx-cnn9");
        let fp32 = EncoderSpec::load(&model).unwrap();
        let int8 = EncoderSpec::load_precision(&model, true).unwrap();
        let m = &fp32.manifest.encoder;
        let bytes = |f: &str| fs::read(model.join(f)).unwrap();
        assert_eq!(fp32.onnx, bytes(m.fp32_file.as_deref().unwrap()));
        assert_eq!(int8.onnx, bytes(&m.file));
        assert_ne!(fp32.sha256, int8.sha256);
    }

    #[test]
    fn silent_windows_are_left_out_unless_all_are() {
        let clip = |first, levels: Vec<f32>| ClipEntry {
            dataset: "d".into(),
            rel_path: format!("c{first}"),
            native_label: String::new(),
            ucs_catid: None,
            first,
            windows: levels.len(),
            noise_group: None,
            levels_dbfs: levels,
        };
        let mut st = Store {
            dim: 2,
            aux: vec![("a".into(), 1)],
            clips: vec![
                clip(0, vec![-20.0, -70.0, -59.9]),
                clip(3, vec![-90.0, -80.0]),
                clip(5, vec![-10.0]),
            ],
            groups: vec!["g".into(); 3],
            emb: (0..12).map(|v| v as f32).collect(),
            aux_rows: (0..6).map(|v| 100.0 + v as f32).collect(),
        };
        let all = st.clone();
        assert_eq!(
            st.clone().drop_silent(-120.0).unwrap(),
            SilenceSummary::default()
        );
        let s = st.drop_silent(-60.0).unwrap();
        assert_eq!(
            s,
            SilenceSummary {
                windows_dropped: 1,
                silent_clips: 1
            }
        );
        // Clip 0 keeps windows 0 and 2, clip 1 (all silent) both, clip 2 its one.
        assert_eq!(st.rows(), 5);
        assert_eq!(st.row(0), all.row(0));
        assert_eq!(st.row(1), all.row(2));
        assert_eq!(st.aux_row(1), all.aux_row(2));
        assert_eq!((st.clips[1].first, st.clips[1].windows), (2, 2));
        assert_eq!(st.row(4), all.row(5));
        assert_eq!(st.clips[0].levels_dbfs, vec![-20.0, -59.9]);
        // A store without levels is refused, not silently kept whole.
        let mut old = all.clone();
        old.clips[2].levels_dbfs.clear();
        let e = old.drop_silent(-60.0).unwrap_err().to_string();
        assert!(e.contains("--silence-floor -120"), "{e}");
    }

    #[test]
    fn variant_names_are_folder_names() {
        assert_eq!(Variant::Clean.name(), "clean");
        assert_eq!(
            Variant::Noisy {
                snr_db: 10.0,
                seed: 1
            }
            .name(),
            "noisy-snr10-seed1"
        );
    }
}

//! `prepare`: decode every clip of the corpus index, resample and compute log-mel frames through
//! `sfxtag_core` (the daemon's own code), and store one cache per dataset with a stratified
//! 8:1:1 split by the finest (native) label.
//!
//! Per dataset, under `<cache>/prepared/<dataset>/`:
//! - `mels.f32`: every clip's log-mel frames (not normalised), concatenated, each frame
//!   [`N_MELS`] little-endian f32;
//! - `index.json` ([`PreparedIndex`]): per clip its offset and length in frames, labels, split and
//!   the file's size and mtime (the cache key: a re-run decodes only changed or new files);
//! - `skipped.txt`: files that could not be decoded, with the reason.
//!
//! Split rule: per native label, clips sorted by path and shuffled with a seeded generator;
//! `round(10 %)` (at least 1) go to validation, as many to test, the rest to training. Labels
//! with fewer than [`MIN_SPLIT_CLIPS`] clips go to training only (they still train the head, but
//! cannot be evaluated).

use crate::corpus::{Clip, CorpusIndex};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sfxtag_core::audio::decode_mono_44k;
use sfxtag_core::frontend::{mel_spectrogram, MelFrame, HOP_SIZE, N_MELS, SAMPLE_RATE};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Labels with fewer clips than this go to the training split only.
pub const MIN_SPLIT_CLIPS: usize = 3;
/// Default split seed.
pub const DEFAULT_SEED: u64 = 0x5f7a_6d15;
/// Bump when the cache layout or the frontend changes.
pub const CACHE_VERSION: u32 = 1;

/// Which split a clip belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

/// One clip's entry in a prepared dataset's index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreparedEntry {
    pub path: PathBuf,
    pub rel_path: String,
    pub native_label: String,
    pub ucs_catid: Option<String>,
    pub split: Split,
    /// First frame in `mels.f32` (in frames, not bytes).
    pub offset: u64,
    pub frames: u64,
    pub duration_s: f64,
    pub size: u64,
    pub mtime_ns: u64,
}

/// A file that could not be decoded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
    pub size: u64,
    pub mtime_ns: u64,
}

/// `index.json` of one prepared dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreparedIndex {
    pub version: u32,
    pub dataset: String,
    pub n_mels: usize,
    pub seed: u64,
    pub clips: Vec<PreparedEntry>,
    pub skipped: Vec<SkippedFile>,
}

/// What `prepare` does.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub cache: PathBuf,
    /// Datasets to prepare; empty = all in the index.
    pub datasets: Vec<String>,
    /// Every clip must carry a UCS CatID (UCS-transfer training).
    pub require_ucs: bool,
    pub seed: u64,
    /// Show progress bars.
    pub progress: bool,
    /// Refuse datasets a classifier cannot be trained and tested on (one class, an empty
    /// validation or test split). Off: every dataset's mel frames are cached (the heads and
    /// leave-one-source-out evaluation need no per-dataset split).
    pub trainable: bool,
}

impl PrepareOptions {
    pub fn new(cache: impl Into<PathBuf>) -> Self {
        PrepareOptions {
            cache: cache.into(),
            datasets: Vec::new(),
            require_ucs: false,
            seed: DEFAULT_SEED,
            progress: true,
            trainable: true,
        }
    }
}

/// The outcome for one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReport {
    pub dataset: String,
    pub clips: usize,
    pub classes: usize,
    pub hours: f64,
    pub decoded: usize,
    pub reused: usize,
    pub skipped: usize,
    pub split_counts: [usize; 3],
    pub bytes: u64,
}

/// Folder of one dataset's cache.
pub fn dataset_dir(cache: &Path, dataset: &str) -> PathBuf {
    cache.join("prepared").join(dataset)
}

/// Prepares every requested dataset of the corpus index. A dataset that fails (one class, an
/// empty split, non-UCS labels) is reported and the others still run; the error lists them all.
pub fn prepare(opts: &PrepareOptions) -> Result<Vec<PrepareReport>> {
    let index = CorpusIndex::load(&opts.cache)?;
    let names: Vec<String> = if opts.datasets.is_empty() {
        index.datasets.iter().map(|d| d.name.clone()).collect()
    } else {
        for d in &opts.datasets {
            if !index.datasets.iter().any(|x| &x.name == d) {
                bail!(
                    "dataset {d} is not in the corpus index (has: {})",
                    index
                        .datasets
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        opts.datasets.clone()
    };
    // Label checks first: they are cheap and must not wait for a long decode.
    let mut errors = Vec::new();
    let mut todo = Vec::new();
    for name in &names {
        let clips: Vec<&Clip> = index.dataset_clips(name).collect();
        match check_labels(name, &clips, opts.require_ucs, opts.trainable) {
            Ok(()) => todo.push((name.clone(), clips)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let mut reports = Vec::new();
    for (name, clips) in todo {
        match prepare_dataset(opts, &name, &clips) {
            Ok(r) => reports.push(r),
            Err(e) => errors.push(format!("{name}: {e:#}")),
        }
    }
    if !errors.is_empty() {
        for r in &reports {
            eprintln!("prepared {} ({} clips)", r.dataset, r.clips);
        }
        bail!("{} dataset(s) failed:\n{}", errors.len(), errors.join("\n"));
    }
    Ok(reports)
}

/// Checks that a dataset can be trained on: clips exist, more than one class, and (if required)
/// every clip has a valid, non-archived UCS CatID.
pub fn check_labels(name: &str, clips: &[&Clip], require_ucs: bool, trainable: bool) -> Result<()> {
    if clips.is_empty() {
        bail!("{name}: no clips in the corpus index");
    }
    if require_ucs {
        let bad: Vec<String> = clips
            .iter()
            .filter(|c| {
                c.ucs_catid
                    .as_deref()
                    .map(|k| crate::corpus::check_label_cat_id(k).is_err())
                    .unwrap_or(true)
            })
            .map(|c| {
                format!(
                    "{} (label {:?}, CatID {:?})",
                    c.rel_path, c.native_label, c.ucs_catid
                )
            })
            .collect();
        if !bad.is_empty() {
            bail!(
                "{name}: UCS labels are required but {} clip(s) have no valid UCS CatID, e.g.\n  {}",
                bad.len(),
                bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ")
            );
        }
    }
    let classes: std::collections::BTreeSet<&str> =
        clips.iter().map(|c| c.native_label.as_str()).collect();
    if trainable && classes.len() < 2 {
        bail!(
            "{name}: only one class ({}) — a classifier needs at least two",
            classes.iter().next().copied().unwrap_or("")
        );
    }
    Ok(())
}

fn file_key(path: &Path) -> (u64, u64) {
    match fs::metadata(path) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            (m.len(), mtime)
        }
        Err(_) => (0, 0),
    }
}

enum Outcome {
    Reused(Vec<f32>, f64),
    Decoded(Vec<MelFrame>, f64),
    Skipped(String),
}

fn prepare_dataset(opts: &PrepareOptions, name: &str, clips: &[&Clip]) -> Result<PrepareReport> {
    let dir = dataset_dir(&opts.cache, name);
    fs::create_dir_all(&dir)?;
    let t0 = std::time::Instant::now();
    // The previous cache, if compatible.
    let old: Option<(PreparedIndex, Vec<f32>)> = (|| {
        let idx: PreparedIndex =
            serde_json::from_slice(&fs::read(dir.join("index.json")).ok()?).ok()?;
        if idx.version != CACHE_VERSION || idx.n_mels != N_MELS {
            return None;
        }
        let mels = read_f32(&dir.join("mels.f32")).ok()?;
        Some((idx, mels))
    })();
    let old_clips: HashMap<&Path, &PreparedEntry> = old
        .as_ref()
        .map(|(i, _)| i.clips.iter().map(|c| (c.path.as_path(), c)).collect())
        .unwrap_or_default();
    let old_skipped: HashMap<&Path, &SkippedFile> = old
        .as_ref()
        .map(|(i, _)| i.skipped.iter().map(|c| (c.path.as_path(), c)).collect())
        .unwrap_or_default();

    let pb = if opts.progress {
        let pb = ProgressBar::new(clips.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        pb.set_prefix(name.to_string());
        pb
    } else {
        ProgressBar::hidden()
    };
    let outcomes: Vec<(Outcome, u64, u64)> = clips
        .par_iter()
        .map(|c| {
            let (size, mtime) = file_key(&c.path);
            let out = if let (Some(e), Some((_, mels))) =
                (old_clips.get(c.path.as_path()), old.as_ref())
            {
                if e.size == size && e.mtime_ns == mtime && size > 0 {
                    let a = e.offset as usize * N_MELS;
                    let b = a + e.frames as usize * N_MELS;
                    mels.get(a..b)
                        .map(|s| Outcome::Reused(s.to_vec(), e.duration_s))
                } else {
                    None
                }
            } else {
                old_skipped
                    .get(c.path.as_path())
                    .filter(|s| s.size == size && s.mtime_ns == mtime)
                    .map(|s| Outcome::Skipped(s.reason.clone()))
            };
            let out = out.unwrap_or_else(|| decode_clip(&c.path));
            pb.inc(1);
            (out, size, mtime)
        })
        .collect();
    pb.finish_and_clear();

    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let (mut decoded, mut reused) = (0, 0);
    let tmp = dir.join("mels.f32.tmp");
    let mut w = BufWriter::new(fs::File::create(&tmp)?);
    let mut offset = 0u64;
    for (c, (out, size, mtime)) in clips.iter().zip(outcomes) {
        let (flat, frames, dur): (Vec<u8>, u64, f64) = match out {
            Outcome::Skipped(reason) => {
                skipped.push(SkippedFile {
                    path: c.path.clone(),
                    reason,
                    size,
                    mtime_ns: mtime,
                });
                continue;
            }
            Outcome::Reused(v, d) => {
                reused += 1;
                let n = (v.len() / N_MELS) as u64;
                (v.iter().flat_map(|x| x.to_le_bytes()).collect(), n, d)
            }
            Outcome::Decoded(frames, d) => {
                decoded += 1;
                let n = frames.len() as u64;
                (
                    frames
                        .iter()
                        .flatten()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                    n,
                    d,
                )
            }
        };
        w.write_all(&flat)?;
        entries.push(PreparedEntry {
            path: c.path.clone(),
            rel_path: c.rel_path.clone(),
            native_label: c.native_label.clone(),
            ucs_catid: c.ucs_catid.clone(),
            split: Split::Train,
            offset,
            frames,
            duration_s: dur,
            size,
            mtime_ns: mtime,
        });
        offset += frames;
    }
    w.flush()?;
    drop(w);

    // Split on what decoded; the label checks again, since skips can remove classes.
    let labels: Vec<&str> = entries.iter().map(|e| e.native_label.as_str()).collect();
    let classes = labels
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let write_skipped = |skipped: &[SkippedFile]| -> Result<()> {
        let mut s = String::new();
        for k in skipped {
            s.push_str(&format!("{}\t{}\n", k.path.display(), k.reason));
        }
        fs::write(dir.join("skipped.txt"), s)?;
        Ok(())
    };
    write_skipped(&skipped)?;
    if opts.trainable && classes < 2 {
        let _ = fs::remove_file(&tmp);
        bail!(
            "only {classes} class(es) left after skipping {} unreadable file(s) (see {}) — a classifier needs at least two",
            skipped.len(),
            dir.join("skipped.txt").display()
        );
    }
    let splits = stratified_split(
        &labels,
        &entries
            .iter()
            .map(|e| e.rel_path.as_str())
            .collect::<Vec<_>>(),
        opts.seed,
    );
    let mut split_counts = [0usize; 3];
    for (e, s) in entries.iter_mut().zip(&splits) {
        e.split = *s;
        split_counts[*s as usize] += 1;
    }
    if opts.trainable && (split_counts[1] == 0 || split_counts[2] == 0) {
        let _ = fs::remove_file(&tmp);
        bail!(
            "empty {} split: no native label has {MIN_SPLIT_CLIPS} or more decodable clips ({} clips in {classes} classes)",
            if split_counts[1] == 0 { "validation" } else { "test" },
            entries.len()
        );
    }
    fs::rename(&tmp, dir.join("mels.f32"))?;
    let idx = PreparedIndex {
        version: CACHE_VERSION,
        dataset: name.to_string(),
        n_mels: N_MELS,
        seed: opts.seed,
        clips: entries,
        skipped: skipped.clone(),
    };
    fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&idx)?)?;
    let bytes =
        fs::metadata(dir.join("mels.f32"))?.len() + fs::metadata(dir.join("index.json"))?.len();
    let hours = idx.clips.iter().map(|c| c.duration_s).sum::<f64>() / 3600.0;
    if !skipped.is_empty() {
        eprintln!(
            "{name}: skipped {} unreadable file(s), listed in {}",
            skipped.len(),
            dir.join("skipped.txt").display()
        );
        for k in skipped.iter().take(5) {
            eprintln!("  {}: {}", k.path.display(), k.reason);
        }
    }
    eprintln!(
        "{name}: {} clips, {classes} classes, {hours:.2} h, split {}/{}/{}, {decoded} decoded, {reused} reused, {} skipped ({:.1} s)",
        idx.clips.len(),
        split_counts[0],
        split_counts[1],
        split_counts[2],
        skipped.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(PrepareReport {
        dataset: name.to_string(),
        clips: idx.clips.len(),
        classes,
        hours,
        decoded,
        reused,
        skipped: skipped.len(),
        split_counts,
        bytes,
    })
}

fn decode_clip(path: &Path) -> Outcome {
    match decode_mono_44k(path) {
        Ok(a) => {
            let frames = mel_spectrogram(&a.samples);
            if frames.is_empty() {
                return Outcome::Skipped("no mel frames (too short)".into());
            }
            let dur = a.samples.len() as f64 / SAMPLE_RATE as f64;
            Outcome::Decoded(frames, dur)
        }
        Err(e) => Outcome::Skipped(e.to_string()),
    }
}

fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.read_to_end(&mut bytes)?;
    if bytes.len() % 4 != 0 {
        bail!("{}: size is not a multiple of 4", path.display());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// SplitMix64: a small deterministic generator for the split.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn label_seed(seed: u64, label: &str) -> u64 {
    // FNV-1a of the label mixed with the seed: each label's shuffle is independent of the others.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in label.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Stratified 8:1:1 split by label. `keys` (e.g. relative paths) fix the order inside a label so
/// the result does not depend on the input order. Labels with fewer than [`MIN_SPLIT_CLIPS`]
/// clips go to training only.
pub fn stratified_split(labels: &[&str], keys: &[&str], seed: u64) -> Vec<Split> {
    assert_eq!(labels.len(), keys.len());
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by_label.entry(l).or_default().push(i);
    }
    let mut out = vec![Split::Train; labels.len()];
    for (label, mut idx) in by_label {
        let n = idx.len();
        if n < MIN_SPLIT_CLIPS {
            continue;
        }
        idx.sort_by(|&a, &b| keys[a].cmp(keys[b]).then(a.cmp(&b)));
        let mut rng = SplitMix(label_seed(seed, label));
        for i in (1..n).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            idx.swap(i, j);
        }
        let tenth = ((n as f64) * 0.1).round().max(1.0) as usize;
        for &i in &idx[..tenth] {
            out[i] = Split::Val;
        }
        for &i in &idx[tenth..2 * tenth] {
            out[i] = Split::Test;
        }
    }
    out
}

/// One prepared clip: its log-mel frames (not normalised) and labels.
#[derive(Debug, Clone)]
pub struct PreparedClip {
    pub rel_path: String,
    pub native_label: String,
    pub ucs_catid: Option<String>,
    pub split: Split,
    pub mel: Vec<MelFrame>,
    pub duration_s: f64,
}

/// A prepared dataset, loaded in memory.
#[derive(Debug, Clone)]
pub struct PreparedDataset {
    pub name: String,
    pub clips: Vec<PreparedClip>,
    /// Distinct native labels, sorted: a clip's class index is its label's position here.
    pub labels: Vec<String>,
}

impl PreparedDataset {
    /// Class index of a native label.
    pub fn class_of(&self, label: &str) -> Option<usize> {
        self.labels.binary_search_by(|l| l.as_str().cmp(label)).ok()
    }

    /// Clips of one split.
    pub fn split(&self, s: Split) -> impl Iterator<Item = &PreparedClip> {
        self.clips.iter().filter(move |c| c.split == s)
    }
}

/// Loads one prepared dataset (after `sfxtag-train prepare`).
pub fn load_prepared(cache: &Path, dataset: &str) -> Result<PreparedDataset> {
    let dir = dataset_dir(cache, dataset);
    let idx: PreparedIndex =
        serde_json::from_slice(&fs::read(dir.join("index.json")).with_context(|| {
            format!(
                "{dataset} is not prepared in {} (run `sfxtag-train prepare --cache {}`)",
                dir.display(),
                cache.display()
            )
        })?)
        .with_context(|| format!("{}: bad index", dir.join("index.json").display()))?;
    if idx.version != CACHE_VERSION || idx.n_mels != N_MELS {
        bail!("{}: cache version {} / {} mels, expected {CACHE_VERSION} / {N_MELS}: run prepare again", dir.display(), idx.version, idx.n_mels);
    }
    let mels = read_f32(&dir.join("mels.f32"))?;
    let mut clips = Vec::with_capacity(idx.clips.len());
    for e in idx.clips {
        let a = e.offset as usize * N_MELS;
        let b = a + e.frames as usize * N_MELS;
        let flat = mels.get(a..b).with_context(|| {
            format!(
                "{}: clip {} lies outside mels.f32 (corrupt cache)",
                dir.display(),
                e.rel_path
            )
        })?;
        let mel = flat
            .chunks_exact(N_MELS)
            .map(|c| {
                let mut f = [0f32; N_MELS];
                f.copy_from_slice(c);
                f
            })
            .collect();
        clips.push(PreparedClip {
            rel_path: e.rel_path,
            native_label: e.native_label,
            ucs_catid: e.ucs_catid,
            split: e.split,
            mel,
            duration_s: e.duration_s,
        });
    }
    let mut labels: Vec<String> = clips.iter().map(|c| c.native_label.clone()).collect();
    labels.sort();
    labels.dedup();
    Ok(PreparedDataset {
        name: idx.dataset,
        clips,
        labels,
    })
}

/// Seconds of audio that `frames` log-mel frames cover.
pub fn frames_to_s(frames: u64) -> f64 {
    frames as f64 * HOP_SIZE as f64 / SAMPLE_RATE as f64
}

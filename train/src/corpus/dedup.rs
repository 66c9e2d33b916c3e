//! Finding the recordings that several sources share. Free sound effects recur across games (one
//! package's `anvil.ogg` is another's `mace.wav`), re-encoded, renamed, trimmed or padded; a
//! duplicate on both sides of a leave-one-source-out split would make the evaluation lie.
//!
//! Two checks, cheapest first:
//! 1. identical bytes (md5 of the file);
//! 2. the same decoded audio: similar length, the same average spectral shape, and a loudness
//!    envelope (downsampled log-mel energy) whose normalised cross-correlation at the best lag
//!    is near 1.
//!
//! Of each group of duplicates the copy in the earliest source (package priority order) is kept;
//! the others are written to `duplicates.csv` and left out of everything built on the corpus.

use sfxtag_core::frontend::{MelFrame, N_MELS};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// File name of the duplicate list inside the cache folder.
pub const DUPLICATES_FILE: &str = "duplicates.csv";

/// Envelope points per second ≈ 43 frames/s ÷ this.
const ENVELOPE_DECIMATION: usize = 4;
/// Shortest/longest length ratio that can still be the same recording (trimmed or padded).
pub const MIN_LENGTH_RATIO: f32 = 0.7;
/// Cosine of the centred average log-mel spectra.
pub const MIN_SPECTRAL_COSINE: f32 = 0.97;
/// Normalised cross-correlation of the envelopes at the best lag (finds the alignment).
pub const MIN_ENVELOPE_NCC: f32 = 0.9;
/// Correlation of the aligned log-mel spectrograms with each band's and each frame's mean
/// removed: the same recording, not just the same kind of sound (two takes of a footstep share
/// an envelope and a spectral shape, not their time–frequency detail).
pub const MIN_SPECTROGRAM_CORR: f32 = 0.95;
/// The aligned spectrograms' difference (less its mean: a gain change) over the spectrogram's
/// own spread: re-encodes and resamples stay far below this, different takes above it.
pub const MAX_RESIDUAL: f32 = 0.15;
/// Envelopes shorter than this many points are compared frame by frame (no decimation).
const SHORT_ENVELOPE: usize = 12;
/// The decimated envelopes must agree this well before the frame-exact comparison.
const COARSE_NCC: f32 = 0.8;

/// What identifies a recording, computed from its log-mel frames.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    pub frames: usize,
    /// Average log-mel spectrum, centred and unit-length (its shape, not its level).
    spectrum: [f32; N_MELS],
    /// Per-frame mean log-mel energy.
    frame_energy: Vec<f32>,
    /// `frame_energy` averaged over blocks of [`ENVELOPE_DECIMATION`] frames.
    envelope: Vec<f32>,
    /// The log-mel frames themselves, for the final, detailed comparison.
    mel: Vec<MelFrame>,
}

impl Fingerprint {
    pub fn new(mel: &[MelFrame]) -> Self {
        let mut spectrum = [0f32; N_MELS];
        let mut frame_energy = Vec::with_capacity(mel.len());
        for f in mel {
            let mut e = 0.0;
            for (s, &v) in spectrum.iter_mut().zip(f.iter()) {
                *s += v;
                e += v;
            }
            frame_energy.push(e / N_MELS as f32);
        }
        let mean = spectrum.iter().sum::<f32>() / N_MELS as f32;
        for s in spectrum.iter_mut() {
            *s -= mean;
        }
        let norm = spectrum.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for s in spectrum.iter_mut() {
                *s /= norm;
            }
        }
        let envelope = frame_energy
            .chunks(ENVELOPE_DECIMATION)
            .map(|c| c.iter().sum::<f32>() / c.len() as f32)
            .collect();
        Self {
            frames: mel.len(),
            spectrum,
            frame_energy,
            envelope,
            mel: mel.to_vec(),
        }
    }

    /// A similarity in `[0, 1]` when `self` and `other` look like one recording, else `None`.
    pub fn same_recording(&self, other: &Fingerprint) -> Option<f32> {
        let (a, b) = if self.frames <= other.frames {
            (self, other)
        } else {
            (other, self)
        };
        if a.frames == 0 || (a.frames as f32) < MIN_LENGTH_RATIO * b.frames as f32 {
            return None;
        }
        let cos: f32 = a.spectrum.iter().zip(&b.spectrum).map(|(x, y)| x * y).sum();
        if cos < MIN_SPECTRAL_COSINE {
            return None;
        }
        let (ncc, lag) = if a.envelope.len() < SHORT_ENVELOPE {
            best_ncc(&a.frame_energy, &b.frame_energy, None)?
        } else {
            // Coarse placement on the decimated envelopes, then frame-exact around it.
            let (coarse, lag) = best_ncc(&a.envelope, &b.envelope, None)?;
            if coarse < COARSE_NCC {
                return None;
            }
            let centre = lag * ENVELOPE_DECIMATION as isize;
            let span = ENVELOPE_DECIMATION as isize;
            best_ncc(
                &a.frame_energy,
                &b.frame_energy,
                Some((centre - span, centre + span)),
            )?
        };
        if ncc < MIN_ENVELOPE_NCC {
            return None;
        }
        let (corr, residual) = spectrogram_match(&a.mel, &b.mel, lag)?;
        (corr >= MIN_SPECTROGRAM_CORR && residual <= MAX_RESIDUAL).then_some(corr)
    }
}

/// Where `short[i]` meets `long[i + lag]`: the correlation of the two spectrograms with band
/// and frame means removed, and the spread of their difference relative to `short`'s spread.
fn spectrogram_match(short: &[MelFrame], long: &[MelFrame], lag: isize) -> Option<(f32, f32)> {
    let lo = (-lag).max(0) as usize;
    let hi = ((long.len() as isize - lag).min(short.len() as isize)).max(0) as usize;
    if hi <= lo {
        return None;
    }
    let x = &short[lo..hi];
    let y = &long[(lo as isize + lag) as usize..(hi as isize + lag) as usize];
    let double_centred = |frames: &[MelFrame]| -> Vec<f32> {
        let n = frames.len() as f32;
        let mut band = [0f32; N_MELS];
        for f in frames {
            for (m, v) in band.iter_mut().zip(f) {
                *m += v / n;
            }
        }
        let mut out = Vec::with_capacity(frames.len() * N_MELS);
        for f in frames {
            let row: Vec<f32> = f.iter().zip(band).map(|(v, m)| v - m).collect();
            let rm = row.iter().sum::<f32>() / N_MELS as f32;
            out.extend(row.iter().map(|v| v - rm));
        }
        out
    };
    let corr = ncc(&double_centred(x), &double_centred(y))?;
    let flat_x: Vec<f32> = x.iter().flatten().copied().collect();
    let diff: Vec<f32> = x
        .iter()
        .flatten()
        .zip(y.iter().flatten())
        .map(|(a, b)| a - b)
        .collect();
    let spread = |v: &[f32]| {
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / v.len() as f32).sqrt()
    };
    let sx = spread(&flat_x);
    if sx <= 0.0 {
        return None;
    }
    Some((corr, spread(&diff) / sx))
}

/// The highest normalised cross-correlation of `short` against every placement inside `long`
/// (plus one point of overhang either side, for alignment jitter), with its lag; `lags` limits
/// the placements searched. `None` when either is flat (no envelope to compare: silence or a
/// constant tone says nothing).
pub fn best_ncc(short: &[f32], long: &[f32], lags: Option<(isize, isize)>) -> Option<(f32, isize)> {
    if short.len() < 2 {
        return None;
    }
    let mut best: Option<(f32, isize)> = None;
    let max_lag = long.len() as isize - short.len() as isize + 1;
    let (from, to) = match lags {
        Some((a, b)) => (a.max(-1), b.min(max_lag)),
        None => (-1, max_lag),
    };
    for lag in from..=to {
        // Overlap of short[i] with long[i + lag].
        let lo = (-lag).max(0) as usize;
        let hi = ((long.len() as isize - lag).min(short.len() as isize)).max(0) as usize;
        if hi <= lo || hi - lo < short.len().saturating_sub(1).max(2) {
            continue;
        }
        let xs = &short[lo..hi];
        let ys = &long[(lo as isize + lag) as usize..(hi as isize + lag) as usize];
        if let Some(r) = ncc(xs, ys) {
            if best.is_none_or(|(b, _)| r > b) {
                best = Some((r, lag));
            }
        }
    }
    best
}

fn ncc(x: &[f32], y: &[f32]) -> Option<f32> {
    let n = x.len() as f32;
    let (mx, my) = (x.iter().sum::<f32>() / n, y.iter().sum::<f32>() / n);
    let (mut sxy, mut sxx, mut syy) = (0f32, 0f32, 0f32);
    for (&a, &b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    // A flat envelope (std below 1e-3 of the log-mel scale) has no shape to match.
    if sxx / n < 1e-6 || syy / n < 1e-6 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// One clip taking part in deduplication, in priority order (earlier is kept).
#[derive(Debug, Clone)]
pub struct Item {
    pub dataset: String,
    pub rel_path: String,
    pub md5: String,
    pub fingerprint: Fingerprint,
}

/// A clip left out because it is the same recording as a kept one.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub dataset: String,
    pub rel_path: String,
    pub kept_dataset: String,
    pub kept_rel_path: String,
    /// `md5` (identical bytes) or `audio` (the same decoded audio).
    pub method: &'static str,
    pub score: f32,
}

/// Finds the duplicates among `items` (given in priority order). Each item is compared with the
/// kept items of similar length; the first kept match wins.
pub fn find_duplicates(items: &[Item]) -> Vec<Duplicate> {
    let mut out = Vec::new();
    let mut by_md5: HashMap<&str, usize> = HashMap::new();
    // Kept items by length, for the candidate window of the audio check.
    let mut kept_by_frames: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        if !it.md5.is_empty() {
            if let Some(&k) = by_md5.get(it.md5.as_str()) {
                out.push(dup(it, &items[k], "md5", 1.0));
                continue;
            }
        }
        let f = &it.fingerprint;
        let lo = (f.frames as f32 * MIN_LENGTH_RATIO).floor() as usize;
        let hi = (f.frames as f32 / MIN_LENGTH_RATIO).ceil() as usize;
        let mut best: Option<(usize, f32)> = None;
        for (_, ks) in kept_by_frames.range(lo..=hi) {
            for &k in ks {
                if let Some(s) = f.same_recording(&items[k].fingerprint) {
                    if best.is_none_or(|(bk, bs)| s > bs || (s == bs && k < bk)) {
                        best = Some((k, s));
                    }
                }
            }
        }
        match best {
            Some((k, s)) => out.push(dup(it, &items[k], "audio", s)),
            None => {
                if !it.md5.is_empty() {
                    by_md5.insert(&it.md5, i);
                }
                kept_by_frames.entry(f.frames).or_default().push(i);
            }
        }
    }
    out
}

fn dup(it: &Item, kept: &Item, method: &'static str, score: f32) -> Duplicate {
    Duplicate {
        dataset: it.dataset.clone(),
        rel_path: it.rel_path.clone(),
        kept_dataset: kept.dataset.clone(),
        kept_rel_path: kept.rel_path.clone(),
        method,
        score,
    }
}

/// Writes `duplicates.csv` (`dataset,rel_path,kept_dataset,kept_rel_path,method,score`).
pub fn write(cache: &Path, dups: &[Duplicate]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(cache.join(DUPLICATES_FILE))?;
    w.write_record([
        "dataset",
        "rel_path",
        "kept_dataset",
        "kept_rel_path",
        "method",
        "score",
    ])?;
    for d in dups {
        w.write_record([
            d.dataset.as_str(),
            &d.rel_path,
            &d.kept_dataset,
            &d.kept_rel_path,
            d.method,
            &format!("{:.4}", d.score),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// `(dataset, rel_path)` of every clip left out as a duplicate; empty when dedup has not run.
pub fn excluded(cache: &Path) -> anyhow::Result<HashSet<(String, String)>> {
    let p = cache.join(DUPLICATES_FILE);
    if !p.exists() {
        return Ok(HashSet::new());
    }
    let mut r = csv::Reader::from_path(&p)?;
    let mut out = HashSet::new();
    for rec in r.records() {
        let rec = rec?;
        out.insert((rec[0].to_string(), rec[1].to_string()));
    }
    Ok(out)
}

/// Deduplicates the prepared corpus in `cache` (after `prepare`): every dataset of the corpus
/// index in index order, preceded by `references` (e.g. the test fixtures: a corpus clip that is
/// one of them is left out, so tests on them stay honest). Writes `duplicates.csv` and returns
/// the duplicates and how many clips were compared.
pub fn dedup_corpus(
    cache: &Path,
    references: &[std::path::PathBuf],
) -> anyhow::Result<(Vec<Duplicate>, usize)> {
    use anyhow::Context;
    let index = super::CorpusIndex::load(cache)?;
    let md5_of: HashMap<(&str, &str), &str> = index
        .clips
        .iter()
        .map(|c| ((c.dataset.as_str(), c.rel_path.as_str()), c.md5.as_str()))
        .collect();
    let mut items = Vec::new();
    for r in references {
        let a = sfxtag_core::audio::decode_mono_44k(r)
            .with_context(|| format!("cannot decode the reference {}", r.display()))?;
        let mel = sfxtag_core::frontend::mel_spectrogram(&a.samples);
        items.push(Item {
            dataset: "reference".into(),
            rel_path: r.display().to_string(),
            md5: super::md5_file(r)?,
            fingerprint: Fingerprint::new(&mel),
        });
    }
    let n_refs = items.len();
    for d in &index.datasets {
        let ds = crate::prepare::load_prepared(cache, &d.name)?;
        for c in ds.clips {
            let md5 = md5_of
                .get(&(d.name.as_str(), c.rel_path.as_str()))
                .copied()
                .unwrap_or("");
            items.push(Item {
                dataset: d.name.clone(),
                md5: md5.to_string(),
                fingerprint: Fingerprint::new(&c.mel),
                rel_path: c.rel_path,
            });
        }
    }
    let dups = find_duplicates(&items);
    write(cache, &dups)?;
    Ok((dups, items.len() - n_refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic "recording": a spectral shape and an envelope with a few bursts.
    fn mel(frames: usize, seed: u32, offset: usize, gain: f32) -> Vec<MelFrame> {
        (0..frames)
            .map(|t| {
                let tt = t + offset;
                let env = 1.0
                    + ((tt as f32 * 0.37 + seed as f32).sin() * 2.0).max(0.0)
                    + if (tt / 7 + seed as usize).is_multiple_of(3) {
                        1.5
                    } else {
                        0.0
                    };
                let mut f = [0f32; N_MELS];
                for (b, v) in f.iter_mut().enumerate() {
                    let shape = ((b as f32 * 0.2 + seed as f32).cos() + 1.5) * 0.5;
                    *v = env * shape * gain;
                }
                f
            })
            .collect()
    }

    fn item(ds: &str, rel: &str, md5: &str, m: &[MelFrame]) -> Item {
        Item {
            dataset: ds.into(),
            rel_path: rel.into(),
            md5: md5.into(),
            fingerprint: Fingerprint::new(m),
        }
    }

    #[test]
    fn finds_planted_duplicates_and_keeps_the_first_source() {
        let a = mel(200, 1, 0, 1.0);
        let other = mel(200, 2, 0, 1.0);
        // The same recording re-encoded louder and trimmed by 20 frames at the start, and one
        // padded with 15 frames of silence.
        let trimmed: Vec<MelFrame> = mel(200, 1, 0, 1.1)[20..].to_vec();
        let mut padded = vec![[0f32; N_MELS]; 15];
        padded.extend(mel(200, 1, 0, 1.0));
        let items = vec![
            item("0ad", "a.ogg", "m1", &a),
            item("nexuiz", "other.ogg", "m2", &other),
            item("nexuiz", "copy.wav", "m1", &a), // same bytes
            item("ufoai", "a_louder_trimmed.ogg", "m3", &trimmed),
            item("ufoai", "a_padded.ogg", "m4", &padded),
        ];
        let d = find_duplicates(&items);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(
            (
                d[0].rel_path.as_str(),
                d[0].kept_rel_path.as_str(),
                d[0].method
            ),
            ("copy.wav", "a.ogg", "md5")
        );
        assert_eq!(
            (
                d[1].rel_path.as_str(),
                d[1].kept_dataset.as_str(),
                d[1].method
            ),
            ("a_louder_trimmed.ogg", "0ad", "audio")
        );
        assert_eq!(
            (d[2].rel_path.as_str(), d[2].kept_rel_path.as_str()),
            ("a_padded.ogg", "a.ogg")
        );
    }

    #[test]
    fn different_recordings_and_silence_are_not_duplicates() {
        let silence = vec![[0f32; N_MELS]; 100];
        let items = vec![
            item("x", "a", "", &mel(100, 1, 0, 1.0)),
            item("x", "b", "", &mel(100, 5, 0, 1.0)),
            item("x", "c", "", &mel(100, 1, 37, 1.0)), // same source, another passage
            item("x", "s1", "", &silence),
            item("y", "s2", "", &silence),
            item("y", "long", "", &mel(400, 1, 0, 1.0)), // far longer
        ];
        assert!(find_duplicates(&items).is_empty());
    }

    #[test]
    fn ncc_placement_and_flat_inputs() {
        let long: Vec<f32> = (0..50).map(|i| ((i * i) % 17) as f32).collect();
        let short = long[10..30].to_vec();
        let (r, lag) = best_ncc(&short, &long, None).unwrap();
        assert!((r - 1.0).abs() < 1e-5 && lag == 10, "{r} at {lag}");
        assert_eq!(best_ncc(&[1.0; 10], &long, None), None);
        assert!(best_ncc(&short, &long, Some((0, 5))).unwrap().0 < 0.99);
    }
}

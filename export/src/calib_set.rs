//! The calibration set of an export, from audio files: every `holdout_every`-th file (sorted by
//! path) held back for the int8 quality gates, the rest cut into model windows and evenly
//! subsampled. `sfxtag-export` and the trainer's export of labelled heads share it, so the same
//! files give the same int8 encoder.

use sfxtag_core::frontend::{mel_spectrogram, model_windows, ModelWindow};
use std::path::{Path, PathBuf};

/// Extensions read as calibration audio.
pub const AUDIO_EXT: &[&str] = &["wav", "ogg", "oga", "mp3", "flac"];

#[derive(Debug, thiserror::Error)]
pub enum CalibSetError {
    #[error("calibration path {0} does not exist")]
    Missing(PathBuf),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Audio files under `paths` (folders searched recursively), sorted, without repeats.
pub fn audio_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CalibSetError> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), CalibSetError> {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| CalibSetError::Io {
                path: p.to_path_buf(),
                source,
            })?;
            for e in rd {
                let e = e.map_err(|source| CalibSetError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                walk(&e.path(), out)?;
            }
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXT.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p.to_path_buf());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(CalibSetError::Missing(p.clone()));
        }
        walk(p, &mut out)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The model windows of one audio file.
pub fn file_windows(path: &Path) -> Result<Vec<Box<ModelWindow>>, sfxtag_core::audio::AudioError> {
    let audio = sfxtag_core::audio::decode_mono_44k(path)?;
    Ok(model_windows(&mel_spectrogram(&audio.samples)))
}

/// At most `max` of `v`, evenly spaced (all of them for `max == 0`).
pub fn subsample(v: Vec<Box<ModelWindow>>, max: usize) -> Vec<Box<ModelWindow>> {
    if v.len() <= max || max == 0 {
        return v;
    }
    let n = v.len();
    v.into_iter()
        .enumerate()
        .filter(|(i, _)| (i * max) / n != ((i + 1) * max) / n)
        .map(|(_, w)| w)
        .collect()
}

/// Calibration and held-out windows of a list of files.
#[derive(Default)]
pub struct CalibSet {
    pub cal: Vec<Box<ModelWindow>>,
    pub held: Vec<Box<ModelWindow>>,
    pub cal_files: usize,
    pub held_files: usize,
    /// Files that did not decode, with the reason (one bad file does not sink an export).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Splits `files` (sorted) into calibration and held-out windows.
pub fn split(files: &[PathBuf], holdout_every: usize, max_calib: usize) -> CalibSet {
    let every = holdout_every.max(2);
    let mut s = CalibSet::default();
    for (i, f) in files.iter().enumerate() {
        let w = match file_windows(f) {
            Ok(w) => w,
            Err(e) => {
                s.skipped.push((f.clone(), e.to_string()));
                continue;
            }
        };
        if files.len() > 1 && i % every == every - 1 {
            s.held_files += 1;
            s.held.extend(w);
        } else {
            s.cal_files += 1;
            s.cal.extend(w);
        }
    }
    s.cal = subsample(std::mem::take(&mut s.cal), max_calib);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsample_is_even_and_bounded() {
        let v: Vec<Box<ModelWindow>> = (0..10)
            .map(|i| {
                let mut w = Box::new([[0f32; 96]; 100]);
                w[0][0] = i as f32;
                w
            })
            .collect();
        let s = subsample(v, 4);
        assert_eq!(s.len(), 4);
        let firsts: Vec<f32> = s.iter().map(|w| w[0][0]).collect();
        assert_eq!(firsts, vec![2.0, 4.0, 7.0, 9.0]);
    }

    #[test]
    fn missing_paths_are_named() {
        let e = audio_files(&[PathBuf::from("/nonexistent/x")]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x"));
    }
}

//! User-supplied sources: a folder of UCS-named files (the CatID comes from each name,
//! [`sfxtag_core::ucs::parse_name`]) or a CSV list `path,label` (paths relative to the CSV file).

use super::{check_label_cat_id, walk_audio, Clip, DatasetInfo, AUDIO_EXTS};
use anyhow::{bail, Context, Result};
use sfxtag_core::ucs;
use std::path::{Path, PathBuf};

/// A folder of UCS-named files: the CatID (from the name) is both the native and the UCS label.
/// Names that are not UCS names, or carry an archived CatID, are an error listing them.
pub fn ucs_dir_dataset(name: &str, dir: &Path, licence: &str) -> Result<(DatasetInfo, Vec<Clip>)> {
    if !dir.is_dir() {
        bail!("--ucs-dir {}: not a folder", dir.display());
    }
    let mut clips = Vec::new();
    let mut bad = Vec::new();
    for rel in walk_audio(dir)? {
        let file = rel.rsplit('/').next().unwrap_or(&rel);
        match ucs::parse_name(file) {
            Ok(n) if n.cat_id.is_label() => clips.push(Clip {
                dataset: name.to_string(),
                path: dir.join(&rel),
                rel_path: rel.clone(),
                native_label: n.cat_id.cat_id.to_string(),
                ucs_catid: Some(n.cat_id.cat_id.to_string()),
                licence: licence.to_string(),
                md5: super::md5_file(&dir.join(&rel)).unwrap_or_default(),
            }),
            Ok(n) => bad.push(format!(
                "{rel}: {}",
                ucs::UcsError::ArchivedLabel(n.cat_id.cat_id.to_string())
            )),
            Err(e) => bad.push(format!("{rel}: {e}")),
        }
    }
    if !bad.is_empty() {
        bail!(
            "--ucs-dir {}: {} file(s) are not labelled by a usable UCS CatID (a UCS folder needs every name to start with one):\n  {}",
            dir.display(),
            bad.len(),
            bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
    if clips.is_empty() {
        bail!(
            "--ucs-dir {}: no audio files ({})",
            dir.display(),
            AUDIO_EXTS.join(", ")
        );
    }
    let info = DatasetInfo {
        name: name.to_string(),
        source: format!("ucs-dir:{}", dir.display()),
        version: String::new(),
        licences: vec![licence.to_string()],
        root: dir.to_path_buf(),
        clips: clips.len(),
        ucs_labels: true,
        missing: Vec::new(),
        unlabelled: 0,
        group: String::new(),
    };
    Ok((info, clips))
}

/// A CSV list `path,label` (header required; paths relative to the CSV's folder or absolute).
/// A label that is a UCS CatID is also recorded as the clip's CatID; an optional `ucs_catid`
/// column gives it explicitly (and must then be valid).
pub fn csv_dataset(name: &str, file: &Path, licence: &str) -> Result<(DatasetInfo, Vec<Clip>)> {
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut rdr =
        csv::Reader::from_path(file).with_context(|| format!("cannot read {}", file.display()))?;
    let headers: Vec<String> = rdr
        .headers()?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (Some(pc), Some(lc)) = (col("path"), col("label")) else {
        bail!(
            "{}: the header must name the columns `path` and `label` (found `{}`)",
            file.display(),
            headers.join(",")
        );
    };
    let uc = col("ucs_catid");
    let mut clips = Vec::new();
    let mut missing = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}:{}: bad CSV row", file.display(), i + 2))?;
        let path = rec.get(pc).unwrap_or("").trim();
        let label = rec.get(lc).unwrap_or("").trim();
        if path.is_empty() || label.is_empty() {
            bail!("{}:{}: empty path or label", file.display(), i + 2);
        }
        let ucs_catid = match uc
            .map(|c| rec.get(c).unwrap_or("").trim())
            .filter(|s| !s.is_empty())
        {
            Some(c) => Some(
                check_label_cat_id(c)
                    .with_context(|| format!("{}:{}", file.display(), i + 2))?
                    .cat_id
                    .to_string(),
            ),
            None => check_label_cat_id(label).ok().map(|e| e.cat_id.to_string()),
        };
        let full = if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            base.join(path)
        };
        if !full.exists() {
            missing.push(path.to_string());
        }
        clips.push(Clip {
            dataset: name.to_string(),
            path: full.clone(),
            rel_path: path.to_string(),
            native_label: label.to_string(),
            ucs_catid,
            licence: licence.to_string(),
            md5: super::md5_file(&full).unwrap_or_default(),
        });
    }
    if clips.is_empty() {
        bail!("{}: no rows", file.display());
    }
    let info = DatasetInfo {
        name: name.to_string(),
        source: format!("csv:{}", file.display()),
        version: String::new(),
        licences: vec![licence.to_string()],
        root: base,
        clips: clips.len(),
        ucs_labels: clips.iter().all(|c| c.ucs_catid.is_some()),
        missing,
        unlabelled: 0,
        group: String::new(),
    };
    Ok((info, clips))
}

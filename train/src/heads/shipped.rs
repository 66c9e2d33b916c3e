//! A reference set as the daemon ships it (`refs.json`, format `sfxtag-refs` v1: z-scored
//! embeddings as base64 little-endian f32, each with its label and the file it came from), read
//! for baseline (a) of the evaluation: today's kNN over the shipped references.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct RefsFile {
    format: String,
    version: u32,
    taxonomy: String,
    dim: usize,
    #[serde(default)]
    zscored: bool,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    label: String,
    source: String,
    embedding: String,
}

/// The entries of a reference set.
pub struct ShippedRefs {
    pub taxonomy: String,
    pub dim: usize,
    pub labels: Vec<String>,
    pub sources: Vec<String>,
    /// `labels.len() × dim`, z-scored.
    pub rows: Vec<f32>,
}

impl ShippedRefs {
    pub fn load(path: &Path) -> Result<Self> {
        let f: RefsFile = serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a reference set", path.display()))?;
        if f.format != "sfxtag-refs" || f.version != 1 || !f.zscored {
            bail!(
                "{}: expected a z-scored sfxtag-refs v1 file, found {} v{}",
                path.display(),
                f.format,
                f.version
            );
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut rows = Vec::with_capacity(f.entries.len() * f.dim);
        let mut labels = Vec::new();
        let mut sources = Vec::new();
        for (i, e) in f.entries.into_iter().enumerate() {
            let bytes = b64
                .decode(&e.embedding)
                .with_context(|| format!("{}: entry {i}: bad base64", path.display()))?;
            if bytes.len() != f.dim * 4 {
                bail!(
                    "{}: entry {i} has {} bytes, expected {}",
                    path.display(),
                    bytes.len(),
                    f.dim * 4
                );
            }
            rows.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            labels.push(e.label);
            sources.push(e.source);
        }
        Ok(Self {
            taxonomy: f.taxonomy,
            dim: f.dim,
            labels,
            sources,
            rows,
        })
    }

    /// The Debian package an entry's source path came from (`…/unpacked/<package>/…`).
    pub fn package_of(source: &str) -> Option<&str> {
        let i = source.find("unpacked/")? + "unpacked/".len();
        source[i..].split('/').next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_reference_file() {
        let dir = tempfile::tempdir().unwrap();
        let emb: Vec<u8> = [1.0f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(emb);
        let p = dir.path().join("refs.json");
        std::fs::write(
            &p,
            format!(r#"{{"format":"sfxtag-refs","version":1,"model":"m","model_version":"1","taxonomy":"ucs-catid","dim":2,"zscored":true,"entries":[{{"label":"DOORWood","source":".cache/corpus/unpacked/0ad-data/_zip/audio/a.ogg","window":0,"embedding":"{b64}"}}]}}"#),
        )
        .unwrap();
        let r = ShippedRefs::load(&p).unwrap();
        assert_eq!(r.rows, vec![1.0, -2.0]);
        assert_eq!(r.labels, ["DOORWood"]);
        assert_eq!(ShippedRefs::package_of(&r.sources[0]), Some("0ad-data"));
    }
}

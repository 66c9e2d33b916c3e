//! Finding and loading a model (architecture.md §5): manifest (validated, sha256-verified),
//! tract encoder, labelled head, kNN reference set.
//!
//! Resolution of the model directory when `--model` is not given, first hit wins:
//! 1. `models/default`, then `models/aisfx-cnn9`, relative to the current directory;
//! 2. the same two relative to the executable's directory and its parents up to three levels
//!    (so `target/release/sfxtag` finds the checkout's `models/`);
//! 3. `/usr/share/sfxtag/models/default`, then `/usr/share/sfxtag/models/aisfx-cnn9`.

use crate::classify::{CatIdHead, Classifier, HeadClassifier, LabelPolicy};
use crate::encoder::Encoder;
use crate::refs::RefSet;
use anyhow::{Context, Result};
use sfxtag_core::manifest::{Manifest, MANIFEST_FILE};
use std::path::{Path, PathBuf};

/// Names tried under each `models/` folder, in order.
pub const DEFAULT_NAMES: [&str; 2] = ["default", "aisfx-cnn9"];
pub const SYSTEM_MODELS: &str = "/usr/share/sfxtag/models";

/// Help text for `--model`.
pub const MODEL_HELP: &str = "Model directory (manifest.toml + encoder.onnx). Default: the first \
of models/default and models/aisfx-cnn9 found relative to the current directory, then relative \
to the executable (and up to three parent folders), then in /usr/share/sfxtag/models";

/// Every candidate directory, in resolution order.
pub fn candidates() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = vec![PathBuf::from("models")];
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..4 {
            let Some(d) = dir else { break };
            bases.push(d.join("models"));
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    bases.push(PathBuf::from(SYSTEM_MODELS));
    let mut out = Vec::new();
    for b in bases {
        for n in DEFAULT_NAMES {
            let p = b.join(n);
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// The model directory to use: `explicit` if given, else the first candidate with a manifest.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let c = candidates();
    c.iter()
        .find(|p| p.join(MANIFEST_FILE).is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no model found. Looked for {MANIFEST_FILE} in:\n  {}\nGive one with --model DIR \
                 (a directory written by sfxtag-export)",
                c.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )
        })
}

/// Everything loaded from a model directory.
pub struct Model {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub encoder: Encoder,
    /// Index into `encoder.logits` of the labelled head used for `top`.
    pub head_index: Option<usize>,
    /// Index into `encoder.logits` of the CatID head beside a Category head.
    pub catid_index: Option<usize>,
    pub classifier: Classifier,
    /// `id@version`, as published in payloads.
    pub name: String,
}

/// Which of the model's encoder files runs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// int8 where tract has fast int8 kernels (ARM, x86-64 with a VNNI extension); else the
    /// fp32 twin when the model has one.
    #[default]
    Auto,
    /// The int8 encoder (`encoder.file`).
    Int8,
    /// The fp32 twin (`encoder.fp32_file`); an error when the model has none.
    Fp32,
}

impl Precision {
    /// The encoder file to load for this choice.
    pub fn encoder_file(self, m: &Manifest) -> Result<String> {
        match (self, &m.encoder.fp32_file) {
            (Precision::Int8, _) => Ok(m.encoder.file.clone()),
            (Precision::Fp32, Some(f)) => Ok(f.clone()),
            (Precision::Fp32, None) => anyhow::bail!(
                "--precision fp32: model '{}' has no fp32 encoder (manifest encoder.fp32_file); use int8",
                m.model.id
            ),
            (Precision::Auto, Some(f)) if !int8_is_fast() => Ok(f.clone()),
            (Precision::Auto, _) => Ok(m.encoder.file.clone()),
        }
    }
}

/// Whether tract runs int8 convolutions fast on this CPU. On x86-64 its int8 kernels need
/// AVX-512-VNNI or AVX-VNNI; without them int8 falls back to slow generic code (measured on an
/// AVX2-only EPYC: 3.96 s per window, fp32 62.3 ms; with AVX-512-VNNI: int8 24.3 ms, fp32
/// 42.1 ms). ARM boards have fast int8 kernels (NEON dot products).
pub fn int8_is_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512vnni") || std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

pub struct LoadOptions<'a> {
    pub precision: Precision,
    pub refs: Option<&'a Path>,
    /// The user's own reference set (e.g. from `enroll --ucs-library`), labelled first.
    pub user_refs: Option<&'a Path>,
    pub top_k: usize,
    /// Overrides the manifest's `knn.k`.
    pub knn_k: Option<usize>,
    pub policy: LabelPolicy,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        Self {
            precision: Precision::Auto,
            refs: None,
            user_refs: None,
            top_k: 3,
            knn_k: None,
            policy: LabelPolicy::default(),
        }
    }
}

/// Loads the manifest only (validated and hash-checked), with context naming the directory.
pub fn load_manifest(dir: &Path) -> Result<Manifest> {
    if !dir.join(MANIFEST_FILE).is_file() {
        anyhow::bail!(
            "{} is not a model directory: it has no {MANIFEST_FILE}",
            dir.display()
        );
    }
    Manifest::load(dir).with_context(|| format!("model {} is unusable", dir.display()))
}

impl Model {
    /// Loads and checks a model directory (with the allocator tuned for loading: see
    /// [`crate::allocator`]).
    pub fn load(dir: &Path, opts: &LoadOptions<'_>) -> Result<Self> {
        crate::allocator::while_loading(|| Self::load_checked(dir, opts))
    }

    fn load_checked(dir: &Path, opts: &LoadOptions<'_>) -> Result<Self> {
        let manifest = load_manifest(dir)?;
        let picked = HeadClassifier::pick(&manifest.heads);
        let catid = picked
            .as_ref()
            .and_then(|(i, _)| CatIdHead::pick(&manifest.heads, *i));
        let used_heads: Vec<usize> = picked
            .iter()
            .map(|(i, _)| *i)
            .chain(catid.iter().map(|(i, _)| *i))
            .collect();
        let encoder = Encoder::load(
            dir,
            &manifest,
            &opts.precision.encoder_file(&manifest)?,
            &used_heads,
        )?;
        // The encoder computes only the picked heads, in that order.
        let head_index = picked.as_ref().map(|_| 0);
        let catid_index = catid.as_ref().map(|_| 1);
        let head = picked.map(|(_, h)| h);
        let dim = manifest.encoder.embedding_dim;
        let id = &manifest.model.id;
        let refs = match (opts.refs, &manifest.knn) {
            (Some(p), _) => Some(
                RefSet::load(p, id, dim)
                    .with_context(|| format!("cannot use --refs {}", p.display()))?,
            ),
            (None, Some(k)) => {
                let p = dir.join(&k.file);
                let set = RefSet::load(&p, id, dim).with_context(|| {
                    format!("model {}: its kNN reference set is unusable", dir.display())
                })?;
                if set.taxonomy != k.taxonomy {
                    anyhow::bail!(
                        "model {}: manifest knn.taxonomy is {}, but {} holds {} labels",
                        dir.display(),
                        crate::refs::taxonomy_name(k.taxonomy),
                        k.file,
                        crate::refs::taxonomy_name(set.taxonomy)
                    );
                }
                Some(set)
            }
            (None, None) => None,
        };
        let user = match opts.user_refs {
            Some(p) => Some(
                RefSet::load(p, id, dim)
                    .with_context(|| format!("cannot use your references {}", p.display()))?,
            ),
            None => None,
        };
        if let Some(cats) = &opts.policy.categories {
            if let Some(bad) = cats
                .iter()
                .find(|c| !sfxtag_core::ucs::label_categories().contains(&c.as_str()))
            {
                anyhow::bail!(
                    "'{bad}' is not a UCS Category (labels.categories / --categories take Categories such as ANIMALS, DOORS, VOICES)"
                );
            }
        }
        let knn_k = opts
            .knn_k
            .or(manifest.knn.as_ref().map(|k| k.k))
            .unwrap_or(5)
            .max(1);
        let name = format!("{}@{}", manifest.model.id, manifest.model.version);
        let mut classifier = Classifier::new(head, refs, opts.top_k.max(1), knn_k);
        classifier.catid = catid.map(|(_, c)| c);
        classifier.user = user;
        classifier.policy = opts.policy.clone();
        Ok(Self {
            dir: dir.to_path_buf(),
            classifier,
            head_index,
            catid_index,
            encoder,
            manifest,
            name,
        })
    }

    /// The labelled head's logits of the last run.
    pub fn head_logits(&self) -> Option<&[f32]> {
        self.head_index.map(|i| self.encoder.logits[i].as_slice())
    }

    /// The CatID head's logits of the last run.
    pub fn catid_logits(&self) -> Option<&[f32]> {
        self.catid_index.map(|i| self.encoder.logits[i].as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_start_in_cwd_and_end_in_usr_share() {
        let c = candidates();
        assert_eq!(c[0], PathBuf::from("models/default"));
        assert_eq!(c[1], PathBuf::from("models/aisfx-cnn9"));
        assert_eq!(
            c.last().unwrap(),
            &PathBuf::from("/usr/share/sfxtag/models/aisfx-cnn9")
        );
    }

    #[test]
    fn missing_model_dir_says_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let err = load_manifest(d.path()).unwrap_err();
        assert!(err.to_string().contains("no manifest.toml"), "{err}");
    }
}

//! `models/<name>/manifest.toml`: the contract between `export` and the daemon (docs/architecture.md §5).
//!
//! A manifest names the frontend the model was trained with (the daemon refuses one it does not
//! implement), the encoder file and its outputs, the z-score statistics of published embeddings,
//! each head's taxonomy and ordered labels, an optional kNN reference set, provenance, the export
//! quality gates and the sha256 of every file (checked at load).

use crate::frontend;
use crate::ucs;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// The manifest's file name inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub model: ModelInfo,
    pub frontend: FrontendSpec,
    pub encoder: EncoderSpec,
    #[serde(default)]
    pub heads: Vec<HeadSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<KnnSpec>,
    pub provenance: Provenance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityGates>,
    /// File name (relative to the model directory) → lowercase hex sha256.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub id: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Licence of the weights (SPDX id), e.g. `CC-BY-4.0`.
    pub license: String,
    /// Credit that must ship with the weights.
    #[serde(default)]
    pub attribution: String,
}

/// The signal path (docs/architecture.md §3), spelled out so a mismatch names the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendSpec {
    pub sample_rate: u32,
    pub frame_size: usize,
    pub hop_size: usize,
    /// `hann-symmetric` (Essentia's Hann).
    pub window: String,
    /// `centred`: the first frame is centred on t = 0.
    pub framing: String,
    /// `power` (magnitude squared).
    pub spectrum: String,
    pub n_mels: usize,
    /// `htk`.
    pub mel_scale: String,
    /// `unit-sum`.
    pub mel_norm: String,
    pub f_min: f32,
    pub f_max: f32,
    /// `log10(1e4*x+1)`.
    pub compression: String,
    pub norm_min: f32,
    pub norm_max: f32,
    pub window_frames: usize,
    pub window_hop: usize,
}

impl FrontendSpec {
    /// The frontend `core::frontend` implements.
    pub fn implemented() -> Self {
        Self {
            sample_rate: frontend::SAMPLE_RATE,
            frame_size: frontend::FRAME_SIZE,
            hop_size: frontend::HOP_SIZE,
            window: "hann-symmetric".into(),
            framing: "centred".into(),
            spectrum: "power".into(),
            n_mels: frontend::N_MELS,
            mel_scale: "htk".into(),
            mel_norm: "unit-sum".into(),
            f_min: 0.0,
            f_max: frontend::F_MAX,
            compression: "log10(1e4*x+1)".into(),
            norm_min: frontend::NORM_MIN,
            norm_max: frontend::NORM_MAX,
            window_frames: frontend::WINDOW_FRAMES,
            window_hop: frontend::WINDOW_HOP,
        }
    }

    /// Fails with the first field that differs from the implemented frontend.
    pub fn check_supported(&self) -> Result<(), ManifestError> {
        let want = Self::implemented();
        let mismatch = |field: &str, found: String, expected: String| {
            Err(ManifestError::UnsupportedFrontend {
                field: format!("frontend.{field}"),
                found,
                expected,
            })
        };
        macro_rules! same {
            ($f:ident) => {
                if self.$f != want.$f {
                    return mismatch(
                        stringify!($f),
                        format!("{:?}", self.$f),
                        format!("{:?}", want.$f),
                    );
                }
            };
        }
        macro_rules! close {
            ($f:ident) => {
                if (self.$f - want.$f).abs() > 1e-4 * want.$f.abs().max(1.0) {
                    return mismatch(
                        stringify!($f),
                        format!("{:?}", self.$f),
                        format!("{:?}", want.$f),
                    );
                }
            };
        }
        same!(sample_rate);
        same!(frame_size);
        same!(hop_size);
        same!(window);
        same!(framing);
        same!(spectrum);
        same!(n_mels);
        same!(mel_scale);
        same!(mel_norm);
        close!(f_min);
        close!(f_max);
        same!(compression);
        close!(norm_min);
        close!(norm_max);
        same!(window_frames);
        same!(window_hop);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Int8,
    Fp32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// ONNX file, relative to the model directory.
    pub file: String,
    pub precision: Precision,
    pub opset: i64,
    /// `[1, 1, window_frames, n_mels]`.
    pub input_shape: [usize; 4],
    pub input_name: String,
    pub embedding_output: String,
    pub embedding_dim: usize,
    /// Per-dimension mean and std used to z-score published embeddings.
    pub embedding_mean: Vec<f32>,
    pub embedding_std: Vec<f32>,
    /// An optional fp32 twin of the encoder (same graph without quantisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32_file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Taxonomy {
    /// Labels are UCS categories (e.g. `DOORS`).
    #[serde(rename = "ucs-category")]
    UcsCategory,
    /// Labels are UCS CatIDs (e.g. `DOORWood`).
    #[serde(rename = "ucs-catid")]
    UcsCatId,
    /// Labels of any other taxonomy.
    #[serde(rename = "custom")]
    Custom,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    pub name: String,
    /// The ONNX output holding this head's logits (`logits_<name>`).
    pub output: String,
    pub taxonomy: Taxonomy,
    /// Ordered labels: logit `i` belongs to `labels[i]`. Empty for a head without label names
    /// (like the released aiSFX heads), which is loaded but never published.
    pub labels: Vec<String>,
    pub n_classes: usize,
    /// How the logits become probabilities (softmax(logits / temperature)); absent: T = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<HeadCalibration>,
    /// Per label (in label order), the calibrated probability at which the label is confident;
    /// empty: the head gives none (the daemon's configured default applies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<f32>,
    /// Per label, the share of the head's training draws that were of that class (sum 1): what
    /// its probabilities assume about a batch's mix, which batch prior adaptation
    /// ([`crate::priors`]) replaces by the batch's own. Empty: not recorded (taken as uniform).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub train_prior: Vec<f32>,
}

/// Temperature scaling of a head's logits, fitted on held-out predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadCalibration {
    /// `temperature` (the only method so far).
    pub method: String,
    pub temperature: f32,
    /// What it was fitted on, in words (e.g. the evaluation protocol).
    #[serde(default)]
    pub fitted_on: String,
}

impl HeadSpec {
    /// The softmax temperature of this head's logits (1 without calibration).
    pub fn temperature(&self) -> f32 {
        self.calibration.as_ref().map_or(1.0, |c| c.temperature)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnnSpec {
    /// Reference set file (see the daemon's `enroll`), relative to the model directory.
    pub file: String,
    pub taxonomy: Taxonomy,
    pub k: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub training_data: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub exported_by: String,
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    /// The command that measured it.
    pub command: String,
}

/// Export-time gates (int8 vs fp32), written by `export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct QualityGates {
    pub calibration: String,
    pub calibration_windows: usize,
    pub heldout_windows: usize,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    pub cosine_min_threshold: f64,
    /// Head name → fraction of held-out windows whose top-1 agrees with fp32.
    #[serde(default)]
    pub head_top1_agreement: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_macro_f1_drop: Option<f64>,
    /// How well the labelled heads name sounds they have not heard (e.g. leave-one-source-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelQuality>,
}

/// Label accuracy measured on held-out sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LabelQuality {
    /// The protocol, in words.
    pub protocol: String,
    /// The command that measured it.
    pub command: String,
    /// Metric name → value (e.g. `category_top1_mean`).
    pub metrics: BTreeMap<String, f64>,
}

/// Everything that can be wrong with a manifest or its model directory.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid manifest: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("manifest schema_version {found} is not supported (this sfxtag reads version {SCHEMA_VERSION}); re-export the model or upgrade sfxtag")]
    UnsupportedSchema { found: u32 },
    #[error("the model needs a frontend this sfxtag does not implement: {field} is {found}, expected {expected}")]
    UnsupportedFrontend {
        field: String,
        found: String,
        expected: String,
    },
    #[error("invalid manifest field {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("file {file} of the model is missing from the manifest's [files] table")]
    Unhashed { file: String },
    #[error("sha256 mismatch for {file}: manifest says {expected}, file has {found} (the model directory was modified or corrupted)")]
    HashMismatch {
        file: String,
        expected: String,
        found: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Parses and validates manifest text (no file checks).
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ManifestError> {
        // Read the version first so an old/new schema gets the right message, not a field error.
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u32>,
        }
        let v: Version = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        match v.schema_version {
            Some(SCHEMA_VERSION) => {}
            Some(found) => return Err(ManifestError::UnsupportedSchema { found }),
            None => return Err(invalid("schema_version", "missing")),
        }
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        m.validate()?;
        Ok(m)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("manifest serialises")
    }

    /// Checks everything that does not need the files.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ManifestError::UnsupportedSchema {
                found: self.schema_version,
            });
        }
        if self.model.id.trim().is_empty() {
            return Err(invalid("model.id", "empty"));
        }
        self.frontend.check_supported()?;
        let e = &self.encoder;
        let want_shape = [1, 1, self.frontend.window_frames, self.frontend.n_mels];
        if e.input_shape != want_shape {
            return Err(invalid(
                "encoder.input_shape",
                format!("{:?}, expected {:?}", e.input_shape, want_shape),
            ));
        }
        if e.embedding_dim == 0 {
            return Err(invalid("encoder.embedding_dim", "must be > 0"));
        }
        for (field, v) in [
            ("encoder.embedding_mean", &e.embedding_mean),
            ("encoder.embedding_std", &e.embedding_std),
        ] {
            if v.len() != e.embedding_dim {
                return Err(invalid(
                    field,
                    format!(
                        "has {} values, embedding_dim is {}",
                        v.len(),
                        e.embedding_dim
                    ),
                ));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(invalid(field, format!("value {i} is not finite")));
            }
        }
        if let Some(i) = e.embedding_std.iter().position(|&s| s <= 0.0) {
            return Err(invalid(
                "encoder.embedding_std",
                format!("value {i} is not positive"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, h) in self.heads.iter().enumerate() {
            let field = |f: &str| format!("heads[{i}].{f}");
            if h.name.is_empty()
                || !h
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    field("name"),
                    format!("'{}' must be [A-Za-z0-9_-]+", h.name),
                ));
            }
            if !names.insert(h.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("duplicate head '{}'", h.name),
                ));
            }
            if h.n_classes == 0 {
                return Err(invalid(field("n_classes"), "must be > 0"));
            }
            if !h.labels.is_empty() && h.labels.len() != h.n_classes {
                return Err(invalid(
                    field("labels"),
                    format!("{} labels for {} classes", h.labels.len(), h.n_classes),
                ));
            }
            check_labels(h.taxonomy, &h.labels, &field("labels"))?;
            if let Some(c) = &h.calibration {
                if c.method != "temperature" {
                    return Err(invalid(
                        field("calibration.method"),
                        format!("'{}' is not supported (temperature)", c.method),
                    ));
                }
                if !(c.temperature.is_finite() && c.temperature > 0.0) {
                    return Err(invalid(
                        field("calibration.temperature"),
                        "must be a positive number",
                    ));
                }
            }
            if !h.thresholds.is_empty() {
                if h.thresholds.len() != h.n_classes {
                    return Err(invalid(
                        field("thresholds"),
                        format!(
                            "{} thresholds for {} classes",
                            h.thresholds.len(),
                            h.n_classes
                        ),
                    ));
                }
                if let Some(i) = h.thresholds.iter().position(|t| !(0.0..=1.0).contains(t)) {
                    return Err(invalid(
                        field("thresholds"),
                        format!("value {i} is not a probability in [0, 1]"),
                    ));
                }
            }
            if !h.train_prior.is_empty() {
                if h.train_prior.len() != h.n_classes {
                    return Err(invalid(
                        field("train_prior"),
                        format!("{} shares for {} classes", h.train_prior.len(), h.n_classes),
                    ));
                }
                let sum: f32 = h.train_prior.iter().sum();
                if h.train_prior.iter().any(|p| !(p.is_finite() && *p >= 0.0))
                    || (sum - 1.0).abs() > 1e-3
                {
                    return Err(invalid(
                        field("train_prior"),
                        format!("must be shares of 0–1 that sum to 1 (they sum to {sum})"),
                    ));
                }
            }
        }
        if let Some(k) = &self.knn {
            if k.k == 0 {
                return Err(invalid("knn.k", "must be > 0"));
            }
        }
        for file in self.referenced_files() {
            if !self.files.contains_key(&file) {
                return Err(ManifestError::Unhashed { file });
            }
        }
        for (file, hash) in &self.files {
            if file.contains("..") || file.starts_with('/') || file.contains('\\') {
                return Err(invalid(
                    "files",
                    format!("'{file}' must be a plain file name in the model directory"),
                ));
            }
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    format!("files.\"{file}\""),
                    "not a sha256 hex digest",
                ));
            }
        }
        Ok(())
    }

    /// The files the manifest points at (encoder, its fp32 twin, kNN set).
    pub fn referenced_files(&self) -> Vec<String> {
        let mut v = vec![self.encoder.file.clone()];
        v.extend(self.encoder.fp32_file.clone());
        v.extend(self.knn.as_ref().map(|k| k.file.clone()));
        v
    }

    /// Reads `dir/manifest.toml`, validates it and verifies the sha256 of every listed file.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let m = Self::from_toml(&text, &path)?;
        m.verify_files(dir)?;
        Ok(m)
    }

    /// Verifies the sha256 of every file in `[files]`.
    pub fn verify_files(&self, dir: &Path) -> Result<(), ManifestError> {
        for (file, expected) in &self.files {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|source| ManifestError::Io {
                path: path.clone(),
                source,
            })?;
            let found = sha256_hex(&bytes);
            if !found.eq_ignore_ascii_case(expected) {
                return Err(ManifestError::HashMismatch {
                    file: file.clone(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
        Ok(())
    }
}

/// Checks that labels belong to their taxonomy (UCS labels must exist and not be archived).
pub fn check_labels(
    taxonomy: Taxonomy,
    labels: &[String],
    field: &str,
) -> Result<(), ManifestError> {
    match taxonomy {
        Taxonomy::Custom => Ok(()),
        Taxonomy::UcsCategory => {
            let cats = ucs::label_categories();
            match labels.iter().find(|l| !cats.contains(&l.as_str())) {
                Some(l) => Err(invalid(field, format!("'{l}' is not a UCS category"))),
                None => Ok(()),
            }
        }
        Taxonomy::UcsCatId => {
            for l in labels {
                let e = ucs::validate_cat_id(l).map_err(|e| invalid(field, e.to_string()))?;
                if !e.is_label() {
                    return Err(invalid(
                        field,
                        ucs::UcsError::ArchivedLabel(l.clone()).to_string(),
                    ));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir_files: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            model: ModelInfo {
                id: "test".into(),
                version: "1".into(),
                description: String::new(),
                license: "CC0-1.0".into(),
                attribution: String::new(),
            },
            frontend: FrontendSpec::implemented(),
            encoder: EncoderSpec {
                file: "encoder.onnx".into(),
                precision: Precision::Int8,
                opset: 17,
                input_shape: [1, 1, 100, 96],
                input_name: "input".into(),
                embedding_output: "embedding".into(),
                embedding_dim: 2,
                embedding_mean: vec![0.0, 0.0],
                embedding_std: vec![1.0, 1.0],
                fp32_file: None,
            },
            heads: vec![HeadSpec {
                name: "ucs".into(),
                output: "logits_ucs".into(),
                taxonomy: Taxonomy::UcsCategory,
                labels: vec!["DOORS".into(), "ANIMALS".into()],
                n_classes: 2,
                calibration: None,
                thresholds: Vec::new(),
                train_prior: Vec::new(),
            }],
            knn: None,
            provenance: Provenance::default(),
            quality: None,
            files: dir_files
                .iter()
                .map(|(n, b)| (n.to_string(), sha256_hex(b)))
                .collect(),
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let m = sample(&[("encoder.onnx", b"x")]);
        let text = m.to_toml();
        let back = Manifest::from_toml(&text, Path::new("m.toml")).unwrap();
        assert_eq!(m, back);
    }

    #[test]
    fn unknown_frontend_names_the_field() {
        let mut m = sample(&[("encoder.onnx", b"x")]);
        m.frontend.hop_size = 512;
        let text = m.to_toml();
        let err = Manifest::from_toml(&text, Path::new("m.toml")).unwrap_err();
        assert!(
            matches!(&err, ManifestError::UnsupportedFrontend { field, .. } if field == "frontend.hop_size"),
            "{err}"
        );
        assert!(err.to_string().contains("frontend.hop_size"));
    }

    #[test]
    fn newer_schema_is_refused_with_its_version() {
        let text = sample(&[("encoder.onnx", b"x")])
            .to_toml()
            .replace("schema_version = 1", "schema_version = 7");
        let err = Manifest::from_toml(&text, Path::new("m.toml")).unwrap_err();
        assert!(matches!(err, ManifestError::UnsupportedSchema { found: 7 }));
    }

    #[test]
    fn bad_labels_and_unhashed_files_are_errors() {
        let mut m = sample(&[("encoder.onnx", b"x")]);
        m.heads[0].labels[1] = "ARCHIVED".into();
        assert!(
            matches!(m.validate(), Err(ManifestError::Invalid { field, .. }) if field == "heads[0].labels")
        );
        let mut m = sample(&[]);
        m.files.clear();
        assert!(
            matches!(m.validate(), Err(ManifestError::Unhashed { file }) if file == "encoder.onnx")
        );
    }

    #[test]
    fn a_training_prior_has_one_share_per_class_summing_to_one() {
        let mut m = sample(&[("encoder.onnx", b"x")]);
        m.heads[0].train_prior = vec![0.25, 0.75];
        m.validate().unwrap();
        let back = Manifest::from_toml(&m.to_toml(), Path::new("m.toml")).unwrap();
        assert_eq!(back.heads[0].train_prior, vec![0.25, 0.75]);
        for bad in [
            vec![1.0],
            vec![0.5, 0.6],
            vec![-0.5, 1.5],
            vec![f32::NAN, 1.0],
        ] {
            m.heads[0].train_prior = bad.clone();
            assert!(
                matches!(m.validate(), Err(ManifestError::Invalid { field, .. }) if field == "heads[0].train_prior"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hash_mismatch_names_the_file() {
        let dir = std::env::temp_dir().join(format!("sfxtag-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = sample(&[("encoder.onnx", b"original")]);
        std::fs::write(dir.join("encoder.onnx"), b"original").unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), m.to_toml()).unwrap();
        assert!(Manifest::load(&dir).is_ok());
        std::fs::write(dir.join("encoder.onnx"), b"tampered").unwrap();
        let err = Manifest::load(&dir).unwrap_err();
        assert!(matches!(&err, ManifestError::HashMismatch { file, .. } if file == "encoder.onnx"));
        std::fs::remove_dir_all(&dir).ok();
    }
}

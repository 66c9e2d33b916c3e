//! Weights → model directory (architecture.md §5): fold, equalise, calibrate, quantise, gate, write
//! `encoder.onnx` (+ `encoder.fp32.onnx`) and `manifest.toml`, atomically.

use crate::calibrate::{self, Calibration};
use crate::equalize::{self, EqualizeReport};
use crate::fold;
use crate::graph;
use crate::parity::{self, Parity};
use crate::quantize::{self, ConvQuant};
use crate::runtime::{TractError, TractModel};
use crate::weights::{Cnn9Weights, WeightsError, EMBEDDING_DIM};
use sfxtag_core::frontend::ModelWindow;
use sfxtag_core::manifest::{
    self, EncoderSpec, FrontendSpec, HeadSpec, Manifest, ManifestError, ModelInfo, Precision,
    Provenance, QualityGates, Taxonomy,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const INT8_FILE: &str = "encoder.onnx";
pub const FP32_FILE: &str = "encoder.fp32.onnx";

/// Export-time thresholds for int8 vs fp32 on the held-out windows.
///
/// Defaults: worst-window embedding cosine ≥ 0.99 and mean ≥ 0.995. architecture.md §5 has
/// per-tensor int8 *without* equalisation at worst 0.980 on aiSFX, and with it 0.996 (mean
/// 0.9987): 0.99 sits between, so losing equalisation (or a broken calibration) fails the export
/// while normal window-to-window spread passes. Head top-1 agreement ≥ 0.9, checked only with
/// ≥ 20 held-out windows: on fewer, one near-tie flip already moves the rate by > 5 %.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gates {
    pub cosine_min: f64,
    pub cosine_mean: f64,
    pub head_top1_min: f64,
    pub head_top1_min_windows: usize,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            cosine_min: 0.99,
            cosine_mean: 0.995,
            head_top1_min: 0.9,
            head_top1_min_windows: 20,
        }
    }
}

/// Labels of one head for the manifest (heads not given get `custom` and no labels).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadLabels {
    pub taxonomy: Taxonomy,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub id: String,
    pub version: String,
    pub description: String,
    /// SPDX id of the weights' licence.
    pub license: String,
    pub attribution: String,
    pub provenance: Provenance,
    /// Head name → labels.
    pub head_labels: BTreeMap<String, HeadLabels>,
    pub calibration: Calibration,
    /// Write the int8 `encoder.onnx`.
    pub int8: bool,
    /// Write the fp32 graph (`encoder.fp32.onnx` beside int8, or `encoder.onnx` alone).
    pub fp32: bool,
    /// Cross-layer equalisation before quantising (on by default; see [`crate::equalize`]).
    pub equalize: bool,
    pub gates: Gates,
    /// Fail the export when a gate is not met (else only report it).
    pub enforce_gates: bool,
    /// Replace an existing model directory.
    pub overwrite: bool,
    /// Extra files written into the model directory and hashed (e.g. `NOTICE`).
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// With [`export_model`]: every `heldout_every`-th window is held back for the gates.
    pub heldout_every: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            id: "sfxtag-cnn9".into(),
            version: "0.0.0".into(),
            description: String::new(),
            license: "NOASSERTION".into(),
            attribution: String::new(),
            provenance: Provenance::default(),
            head_labels: BTreeMap::new(),
            calibration: Calibration::default(),
            int8: true,
            fp32: true,
            equalize: true,
            gates: Gates::default(),
            enforce_gates: true,
            overwrite: false,
            extra_files: Vec::new(),
            heldout_every: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("the calibration set is empty: give at least one audio file (or window) to calibrate the int8 activation ranges and the embedding statistics")]
    EmptyCalibration,
    #[error("invalid export options: {0}")]
    Options(String),
    #[error("{0}")]
    Tract(#[from] TractError),
    #[error("int8 quality gate failed: {0} (the model directory was not written)")]
    Gate(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists (set overwrite / pass --force to replace it)")]
    Exists(PathBuf),
    #[error("the manifest written would be invalid: {0}")]
    Manifest(#[from] ManifestError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// int8 vs fp32 on the held-out windows (None without int8).
    pub parity: Option<Parity>,
    pub equalize: Option<EqualizeReport>,
    pub conv_quant: Vec<ConvQuant>,
    pub calibration_windows: usize,
    pub heldout_windows: usize,
    /// `(file, bytes)` of every file written.
    pub files: Vec<(String, u64)>,
    /// Gate failures when `enforce_gates` is off.
    pub gate_failures: Vec<String>,
}

impl ExportReport {
    /// Human-readable summary (what the CLI prints).
    pub fn summary(&self) -> String {
        let mut s = format!("wrote {}\n", self.dir.display());
        for (f, n) in &self.files {
            s += &format!("  {f:<20} {:>10} bytes\n", n);
        }
        s += &format!(
            "calibration: {} ({} windows), held out: {} windows\n",
            self.manifest
                .quality
                .as_ref()
                .map(|q| q.calibration.as_str())
                .unwrap_or("-"),
            self.calibration_windows,
            self.heldout_windows
        );
        if let Some(e) = &self.equalize {
            s += &format!(
                "equalisation: {} sweeps; first conv channel-range spread {:.1}x -> {:.1}x\n",
                e.sweeps, e.range_spread_before[0], e.range_spread_after[0]
            );
        }
        if let Some(p) = &self.parity {
            s += &format!(
                "int8 vs fp32 embedding cosine: mean {:.5}, worst {:.5}\n",
                p.cosine_mean, p.cosine_min
            );
            for (h, a) in &p.head_top1 {
                s += &format!("  top-1 agreement {h}: {:.3}\n", a);
            }
        }
        for g in &self.gate_failures {
            s += &format!("GATE NOT MET (not enforced): {g}\n");
        }
        s
    }
}

/// Exports with a held-out split taken from `calib` itself (every `opts.heldout_every`-th
/// window; with a single window, that window serves both roles).
pub fn export_model(
    weights: &Cnn9Weights,
    opts: &ExportOptions,
    calib: &[Box<ModelWindow>],
    out_dir: &Path,
) -> Result<ExportReport, ExportError> {
    if calib.is_empty() {
        return Err(ExportError::EmptyCalibration);
    }
    let every = opts.heldout_every.max(2);
    let (mut cal, mut held) = (Vec::new(), Vec::new());
    for (i, w) in calib.iter().enumerate() {
        if i % every == every - 1 {
            held.push(w.clone());
        } else {
            cal.push(w.clone());
        }
    }
    if held.is_empty() {
        held.push(cal.last().expect("non-empty").clone());
        if cal.len() > 1 {
            cal.pop();
        }
    }
    export_model_split(weights, opts, &cal, &held, out_dir)
}

/// Exports with an explicit held-out set (the CLI holds out whole files).
pub fn export_model_split(
    weights: &Cnn9Weights,
    opts: &ExportOptions,
    calib: &[Box<ModelWindow>],
    heldout: &[Box<ModelWindow>],
    out_dir: &Path,
) -> Result<ExportReport, ExportError> {
    weights.validate()?;
    if calib.is_empty() {
        return Err(ExportError::EmptyCalibration);
    }
    if !opts.int8 && !opts.fp32 {
        return Err(ExportError::Options(
            "neither int8 nor fp32 requested".into(),
        ));
    }
    if opts.int8 && heldout.is_empty() {
        return Err(ExportError::Options(
            "no held-out windows for the int8 quality gates".into(),
        ));
    }
    let heads: Vec<String> = weights.heads.iter().map(|h| h.name.clone()).collect();
    for (name, l) in &opts.head_labels {
        let Some(h) = weights.heads.iter().find(|h| &h.name == name) else {
            return Err(ExportError::Options(format!(
                "labels given for head '{name}', but the weights have heads {heads:?}"
            )));
        };
        if !l.labels.is_empty() && l.labels.len() != h.n_classes() {
            return Err(ExportError::Options(format!(
                "head '{name}' has {} classes but {} labels were given",
                h.n_classes(),
                l.labels.len()
            )));
        }
    }
    if out_dir.exists() && !opts.overwrite {
        return Err(ExportError::Exists(out_dir.to_path_buf()));
    }

    let folded = fold::fold(weights);
    let fp32_bytes = graph::to_bytes(&graph::fp32_model(&folded, false));
    let mut eq_model = folded.clone();
    let eq_report = opts.equalize.then(|| equalize::equalize(&mut eq_model, 20));
    let method = opts.calibration;
    let ranges = calibrate::calibrate(&eq_model, calib, method)?;

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut parity = None;
    let mut conv_quant = Vec::new();
    let mut gate_failures = Vec::new();
    if opts.int8 {
        let (q, cq) = quantize::int8_model(&eq_model, &ranges);
        conv_quant = cq;
        let int8_bytes = graph::to_bytes(&q);
        let i8m = TractModel::from_bytes(&int8_bytes)?;
        let f32m = TractModel::from_bytes(&fp32_bytes)?;
        let p = parity::compare(&i8m, &f32m, &heads, heldout)?;
        let g = &opts.gates;
        if p.cosine_min < g.cosine_min {
            gate_failures.push(format!(
                "worst-window embedding cosine {:.5} < {}",
                p.cosine_min, g.cosine_min
            ));
        }
        if p.cosine_mean < g.cosine_mean {
            gate_failures.push(format!(
                "mean embedding cosine {:.5} < {}",
                p.cosine_mean, g.cosine_mean
            ));
        }
        if p.windows >= g.head_top1_min_windows {
            for (h, a) in &p.head_top1 {
                if *a < g.head_top1_min {
                    gate_failures.push(format!(
                        "head {h} top-1 agreement {a:.3} < {}",
                        g.head_top1_min
                    ));
                }
            }
        }
        if opts.enforce_gates && !gate_failures.is_empty() {
            return Err(ExportError::Gate(gate_failures.join("; ")));
        }
        files.push((INT8_FILE.into(), int8_bytes));
        if opts.fp32 {
            files.push((FP32_FILE.into(), fp32_bytes));
        }
        parity = Some(p);
    } else {
        files.push((INT8_FILE.into(), fp32_bytes));
    }
    for (name, bytes) in &opts.extra_files {
        if name == manifest::MANIFEST_FILE || files.iter().any(|(f, _)| f == name) {
            return Err(ExportError::Options(format!(
                "extra file '{name}' collides with a generated file"
            )));
        }
        files.push((name.clone(), bytes.clone()));
    }

    let (mean, std) = embedding_stats(&ranges.embeddings);
    let quality = parity.as_ref().map(|p| QualityGates {
        calibration: method.name().into(),
        calibration_windows: calib.len(),
        heldout_windows: p.windows,
        cosine_mean: p.cosine_mean,
        cosine_min: p.cosine_min,
        cosine_min_threshold: opts.gates.cosine_min,
        head_top1_agreement: p.head_top1.clone(),
        knn_macro_f1_drop: None,
        labels: None,
    });
    let mut provenance = opts.provenance.clone();
    if provenance.exported_by.is_empty() {
        provenance.exported_by = format!("sfxtag-export {}", env!("CARGO_PKG_VERSION"));
    }
    if let Some(p) = &parity {
        let command = format!(
            "{} (int8 vs fp32 in tract on {} held-out windows)",
            provenance.exported_by, p.windows
        );
        for (name, value) in [
            ("int8_fp32_embedding_cosine_mean", p.cosine_mean),
            ("int8_fp32_embedding_cosine_min", p.cosine_min),
        ] {
            provenance.metrics.push(manifest::Metric {
                name: name.into(),
                value,
                command: command.clone(),
            });
        }
    }
    let m = Manifest {
        schema_version: manifest::SCHEMA_VERSION,
        model: ModelInfo {
            id: opts.id.clone(),
            version: opts.version.clone(),
            description: opts.description.clone(),
            license: opts.license.clone(),
            attribution: opts.attribution.clone(),
        },
        frontend: FrontendSpec::implemented(),
        encoder: EncoderSpec {
            file: INT8_FILE.into(),
            precision: if opts.int8 {
                Precision::Int8
            } else {
                Precision::Fp32
            },
            opset: graph::OPSET,
            input_shape: graph::INPUT_SHAPE,
            input_name: graph::INPUT.into(),
            embedding_output: graph::EMBEDDING.into(),
            embedding_dim: EMBEDDING_DIM,
            embedding_mean: mean,
            embedding_std: std,
            fp32_file: (opts.int8 && opts.fp32).then(|| FP32_FILE.to_string()),
        },
        heads: weights
            .heads
            .iter()
            .map(|h| {
                let l = opts.head_labels.get(&h.name);
                HeadSpec {
                    name: h.name.clone(),
                    output: graph::logits_name(&h.name),
                    taxonomy: l.map(|l| l.taxonomy).unwrap_or(Taxonomy::Custom),
                    labels: l.map(|l| l.labels.clone()).unwrap_or_default(),
                    n_classes: h.n_classes(),
                    calibration: None,
                    thresholds: Vec::new(),
                    train_prior: Vec::new(),
                }
            })
            .collect(),
        knn: None,
        provenance,
        quality,
        files: files
            .iter()
            .map(|(n, b)| (n.clone(), manifest::sha256_hex(b)))
            .collect(),
    };
    m.validate()?;
    files.push((manifest::MANIFEST_FILE.into(), m.to_toml().into_bytes()));
    write_dir_atomically(out_dir, &files, opts.overwrite)?;
    Ok(ExportReport {
        dir: out_dir.to_path_buf(),
        manifest: m,
        parity,
        equalize: eq_report,
        conv_quant,
        calibration_windows: calib.len(),
        heldout_windows: heldout.len(),
        files: files
            .iter()
            .map(|(n, b)| (n.clone(), b.len() as u64))
            .collect(),
        gate_failures,
    })
}

/// Per-dimension mean and std (population); a dimension with std < 1e-6 (constant, e.g. a dead
/// channel or a single window) gets std 1 so z-scoring neither divides by zero nor explodes.
pub fn embedding_stats(embs: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let n = embs.len().max(1) as f64;
    let mut mean = vec![0f64; EMBEDDING_DIM];
    for e in embs {
        for (m, v) in mean.iter_mut().zip(e) {
            *m += *v as f64 / n;
        }
    }
    let mut var = vec![0f64; EMBEDDING_DIM];
    for e in embs {
        for ((s, v), m) in var.iter_mut().zip(e).zip(&mean) {
            *s += (*v as f64 - m).powi(2) / n;
        }
    }
    let std = var
        .iter()
        .map(|v| {
            let s = v.sqrt();
            if s < 1e-6 {
                1.0
            } else {
                s as f32
            }
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

/// Removes a directory on drop unless disarmed: no partial model directory survives an error.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Writes `files` into a fresh sibling directory of `out_dir` and renames it into place, so
/// readers see either the old directory or the complete new one.
pub fn write_dir_atomically(
    out_dir: &Path,
    files: &[(String, Vec<u8>)],
    overwrite: bool,
) -> Result<(), ExportError> {
    let name = out_dir
        .file_name()
        .ok_or_else(|| {
            ExportError::Options(format!("{} has no directory name", out_dir.display()))
        })?
        .to_string_lossy()
        .to_string();
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(".{name}.partial-{}-{stamp}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let mut guard = TempDir(Some(tmp.clone()));
    for (f, bytes) in files {
        let p = tmp.join(f);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    if out_dir.exists() {
        if !overwrite {
            return Err(ExportError::Exists(out_dir.to_path_buf()));
        }
        let old = parent.join(format!(".{name}.old-{}-{stamp}", std::process::id()));
        std::fs::rename(out_dir, &old).map_err(io_err(out_dir))?;
        if let Err(e) = std::fs::rename(&tmp, out_dir) {
            let _ = std::fs::rename(&old, out_dir);
            return Err(io_err(out_dir)(e));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, out_dir).map_err(io_err(out_dir))?;
    }
    guard.0 = None;
    Ok(())
}

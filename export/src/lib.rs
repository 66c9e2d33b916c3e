//! `sfxtag-export`: weights in, deployable model directory out (architecture.md §5). Pure Rust: reads
//! safetensors (the trainer's format, see [`weights`]) or the released aiSFX `checkpoint.pth`
//! ([`aisfx`]), folds BatchNorm, equalises, writes fp32 and int8 QOperator ONNX, calibrates and
//! checks int8-vs-fp32 parity in tract, and writes `manifest.toml`.
//!
//! The daemon's tests build a model with random weights:
//!
//! ```no_run
//! use sfxtag_export::{export_model, Cnn9Weights, ExportOptions};
//! let w = Cnn9Weights::random(1, &[("ucs", 82)]);
//! let windows = sfxtag_export::synthetic_windows(8, 1);
//! let report = export_model(&w, &ExportOptions::default(), &windows, "/tmp/m".as_ref()).unwrap();
//! println!("{}", report.summary());
//! ```

#[cfg(feature = "pth")]
pub mod aisfx;
pub mod calib_set;
pub mod calibrate;
pub mod equalize;
pub mod export;
pub mod fold;
pub mod graph;
pub mod parity;
pub mod quantize;
pub mod runtime;
pub mod weights;

pub use calibrate::Calibration;
pub use export::{
    export_model, export_model_split, ExportError, ExportOptions, ExportReport, Gates, HeadLabels,
};
pub use runtime::TractModel;
pub use weights::{Cnn9Weights, Head, Linear, WeightsError};

use sfxtag_core::frontend::{ModelWindow, N_MELS, WINDOW_FRAMES};

/// Deterministic synthetic model inputs in the normalised log-mel range `[0, 1]`: smooth
/// spectral shapes with onsets and noise, not real audio, but enough to calibrate and gate
/// random-weight models in tests.
pub fn synthetic_windows(n: usize, seed: u64) -> Vec<Box<ModelWindow>> {
    let mut rng = weights::SplitMix::new(seed);
    (0..n)
        .map(|_| {
            let mut w = Box::new([[0f32; N_MELS]; WINDOW_FRAMES]);
            let centre = rng.uniform(5.0, 80.0);
            let width = rng.uniform(3.0, 30.0);
            let level = rng.uniform(0.2, 0.8);
            let onset = rng.uniform(0.0, 60.0) as usize;
            let decay = rng.uniform(5.0, 60.0);
            for (t, row) in w.iter_mut().enumerate() {
                let env = if t < onset {
                    0.1
                } else {
                    (-((t - onset) as f32) / decay).exp().max(0.1)
                };
                for (b, v) in row.iter_mut().enumerate() {
                    let d = (b as f32 - centre) / width;
                    let shape = (-0.5 * d * d).exp();
                    *v = (level * env * shape + rng.uniform(0.0, 0.08)).clamp(0.0, 1.0);
                }
            }
            w
        })
        .collect()
}

/// The fp32 ONNX graph of `w` (BatchNorm folded, no equalisation), serialised.
pub fn fp32_onnx_bytes(w: &Cnn9Weights) -> Vec<u8> {
    graph::to_bytes(&graph::fp32_model(&fold::fold(w), false))
}

/// The repository root when running from the workspace (tests, benches): `export/..`.
#[doc(hidden)]
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("export/ has a parent")
        .to_path_buf()
}

//! The tract encoder: one model window in, the raw embedding and each head's logits out.
//!
//! The input tensor is allocated once and reused: it lives in an `Arc` that tract borrows for
//! the run and hands back, so filling it for the next window is a copy, not an allocation. Output
//! values are copied into preallocated buffers. (tract itself allocates its outputs per run.)

use sfxtag_core::frontend::{ModelWindow, N_MELS, WINDOW_FRAMES};
use sfxtag_core::manifest::Manifest;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::SimpleState;

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("cannot load the encoder {path}: {message}")]
    Load { path: String, message: String },
    #[error("encoder output '{name}' has {found} values, the manifest says {expected}")]
    OutputShape {
        name: String,
        found: usize,
        expected: usize,
    },
    #[error("inference failed: {0}")]
    Run(String),
}

pub struct Encoder {
    state: TypedSimpleState,
    input: Arc<Tensor>,
    /// Raw (not z-scored) embedding of the last run.
    pub embedding: Vec<f32>,
    /// Logits of each head of the manifest, in manifest order.
    pub logits: Vec<Vec<f32>>,
    output_names: Vec<String>,
}

impl Encoder {
    /// Loads encoder `file` (the manifest's int8 `encoder.file` or its fp32 twin) from `dir`
    /// with its embedding and head outputs.
    pub fn load(dir: &Path, manifest: &Manifest, file: &str) -> Result<Self, EncoderError> {
        let path = dir.join(file);
        let load_err = |e: TractError| EncoderError::Load {
            path: path.display().to_string(),
            message: format!("{e:#}"),
        };
        let mut names = vec![manifest.encoder.embedding_output.clone()];
        names.extend(manifest.heads.iter().map(|h| h.output.clone()));
        let shape = manifest.encoder.input_shape;
        let mut model = tract_onnx::onnx().model_for_path(&path).map_err(load_err)?;
        model
            .set_input_fact(0, f32::fact(shape).into())
            .map_err(load_err)?;
        model.select_outputs_by_name(&names).map_err(load_err)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(load_err)?;
        let state = SimpleState::new(&plan).map_err(load_err)?;
        let input = Arc::new(Tensor::zero::<f32>(&shape).map_err(load_err)?);
        let mut logits = Vec::new();
        for h in &manifest.heads {
            logits.push(vec![0.0; h.n_classes]);
        }
        Ok(Self {
            state,
            input,
            embedding: vec![0.0; manifest.encoder.embedding_dim],
            logits,
            output_names: names,
        })
    }

    /// Runs one normalised model window.
    pub fn run(&mut self, window: &ModelWindow) -> Result<(), EncoderError> {
        let input = match Arc::get_mut(&mut self.input) {
            Some(t) => t,
            None => {
                // tract kept a reference (never observed): fall back to a fresh tensor.
                self.input = Arc::new(
                    Tensor::zero::<f32>(&[1, 1, WINDOW_FRAMES, N_MELS])
                        .map_err(|e| EncoderError::Run(e.to_string()))?,
                );
                Arc::get_mut(&mut self.input).expect("fresh tensor")
            }
        };
        let mut view = input
            .try_as_plain_ram_mut()
            .map_err(|e| EncoderError::Run(e.to_string()))?;
        let dst = view
            .as_slice_mut::<f32>()
            .map_err(|e| EncoderError::Run(e.to_string()))?;
        for (d, row) in dst.chunks_exact_mut(N_MELS).zip(window.iter()) {
            d.copy_from_slice(row);
        }
        let outputs = self
            .state
            .run(tvec![self.input.clone().into_tvalue()])
            .map_err(|e| EncoderError::Run(format!("{e:#}")))?;
        for (i, out) in outputs.iter().enumerate() {
            let v = out
                .try_as_plain_ram()
                .and_then(|p| p.as_slice::<f32>())
                .map_err(|e| EncoderError::Run(e.to_string()))?;
            let dst = if i == 0 {
                &mut self.embedding
            } else {
                &mut self.logits[i - 1]
            };
            if v.len() != dst.len() {
                return Err(EncoderError::OutputShape {
                    name: self.output_names[i].clone(),
                    found: v.len(),
                    expected: dst.len(),
                });
            }
            dst.copy_from_slice(v);
        }
        Ok(())
    }
}

//! Running ONNX bytes in tract (the daemon's runtime), single-threaded, batch 1.

use sfxtag_core::frontend::ModelWindow;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// A loaded, optimised tract plan.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    /// Output names, in the plan's output order.
    pub outputs: Vec<String>,
}

/// tract's error, flattened to text (its `anyhow` chain is not part of our API).
#[derive(Debug, thiserror::Error)]
#[error("tract: {0}")]
pub struct TractError(pub String);

fn terr(e: impl std::fmt::Display) -> TractError {
    TractError(format!("{e:#}"))
}

impl TractModel {
    /// Loads and optimises ONNX bytes (the graph's input shape is fixed, no fact needed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TractError> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(terr)?;
        let typed = model.into_optimized().map_err(terr)?;
        let outputs = typed
            .output_outlets()
            .map_err(terr)?
            .iter()
            .map(|o| {
                typed
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_default()
            })
            .collect();
        let plan = typed.into_runnable().map_err(terr)?;
        Ok(Self { plan, outputs })
    }

    /// Runs one window; returns every output flattened to f32, in `self.outputs` order.
    pub fn run(&self, window: &ModelWindow) -> Result<Vec<Vec<f32>>, TractError> {
        let flat: Vec<f32> = window.iter().flatten().copied().collect();
        let input = Tensor::from_shape(&crate::graph::INPUT_SHAPE, &flat).map_err(terr)?;
        let out = self.plan.run(tvec!(input.into_tvalue())).map_err(terr)?;
        out.iter()
            .map(|t| {
                let t = t.cast_to::<f32>().map_err(terr)?;
                let v = t
                    .try_as_plain_ram()
                    .map_err(terr)?
                    .as_slice::<f32>()
                    .map_err(terr)?
                    .to_vec();
                Ok(v)
            })
            .collect()
    }

    /// Index of an output by name.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o == name)
    }
}

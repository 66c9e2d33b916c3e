//! The subcommands. Each returns `anyhow::Result`; `main` maps errors to exit codes
//! (2: configuration / usage, 1: anything else).

pub mod bench;
pub mod classify;
pub mod devices;
pub mod embed;
pub mod enroll;
pub mod run;
pub mod tag;

use crate::cli::ModelArgs;
use crate::model::{LoadOptions, Model};
use crate::pipeline::{Processor, WindowOut};
use anyhow::{Context, Result};
use std::path::Path;

/// An error that is the user's configuration or invocation (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Resolves and loads the model named by `--model` / `--refs` / `--top-k` / `--knn-k`, with the
/// label policy of `--categories` / `--threshold` / `--user-refs` / `--user-weight`.
pub fn load_model(args: &ModelArgs, default_top_k: usize) -> Result<Model> {
    let dir = crate::model::resolve(args.model.as_deref())?;
    Model::load(
        &dir,
        &LoadOptions {
            precision: args.precision.unwrap_or_default(),
            refs: args.refs.as_deref(),
            user_refs: args.user_refs.as_deref(),
            top_k: args.top_k.unwrap_or(default_top_k),
            knn_k: args.knn_k,
            policy: args.policy().map_err(UsageError)?,
        },
    )
}

/// Decoded clip facts.
pub struct ClipInfo {
    pub duration_s: f64,
    pub source_rate: u32,
    pub source_channels: usize,
    /// Set when the file holds less audio than its header promises (or is cut off): it was
    /// processed as far as it goes.
    pub truncation: Option<sfxtag_core::audio::Truncation>,
}

/// Decodes a file (mono 44.1 kHz) and runs every window of it through `p`.
pub fn process_file(
    p: &mut Processor,
    path: &Path,
    on_window: &mut dyn FnMut(WindowOut<'_>),
) -> Result<ClipInfo> {
    let audio = sfxtag_core::audio::decode_mono_44k(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if audio.skipped_packets > 0 {
        log::warn!(
            "{}: {} damaged packets skipped",
            path.display(),
            audio.skipped_packets
        );
    }
    if let Some(t) = &audio.truncation {
        eprintln!("sfxtag: warning: {}: {t}", path.display());
    }
    p.restart_at(0.0);
    p.push(&audio.samples, on_window)?;
    p.finish(on_window)?;
    Ok(ClipInfo {
        duration_s: audio.samples.len() as f64 / sfxtag_core::frontend::SAMPLE_RATE as f64,
        source_rate: audio.source_rate,
        source_channels: audio.source_channels,
        truncation: audio.truncation,
    })
}

/// The file name for display.
pub fn display_name(path: &Path) -> String {
    path.display().to_string()
}

//! sfxtag-train: the host-side half of sfxtag (libtorch via `tch`).
//!
//! This crate holds the paper's CNN9-max encoder with one MLP head per dataset and optional
//! dataset-specific BatchNorm ([`model`]). Training, evaluation and the corpus tools build on it.
pub mod checkpoint;
pub mod corpus;
pub mod experiment;
pub mod fdr;
pub mod finetune;
pub mod gpu_run;
pub mod heads;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod prepare;
pub mod sampler;
pub mod trainer;
pub mod trunk;

//! sfxtag-core: the pure signal path both halves of sfxtag compute identically.
//!
//! - [`frontend`]: framing, window, FFT, mel, compression, normalisation, model windows
//!   (fixed buffers, no allocation after construction);
//! - [`priors`]: class priors of a batch (EM re-weighting of posteriors);
//! - [`ucs`]: the UCS v8.2.1 taxonomy (embedded at compile time) and the UCS file-name parser;
//! - `manifest` (feature `std`): the model manifest types of architecture.md §5 with validation;
//! - `audio` (feature `decode`): decoding, downmix and resampling to 44.1 kHz mono.
//!
//! Without the `std` feature the crate is `no_std` + `alloc`.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "decode")]
pub mod audio;
pub mod frontend;
#[cfg(feature = "std")]
pub mod manifest;
pub mod priors;
pub mod ucs;

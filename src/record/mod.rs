//! Tag on capture: event clips (or continuous takes) written at the source's native rate and
//! channel count as UCS-named Broadcast WAV files with `bext` and iXML metadata.
//!
//! - [`planner`]: when a clip starts and ends (pure state machine);
//! - [`history`]: the pre-roll audio (fixed ring);
//! - [`tagging`]: labels → UCS name and metadata fields (pure);
//! - [`bwf`]: the files (bwavfile), atomic publication, crash repair;
//! - [`retention`]: the disk bound;
//! - [`recorder`]: the worker-side half and the writer thread.

pub mod bwf;
pub mod history;
pub mod planner;
pub mod recorder;
pub mod retention;
pub mod tagging;

/// Seconds between an event's start and the moment the tracker reports it: one model window
/// (2.32 s) plus the resampler and chunking delays, rounded up.
pub const DETECTION_LATENCY_S: f64 = 3.5;

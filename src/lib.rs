//! sfxtag: the always-on sound-effects tagger (docs/architecture.md §1, §2, §6).
//!
//! I/O lives at the edges: `source` (capture, files, stdin), `mqtt`, `queue` (the offline disk
//! queue), `config` (the file and the environment), `refs` (reading reference sets), `record`
//! (the clip files) and `cmd`. The decisions in between are plain functions tested without
//! sockets or sound cards: `classify`, the kNN search of `refs`, `events` (hysteresis), `payload`
//! (the v1 MQTT contract), `stats`, and the recorder's planner, tagging and choice of what to
//! delete (`record`).

pub mod allocator;
pub mod classify;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod delivery;
pub mod emitter;
pub mod encoder;
pub mod events;
pub mod label;
pub mod model;
pub mod mqtt;
pub mod payload;
pub mod pipeline;
pub mod queue;
pub mod record;
pub mod refs;
pub mod service;
pub mod settings;
pub mod source;
pub mod stats;

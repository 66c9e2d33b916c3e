//! sfxtag: the always-on sound-effects tagger (DESIGN §1, §5).
//!
//! I/O lives at the edges (`source`, `mqtt`, `cmd`); the logic in between is pure and tested
//! without sockets or sound cards: `classify`, `refs` (kNN), `events` (hysteresis), `queue`
//! (offline disk queue), `payload` (the v1 MQTT contract), `stats`, `config`, and the recorder's planner, tagging and retention (`record`).

pub mod allocator;
pub mod classify;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod encoder;
pub mod events;
pub mod model;
pub mod mqtt;
pub mod payload;
pub mod pipeline;
pub mod queue;
pub mod record;
pub mod refs;
pub mod service;
pub mod source;
pub mod stats;

//! The offline queue's storage: an ordered log of records, each under a sequence number that only
//! grows, behind the small [`Store`] trait. The delivery state machine (`delivery`) decides what
//! to send, when to drop and when a record is done; a store only keeps records:
//!
//! - [`FileStore`]: segment files on disk, group commit (`sync_data` on an interval and on segment
//!   roll), a torn tail cut at the last whole record on open;
//! - [`MemStore`]: the same contract in memory (tests, and the state machine's property tests).

mod file;
mod mem;

pub use file::{FileStore, FileStoreConfig};
pub use mem::MemStore;

use std::path::PathBuf;
use std::time::Instant;

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl Record {
    /// A message that is not retained.
    pub fn new(topic: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.into(),
            retain: false,
            payload,
        }
    }

    /// A retained message (status, discovery).
    pub fn retained(topic: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.into(),
            retain: true,
            payload,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("offline queue {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("message of {0} bytes is larger than one queue record may be")]
    TooLarge(usize),
    #[error("offline queue {path}: record {seq} is corrupt")]
    Corrupt { path: PathBuf, seq: u64 },
}

/// What a store holds and what it found when it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Records not yet acknowledged.
    pub depth: u64,
    /// Bytes the store takes.
    pub bytes: u64,
    /// Records found undelivered when the store was opened.
    pub recovered: u64,
    /// Bytes of torn or corrupt tails cut off when the store was opened (power loss mid-write).
    pub truncated_bytes: u64,
}

/// An ordered, bounded-by-its-owner log of records.
pub trait Store {
    /// Appends `r` as the newest record; returns its sequence number (greater than every earlier
    /// one, also across reopening).
    fn append(&mut self, r: &Record) -> Result<u64, QueueError>;

    /// The oldest record not yet acknowledged whose sequence number is at least `from`.
    fn next_from(&mut self, from: u64) -> Result<Option<(u64, Record)>, QueueError>;

    /// `seq` was delivered: it is never handed out again, and its space is freed once everything
    /// before it is delivered too. Returns whether `seq` was held and unacknowledged until now.
    fn ack(&mut self, seq: u64) -> Result<bool, QueueError>;

    /// Deletes the oldest records the store can give up at once (a whole segment, never the one
    /// being written); returns how many unacknowledged records went, or `None` if there is none.
    fn drop_oldest(&mut self) -> Result<Option<u64>, QueueError>;

    /// Bytes `r` would take in this store.
    fn size_of(&self, r: &Record) -> u64;

    fn stats(&self) -> StoreStats;

    /// Group commit: makes what was appended and acknowledged durable when the store's interval
    /// has passed since the last commit, or now with `force`.
    fn commit(&mut self, now: Instant, force: bool) -> Result<(), QueueError>;
}

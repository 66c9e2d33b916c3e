//! [`MemStore`]: the [`Store`] contract in memory, one record per drop unit.

use super::{QueueError, Record, Store, StoreStats};
use std::collections::BTreeMap;
use std::time::Instant;

/// Per-record overhead, as on disk (length, crc, seq, retain flag, topic length).
const OVERHEAD: u64 = 19;

#[derive(Debug, Clone)]
pub struct MemStore {
    records: BTreeMap<u64, Record>,
    next_seq: u64,
    bytes: u64,
}

impl Default for MemStore {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            next_seq: 1,
            bytes: 0,
        }
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemStore {
    fn append(&mut self, r: &Record) -> Result<u64, QueueError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += self.size_of(r);
        self.records.insert(seq, r.clone());
        Ok(seq)
    }

    fn next_from(&mut self, from: u64) -> Result<Option<(u64, Record)>, QueueError> {
        Ok(self
            .records
            .range(from..)
            .next()
            .map(|(s, r)| (*s, r.clone())))
    }

    fn ack(&mut self, seq: u64) -> Result<bool, QueueError> {
        Ok(match self.records.remove(&seq) {
            Some(r) => {
                self.bytes -= self.size_of(&r);
                true
            }
            None => false,
        })
    }

    fn drop_oldest(&mut self) -> Result<Option<u64>, QueueError> {
        Ok(self.records.pop_first().map(|(_, r)| {
            self.bytes -= self.size_of(&r);
            1
        }))
    }

    fn size_of(&self, r: &Record) -> u64 {
        OVERHEAD + (r.topic.len() + r.payload.len()) as u64
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            depth: self.records.len() as u64,
            bytes: self.bytes,
            ..StoreStats::default()
        }
    }

    fn commit(&mut self, _now: Instant, _force: bool) -> Result<(), QueueError> {
        Ok(())
    }
}

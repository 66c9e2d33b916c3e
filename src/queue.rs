//! The bounded offline queue: every QoS 1 message goes through it, so nothing is lost while the
//! broker is away or the daemon restarts, and delivery stays in order.
//!
//! Storage: append-only segment files `<first seq, 20 digits>.seg` in one directory, each a run of
//! records `[u32 len][u32 crc32][u64 seq][u8 retain][u16 topic len][topic][payload]` (little
//! endian; `len` counts everything after the crc). A file `acked` holds the highest delivered seq
//! (written atomically, at most every `ack_sync` and on close). On open, segments are scanned; a
//! torn or corrupt tail (power cut mid-write) is truncated at the last good record.
//!
//! Sending: `next_unsent` walks records after the send cursor; `ack` marks delivery (acks may
//! arrive out of order; the head advances over the contiguous prefix); `rewind` puts every
//! unacked record back for resending after a reconnect, so delivery is at-least-once and in order.
//!
//! Bound: `max_bytes` on disk. `drop-oldest` deletes whole oldest segments (never the one being
//! written), `drop-newest` refuses new records; every dropped record is counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HEADER: usize = 8; // len + crc
const FIXED: usize = 8 + 1 + 2; // seq + retain + topic len
const MAX_RECORD: usize = 16 * 1024 * 1024;
const ACKED_FILE: &str = "acked";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropPolicy {
    DropOldest,
    DropNewest,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub policy: DropPolicy,
    /// How often the `acked` file is rewritten at most.
    pub ack_sync: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            segment_bytes: 1024 * 1024,
            policy: DropPolicy::DropOldest,
            ack_sync: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("offline queue {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("message of {0} bytes is larger than the queue allows")]
    TooLarge(usize),
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

/// What `push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued {
        seq: u64,
    },
    /// Queued after deleting `dropped` of the oldest records (policy `drop-oldest`).
    QueuedDroppingOldest {
        seq: u64,
        dropped: u64,
    },
    /// Refused (policy `drop-newest` and the queue is full).
    Rejected,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Records not yet acknowledged.
    pub depth: u64,
    pub bytes: u64,
    /// Records dropped because of the bound, since start.
    pub dropped: u64,
    /// Records found undelivered on disk at start.
    pub recovered: u64,
    /// Corrupt tails truncated at start.
    pub truncated_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Index {
    seq: u64,
    seg: u64,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    last_seq: u64,
}

fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

fn encode(seq: u64, r: &Record) -> Vec<u8> {
    let body_len = FIXED + r.topic.len() + r.payload.len();
    let mut body = Vec::with_capacity(HEADER + body_len);
    body.extend_from_slice(&(body_len as u32).to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(&seq.to_le_bytes());
    body.push(r.retain as u8);
    body.extend_from_slice(&(r.topic.len() as u16).to_le_bytes());
    body.extend_from_slice(r.topic.as_bytes());
    body.extend_from_slice(&r.payload);
    let crc = crc32(&body[HEADER..]);
    body[4..8].copy_from_slice(&crc.to_le_bytes());
    body
}

/// Decodes a record body (after len + crc); `None` if malformed.
fn decode_body(body: &[u8]) -> Option<(u64, Record)> {
    if body.len() < FIXED {
        return None;
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let retain = body[8] != 0;
    let tlen = u16::from_le_bytes([body[9], body[10]]) as usize;
    let topic = std::str::from_utf8(body.get(FIXED..FIXED + tlen)?).ok()?;
    Some((
        seq,
        Record {
            topic: topic.to_string(),
            retain,
            payload: body[FIXED + tlen..].to_vec(),
        },
    ))
}

/// Scans a segment: returns the records' index entries and the length of the valid prefix.
fn scan(seg: u64, bytes: &[u8]) -> (Vec<Index>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        let Some(body) = bytes.get(pos + HEADER..pos + HEADER + len) else {
            break;
        };
        if len < FIXED || crc32(body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
        out.push(Index {
            seq,
            seg,
            offset: pos as u64,
            len: (HEADER + len) as u32,
        });
        pos += HEADER + len;
    }
    (out, pos as u64)
}

/// The on-disk queue.
pub struct DiskQueue {
    dir: PathBuf,
    cfg: QueueConfig,
    /// Unacked records in seq order.
    index: VecDeque<Index>,
    /// Seqs acked out of order (above the contiguous head).
    acked_ahead: BTreeSet<u64>,
    segments: BTreeMap<u64, Segment>,
    writer: Option<(u64, File)>,
    reader: Option<(u64, File)>,
    next_seq: u64,
    /// Highest seq acked contiguously.
    acked: u64,
    acked_written: u64,
    last_ack_sync: Instant,
    /// Position in `index` of the next record to send.
    cursor: usize,
    stats: QueueStats,
}

impl DiskQueue {
    /// Opens (creating) the queue in `dir` and recovers undelivered records.
    pub fn open(dir: &Path, cfg: QueueConfig) -> Result<Self, QueueError> {
        let io = |source| QueueError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let acked = match fs::read_to_string(dir.join(ACKED_FILE)) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(_) => 0,
        };
        let mut seg_ids: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let stem = p.file_stem()?.to_str()?.to_string();
                (p.extension()? == "seg").then_some(())?;
                Some((stem.parse::<u64>().ok()?, p))
            })
            .collect();
        seg_ids.sort();
        let mut q = Self {
            dir: dir.to_path_buf(),
            cfg,
            index: VecDeque::new(),
            acked_ahead: BTreeSet::new(),
            segments: BTreeMap::new(),
            writer: None,
            reader: None,
            next_seq: acked + 1,
            acked,
            acked_written: acked,
            last_ack_sync: Instant::now(),
            cursor: 0,
            stats: QueueStats::default(),
        };
        for (id, path) in seg_ids {
            let bytes = fs::read(&path).map_err(|source| QueueError::Io {
                path: path.clone(),
                source,
            })?;
            let (entries, valid) = scan(id, &bytes);
            if valid < bytes.len() as u64 {
                q.stats.truncated_bytes += bytes.len() as u64 - valid;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| QueueError::Io {
                        path: path.clone(),
                        source,
                    })?;
                f.set_len(valid).map_err(|source| QueueError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            let last_seq = entries.last().map(|e| e.seq).unwrap_or(0);
            if last_seq <= acked {
                // Fully delivered (or empty): remove.
                let _ = fs::remove_file(&path);
                q.next_seq = q.next_seq.max(last_seq + 1);
                continue;
            }
            q.next_seq = q.next_seq.max(last_seq + 1);
            q.index
                .extend(entries.into_iter().filter(|e| e.seq > acked));
            q.segments.insert(
                id,
                Segment {
                    path,
                    bytes: valid,
                    last_seq,
                },
            );
        }
        q.stats.recovered = q.index.len() as u64;
        Ok(q)
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.index.len() as u64,
            bytes: self.segments.values().map(|s| s.bytes).sum(),
            ..self.stats
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Records queued but not yet handed out by `next_unsent`.
    pub fn unsent(&self) -> usize {
        self.index.len() - self.cursor
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn io_err(&self, source: std::io::Error) -> QueueError {
        QueueError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    /// Appends a record (durably written to the OS before returning).
    pub fn push(&mut self, r: &Record) -> Result<PushOutcome, QueueError> {
        let seq = self.next_seq;
        let bytes = encode(seq, r);
        if bytes.len() > MAX_RECORD || bytes.len() as u64 > self.cfg.max_bytes {
            return Err(QueueError::TooLarge(bytes.len()));
        }
        let mut dropped = 0u64;
        while self.stats().bytes + bytes.len() as u64 > self.cfg.max_bytes {
            match self.cfg.policy {
                DropPolicy::DropNewest => {
                    self.stats.dropped += 1;
                    return Ok(PushOutcome::Rejected);
                }
                DropPolicy::DropOldest => {
                    let n = self.drop_oldest_segment()?;
                    if n == usize::MAX {
                        break; // only the writing segment remains: exceed the bound by < 1 segment
                    }
                    dropped += n as u64;
                }
            }
        }
        // Rotate when the writing segment is full.
        let rotate = match &self.writer {
            Some((id, _)) => self
                .segments
                .get(id)
                .is_none_or(|s| s.bytes + bytes.len() as u64 > self.cfg.segment_bytes),
            None => true,
        };
        if rotate {
            let path = self.seg_path(seq);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| self.io_err(e))?;
            self.segments.insert(
                seq,
                Segment {
                    path,
                    bytes: 0,
                    last_seq: seq,
                },
            );
            self.writer = Some((seq, f));
        }
        let (wid, f) = self.writer.as_mut().expect("writer");
        let wid = *wid;
        f.write_all(&bytes).map_err(|source| QueueError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let seg = self.segments.get_mut(&wid).expect("segment");
        let offset = seg.bytes;
        seg.bytes += bytes.len() as u64;
        seg.last_seq = seq;
        self.index.push_back(Index {
            seq,
            seg: wid,
            offset,
            len: bytes.len() as u32,
        });
        self.next_seq += 1;
        self.stats.dropped += dropped;
        Ok(if dropped > 0 {
            PushOutcome::QueuedDroppingOldest { seq, dropped }
        } else {
            PushOutcome::Queued { seq }
        })
    }

    /// Deletes the oldest segment that is not being written; returns its unacked record count,
    /// or `usize::MAX` when there is none.
    fn drop_oldest_segment(&mut self) -> Result<usize, QueueError> {
        let writing = self.writer.as_ref().map(|(id, _)| *id);
        let Some((&id, _)) = self.segments.iter().find(|(id, _)| Some(**id) != writing) else {
            return Ok(usize::MAX);
        };
        let seg = self.segments.remove(&id).expect("segment");
        let _ = fs::remove_file(&seg.path);
        if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
            self.reader = None;
        }
        let before = self.index.len();
        let removed_before_cursor = self
            .index
            .iter()
            .take(self.cursor)
            .filter(|e| e.seg == id)
            .count();
        self.index.retain(|e| e.seg != id);
        self.cursor -= removed_before_cursor;
        let n = before - self.index.len();
        // Everything up to this segment's last seq is gone: treat as acked for the head.
        if seg.last_seq > self.acked {
            self.acked = seg.last_seq;
            self.acked_ahead = self.acked_ahead.split_off(&(self.acked + 1));
        }
        Ok(n)
    }

    fn read(&mut self, e: Index) -> Result<Record, QueueError> {
        if self.reader.as_ref().is_none_or(|(id, _)| *id != e.seg) {
            let path = self.seg_path(e.seg);
            let f = File::open(&path).map_err(|e| self.io_err(e))?;
            self.reader = Some((e.seg, f));
        }
        let dir = self.dir.clone();
        let io = |source| QueueError::Io { path: dir, source };
        let (_, f) = self.reader.as_mut().expect("reader");
        let mut buf = vec![0u8; e.len as usize];
        f.seek(SeekFrom::Start(e.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(io)?;
        decode_body(&buf[HEADER..])
            .map(|(_, r)| r)
            .ok_or_else(|| QueueError::Io {
                path: self.seg_path(e.seg),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt record"),
            })
    }

    /// The next record to send, advancing the send cursor.
    pub fn next_unsent(&mut self) -> Result<Option<(u64, Record)>, QueueError> {
        let Some(&e) = self.index.get(self.cursor) else {
            return Ok(None);
        };
        let r = self.read(e)?;
        self.cursor += 1;
        Ok(Some((e.seq, r)))
    }

    /// Takes back the last record `next_unsent` handed out (it could not be sent).
    pub fn unsend_last(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Puts every unacked record back to be sent again (after a reconnect).
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Marks `seq` delivered.
    pub fn ack(&mut self, seq: u64) -> Result<(), QueueError> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked_ahead.insert(seq);
        while self.acked_ahead.remove(&(self.acked + 1)) {
            self.acked += 1;
        }
        let mut popped = 0;
        while self.index.front().is_some_and(|e| e.seq <= self.acked) {
            self.index.pop_front();
            popped += 1;
        }
        self.cursor = self.cursor.saturating_sub(popped);
        // Delete fully delivered segments (the writing one too: a new one starts on next push).
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.last_seq <= self.acked)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let s = self.segments.remove(&id).expect("segment");
            if self.writer.as_ref().is_some_and(|(w, _)| *w == id) {
                self.writer = None;
            }
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            let _ = fs::remove_file(&s.path);
        }
        if self.last_ack_sync.elapsed() >= self.cfg.ack_sync {
            self.sync_acked()?;
        }
        Ok(())
    }

    /// Writes the `acked` file now (call on shutdown).
    pub fn sync_acked(&mut self) -> Result<(), QueueError> {
        self.last_ack_sync = Instant::now();
        if self.acked == self.acked_written {
            return Ok(());
        }
        let tmp = self.dir.join("acked.tmp");
        fs::write(&tmp, self.acked.to_string())
            .and_then(|_| fs::rename(&tmp, self.dir.join(ACKED_FILE)))
            .map_err(|e| self.io_err(e))?;
        self.acked_written = self.acked;
        Ok(())
    }
}

impl Drop for DiskQueue {
    fn drop(&mut self) {
        let _ = self.sync_acked();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record {
        Record {
            topic: format!("t/{i}"),
            retain: i.is_multiple_of(2),
            payload: format!("payload {i}").into_bytes(),
        }
    }

    fn cfg(max: u64, seg: u64, policy: DropPolicy) -> QueueConfig {
        QueueConfig {
            max_bytes: max,
            segment_bytes: seg,
            policy,
            ack_sync: Duration::ZERO,
        }
    }

    fn drain(q: &mut DiskQueue) -> Vec<(u64, Record)> {
        let mut v = Vec::new();
        while let Some(x) = q.next_unsent().unwrap() {
            v.push(x);
        }
        v
    }

    #[test]
    fn delivers_in_order_and_resends_unacked_after_rewind() {
        let d = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(d.path(), cfg(1 << 20, 200, DropPolicy::DropOldest)).unwrap();
        for i in 0..10 {
            q.push(&rec(i)).unwrap();
        }
        let sent = drain(&mut q);
        assert_eq!(sent.len(), 10);
        assert_eq!(sent[3].1, rec(3));
        assert!(sent.windows(2).all(|w| w[0].0 < w[1].0));
        // Acks out of order: 1, 2, 4 → head at 2.
        for s in [1, 2, 4] {
            q.ack(s).unwrap();
        }
        assert_eq!(q.len(), 8);
        q.rewind();
        let again = drain(&mut q);
        assert_eq!(again.first().unwrap().0, 3);
        assert_eq!(again.len(), 8); // 4 is resent too: at-least-once, in order
        for s in 3..=10 {
            q.ack(s).unwrap();
        }
        assert!(q.is_empty());
        assert_eq!(q.stats().bytes, 0);
        // Segments were removed.
        let segs = fs::read_dir(d.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(segs, 0);
    }

    #[test]
    fn survives_restart_and_continues_sequence() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut q =
                DiskQueue::open(d.path(), cfg(1 << 20, 100, DropPolicy::DropOldest)).unwrap();
            for i in 0..6 {
                q.push(&rec(i)).unwrap();
            }
            drain(&mut q);
            q.ack(1).unwrap();
            q.ack(2).unwrap();
        }
        let mut q = DiskQueue::open(d.path(), cfg(1 << 20, 100, DropPolicy::DropOldest)).unwrap();
        assert_eq!(q.stats().recovered, 4);
        let left = drain(&mut q);
        assert_eq!(
            left.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        assert_eq!(left[0].1, rec(2));
        assert_eq!(q.push(&rec(9)).unwrap(), PushOutcome::Queued { seq: 7 });
    }

    #[test]
    fn torn_tail_is_truncated() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut q =
                DiskQueue::open(d.path(), cfg(1 << 20, 1 << 20, DropPolicy::DropOldest)).unwrap();
            for i in 0..3 {
                q.push(&rec(i)).unwrap();
            }
        }
        let seg = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap(); // half a record
        drop(f);
        let mut q =
            DiskQueue::open(d.path(), cfg(1 << 20, 1 << 20, DropPolicy::DropOldest)).unwrap();
        assert_eq!(q.stats().truncated_bytes, 7);
        assert_eq!(drain(&mut q).len(), 3);
        q.push(&rec(3)).unwrap();
        q.rewind();
        assert_eq!(drain(&mut q).last().unwrap().1, rec(3));
    }

    #[test]
    fn drop_oldest_keeps_the_bound_and_counts() {
        let d = tempfile::tempdir().unwrap();
        let one = encode(1, &rec(1)).len() as u64;
        // Segments of 2 records, room for ~6 records.
        let mut q = DiskQueue::open(
            d.path(),
            cfg(one * 6 + 2, one * 2 + 1, DropPolicy::DropOldest),
        )
        .unwrap();
        for i in 0..20 {
            q.push(&rec(i)).unwrap();
        }
        let s = q.stats();
        assert!(s.bytes <= one * 6 + 2, "{s:?}");
        assert_eq!(s.dropped + s.depth, 20);
        let left = drain(&mut q);
        // The newest survive, in order.
        assert_eq!(left.last().unwrap().1, rec(19));
        assert!(left.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    }

    #[test]
    fn drop_newest_rejects_when_full() {
        let d = tempfile::tempdir().unwrap();
        let one = encode(1, &rec(1)).len() as u64;
        let mut q =
            DiskQueue::open(d.path(), cfg(one * 3, one * 10, DropPolicy::DropNewest)).unwrap();
        let outcomes: Vec<_> = (0..5).map(|i| q.push(&rec(i)).unwrap()).collect();
        assert_eq!(outcomes[2], PushOutcome::Queued { seq: 3 });
        assert_eq!(outcomes[3], PushOutcome::Rejected);
        assert_eq!(q.stats().dropped, 2);
        assert_eq!(drain(&mut q)[0].1, rec(0)); // the oldest are kept
    }
}

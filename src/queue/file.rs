//! [`FileStore`]: the offline queue on disk.
//!
//! Layout: append-only segment files `<first seq, 20 digits>.seg` in one directory, each a run of
//! records `[u32 len][u32 crc32][u64 seq][u8 retain][u16 topic len][topic][payload]` (little
//! endian; `len` counts everything after the crc), and a file `acked` holding the highest seq
//! delivered together with everything before it: `[u64 seq][u32 crc32 of those 8 bytes]`,
//! rewritten in place whenever it advances. Segments whose records are all delivered are deleted.
//!
//! Durability: records and the `acked` mark reach the OS before `append` / `ack` return, so a
//! crashed or killed daemon loses nothing and resends at most what was in flight. `sync_data`
//! (group commit) runs when `commit` finds `sync_interval` passed, on every segment roll and on
//! close: a power cut loses at most the records of the last interval. On open, a torn or corrupt
//! tail (a power cut mid-write) is cut at the last whole record and counted.

use super::{QueueError, Record, Store, StoreStats};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HEADER: usize = 8; // len + crc
const FIXED: usize = 8 + 1 + 2; // seq + retain + topic len
const MAX_RECORD: usize = 16 * 1024 * 1024;
const ACKED_FILE: &str = "acked";
const MARK_LEN: usize = 12;

#[derive(Debug, Clone)]
pub struct FileStoreConfig {
    /// A new segment file starts when the current one would grow past this.
    pub segment_bytes: u64,
    /// Group commit: `sync_data` at most this often (zero: after every record).
    pub sync_interval: Duration,
}

impl Default for FileStoreConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1024 * 1024,
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// Where one record lies.
#[derive(Debug, Clone, Copy)]
struct Entry {
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

fn encode(seq: u64, r: &Record) -> Result<Vec<u8>, QueueError> {
    let body_len = FIXED + r.topic.len() + r.payload.len();
    if r.topic.len() > u16::MAX as usize || HEADER + body_len > MAX_RECORD {
        return Err(QueueError::TooLarge(HEADER + body_len));
    }
    let mut out = Vec::with_capacity(HEADER + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(r.retain as u8);
    out.extend_from_slice(&(r.topic.len() as u16).to_le_bytes());
    out.extend_from_slice(r.topic.as_bytes());
    out.extend_from_slice(&r.payload);
    let crc = crc32(&out[HEADER..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a record body (after len + crc); `None` if malformed.
fn decode_body(body: &[u8]) -> Option<Record> {
    if body.len() < FIXED {
        return None;
    }
    let retain = body[8] != 0;
    let tlen = u16::from_le_bytes([body[9], body[10]]) as usize;
    let topic = std::str::from_utf8(body.get(FIXED..FIXED + tlen)?).ok()?;
    Some(Record {
        topic: topic.to_string(),
        retain,
        payload: body[FIXED + tlen..].to_vec(),
    })
}

/// Scans a segment: its records' entries and the length of the valid prefix.
fn scan(seg: u64, bytes: &[u8]) -> (Vec<Entry>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(pos + HEADER..pos + HEADER + len) else {
            break;
        };
        if len < FIXED || crc32(body) != crc {
            break;
        }
        out.push(Entry {
            seq: u64::from_le_bytes(body[0..8].try_into().expect("8 bytes")),
            seg,
            offset: pos as u64,
            len: (HEADER + len) as u32,
        });
        pos += HEADER + len;
    }
    (out, pos as u64)
}

/// The `acked` mark: binary with a crc, or the decimal text earlier versions wrote. Anything else
/// reads as 0: everything on disk is sent again (duplicates, never loss).
fn decode_mark(b: &[u8]) -> u64 {
    if b.len() == MARK_LEN && crc32(&b[..8]).to_le_bytes() == b[8..] {
        return u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    }
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn encode_mark(seq: u64) -> [u8; MARK_LEN] {
    let mut b = [0u8; MARK_LEN];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32(&b[..8]);
    b[8..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The queue on disk.
pub struct FileStore {
    dir: PathBuf,
    cfg: FileStoreConfig,
    /// Records not yet passed by the head, in seq order (some may be acknowledged out of order).
    index: VecDeque<Entry>,
    /// Seqs in `index` acknowledged out of order.
    acked_ahead: BTreeSet<u64>,
    segments: BTreeMap<u64, Segment>,
    bytes: u64,
    writer: Option<(u64, File)>,
    reader: Option<(u64, File)>,
    next_seq: u64,
    /// Highest seq delivered together with everything before it (what `acked` holds).
    acked: u64,
    mark: File,
    /// Records or the mark written since the last sync.
    unsynced: bool,
    /// A segment was created since the last sync: its directory entry needs one too.
    dir_unsynced: bool,
    last_sync: Option<Instant>,
    syncs: u64,
    stats: StoreStats,
}

impl FileStore {
    /// Opens (creating) the queue in `dir`: recovers undelivered records, cuts torn tails.
    pub fn open(dir: &Path, cfg: FileStoreConfig) -> Result<Self, QueueError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let mark_path = dir.join(ACKED_FILE);
        let mut mark = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&mark_path)
            .map_err(io_at(&mark_path))?;
        let mut raw = Vec::new();
        mark.read_to_end(&mut raw).map_err(io_at(&mark_path))?;
        let acked = decode_mark(&raw);
        if raw.len() != MARK_LEN {
            // Empty, or the text form of earlier versions: rewrite in the fixed form.
            mark.write_all_at(&encode_mark(acked), 0)
                .and_then(|_| mark.set_len(MARK_LEN as u64))
                .map_err(io_at(&mark_path))?;
        }
        let mut seg_ids: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io_at(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "seg").then_some(())?;
                let id = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
                Some((id, p))
            })
            .collect();
        seg_ids.sort();
        let mut s = Self {
            dir: dir.to_path_buf(),
            cfg,
            index: VecDeque::new(),
            acked_ahead: BTreeSet::new(),
            segments: BTreeMap::new(),
            bytes: 0,
            writer: None,
            reader: None,
            next_seq: acked + 1,
            acked,
            mark,
            unsynced: false,
            dir_unsynced: false,
            last_sync: None,
            syncs: 0,
            stats: StoreStats::default(),
        };
        for (id, path) in seg_ids {
            let bytes = fs::read(&path).map_err(io_at(&path))?;
            let (entries, valid) = scan(id, &bytes);
            if valid < bytes.len() as u64 {
                s.stats.truncated_bytes += bytes.len() as u64 - valid;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_at(&path))?;
                f.set_len(valid)
                    .and_then(|_| f.sync_all())
                    .map_err(io_at(&path))?;
            }
            let last_seq = entries.last().map(|e| e.seq).unwrap_or(0);
            s.next_seq = s.next_seq.max(last_seq + 1);
            if last_seq <= acked {
                // Delivered (or empty): not needed any more.
                let _ = fs::remove_file(&path);
                continue;
            }
            s.index
                .extend(entries.into_iter().filter(|e| e.seq > acked));
            s.bytes += valid;
            s.segments.insert(
                id,
                Segment {
                    path,
                    bytes: valid,
                    last_seq,
                },
            );
        }
        s.stats.recovered = s.index.len() as u64;
        Ok(s)
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn write_mark(&mut self) -> Result<(), QueueError> {
        let path = self.dir.join(ACKED_FILE);
        self.mark
            .write_all_at(&encode_mark(self.acked), 0)
            .map_err(io_at(&path))?;
        self.unsynced = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), QueueError> {
        if let Some((id, f)) = &self.writer {
            f.sync_data().map_err(io_at(&self.seg_path(*id)))?;
        }
        self.mark
            .sync_data()
            .map_err(io_at(&self.dir.join(ACKED_FILE)))?;
        if self.dir_unsynced {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(&self.dir))?;
        }
        self.unsynced = false;
        self.dir_unsynced = false;
        self.syncs += 1;
        Ok(())
    }

    /// Starts segment `id`: the finished one is synced first, so sealed segments are durable.
    fn roll(&mut self, id: u64) -> Result<(), QueueError> {
        if self.writer.is_some() && self.unsynced {
            self.sync()?;
        }
        let path = self.seg_path(id);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        self.segments.insert(
            id,
            Segment {
                path,
                bytes: 0,
                last_seq: id,
            },
        );
        self.writer = Some((id, f));
        self.dir_unsynced = true;
        Ok(())
    }

    fn read(&mut self, e: Entry) -> Result<Record, QueueError> {
        let path = self.seg_path(e.seg);
        if self.reader.as_ref().is_none_or(|(id, _)| *id != e.seg) {
            self.reader = Some((e.seg, File::open(&path).map_err(io_at(&path))?));
        }
        let (_, f) = self.reader.as_mut().expect("reader");
        let mut buf = vec![0u8; e.len as usize];
        f.seek(SeekFrom::Start(e.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(io_at(&path))?;
        decode_body(&buf[HEADER..]).ok_or(QueueError::Corrupt { path, seq: e.seq })
    }

    /// Deletes every segment whose records are all delivered.
    fn delete_delivered(&mut self) {
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.last_seq <= self.acked)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let s = self.segments.remove(&id).expect("segment");
            self.bytes -= s.bytes;
            if self.writer.as_ref().is_some_and(|(w, _)| *w == id) {
                self.writer = None;
            }
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            let _ = fs::remove_file(&s.path);
        }
    }
}

impl Store for FileStore {
    fn append(&mut self, r: &Record) -> Result<u64, QueueError> {
        let seq = self.next_seq;
        let bytes = encode(seq, r)?;
        let len = bytes.len() as u64;
        let roll = match &self.writer {
            Some((id, _)) => self
                .segments
                .get(id)
                .is_none_or(|s| s.bytes > 0 && s.bytes + len > self.cfg.segment_bytes),
            None => true,
        };
        if roll {
            self.roll(seq)?;
        }
        let (wid, f) = self.writer.as_mut().expect("writer");
        let wid = *wid;
        let seg = self.segments.get_mut(&wid).expect("segment");
        if let Err(source) = f.write_all(&bytes) {
            // Never leave half a record for the next one to follow (it would hide it on open).
            let _ = f.set_len(seg.bytes);
            return Err(QueueError::Io {
                path: seg.path.clone(),
                source,
            });
        }
        self.index.push_back(Entry {
            seq,
            seg: wid,
            offset: seg.bytes,
            len: len as u32,
        });
        seg.bytes += len;
        seg.last_seq = seq;
        self.bytes += len;
        self.next_seq += 1;
        self.unsynced = true;
        if self.cfg.sync_interval.is_zero() {
            self.sync()?;
        }
        Ok(seq)
    }

    fn next_from(&mut self, from: u64) -> Result<Option<(u64, Record)>, QueueError> {
        let start = self.index.partition_point(|e| e.seq < from);
        let next = self
            .index
            .range(start..)
            .find(|e| !self.acked_ahead.contains(&e.seq))
            .copied();
        match next {
            Some(e) => Ok(Some((e.seq, self.read(e)?))),
            None => Ok(None),
        }
    }

    fn ack(&mut self, seq: u64) -> Result<bool, QueueError> {
        if seq <= self.acked
            || self.acked_ahead.contains(&seq)
            || self.index.binary_search_by_key(&seq, |e| e.seq).is_err()
        {
            return Ok(false);
        }
        self.acked_ahead.insert(seq);
        let before = self.acked;
        while let Some(front) = self.index.front() {
            if !self.acked_ahead.remove(&front.seq) {
                break;
            }
            self.acked = front.seq;
            self.index.pop_front();
        }
        if self.acked != before {
            self.write_mark()?;
            self.delete_delivered();
        }
        Ok(true)
    }

    fn drop_oldest(&mut self) -> Result<Option<u64>, QueueError> {
        let writing = self.writer.as_ref().map(|(id, _)| *id);
        let Some(id) = self
            .segments
            .keys()
            .copied()
            .find(|id| Some(*id) != writing)
        else {
            return Ok(None);
        };
        let seg = self.segments.remove(&id).expect("segment");
        self.bytes -= seg.bytes;
        let _ = fs::remove_file(&seg.path);
        if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
            self.reader = None;
        }
        // The oldest segment holds the oldest records: a prefix of the index.
        let mut dropped = 0;
        while self.index.front().is_some_and(|e| e.seg == id) {
            let e = self.index.pop_front().expect("front");
            if !self.acked_ahead.remove(&e.seq) {
                dropped += 1;
            }
        }
        if seg.last_seq > self.acked {
            self.acked = seg.last_seq;
            self.acked_ahead = self.acked_ahead.split_off(&(self.acked + 1));
            self.write_mark()?;
        }
        Ok(Some(dropped))
    }

    fn size_of(&self, r: &Record) -> u64 {
        (HEADER + FIXED + r.topic.len() + r.payload.len()) as u64
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            depth: (self.index.len() - self.acked_ahead.len()) as u64,
            bytes: self.bytes,
            ..self.stats
        }
    }

    fn commit(&mut self, now: Instant, force: bool) -> Result<(), QueueError> {
        let due = force
            || self
                .last_sync
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.sync_interval);
        if !due {
            return Ok(());
        }
        if self.unsynced || self.dir_unsynced {
            self.sync()?;
        }
        self.last_sync = Some(now);
        Ok(())
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        if self.unsynced || self.dir_unsynced {
            if let Err(e) = self.sync() {
                log::warn!("{:#}", anyhow::Error::from(e));
            }
        }
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

    fn cfg(segment_bytes: u64) -> FileStoreConfig {
        FileStoreConfig {
            segment_bytes,
            sync_interval: Duration::from_secs(1),
        }
    }

    /// Every unacknowledged record, oldest first.
    fn all(s: &mut FileStore) -> Vec<(u64, Record)> {
        let mut v = Vec::new();
        let mut from = 0;
        while let Some((seq, r)) = s.next_from(from).unwrap() {
            from = seq + 1;
            v.push((seq, r));
        }
        v
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn hands_out_in_order_and_skips_what_was_acknowledged() {
        let d = tempfile::tempdir().unwrap();
        let mut s = FileStore::open(d.path(), cfg(100)).unwrap();
        for i in 0..10 {
            assert_eq!(s.append(&rec(i)).unwrap(), i as u64 + 1);
        }
        assert!(segments(d.path()).len() > 2, "small segments roll");
        let sent = all(&mut s);
        assert_eq!(sent.len(), 10);
        assert_eq!(sent[3].1, rec(3));
        // Out of order: 1, 2, 4 → the head is at 2; 4 is not handed out again.
        for seq in [1, 2, 4] {
            assert!(s.ack(seq).unwrap());
        }
        assert!(!s.ack(4).unwrap(), "a second ack changes nothing");
        assert!(!s.ack(99).unwrap(), "nor does one for a seq never stored");
        assert_eq!(s.stats().depth, 7);
        let left: Vec<u64> = all(&mut s).iter().map(|x| x.0).collect();
        assert_eq!(left, vec![3, 5, 6, 7, 8, 9, 10]);
        assert_eq!(s.next_from(6).unwrap().unwrap().0, 6);
        for seq in left {
            s.ack(seq).unwrap();
        }
        assert_eq!(s.stats().depth, 0);
        assert_eq!(s.stats().bytes, 0);
        assert!(
            segments(d.path()).is_empty(),
            "delivered segments are deleted"
        );
        // The sequence goes on after everything was delivered.
        assert_eq!(s.append(&rec(11)).unwrap(), 11);
    }

    #[test]
    fn reopening_recovers_the_undelivered_and_continues_the_sequence() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = FileStore::open(d.path(), cfg(100)).unwrap();
            for i in 0..6 {
                s.append(&rec(i)).unwrap();
            }
            s.ack(1).unwrap();
            s.ack(2).unwrap();
            s.ack(5).unwrap(); // above the head: sent again after a restart
        }
        let mut s = FileStore::open(d.path(), cfg(100)).unwrap();
        assert_eq!(s.stats().recovered, 4);
        let left = all(&mut s);
        assert_eq!(
            left.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        assert_eq!(left[0].1, rec(2));
        assert_eq!(s.append(&rec(9)).unwrap(), 7);
    }

    #[test]
    fn the_mark_of_earlier_versions_is_read() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = FileStore::open(d.path(), cfg(1 << 20)).unwrap();
            for i in 0..4 {
                s.append(&rec(i)).unwrap();
            }
        }
        fs::write(d.path().join(ACKED_FILE), "2").unwrap();
        let mut s = FileStore::open(d.path(), cfg(1 << 20)).unwrap();
        assert_eq!(all(&mut s).first().unwrap().0, 3);
        assert_eq!(fs::metadata(d.path().join(ACKED_FILE)).unwrap().len(), 12);
        // Garbage reads as "nothing delivered": duplicates, never loss.
        drop(s);
        fs::write(d.path().join(ACKED_FILE), [0xff; 12]).unwrap();
        let mut s = FileStore::open(d.path(), cfg(1 << 20)).unwrap();
        assert_eq!(all(&mut s).len(), 4);
    }

    /// A power cut can stop a write anywhere in the last record: every cut point gives back
    /// exactly the records before it (in every segment), and the queue goes on.
    #[test]
    fn a_torn_last_record_is_cut_at_every_byte_offset() {
        let src = tempfile::tempdir().unwrap();
        let n = 9;
        {
            let mut s = FileStore::open(src.path(), cfg(120)).unwrap();
            for i in 0..n {
                s.append(&rec(i)).unwrap();
            }
            s.commit(Instant::now(), true).unwrap();
        }
        let segs = segments(src.path());
        assert!(segs.len() >= 3, "{segs:?}");
        let last = segs.last().unwrap().clone();
        let bytes = fs::read(&last).unwrap();
        let (entries, _) = scan(0, &bytes);
        let tail = *entries.last().unwrap();
        let start = tail.offset as usize;
        assert_eq!(start + tail.len as usize, bytes.len());
        for cut in start..bytes.len() {
            let d = tempfile::tempdir().unwrap();
            for p in fs::read_dir(src.path()).unwrap() {
                let p = p.unwrap().path();
                fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
            }
            let seg = d.path().join(last.file_name().unwrap());
            fs::write(&seg, &bytes[..cut]).unwrap();
            let mut s = FileStore::open(d.path(), cfg(120)).unwrap();
            let st = s.stats();
            assert_eq!(st.recovered, n as u64 - 1, "cut at {cut}");
            assert_eq!(st.truncated_bytes, (cut - start) as u64, "cut at {cut}");
            let got = all(&mut s);
            let want: Vec<(u64, Record)> = (0..n - 1).map(|i| (i as u64 + 1, rec(i))).collect();
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(fs::metadata(&seg).unwrap().len(), start as u64);
            // The torn record never existed: its seq is used again, and the queue goes on.
            assert_eq!(s.append(&rec(99)).unwrap(), n as u64);
            drop(s);
            let mut s = FileStore::open(d.path(), cfg(120)).unwrap();
            assert_eq!(all(&mut s).last().unwrap().1, rec(99));
        }
    }

    #[test]
    fn drop_oldest_removes_whole_segments_but_never_the_one_being_written() {
        let d = tempfile::tempdir().unwrap();
        let one = encode(1, &rec(1)).unwrap().len() as u64;
        let mut s = FileStore::open(d.path(), cfg(one * 2 + 1)).unwrap();
        for i in 0..6 {
            s.append(&rec(i)).unwrap();
        }
        s.ack(2).unwrap(); // acknowledged out of order: not counted as dropped
        assert_eq!(s.drop_oldest().unwrap(), Some(1));
        assert_eq!(all(&mut s).first().unwrap().0, 3);
        assert_eq!(s.drop_oldest().unwrap(), Some(2));
        assert_eq!(
            s.drop_oldest().unwrap(),
            None,
            "only the writing segment is left"
        );
        assert_eq!(all(&mut s).iter().map(|x| x.0).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(s.stats().bytes, one * 2);
        // What was dropped counts as delivered after a restart too.
        drop(s);
        let s = FileStore::open(d.path(), cfg(one * 2 + 1)).unwrap();
        assert_eq!(s.stats().recovered, 2);
    }

    #[test]
    fn group_commit_syncs_on_the_interval_on_roll_and_when_forced() {
        let d = tempfile::tempdir().unwrap();
        let one = encode(1, &rec(1)).unwrap().len() as u64;
        let mut s = FileStore::open(d.path(), cfg(one * 3)).unwrap();
        let t0 = Instant::now();
        s.append(&rec(0)).unwrap();
        s.commit(t0, false).unwrap();
        assert_eq!(s.syncs, 1, "the first commit syncs");
        s.append(&rec(1)).unwrap();
        s.commit(t0 + Duration::from_millis(500), false).unwrap();
        assert_eq!(s.syncs, 1, "not before the interval");
        s.commit(t0 + Duration::from_millis(1000), false).unwrap();
        assert_eq!(s.syncs, 2, "once the interval has passed");
        s.commit(t0 + Duration::from_millis(2500), false).unwrap();
        assert_eq!(s.syncs, 2, "nothing new: nothing to sync");
        s.append(&rec(2)).unwrap();
        s.append(&rec(3)).unwrap(); // rolls: the full segment is synced first
        assert_eq!(s.syncs, 3);
        s.commit(t0 + Duration::from_millis(2600), true).unwrap();
        assert_eq!(s.syncs, 4, "forced");
        let strict = tempfile::tempdir().unwrap();
        let mut s = FileStore::open(
            strict.path(),
            FileStoreConfig {
                segment_bytes: 1 << 20,
                sync_interval: Duration::ZERO,
            },
        )
        .unwrap();
        s.append(&rec(0)).unwrap();
        s.append(&rec(1)).unwrap();
        assert_eq!(s.syncs, 2, "interval 0: every record");
    }
}

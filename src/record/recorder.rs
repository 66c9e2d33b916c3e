//! The recorder: the worker-side half keeps the audio history and runs the planner; the writer
//! thread does all file I/O. They talk over bounded channels with recycled buffers, so the worker
//! neither allocates per chunk nor waits on the disk (unless the disk falls so far behind that
//! every buffer is in flight; then it waits rather than lose audio, and says so once).

use super::bwf::{self, ClipWriter, SampleFormat};
use super::history::History;
use super::planner::{Action, ClipPlanner, ClipSummary, PlannerParams};
use super::retention::{self, RetentionPolicy};
use super::tagging::{tag_clip, TagSettings};
use crate::classify::Label;
use crate::events::Event;
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// Everything `[record]` configures, resolved.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    pub dir: PathBuf,
    pub format: SampleFormat,
    pub pre_roll_s: f64,
    pub post_roll_s: f64,
    pub max_clip_s: f64,
    pub take_s: f64,
    pub mode: super::planner::RecordMode,
    pub label_threshold: f32,
    /// The event tracker's hold time (delays the end of an event).
    pub hold_s: f64,
    pub tags: TagSettings,
    pub retention: RetentionPolicy,
    /// The privacy filter's demands (None: off).
    pub privacy: Option<RecordPrivacy>,
}

/// What the privacy filter asks of recordings. Private passages never reach the disk: the
/// writer holds back at least one detection latency of audio, so a window's verdict arrives
/// before its samples are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordPrivacy {
    /// Event clips: replace private passages with silence (true) or do not write a clip that
    /// holds one (false). Continuous takes are always redacted: a take cannot be cut without
    /// breaking its timeline.
    pub redact: bool,
}

/// Why a clip could not be written (the run goes on; the next clip starts afresh).
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("cannot start a clip in {dir}")]
    Create {
        dir: PathBuf,
        #[source]
        source: anyhow::Error,
    },
    #[error("cannot write the clip being recorded")]
    Write(#[source] anyhow::Error),
    #[error("cannot finish the clip")]
    Finish(#[source] anyhow::Error),
    #[error("a clip held a passage the privacy filter covers ({0:.1} s); it was not written")]
    Private(f64),
}

/// A clip that reached its final name.
#[derive(Debug, Clone)]
pub struct ClipWritten {
    pub path: PathBuf,
    pub summary: ClipSummary,
    pub rate: u32,
    pub started: SystemTime,
    /// Seconds of silence written where audio had been dropped upstream.
    pub gap_s: f64,
    /// Clips deleted by the retention policy to make room.
    pub deleted: Vec<PathBuf>,
}

impl ClipWritten {
    pub fn duration_s(&self) -> f64 {
        self.summary.frames() as f64 / self.rate as f64
    }
}

enum ToWriter {
    Open {
        start_frame: u64,
        started: SystemTime,
    },
    Audio {
        first_frame: u64,
        buf: Vec<f32>,
    },
    Close(ClipSummary),
    /// Frames `from..to` are private (privacy filter).
    Private {
        from: u64,
        to: u64,
    },
}

/// Frames per pooled buffer.
const BUF_FRAMES: usize = 8192;
/// Buffers in the pool.
const POOL: usize = 48;

/// The worker-side half.
pub struct Recorder {
    planner: ClipPlanner,
    history: History,
    channels: usize,
    rate: u32,
    stream_start: SystemTime,
    recording: bool,
    begun: bool,
    /// Frames `..forwarded` of the open clip have been sent to the writer.
    forwarded: u64,
    now: u64,
    actions: Vec<Action>,
    tx: Option<SyncSender<ToWriter>>,
    pool: Receiver<Vec<f32>>,
    waited: bool,
    done: Receiver<Result<ClipWritten, ClipError>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// Starts the writer thread. Unfinished clips from an earlier run are repaired first.
    pub fn start(
        settings: RecordSettings,
        rate: u32,
        channels: usize,
        model: String,
    ) -> Result<Self> {
        std::fs::create_dir_all(&settings.dir).with_context(|| {
            format!(
                "cannot create the recording directory {} (config field record.dir)",
                settings.dir.display()
            )
        })?;
        salvage(&settings, &model);
        let rate_f = rate as f64;
        let frames = |s: f64| (s.max(0.0) * rate_f).round() as u64;
        let params = PlannerParams {
            mode: settings.mode,
            pre_roll: frames(settings.pre_roll_s),
            post_roll: frames(settings.post_roll_s),
            max_len: frames(settings.max_clip_s).max(1),
            take_len: frames(settings.take_s).max(1),
            label_threshold: settings.label_threshold,
        };
        let history_s = settings.pre_roll_s + super::DETECTION_LATENCY_S + 1.0;
        let history = History::new((history_s * rate_f).ceil() as usize, channels);
        let ch = channels.max(1);
        let (pool_tx, pool_rx) = mpsc::sync_channel(POOL * 2);
        for _ in 0..POOL {
            let _ = pool_tx.try_send(Vec::with_capacity(BUF_FRAMES * ch));
        }
        let (tx, rx) = mpsc::sync_channel(POOL * 2 + 16);
        let (done_tx, done_rx) = mpsc::channel();
        let mut delay = ClipPlanner::commit_delay(rate, settings.hold_s, params.post_roll);
        if settings.privacy.is_some() {
            // A private window's verdict must arrive before its first sample is written.
            delay = delay.max((super::DETECTION_LATENCY_S * rate_f).ceil() as u64 + rate as u64);
        }
        let writer = std::thread::Builder::new()
            .name("sfxtag-recorder".into())
            .spawn(move || {
                writer_loop(
                    rx,
                    pool_tx,
                    done_tx,
                    settings,
                    rate,
                    ch,
                    model,
                    delay as usize,
                )
            })
            .context("cannot start the recorder thread")?;
        Ok(Self {
            planner: ClipPlanner::new(params, rate),
            history,
            channels: ch,
            rate,
            stream_start: SystemTime::now(),
            recording: false,
            begun: false,
            forwarded: 0,
            now: 0,
            actions: Vec::with_capacity(8),
            tx: Some(tx),
            pool: pool_rx,
            waited: false,
            done: done_rx,
            writer: Some(writer),
        })
    }

    /// Wall-clock time of stream frame 0.
    pub fn set_stream_start(&mut self, t: SystemTime) {
        self.stream_start = t;
    }

    fn send(&mut self, msg: ToWriter) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                if !self.waited {
                    self.waited = true;
                    log::warn!("recording: the disk is not keeping up; waiting for it");
                }
                let _ = tx.send(msg);
            }
            Err(TrySendError::Disconnected(_)) => {
                log::error!("recording: the writer thread has stopped; no more clips");
                self.tx = None;
            }
        }
    }

    fn buffer(&mut self) -> Vec<f32> {
        match self.pool.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            // Pool empty: every buffer is queued for the disk. A new one rather than a loss.
            Err(_) => Vec::with_capacity(BUF_FRAMES * self.channels),
        }
    }

    /// Sends frames `from..to` (from the history) to the writer.
    fn forward(&mut self, from: u64, to: u64) {
        let ch = self.channels;
        let mut pos = from.max(self.history.earliest());
        while pos < to {
            let end = (pos + BUF_FRAMES as u64).min(to);
            let mut buf = self.buffer();
            self.history.read(pos, end, |s| buf.extend_from_slice(s));
            let got = (buf.len() / ch) as u64;
            if got == 0 {
                break;
            }
            self.send(ToWriter::Audio {
                first_frame: pos,
                buf,
            });
            pos += got;
        }
        self.forwarded = self.forwarded.max(to);
    }

    fn apply(&mut self) {
        let actions = std::mem::take(&mut self.actions);
        for a in &actions {
            match a {
                Action::Open { start_frame } => {
                    let started = self.stream_start
                        + Duration::from_secs_f64(*start_frame as f64 / self.rate as f64);
                    self.send(ToWriter::Open {
                        start_frame: *start_frame,
                        started,
                    });
                    self.recording = true;
                    self.forwarded = *start_frame;
                    self.forward(*start_frame, self.now);
                }
                Action::Close(summary) => {
                    self.send(ToWriter::Close(summary.clone()));
                    self.recording = false;
                }
            }
        }
        self.actions = actions;
        self.actions.clear();
    }

    /// Native interleaved audio as the worker read it.
    pub fn audio(&mut self, first_frame: u64, interleaved: &[f32]) {
        if !self.begun {
            self.begun = true;
            self.planner.begin(first_frame, &mut self.actions);
            self.apply();
        }
        self.history.push(first_frame, interleaved);
        self.now = self.history.end();
        if self.recording {
            let from = self.forwarded.max(first_frame);
            self.forward(from, self.now);
        }
        self.planner.advance(self.now, &mut self.actions);
        self.apply();
    }

    pub fn event(&mut self, e: &Event) {
        let earliest = self.history.earliest();
        self.planner.on_event(e, earliest, &mut self.actions);
        self.apply();
    }

    pub fn window(&mut self, top: &[Label]) {
        self.planner.on_window(top);
    }

    /// A window (stream seconds `start_s..end_s`) the privacy filter covers: its samples are
    /// silenced, or its clip not written (see [`RecordPrivacy`]).
    pub fn private(&mut self, start_s: f64, end_s: f64) {
        let frame = |s: f64| (s.max(0.0) * self.rate as f64).round() as u64;
        let (from, to) = (frame(start_s), frame(end_s));
        if to > from {
            self.send(ToWriter::Private { from, to });
        }
    }

    /// Clips written since the last call (or errors writing them).
    pub fn written(&self) -> impl Iterator<Item = Result<ClipWritten, ClipError>> + '_ {
        self.done.try_iter()
    }

    /// Ends the stream: closes the open clip and waits for the writer to finish every clip.
    pub fn finish(&mut self) -> Vec<Result<ClipWritten, ClipError>> {
        self.planner.finish(self.now, &mut self.actions);
        self.apply();
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.done.try_iter().collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.finish();
        }
    }
}

struct OpenFile {
    clip: ClipWriter,
    started: SystemTime,
    /// Next frame expected from the worker.
    next: u64,
    /// Audio not yet committed: frames `pending_first..next`.
    pending: VecDeque<f32>,
    pending_first: u64,
    gap_frames: u64,
    /// Frame ranges of this clip silenced as private (merged, sorted).
    private: Vec<(u64, u64)>,
}

impl OpenFile {
    /// Private frames silenced in this clip.
    fn private_frames(&self) -> u64 {
        self.private.iter().map(|(a, b)| b - a).sum()
    }
}

/// Adds `a..b` to sorted, disjoint ranges, merging overlaps.
fn merge_range(ranges: &mut Vec<(u64, u64)>, a: u64, b: u64) {
    ranges.push((a, b));
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(x, y) in ranges.iter() {
        match out.last_mut() {
            Some(last) if x <= last.1 => last.1 = last.1.max(y),
            _ => out.push((x, y)),
        }
    }
    *ranges = out;
}

/// Silences the pending frames of `f` that the private spans cover; counts them.
fn redact(f: &mut OpenFile, spans: &VecDeque<(u64, u64)>, ch: usize) {
    let end = f.pending_first + (f.pending.len() / ch) as u64;
    for &(from, to) in spans {
        let (a, b) = (from.max(f.pending_first), to.min(end));
        if a >= b {
            continue;
        }
        let i = (a - f.pending_first) as usize * ch;
        let j = (b - f.pending_first) as usize * ch;
        f.pending.range_mut(i..j).for_each(|s| *s = 0.0);
        merge_range(&mut f.private, a, b);
    }
}

#[allow(clippy::too_many_arguments)]
fn writer_loop(
    rx: Receiver<ToWriter>,
    pool: SyncSender<Vec<f32>>,
    done: Sender<Result<ClipWritten, ClipError>>,
    settings: RecordSettings,
    rate: u32,
    ch: usize,
    model: String,
    delay: usize,
) {
    let mut open: Option<OpenFile> = None;
    let mut failed = false;
    let mut counter = 0u64;
    // Recent private spans: audio of a clip opened later (pre-roll) may fall in them.
    let mut private: VecDeque<(u64, u64)> = VecDeque::new();
    let keep_spans = (settings.pre_roll_s + super::DETECTION_LATENCY_S + 60.0) * rate as f64;
    let commit = |f: &mut OpenFile, keep: usize| -> Result<()> {
        let frames = f.pending.len() / ch;
        if frames > keep {
            let n = (frames - keep) * ch;
            let (a, b) = f.pending.as_slices();
            let a_n = a.len().min(n);
            f.clip.write(&a[..a_n])?;
            if n > a_n {
                f.clip.write(&b[..n - a_n])?;
            }
            f.pending.drain(..n);
            f.pending_first += (n / ch) as u64;
        }
        Ok(())
    };
    for msg in rx {
        match msg {
            ToWriter::Open {
                start_frame,
                started,
            } => {
                counter += 1;
                let stamp = started
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let reference = format!("SFXTAG{stamp}{counter:03}");
                let first = tag_clip(&[], &settings.tags, &model, Some(started), &reference, None);
                match ClipWriter::create(
                    &settings.dir,
                    &format!("{stamp}-{counter}"),
                    settings.format,
                    rate,
                    ch,
                    &first.meta,
                ) {
                    Ok(clip) => {
                        failed = false;
                        open = Some(OpenFile {
                            clip,
                            started,
                            next: start_frame,
                            pending: VecDeque::with_capacity((delay + BUF_FRAMES) * ch),
                            pending_first: start_frame,
                            gap_frames: 0,
                            private: Vec::new(),
                        })
                    }
                    Err(source) => {
                        failed = true;
                        let _ = done.send(Err(ClipError::Create {
                            dir: settings.dir.clone(),
                            source,
                        }));
                    }
                }
            }
            ToWriter::Audio { first_frame, buf } => {
                if let Some(f) = &mut open {
                    let frames = (buf.len() / ch) as u64;
                    let mut data = &buf[..];
                    if first_frame < f.next {
                        let skip = ((f.next - first_frame).min(frames) as usize) * ch;
                        data = &data[skip..];
                    } else if first_frame > f.next {
                        // Audio dropped upstream: silence keeps the clip's timeline true.
                        let gap = first_frame - f.next;
                        f.gap_frames += gap;
                        f.pending
                            .extend(std::iter::repeat_n(0.0, gap as usize * ch));
                        f.next = first_frame;
                    }
                    f.pending.extend(data.iter().copied());
                    f.next += (data.len() / ch) as u64;
                    redact(f, &private, ch);
                    if let Err(e) = commit(f, delay) {
                        let _ = done.send(Err(ClipError::Write(e)));
                        open = None;
                        failed = true;
                    }
                }
                let _ = pool.try_send(buf);
            }
            ToWriter::Private { from, to } => {
                private.push_back((from, to));
                while private
                    .front()
                    .is_some_and(|&(_, t)| (t as f64) + keep_spans < to as f64)
                {
                    private.pop_front();
                }
                if let Some(f) = &mut open {
                    redact(f, &private, ch);
                }
            }
            ToWriter::Close(summary) => {
                let Some(mut f) = open.take() else {
                    if !failed {
                        log::warn!("recording: a clip closed that was never opened");
                    }
                    continue;
                };
                let withhold = f.private_frames() > 0
                    && settings.mode == super::planner::RecordMode::Events
                    && settings.privacy.is_some_and(|p| !p.redact);
                if withhold {
                    let secs = f.private_frames() as f64 / rate as f64;
                    let r = f.clip.discard().map_err(ClipError::Finish);
                    let _ = done.send(r.and(Err(ClipError::Private(secs))));
                    continue;
                }
                // Commit up to the clip's end, drop what lies after it.
                let keep_after = f
                    .next
                    .saturating_sub(summary.end_frame.max(f.pending_first));
                let r = commit(&mut f, keep_after as usize)
                    .and_then(|_| finish_clip(f, &summary, &settings, rate, &model));
                let _ = done.send(r.map_err(ClipError::Finish));
            }
        }
    }
    if let Some(f) = open.take() {
        // The worker went away without closing (it failed): keep what was committed.
        let summary = ClipSummary {
            start_frame: f.pending_first.saturating_sub(f.clip.frames()),
            end_frame: f.pending_first,
            labels: Vec::new(),
            event_ids: Vec::new(),
            continued: false,
        };
        let _ =
            done.send(finish_clip(f, &summary, &settings, rate, &model).map_err(ClipError::Finish));
    }
}

fn finish_clip(
    f: OpenFile,
    summary: &ClipSummary,
    settings: &RecordSettings,
    rate: u32,
    model: &str,
) -> Result<ClipWritten> {
    let stamp = f
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut tagging = tag_clip(
        &summary.labels,
        &settings.tags,
        model,
        Some(f.started),
        &format!("SFXTAG{stamp}"),
        None,
    );
    if f.private_frames() > 0 {
        tagging.meta.notes += &format!(
            " {:.2} s were silenced by the privacy filter.",
            f.private_frames() as f64 / rate as f64
        );
    }
    if f.gap_frames > 0 {
        tagging.meta.notes += &format!(
            " {:.2} s of audio were dropped upstream and written as silence.",
            f.gap_frames as f64 / rate as f64
        );
    }
    // Number the FX name before the iXML is written, so tags and file name agree.
    let tagging = tagging.numbered(tagging.first_free(&settings.dir));
    let part = f.clip.finish(&tagging.meta)?;
    let path = bwf::publish(&part, &settings.dir, &|n| tagging.name(n))?;
    let deleted = retention::enforce(&settings.dir, settings.retention);
    Ok(ClipWritten {
        path,
        summary: summary.clone(),
        rate,
        started: f.started,
        gap_s: f.gap_frames as f64 / rate as f64,
        deleted,
    })
}

/// Repairs clips left unfinished by a crash or power cut and gives them final names
/// (`<fallback CatID>_Recovered_…`), so nothing recorded is lost.
fn salvage(settings: &RecordSettings, model: &str) {
    for part in bwf::leftover_parts(&settings.dir) {
        let r = bwf::repair_part(&part).and_then(|frames| {
            let t = tag_clip(
                &[],
                &settings.tags,
                model,
                None,
                "SFXTAG-recovered",
                Some("Recovered"),
            );
            let t = t.numbered(t.first_free(&settings.dir));
            let p = bwf::publish(&part, &settings.dir, &|n| t.name(n))?;
            Ok((frames, p))
        });
        match r {
            Ok((frames, p)) => log::warn!(
                "recording: recovered an unfinished clip ({frames} frames) as {}",
                p.display()
            ),
            Err(e) => log::warn!(
                "recording: cannot recover {}: {e:#}; left as it is",
                part.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Phase;
    use sfxtag_core::manifest::Taxonomy;

    const RATE: u32 = 8_000;

    fn settings(
        dir: &std::path::Path,
        mode: super::super::planner::RecordMode,
        redact: bool,
    ) -> RecordSettings {
        RecordSettings {
            dir: dir.to_path_buf(),
            format: SampleFormat::Float32,
            pre_roll_s: 1.0,
            post_roll_s: 0.5,
            max_clip_s: 60.0,
            take_s: 60.0,
            mode,
            label_threshold: 0.5,
            hold_s: 1.0,
            tags: TagSettings::default(),
            retention: RetentionPolicy {
                max_bytes: 0,
                keep_per_category: 0,
            },
            privacy: Some(RecordPrivacy { redact }),
        }
    }

    fn event(phase: Phase, start_s: f64, end_s: Option<f64>) -> Event {
        Event {
            id: 1,
            phase,
            label: Label::new("DOORS", Taxonomy::UcsCategory, 0.9),
            score: 0.9,
            peak: 0.9,
            start_s,
            end_s,
        }
    }

    /// 12 s of a constant 0.5 tone, with an event over 3–8 s and a private window over 5–6 s,
    /// each reported a detection latency after its audio (as the daemon does).
    fn run(s: RecordSettings) -> Vec<Result<ClipWritten, ClipError>> {
        let mut r = Recorder::start(s, RATE, 1, "m@1".into()).unwrap();
        let chunk = vec![0.5f32; RATE as usize / 10];
        let mut out = Vec::new();
        for i in 0..120u64 {
            r.audio(i * chunk.len() as u64, &chunk);
            let now_s = (i + 1) as f64 / 10.0;
            if (now_s - 6.5).abs() < 1e-9 {
                r.event(&event(Phase::Start, 3.0, None));
            }
            if (now_s - 8.5).abs() < 1e-9 {
                r.private(5.0, 6.0);
            }
            if (now_s - 10.0).abs() < 1e-9 {
                r.event(&event(Phase::End, 3.0, Some(8.0)));
            }
            out.extend(r.written());
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn a_private_passage_keeps_its_clip_off_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(settings(
            dir.path(),
            super::super::planner::RecordMode::Events,
            false,
        ));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            matches!(out[0], Err(ClipError::Private(s)) if (s - 1.0).abs() < 0.01),
            "{out:?}"
        );
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(
            files.is_empty(),
            "nothing on disk, not even a part file: {files:?}"
        );
    }

    #[test]
    fn redaction_silences_exactly_the_private_passage() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(settings(
            dir.path(),
            super::super::planner::RecordMode::Events,
            true,
        ));
        let clip = out.into_iter().next().unwrap().unwrap();
        let samples = sfxtag_core::audio::decode_native(&clip.path)
            .unwrap()
            .interleaved;
        // The clip starts at 3 s − 1 s pre-roll = 2 s; the private passage is 5–6 s.
        let at = |s: f64| ((s - 2.0) * RATE as f64) as usize;
        assert!(samples[at(4.9)] == 0.5 && samples[at(6.1)] == 0.5);
        assert!(samples[at(5.0)..at(6.0)].iter().all(|&x| x == 0.0));
        assert_eq!(samples.iter().filter(|&&x| x == 0.0).count(), RATE as usize);
    }
}

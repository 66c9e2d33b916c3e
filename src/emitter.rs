//! The daemon's output per window: the prediction and embedding, the event tracker's start /
//! update / end and the recorder's finished clips become v1 payloads (built by `payload`) for the
//! publisher, and lines on stdout. A closed stdout (`sfxtag run --no-mqtt | head`) asks the daemon
//! to stop cleanly instead of failing.

use crate::events::{Event, EventParams, EventTracker};
use crate::mqtt::{PublisherHandle, ToPublisher};
use crate::payload::{self, EmbeddingMsg, EventMsg, PredictionMsg, RunContext, Topics};
use crate::pipeline::{WindowOut, WorkerSink};
use crate::queue::Record;
use crate::record::recorder::{ClipError, ClipWritten, Recorder};
use crate::settings::PrivacySettings;
use crate::source::SourceShared;
use crate::stats::{AudioCounters, LatencyRing};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingFormat {
    /// JSON with the z-scored embedding as base64 of little-endian f32.
    Json,
    /// The raw `dim × 4` bytes of little-endian f32.
    Raw,
    /// Do not publish embeddings.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StdoutMode {
    /// `text` when MQTT is off, else `off`.
    Auto,
    /// One human-readable line per window.
    Text,
    /// The prediction JSON per line.
    Json,
    Off,
}

/// What the emitter writes, resolved (`stdout` is never `Auto` here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSettings {
    pub embedding: EmbeddingFormat,
    pub stdout: StdoutMode,
}

/// Where queued messages go: the publisher, or nowhere without MQTT (a `Vec` in tests).
pub trait Outbox {
    fn queue(&mut self, r: Record);
}

impl Outbox for PublisherHandle {
    fn queue(&mut self, r: Record) {
        // A publisher that has stopped (fatal error) is noticed by the daemon's main loop.
        self.send(ToPublisher::Queued(r));
    }
}

impl<O: Outbox> Outbox for Option<O> {
    fn queue(&mut self, r: Record) {
        if let Some(o) = self {
            o.queue(r);
        }
    }
}

impl Outbox for Vec<Record> {
    fn queue(&mut self, r: Record) {
        self.push(r);
    }
}

/// stdout, which may go away under us.
struct Stdout {
    mode: StdoutMode,
    out: Box<dyn Write + Send>,
    closed: bool,
    /// Set when stdout is closed: the daemon stops.
    stop: Arc<AtomicBool>,
}

impl Stdout {
    fn line(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        let r = self
            .out
            .write_all(bytes)
            .and_then(|_| self.out.write_all(b"\n"))
            .and_then(|_| self.out.flush());
        if let Err(e) = r {
            self.closed = true;
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                log::info!("stdout was closed: stopping");
                self.stop.store(true, Ordering::Relaxed);
            } else {
                log::warn!("cannot write to stdout ({e}): no more lines there");
            }
        }
    }
}

/// One human-readable line per window.
fn text_line(w: &WindowOut<'_>, private: Option<&str>) -> String {
    let top = &w.prediction.top;
    let labels = if w.silent {
        "silence".to_string()
    } else if let Some(c) = private {
        format!("private ({c})")
    } else if top.is_empty() {
        "(no labels)".to_string()
    } else {
        let list = top
            .iter()
            .map(|l| format!("{} {:.2}", l.short(), l.score))
            .collect::<Vec<_>>()
            .join("  ");
        if w.prediction.confident {
            list
        } else {
            format!("? {list}")
        }
    };
    format!(
        "{:>4} {:>8.2}–{:<8.2}s  {:<48} {:>6.1} dBFS",
        w.seq, w.start_s, w.end_s, labels, w.level_dbfs
    )
}

pub struct Emitter<O> {
    ctx: RunContext,
    topics: Topics,
    embedding: EmbeddingFormat,
    stdout: Stdout,
    outbox: O,
    tracker: Option<EventTracker>,
    /// Reused for each window's events.
    events: Vec<Event>,
    recorder: Option<Recorder>,
    shared: Arc<SourceShared>,
    latency: Arc<Mutex<LatencyRing>>,
    clips: u64,
    clip_errors: u64,
    silence: SilenceReport,
    privacy: Option<PrivacySettings>,
}

/// When silent windows are announced: on every change to silence, then once per heartbeat of
/// stream time while it lasts (a Pi in a quiet room should not publish every 1.16 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilenceReport {
    heartbeat_s: f64,
    /// Stream second of the last announcement, while silent.
    last: Option<f64>,
}

impl SilenceReport {
    pub fn new(heartbeat: std::time::Duration) -> Self {
        Self {
            heartbeat_s: heartbeat.as_secs_f64(),
            last: None,
        }
    }

    /// Whether a window (silent or not, starting at stream second `start_s`) is published.
    pub fn publish(&mut self, silent: bool, start_s: f64) -> bool {
        if !silent {
            self.last = None;
            return true;
        }
        match self.last {
            Some(t) if start_s - t < self.heartbeat_s => false,
            _ => {
                self.last = Some(start_s);
                true
            }
        }
    }
}

impl<O: Outbox> Emitter<O> {
    /// `stop` is set when stdout closes; `shared` counts windows, `latency` the encoder's times
    /// (both read by the stats).
    pub fn new(
        ctx: RunContext,
        topics: Topics,
        output: OutputSettings,
        outbox: O,
        shared: Arc<SourceShared>,
        latency: Arc<Mutex<LatencyRing>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            ctx,
            topics,
            embedding: output.embedding,
            stdout: Stdout {
                mode: output.stdout,
                out: Box::new(std::io::stdout()),
                closed: false,
                stop,
            },
            outbox,
            tracker: None,
            events: Vec::with_capacity(16),
            recorder: None,
            shared,
            latency,
            clips: 0,
            clip_errors: 0,
            silence: SilenceReport::new(std::time::Duration::from_secs(60)),
            privacy: None,
        }
    }

    /// How often silence is announced (the gate itself runs in the worker's processor).
    pub fn with_silence_heartbeat(mut self, heartbeat: Option<std::time::Duration>) -> Self {
        if let Some(h) = heartbeat {
            self.silence = SilenceReport::new(h);
        }
        self
    }

    /// The privacy filter (`None`: off).
    pub fn with_privacy(mut self, privacy: Option<PrivacySettings>) -> Self {
        self.privacy = privacy;
        self
    }

    /// Debounced events on `<base>/event`.
    pub fn with_events(mut self, params: Option<EventParams>) -> Self {
        self.tracker = params.map(EventTracker::new);
        self
    }

    pub fn with_recorder(mut self, recorder: Option<Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    /// Lines go to `out` instead of the process's stdout.
    pub fn with_stdout(mut self, out: Box<dyn Write + Send>) -> Self {
        self.stdout.out = out;
        self
    }

    /// Stream second 0 is now (called when the worker starts).
    pub fn start_stream(&mut self, now: SystemTime) {
        self.ctx.stream_start = now;
        if let Some(r) = &mut self.recorder {
            r.set_stream_start(now);
        }
    }

    /// Clips recorded, and clips that could not be written.
    pub fn clips(&self) -> (u64, u64) {
        (self.clips, self.clip_errors)
    }

    fn queue(&mut self, topic: &str, payload: Vec<u8>) {
        self.outbox.queue(Record::new(topic, payload));
    }

    fn on_window(&mut self, w: WindowOut<'_>) {
        let counters = &self.shared.counters;
        AudioCounters::add(&counters.windows, 1);
        if w.silent {
            AudioCounters::add(&counters.silent_windows, 1);
        } else if let Ok(mut l) = self.latency.lock() {
            l.record_us(w.infer.as_micros() as u64);
        }
        let private = match (&self.privacy, w.silent) {
            (Some(p), false) => w
                .prediction
                .private_category(&p.categories, p.min_score)
                .map(str::to_string),
            _ => None,
        };
        if private.is_some() {
            AudioCounters::add(&counters.private_windows, 1);
        }
        if self.silence.publish(w.silent, w.start_s) {
            let prediction = match &private {
                Some(c) => PredictionMsg::private(&self.ctx, &w, c),
                None => PredictionMsg::new(&self.ctx, &w),
            }
            .to_json();
            match self.stdout.mode {
                StdoutMode::Text => self
                    .stdout
                    .line(text_line(&w, private.as_deref()).as_bytes()),
                StdoutMode::Json => self.stdout.line(&prediction),
                StdoutMode::Off | StdoutMode::Auto => {}
            }
            let topic = self.topics.prediction.clone();
            self.queue(&topic, prediction);
        }
        // Silent windows have no embedding; private ones keep theirs to themselves.
        let embedding = match self.embedding {
            _ if w.silent || private.is_some() => None,
            EmbeddingFormat::Json => Some(EmbeddingMsg::new(&self.ctx, &w).to_json()),
            EmbeddingFormat::Raw => Some(payload::embedding_raw(&w)),
            EmbeddingFormat::Off => None,
        };
        if let Some(e) = embedding {
            let topic = self.topics.embedding.clone();
            self.queue(&topic, e);
        }
        // Events and recordings act on confident labels only, and never on a private window.
        let acted_on = match &private {
            Some(_) => &[][..],
            None => w.prediction.confident_top(),
        };
        if let Some(t) = &mut self.tracker {
            self.events.clear();
            t.observe(w.start_s, w.end_s, acted_on, &mut self.events);
        }
        if let Some(r) = &mut self.recorder {
            if private.is_some() {
                r.private(w.start_s, w.end_s);
            }
            r.window(acted_on);
        }
        self.flush_events();
        self.poll_clips();
    }

    fn flush_events(&mut self) {
        let events = std::mem::take(&mut self.events);
        for e in &events {
            let m = EventMsg::new(&self.ctx, e);
            if self.stdout.mode == StdoutMode::Text {
                let line = format!(
                    "     event {} {} {} peak {:.2}",
                    m.phase,
                    m.id,
                    m.catid.as_deref().unwrap_or(&m.label),
                    m.peak
                );
                self.stdout.line(line.as_bytes());
            }
            let topic = self.topics.event.clone();
            self.queue(&topic, m.to_json());
            if let Some(r) = &mut self.recorder {
                r.event(e);
            }
        }
        self.events = events;
        self.events.clear();
    }

    /// Announces the clips the recorder has finished since the last call.
    fn poll_clips(&mut self) {
        let Some(r) = &self.recorder else { return };
        let done: Vec<_> = r.written().collect();
        for c in done {
            self.clip_done(c);
        }
    }

    fn clip_done(&mut self, c: Result<ClipWritten, ClipError>) {
        let c = match c {
            Ok(c) => c,
            Err(ClipError::Private(s)) => {
                log::info!(
                    "recording: a clip with {s:.1} s the privacy filter covers was not written"
                );
                return;
            }
            Err(e) => {
                self.clip_errors += 1;
                log::error!("recording: {:#}", anyhow::Error::from(e));
                return;
            }
        };
        self.clips += 1;
        for d in &c.deleted {
            log::info!("recording: retention deleted {}", d.display());
        }
        if self.stdout.mode == StdoutMode::Text {
            let line = format!("     clip  {} ({:.1} s)", c.path.display(), c.duration_s());
            self.stdout.line(line.as_bytes());
        } else {
            log::info!("recorded {} ({:.1} s)", c.path.display(), c.duration_s());
        }
        let file = c
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let topic = self.topics.event.clone();
        for m in EventMsg::clips(&self.ctx, &c.summary, c.rate, &file, self.clips) {
            self.queue(&topic, m.to_json());
        }
    }

    /// End of stream: open events end, the recorder finishes its clips.
    pub fn finish(&mut self) {
        if let Some(t) = &mut self.tracker {
            self.events.clear();
            t.finish(&mut self.events);
        }
        self.flush_events();
        if let Some(mut r) = self.recorder.take() {
            for c in r.finish() {
                self.clip_done(c);
            }
        }
    }
}

impl<O: Outbox> WorkerSink for Emitter<O> {
    fn window(&mut self, w: WindowOut<'_>) {
        self.on_window(w);
    }

    fn audio(&mut self, first_frame: u64, interleaved: &[f32]) {
        if let Some(r) = &mut self.recorder {
            r.audio(first_frame, interleaved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Label, Prediction, TopSource};
    use sfxtag_core::manifest::Taxonomy;
    use std::time::{Duration, UNIX_EPOCH};

    /// A stdout whose lines the test can read, or one that is closed.
    #[derive(Clone, Default)]
    struct Pipe(Arc<Mutex<Vec<u8>>>, bool);

    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.1 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Pipe {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn emitter(output: OutputSettings, pipe: &Pipe) -> (Emitter<Vec<Record>>, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = RunContext {
            source: "stdin".into(),
            model: "m@1".into(),
            run_id: "run".into(),
            stream_start: UNIX_EPOCH,
        };
        let e = Emitter::new(
            ctx,
            Topics::new("b"),
            output,
            Vec::new(),
            Arc::new(SourceShared::default()),
            Arc::new(Mutex::new(LatencyRing::new(8))),
            stop.clone(),
        )
        .with_stdout(Box::new(pipe.clone()));
        (e, stop)
    }

    fn window(seq: u64, z: &[f32], score: f32) -> WindowOut<'_> {
        WindowOut {
            seq,
            start_s: seq as f64,
            end_s: seq as f64 + 2.3,
            level_dbfs: -12.0,
            raw: z,
            z,
            prediction: Prediction {
                top: vec![Label::new("DOORWood", Taxonomy::UcsCatId, score)],
                top_source: TopSource::Head,
                confident: score >= 0.5,
                threshold: 0.5,
                ..Prediction::empty()
            },
            silent: false,
            infer: Duration::from_millis(3),
        }
    }

    fn silent(seq: u64, z: &[f32]) -> WindowOut<'_> {
        WindowOut {
            prediction: Prediction::empty(),
            silent: true,
            level_dbfs: -90.0,
            infer: Duration::ZERO,
            ..window(seq, z, 0.0)
        }
    }

    #[test]
    fn silence_is_announced_on_change_and_heartbeat_only() {
        let pipe = Pipe::default();
        let (e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Json,
                stdout: StdoutMode::Off,
            },
            &pipe,
        );
        let mut e = e.with_silence_heartbeat(Some(Duration::from_secs(10)));
        let z = [0.0f32; 2];
        e.window(window(0, &z, 0.9));
        // 30 silent windows a second apart: published at 1, 11, 21 s.
        for s in 1..31 {
            e.window(silent(s, &z));
        }
        e.window(window(31, &z, 0.9));
        let preds: Vec<serde_json::Value> = e
            .outbox
            .iter()
            .filter(|r| r.topic == "b/prediction")
            .map(|r| serde_json::from_slice(&r.payload).unwrap())
            .collect();
        let silences: Vec<u64> = preds
            .iter()
            .filter(|p| p["silence"] == true)
            .map(|p| p["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(silences, vec![1, 11, 21]);
        assert_eq!(preds.len(), 5, "sound, 3 × silence, sound");
        assert!(preds
            .iter()
            .all(|p| p["silence"] == true || p["label"]["catid"] == "DOORWood"));
        // Silent windows have no embedding.
        assert_eq!(
            topics(&e.outbox)
                .iter()
                .filter(|t| **t == "b/embedding")
                .count(),
            2
        );
        assert_eq!(AudioCounters::get(&e.shared.counters.silent_windows), 30);
    }

    #[test]
    fn private_windows_publish_only_their_category() {
        let pipe = Pipe::default();
        let (e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Json,
                stdout: StdoutMode::Text,
            },
            &pipe,
        );
        let mut e = e
            .with_privacy(Some(PrivacySettings {
                categories: vec!["VOICES".into()],
                min_score: 0.25,
                redact: false,
            }))
            .with_events(Some(EventParams {
                on: 0.6,
                off: 0.4,
                hold_s: 0.0,
            }));
        let z = [0.0f32; 2];
        let mut w = window(0, &z, 0.9);
        w.prediction.top = vec![
            Label::new("VOXMale", Taxonomy::UcsCatId, 0.9),
            Label::new("DOORWood", Taxonomy::UcsCatId, 0.05),
        ];
        e.window(w);
        e.finish();
        let topics = topics(&e.outbox);
        assert_eq!(topics, vec!["b/prediction"], "no embedding, no event");
        let p: serde_json::Value = serde_json::from_slice(&e.outbox[0].payload).unwrap();
        assert_eq!(p["private_category"], "VOICES");
        assert_eq!(p["top"], serde_json::json!([]));
        assert!(p["label"].is_null() && p.get("neighbours").is_none());
        assert!(!String::from_utf8_lossy(&e.outbox[0].payload).contains("0.9"));
        assert!(pipe.text().contains("private (VOICES)"), "{}", pipe.text());
        assert_eq!(AudioCounters::get(&e.shared.counters.private_windows), 1);
    }

    fn topics(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.topic.as_str()).collect()
    }

    #[test]
    fn a_window_becomes_a_prediction_and_an_embedding() {
        let pipe = Pipe::default();
        let (mut e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Json,
                stdout: StdoutMode::Off,
            },
            &pipe,
        );
        let z = [0.25f32; 4];
        e.window(window(0, &z, 0.9));
        e.window(window(1, &z, 0.9));
        assert_eq!(
            topics(&e.outbox),
            ["b/prediction", "b/embedding", "b/prediction", "b/embedding"]
        );
        let p: serde_json::Value = serde_json::from_slice(&e.outbox[2].payload).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&e.outbox[3].payload).unwrap();
        assert_eq!(p["seq"], 1);
        assert_eq!(m["seq"], 1);
        assert_eq!(p["ts"], m["ts"]);
        assert!(e.outbox.iter().all(|r| !r.retain));
        assert_eq!(AudioCounters::get(&e.shared.counters.windows), 2);
        assert_eq!(e.latency.lock().unwrap().len(), 2);
        assert!(pipe.text().is_empty(), "stdout off");
    }

    #[test]
    fn raw_or_no_embeddings() {
        let pipe = Pipe::default();
        let z = [1.0f32, 2.0];
        let (mut e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Raw,
                stdout: StdoutMode::Off,
            },
            &pipe,
        );
        e.window(window(0, &z, 0.9));
        assert_eq!(e.outbox[1].payload, payload::f32le(&z));
        let (mut e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Off,
                stdout: StdoutMode::Off,
            },
            &pipe,
        );
        e.window(window(0, &z, 0.9));
        assert_eq!(topics(&e.outbox), ["b/prediction"]);
    }

    #[test]
    fn json_stdout_is_the_prediction_payload_and_text_is_a_line() {
        let pipe = Pipe::default();
        let z = [0.0f32; 2];
        let (mut e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Off,
                stdout: StdoutMode::Json,
            },
            &pipe,
        );
        e.window(window(4, &z, 0.5));
        let printed = pipe.text();
        assert_eq!(printed.trim_end().as_bytes(), &e.outbox[0].payload[..]);
        let pipe = Pipe::default();
        let (mut e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Off,
                stdout: StdoutMode::Text,
            },
            &pipe,
        );
        e.window(window(4, &z, 0.5));
        let line = pipe.text();
        assert!(
            line.contains("DOORWood 0.50") && line.ends_with("dBFS\n"),
            "{line}"
        );
    }

    #[test]
    fn a_closed_stdout_asks_the_daemon_to_stop() {
        let pipe = Pipe(Arc::default(), true);
        let (mut e, stop) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Off,
                stdout: StdoutMode::Text,
            },
            &pipe,
        );
        let z = [0.0f32; 2];
        e.window(window(0, &z, 0.5));
        assert!(stop.load(Ordering::Relaxed), "a clean stop, not a panic");
        e.window(window(1, &z, 0.5));
        assert_eq!(e.outbox.len(), 2, "what was produced is still published");
    }

    #[test]
    fn events_start_and_end_with_the_runs_ids() {
        let pipe = Pipe::default();
        let (e, _) = emitter(
            OutputSettings {
                embedding: EmbeddingFormat::Off,
                stdout: StdoutMode::Text,
            },
            &pipe,
        );
        let mut e = e.with_events(Some(EventParams {
            on: 0.6,
            off: 0.4,
            hold_s: 0.0,
        }));
        let z = [0.0f32; 2];
        e.window(window(0, &z, 0.9));
        e.window(window(1, &z, 0.95));
        e.finish();
        let events: Vec<serde_json::Value> = e
            .outbox
            .iter()
            .filter(|r| r.topic == "b/event")
            .map(|r| serde_json::from_slice(&r.payload).unwrap())
            .collect();
        let phases: Vec<&str> = events
            .iter()
            .map(|v| v["phase"].as_str().unwrap())
            .collect();
        assert_eq!(phases.first(), Some(&"start"));
        assert_eq!(phases.last(), Some(&"end"));
        let id = events[0]["id"].as_str().unwrap();
        assert!(id.starts_with("run-"), "{id}");
        assert!(events.iter().all(|v| v["id"] == id), "one event, one id");
        assert!(pipe.text().contains("event start"), "{}", pipe.text());
    }
}

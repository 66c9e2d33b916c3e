//! The signal path after the ring: downmix → resample to 44.1 kHz (core StreamResampler) →
//! frontend (core) → tract encoder every window → z-score → classify.
//!
//! [`Processor`] takes mono 44.1 kHz audio and reports windows; `classify`, `embed`, `enroll`,
//! `bench` and the daemon all use it. [`Worker`] is the daemon's loop around it: it drains the
//! ring, drops the oldest audio when it falls too far behind (counted, and the stream time jumps
//! accordingly), and hands each window to a callback. Buffers are sized at start-up; nothing is
//! allocated per audio frame.

use crate::classify::{zscore_into, Prediction};
use crate::model::Model;
use crate::source::{SourceInfo, SourceShared};
use crate::stats::{AudioCounters, LatencyRing};
use anyhow::{anyhow, Result};
use sfxtag_core::audio::{downmix_into, StreamResampler};
use sfxtag_core::frontend::{
    frame_time_s, Frontend, FrontendEvent, HOP_SIZE, SAMPLE_RATE, WINDOW_FRAMES,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One processed window.
pub struct WindowOut<'a> {
    /// Window counter since the processor started (not reset by discontinuities).
    pub seq: u64,
    /// Stream seconds.
    pub start_s: f64,
    pub end_s: f64,
    /// RMS level of the window's audio in dBFS (floored at -120).
    pub level_dbfs: f32,
    /// Raw encoder embedding (zeros for a silent window).
    pub raw: &'a [f32],
    /// z-scored embedding (what is published; zeros for a silent window).
    pub z: &'a [f32],
    pub prediction: Prediction,
    /// Below the silence floor: not run through the encoder, `prediction` is empty.
    pub silent: bool,
    /// Encoder time of this window.
    pub infer: Duration,
}

/// Default silence floor: windows quieter than this (RMS, dBFS) are not classified.
pub const DEFAULT_SILENCE_FLOOR_DBFS: f32 = sfxtag_core::frontend::DEFAULT_SILENCE_FLOOR_DBFS;

const BLOCKS: usize = 256;

/// Per-hop energy blocks, for window levels.
struct Energy {
    /// (block index, sum of squares, samples)
    ring: [(u64, f64, u32); BLOCKS],
    cur_sum: f64,
    cur_n: u32,
    block: u64,
}

impl Energy {
    fn new() -> Self {
        Self {
            ring: [(u64::MAX, 0.0, 0); BLOCKS],
            cur_sum: 0.0,
            cur_n: 0,
            block: 0,
        }
    }

    fn push(&mut self, s: &[f32]) {
        for &x in s {
            let x = if x.is_finite() { x as f64 } else { 0.0 };
            self.cur_sum += x * x;
            self.cur_n += 1;
            if self.cur_n as usize == HOP_SIZE {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        self.ring[(self.block % BLOCKS as u64) as usize] = (self.block, self.cur_sum, self.cur_n);
        self.block += 1;
        self.cur_sum = 0.0;
        self.cur_n = 0;
    }

    /// Level over blocks `first..first+n` (missing blocks ignored; the current partial one used).
    fn level_dbfs(&self, first: u64, n: u64) -> f32 {
        let (mut sum, mut cnt) = (0.0f64, 0u64);
        for b in first..first + n {
            let e = self.ring[(b % BLOCKS as u64) as usize];
            if e.0 == b {
                sum += e.1;
                cnt += e.2 as u64;
            } else if b == self.block {
                sum += self.cur_sum;
                cnt += self.cur_n as u64;
            }
        }
        if cnt == 0 || sum <= 0.0 {
            return -120.0;
        }
        ((10.0 * (sum / cnt as f64).log10()) as f32).max(-120.0)
    }
}

/// Mono 44.1 kHz in, windows out.
pub struct Processor {
    frontend: Box<Frontend>,
    pub model: Model,
    z: Vec<f32>,
    energy: Box<Energy>,
    /// Stream seconds at which the current segment (since the last restart) began.
    offset_s: f64,
    /// Samples pushed in the current segment.
    samples: u64,
    seq: u64,
    pub latency: LatencyRing,
    /// Windows below this level (dBFS) skip the encoder and come out silent (None: every
    /// window is classified).
    pub silence_floor_dbfs: Option<f32>,
    /// Silent windows so far.
    pub silent_windows: u64,
    /// Zeros standing in for the embedding of a silent window.
    zeros: Vec<f32>,
}

impl Processor {
    /// A processor that classifies every window (no silence gate).
    pub fn new(model: Model) -> Self {
        let dim = model.manifest.encoder.embedding_dim;
        Self {
            frontend: Box::new(Frontend::new()),
            model,
            z: vec![0.0; dim],
            energy: Box::new(Energy::new()),
            offset_s: 0.0,
            samples: 0,
            seq: 0,
            latency: LatencyRing::new(1024),
            silence_floor_dbfs: None,
            silent_windows: 0,
            zeros: vec![0.0; dim],
        }
    }

    /// A processor that leaves windows below `floor_dbfs` unclassified.
    pub fn with_silence_floor(model: Model, floor_dbfs: Option<f32>) -> Self {
        let mut p = Self::new(model);
        p.silence_floor_dbfs = floor_dbfs;
        p
    }

    /// Windows processed so far.
    pub fn windows(&self) -> u64 {
        self.seq
    }

    pub fn non_finite(&self) -> u64 {
        self.frontend.stats().non_finite
    }

    /// Starts a new segment at stream time `at_s` (after dropped audio or between files).
    pub fn restart_at(&mut self, at_s: f64) {
        self.frontend.reset();
        *self.energy = Energy::new();
        self.offset_s = at_s;
        self.samples = 0;
    }

    /// Pushes mono 44.1 kHz samples.
    pub fn push(
        &mut self,
        samples: &[f32],
        on_window: &mut dyn FnMut(WindowOut<'_>),
    ) -> Result<()> {
        // Keep chunks well inside the energy ring.
        for chunk in samples.chunks(64 * HOP_SIZE) {
            self.energy.push(chunk);
            self.samples += chunk.len() as u64;
            self.feed(chunk, false, on_window)?;
        }
        Ok(())
    }

    /// Ends the segment: remaining frames, and one zero-padded window for a clip shorter than a
    /// window. The next push starts a new segment right after.
    pub fn finish(&mut self, on_window: &mut dyn FnMut(WindowOut<'_>)) -> Result<()> {
        self.feed(&[], true, on_window)?;
        let end = self.offset_s + self.samples as f64 / SAMPLE_RATE as f64;
        self.restart_at(end);
        Ok(())
    }

    fn feed(
        &mut self,
        samples: &[f32],
        finish: bool,
        on_window: &mut dyn FnMut(WindowOut<'_>),
    ) -> Result<()> {
        let Self {
            frontend,
            model,
            z,
            energy,
            offset_s,
            samples: seg_samples,
            seq,
            latency,
            silence_floor_dbfs,
            silent_windows,
            zeros,
        } = self;
        let seg_end = *offset_s + *seg_samples as f64 / SAMPLE_RATE as f64;
        let mut err: Option<anyhow::Error> = None;
        let mut handle = |ev: FrontendEvent<'_>| {
            let FrontendEvent::Window {
                first_frame,
                window,
                ..
            } = ev
            else {
                return;
            };
            if err.is_some() {
                return;
            }
            let start_s = *offset_s + frame_time_s(first_frame);
            let end_s = (*offset_s + frame_time_s(first_frame + WINDOW_FRAMES as u64))
                .min(seg_end.max(start_s));
            let level_dbfs = energy.level_dbfs(first_frame, WINDOW_FRAMES as u64);
            // Silence costs next to nothing: no encoder, no classification.
            if silence_floor_dbfs.is_some_and(|floor| level_dbfs < floor) {
                *silent_windows += 1;
                on_window(WindowOut {
                    seq: *seq,
                    start_s,
                    end_s,
                    level_dbfs,
                    raw: zeros,
                    z: zeros,
                    prediction: Prediction::empty(),
                    silent: true,
                    infer: Duration::ZERO,
                });
                *seq += 1;
                return;
            }
            let t0 = Instant::now();
            if let Err(e) = model.encoder.run(window) {
                err = Some(anyhow!(e));
                return;
            }
            let infer = t0.elapsed();
            latency.record_us(infer.as_micros() as u64);
            let enc = &model.manifest.encoder;
            zscore_into(
                &model.encoder.embedding,
                &enc.embedding_mean,
                &enc.embedding_std,
                z,
            );
            let logits = model.head_index.map(|i| model.encoder.logits[i].as_slice());
            let catid = model
                .catid_index
                .map(|i| model.encoder.logits[i].as_slice());
            let prediction = model.classifier.classify(z, logits, catid);
            on_window(WindowOut {
                seq: *seq,
                start_s,
                end_s,
                level_dbfs,
                raw: &model.encoder.embedding,
                z,
                prediction,
                silent: false,
                infer,
            });
            *seq += 1;
        };
        if finish {
            frontend.finish(&mut handle);
        } else {
            frontend.push(samples, &mut handle);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Where the worker's output goes.
pub trait WorkerSink {
    /// One processed window.
    fn window(&mut self, w: WindowOut<'_>);
    /// Audio as read from the ring, at the source's rate and channel count (interleaved), before
    /// processing. `first_frame` counts source frames from the start, dropped audio included.
    fn audio(&mut self, _first_frame: u64, _interleaved: &[f32]) {}
}

/// A sink that only wants windows.
pub struct OnWindow<F>(pub F);

impl<F: FnMut(WindowOut<'_>)> WorkerSink for OnWindow<F> {
    fn window(&mut self, w: WindowOut<'_>) {
        (self.0)(w)
    }
}

/// Why the worker stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// The source ended (file or stdin EOF).
    EndOfStream,
    /// Shutdown was requested.
    Stopped,
}

/// Worker tuning.
#[derive(Debug, Clone, Copy)]
pub struct WorkerParams {
    /// Live sources: when more than this much audio waits in the ring, the oldest is dropped
    /// down to `backlog_target_s`.
    pub max_backlog_s: f64,
    pub backlog_target_s: f64,
}

/// The daemon's processing loop over a ring.
pub struct Worker {
    pub processor: Processor,
    consumer: rtrb::Consumer<f32>,
    info: SourceInfo,
    shared: Arc<SourceShared>,
    params: WorkerParams,
    resampler: StreamResampler,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
    /// Input frames consumed or dropped (at the source rate).
    frames_in: u64,
}

/// Frames read from the ring per step.
const STEP_FRAMES: usize = 4096;

impl Worker {
    pub fn new(
        processor: Processor,
        consumer: rtrb::Consumer<f32>,
        info: SourceInfo,
        shared: Arc<SourceShared>,
        params: WorkerParams,
    ) -> Result<Self> {
        let resampler = StreamResampler::new(info.rate)?;
        let ch = info.channels.max(1);
        Ok(Self {
            processor,
            consumer,
            resampler,
            interleaved: vec![0.0; STEP_FRAMES * ch],
            mono: vec![0.0; STEP_FRAMES],
            info,
            shared,
            params,
            frames_in: 0,
        })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Runs until the source ends, fails (Err) or `stop()` returns true.
    pub fn run(
        &mut self,
        stop: &dyn Fn() -> bool,
        heartbeat: &dyn Fn(),
        sink: &mut dyn WorkerSink,
    ) -> Result<WorkerEnd> {
        let ch = self.info.channels.max(1);
        let rate = self.info.rate as f64;
        let max_backlog = (self.params.max_backlog_s * rate) as usize * ch;
        let target = (self.params.backlog_target_s * rate) as usize * ch;
        let counters = &self.shared.counters;
        loop {
            heartbeat();
            if stop() {
                return Ok(WorkerEnd::Stopped);
            }
            let avail = self.consumer.slots();
            counters
                .backlog_samples
                .store(avail as u64, Ordering::Relaxed);
            if !self.info.lossless && avail > max_backlog {
                let drop = (avail - target) / ch * ch;
                if let Ok(chunk) = self.consumer.read_chunk(drop) {
                    chunk.commit_all();
                }
                AudioCounters::add(&counters.dropped_samples, drop as u64);
                self.frames_in += (drop / ch) as u64;
                log::warn!(
                    "processing fell behind: dropped the oldest {:.2} s of audio",
                    (drop / ch) as f64 / rate
                );
                // Discard the resampler's buffered input and restart the frontend after the gap.
                self.resampler.flush(|_| {})?;
                self.processor.restart_at(self.frames_in as f64 / rate);
                continue;
            }
            if avail < ch {
                if self.shared.eof.load(Ordering::Acquire) && self.consumer.slots() < ch {
                    // What arrived before a source failure is still classified and published.
                    self.flush(&mut |w| sink.window(w))?;
                    if let Some(e) = self.shared.error() {
                        return Err(anyhow!(e));
                    }
                    return Ok(WorkerEnd::EndOfStream);
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let take = avail.min(STEP_FRAMES * ch) / ch * ch;
            let frames = take / ch;
            {
                let chunk = self.consumer.read_chunk(take).expect("slots checked");
                let (a, b) = chunk.as_slices();
                self.interleaved[..a.len()].copy_from_slice(a);
                self.interleaved[a.len()..a.len() + b.len()].copy_from_slice(b);
                chunk.commit_all();
            }
            sink.audio(self.frames_in, &self.interleaved[..take]);
            self.frames_in += frames as u64;
            downmix_into(&self.interleaved[..take], ch, &mut self.mono[..frames]);
            let processor = &mut self.processor;
            let mut err = None;
            let on_window = &mut |w: WindowOut<'_>| sink.window(w);
            self.resampler.push(&self.mono[..frames], |s| {
                if err.is_none() {
                    err = processor.push(s, on_window).err();
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
        }
    }

    /// Flushes the resampler and the frontend (end of stream).
    pub fn flush(&mut self, on_window: &mut dyn FnMut(WindowOut<'_>)) -> Result<()> {
        let processor = &mut self.processor;
        let mut err = None;
        // The resampler's flush pads with silence: keep only what corresponds to real input.
        let expected =
            (self.frames_in as f64 * SAMPLE_RATE as f64 / self.info.rate as f64).round() as u64;
        let mut produced = processor.samples_in_segment_total();
        self.resampler.flush(|s| {
            let room = expected.saturating_sub(produced) as usize;
            let s = &s[..s.len().min(room)];
            produced += s.len() as u64;
            if err.is_none() && !s.is_empty() {
                err = processor.push(s, on_window).err();
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        self.processor.finish(on_window)
    }
}

impl Processor {
    /// Samples of the stream so far at 44.1 kHz (stream position).
    pub fn samples_in_segment_total(&self) -> u64 {
        (self.offset_s * SAMPLE_RATE as f64).round() as u64 + self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_level_of_a_full_scale_square_is_zero_dbfs() {
        let mut e = Energy::new();
        let s: Vec<f32> = (0..HOP_SIZE * 10)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        e.push(&s);
        assert!(e.level_dbfs(0, 10).abs() < 1e-3);
        // Missing blocks are ignored; silence is the floor.
        assert!(e.level_dbfs(0, 100).abs() < 1e-3);
        let mut q = Energy::new();
        q.push(&vec![0.0; HOP_SIZE * 3]);
        assert_eq!(q.level_dbfs(0, 3), -120.0);
        // Half amplitude: -6 dB.
        let mut h = Energy::new();
        h.push(&s.iter().map(|x| x * 0.5).collect::<Vec<_>>());
        assert!((h.level_dbfs(0, 10) + 6.02).abs() < 0.01);
    }

    #[test]
    fn the_gate_level_is_the_one_the_trainer_computes() {
        // The trainer drops the windows below the floor by `window_level_dbfs` of the whole
        // clip; the daemon's streaming ring must give the same level, whatever the chunking.
        let s: Vec<f32> = (0..HOP_SIZE * 200)
            .map(|i| ((i as f32 * 0.013).sin() * (i as f32 / 70_000.0)).powi(3))
            .collect();
        let mut e = Energy::new();
        for chunk in s.chunks(777) {
            e.push(chunk);
        }
        for w in 0..3 {
            let first = (w * sfxtag_core::frontend::WINDOW_HOP) as u64;
            let ring = e.level_dbfs(first, WINDOW_FRAMES as u64);
            let whole = sfxtag_core::frontend::window_level_dbfs(&s, w);
            assert!((ring - whole).abs() < 1e-3, "window {w}: {ring} vs {whole}");
        }
    }
}

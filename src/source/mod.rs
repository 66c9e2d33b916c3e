//! Audio sources. Each writes interleaved f32 at its native rate and channel count into a
//! lock-free SPSC ring (`rtrb`); the worker (`pipeline`) reads it.
//!
//! - live sources (capture, paced file replay, stdin by default) never block: when the ring is
//!   full the new audio is dropped and counted as an overrun;
//! - lossless sources (`--fast` file replay or stdin) wait for space instead.
//!
//! The capture callback only copies into the ring: no locks, no allocation, no syscalls.

pub mod file;
pub mod stdin;

#[cfg(feature = "capture")]
pub mod capture;

use crate::stats::AudioCounters;
use rtrb::Producer;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a running source stopped early. Cloneable (its causes are shared) because the source
/// sets it on its own thread and the worker reads it on another.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("reading stdin failed")]
    Stdin(#[source] Arc<std::io::Error>),
    /// cpal's ALSA backend reports a vanished device as a backend error (poll's POLLERR, or
    /// ENODEV from the driver), not as `DeviceNotAvailable`: see `capture::stream_error`.
    #[cfg(feature = "capture")]
    #[error("the audio input device disappeared (unplugged?)")]
    DeviceGone(#[source] Arc<cpal::StreamError>),
    #[cfg(feature = "capture")]
    #[error("audio capture failed")]
    Capture(#[source] Arc<cpal::StreamError>),
}

/// Audio-input settings, resolved from `[input]`.
#[derive(Debug, Clone)]
pub struct InputSettings {
    pub spec: InputSpec,
    /// Pace replayed files / stdin in real time (dropping when behind) rather than lossless.
    pub realtime: bool,
    pub stdin_format: stdin::PcmFormat,
    pub stdin_rate: u32,
    pub stdin_channels: usize,
    pub capture_rate: Option<u32>,
    pub capture_channels: Option<u16>,
    /// Seconds of audio the ring holds.
    pub ring_s: f64,
}

/// Opens the source `input` names and starts it.
pub fn open(
    input: &InputSettings,
    shared: Arc<SourceShared>,
) -> anyhow::Result<(SourceInfo, rtrb::Consumer<f32>, Running)> {
    let i = input;
    match &i.spec {
        InputSpec::Stdin => stdin::open(
            i.stdin_format,
            i.stdin_rate,
            i.stdin_channels,
            !i.realtime,
            i.ring_s,
            shared,
        ),
        InputSpec::File(p) => file::open(p, i.realtime, i.ring_s, shared),
        #[cfg(feature = "capture")]
        spec => capture::open(spec, i.capture_rate, i.capture_channels, i.ring_s, shared),
        #[cfg(not(feature = "capture"))]
        spec => Err(anyhow::anyhow!(
            "input {spec:?} is a capture device, but this sfxtag was built without the `capture` feature (ALSA); use a file or '-' for stdin"
        )),
    }
}

/// What `--input` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// `-`: raw PCM on stdin.
    Stdin,
    /// An audio file (WAV, FLAC, Ogg/Vorbis, MP3).
    File(PathBuf),
    /// A capture device by name (or a unique part of it), or `default`.
    DeviceName(String),
    /// A capture device by its index in `sfxtag devices`.
    DeviceIndex(usize),
}

const AUDIO_EXT: [&str; 7] = ["wav", "wave", "flac", "ogg", "oga", "mp3", "mpga"];

impl InputSpec {
    /// `-` → stdin; `file:P`, an existing path, or a name with `/` or an audio extension → file;
    /// `device:N` / a number → device index or name; anything else → device name.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s == "-" {
            return Self::Stdin;
        }
        if let Some(p) = s.strip_prefix("file:") {
            return Self::File(p.into());
        }
        if let Some(d) = s
            .strip_prefix("device:")
            .or_else(|| s.strip_prefix("alsa:"))
        {
            return match d.parse() {
                Ok(i) => Self::DeviceIndex(i),
                Err(_) => Self::DeviceName(d.into()),
            };
        }
        if let Ok(i) = s.parse::<usize>() {
            return Self::DeviceIndex(i);
        }
        let p = std::path::Path::new(s);
        let audio_ext = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXT.contains(&e.to_ascii_lowercase().as_str()));
        if p.exists() || s.contains('/') || audio_ext {
            return Self::File(p.into());
        }
        Self::DeviceName(s.into())
    }
}

/// What a running source is.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// For payloads: `file:<name>`, `stdin`, `alsa:<device>`.
    pub name: String,
    pub rate: u32,
    pub channels: usize,
    /// Whether the source waits for ring space (no drops) instead of dropping.
    pub lossless: bool,
}

/// State shared between a source and the worker.
#[derive(Debug, Default)]
pub struct SourceShared {
    /// The source has delivered its last sample.
    pub eof: AtomicBool,
    /// Ask the source to stop (shutdown).
    pub stop: AtomicBool,
    /// A fatal source error (device unplugged, read error); set once.
    pub error: Mutex<Option<SourceError>>,
    pub counters: AudioCounters,
}

impl SourceShared {
    pub fn fail(&self, error: SourceError) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(error);
        }
        self.eof.store(true, Ordering::Release);
    }

    pub fn error(&self) -> Option<SourceError> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Keeps a running source alive; dropping it stops the source.
pub enum Running {
    Thread(std::thread::JoinHandle<()>),
    #[cfg(feature = "capture")]
    Capture(capture::CaptureStream),
}

/// Writes as much of `data` as fits, whole frames only; counts what did not fit as an overrun.
/// Real-time safe: no allocation, no locking.
pub fn push_live(
    producer: &mut Producer<f32>,
    data: impl ExactSizeIterator<Item = f32>,
    channels: usize,
    shared: &SourceShared,
) {
    let len = data.len();
    let free = producer.slots();
    let n = if free >= len {
        len
    } else {
        free - free % channels.max(1)
    };
    if n > 0 {
        if let Ok(chunk) = producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(data.take(n));
        }
    }
    if n < len {
        AudioCounters::add(&shared.counters.overruns, 1);
        AudioCounters::add(&shared.counters.overrun_samples, (len - n) as u64);
    }
}

/// Writes all of `data`, waiting for space; returns false if asked to stop first.
pub fn push_blocking(
    producer: &mut Producer<f32>,
    mut data: &[f32],
    shared: &SourceShared,
) -> bool {
    while !data.is_empty() {
        if shared.stopping() {
            return false;
        }
        let n = producer.slots().min(data.len());
        if n == 0 {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        if let Ok(chunk) = producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(data[..n].iter().copied());
        }
        data = &data[n..];
    }
    true
}

/// A ring for `seconds` of audio at `rate` × `channels`.
pub fn ring(rate: u32, channels: usize, seconds: f64) -> (Producer<f32>, rtrb::Consumer<f32>) {
    let n = ((rate as f64 * seconds).ceil() as usize).max(4096) * channels.max(1);
    rtrb::RingBuffer::new(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_spec_parsing() {
        assert_eq!(InputSpec::parse("-"), InputSpec::Stdin);
        assert_eq!(InputSpec::parse("x.wav"), InputSpec::File("x.wav".into()));
        assert_eq!(InputSpec::parse("a/b"), InputSpec::File("a/b".into()));
        assert_eq!(InputSpec::parse("2"), InputSpec::DeviceIndex(2));
        assert_eq!(InputSpec::parse("device:3"), InputSpec::DeviceIndex(3));
        assert_eq!(
            InputSpec::parse("USB Audio"),
            InputSpec::DeviceName("USB Audio".into())
        );
        assert_eq!(
            InputSpec::parse("alsa:hw:1,0"),
            InputSpec::DeviceName("hw:1,0".into())
        );
        assert_eq!(InputSpec::parse("file:7"), InputSpec::File("7".into()));
    }

    #[test]
    fn live_push_drops_whole_frames_and_counts() {
        let (mut p, mut c) = rtrb::RingBuffer::<f32>::new(5);
        let shared = SourceShared::default();
        push_live(&mut p, [1.0f32; 4].into_iter(), 2, &shared);
        push_live(&mut p, [2.0f32; 4].into_iter(), 2, &shared);
        // Only one free slot left: not a whole stereo frame, so nothing of the second write.
        assert_eq!(c.slots(), 4);
        assert_eq!(AudioCounters::get(&shared.counters.overruns), 1);
        assert_eq!(AudioCounters::get(&shared.counters.overrun_samples), 4);
        let chunk = c.read_chunk(4).unwrap();
        assert_eq!(chunk.as_slices().0, &[1.0; 4]);
    }
}

//! Audio in: decoding (symphonia: WAV, FLAC, Ogg/Vorbis, MP3), downmix to mono by averaging
//! channels, and resampling to 44.1 kHz (rubato). Used by the daemon's file sources, `classify`,
//! `embed` and by the trainer, so every path feeds the frontend the same signal.

use crate::frontend::SAMPLE_RATE;
use rubato::{FftFixedIn, Resampler};
use std::fs::File;
use std::path::{Path, PathBuf};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{
    DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_PCM_F32BE, CODEC_TYPE_PCM_F32LE,
    CODEC_TYPE_PCM_F64BE, CODEC_TYPE_PCM_F64LE,
};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Lowest and highest source rates accepted (covers telephone audio to high-resolution files).
/// File extensions of the audio the decoder reads (WAV, FLAC, Ogg/Vorbis, MP3), lower case.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "flac", "ogg", "oga", "mp3"];
pub const MIN_RATE: u32 = 4_000;
pub const MAX_RATE: u32 = 768_000;

/// Errors of decoding and resampling. Each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is empty (0 bytes)")]
    EmptyFile { path: PathBuf },
    #[error("{path} is not a supported audio file (WAV, FLAC, Ogg/Vorbis or MP3): {detail}")]
    Unsupported { path: PathBuf, detail: String },
    #[error("{path} has no decodable audio track")]
    NoTrack { path: PathBuf },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} holds no audio samples")]
    NoSamples { path: PathBuf },
    #[error("{path}: sample {index} is not a finite number (NaN or infinity)")]
    NonFinite { path: PathBuf, index: usize },
    #[error("sample rate {rate} Hz is outside the supported {MIN_RATE}–{MAX_RATE} Hz")]
    BadRate { rate: u32 },
    #[error("channel count {0} is not supported (1 or more)")]
    BadChannels(usize),
    #[error("resampler: {0}")]
    Resample(String),
}

/// Decoded audio at its native rate and channel count.
#[derive(Debug, Clone)]
pub struct NativeAudio {
    pub rate: u32,
    pub channels: usize,
    /// Interleaved f32 samples.
    pub interleaved: Vec<f32>,
    /// Packets that failed to decode and were skipped (a damaged stretch, not the whole file).
    pub skipped_packets: usize,
    /// Bits per sample of the stored PCM (WAV, FLAC), when the container says.
    pub bits_per_sample: Option<u32>,
    /// The stored samples are floating point (float WAV).
    pub float: bool,
    /// Frames the container's header promises, when it says.
    pub declared_frames: Option<u64>,
    /// The stream ended on a read error after some audio (cut off mid-packet or mid-page),
    /// not at a clean end.
    pub ended_early: bool,
}

impl NativeAudio {
    pub fn frames(&self) -> usize {
        self.interleaved.len() / self.channels.max(1)
    }
    pub fn duration_s(&self) -> f64 {
        self.frames() as f64 / self.rate as f64
    }
    /// How the file falls short of what it promises, if it does.
    pub fn truncation(&self) -> Option<Truncation> {
        let decoded_s = self.duration_s();
        let declared_s = self
            .declared_frames
            .map(|f| f as f64 / self.rate.max(1) as f64);
        let short = declared_s.is_some_and(|d| d - decoded_s > TRUNCATION_TOLERANCE_S);
        (short || self.ended_early).then_some(Truncation {
            declared_s,
            decoded_s,
        })
    }
}

/// Shortfalls below this (codec padding, rounding) are not a truncation.
pub const TRUNCATION_TOLERANCE_S: f64 = 0.05;

/// A file that holds less audio than its header promises, or whose stream is cut off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truncation {
    /// Seconds the header promises (None: the container does not say).
    pub declared_s: Option<f64>,
    /// Seconds actually decoded.
    pub decoded_s: f64,
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.declared_s {
            Some(d) => write!(
                f,
                "the header promises {d:.2} s of audio but the file holds {:.2} s (truncated or damaged); using what is there",
                self.decoded_s
            ),
            None => write!(
                f,
                "the stream is cut off after {:.2} s (truncated or damaged); using what is there",
                self.decoded_s
            ),
        }
    }
}

/// Audio ready for the frontend: mono, 44.1 kHz.
#[derive(Debug, Clone)]
pub struct MonoAudio {
    pub samples: Vec<f32>,
    pub source_rate: u32,
    pub source_channels: usize,
    pub skipped_packets: usize,
    /// Set when the file holds less than it promises.
    pub truncation: Option<Truncation>,
}

/// Decodes a file at its native rate and channel count.
pub fn decode_native(path: &Path) -> Result<NativeAudio, AudioError> {
    let file = File::open(path).map_err(|source| AudioError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if file.metadata().map(|m| m.len()).unwrap_or(1) == 0 {
        return Err(AudioError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probe = |source: Box<dyn symphonia::core::io::MediaSource>| {
        symphonia::default::get_probe().format(
            &hint,
            MediaSourceStream::new(source, Default::default()),
            // Gapless: trim MP3 encoder delay and padding (as ffmpeg/Essentia do), or every MP3
            // is shifted by ~1100 samples against the reference.
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
    };
    let probed = match probe(Box::new(file)) {
        Ok(p) => p,
        Err(e) => {
            // Some MP3s start with a broken ID3v2 tag that symphonia's reader rejects although
            // the audio behind it is fine (ffmpeg skips it): retry once without the tag.
            let bytes = std::fs::read(path).map_err(|source| AudioError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            match id3v2_len(&bytes) {
                Some(skip) if skip < bytes.len() => {
                    probe(Box::new(std::io::Cursor::new(bytes[skip..].to_vec())))
                }
                _ => Err(e),
            }
            .map_err(|e| AudioError::Unsupported {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?
        }
    };
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::NoTrack {
            path: path.to_path_buf(),
        })?;
    let track_id = track.id;
    let bits_per_sample = track.codec_params.bits_per_sample;
    let declared_frames = track.codec_params.n_frames;
    let float = [
        CODEC_TYPE_PCM_F32LE,
        CODEC_TYPE_PCM_F32BE,
        CODEC_TYPE_PCM_F64LE,
        CODEC_TYPE_PCM_F64BE,
    ]
    .contains(&track.codec_params.codec);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::Unsupported {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
    let mut interleaved = Vec::new();
    let mut skipped = 0usize;
    let mut decoded_packets = 0usize;
    let mut ended_early = false;
    let mut sample_buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            // End of stream (also how a truncated file ends: we keep what decoded, and the
            // header's length tells whether it was cut short).
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                if decoded_packets == 0 {
                    return Err(AudioError::Corrupt {
                        path: path.to_path_buf(),
                        detail: e.to_string(),
                    });
                }
                ended_early = true;
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                rate = spec.rate;
                channels = spec.channels.count();
                let need = buf.capacity() as u64;
                let sb = match &mut sample_buf {
                    Some(sb) if sb.capacity() >= need as usize => sb,
                    _ => sample_buf.insert(SampleBuffer::new(need, spec)),
                };
                sb.copy_interleaved_ref(buf);
                interleaved.extend_from_slice(sb.samples());
                decoded_packets += 1;
            }
            Err(SymError::DecodeError(_)) => skipped += 1,
            Err(SymError::IoError(_)) => skipped += 1,
            Err(e) => {
                return Err(AudioError::Corrupt {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })
            }
        }
    }
    if decoded_packets == 0 && skipped > 0 {
        return Err(AudioError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("none of its {skipped} packets could be decoded"),
        });
    }
    if channels == 0 {
        return Err(AudioError::BadChannels(0));
    }
    if interleaved.is_empty() {
        return Err(AudioError::NoSamples {
            path: path.to_path_buf(),
        });
    }
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(AudioError::BadRate { rate });
    }
    if let Some(index) = interleaved.iter().position(|s| !s.is_finite()) {
        return Err(AudioError::NonFinite {
            path: path.to_path_buf(),
            index,
        });
    }
    // An Ogg stream has no length in its header: a cut-off file shows as a last page that
    // runs past the end of the file, or as no end-of-stream page at all.
    if !ended_early && is_ogg(path) {
        if let Ok(bytes) = std::fs::read(path) {
            ended_early = ogg_cut_off(&bytes);
        }
    }
    Ok(NativeAudio {
        rate,
        channels,
        interleaved,
        skipped_packets: skipped,
        bits_per_sample,
        float,
        declared_frames,
        ended_early,
    })
}

fn is_ogg(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"OggS"
}

/// Whether an Ogg file is cut off: a page runs past the end of the file, the page chain
/// breaks, or the last page does not end the stream (no end-of-stream flag).
pub fn ogg_cut_off(bytes: &[u8]) -> bool {
    let mut at = 0usize;
    let mut last_flags = None;
    while at < bytes.len() {
        let Some(h) = bytes.get(at..at + 27) else {
            return true;
        };
        if &h[..4] != b"OggS" {
            return true;
        }
        let segments = h[26] as usize;
        let Some(table) = bytes.get(at + 27..at + 27 + segments) else {
            return true;
        };
        let body: usize = table.iter().map(|&b| b as usize).sum();
        let end = at + 27 + segments + body;
        if end > bytes.len() {
            return true;
        }
        last_flags = Some(h[5]);
        at = end;
    }
    last_flags.is_none_or(|f| f & 0x04 == 0)
}

/// Length of a leading ID3v2 tag (header + syncsafe size + optional footer), if any.
fn id3v2_len(b: &[u8]) -> Option<usize> {
    if b.len() < 10 || &b[..3] != b"ID3" {
        return None;
    }
    let size = b[6..10]
        .iter()
        .fold(0usize, |acc, &x| (acc << 7) | (x & 0x7f) as usize);
    let footer = if b[5] & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

/// Decodes a file to mono 44.1 kHz.
pub fn decode_mono_44k(path: &Path) -> Result<MonoAudio, AudioError> {
    let native = decode_native(path)?;
    let mono = downmix(&native.interleaved, native.channels)?;
    let samples = resample_to_44k(&mono, native.rate)?;
    Ok(MonoAudio {
        samples,
        source_rate: native.rate,
        source_channels: native.channels,
        skipped_packets: native.skipped_packets,
        truncation: native.truncation(),
    })
}

/// Averages interleaved channels into mono.
pub fn downmix(interleaved: &[f32], channels: usize) -> Result<Vec<f32>, AudioError> {
    if channels == 0 {
        return Err(AudioError::BadChannels(0));
    }
    let mut out = vec![0.0; interleaved.len() / channels];
    downmix_into(interleaved, channels, &mut out);
    Ok(out)
}

/// Averages interleaved channels into `out` (length = frames); allocation-free.
pub fn downmix_into(interleaved: &[f32], channels: usize, out: &mut [f32]) {
    if channels == 1 {
        let n = out.len().min(interleaved.len());
        out[..n].copy_from_slice(&interleaved[..n]);
        return;
    }
    let scale = 1.0 / channels as f32;
    for (o, frame) in out.iter_mut().zip(interleaved.chunks_exact(channels)) {
        *o = frame.iter().sum::<f32>() * scale;
    }
}

/// Chunk size of the resampler (input frames per call).
const CHUNK: usize = 1024;

/// Resamples a whole mono signal to 44.1 kHz; output length is `round(n · 44100 / rate)`.
pub fn resample_to_44k(mono: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(AudioError::BadRate { rate });
    }
    if rate == SAMPLE_RATE {
        return Ok(mono.to_vec());
    }
    let expected =
        ((mono.len() as u64 * SAMPLE_RATE as u64 + rate as u64 / 2) / rate as u64) as usize;
    let mut rs = StreamResampler::new(rate)?;
    let mut out = Vec::with_capacity(expected + CHUNK);
    rs.push(mono, |s| out.extend_from_slice(s))?;
    rs.flush(|s| out.extend_from_slice(s))?;
    out.truncate(expected);
    out.resize(expected, 0.0);
    Ok(out)
}

/// Streaming mono resampler to 44.1 kHz with preallocated buffers (the daemon's worker uses it).
/// Its filter delay is removed: output sample 0 corresponds to input sample 0.
pub struct StreamResampler {
    inner: Option<FftFixedIn<f32>>,
    input: Vec<f32>,
    out: Vec<Vec<f32>>,
    /// Output samples still to drop to cancel the filter delay.
    skip: usize,
}

impl StreamResampler {
    /// A resampler from `rate` Hz (a pass-through at 44.1 kHz).
    pub fn new(rate: u32) -> Result<Self, AudioError> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(AudioError::BadRate { rate });
        }
        if rate == SAMPLE_RATE {
            return Ok(Self {
                inner: None,
                input: Vec::new(),
                out: Vec::new(),
                skip: 0,
            });
        }
        let inner = FftFixedIn::<f32>::new(rate as usize, SAMPLE_RATE as usize, CHUNK, 2, 1)
            .map_err(|e| AudioError::Resample(e.to_string()))?;
        let out = inner.output_buffer_allocate(true);
        let skip = inner.output_delay();
        Ok(Self {
            inner: Some(inner),
            input: Vec::with_capacity(CHUNK),
            out,
            skip,
        })
    }

    /// Pushes input samples; `emit` receives resampled output as it becomes available.
    pub fn push(
        &mut self,
        mut samples: &[f32],
        mut emit: impl FnMut(&[f32]),
    ) -> Result<(), AudioError> {
        let Some(inner) = self.inner.as_mut() else {
            emit(samples);
            return Ok(());
        };
        while !samples.is_empty() {
            let take = (CHUNK - self.input.len()).min(samples.len());
            self.input.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.input.len() == CHUNK {
                let (_, produced) = inner
                    .process_into_buffer(&[&self.input[..]], &mut self.out, None)
                    .map_err(|e| AudioError::Resample(e.to_string()))?;
                self.input.clear();
                Self::emit_trimmed(&self.out[0][..produced], &mut self.skip, &mut emit);
            }
        }
        Ok(())
    }

    /// Ends the stream: pushes the buffered tail and enough silence to drain the filter.
    pub fn flush(&mut self, mut emit: impl FnMut(&[f32])) -> Result<(), AudioError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let delay_chunks = inner.output_delay() / CHUNK + 2;
        for i in 0..delay_chunks {
            let input: Option<&[&[f32]]> = None;
            let (_, produced) = if i == 0 && !self.input.is_empty() {
                inner.process_partial_into_buffer(Some(&[&self.input[..]]), &mut self.out, None)
            } else {
                inner.process_partial_into_buffer(input, &mut self.out, None)
            }
            .map_err(|e| AudioError::Resample(e.to_string()))?;
            Self::emit_trimmed(&self.out[0][..produced], &mut self.skip, &mut emit);
        }
        self.input.clear();
        inner.reset();
        self.skip = inner.output_delay();
        Ok(())
    }

    fn emit_trimmed(out: &[f32], skip: &mut usize, emit: &mut impl FnMut(&[f32])) {
        let drop = (*skip).min(out.len());
        *skip -= drop;
        if drop < out.len() {
            emit(&out[drop..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, f: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn downmix_averages_channels() {
        let st = [1.0, 0.0, 0.5, 0.5, -1.0, 1.0];
        assert_eq!(downmix(&st, 2).unwrap(), vec![0.5, 0.5, 0.0]);
        assert!(downmix(&st, 0).is_err());
    }

    #[test]
    fn resampling_keeps_length_pitch_and_alignment() {
        for rate in [8_000u32, 48_000, 96_000] {
            let x = sine(rate, 440.0, rate as usize);
            let y = resample_to_44k(&x, rate).unwrap();
            assert_eq!(y.len(), 44_100, "rate {rate}");
            // Compare with the ideal 440 Hz sine at 44.1 kHz away from the edges.
            let ideal = sine(44_100, 440.0, 44_100);
            let err = y[2000..42_000]
                .iter()
                .zip(&ideal[2000..42_000])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            // FFT resampling leaves a sub-sample fractional delay: ≤ 0.05 is < 1 sample at 44.1 kHz.
            assert!(err < 0.05, "rate {rate}: max error {err}");
        }
    }

    #[test]
    fn bad_rates_are_errors() {
        assert!(matches!(
            resample_to_44k(&[0.0], 100),
            Err(AudioError::BadRate { rate: 100 })
        ));
        assert!(StreamResampler::new(10_000_000).is_err());
    }
}

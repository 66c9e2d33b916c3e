//! Raw PCM on stdin (`arecord -t raw … | sfxtag run --input -`): interleaved little-endian
//! samples in one of [`PcmFormat`].

use super::{push_blocking, push_live, ring, Running, SourceInfo, SourceShared};
use anyhow::{Context, Result};
use rtrb::Consumer;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Sample formats accepted on stdin (ALSA names).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum PcmFormat {
    /// Signed 16-bit little endian (`arecord -f S16_LE`).
    S16le,
    /// Signed 24-bit in 3 bytes, little endian (`S24_3LE`).
    S24le,
    /// Signed 32-bit little endian (`S32_LE`).
    S32le,
    /// 32-bit float little endian (`FLOAT_LE`).
    F32le,
    /// Unsigned 8-bit (`U8`).
    U8,
}

impl PcmFormat {
    pub fn bytes(self) -> usize {
        match self {
            PcmFormat::S16le => 2,
            PcmFormat::S24le => 3,
            PcmFormat::S32le | PcmFormat::F32le => 4,
            PcmFormat::U8 => 1,
        }
    }

    /// Converts one sample (`b.len() == self.bytes()`) to f32 in -1..1.
    pub fn decode(self, b: &[u8]) -> f32 {
        match self {
            PcmFormat::S16le => i16::from_le_bytes([b[0], b[1]]) as f32 / 32_768.0,
            PcmFormat::S24le => {
                let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
                v as f32 / 8_388_608.0
            }
            PcmFormat::S32le => {
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0
            }
            PcmFormat::F32le => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            PcmFormat::U8 => (b[0] as f32 - 128.0) / 128.0,
        }
    }
}

/// Starts a thread reading stdin.
pub fn open(
    format: PcmFormat,
    rate: u32,
    channels: usize,
    lossless: bool,
    ring_s: f64,
    shared: Arc<SourceShared>,
) -> Result<(SourceInfo, Consumer<f32>, Running)> {
    if !(sfxtag_core::audio::MIN_RATE..=sfxtag_core::audio::MAX_RATE).contains(&rate) {
        anyhow::bail!("--stdin-rate {rate} is outside 4000–768000 Hz");
    }
    if channels == 0 || channels > 64 {
        anyhow::bail!("--stdin-channels {channels} must be 1–64");
    }
    let info = SourceInfo {
        name: "stdin".into(),
        rate,
        channels,
        lossless,
    };
    let (mut producer, consumer) = ring(rate, channels, ring_s);
    let handle = std::thread::Builder::new()
        .name("sfxtag-stdin".into())
        .spawn(move || {
            let frame_bytes = format.bytes() * channels;
            // ~20 ms of audio per read; buffers allocated once.
            let frames = (rate as usize / 50).max(64);
            let mut bytes = vec![0u8; frames * frame_bytes];
            let mut samples = vec![0f32; frames * channels];
            let mut fill = 0usize;
            let mut stdin = std::io::stdin().lock();
            loop {
                if shared.stopping() {
                    break;
                }
                match stdin.read(&mut bytes[fill..]) {
                    Ok(0) => break,
                    Ok(n) => fill += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        shared.fail(super::SourceError::Stdin(std::sync::Arc::new(e)));
                        return;
                    }
                }
                let whole = fill / frame_bytes * frame_bytes;
                let n = whole / format.bytes();
                for (s, b) in samples[..n]
                    .iter_mut()
                    .zip(bytes[..whole].chunks_exact(format.bytes()))
                {
                    *s = format.decode(b);
                }
                if lossless {
                    if !push_blocking(&mut producer, &samples[..n], &shared) {
                        break;
                    }
                } else {
                    push_live(
                        &mut producer,
                        samples[..n].iter().copied(),
                        channels,
                        &shared,
                    );
                }
                bytes.copy_within(whole..fill, 0);
                fill -= whole;
            }
            shared.eof.store(true, Ordering::Release);
        })
        .context("cannot start the stdin thread")?;
    Ok((info, consumer, Running::Thread(handle)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_decode_to_unit_range() {
        assert_eq!(PcmFormat::S16le.decode(&i16::MIN.to_le_bytes()), -1.0);
        assert_eq!(PcmFormat::S16le.decode(&16_384i16.to_le_bytes()), 0.5);
        assert_eq!(PcmFormat::S24le.decode(&[0, 0, 0x40]), 0.5);
        assert_eq!(PcmFormat::S24le.decode(&[0, 0, 0x80]), -1.0);
        assert_eq!(PcmFormat::S32le.decode(&(1i32 << 30).to_le_bytes()), 0.5);
        assert_eq!(PcmFormat::F32le.decode(&0.25f32.to_le_bytes()), 0.25);
        assert_eq!(PcmFormat::U8.decode(&[192]), 0.5);
    }
}

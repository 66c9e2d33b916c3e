//! File replay: decode (core::audio, native rate and channels), then feed the ring paced in real
//! time (a live source: drops when the worker falls behind) or as fast as the worker takes it.

use super::{push_blocking, push_live, ring, Running, SourceInfo, SourceShared};
use anyhow::{Context, Result};
use rtrb::Consumer;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Decodes `path` and starts a thread replaying it.
pub fn open(
    path: &Path,
    realtime: bool,
    ring_s: f64,
    shared: Arc<SourceShared>,
) -> Result<(SourceInfo, Consumer<f32>, Running)> {
    let audio = sfxtag_core::audio::decode_native(path)
        .with_context(|| format!("cannot replay {}", path.display()))?;
    if audio.skipped_packets > 0 {
        log::warn!(
            "{}: {} damaged packets were skipped",
            path.display(),
            audio.skipped_packets
        );
    }
    let info = SourceInfo {
        name: format!(
            "file:{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string())
        ),
        rate: audio.rate,
        channels: audio.channels,
        lossless: !realtime,
    };
    let (mut producer, consumer) = ring(audio.rate, audio.channels, ring_s);
    let channels = audio.channels;
    let rate = audio.rate;
    let handle = std::thread::Builder::new()
        .name("sfxtag-file".into())
        .spawn(move || {
            // 10 ms chunks, like a sound card's periods.
            let chunk = (rate as usize / 100).max(1) * channels;
            let start = Instant::now();
            let mut sent_frames = 0u64;
            for block in audio.interleaved.chunks(chunk) {
                if shared.stopping() {
                    break;
                }
                if realtime {
                    let due = start + Duration::from_secs_f64(sent_frames as f64 / rate as f64);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    push_live(&mut producer, block.iter().copied(), channels, &shared);
                } else if !push_blocking(&mut producer, block, &shared) {
                    break;
                }
                sent_frames += (block.len() / channels) as u64;
            }
            shared.eof.store(true, Ordering::Release);
        })
        .context("cannot start the file replay thread")?;
    Ok((info, consumer, Running::Thread(handle)))
}

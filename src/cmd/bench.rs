//! `sfxtag bench`: the daemon's own path (ring → downmix → resample → frontend → encoder →
//! classification) measured twice: as fast as possible (latency per window, real-time factor)
//! and paced in real time like a sound card (CPU share of one core), then peak RSS (VmHWM).

use super::load_model;
use crate::cli::BenchArgs;
use crate::pipeline::{OnWindow, Processor, WindowOut, Worker, WorkerParams};
use crate::source::{push_blocking, push_live, ring, SourceInfo, SourceShared};
use crate::stats::{cpu_time_s, peak_rss_kib, LatencyRing};
use anyhow::{Context, Result};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Report {
    model: String,
    input: String,
    rate: u32,
    channels: usize,
    windows: u64,
    latency_ms_p50: f64,
    latency_ms_p95: f64,
    latency_ms_max: f64,
    throughput_audio_s: f64,
    throughput_wall_s: f64,
    real_time_factor: f64,
    realtime_audio_s: f64,
    realtime_cpu_share: Option<f64>,
    realtime_dropped_s: f64,
    /// CPU share over the same real-time span of a quiet input (mostly below the silence
    /// floor, a 1.5 s sound every 20 s), with the silence gate as the daemon runs it.
    quiet_realtime_cpu_share: Option<f64>,
    quiet_windows_classified: u64,
    quiet_windows_silent: u64,
    silence_floor_dbfs: f32,
    peak_rss_mib: Option<f64>,
    threads: &'static str,
}

/// The benchmark's audio, produced chunk by chunk so the benchmark holds no more of it than the
/// daemon would (its peak RSS is the daemon's): a decoded file played in a loop, synthetic
/// 48 kHz stereo (noise bursts, tones and quiet stretches), or a quiet room (noise at −75 dBFS
/// with a 1.5 s sound every 20 s: what an always-on microphone mostly hears).
enum BenchAudio {
    File(Vec<f32>),
    Synthetic,
    Quiet,
}

impl BenchAudio {
    const SYNTH_RATE: u32 = 48_000;

    /// Fills `out` (interleaved) from frame `start` on.
    fn fill(&self, start: usize, channels: usize, out: &mut [f32]) {
        match self {
            BenchAudio::File(a) => {
                let mut i = (start * channels) % a.len();
                for o in out.iter_mut() {
                    *o = a[i];
                    i = (i + 1) % a.len();
                }
            }
            BenchAudio::Synthetic => {
                for (k, frame) in out.chunks_exact_mut(2).enumerate() {
                    let n = (start + k) as u64;
                    let s = Self::synth(n);
                    frame[0] = s;
                    frame[1] = 0.8 * s;
                }
            }
            BenchAudio::Quiet => {
                for (k, frame) in out.chunks_exact_mut(2).enumerate() {
                    let n = (start + k) as u64;
                    let t = n as f64 / Self::SYNTH_RATE as f64;
                    let s = if t % 20.0 < 1.5 {
                        Self::synth(n)
                    } else {
                        // −75 dBFS RMS of uniform noise: amplitude √3 · 10^(−75/20).
                        Self::noise(n) * 3f32.sqrt() * 10f32.powf(-75.0 / 20.0)
                    };
                    frame[0] = s;
                    frame[1] = s;
                }
            }
        }
    }

    /// Uniform noise in [-1, 1) from the sample index (splitmix64).
    fn noise(n: u64) -> f32 {
        let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn synth(n: u64) -> f32 {
        // Deterministic noise without state.
        let noise = Self::noise(n);
        let t = n as f32 / Self::SYNTH_RATE as f32;
        let phase = (t % 3.0) / 3.0;
        if phase < 0.3 {
            0.3 * noise * (1.0 - phase / 0.3)
        } else if phase < 0.7 {
            0.2 * (2.0 * std::f32::consts::PI * 440.0 * (1.0 + phase) * t).sin()
        } else {
            0.01 * noise
        }
    }
}

fn run_worker(
    processor: Processor,
    audio: Arc<BenchAudio>,
    frames: usize,
    rate: u32,
    channels: usize,
    realtime: bool,
) -> Result<(Processor, f64, f64, u64)> {
    let shared = Arc::new(SourceShared::default());
    let (mut producer, consumer) = ring(rate, channels, 10.0);
    let info = SourceInfo {
        name: "bench".into(),
        rate,
        channels,
        lossless: !realtime,
    };
    let feeder_shared = shared.clone();
    let feeder = std::thread::spawn(move || {
        let chunk_frames = (rate as usize / 100).max(1);
        let mut block = vec![0f32; chunk_frames * channels];
        let start = Instant::now();
        let mut pos = 0usize;
        while pos < frames {
            let n = chunk_frames.min(frames - pos);
            let block = &mut block[..n * channels];
            audio.fill(pos, channels, block);
            if realtime {
                let due = start + Duration::from_secs_f64(pos as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                push_live(
                    &mut producer,
                    block.iter().copied(),
                    channels,
                    &feeder_shared,
                );
            } else if !push_blocking(&mut producer, block, &feeder_shared) {
                break;
            }
            pos += n;
        }
        feeder_shared.eof.store(true, Ordering::Release);
    });
    let mut worker = Worker::new(
        processor,
        consumer,
        info,
        shared.clone(),
        WorkerParams {
            max_backlog_s: 4.0,
            backlog_target_s: 0.5,
        },
    )?;
    let cpu0 = cpu_time_s();
    let t0 = Instant::now();
    worker.run(&|| false, &|| {}, &mut OnWindow(|_: WindowOut<'_>| {}))?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_time_s()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    feeder.join().ok();
    let c = &shared.counters;
    let dropped =
        c.dropped_samples.load(Ordering::Relaxed) + c.overrun_samples.load(Ordering::Relaxed);
    Ok((worker.processor, wall, cpu, dropped))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let model = load_model(&args.model, 3)?;
    let model_name = model.name.clone();
    let (input, rate, channels, audio) = match &args.input {
        Some(p) => {
            let a = sfxtag_core::audio::decode_native(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            if a.interleaved.is_empty() {
                anyhow::bail!("{} holds no audio", p.display());
            }
            (
                p.display().to_string(),
                a.rate,
                a.channels,
                BenchAudio::File(a.interleaved),
            )
        }
        None => (
            "synthetic 48 kHz stereo".to_string(),
            BenchAudio::SYNTH_RATE,
            2,
            BenchAudio::Synthetic,
        ),
    };
    let audio = Arc::new(audio);
    let frames = |seconds: f64| ((seconds * rate as f64) as usize).max(1);
    // Warm-up: one window. The silence gate runs as in the daemon.
    let floor = crate::pipeline::DEFAULT_SILENCE_FLOOR_DBFS;
    let mut processor = Processor::with_silence_floor(model, Some(floor));
    let (p, _, _, _) = run_worker(processor, audio.clone(), frames(2.5), rate, channels, false)?;
    processor = p;
    processor.latency = LatencyRing::new(100_000);
    let windows0 = processor.windows();

    let fast = frames(args.seconds);
    let audio_s = fast as f64 / rate as f64;
    let (p, wall, _, _) = run_worker(processor, audio.clone(), fast, rate, channels, false)?;
    processor = p;
    let windows = processor.windows() - windows0;
    let (p50, p95, max) = (
        processor.latency.percentile_us(50.0) as f64 / 1000.0,
        processor.latency.percentile_us(95.0) as f64 / 1000.0,
        processor.latency.max_us() as f64 / 1000.0,
    );

    let (cpu_share, rt_dropped, rt_audio) = if args.realtime_seconds > 0.0 {
        let rt = frames(args.realtime_seconds);
        let rt_audio = rt as f64 / rate as f64;
        eprintln!("sfxtag bench: {rt_audio:.0} s of real-time-paced audio…");
        let (p, wall, cpu, dropped) = run_worker(processor, audio, rt, rate, channels, true)?;
        processor = p;
        (
            Some(cpu / wall),
            dropped as f64 / (rate as f64 * channels as f64),
            rt_audio,
        )
    } else {
        (None, 0.0, 0.0)
    };
    let (quiet_share, quiet_classified, quiet_silent) = if args.realtime_seconds > 0.0 {
        let qrate = BenchAudio::SYNTH_RATE;
        let q = ((args.realtime_seconds * qrate as f64) as usize).max(1);
        eprintln!(
            "sfxtag bench: {:.0} s of a quiet room, real-time paced…",
            args.realtime_seconds
        );
        let (w0, s0) = (processor.windows(), processor.silent_windows);
        let (p, wall, cpu, _) =
            run_worker(processor, Arc::new(BenchAudio::Quiet), q, qrate, 2, true)?;
        let silent = p.silent_windows - s0;
        (Some(cpu / wall), p.windows() - w0 - silent, silent)
    } else {
        (None, 0, 0)
    };
    let report = Report {
        model: model_name,
        input,
        rate,
        channels,
        windows,
        latency_ms_p50: p50,
        latency_ms_p95: p95,
        latency_ms_max: max,
        throughput_audio_s: audio_s,
        throughput_wall_s: wall,
        real_time_factor: wall / audio_s,
        realtime_audio_s: rt_audio,
        realtime_cpu_share: cpu_share,
        realtime_dropped_s: rt_dropped,
        quiet_realtime_cpu_share: quiet_share,
        quiet_windows_classified: quiet_classified,
        quiet_windows_silent: quiet_silent,
        silence_floor_dbfs: floor,
        peak_rss_mib: peak_rss_kib().map(|k| k as f64 / 1024.0),
        threads: "1 worker thread (tract single-threaded)",
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("model            {}", report.model);
    println!(
        "input            {} ({} Hz × {} ch, resampled to 44.1 kHz)",
        report.input, report.rate, report.channels
    );
    println!(
        "encoder/window   p50 {:.1} ms   p95 {:.1} ms   max {:.1} ms   ({} windows)",
        p50, p95, max, windows
    );
    println!(
        "real-time factor {:.4}  ({:.1} s of audio in {:.2} s, whole path)",
        report.real_time_factor, audio_s, wall
    );
    if let Some(c) = cpu_share {
        println!(
            "real-time CPU    {:.1} % of one core over {:.0} s paced audio (dropped {:.2} s)",
            c * 100.0,
            rt_audio,
            rt_dropped
        );
    }
    if let Some(c) = quiet_share {
        println!(
            "quiet room CPU   {:.1} % of one core ({} windows classified, {} below {floor} dBFS skipped)",
            c * 100.0,
            quiet_classified,
            quiet_silent
        );
    }
    if let Some(m) = report.peak_rss_mib {
        println!("peak RSS         {m:.1} MiB (VmHWM)");
    }
    Ok(())
}

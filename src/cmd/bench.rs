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
    peak_rss_mib: Option<f64>,
    threads: &'static str,
}

/// Deterministic test audio: noise bursts, tones and quiet stretches, 48 kHz stereo.
fn synthetic(seconds: f64) -> (u32, usize, Vec<f32>) {
    let rate = 48_000u32;
    let n = (seconds * rate as f64) as usize;
    let mut x: u32 = 0x1234_5678;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let noise = (x as f32 / u32::MAX as f32) * 2.0 - 1.0;
        let t = i as f32 / rate as f32;
        let phase = (t % 3.0) / 3.0;
        let s = if phase < 0.3 {
            0.3 * noise * (1.0 - phase / 0.3)
        } else if phase < 0.7 {
            0.2 * (2.0 * std::f32::consts::PI * 440.0 * (1.0 + phase) * t).sin()
        } else {
            0.01 * noise
        };
        out.push(s);
        out.push(0.8 * s);
    }
    (rate, 2, out)
}

fn run_worker(
    processor: Processor,
    audio: Arc<Vec<f32>>,
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
        let chunk = (rate as usize / 100) * channels;
        let start = Instant::now();
        let mut frames = 0u64;
        for block in audio.chunks(chunk) {
            if realtime {
                let due = start + Duration::from_secs_f64(frames as f64 / rate as f64);
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
            frames += (block.len() / channels) as u64;
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
            (p.display().to_string(), a.rate, a.channels, a.interleaved)
        }
        None => {
            let (r, c, a) = synthetic(args.seconds.max(args.realtime_seconds));
            ("synthetic 48 kHz stereo".to_string(), r, c, a)
        }
    };
    let per_s = rate as usize * channels;
    let take = |seconds: f64| -> Arc<Vec<f32>> {
        let n = (seconds * rate as f64) as usize * channels;
        Arc::new(
            audio
                .iter()
                .copied()
                .cycle()
                .take(n.max(channels))
                .collect(),
        )
    };
    // Warm-up: one window.
    let mut processor = Processor::new(model);
    let (p, _, _, _) = run_worker(processor, take(2.5), rate, channels, false)?;
    processor = p;
    processor.latency = LatencyRing::new(100_000);
    let windows0 = processor.windows();

    let fast = take(args.seconds);
    let audio_s = fast.len() as f64 / per_s as f64;
    let (p, wall, _, _) = run_worker(processor, fast, rate, channels, false)?;
    processor = p;
    let windows = processor.windows() - windows0;
    let (p50, p95, max) = (
        processor.latency.percentile_us(50.0) as f64 / 1000.0,
        processor.latency.percentile_us(95.0) as f64 / 1000.0,
        processor.latency.max_us() as f64 / 1000.0,
    );

    let (cpu_share, rt_dropped, rt_audio) = if args.realtime_seconds > 0.0 {
        let rt = take(args.realtime_seconds);
        let rt_audio = rt.len() as f64 / per_s as f64;
        eprintln!("sfxtag bench: {rt_audio:.0} s of real-time-paced audio…");
        let (_, wall, cpu, dropped) = run_worker(processor, rt, rate, channels, true)?;
        (Some(cpu / wall), dropped as f64 / per_s as f64, rt_audio)
    } else {
        (None, 0.0, 0.0)
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
    if let Some(m) = report.peak_rss_mib {
        println!("peak RSS         {m:.1} MiB (VmHWM)");
    }
    Ok(())
}

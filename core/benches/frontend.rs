//! Frontend throughput: frames per second and real-time factor on one core.
//! `cargo bench -p sfxtag-core --bench frontend`
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sfxtag_core::frontend::{Frontend, FrontendEvent, HOP_SIZE, SAMPLE_RATE};
use std::hint::black_box;

fn bench_frontend(c: &mut Criterion) {
    // 10 s of a noisy chirp, pushed in 441-sample chunks (10 ms, like an audio callback).
    let n = SAMPLE_RATE as usize * 10;
    let mut seed = 1u32;
    let samples: Vec<f32> = (0..n)
        .map(|i| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let t = i as f32 / SAMPLE_RATE as f32;
            0.5 * (2.0 * std::f32::consts::PI * (200.0 + 500.0 * t) * t).sin() + 0.1 * noise
        })
        .collect();
    let frames = (n / HOP_SIZE) as u64;
    let mut fe = Box::new(Frontend::new());
    let mut group = c.benchmark_group("frontend");
    group.throughput(Throughput::Elements(frames));
    group.bench_function("10s_audio_in_10ms_chunks", |b| {
        b.iter(|| {
            let mut acc = 0.0f32;
            for chunk in samples.chunks(441) {
                fe.push(black_box(chunk), |ev| {
                    if let FrontendEvent::Frame { mel, .. } = ev {
                        acc += mel[0];
                    }
                });
            }
            fe.reset();
            black_box(acc)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_frontend);
criterion_main!(benches);

//! Single-thread, batch-1 latency per window of the tract int8 and fp32 encoders.
//!
//! int8: models/aisfx-cnn9/encoder.onnx (the shipped model). fp32: the same encoder built from
//! .cache/aisfx/checkpoint.pth when present, else from random weights (fp32 latency does not
//! depend on the weight values). The fp32 file used is written to target/bench-export/ so that
//! bench/onnxruntime_bench.py times onnxruntime on the very same files.
//! Run: `cargo bench -p sfxtag-export` then `python3 bench/onnxruntime_bench.py`.

use criterion::{criterion_group, criterion_main, Criterion};
use sfxtag_export::{synthetic_windows, workspace_root, Cnn9Weights, TractModel};
use std::hint::black_box;

fn latency(c: &mut Criterion) {
    let root = workspace_root();
    let out = root.join("target/bench-export");
    std::fs::create_dir_all(&out).unwrap();
    let int8_path = root.join("models/aisfx-cnn9/encoder.onnx");
    let int8 = std::fs::read(&int8_path).expect("models/aisfx-cnn9/encoder.onnx");
    std::fs::write(out.join("encoder.onnx"), &int8).unwrap();
    let ckpt = root.join(".cache/aisfx/checkpoint.pth");
    #[cfg(feature = "pth")]
    let weights = if ckpt.exists() {
        sfxtag_export::aisfx::load_checkpoint(&ckpt).unwrap()
    } else {
        aisfx_shaped_random()
    };
    #[cfg(not(feature = "pth"))]
    let weights = {
        let _ = ckpt;
        aisfx_shaped_random()
    };
    let fp32 = sfxtag_export::fp32_onnx_bytes(&weights);
    std::fs::write(out.join("encoder.fp32.onnx"), &fp32).unwrap();

    let window = synthetic_windows(1, 42).remove(0);
    let mut g = c.benchmark_group("tract");
    g.sample_size(30);
    for (name, bytes) in [("int8", &int8), ("fp32", &fp32)] {
        let m = TractModel::from_bytes(bytes).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| black_box(m.run(black_box(&window)).unwrap()))
        });
    }
    g.finish();
}

/// Random weights with aiSFX's nine heads.
fn aisfx_shaped_random() -> Cnn9Weights {
    Cnn9Weights::random(
        1,
        &[
            ("prosfx", 78),
            ("soundlyTrain", 79),
            ("ucsMixed", 69),
            ("soundstormBalanced", 81),
            ("productionelementsBalanced", 10),
            ("cartoonexpressBalanced", 27),
            ("hpxdigitalBalanced", 3),
            ("series6000Balanced", 23),
            ("series9000Balanced", 8),
        ],
    )
}

criterion_group!(benches, latency);
criterion_main!(benches);

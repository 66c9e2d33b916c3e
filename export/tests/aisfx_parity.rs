//! The released aiSFX encoder, exported by us, against golden outputs of the aisfx Python
//! package itself (tests/golden/aisfx, made by tests/golden/make_aisfx_golden.py).
//!
//! With `.cache/aisfx/checkpoint.pth` (scripts/fetch-aisfx): our checkpoint reader + fp32 ONNX
//! in tract must give cosine ≥ 0.999 on every golden window, and the same top-1 per head.
//! Without it: the shipped models/aisfx-cnn9 encoders are checked against the same golden data
//! (fp32 twin at 0.999 if shipped; int8 at 0.99). SFXTAG_REQUIRE_AISFX=1 makes a missing
//! checkpoint a failure (CI fetches it).

use sfxtag_core::frontend::{ModelWindow, N_MELS, WINDOW_FRAMES};
use sfxtag_export::parity::{argmax, cosine};
use sfxtag_export::{workspace_root, TractModel};
use std::path::Path;

mod common;

struct Clip {
    name: String,
    windows: Vec<Box<ModelWindow>>,
    embedding: Vec<Vec<f32>>,
    /// head → per-window logits
    logits: Vec<(String, Vec<Vec<f32>>)>,
}

fn read_f32(p: &Path) -> Vec<f32> {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn golden() -> (Vec<Clip>, Vec<(String, usize)>) {
    let dir = workspace_root().join("tests/golden/aisfx");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("aisfx.json")).unwrap()).unwrap();
    let mut heads: Vec<(String, usize, usize)> = j["ds_dict"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v[0].as_u64().unwrap() as usize,
                v[1].as_u64().unwrap() as usize,
            )
        })
        .collect();
    heads.sort_by_key(|h| h.1);
    let clips = j["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let n = c["n_windows"].as_u64().unwrap() as usize;
            let w = read_f32(&dir.join(c["windows"].as_str().unwrap()));
            assert_eq!(w.len(), n * WINDOW_FRAMES * N_MELS);
            let windows = w
                .chunks_exact(WINDOW_FRAMES * N_MELS)
                .map(|x| {
                    let mut b = Box::new([[0f32; N_MELS]; WINDOW_FRAMES]);
                    for (t, row) in b.iter_mut().enumerate() {
                        row.copy_from_slice(&x[t * N_MELS..(t + 1) * N_MELS]);
                    }
                    b
                })
                .collect();
            let e = read_f32(&dir.join(c["embedding"].as_str().unwrap()));
            let logits = heads
                .iter()
                .map(|(h, _, k)| {
                    let l = read_f32(&dir.join(c["logits"][h].as_str().unwrap()));
                    (h.clone(), l.chunks_exact(*k).map(<[f32]>::to_vec).collect())
                })
                .collect();
            Clip {
                name: c["name"].as_str().unwrap().to_string(),
                windows,
                embedding: e.chunks_exact(512).map(<[f32]>::to_vec).collect(),
                logits,
            }
        })
        .collect();
    (clips, heads.into_iter().map(|h| (h.0, h.2)).collect())
}

/// Runs `model` on every golden window; asserts cosine ≥ `min_cos` and (with `top1`) identical
/// head decisions; prints every cosine.
fn check(label: &str, model: &TractModel, min_cos: f64, top1_min: f64) {
    let (clips, heads) = golden();
    let mut worst = 1f64;
    let (mut agree, mut total) = (0usize, 0usize);
    for c in &clips {
        for (i, w) in c.windows.iter().enumerate() {
            let out = model.run(w).unwrap();
            let cos = cosine(&out[0], &c.embedding[i]);
            println!("{label}: {} window {i}: embedding cosine {cos:.7}", c.name);
            assert!(
                cos >= min_cos,
                "{label}: {} window {i}: cosine {cos} < {min_cos}",
                c.name
            );
            worst = worst.min(cos);
            for (k, (h, l)) in c.logits.iter().enumerate() {
                assert_eq!(&model.outputs[k + 1], &format!("logits_{h}"));
                total += 1;
                if argmax(&out[k + 1]) == argmax(&l[i]) {
                    agree += 1;
                }
            }
        }
    }
    let rate = agree as f64 / total as f64;
    println!(
        "{label}: worst cosine {worst:.6} over {} windows; head top-1 agreement {agree}/{total}",
        clips.iter().map(|c| c.windows.len()).sum::<usize>()
    );
    assert!(
        rate >= top1_min,
        "{label}: top-1 agreement {rate} < {top1_min}"
    );
    // The embedding, one output per head, then block 3's features.
    assert_eq!(heads.len(), model.outputs.len() - 2);
    assert_eq!(model.outputs.last().map(String::as_str), Some("block3"));
}

#[test]
fn aisfx_encoder_matches_the_python_package() {
    let ckpt = workspace_root().join(".cache/aisfx/checkpoint.pth");
    if ckpt.exists() {
        #[cfg(feature = "pth")]
        {
            let w = sfxtag_export::aisfx::load_checkpoint(&ckpt).unwrap();
            let (_, heads) = golden();
            let got: Vec<(String, usize)> = w
                .head_dims()
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect();
            assert_eq!(got, heads, "heads (ds_dict order and sizes)");
            let bytes = sfxtag_export::fp32_onnx_bytes(&w);
            let m = TractModel::from_bytes(&bytes).unwrap();
            check("checkpoint fp32", &m, 0.999, 1.0);
            // onnxruntime runs our fp32 aiSFX graph to the same outputs, and the shipped int8.
            let scratch =
                std::env::temp_dir().join(format!("sfxtag-aisfx-ort-{}", std::process::id()));
            std::fs::create_dir_all(&scratch).unwrap();
            let fp32 = scratch.join("encoder.fp32.onnx");
            std::fs::write(&fp32, &bytes).unwrap();
            let shipped = workspace_root().join("models/aisfx-cnn9/encoder.onnx");
            let windows: Vec<_> = golden().0.into_iter().flat_map(|c| c.windows).collect();
            common::onnxruntime_check(
                &scratch.join("check"),
                &[(&fp32, 0.99999), (&shipped, 0.999)],
                &windows,
            );
            std::fs::remove_dir_all(&scratch).ok();
            return;
        }
    }
    assert!(
        std::env::var("SFXTAG_REQUIRE_AISFX").as_deref() != Ok("1"),
        "SFXTAG_REQUIRE_AISFX=1 but {} is missing (run scripts/fetch-aisfx)",
        ckpt.display()
    );
    let dir = workspace_root().join("models/aisfx-cnn9");
    eprintln!(
        "no {}: checking the shipped {}",
        ckpt.display(),
        dir.display()
    );
    let fp32 = dir.join("encoder.fp32.onnx");
    if fp32.exists() {
        let m = TractModel::from_bytes(&std::fs::read(&fp32).unwrap()).unwrap();
        check("shipped fp32", &m, 0.999, 1.0);
    }
    let m = TractModel::from_bytes(&std::fs::read(dir.join("encoder.onnx")).unwrap()).unwrap();
    // int8: worst 0.996 vs fp32 with equalisation (architecture.md §5); the decision of a head
    // may flip on a near-tie.
    check("shipped int8", &m, 0.99, 0.9);
    let windows: Vec<_> = golden().0.into_iter().flat_map(|c| c.windows).collect();
    let scratch = std::env::temp_dir().join(format!("sfxtag-aisfx-ort-{}", std::process::id()));
    common::onnxruntime_check(&scratch, &[(&dir.join("encoder.onnx"), 0.999)], &windows);
    std::fs::remove_dir_all(&scratch).ok();
}

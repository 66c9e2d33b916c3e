//! End to end with random weights: export → the directory loads (manifest, hashes) → tract runs
//! both encoders → int8 close to fp32; plus the bad-input cases.

use sfxtag_core::manifest::{Manifest, Precision, Taxonomy};
use sfxtag_export::{
    export_model, synthetic_windows, Cnn9Weights, ExportError, ExportOptions, HeadLabels,
    TractModel,
};
use std::path::PathBuf;

mod common;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sfxtag-export-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn no_leftovers(parent: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(left.is_empty(), "partial output left behind: {left:?}");
}

#[test]
fn random_weights_export_loads_and_runs() {
    let w = Cnn9Weights::random(3, &[("ucs", 4), ("other", 3)]);
    let windows = synthetic_windows(10, 5);
    let dir = scratch("ok").join("model");
    let mut opts = ExportOptions::default();
    opts.head_labels.insert(
        "ucs".into(),
        HeadLabels {
            taxonomy: Taxonomy::UcsCategory,
            labels: ["DOORS", "ANIMALS", "WATER", "FIRE"]
                .map(String::from)
                .to_vec(),
        },
    );
    let report = export_model(&w, &opts, &windows, &dir).unwrap();
    println!("{}", report.summary());
    let m = Manifest::load(&dir).unwrap();
    assert_eq!(m.encoder.precision, Precision::Int8);
    assert_eq!(m.encoder.fp32_file.as_deref(), Some("encoder.fp32.onnx"));
    assert_eq!(m.heads.len(), 2);
    assert_eq!(m.heads[0].labels[1], "ANIMALS");
    assert!(m.heads[1].labels.is_empty());
    let q = m.quality.as_ref().unwrap();
    assert_eq!((q.calibration_windows, q.heldout_windows), (8, 2));
    assert!(q.cosine_min >= 0.99, "{q:?}");

    let i8m = TractModel::from_bytes(&std::fs::read(dir.join("encoder.onnx")).unwrap()).unwrap();
    let f32m =
        TractModel::from_bytes(&std::fs::read(dir.join("encoder.fp32.onnx")).unwrap()).unwrap();
    assert_eq!(
        i8m.outputs,
        ["embedding", "logits_ucs", "logits_other", "block3"]
    );
    let a = i8m.run(&windows[4]).unwrap();
    let b = f32m.run(&windows[4]).unwrap();
    assert_eq!((a[0].len(), a[1].len(), a[2].len()), (512, 4, 3));
    let c = sfxtag_export::parity::cosine(&a[0], &b[0]);
    assert!(c > 0.99, "int8 vs fp32 cosine {c}");

    onnxruntime_agrees(&dir, &windows[..3]);
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
}

/// Standard ONNX: onnx.checker and onnxruntime agree with tract on both encoders of a model
/// directory. int8 arithmetic may round differently between runtimes (requantisation), hence
/// the looser bound.
fn onnxruntime_agrees(dir: &std::path::Path, windows: &[Box<sfxtag_core::frontend::ModelWindow>]) {
    common::onnxruntime_check(
        &dir.parent().unwrap().join("ort"),
        &[
            (&dir.join("encoder.fp32.onnx"), 0.99999),
            (&dir.join("encoder.onnx"), 0.999),
        ],
        windows,
    );
}

/// `fc2(relu(fc1(relu(fc0(x)))))` of a head, in plain Rust.
fn head_logits(h: &sfxtag_export::Head, x: &[f32]) -> Vec<f32> {
    let mut cur = x.to_vec();
    for (l, lin) in h.layers.iter().enumerate() {
        let (o, i) = (lin.weight.shape[0], lin.weight.shape[1]);
        assert_eq!(cur.len(), i);
        cur = (0..o)
            .map(|r| {
                let v = lin.bias[r]
                    + (0..i)
                        .map(|c| lin.weight.data[r * i + c] * cur[c])
                        .sum::<f32>();
                if l < 2 {
                    v.max(0.0)
                } else {
                    v
                }
            })
            .collect();
    }
    cur
}

#[test]
fn a_head_on_the_embedding_and_block3_reads_both_in_both_encoders() {
    use sfxtag_export::weights::{Array, HeadInput, BLOCK3_FEATURES_DIM, EMBEDDING_DIM};
    let mut w = Cnn9Weights::random(5, &[("ucs", 3), ("plain", 2)]);
    let width = EMBEDDING_DIM + BLOCK3_FEATURES_DIM;
    let h0 = w.heads[0].layers[0].bias.len();
    // Weights on block 3's columns as large as on the embedding's: a graph that fed the head
    // anything else would move its logits.
    let data = (0..h0 * width)
        .map(|k| ((k as f32 * 0.7931).sin()) * 0.06)
        .collect();
    w.heads[0].layers[0].weight = Array::new(vec![h0, width], data);
    w.validate().unwrap();
    assert_eq!(w.heads[0].input(), HeadInput::EmbeddingBlock3);
    assert_eq!(w.heads[1].input(), HeadInput::Embedding);
    // The safetensors contract carries it.
    let back = Cnn9Weights::from_safetensors_bytes(&w.to_safetensors_bytes(), "mem").unwrap();
    assert_eq!(back, w);

    let windows = synthetic_windows(10, 7);
    let dir = scratch("block3").join("model");
    export_model(&w, &ExportOptions::default(), &windows, &dir).unwrap();
    let mut b3 = Vec::new();
    for file in ["encoder.fp32.onnx", "encoder.onnx"] {
        let m = TractModel::from_bytes(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        assert_eq!(
            m.outputs,
            ["embedding", "logits_ucs", "logits_plain", "block3"]
        );
        let o = m.run(&windows[3]).unwrap();
        assert_eq!(o[3].len(), BLOCK3_FEATURES_DIM);
        // Time maxima are never below time means.
        let (max, mean) = o[3].split_at(BLOCK3_FEATURES_DIM / 2);
        assert!(max.iter().zip(mean).all(|(a, b)| a + 1e-4 >= *b), "{file}");
        let x: Vec<f32> = o[0].iter().chain(&o[3]).copied().collect();
        let want = head_logits(&w.heads[0], &x);
        let plain = head_logits(&w.heads[1], &o[0]);
        for (got, want) in [(&o[1], &want), (&o[2], &plain)] {
            let err = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            assert!(err < 1e-3, "{file}: logits off by {err}");
        }
        b3.push(o[3].clone());
    }
    // The int8 encoder's block 3 features are the fp32 one's (equalisation undone).
    let c = sfxtag_export::parity::cosine(&b3[0], &b3[1]);
    assert!(c > 0.99, "int8 vs fp32 block 3 cosine {c}");
    onnxruntime_agrees(&dir, &windows[..2]);
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();

    // A first layer of any other width is refused, naming the tensor.
    let mut bad = w.clone();
    bad.heads[0].layers[0].weight = Array::new(vec![h0, 700], vec![0.0; h0 * 700]);
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("head.ucs.fc0.weight"), "{err}");
}

#[test]
fn empty_calibration_is_refused_without_leftovers() {
    let parent = scratch("empty");
    let w = Cnn9Weights::random(3, &[("a", 2)]);
    let e = export_model(&w, &ExportOptions::default(), &[], &parent.join("m")).unwrap_err();
    assert!(matches!(e, ExportError::EmptyCalibration), "{e}");
    assert!(e.to_string().contains("calibration set is empty"));
    no_leftovers(&parent);
    std::fs::remove_dir_all(parent).ok();
}

#[test]
fn bad_weights_and_failed_gates_leave_no_directory() {
    let parent = scratch("bad");
    let mut w = Cnn9Weights::random(3, &[("a", 2)]);
    w.convs[5].weight.data[3] = f32::NAN;
    let windows = synthetic_windows(3, 1);
    let e = export_model(&w, &ExportOptions::default(), &windows, &parent.join("m")).unwrap_err();
    assert!(e.to_string().contains("encoder.block3.conv2.weight"), "{e}");
    no_leftovers(&parent);

    // An impossible gate fails after all the work, and still nothing is left.
    let w = Cnn9Weights::random(3, &[("a", 2)]);
    let mut opts = ExportOptions::default();
    opts.gates.cosine_min = 1.000_001;
    let e = export_model(&w, &opts, &windows, &parent.join("m")).unwrap_err();
    assert!(matches!(e, ExportError::Gate(_)), "{e}");
    no_leftovers(&parent);
    std::fs::remove_dir_all(parent).ok();
}

#[cfg(feature = "pth")]
#[test]
fn checkpoint_reader_names_bad_files() {
    let parent = scratch("pth");
    let p = parent.join("not-a-zip.pth");
    std::fs::write(&p, b"definitely not a torch file").unwrap();
    let e = sfxtag_export::aisfx::load_checkpoint(&p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not-a-zip.pth") && e.contains("zip"), "{e}");
    let e = sfxtag_export::aisfx::load_checkpoint(&parent.join("missing.pth"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pth"), "{e}");
    std::fs::remove_dir_all(parent).ok();
}

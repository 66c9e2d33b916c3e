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
    assert_eq!(i8m.outputs, ["embedding", "logits_ucs", "logits_other"]);
    let a = i8m.run(&windows[4]).unwrap();
    let b = f32m.run(&windows[4]).unwrap();
    assert_eq!((a[0].len(), a[1].len(), a[2].len()), (512, 4, 3));
    let c = sfxtag_export::parity::cosine(&a[0], &b[0]);
    assert!(c > 0.99, "int8 vs fp32 cosine {c}");

    // Standard ONNX: onnx.checker and onnxruntime agree with tract. int8 arithmetic may round
    // differently between runtimes (requantisation), hence the looser bound.
    common::onnxruntime_check(
        &dir.parent().unwrap().join("ort"),
        &[
            (&dir.join("encoder.fp32.onnx"), 0.99999),
            (&dir.join("encoder.onnx"), 0.999),
        ],
        &windows[..3],
    );
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
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

//! The daemon on a real-size CNN9 int8 model written by sfxtag-export (random weights, a
//! labelled UCS head). Ignored by default: the full encoder is slow in debug builds. Run with
//! `cargo test --release -p sfxtag --test export_model -- --ignored`; with
//! `SFXTAG_BENCH_MODEL_DIR=DIR` set the model is written there (for `sfxtag bench --model DIR`).

mod common;

use sfxtag_core::manifest::Taxonomy;
use sfxtag_export::{export_model, Cnn9Weights, ExportOptions, HeadLabels};
use std::time::Duration;

#[test]
#[ignore = "real-size model: run with --release -- --ignored"]
fn cnn9_int8_model_runs_end_to_end() {
    let keep = std::env::var("SFXTAG_BENCH_MODEL_DIR").ok();
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("cnn9"));
    let labels = [
        "DOORWood", "DOORKnck", "ANMLFarm", "ANMLDog", "AMBForst", "BIRDFowl",
    ];
    let w = Cnn9Weights::random(7, &[("ucs", labels.len())]);
    let mut opts = ExportOptions {
        id: "cnn9-random".into(),
        version: "test".into(),
        overwrite: true,
        enforce_gates: false,
        ..Default::default()
    };
    opts.head_labels.insert(
        "ucs".into(),
        HeadLabels {
            taxonomy: Taxonomy::UcsCatId,
            labels: labels.iter().map(|s| s.to_string()).collect(),
        },
    );
    let windows = sfxtag_export::synthetic_windows(16, 3);
    let report = export_model(&w, &opts, &windows, &dir).expect("export");
    eprintln!("{}", report.summary());
    let (code, out, err) = common::run_bin(
        &[
            "classify",
            "--model",
            &dir.display().to_string(),
            "--format",
            "json",
            &common::fixture("dog.mp3").display().to_string(),
        ],
        &[],
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let top = &v["files"][0]["top"][0];
    assert!(labels.contains(&top["catid"].as_str().unwrap()), "{top}");
    assert_eq!(v["files"][0]["top_source"], "head");
}

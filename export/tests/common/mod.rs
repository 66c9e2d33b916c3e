//! Shared by the integration tests: the onnxruntime cross-check through check_onnx.py.

use sfxtag_core::frontend::ModelWindow;
use sfxtag_export::{workspace_root, TractModel};
use std::path::Path;
use std::process::Command;

fn python_with_onnxruntime() -> Option<String> {
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(py)
}

fn write_f32(p: &Path, v: impl IntoIterator<Item = f32>) {
    let b: Vec<u8> = v.into_iter().flat_map(f32::to_le_bytes).collect();
    std::fs::write(p, b).unwrap();
}

/// Runs every model in tract on `windows`, writes inputs and tract outputs to `scratch`, and has
/// export/tests/check_onnx.py run onnx.checker and onnxruntime on the same files and compare.
/// Skips (printing why) without python3 + onnx + onnxruntime, unless
/// SFXTAG_REQUIRE_ONNXRUNTIME=1, where that is a failure.
pub fn onnxruntime_check(scratch: &Path, models: &[(&Path, f64)], windows: &[Box<ModelWindow>]) {
    let Some(py) = python_with_onnxruntime() else {
        assert!(
            std::env::var("SFXTAG_REQUIRE_ONNXRUNTIME").as_deref() != Ok("1"),
            "SFXTAG_REQUIRE_ONNXRUNTIME=1 but python3 cannot import onnx, onnxruntime, numpy \
             (pip install onnx onnxruntime numpy)"
        );
        eprintln!("SKIPPED onnxruntime check: python3 with onnx + onnxruntime not found");
        return;
    };
    std::fs::create_dir_all(scratch).unwrap();
    write_f32(
        &scratch.join("inputs.f32"),
        windows.iter().flat_map(|w| w.iter().flatten().copied()),
    );
    let mut specs = Vec::new();
    for (k, (file, min_cos)) in models.iter().enumerate() {
        let m = TractModel::from_bytes(&std::fs::read(file).unwrap()).unwrap();
        let outs: Vec<Vec<Vec<f32>>> = windows.iter().map(|w| m.run(w).unwrap()).collect();
        let mut o = serde_json::Map::new();
        for (j, name) in m.outputs.iter().enumerate() {
            let f = format!("tract.{k}.{name}.f32");
            write_f32(
                &scratch.join(&f),
                outs.iter().flat_map(|x| x[j].iter().copied()),
            );
            o.insert(name.clone(), f.into());
        }
        specs.push(serde_json::json!({
            "file": std::fs::canonicalize(file).unwrap(),
            "min_cosine": min_cos,
            "outputs": o,
        }));
    }
    let spec = serde_json::json!({"inputs": "inputs.f32", "n": windows.len(), "models": specs});
    std::fs::write(scratch.join("check.json"), spec.to_string()).unwrap();
    let script = workspace_root().join("export/tests/check_onnx.py");
    let out = Command::new(py).arg(&script).arg(scratch).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "check_onnx.py failed:\n{text}");
}

#!/usr/bin/env python3
"""Test-only check that sfxtag-export's ONNX files are standard ONNX: onnx.checker accepts them
and onnxruntime runs them to the same outputs tract gave (written by the Rust test).

Usage: check_onnx.py CHECK_DIR
CHECK_DIR/check.json (written by export/tests/export_random.rs):
  {"inputs": "inputs.f32", "n": N,
   "models": [{"file": "/abs/encoder.onnx", "min_cosine": 0.999,
               "outputs": {"embedding": "tract.0.embedding.f32", "logits_x": ...}}]}
All .f32 files are raw little-endian float32, row-major: inputs [N,1,100,96], outputs [N,...].
Exits non-zero (with the reason) on any failure. Needs: pip install onnx onnxruntime numpy.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    d = sys.argv[1]
    spec = json.load(open(os.path.join(d, "check.json")))
    n = spec["n"]
    x = np.fromfile(os.path.join(d, spec["inputs"]), dtype="<f4").reshape(n, 1, 100, 96)
    failures = []
    for m in spec["models"]:
        path = m["file"]
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        ops = sorted({node.op_type for node in model.graph.node})
        print(f"{os.path.basename(path)}: onnx.checker ok; opset "
              f"{model.opset_import[0].version}; ops {ops}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        # Plain execution: no graph rewrites, so we check our graph, not ORT's fusion of it.
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        for name, f in m["outputs"].items():
            if name not in names:
                failures.append(f"{path}: onnxruntime has no output {name}")
        for i in range(n):
            outs = dict(zip(names, sess.run(None, {"input": x[i:i + 1]})))
            for name, f in m["outputs"].items():
                t = np.fromfile(os.path.join(d, f), dtype="<f4").reshape(n, -1)[i]
                o = outs[name].reshape(-1).astype(np.float64)
                t = t.astype(np.float64)
                cos = float(o @ t / (np.linalg.norm(o) * np.linalg.norm(t) + 1e-30))
                rel = float(np.abs(o - t).max() / (np.abs(t).max() + 1e-30))
                print(f"  window {i} {name}: cosine(onnxruntime, tract) {cos:.6f}, "
                      f"max |diff|/max|tract| {rel:.2e}")
                if cos < m["min_cosine"]:
                    failures.append(f"{path} window {i} {name}: cosine {cos} < {m['min_cosine']}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("onnxruntime agrees with tract")


if __name__ == "__main__":
    main()

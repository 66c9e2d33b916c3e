#!/usr/bin/env python3
"""onnxruntime single-thread, batch-1 latency per window on the files the tract bench used,
and the ratio tract-int8 / onnxruntime-int8.

Run after `cargo bench -p sfxtag-export` (it writes target/bench-export/encoder{,.fp32}.onnx and
criterion's estimates to target/criterion/tract/{int8,fp32}/new/estimates.json):

    python3 bench/onnxruntime_bench.py [--iters 50]

Needs: pip install onnxruntime numpy.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(path, iters):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(42).random((1, 1, 100, 96), dtype=np.float32)
    for _ in range(5):
        sess.run(None, {"input": x})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def tract_ms(name):
    p = os.path.join(ROOT, "target/criterion/tract", name, "new/estimates.json")
    if not os.path.exists(p):
        return None
    return json.load(open(p))["median"]["point_estimate"] / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--dir", default=os.path.join(ROOT, "target/bench-export"))
    a = ap.parse_args()
    res = {}
    for name, f in [("int8", "encoder.onnx"), ("fp32", "encoder.fp32.onnx")]:
        res[name] = bench(os.path.join(a.dir, f), a.iters)
        t = tract_ms(name)
        print(f"{name}: onnxruntime {res[name]:.2f} ms/window (median of {a.iters}, 1 thread)"
              + (f"; tract {t:.2f} ms/window (criterion median)" if t else ""))
    t8 = tract_ms("int8")
    if t8:
        print(f"ratio tract-int8 / onnxruntime-int8: {t8 / res['int8']:.2f}")
    else:
        print("no criterion estimates found: run `cargo bench -p sfxtag-export` first")


if __name__ == "__main__":
    main()

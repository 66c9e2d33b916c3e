"""A copy of CACHE/embeddings (every variant) whose aux columns are YAMNet logits: per window,
the mean logits of the YAMNet patches that lie inside it (the nearest one when none does).

    python store.py CACHE      → CACHE/emb-yamnet/<variant>/  (read by `heads --store`)

A noisy variant gets the YAMNet logits of the same noisy audio (`logits.py CACHE --noisy SNR
SEED`); without them it is left out (clean YAMNet features would leak into a noisy test).
"""
import json
import os
import sys

import numpy as np

# The daemon's model windows: 100 frames of 1024 samples at 44.1 kHz, every 50 frames.
WIN_S, HOP_S = 100 * 1024 / 44100, 50 * 1024 / 44100
PATCH_S, PATCH_HOP_S = 0.96, 0.48


def window_count(frames):
    return 0 if frames == 0 else 1 if frames <= 100 else (frames - 100) // 50 + 1


def pick_windows(n, cap):
    # The trainer's `pick_windows`: at most `cap` of `n`, evenly spaced, first and last kept.
    if n <= cap:
        return list(range(n))
    if cap == 1:
        return [n // 2]
    return [i * (n - 1) // (cap - 1) for i in range(cap)]


def main():
    cache = sys.argv[1]
    def load_logits(name):
        z = np.load(f"{cache}/yamnet/{name}")
        return {k: z[k] for k in z.files}

    index = json.load(open(f"{cache}/corpus.json"))
    frames = {}
    for d in index["datasets"]:
        for c in json.load(open(f"{cache}/prepared/{d['name']}/index.json"))["clips"]:
            frames[(d["name"], c["rel_path"])] = c["frames"]
    missing = 0
    for variant in sorted(os.listdir(f"{cache}/embeddings")):
        src, dst = f"{cache}/embeddings/{variant}", f"{cache}/emb-yamnet/{variant}"
        name = "logits.npz" if variant == "clean" else f"logits-{variant}.npz"
        if not os.path.exists(f"{cache}/yamnet/{name}"):
            print(f"yamnet store: {variant} left out (no {name}: run logits.py with --noisy)")
            continue
        logits = load_logits(name)
        os.makedirs(dst, exist_ok=True)
        for d in index["datasets"]:
            j = json.load(open(f"{src}/{d['name']}.json"))
            width = j["dim"] + sum(n for _, n in j["aux"])
            raw = np.fromfile(f"{src}/{d['name']}.f32", dtype="<f4").reshape(-1, width)
            aux = np.zeros((raw.shape[0], 521), dtype=np.float32)
            for c in j["clips"]:
                y = logits.get(f"{d['name']}/{c['rel_path']}")
                if y is None:
                    missing += 1
                    continue
                wins = pick_windows(window_count(frames[(d["name"], c["rel_path"])]), j["max_windows"])
                if len(wins) != c["windows"]:
                    wins = list(range(c["windows"]))
                for k, w in enumerate(wins):
                    a, b = w * HOP_S, w * HOP_S + WIN_S
                    inside = [p for p in range(len(y)) if p * PATCH_HOP_S >= a - 1e-6 and p * PATCH_HOP_S + PATCH_S <= b + 1e-6]
                    if not inside:
                        mid = (a + b) / 2
                        inside = [min(range(len(y)), key=lambda p: abs(p * PATCH_HOP_S + PATCH_S / 2 - mid))]
                    aux[c["first"] + k] = y[inside].mean(0)
            np.concatenate([raw[:, : j["dim"]], aux], 1).astype("<f4").tofile(f"{dst}/{d['name']}.f32")
            j["aux"] = [["yamnet", 521]]
            json.dump(j, open(f"{dst}/{d['name']}.json", "w"))
    print(f"yamnet store: {cache}/emb-yamnet ({missing} clips without YAMNet logits: zeros)")


if __name__ == "__main__":
    main()
